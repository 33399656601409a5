//! The monitor socket (PROTOCOL §7): statistics snapshots for `socat`, the tools of the 1.x
//! broker and `remoteproxy-monitor`.
//!
//! Each client chooses its mode by what it sends:
//! * **push**: a client that sends nothing gets a snapshot as one compact JSON line right away
//!   (after a short [`REQUEST_GRACE`] in which a request would win) and then once a second. A
//!   client that only half-closes its side keeps getting them.
//! * **request**: a client that sends `{"method":"refresh"}` or
//!   `{"method":"refresh","params":{"printAll":true}}` plus `\n` gets one snapshot per request
//!   and no pushes from then on. Other keys beside `method` and `params` are ignored.
//! * **drain**: `{"method":"drain"}` starts the broker's graceful stop, as SIGTERM does (what
//!   `remoteproxy drain` sends): no new clients, tunnels finish within `shutdownGracePeriod`, and
//!   in a cluster the node leaves Redis at once so its peers' partners go to the other nodes. The
//!   answer is `{"draining":true}`; whoever may read the statistics may drain (the socket's mode
//!   and group decide both).
//!
//! Anything else it sends (not JSON, another method, a `printAll` that is not a bool, a line
//! longer than [`MAX_REQUEST`]) closes the connection. Nothing a client does can grow the
//! broker's memory: a request line is bounded, at most [`MAX_CLIENTS`] are served at once (more
//! are closed at accept), and a client that does not read is dropped when one snapshot cannot be
//! written within [`WRITE_TIMEOUT`]. The snapshot holds no token, so neither does this socket.
//!
//! Who may connect is decided by the socket file's mode (`monitorSocketMode`, applied by
//! [`crate::transport::listeners::bind_monitor`], which also replaces a stale socket file).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::stats::Stats;
use crate::stats::snapshot::snapshot;
use crate::transport::UnixSocketListener;

/// Monitor clients served at once; more are closed right after accept.
pub const MAX_CLIENTS: usize = 64;
/// The longest request line (without its `\n`).
pub const MAX_REQUEST: usize = 4096;
/// How long writing one snapshot may take before the client is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between two pushed snapshots.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long the first push waits for a request, so a client that sends its request right after
/// connecting gets only answers, never a pushed snapshot first.
pub const REQUEST_GRACE: Duration = Duration::from_millis(200);

/// Serves the monitor socket until `stop`; the socket file is removed when this returns.
pub async fn serve(
    listener: UnixSocketListener,
    stats: Arc<Stats>,
    drain: CancellationToken,
    stop: CancellationToken,
) {
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, _)) if clients.len() < MAX_CLIENTS => {
                    clients.spawn(serve_client(stream, stats.clone(), drain.clone()));
                }
                Ok(_) => debug!("monitor: {MAX_CLIENTS} clients already, closing another"),
                Err(error) => {
                    // E.g. out of file descriptors: don't spin, the next accept may work.
                    warn!(%error, "monitor socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    clients.shutdown().await;
}

/// Why a monitor client was let go.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("a snapshot could not be written within {WRITE_TIMEOUT:?}")]
    SlowReader,
    #[error("request line longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("invalid request")]
    Invalid,
}

async fn serve_client(mut stream: UnixStream, stats: Arc<Stats>, drain: CancellationToken) {
    let (read, write) = stream.split();
    match run(read, write, &stats, &drain).await {
        Ok(()) => debug!("monitor client left"),
        Err(error) => debug!(%error, "monitor client closed"),
    }
}

/// One client: push mode until its first request, then request mode.
async fn run(
    mut read: impl AsyncRead + Unpin,
    mut write: impl AsyncWrite + Unpin,
    stats: &Stats,
    drain: &CancellationToken,
) -> Result<(), End> {
    let mut requests = Requests::default();
    let mut push = tokio::time::interval_at(Instant::now() + REQUEST_GRACE, PUSH_INTERVAL);
    push.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut listening = true;
    let mut print_all = loop {
        tokio::select! {
            biased;
            request = requests.next(&mut read), if listening => match request? {
                Some(Request::Refresh(print_all)) => break Some(print_all),
                Some(Request::Drain) => break None,
                // Half-closed: it only listens, keep pushing until a write fails.
                None => listening = false,
            },
            _ = push.tick() => send(&mut write, stats, false).await?,
        }
    };
    loop {
        match print_all {
            Some(print_all) => send(&mut write, stats, print_all).await?,
            None => {
                if !drain.is_cancelled() {
                    warn!("drain requested over the monitor socket");
                    drain.cancel();
                }
                write_line(&mut write, b"{\"draining\":true}\n".to_vec()).await?;
            }
        }
        print_all = match requests.next(&mut read).await? {
            Some(Request::Refresh(print_all)) => Some(print_all),
            Some(Request::Drain) => None,
            None => return Ok(()),
        };
    }
}

async fn write_line(write: &mut (impl AsyncWrite + Unpin), line: Vec<u8>) -> Result<(), End> {
    tokio::time::timeout(WRITE_TIMEOUT, async {
        write.write_all(&line).await?;
        write.flush().await
    })
    .await
    .map_err(|_| End::SlowReader)??;
    Ok(())
}

