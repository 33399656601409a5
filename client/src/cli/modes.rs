//! What the client does with its tunnel: the modes of the v1 command line and of
//! `tunnel-client`, and the joining of a tunnel with a local connection.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
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
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Ending::Early(e.to_string()),
        };
        debug!(bytes = n, "<-- data");
        if stdout.write_all(&buf[..n]).await.is_err() || stdout.flush().await.is_err() {
            break;
        }
        if pingpong {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = write_flush(&mut stream, ping.as_bytes()).await {
                return Ending::Early(e.to_string());
            }
        }
    }
    finish(stream).await
}

/// Pipes stdin to the tunnel and the tunnel to stdout. Where the tunnel cannot half-close, the
/// end of stdin sends nothing: the reply of a request piped in still arrives.
pub async fn stdio(stream: TunnelStream, api: Api) -> Ending {
    join(stream, api, Closing::WaitForPartner, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Accepts one local connection first (so the partner does not wait alone while nobody uses
/// it), then opens the tunnel and joins them.
pub async fn listen<F>(addr: std::net::SocketAddr, api: Api, open: F) -> Result<Ending, ClientError>
where
    F: Future<Output = Result<TunnelStream, ClientError>>,
{
    let listener = TcpListener::bind(addr).await?;
    eprintln!("remoteproxy-client: listening on {}", listener.local_addr()?);
    let (local, peer) = listener.accept().await?;
    drop(listener);
    info!(%peer, "local connection accepted; opening the tunnel");
    let stream = open.await?;
    Ok(join_local(stream, api, local).await)
}

/// Serves every local connection on `addr` at once, each through a tunnel of its own opened by
/// `open` once the connection is there, until interrupted (exit 0), like a port forward. A
/// connection whose tunnel cannot be opened is closed with one line on stderr; the others go on.
pub async fn listen_many<F, Fut>(addr: std::net::SocketAddr, api: Api, open: F) -> Result<Ending, ClientError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<TunnelStream, ClientError>> + Send + 'static,
{
    let listener = TcpListener::bind(addr).await?;
    eprintln!("remoteproxy-client: listening on {}", listener.local_addr()?);
    let mut connections = tokio::task::JoinSet::new();
    let interrupted = interrupted();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            () = &mut interrupted => return Ok(Ending::Normal),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((local, peer)) => {
                    info!(%peer, "local connection accepted; opening its tunnel");
                    let open = open();
                    connections.spawn(async move {
                        let stream = match open.await {
                            Ok(stream) => stream,
                            Err(error) => {
                                eprintln!("remoteproxy-client: connection from {peer}: {error}");
                                return;
                            }
                        };
                        match join_local(stream, api, local).await {
                            Ending::Normal => info!(%peer, "local connection done"),
                            Ending::Early(reason) => {
                                eprintln!("remoteproxy-client: connection from {peer} ended early: {reason}");
                            }
                        }
                    });
                }
                // Out of file descriptors, say: wait a little instead of spinning.
                Err(error) => {
                    eprintln!("remoteproxy-client: accepting a local connection failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Opens the tunnel, then connects to the local service and joins them.
pub async fn connect(addr: &str, tunnel: Tunnel) -> Result<Ending, ClientError> {
    let local = TcpStream::connect(addr).await?;
    info!(%addr, "connected to the local service");
    Ok(join_local(tunnel.stream, Api::V1, local).await)
}

/// Joins the tunnel with a local TCP connection. Where the tunnel cannot half-close, the local
/// end closes the tunnel: a local program that is done has usually closed its socket entirely,
/// and waiting for the partner would keep the far side's connection open for nothing.
async fn join_local(stream: TunnelStream, api: Api, local: TcpStream) -> Ending {
    let _ = local.set_nodelay(true);
    let (read, write) = local.into_split();
    join(stream, api, Closing::Shutdown, read, write).await
}

/// Ctrl-C or SIGTERM.
pub async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// Logs the partner.
pub fn announce(tunnel: &Tunnel) {
    info!(partner = %tunnel.partner_name, uuid = %tunnel.partner_uuid, "tunnel established");
}

/// Moves bytes both ways between the tunnel and a local reader/writer pair until the tunnel
/// ends, then reports whether everything arrived both ways.
///
/// The end of local input half-closes the tunnel where the carrier can (TCP, TLS, unix, and a
/// WebSocket to a broker that granted half-close); each direction then runs to its own end, as
/// `nc` does. Where it cannot (a WebSocket to a broker without half-close, and the v2 API, which
/// has no half-close towards a server), `otherwise` says what the end of local input does.
async fn join<R, W>(
    mut stream: TunnelStream,
    api: Api,
    otherwise: Closing,
    local_in: R,
    local_out: W,
) -> Ending
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let closing = if api == Api::V1 && stream.supports_half_close() { Closing::HalfClose } else { otherwise };
    let ended = pipe(&mut stream, closing, local_in, local_out).await;
    match ended {
        Ok(()) => finish(stream).await,
        Err(e) => Ending::Early(e.to_string()),
    }
}

/// What the end of local input does to the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Half-close it; each direction runs to its own end.
    HalfClose,
    /// Shut the tunnel's sending side (a v2 server ending one client) and stop once the
    /// tunnel's incoming side ends.
    Shutdown,
    /// Nothing: the carrier cannot say "done sending"; the partner's end ends the tunnel.
    WaitForPartner,
}

/// The pump behind [`join`], for any stream: Ok when the tunnel's incoming direction ended
/// normally and every byte of local input that was read went into the tunnel; the error says
/// what was cut otherwise.
pub async fn pipe<S, R, W>(stream: S, closing: Closing, mut local_in: R, mut local_out: W) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut tunnel_in, mut tunnel_out) = tokio::io::split(stream);
    // Set while a chunk of local input is on its way into the tunnel: if the tunnel ends then,
    // that chunk was lost.
    let sending = AtomicBool::new(false);
    let outgoing = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match local_in.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            sending.store(true, Ordering::Relaxed);
            write_flush(&mut tunnel_out, &buf[..n]).await?;
            sending.store(false, Ordering::Relaxed);
        }
        debug!("local input ended");
        if closing != Closing::WaitForPartner {
            tunnel_out.shutdown().await?;
        }
        Ok::<(), io::Error>(())
    };
    let incoming = async {
        let mut buf = vec![0u8; CHUNK];
        let result = loop {
            match tunnel_in.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    // A local reader that went away (`| head`) is its own choice, not a cut.
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
    let mut sent = None;
    let received = loop {
        tokio::select! {
            result = &mut incoming => break result,
            result = &mut outgoing, if sent.is_none() => sent = Some(result),
        }
    };
    received?;
    let sent = match sent {
        Some(result) => result,
        // The partner finished sending; our side may still have data for it.
        None if closing == Closing::HalfClose => outgoing.await,
        None if sending.load(Ordering::Relaxed) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "")),
        None => Ok(()),
    };
    sent.map_err(|_| {
        io::Error::new(io::ErrorKind::BrokenPipe, "the tunnel closed before all local input was delivered")
    })
}

async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8]) -> std::io::Result<()> {
    writer.write_all(data).await?;
    writer.flush().await
}

/// How a tunnel that ended without a cut ended, after closing it cleanly (close_notify, the
/// closing handshake), which tells the partner nothing was cut.
async fn finish(mut stream: TunnelStream) -> Ending {
    let ending = ending(&stream);
    stream.close().await;
    ending
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
