//! `tunnel-client`: reach a registered server by its uuid (v2).

use remoteproxy_client::{ClientError, TunnelClient};
use tracing::info;

use crate::cli::args::TunnelClientArgs;
use crate::cli::broker::Api;
use crate::cli::modes::{self, Ending};

/// Registers and runs the chosen mode. A refused registration is
/// [`ClientError::TunnelProxyRefused`] (exit code 3).
pub async fn run(args: TunnelClientArgs) -> Result<Ending, ClientError> {
    let (url, options) = crate::cli::broker::resolve(&args.broker, Api::V2)?;
    let client = TunnelClient {
        server_uuid: args.server_uuid.clone(),
        uuid: args.uuid.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name: args.name.clone(),
    };
    if let Some(addr) = args.mode.listen {
        // One TunnelProxy client per local connection, each under a uuid of its own unless one
        // was given.
        let given_uuid = args.uuid.is_some();
        return modes::listen_many(addr, Api::V2, move || {
            let mut client = client.clone();
            if !given_uuid {
                client.uuid = uuid::Uuid::new_v4().to_string();
            }
            let (url, options) = (url.clone(), options.clone());
            async move {
                let stream = client.connect(&url, &options).await?;
                info!(server = %client.server_uuid, uuid = %client.uuid, "connected to the server");
                Ok(stream)
            }
        })
        .await;
    }
    let stream = client.connect(&url, &options).await?;
    info!(server = %client.server_uuid, "connected to the server");
    if args.mode.stdio {
        Ok(modes::stdio(stream, Api::V2).await)
    } else {
        eprintln!("remoteproxy-client: connected to server {}", client.server_uuid);
        Ok(modes::print(stream, &client.name, false).await)
    }
}
