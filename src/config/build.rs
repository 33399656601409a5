//! The typed build: a parsed [`Document`] on top of [`Config::default`], every value checked,
//! every mistake one [`ConfigError`] naming its section and key.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use remoteproxy_authenticators::config::{self as authentication_config, BrokerFacts, SettingsSource};

use super::error::{ConfigError, shown};
use super::ini::{Document, decode};
use super::{Config, ListenerSettings};

/// Reads and parses the configuration file at `path`. The result's `source` is `Some(path)`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
    let text = decode(bytes, path)?;
    let mut config = parse_str(&text, path)?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// Parses configuration text. Keys not given keep the defaults of [`Config::default`]. `path` is
/// only used in error messages; the result's `source` is left `None` ([`load_file`] sets it).
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let doc = Document::parse(text, path)?;
    doc.check_names()?;
    doc.build()
}

/// The file as the authenticators read their sections (see `remoteproxy_authenticators::config`).
impl SettingsSource for Document<'_> {
    type Error = ConfigError;

    fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|name| name == section)
    }

    fn text(&self, section: &str, key: &str) -> Option<&str> {
        self.get(section, key)
    }

    fn boolean(&self, section: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        self.bool(section, key)
    }

    fn number(
        &self,
        section: &str,
        key: &str,
        unit: Option<&str>,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        Document::number(self, section, key, unit, max)
    }

    fn millis(&self, section: &str, key: &str) -> Result<Option<Duration>, ConfigError> {
        Document::millis(self, section, key)
    }

    fn bad(&self, section: &str, key: &str, problem: String) -> ConfigError {
        Document::bad(self, section, key, problem)
    }

    fn shown(&self, key: &str, value: &str) -> String {
        shown(key, value)
    }
}