async fn send(write: &mut (impl AsyncWrite + Unpin), stats: &Stats, print_all: bool) -> Result<(), End> {
    let mut line = serde_json::to_vec(&snapshot(stats, print_all)).map_err(io::Error::from)?;
    line.push(b'\n');
    write_line(write, line).await
}

/// The request lines of one client, read in bounded chunks.
#[derive(Default)]
struct Requests {
    buf: Vec<u8>,
}

impl Requests {
    /// The next request, or `None` at the end of input. Cancel-safe: bytes read are
    /// kept for the next call.
    async fn next(&mut self, read: &mut (impl AsyncRead + Unpin)) -> Result<Option<Request>, End> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if line.trim_ascii().is_empty() {
                    continue;
                }
                return parse_request(&line).map(Some).ok_or(End::Invalid);
            }
            if self.buf.len() > MAX_REQUEST {
                return Err(End::TooLong);
            }
            let mut chunk = [0u8; 1024];
            let n = read.read(&mut chunk).await?;
            if n == 0 {
                // A last request without its newline still counts.
                let rest = std::mem::take(&mut self.buf);
                return match rest.trim_ascii().is_empty() {
                    true => Ok(None),
                    false => parse_request(&rest).map(Some).ok_or(End::Invalid),
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Asks the broker listening on the monitor socket at `path` to drain (`remoteproxy drain`);
/// `Ok` once it answered that it does.
pub fn request_drain(path: &std::path::Path) -> io::Result<()> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(WRITE_TIMEOUT))?;
    stream.write_all(b"{\"method\":\"drain\"}\n")?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    match line.trim() {
        r#"{"draining":true}"# => Ok(()),
        "" => Err(io::Error::other("the broker closed the socket without an answer")),
        other => Err(io::Error::other(format!("unexpected answer {other}"))),
    }
}

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// A snapshot, with every connection listed when `printAll`.
    Refresh(bool),
    /// The graceful stop.
    Drain,
}

/// A valid request; `None` for anything else.
fn parse_request(line: &[u8]) -> Option<Request> {
    let request: Value = serde_json::from_slice(line).ok()?;
    match request.get("method")?.as_str()? {
        "drain" => return Some(Request::Drain),
        "refresh" => {}
        _ => return None,
    }
    let print_all = match request.get("params") {
        None | Some(Value::Null) => false,
        Some(Value::Object(params)) => match params.get("printAll") {
            None => false,
            Some(print_all) => print_all.as_bool()?,
        },
        Some(_) => return None,
    };
    Some(Request::Refresh(print_all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_refresh_with_an_optional_print_all() {
        let refresh = |print_all| Some(Request::Refresh(print_all));
        assert_eq!(parse_request(br#"{"method":"refresh"}"#), refresh(false));
        assert_eq!(parse_request(b"{\"method\":\"refresh\",\"params\":{}}\n"), refresh(false));
        assert_eq!(parse_request(br#"{"method":"refresh","params":{"printAll":true}}"#), refresh(true));
        assert_eq!(
            parse_request(br#"{"id":1,"method":"refresh","params":{"printAll":false}}"#),
            refresh(false)
        );
        assert_eq!(parse_request(br#"{"method":"drain"}"#), Some(Request::Drain));
        for bad in [
            &br#"{"method":"Refresh"}"#[..],
            br#"{"method":"refresh","params":{"printAll":1}}"#,
            br#"{"method":"refresh","params":[]}"#,
            br#"{"params":{}}"#,
            br#"[]"#,
            b"refresh",
            b"",
        ] {
            assert_eq!(parse_request(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn request_lines_are_split_skipped_when_blank_and_bounded() {
        let mut requests = Requests::default();
        let input =
            b"\n{\"method\":\"refresh\"}\n  \n{\"method\":\"refresh\",\"params\":{\"printAll\":true}}";
        let mut read = &input[..];
        assert_eq!(requests.next(&mut read).await.unwrap(), Some(Request::Refresh(false)));
        assert_eq!(requests.next(&mut read).await.unwrap(), Some(Request::Refresh(true)));
        assert_eq!(requests.next(&mut read).await.unwrap(), None);

        let long = vec![b' '; MAX_REQUEST + 2];
        let mut read = &long[..];
        assert!(matches!(Requests::default().next(&mut read).await, Err(End::TooLong)));
        let mut read = &b"{\"method\":\"stop\"}\n"[..];
        assert!(matches!(Requests::default().next(&mut read).await, Err(End::Invalid)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_is_dropped_after_the_write_timeout() {
        let stats = Stats::new("n", Vec::new());
        // Less room than one snapshot: the first push cannot be written.
        let (_client, broker) = tokio::io::duplex(64);
        let (read, write) = tokio::io::split(broker);
        let start = Instant::now();
        assert!(matches!(run(read, write, &stats, &CancellationToken::new()).await, Err(End::SlowReader)));
        assert_eq!(start.elapsed(), REQUEST_GRACE + WRITE_TIMEOUT);
    }
}
