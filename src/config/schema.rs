//! The sections and keys a file may have: the one list the unknown-name checks and their messages
//! read.

use super::error::ConfigError;
use super::ini::Document;

/// The broker's own sections and their keys; the authenticators list theirs
/// (`remoteproxy_authenticators::config::SECTIONS`). The order is the one used in messages.
const SCHEMA: &[(&str, &[&str])] = &[
    (
        "ProxyServer",
        &[
            "name",
            "writeLogs",
            "logFile",
            "logEngineEnabled",
            "monitorSocket",
            "jsonRpcTimeout",
            "authenticationTimeout",
            "inactiveTimeout",
            "aloneTimeout",
            "proxyEnabled",
            "maxMessageSize",
            "tunnelIdleTimeout",
            "maxConnections",
            "shutdownGracePeriod",
            "handshakeDeadline",
            "tlsHandshakeTimeout",
            "maxClientsPerServer",
            "tunnelProxyServerTimeout",
            "monitorSocketMode",
            "statisticsLogFile",
            "statisticsStateFile",
        ],
    ),
    (
        "SSL",
        &[
            "enabled",
            "certificate",
            "certificateKey",
            "certificateChain",
            "clientCaCertificate",
            "clientCertificateRequired",
        ],
    ),
    ("WebSocketServer", &["host", "port"]),
    ("TcpServer", &["host", "port"]),
    ("UnixSocketServer", &["unixSocketFileName"]),
    ("WebSocketServerTunnelProxy", &["host", "port"]),
    ("TcpServerTunnelProxy", &["host", "port"]),
    ("UnixSocketServerTunnelProxy", &["unixSocketFileName"]),
    ("Metrics", &["enabled", "host", "port"]),
];

/// Qt's name for the keys before the first section header. It has no keys of ours.
pub(super) const GENERAL: &str = "General";

pub(super) fn known_sections() -> String {
    all_sections().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// Every section: the broker's, then the authenticators'.
fn all_sections() -> impl Iterator<Item = &'static (&'static str, &'static [&'static str])> {
    SCHEMA.iter().chain(remoteproxy_authenticators::config::SECTIONS)
}

pub(super) fn keys_of(section: &str) -> Option<&'static [&'static str]> {
    all_sections().find(|(name, _)| *name == section).map(|(_, keys)| *keys)
}

impl Document<'_> {
    /// Rejects unknown sections, then unknown keys, each in file order.
    pub(super) fn check_names(&self) -> Result<(), ConfigError> {
        for section in &self.sections {
            if section != GENERAL && keys_of(section).is_none() {
                return Err(ConfigError::UnknownSection {
                    path: self.path.to_path_buf(),
                    section: section.clone(),
                });
            }
        }
        for entry in &self.entries {
            let known = keys_of(&entry.section).unwrap_or(&[]);
            if !known.contains(&entry.key.as_str()) {
                let hint = if entry.section == GENERAL {
                    format!("keys must be inside a section; known sections: {}", known_sections())
                } else {
                    format!("known keys: {}", known.join(", "))
                };
                return Err(ConfigError::UnknownKey {
                    path: self.path.to_path_buf(),
                    section: entry.section.clone(),
                    key: entry.key.clone(),
                    hint,
                });
            }
        }
        Ok(())
    }
}