impl Document<'_> {
    /// Interprets the entries on top of the defaults.
    fn build(&self) -> Result<Config, ConfigError> {
        let mut config = Config::default();

        const PS: &str = "ProxyServer";
        let server = &mut config.server;
        if let Some(name) = self.get(PS, "name") {
            server.name = name.to_string();
        }
        if let Some(value) = self.bool(PS, "writeLogs")? {
            server.write_logs = value;
        }
        if let Some(value) = self.get(PS, "logFile") {
            if value.is_empty() {
                return Err(self.bad(PS, "logFile", "must not be empty (give a file path)"));
            }
            server.log_file = PathBuf::from(value);
        }
        if let Some(value) = self.bool(PS, "logEngineEnabled")? {
            server.log_engine_enabled = value;
        }
        if let Some(value) = self.optional_path(PS, "monitorSocket") {
            server.monitor_socket = value;
        }
        if let Some(value) = self.get(PS, "monitorSocketMode") {
            server.monitor_socket_mode =
                u32::from_str_radix(value, 8).ok().filter(|mode| *mode <= 0o777).ok_or_else(|| {
                    self.bad(
                        PS,
                        "monitorSocketMode",
                        format!("{} is not an octal mode like 0660", shown("monitorSocketMode", value)),
                    )
                })?;
        }
        for (key, slot) in [
            ("statisticsLogFile", &mut server.statistics_log_file),
            ("statisticsStateFile", &mut server.statistics_state_file),
        ] {
            if let Some(value) = self.get(PS, key) {
                if value.is_empty() {
                    return Err(self.bad(PS, key, "must not be empty (give a file path)"));
                }
                *slot = PathBuf::from(value);
            }
        }
        if let Some(value) = self.number(PS, "maxMessageSize", Some("bytes"), u64::MAX)? {
            if value < 256 {
                return Err(self.bad(PS, "maxMessageSize", "must be at least 256 bytes"));
            }
            server.max_message_size = to_usize(value);
        }
        if let Some(value) = self.number(PS, "maxConnections", None, u64::MAX)? {
            if value == 0 {
                return Err(self.bad(PS, "maxConnections", "must be at least 1"));
            }
            server.max_connections = to_usize(value);
        }
        if let Some(value) = self.millis(PS, "shutdownGracePeriod")? {
            server.shutdown_grace_period = value;
        }
        if let Some(value) = self.number(PS, "maxClientsPerServer", None, 0xFFFE)? {
            if value == 0 {
                return Err(self.bad(PS, "maxClientsPerServer", "must be at least 1"));
            }
            server.max_clients_per_server = to_usize(value);
        }

        let timeouts = &mut config.timeouts;
        for (key, slot) in [
            ("jsonRpcTimeout", &mut timeouts.json_rpc),
            ("authenticationTimeout", &mut timeouts.authentication),
            ("inactiveTimeout", &mut timeouts.inactive),
            ("aloneTimeout", &mut timeouts.alone),
            ("handshakeDeadline", &mut timeouts.handshake_deadline),
            ("tlsHandshakeTimeout", &mut timeouts.tls_handshake),
            ("tunnelProxyServerTimeout", &mut timeouts.tunnel_proxy_server),
        ] {
            if let Some(value) = self.millis(PS, key)? {
                if value.is_zero() {
                    return Err(self.bad(PS, key, "must be greater than 0 milliseconds"));
                }
                *slot = value;
            }
        }
        if let Some(value) = self.millis(PS, "tunnelIdleTimeout")? {
            timeouts.tunnel_idle = (!value.is_zero()).then_some(value);
        }

        const SSL: &str = "SSL";
        if let Some(value) = self.bool(SSL, "enabled")? {
            config.tls.enabled = value;
        }
        if let Some(value) = self.optional_path(SSL, "certificate") {
            config.tls.certificate = value;
        }
        if let Some(value) = self.optional_path(SSL, "certificateKey") {
            config.tls.certificate_key = value;
        }
        if let Some(value) = self.optional_path(SSL, "certificateChain") {
            config.tls.certificate_chain = value;
        }
        if let Some(value) = self.optional_path(SSL, "clientCaCertificate") {
            config.tls.client_ca = value;
        }
        if let Some(value) = self.bool(SSL, "clientCertificateRequired")? {
            config.tls.client_certificate_required = value;
        }

        self.listeners(&mut config.listeners, ["WebSocketServer", "TcpServer", "UnixSocketServer"])?;
        self.listeners(
            &mut config.tunnel_proxy_listeners,
            ["WebSocketServerTunnelProxy", "TcpServerTunnelProxy", "UnixSocketServerTunnelProxy"],
        )?;
        // Applied after the listener sections were read, so that their mistakes are still reported.
        if self.bool(PS, "proxyEnabled")? == Some(false) {
            config.listeners = ListenerSettings { websocket: None, tcp: None, unix: None };
        }
        self.check_distinct_addresses(&config)?;

        const METRICS: &str = "Metrics";
        if let Some(value) = self.bool(METRICS, "enabled")? {
            config.metrics.enabled = value;
        }
        if let Some(host) = self.get(METRICS, "host") {
            let ip = parse_ip(host).ok_or_else(|| {
                self.bad(METRICS, "host", format!("{} is not an IP address literal", shown("host", host)))
            })?;
            config.metrics.address.set_ip(ip);
        }
        if let Some(port) = self.number(METRICS, "port", None, 65535)? {
            config.metrics.address.set_port(port as u16);
        }
        let facts = BrokerFacts {
            client_ca_configured: config.tls.enabled && config.tls.client_ca.is_some(),
            authentication_timeout: config.timeouts.authentication,
        };
        config.authentication = authentication_config::read(self, facts)?;
        config.authentication_implied =
            config.authentication.is_some() && self.get("Authentication", "type").is_none_or(str::is_empty);
        Ok(config)
    }

    /// Applies the `[WebSocket...]`, `[Tcp...]` and `[UnixSocket...]` sections named in `names`.
    fn listeners(
        &self,
        listeners: &mut ListenerSettings,
        [websocket, tcp, unix]: [&str; 3],
    ) -> Result<(), ConfigError> {
        listeners.websocket = self.socket_address(websocket, listeners.websocket)?;
        listeners.tcp = self.socket_address(tcp, listeners.tcp)?;
        if let Some(value) = self.optional_path(unix, "unixSocketFileName") {
            listeners.unix = value;
        }
        Ok(())
    }

    /// `host` and `port` of one section on top of `default`. An empty host disables the
    /// listener; a key not given keeps the default's part.
    fn socket_address(
        &self,
        section: &str,
        default: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        let port = match self.get(section, "port") {
            None => None,
            Some(value) => {
                let port = value.parse::<u16>().ok().filter(|_| value.bytes().all(|b| b.is_ascii_digit()));
                match port {
                    Some(port) => Some(port),
                    None => {
                        return Err(self.bad(
                            section,
                            "port",
                            format!("{} is not a port number (0 to 65535)", shown("port", value)),
                        ));
                    }
                }
            }
        };
        let host = match self.get(section, "host") {
            None => None,
            Some("") => return Ok(None),
            Some(value) => match parse_ip(value) {
                Some(ip) => Some(ip),
                None => {
                    return Err(self.bad(
                        section,
                        "host",
                        format!(
                            "{} is not an IP address literal (for example 127.0.0.1, 0.0.0.0, ::1 or [::])",
                            shown("host", value)
                        ),
                    ));
                }
            },
        };
        match (host, port, default) {
            (None, None, default) => Ok(default),
            (Some(ip), Some(port), _) => Ok(Some(SocketAddr::new(ip, port))),
            (Some(ip), None, Some(default)) => Ok(Some(SocketAddr::new(ip, default.port()))),
            (None, Some(port), Some(default)) => Ok(Some(SocketAddr::new(default.ip(), port))),
            // No built-in default for this listener: both keys are needed.
            (Some(_), None, None) => Err(self.bad(section, "port", "missing (give host and port)")),
            (None, Some(_), None) => Err(self.bad(section, "host", "missing (give host and port)")),
        }
    }

    /// Two TCP listeners on one address would fail at bind with a less helpful message.
    fn check_distinct_addresses(&self, config: &Config) -> Result<(), ConfigError> {
        let all = [
            ("WebSocketServer", config.listeners.websocket),
            ("TcpServer", config.listeners.tcp),
            ("WebSocketServerTunnelProxy", config.tunnel_proxy_listeners.websocket),
            ("TcpServerTunnelProxy", config.tunnel_proxy_listeners.tcp),
        ];
        for (index, (section, address)) in all.iter().enumerate() {
            let Some(address) = address.filter(|a| a.port() != 0) else {
                continue;
            };
            if let Some((other, _)) = all[..index].iter().find(|(_, a)| *a == Some(address)) {
                return Err(self.bad(section, "port", format!("{address} is already used by [{other}]")));
            }
        }
        Ok(())
    }
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// An IPv4 or IPv6 literal; IPv6 bare (`::1`) or bracketed (`[::1]`). Host names are not
/// resolved: the reference passed the text to `QHostAddress`, which takes literals only.
fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse::<IpAddr>().ok()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
