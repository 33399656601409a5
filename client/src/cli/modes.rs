//! What the client does with its tunnel: the modes of the v1 command line and of
//! `tunnel-client`, and the joining of a tunnel with a local connection.

use std::io;
use std::time::Duration;

use remoteproxy_client::{ClientError, Tunnel, TunnelStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use crate::cli::broker::Api;

/// Bytes per read when piping: 64 KiB moves about three times the data of 8 KiB on loopback.
const CHUNK: usize = 64 << 10;

/// How the tunnel ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A side closed it: exit 0.
    Normal,
    /// The broker stopped or the connection broke: exit 1.
    Early(String),
}

/// The reference client's behaviour: print what arrives; with `pingpong`, answer with pings.
pub async fn print(mut stream: TunnelStream, name: &str, pingpong: bool) -> Ending {
    let ping = format!("Ping from {name}!");
    if pingpong && let Err(e) = write_flush(&mut stream, ping.as_bytes()).await {
        return Ending::Early(e.to_string());
    }
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => return ending(&stream),
            Ok(n) => n,
            Err(e) => return Ending::Early(e.to_string()),
        };
        debug!(bytes = n, "<-- data");
        if stdout.write_all(&buf[..n]).await.is_err() || stdout.flush().await.is_err() {
            return Ending::Normal;
        }
        if pingpong {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = write_flush(&mut stream, ping.as_bytes()).await {
                return Ending::Early(e.to_string());
            }
        }
    }
}

/// Pipes stdin to the tunnel and the tunnel to stdout.
pub async fn stdio(stream: TunnelStream, api: Api) -> Ending {
    join(stream, api, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Accepts one local connection first (so the partner does not wait alone while nobody uses
/// it, and a v2 client does not occupy the server while nobody uses it), then opens the tunnel
/// and joins them.
pub async fn listen<F>(addr: std::net::SocketAddr, api: Api, open: F) -> Result<Ending, ClientError>
where
    F: Future<Output = Result<TunnelStream, ClientError>>,
{
    let listener = TcpListener::bind(addr).await?;
    eprintln!("remoteproxy-client: listening on {}", listener.local_addr()?);
    let (local, peer) = listener.accept().await?;
    drop(listener);
    info!(%peer, "local connection accepted; opening the tunnel");
    let _ = local.set_nodelay(true);
    let stream = open.await?;
    let (read, write) = local.into_split();
    Ok(join(stream, api, read, write).await)
}

/// Opens the tunnel, then connects to the local service and joins them.
pub async fn connect(addr: &str, tunnel: Tunnel) -> Result<Ending, ClientError> {
    let local = TcpStream::connect(addr).await?;
    let _ = local.set_nodelay(true);
    info!(%addr, "connected to the local service");
    let (read, write) = local.into_split();
    Ok(join(tunnel.stream, Api::V1, read, write).await)
}

/// Logs the partner.
pub fn announce(tunnel: &Tunnel) {
    info!(partner = %tunnel.partner_name, uuid = %tunnel.partner_uuid, "tunnel established");
}

/// Moves bytes both ways between the tunnel and a local reader/writer pair until the tunnel
/// ends. The local side's end half-closes the tunnel. The end of the tunnel's incoming
/// direction is the end of everything over a WebSocket, which cannot half-close, and on the v2
/// API, where the broker only ever closes a client completely.
async fn join<R, W>(stream: TunnelStream, api: Api, local_in: R, local_out: W) -> Ending
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let half_close = api == Api::V1 && stream.supports_half_close();
    let (stream, incoming) = pipe(stream, half_close, local_in, local_out).await;
    match incoming {
        Ok(()) => ending(&stream),
        Err(e) => Ending::Early(e.to_string()),
    }
}

/// The pump behind [`join`], for any stream: returns the stream and how its incoming direction
/// ended. The local side's end shuts the stream down (a half-close where `half_close`); the
/// stream's end shuts the local writer down, and without `half_close` it is the end of
/// everything.
pub async fn pipe<S, R, W>(
    stream: S,
    half_close: bool,
    mut local_in: R,
    mut local_out: W,
) -> (S, io::Result<()>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut tunnel_in, mut tunnel_out) = tokio::io::split(stream);
    let incoming = {
        let outgoing = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match local_in.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if write_flush(&mut tunnel_out, &buf[..n]).await.is_err() {
                    return;
                }
            }
            debug!("local input ended; closing the tunnel's sending side");
            let _ = tunnel_out.shutdown().await;
        };
        let incoming = async {
            let mut buf = vec![0u8; CHUNK];
            let result = loop {
                match tunnel_in.read(&mut buf).await {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        if write_flush(&mut local_out, &buf[..n]).await.is_err() {
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            let _ = local_out.shutdown().await;
            result
        };
        tokio::pin!(outgoing, incoming);
        let mut outgoing_done = false;
        let incoming = loop {
            tokio::select! {
                result = &mut incoming => break result,
                _ = &mut outgoing, if !outgoing_done => outgoing_done = true,
            }
        };
        if half_close && incoming.is_ok() && !outgoing_done {
            // The partner finished sending; our side may still have data for it.
            outgoing.await;
        }
        incoming
    };
    (tunnel_in.unsplit(tunnel_out), incoming)
}

async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8]) -> std::io::Result<()> {
    writer.write_all(data).await?;
    writer.flush().await
}

/// A tunnel that ends with the broker's `Stop server` ended early; any other close is normal.
fn ending(stream: &TunnelStream) -> Ending {
    match stream.close_info() {
        Some(info) if info.code == 1000 => {
            Ending::Early(format!("the server closed the tunnel: {}", info.reason))
        }
        _ => Ending::Normal,
    }
}
