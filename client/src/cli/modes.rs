//! What the client does with its tunnel.

use std::time::Duration;

use remoteproxy_client::{ClientError, Tunnel, TunnelStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

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
pub async fn print(tunnel: Tunnel, name: &str, pingpong: bool) -> Ending {
    let mut stream = tunnel.stream;
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
pub async fn stdio(tunnel: Tunnel) -> Ending {
    join(tunnel.stream, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Accepts one local connection first (so the partner does not wait alone while nobody uses
/// it), then opens the tunnel and joins them.
pub async fn listen<F>(addr: std::net::SocketAddr, open: F) -> Result<Ending, ClientError>
where
    F: Future<Output = Result<Tunnel, ClientError>>,
{
    let listener = TcpListener::bind(addr).await?;
    eprintln!("remoteproxy-client: listening on {}", listener.local_addr()?);
    let (local, peer) = listener.accept().await?;
    drop(listener);
    info!(%peer, "local connection accepted; opening the tunnel");
    let _ = local.set_nodelay(true);
    let tunnel = open.await?;
    announce(&tunnel);
    let (read, write) = local.into_split();
    Ok(join(tunnel.stream, read, write).await)
}

/// Opens the tunnel, then connects to the local service and joins them.
pub async fn connect(addr: &str, tunnel: Tunnel) -> Result<Ending, ClientError> {
    let local = TcpStream::connect(addr).await?;
    let _ = local.set_nodelay(true);
    info!(%addr, "connected to the local service");
    let (read, write) = local.into_split();
    Ok(join(tunnel.stream, read, write).await)
}

/// Logs the partner.
pub fn announce(tunnel: &Tunnel) {
    info!(partner = %tunnel.partner_name, uuid = %tunnel.partner_uuid, "tunnel established");
}

/// Moves bytes both ways between the tunnel and a local reader/writer pair until the tunnel
/// ends. The local side's end half-closes the tunnel; over a WebSocket, which cannot half-close,
/// the end of the tunnel's incoming direction is the end of everything.
async fn join<R, W>(stream: TunnelStream, mut local_in: R, mut local_out: W) -> Ending
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let half_close = stream.supports_half_close();
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
    let stream = tunnel_in.unsplit(tunnel_out);
    match incoming {
        Ok(()) => ending(&stream),
        Err(e) => Ending::Early(e.to_string()),
    }
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
