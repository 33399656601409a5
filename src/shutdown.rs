//! Stopping: the signals that start it and the drain that finishes it.
//!
//! On SIGINT or SIGTERM the broker stops accepting and closes every connection that is not yet a
//! tunnel (WebSocket close 1000 `Stop server`). Established tunnels may run on for
//! `shutdownGracePeriod`, so a restart does not cut a user's session mid-transfer when it can be
//! avoided; whatever is left after that is closed too.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// How long closing handshakes may take once the grace period is over.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        _ = terminate.recv() => info!("SIGTERM received"),
    }
}

/// Waits for the tracked connection tasks: up to `grace` on their own, then cancels `hard_stop`
/// (tunnels close) and waits a little longer for the closing handshakes.
pub async fn drain(tracker: &TaskTracker, hard_stop: &CancellationToken, grace: Duration) {
    tracker.close();
    if !tracker.is_empty() {
        info!(connections = tracker.len(), "waiting up to {grace:?} for tunnels to finish");
    }
    if tokio::time::timeout(grace, tracker.wait()).await.is_ok() {
        return;
    }
    info!(connections = tracker.len(), "grace period over; closing the remaining tunnels");
    hard_stop.cancel();
    if tokio::time::timeout(CLOSE_TIMEOUT, tracker.wait()).await.is_err() {
        warn!(connections = tracker.len(), "connections still closing; exiting anyway");
    }
}
