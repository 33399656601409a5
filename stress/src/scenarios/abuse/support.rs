//! What every attack uses to watch the broker close a connection: where a connection goes, how
//! long the broker held it, reading until it closes (under a deadline), bounding each of our own
//! steps, and joining the attackers' tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::STEP;
use crate::tunnels::ms;

/// Where a connection goes.
pub(super) enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// How long the broker held a connection, bracketed: `most` counts from before the broker's timer
/// can have started (before the connect), `least` from after the step that starts it (the
/// connect, or the TLS handshake for the upgrade), both as seen by a task that may be scheduled
/// late. A close before the timer shows in `most`, a late one in `least`.
#[derive(Clone, Copy)]
pub(super) struct Held {
    pub(super) most: Duration,
    pub(super) least: Duration,
}

impl Held {
    /// Closed now, the connect started at `before`, the timer at about `after`.
    pub(super) fn since(before: Instant, after: Instant) -> Held {
        Held { most: before.elapsed(), least: after.elapsed() }
    }
}

/// Reads until the peer closes the stream (an end, a reset, a TLS error); the first 4 KiB it
/// sent, or `None` if it was still open after `limit`.
pub(super) async fn until_closed<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Option<Vec<u8>> {
    let mut said = Vec::new();
    let mut scratch = vec![0u8; 16 << 10];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let keep = n.min((4 << 10) - said.len().min(4 << 10));
                    said.extend_from_slice(&scratch[..keep]);
                }
            }
        }
    })
    .await
    .ok()
    .map(|()| said)
}

/// Reads until the peer closes `stream` ([`until_closed`]) for up to `limit`; if it is still
/// open then, how long it has been open since `since`.
pub(super) async fn closed_within<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
    since: Instant,
) -> Result<(), String> {
    match until_closed(stream, limit).await {
        Some(_) => Ok(()),
        None => Err(format!("still open after {}", ms(since.elapsed()))),
    }
}

/// `future` within [`STEP`], its error as text.
pub(super) async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no progress within {STEP:?}")),
    }
}

/// A spawned task's result, a panic in it as an error.
pub(super) async fn joined<T>(task: JoinHandle<Result<T, String>>) -> Result<T, String> {
    task.await.map_err(|e| e.to_string()).and_then(|r| r)
}
