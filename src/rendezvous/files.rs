//! The rendezvous listener's files: its certificate and key, the CA peers' certificates must
//! chain to, and the policy file. SIGHUP reads them all again (`crate::reload`), so a renewed
//! certificate, a new CA or a new subject in the policy needs no restart. A reload that fails
//! anywhere keeps everything as it was, so a mistake in one file never leaves a half-applied
//! set (a new CA with the old policy). What a peer is checked against: the CA of the moment its
//! handshake started, and the policy of the moment its session starts (after the upgrade), so a
//! peer that was in its handshake during a reload meets the new policy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use super::Policy;
use crate::config::{ConfigError, RendezvousSettings};
use crate::transport::accept::ServerTls;
use crate::transport::tls;

/// What the listener accepts with and the policy its sessions check.
pub struct RendezvousFiles {
    settings: RendezvousSettings,
    /// The configuration file, for error messages.
    source: Option<PathBuf>,
    tls: ServerTls,
    policy: RwLock<Option<Arc<Policy>>>,
}

impl RendezvousFiles {
    /// Reads the files `settings` name; the error says which key's file is wrong and why.
    pub fn load(
        settings: &RendezvousSettings,
        source: Option<&Path>,
    ) -> Result<RendezvousFiles, ConfigError> {
        let (config, policy) = read(settings, source)?;
        Ok(RendezvousFiles {
            settings: settings.clone(),
            source: source.map(Path::to_path_buf),
            tls: ServerTls::new(config),
            policy: RwLock::new(policy),
        })
    }

    /// What the listener's handshakes use.
    pub fn tls(&self) -> ServerTls {
        self.tls.clone()
    }

    /// The policy file as last read (`None`: no `policyFile`, anyone may meet anywhere).
    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.policy.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads every file again and applies them together, or none of them.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let (config, policy) = read(&self.settings, self.source.as_deref())?;
        self.tls.replace(config);
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = policy;
        Ok(())
    }
}

fn read(
    settings: &RendezvousSettings,
    source: Option<&Path>,
) -> Result<(Arc<rustls::ServerConfig>, Option<Arc<Policy>>), ConfigError> {
    let config = tls::load_rendezvous(settings, source)?;
    let policy =
        match &settings.policy_file {
            None => None,
            Some(path) => Some(Arc::new(Policy::load(path).map_err(|problem| {
                ConfigError::bad_value(source, "RendezvousServer", "policyFile", problem)
            })?)),
        };
    Ok((config, policy))
}
