//! The v1 command line: token pairing, the reference client's behaviour.

use remoteproxy_client::{ClientError, Credentials, open_tunnel};

use crate::cli::args::Cli;
use crate::cli::broker::Api;
use crate::cli::modes::{self, Ending};

/// Opens the tunnel and runs the chosen mode.
pub async fn run(cli: Cli) -> Result<Ending, ClientError> {
    let (url, options) = cli.broker.resolve(Api::V1)?;
    let credentials = Credentials {
        // clap requires the token unless a subcommand is given.
        token: cli.token.clone().unwrap_or_default(),
        nonce: cli.nonce.clone(),
        uuid: cli.uuid.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name: cli.name.clone(),
    };
    let open = open_tunnel(&url, &options, &credentials);
    if let Some(addr) = cli.mode.listen {
        return modes::listen(addr, Api::V1, async {
            let tunnel = open.await?;
            modes::announce(&tunnel);
            Ok(tunnel.stream)
        })
        .await;
    }
    let tunnel = open.await?;
    modes::announce(&tunnel);
    if cli.mode.stdio {
        Ok(modes::stdio(tunnel.stream, Api::V1).await)
    } else if let Some(addr) = &cli.mode.connect {
        modes::connect(addr, tunnel).await
    } else {
        eprintln!(
            "remoteproxy-client: tunnel established with {} ({})",
            tunnel.partner_name, tunnel.partner_uuid
        );
        Ok(modes::print(tunnel.stream, &cli.name, cli.pingpong).await)
    }
}
