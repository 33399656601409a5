//! Reloading without a restart, next to the stop signals of [`crate::shutdown`]. SIGHUP rereads
//! what the authenticator loaded from disk (a token file, keys), the TLS certificate and key, the
//! rendezvous listener's certificate, CA and policy file, and `[ProxyServer] logLevel` from the
//! configuration file (its other keys need a restart);
//! the certificate files are also watched, so a renewal (certbot's symlink swap included) needs
//! nothing from the operator. New handshakes get the new certificate; running tunnels are not
//! touched. A reload that fails keeps the previous state and says why in one line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use remoteproxy_authenticators::Authenticator;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::logging::LogLevel;
use crate::rendezvous::RendezvousFiles;
use crate::transport::certificate::{CertificateFiles, seconds_until};

/// What a reload rereads.
#[derive(Clone)]
pub struct Reloader {
    authenticator: Arc<dyn Authenticator>,
    certificate: Option<Arc<CertificateFiles>>,
    rendezvous: Option<Arc<RendezvousFiles>>,
    /// The log's filter and the file its `[ProxyServer] logLevel` is read from again.
    log: Option<(Arc<LogLevel>, PathBuf)>,
}

impl Reloader {
    pub(crate) fn new(
        authenticator: Arc<dyn Authenticator>,
        certificate: Option<Arc<CertificateFiles>>,
        rendezvous: Option<Arc<RendezvousFiles>>,
    ) -> Self {
        Reloader { authenticator, certificate, rendezvous, log: None }
    }

    /// A reload also applies `[ProxyServer] logLevel` from `file` (read again; with built-in
    /// defaults there is nothing to reread).
    pub fn log_level_from(&mut self, level: LogLevel, file: Option<PathBuf>) {
        self.log = file.map(|file| (Arc::new(level), file));
    }

    /// Rereads everything; what fails keeps its previous state. `why` starts the log lines.
    pub fn reload_all(&self, why: &str) {
        match self.authenticator.reload() {
            Ok(()) => info!("{why}: authenticator reloaded"),
            Err(error) => warn!(%error, "{why}: authenticator reload failed; keeping the previous state"),
        }
        if let Some(files) = &self.certificate {
            reload_certificate(files, why);
        }
        if let Some(files) = &self.rendezvous {
            match files.reload() {
                Ok(()) => {
                    info!("{why}: rendezvous certificate, CA and policy reloaded; new peers meet under them")
                }
                Err(problem) => error!(
                    "{why}: the rendezvous files were not reloaded, the previous ones stay in use: {problem}"
                ),
            }
        }
        if let Some((level, file)) = &self.log {
            // Only the level is taken from the file; other keys need a restart.
            match crate::config::load_file(file) {
                Ok(config) if level.set(&config.server.log_level) => {
                    info!(level = %config.server.log_level, "{why}: log level applied")
                }
                Ok(_) => info!("{why}: log level left as RUST_LOG or --verbose set it"),
                Err(problem) => error!("{why}: the log level was not reloaded: {problem}"),
            }
        }
    }
}

fn reload_certificate(files: &CertificateFiles, why: &str) {
    match files.reload() {
        Ok(fingerprint) => {
            let days = files.expiry().map(|at| seconds_until(at) / 86_400).unwrap_or_default();
            info!(%fingerprint, expires_in_days = days, "{why}: TLS certificate reloaded; new handshakes use it");
        }
        Err(problem) => {
            error!("{why}: the TLS certificate was not reloaded, the previous one is still served: {problem}")
        }
    }
}

/// Reloads on every SIGHUP, telling the service manager (RELOADING=1 … READY=1). The handler is
/// installed when this is called (inside a runtime), not when the future first runs, so a SIGHUP
/// right after READY=1 reloads rather than ends the process.
pub fn on_hangup(reloader: Reloader) -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup());
    async move {
        let Ok(mut hangups) = hangups else { return };
        while hangups.recv().await.is_some() {
            crate::systemd::reloading();
            reloader.reload_all("SIGHUP");
            crate::systemd::reloaded();
        }
    }
}

/// Checks the certificate files every `interval` and reloads them when one changed, until `stop`.
/// A failed reload is reported once per change, not at every check.
pub(crate) async fn watch_certificate(
    files: Arc<CertificateFiles>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                if files.changed() {
                    reload_certificate(&files, "certificate files changed");
                }
            }
        }
    }
}
