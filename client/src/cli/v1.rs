//! The v1 command line: token pairing, the reference client's behaviour.

use remoteproxy_client::tunnelproxy::{Backoff, Delays, jittered};
use remoteproxy_client::{
    AuthenticationError, ClientError, ClientOptions, Credentials, ProxyUrl, open_tunnel,
};
use tracing::{debug, info};

use crate::cli::args::Cli;
use crate::cli::broker::Api;
use crate::cli::modes::{self, Ending};

/// Opens the tunnel and runs the chosen mode.
pub async fn run(cli: Cli) -> Result<Ending, ClientError> {
    let (url, options) = crate::cli::broker::resolve(&cli.broker, Api::V1)?;
    let credentials = Credentials {
        // clap requires the token unless a subcommand is given.
        token: cli.token.clone().unwrap_or_default(),
        nonce: cli.nonce.clone(),
        uuid: cli.uuid.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name: cli.name.clone(),
    };
    if cli.keep.keep
        && let Some(addr) = &cli.mode.connect
    {
        return keep_connecting(addr, &url, &options, &credentials).await;
    }
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

/// `--connect ADDR --keep`: the device stays available until interrupted. It authenticates
/// again when its partner did not come in time and after each tunnel; errors that waiting can
/// fix (the broker away, the authenticator failing) are retried with backoff, mistakes that it
/// cannot (a bad URL or file, untrusted certificate, a refused token) end it.
async fn keep_connecting(
    addr: &str,
    url: &ProxyUrl,
    options: &ClientOptions,
    credentials: &Credentials,
) -> Result<Ending, ClientError> {
    let mut delays = Delays::new(Backoff::default());
    let interrupted = modes::interrupted();
    tokio::pin!(interrupted);
    loop {
        let error = tokio::select! {
            () = &mut interrupted => return Ok(Ending::Normal),
            result = serve_once(addr, url, options, credentials) => match result {
                Ok(()) => {
                    delays.reset();
                    continue;
                }
                Err(ClientError::PartnerDidNotShowUp) => {
                    debug!("the partner did not show up; authenticating again");
                    delays.reset();
                    continue;
                }
                Err(error) if gives_up(&error) => return Err(error),
                Err(error) => error,
            },
        };
        let delay = jittered(delays.next_delay());
        eprintln!("remoteproxy-client: {error}; trying again in {:.1} s", delay.as_secs_f64());
        tokio::select! {
            () = &mut interrupted => return Ok(Ending::Normal),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One tunnel: open it, join it with the local service, report how it ended.
async fn serve_once(
    addr: &str,
    url: &ProxyUrl,
    options: &ClientOptions,
    credentials: &Credentials,
) -> Result<(), ClientError> {
    let tunnel = open_tunnel(url, options, credentials).await?;
    modes::announce(&tunnel);
    match modes::connect(addr, tunnel).await? {
        Ending::Normal => info!("tunnel ended; available again"),
        Ending::Early(reason) => eprintln!("remoteproxy-client: the tunnel ended early: {reason}"),
    }
    Ok(())
}

/// What retrying cannot fix.
fn gives_up(error: &ClientError) -> bool {
    match error {
        ClientError::InvalidUrl { .. } | ClientError::BadFile { .. } | ClientError::Usage(_) => true,
        ClientError::TlsVerification { .. } => true,
        ClientError::AuthenticationRefused { outcome } => {
            *outcome == AuthenticationError::AuthenticationFailed
        }
        _ => false,
    }
}
