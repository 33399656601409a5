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

/// Makes SIGXFSZ harmless. Its default action kills the process when a write passes the
/// file-size limit (`LimitFSIZE=`, `ulimit -f`); with a handler installed the write fails with
/// `EFBIG` instead, which the statistics log and the log file handle like a full disk. tokio's
/// handler stays installed for the life of the process (it is never uninstalled), and needs no
/// unsafe code.
pub fn survive_file_size_limit() {
    #[cfg(target_os = "linux")]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let number = rustix::process::Signal::XFSZ.as_raw();
        if let Err(error) = signal(SignalKind::from_raw(number)) {
            warn!(%error, "cannot catch SIGXFSZ; a file-size limit would stop the broker");
        }
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
