//! The typed build: a parsed [`Document`] on top of [`Config::default`], every value checked,
//! every mistake one [`ConfigError`] naming its section and key.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use remoteproxy_authenticators::config::{self as authentication_config, BrokerFacts, SettingsSource};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{ConfigError, shown};
use super::ini::{Document, decode};
use super::schema::declared;
use super::trusted::Trusted;
use super::{
    ClusterSettings, Config, LimitsSettings, ListenerSettings, MetricsSettings, RedisTls, RendezvousSettings,
    ServerSettings, Timeouts, TlsSettings,
};

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

impl Document<'_> {
    /// Interprets the entries, and the declared defaults of the keys the file does not give.
    fn build(&self) -> Result<Config, ConfigError> {
        const PS: &str = "ProxyServer";
        let millis = |key| -> Result<Duration, ConfigError> { self.given(PS, key, self.millis(PS, key)?) };
        let timeout = |key| -> Result<Duration, ConfigError> {
            let value = millis(key)?;
            if value.is_zero() {
                return Err(self.bad(PS, key, "must be greater than 0 milliseconds"));
            }
            Ok(value)
        };
        let count = |key, min: u64, max| -> Result<usize, ConfigError> {
            let value = self.given(PS, key, self.number(PS, key, max)?)?;
            if value < min {
                let unit = declared(PS, key).and_then(|key| key.kind.unit());
                let unit = unit.map(|unit| format!(" {unit}")).unwrap_or_default();
                return Err(self.bad(PS, key, format!("must be at least {min}{unit}")));
            }
            Ok(usize::try_from(value).unwrap_or(usize::MAX))
        };
        let server = ServerSettings {
            name: self.given(PS, "name", self.get(PS, "name"))?.to_string(),
            write_logs: self.flag(PS, "writeLogs")?,
            log_file: self.file(PS, "logFile")?,
            log_level: self.log_level(PS, "logLevel")?,
            log_engine_enabled: self.flag(PS, "logEngineEnabled")?,
            monitor_socket: self.optional_path(PS, "monitorSocket").flatten(),
            monitor_socket_mode: self.mode(PS, "monitorSocketMode")?,
            monitor_socket_group: self.non_empty(PS, "monitorSocketGroup").map(str::to_string),
            statistics_log_file: self.file(PS, "statisticsLogFile")?,
            statistics_state_file: self.file(PS, "statisticsStateFile")?,
            max_message_size: count("maxMessageSize", 256, u64::MAX)?,
            max_connections: count("maxConnections", 1, u64::MAX)?,
            shutdown_grace_period: millis("shutdownGracePeriod")?,
            max_clients_per_server: count("maxClientsPerServer", 1, 0xFFFE)?,
            health_check_path: match self.non_empty(PS, "healthCheckPath") {
                Some(path) if !path.starts_with('/') || path.chars().any(char::is_whitespace) => {
                    return Err(self.bad(
                        PS,
                        "healthCheckPath",
                        "must be a path starting with / and without spaces",
                    ));
                }
                path => path.map(str::to_string),
            },
        };
        let timeouts = Timeouts {
            json_rpc: timeout("jsonRpcTimeout")?,
            authentication: timeout("authenticationTimeout")?,
            inactive: timeout("inactiveTimeout")?,
            alone: timeout("aloneTimeout")?,
            tunnel_idle: Some(millis("tunnelIdleTimeout")?).filter(|value| !value.is_zero()),
            handshake_deadline: timeout("handshakeDeadline")?,
            tls_handshake: timeout("tlsHandshakeTimeout")?,
            tunnel_proxy_server: timeout("tunnelProxyServerTimeout")?,
            keep_alive_interval: Some(millis("keepAliveInterval")?).filter(|value| !value.is_zero()),
            keep_alive_timeout: timeout("keepAliveTimeout")?,
        };

        const SSL: &str = "SSL";
        let tls = TlsSettings {
            enabled: self.flag(SSL, "enabled")?,
            certificate: self.optional_path(SSL, "certificate").flatten(),
            certificate_key: self.optional_path(SSL, "certificateKey").flatten(),
            certificate_chain: self.optional_path(SSL, "certificateChain").flatten(),
            certificate_check_interval: Some(self.given(
                SSL,
                "certificateCheckInterval",
                self.millis(SSL, "certificateCheckInterval")?,
            )?)
            .filter(|interval| !interval.is_zero()),
            client_ca: self.optional_path(SSL, "clientCaCertificate").flatten(),
            client_certificate_required: self.flag(SSL, "clientCertificateRequired")?,
            session_resumption: self.flag(SSL, "sessionResumption")?,
            ticket_key_rotation: {
                let seconds =
                    self.given(SSL, "ticketKeyRotation", self.number(SSL, "ticketKeyRotation", 31_536_000)?)?;
                if seconds == 0 {
                    return Err(self.bad(SSL, "ticketKeyRotation", "must be at least 1 second"));
                }
                Duration::from_secs(seconds)
            },
            ticket_key_file: self.optional_path(SSL, "ticketKeyFile").flatten(),
        };

        let mut listeners = self.listeners(["WebSocketServer", "TcpServer", "UnixSocketServer"])?;
        let tunnel_proxy_listeners = self.listeners([
            "WebSocketServerTunnelProxy",
            "TcpServerTunnelProxy",
            "UnixSocketServerTunnelProxy",
        ])?;
        // Applied after the listener sections were read, so that their mistakes are still reported.
        if !self.flag(PS, "proxyEnabled")? {
            listeners = ListenerSettings { websocket: None, tcp: None, unix: None, ..listeners };
        }

        const METRICS: &str = "Metrics";
        let host = self.given(METRICS, "host", self.get(METRICS, "host"))?;
        let ip = parse_ip(host).ok_or_else(|| {
            self.bad(METRICS, "host", format!("{} is not an IP address literal", shown("host", host)))
        })?;
        let port = self.given(METRICS, "port", self.number(METRICS, "port", 65535)?)?;
        let metrics = MetricsSettings {
            enabled: self.flag(METRICS, "enabled")?,
            address: SocketAddr::new(ip, port as u16),
        };

        const LIMITS: &str = "Limits";
        let limit = |key| -> Result<Option<u64>, ConfigError> {
            let value = self.given(LIMITS, key, self.number(LIMITS, key, u64::from(u32::MAX))?)?;
            Ok((value > 0).then_some(value))
        };
        let prefix = self.given(LIMITS, "ipv6PrefixLength", self.number(LIMITS, "ipv6PrefixLength", 128)?)?;
        let limits = LimitsSettings {
            max_connections_per_ip: limit("maxConnectionsPerIp")?.map(|n| n as u32),
            max_new_connections_per_ip_per_second: limit("maxNewConnectionsPerIpPerSecond")?
                .map(|n| n as u32),
            ipv6_prefix_length: prefix as u8,
            max_pending_handshakes: limit("maxPendingHandshakes")?.map(|n| n as usize),
            max_tunnels_per_token: limit("maxTunnelsPerToken")?.map(|n| n as usize),
        };

        let proxy_protocol = self.proxy_protocol()?;
        let rendezvous = self.rendezvous()?;
        let cluster = self.cluster()?;

        let facts = BrokerFacts {
            client_ca_configured: tls.enabled && tls.client_ca.is_some(),
            authentication_timeout: timeouts.authentication,
        };
        let authentication = authentication_config::read(self, facts)?;
        let authentication_implied =
            authentication.is_some() && self.get("Authentication", "type").is_none_or(str::is_empty);
        let config = Config {
            source: None,
            server,
            timeouts,
            tls,
            listeners,
            tunnel_proxy_listeners,
            metrics,
            limits,
            proxy_protocol,
            rendezvous,
            cluster,
            authentication,
            authentication_implied,
        };
        self.check_distinct_addresses(&config)?;
        Ok(config)
    }

    /// `[RendezvousServer]` when its host is given: the files it needs, a sane prefix.
    fn rendezvous(&self) -> Result<Option<RendezvousSettings>, ConfigError> {
        const SECTION: &str = "RendezvousServer";
        let Some(address) = self.socket_address(SECTION)? else { return Ok(None) };
        let prefix = self.given(SECTION, "pathPrefix", self.get(SECTION, "pathPrefix"))?;
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.chars().any(char::is_whitespace) {
            return Err(self.bad(SECTION, "pathPrefix", "must start and end with / and have no spaces"));
        }
        let required = |key: &str| match self.optional_path(SECTION, key).flatten() {
            Some(path) => Ok(path),
            None => Err(self.bad(SECTION, key, "is required when host is given (a PEM file)")),
        };
        let count = |key: &str| -> Result<usize, ConfigError> {
            let value = self.given(SECTION, key, self.number(SECTION, key, u64::from(u32::MAX))?)?;
            Ok(value as usize)
        };
        let millis = |key: &str| self.given(SECTION, key, self.millis(SECTION, key)?);
        Ok(Some(RendezvousSettings {
            address,
            path_prefix: prefix.to_string(),
            certificate: required("certificate")?,
            certificate_key: self.optional_path(SECTION, "certificateKey").flatten(),
            ca_certificate: required("caCertificate")?,
            hello_timeout: millis("helloTimeout")?.max(std::time::Duration::from_millis(1)),
            alone_timeout: Some(millis("aloneTimeout")?).filter(|d| !d.is_zero()),
            max_held_messages: count("maxHeldMessages")?,
            max_held_bytes: count("maxHeldBytes")?,
            policy_file: self.optional_path(SECTION, "policyFile").flatten(),
        }))
    }

    /// `[Cluster]` when enabled: a Redis URL, a node id, where the relay listens and is reached,
    /// and a secret long enough to be one.
    fn cluster(&self) -> Result<Option<ClusterSettings>, ConfigError> {
        const SECTION: &str = "Cluster";
        if !self.flag(SECTION, "enabled")? {
            return Ok(None);
        }
        let text = |key: &str| self.given(SECTION, key, self.get(SECTION, key)).map(str::trim);
        let redis_url = text("redisUrl")?;
        if !["redis://", "rediss://", "unix://"].iter().any(|scheme| redis_url.starts_with(scheme)) {
            return Err(self.bad(SECTION, "redisUrl", "must be a redis://, rediss:// or unix:// URL"));
        }
        let redis_tls = self.redis_tls(redis_url.starts_with("rediss://"))?;
        let node_id = match text("nodeId")? {
            "" => nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .filter(|name| !name.is_empty())
                .ok_or_else(|| self.bad(SECTION, "nodeId", "is empty and the host name cannot be read"))?,
            id => id.to_string(),
        };
        if node_id.len() > 64 || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(self.bad(SECTION, "nodeId", "must be up to 64 letters, digits, '-', '_' or '.'"));
        }
        let relay_address = self.relay_address(SECTION)?;
        let advertise_address = match text("advertiseAddress")? {
            "" if relay_address.ip().is_unspecified() => {
                return Err(self.bad(
                    SECTION,
                    "advertiseAddress",
                    "is required when relayHost listens on every address (give the host:port other nodes dial)",
                ));
            }
            "" => None,
            given if given.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()) => {
                return Err(self.bad(SECTION, "advertiseAddress", "must be host:port"));
            }
            given => Some(given.to_string()),
        };
        let secret = match self.optional_path(SECTION, "secretFile").flatten() {
            Some(path) => std::fs::read_to_string(&path)
                .map_err(|error| {
                    self.bad(SECTION, "secretFile", format!("{}: cannot be read: {error}", path.display()))
                })?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            None => text("secret")?.to_string(),
        };
        if secret.chars().count() < 16 {
            return Err(self.bad(
                SECTION,
                "secret",
                "must be at least 16 characters, the same on every node (or give secretFile)",
            ));
        }
        let heartbeat_interval =
            self.given(SECTION, "heartbeatInterval", self.millis(SECTION, "heartbeatInterval")?)?;
        if heartbeat_interval < Duration::from_millis(100) {
            return Err(self.bad(SECTION, "heartbeatInterval", "must be at least 100 milliseconds"));
        }
        let key_prefix = text("redisKeyPrefix")?;
        if key_prefix.len() > 64 || key_prefix.chars().any(|c| c.is_whitespace() || "*?[]\\".contains(c)) {
            return Err(self.bad(
                SECTION,
                "redisKeyPrefix",
                "must be up to 64 characters without spaces or any of * ? [ ] \\",
            ));
        }
        Ok(Some(ClusterSettings {
            redis_url: remoteproxy_authenticators::Secret::new(redis_url),
            redis_tls,
            key_prefix: key_prefix.to_string(),
            node_id,
            relay_address,
            advertise_address,
            secret: remoteproxy_authenticators::Secret::new(secret),
            heartbeat_interval,
        }))
    }

    /// `[Cluster] redisCaCertificate`, `redisCertificate`, `redisCertificateKey`: read now, so
    /// a missing or wrong file is a configuration error naming its key, not a Redis outage.
    fn redis_tls(&self, tls: bool) -> Result<Option<RedisTls>, ConfigError> {
        const SECTION: &str = "Cluster";
        // The bytes, once they parse as what the key names (the redis crate parses them again
        // when it connects, and would only say "redisUrl is not usable").
        let read = |key: &str, holds_key: bool| -> Result<Option<Vec<u8>>, ConfigError> {
            let Some(path) = self.optional_path(SECTION, key).flatten() else { return Ok(None) };
            if !tls {
                return Err(self.bad(SECTION, key, "is only used with a rediss:// redisUrl"));
            }
            let bytes = std::fs::read(&path).map_err(|error| {
                self.bad(SECTION, key, format!("{}: cannot be read: {error}", path.display()))
            })?;
            let parses = match holds_key {
                true => PrivateKeyDer::from_pem_slice(&bytes).is_ok(),
                false => {
                    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
                    certificates.is_ok_and(|certificates| !certificates.is_empty())
                }
            };
            if !parses {
                let what = if holds_key { "PEM private key" } else { "PEM certificate" };
                return Err(self.bad(SECTION, key, format!("{}: holds no {what}", path.display())));
            }
            Ok(Some(bytes))
        };
        let ca_certificate = read("redisCaCertificate", false)?;
        let client = match (read("redisCertificate", false)?, read("redisCertificateKey", true)?) {
            (None, None) => None,
            (Some(certificate), Some(key)) => Some((
                certificate,
                remoteproxy_authenticators::Secret::new(String::from_utf8_lossy(&key).into_owned()),
            )),
            (Some(_), None) => {
                return Err(self.bad(SECTION, "redisCertificateKey", "is required with redisCertificate"));
            }
            (None, Some(_)) => {
                return Err(self.bad(SECTION, "redisCertificate", "is required with redisCertificateKey"));
            }
        };
        Ok(tls.then_some(RedisTls { ca_certificate, client }))
    }

    /// `[Cluster] relayHost` and `relayPort`.
    fn relay_address(&self, section: &str) -> Result<SocketAddr, ConfigError> {
        let host = self.given(section, "relayHost", self.get(section, "relayHost"))?;
        let ip = parse_ip(host).ok_or_else(|| {
            self.bad(
                section,
                "relayHost",
                format!("{} is not an IP address literal", shown("relayHost", host)),
            )
        })?;
        let port = self.given(section, "relayPort", self.number(section, "relayPort", 65535)?)?;
        Ok(SocketAddr::new(ip, port as u16))
    }

    /// `[ProxyProtocol]`: the trusted senders when it is on (at least one).
    fn proxy_protocol(&self) -> Result<Option<Trusted>, ConfigError> {
        const SECTION: &str = "ProxyProtocol";
        if !self.flag(SECTION, "enabled")? {
            return Ok(None);
        }
        let list = self.given(SECTION, "trusted", self.get(SECTION, "trusted"))?;
        let trusted = Trusted::parse(list).map_err(|entry| {
            self.bad(
                SECTION,
                "trusted",
                format!("{} is not an IP address or prefix like 10.0.0.0/8", shown("trusted", &entry)),
            )
        })?;
        if trusted.is_empty() {
            return Err(self.bad(
                SECTION,
                "trusted",
                "must name the load balancers that send the header when enabled=true",
            ));
        }
        Ok(Some(trusted))
    }

    fn flag(&self, section: &str, key: &str) -> Result<bool, ConfigError> {
        self.given(section, key, self.boolean(section, key)?)
    }

    /// A path that must not be empty.
    fn file(&self, section: &str, key: &str) -> Result<PathBuf, ConfigError> {
        match self.given(section, key, self.get(section, key))? {
            "" => Err(self.bad(section, key, "must not be empty (give a file path)")),
            value => Ok(PathBuf::from(value)),
        }
    }

    /// A level (`debug`) or a filter (`info,remoteproxy=debug`), as `RUST_LOG` takes it.
    fn log_level(&self, section: &str, key: &str) -> Result<String, ConfigError> {
        let value = self.given(section, key, self.get(section, key))?;
        match tracing_subscriber::EnvFilter::try_new(value) {
            Ok(_) if !value.trim().is_empty() => Ok(value.to_string()),
            _ => Err(self.bad(
                section,
                key,
                format!(
                    "{} is not a log level or filter (error, warn, info, debug, trace, or a filter like info,remoteproxy=debug)",
                    shown(key, value)
                ),
            )),
        }
    }

    fn mode(&self, section: &str, key: &str) -> Result<u32, ConfigError> {
        let value = self.given(section, key, self.get(section, key))?;
        u32::from_str_radix(value, 8).ok().filter(|mode| *mode <= 0o777).ok_or_else(|| {
            self.bad(section, key, format!("{} is not an octal mode like 0660", shown(key, value)))
        })
    }

    /// The `[WebSocket...]`, `[Tcp...]` and `[UnixSocket...]` sections named.
    fn listeners(&self, [websocket, tcp, unix]: [&str; 3]) -> Result<ListenerSettings, ConfigError> {
        Ok(ListenerSettings {
            websocket: self.socket_address(websocket)?,
            tcp: self.socket_address(tcp)?,
            unix: self.optional_path(unix, "unixSocketFileName").flatten(),
            unix_mode: self.mode(unix, "unixSocketMode")?,
            unix_group: self.non_empty(unix, "unixSocketGroup").map(str::to_string),
        })
    }

    /// `host` and `port` of one section. An empty host disables the listener.
    fn socket_address(&self, section: &str) -> Result<Option<SocketAddr>, ConfigError> {
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
        match (host, port) {
            (Some(ip), Some(port)) => Ok(Some(SocketAddr::new(ip, port))),
            (None, None) => Ok(None),
            // A listener declared without a default needs both keys.
            (Some(_), None) => Err(self.bad(section, "port", "missing (give host and port)")),
            (None, Some(_)) => Err(self.bad(section, "host", "missing (give host and port)")),
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
