//! Reloading without a restart: SIGHUP, next to the stop signals of [`crate::shutdown`]. What
//! can be reloaded gets its step here (today the authenticator's files; the certificate next).

use std::sync::Arc;

use remoteproxy_authenticators::Authenticator;
use tracing::{info, warn};

/// SIGHUP re-reads what the authenticator loaded from disk (a token file, keys); connections
/// are not touched.
pub async fn on_hangup(authenticator: Arc<dyn Authenticator>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else { return };
    while hangups.recv().await.is_some() {
        crate::systemd::reloading();
        match authenticator.reload() {
            Ok(()) => info!("SIGHUP: authenticator reloaded"),
            Err(error) => warn!(%error, "SIGHUP: authenticator reload failed; keeping the previous state"),
        }
        crate::systemd::reloaded();
    }
}
