//! `tunnel-server`: stay registered under a uuid and serve every client (v2).

use std::sync::Arc;

use remoteproxy_client::{ClientError, IncomingClient, ServerRegistration, TunnelServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::cli::args::TunnelServerArgs;
use crate::cli::broker::Api;
use crate::cli::modes::{self, Ending};

/// Serves until interrupted (exit 0) or until the server stops for good: an invalid uuid (exit
/// 3), a configuration error (2), a broker that does not speak the TunnelProxy API (1).
pub async fn run(args: TunnelServerArgs) -> Result<Ending, ClientError> {
    let (url, options) = crate::cli::broker::resolve(&args.broker, Api::V2)?;
    let target = url.to_string();
    let registration = ServerRegistration { uuid: args.uuid.clone(), name: args.name.clone() };
    let mut server = TunnelServer::spawn(url, options, registration);
    tokio::spawn(announce_registrations(server.status(), args.uuid.clone(), target));
    // Printed chunks of different clients must not interleave inside a chunk.
    let stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    let interrupted = modes::interrupted();
    tokio::pin!(interrupted);
    loop {
        let client = tokio::select! {
            client = server.accept() => client?,
            () = &mut interrupted => return Ok(Ending::Normal),
        };
        info!(name = %client.name, uuid = %client.uuid, peer = %client.peer_address, "client connected");
        match &args.connect {
            Some(addr) => {
                tokio::spawn(forward(client, addr.clone()));
            }
            None => {
                tokio::spawn(print(client, stdout.clone()));
            }
        }
    }
}

/// One line on stderr per registration, so that scripts (and tests) know when clients can come.
async fn announce_registrations(
    mut status: tokio::sync::watch::Receiver<remoteproxy_client::ServerStatus>,
    uuid: String,
    target: String,
) {
    let mut announced = 0;
    while status.changed().await.is_ok() {
        let registrations = status.borrow_and_update().registrations;
        if registrations > announced {
            announced = registrations;
            eprintln!("remoteproxy-client: registered as server {uuid} at {target}");
        }
    }
}

/// Joins the client with its own connection to the local service. Either side's end ends the
/// other: the v2 API has no half-close towards a client.
async fn forward(client: IncomingClient, addr: String) {
    let local = match TcpStream::connect(&addr).await {
        Ok(local) => local,
        Err(error) => {
            warn!(%addr, %error, client = %client.uuid, "cannot reach the local service; disconnecting the client");
            return;
        }
    };
    let _ = local.set_nodelay(true);
    let (read, write) = local.into_split();
    let ended = modes::pipe(client.stream, modes::Closing::Shutdown, read, write).await;
    match ended {
        Ok(()) => info!(client = %client.uuid, "client disconnected"),
        Err(error) => info!(client = %client.uuid, %error, "client connection ended"),
    }
}

/// Prints what the client sends, as the v1 default mode does.
async fn print(client: IncomingClient, stdout: Arc<Mutex<tokio::io::Stdout>>) {
    let IncomingClient { name, uuid, peer_address, mut stream, .. } = client;
    eprintln!("remoteproxy-client: client {name} ({uuid}) connected from {peer_address}");
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut out = stdout.lock().await;
        if out.write_all(&buf[..n]).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
    eprintln!("remoteproxy-client: client {name} ({uuid}) disconnected");
}
