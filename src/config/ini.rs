//! The INI loader: nymea-remoteproxy's Qt `QSettings` file, read unchanged, into a [`Config`].
//!
//! A small hand parser rather than `rust-ini`: rust-ini silently joins a line that has no `=` with
//! the next line into one key (so a typo would surface as a baffling multi-line "unknown key"),
//! reads an indented comment as a key, takes `:` as a second key/value separator and strips single
//! quotes, none of which Qt does. The subset of Qt's format that a hand-written or Qt-written
//! configuration file uses is a few lines of code, and owning it means every syntax error has a
//! line number.
//!
//! What is accepted:
//! * `[Section]` headers, `key=value` lines, blank lines, and whole-line comments whose first
//!   non-blank character is `;` or `#`. There are no inline comments: `port=443 ; https` is the
//!   value `443 ; https`, which is then rejected as not a number rather than silently cut.
//! * Keys and section names are case-sensitive (the reference's are camelCase). Keys and values are
//!   trimmed. Keys before the first header belong to Qt's `[General]` group, which has no known
//!   keys; an empty `[General]` header (Qt writes one) is accepted.
//! * Values: a value in double quotes has the quotes removed (Qt quotes strings with leading or
//!   trailing blanks, `,` or `;`). Qt's backslash escapes are decoded inside and outside quotes
//!   (`\\`, `\"`, `\n`, `\t`, `\r`; any other `\c` is kept as written). Qt would read an unquoted
//!   value with a `,` as a string list; we keep it as one string.
//! * A key given twice: the last one wins. A section given twice: its keys are merged.
//! * Everything unknown (section or key) is an error, so a misspelt key never silently runs with a
//!   default.
//!
//! Every error is one line naming the file, the section and the key. Values are shown quoted and
//! escaped (so they stay on one line) and shortened, and never for a key that may hold a secret
//! (see `shown`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use remoteproxy_authenticators::Secret;

use super::{
    AuthenticationSettings, AwsLambdaSettings, CertificateSettings, Config, HttpSettings, JwtSettings,
    KindSettings, ListenerSettings, StaticSettings, SubjectField, ThrottleSettings,
};

/// Why a configuration could not be loaded. Every variant displays as one line that names the
/// file (and, where there is one, the section and key), ready to be printed as is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. The I/O error is part of the message and deliberately not
    /// exposed as `source()`, so that printing the error chain does not repeat it.
    #[error("{}: cannot read the configuration file: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file is not in INI syntax.
    #[error("{}: line {line}: {problem}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line.
        problem: String,
    },
    /// A `[Section]` this build does not know.
    #[error("{}: [{section}]: unknown section (known sections: {})", path.display(), known_sections())]
    UnknownSection {
        /// The file.
        path: PathBuf,
        /// The section as written.
        section: String,
    },
    /// A key that its section does not have.
    #[error("{}: [{section}] {key}: unknown key ({hint})", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The section (`General` for keys before the first header).
        section: String,
        /// The key as written.
        key: String,
        /// Which keys the section does take.
        hint: String,
    },
    /// A known key with a value that cannot be used.
    #[error("{}: [{section}] {key}: {problem}", display_file(file.as_deref()))]
    BadValue {
        /// The file; `None` when the value came from the built-in defaults.
        file: Option<PathBuf>,
        /// The section.
        section: String,
        /// The key.
        key: String,
        /// What is wrong. Must not contain the value of a secret key; build it with `shown`.
        problem: String,
    },
}

impl ConfigError {
    /// A value that cannot be used: `file: [section] key: problem`. `file` is `None` for the
    /// built-in defaults. Used by later stages too (e.g. TLS loading opens the `[SSL]` files).
    pub fn bad_value(file: Option<&Path>, section: &str, key: &str, problem: impl Into<String>) -> Self {
        ConfigError::BadValue {
            file: file.map(Path::to_path_buf),
            section: section.to_string(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}

fn display_file(file: Option<&Path>) -> String {
    match file {
        Some(path) => path.display().to_string(),
        None => "built-in defaults".to_string(),
    }
}

/// The sections and their keys. The order is the one used in messages.
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
    ("AWS", &["region", "authorizerLambdaFunction", "awsCredentialsUrl", "lambdaEndpoint"]),
    (
        "Authentication",
        &["type", "cacheTtl", "throttle", "throttleBaseDelay", "throttleMaxDelay", "requestTimeout"],
    ),
    ("HttpAuthenticator", &["url", "authorization", "caCertificate"]),
    ("StaticAuthenticator", &["file", "reloadInterval"]),
    ("JwtAuthenticator", &["jwks", "issuer", "audience", "userClaim", "leeway"]),
    ("CertificateAuthenticator", &["userName"]),
    ("Metrics", &["enabled", "host", "port"]),
];

/// Qt's name for the keys before the first section header. It has no keys of ours.
const GENERAL: &str = "General";

/// The reference broker's `[AWS]` defaults, so a 1.8.4 file plus `type=aws-lambda` works unchanged.
const AWS_DEFAULT_REGION: &str = "eu-west-1";
const AWS_DEFAULT_FUNCTION: &str = "system-services-authorizer-dev-checkToken";
const AWS_DEFAULT_CREDENTIALS_URL: &str =
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/EC2-Remote-Connection-Proxy-Role";

/// Keys whose names look secret by the rule of [`is_secret_key`] but hold something harmless.
const NOT_SECRET_KEYS: &[&str] = &["certificateKey"];

/// The longest excerpt of a value shown in a message, in characters.
const MAX_SHOWN_CHARS: usize = 64;

/// Longest timeout accepted (365 days), so that `Instant::now() + timeout` anywhere in the broker
/// can never overflow and panic.
const MAX_MILLIS: u64 = 365 * 24 * 60 * 60 * 1000;

fn known_sections() -> String {
    SCHEMA.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// Whether the value of `key` may be a secret and so must never appear in a message: any key whose
/// name contains "token", "password", "secret", "key" or "authorization", except those listed as
/// harmless (paths).
fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let looks_secret =
        ["token", "password", "secret", "key", "authorization"].iter().any(|word| lower.contains(word));
    looks_secret && !NOT_SECRET_KEYS.contains(&key)
}

/// How the value of `key` appears in a message: quoted and escaped so it stays on one line,
/// shortened if long, and replaced by `(hidden value)` if the key may hold a secret. Every message
/// that mentions a value goes through here.
pub(crate) fn shown(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        return "(hidden value)".to_string();
    }
    if value.chars().count() > MAX_SHOWN_CHARS {
        let head: String = value.chars().take(MAX_SHOWN_CHARS).collect();
        format!("{head:?}...")
    } else {
        format!("{value:?}")
    }
}

/// Reads and parses the configuration file at `path`. The result's `source` is `Some(path)`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
    let text = decode(bytes, path)?;
    let mut config = parse_str(&text, path)?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// The file's bytes as text: UTF-8 (what Qt writes), with an optional byte order mark.
fn decode(bytes: Vec<u8>, path: &Path) -> Result<String, ConfigError> {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(text)
        }
        Err(error) => {
            let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                problem: "the file is not valid UTF-8".to_string(),
            })
        }
    }
}

/// Parses configuration text. Keys not given keep the defaults of [`Config::default`]. `path` is
/// only used in error messages; the result's `source` is left `None` ([`load_file`] sets it).
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let doc = Document::parse(text, path)?;
    doc.check_names()?;
    doc.build()
}

/// One `key=value` line.
#[derive(Debug)]
struct Entry {
    section: String,
    key: String,
    value: String,
}

/// The file as parsed, before interpretation.
#[derive(Debug)]
struct Document<'a> {
    path: &'a Path,
    /// Section headers in file order (repeats included).
    sections: Vec<String>,
    /// Entries in file order; lookups take the last one, so the last duplicate wins.
    entries: Vec<Entry>,
}

impl<'a> Document<'a> {
    fn parse(text: &str, path: &'a Path) -> Result<Self, ConfigError> {
        let syntax = |line: usize, problem: &str| ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            problem: problem.to_string(),
        };
        let mut doc = Document { path, sections: Vec::new(), entries: Vec::new() };
        let mut section = GENERAL.to_string();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(syntax(
                        number,
                        "a section header must be \"[Name]\" with nothing after the ']'",
                    ));
                };
                let name = name.trim();
                if name.is_empty() {
                    return Err(syntax(number, "empty section name \"[]\""));
                }
                section = name.to_string();
                doc.sections.push(section.clone());
                continue;
            }
            // The line itself is never shown: a key=value line missing its '=' could be a secret.
            let Some((key, value)) = line.split_once('=') else {
                return Err(syntax(
                    number,
                    "expected \"key=value\", a \"[Section]\" header or a comment (';' or '#')",
                ));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(syntax(number, "missing key name before '='"));
            }
            let value = unquote(value.trim()).map_err(|problem| syntax(number, problem))?;
            doc.entries.push(Entry { section: section.clone(), key: key.to_string(), value });
        }
        Ok(doc)
    }

    /// Rejects unknown sections, then unknown keys, each in file order.
    fn check_names(&self) -> Result<(), ConfigError> {
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
        config.authentication = self.authentication(&config)?;
        config.authentication_implied =
            config.authentication.is_some() && self.get("Authentication", "type").is_none_or(str::is_empty);
        Ok(config)
    }

    /// The value of the last `key=` line in `section`, if any.
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.section == section && entry.key == key)
            .map(|entry| entry.value.as_str())
    }

    fn bad(&self, section: &str, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::bad_value(Some(self.path), section, key, problem)
    }

    fn bool(&self, section: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(value) = self.get(section, key) else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(self.bad(
                section,
                key,
                format!("{} is not a boolean (use true or false)", shown(key, value)),
            )),
        }
    }

    /// A plain decimal number, no sign, at most `max`. `unit` completes "is not a whole number of
    /// ...".
    fn number(
        &self,
        section: &str,
        key: &str,
        unit: Option<&str>,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.get(section, key) else {
            return Ok(None);
        };
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            let of_unit = unit.map(|unit| format!(" of {unit}")).unwrap_or_default();
            return Err(self.bad(
                section,
                key,
                format!("{} is not a whole number{of_unit}", shown(key, value)),
            ));
        }
        match value.parse::<u64>() {
            Ok(number) if number <= max => Ok(Some(number)),
            _ if max == u64::MAX => {
                Err(self.bad(section, key, format!("{} is too large", shown(key, value))))
            }
            _ => {
                let unit = unit.map(|unit| format!(" {unit}")).unwrap_or_default();
                Err(self.bad(
                    section,
                    key,
                    format!("{} is too large (at most {max}{unit})", shown(key, value)),
                ))
            }
        }
    }

    /// A duration in whole milliseconds, 0 included (callers decide whether 0 is allowed).
    fn millis(&self, section: &str, key: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(section, key, Some("milliseconds"), MAX_MILLIS)?.map(Duration::from_millis))
    }

    /// A path; an empty value is `Some(None)`, i.e. "explicitly not set".
    fn optional_path(&self, section: &str, key: &str) -> Option<Option<PathBuf>> {
        self.get(section, key).map(|value| (!value.is_empty()).then(|| PathBuf::from(value)))
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

    /// `[Authentication]` and the section of the chosen kind.
    fn authentication(&self, config: &Config) -> Result<Option<AuthenticationSettings>, ConfigError> {
        const AUTH: &str = "Authentication";
        let kind = match self.get(AUTH, "type").filter(|value| !value.is_empty()) {
            Some(kind) => kind,
            // A nymea-remoteproxy 1.8.4 file has [AWS] and no [Authentication]: the reference
            // then asks AWS Lambda, and so do we (the start log says so).
            None if self.sections.iter().any(|section| section == "AWS") => "aws-lambda",
            None => return Ok(None),
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "mock" => KindSettings::Mock,
            "aws-lambda" => {
                const AWS: &str = "AWS";
                let text = |key, default: &str| self.non_empty(AWS, key).unwrap_or(default).to_string();
                KindSettings::AwsLambda(AwsLambdaSettings {
                    region: text("region", AWS_DEFAULT_REGION),
                    function: text("authorizerLambdaFunction", AWS_DEFAULT_FUNCTION),
                    credentials_url: text("awsCredentialsUrl", AWS_DEFAULT_CREDENTIALS_URL),
                    lambda_endpoint: self.non_empty(AWS, "lambdaEndpoint").map(str::to_string),
                })
            }
            "http" => {
                const HTTP: &str = "HttpAuthenticator";
                KindSettings::Http(HttpSettings {
                    url: self.required(HTTP, "url", "the URL the token is POSTed to")?.to_string(),
                    authorization: self.non_empty(HTTP, "authorization").map(Secret::new),
                    ca_file: self.optional_path(HTTP, "caCertificate").flatten(),
                })
            }
            "static" => {
                const STATIC: &str = "StaticAuthenticator";
                let file = self.required(STATIC, "file", "the token hash file")?;
                let reload_interval =
                    self.millis(STATIC, "reloadInterval")?.unwrap_or(Duration::from_secs(2));
                if reload_interval.is_zero() {
                    return Err(self.bad(STATIC, "reloadInterval", "must be greater than 0 milliseconds"));
                }
                KindSettings::Static(StaticSettings { file: PathBuf::from(file), reload_interval })
            }
            "jwt" => {
                const JWT: &str = "JwtAuthenticator";
                let leeway = self.number(JWT, "leeway", Some("seconds"), 3600)?.unwrap_or(60);
                KindSettings::Jwt(JwtSettings {
                    jwks_file: PathBuf::from(self.required(JWT, "jwks", "the JWKS file with the keys")?),
                    issuer: self.non_empty(JWT, "issuer").map(str::to_string),
                    audience: self.non_empty(JWT, "audience").map(str::to_string),
                    user_claim: self.non_empty(JWT, "userClaim").unwrap_or("sub").to_string(),
                    leeway: Duration::from_secs(leeway),
                })
            }
            "certificate" => {
                const CERT: &str = "CertificateAuthenticator";
                if !config.tls.enabled || config.tls.client_ca.is_none() {
                    return Err(self.bad(
                        AUTH,
                        "type",
                        "the certificate authenticator needs [SSL] enabled=true and clientCaCertificate",
                    ));
                }
                let user_name_from = match self.non_empty(CERT, "userName").unwrap_or("CN") {
                    "CN" => SubjectField::CommonName,
                    "O" => SubjectField::Organization,
                    other => {
                        return Err(self.bad(
                            CERT,
                            "userName",
                            format!("{} is not CN or O", shown("userName", other)),
                        ));
                    }
                };
                KindSettings::Certificate(CertificateSettings { user_name_from })
            }
            _ => {
                let problem = format!(
                    "{} is not an authenticator type (available: {})",
                    shown("type", kind),
                    KindSettings::NAMES.join(", ")
                );
                return Err(self.bad(AUTH, "type", problem));
            }
        };
        let cache_ttl = self.millis(AUTH, "cacheTtl")?.filter(|ttl| !ttl.is_zero());
        let base = self.millis(AUTH, "throttleBaseDelay")?.unwrap_or(Duration::from_millis(250));
        let max = self.millis(AUTH, "throttleMaxDelay")?.unwrap_or(Duration::from_millis(4000));
        if base > max {
            return Err(self.bad(AUTH, "throttleBaseDelay", "must not be larger than throttleMaxDelay"));
        }
        let throttle = self.bool(AUTH, "throttle")?.unwrap_or(true).then_some(ThrottleSettings { base, max });
        let limit = config.timeouts.authentication;
        let request_timeout = self.millis(AUTH, "requestTimeout")?.unwrap_or(limit * 3 / 4);
        if request_timeout.is_zero() || request_timeout >= limit {
            return Err(self.bad(
                AUTH,
                "requestTimeout",
                "must be greater than 0 and below [ProxyServer] authenticationTimeout",
            ));
        }
        Ok(Some(AuthenticationSettings { kind, cache_ttl, throttle, request_timeout }))
    }

    /// A value that must be present and non-empty; `what` says what it is for.
    fn required(&self, section: &str, key: &str, what: &str) -> Result<&str, ConfigError> {
        self.non_empty(section, key).ok_or_else(|| self.bad(section, key, format!("missing: set {what}")))
    }

    fn non_empty(&self, section: &str, key: &str) -> Option<&str> {
        self.get(section, key).filter(|value| !value.is_empty())
    }
}

fn keys_of(section: &str) -> Option<&'static [&'static str]> {
    SCHEMA.iter().find(|(name, _)| *name == section).map(|(_, keys)| *keys)
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

/// Decodes a trimmed raw value the way Qt does for the subset we accept: a fully double-quoted
/// value loses its quotes; backslash escapes are decoded everywhere.
fn unquote(raw: &str) -> Result<String, &'static str> {
    let Some(inner) = raw.strip_prefix('"') else {
        return Ok(unescape(raw));
    };
    // Find the closing quote: the first '"' not preceded by an escaping backslash.
    let mut escaped = false;
    for (index, ch) in inner.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                if !inner[index + 1..].trim().is_empty() {
                    return Err("text after the closing double quote");
                }
                return Ok(unescape(&inner[..index]));
            }
            _ => {}
        }
    }
    Err("missing closing double quote")
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const FILE: &str = "/etc/remoteproxy.conf";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_str(text, Path::new(FILE))
    }

    /// The one-line message of a failing parse.
    fn error(text: &str) -> String {
        let message = parse(text).expect_err("should fail").to_string();
        assert!(!message.contains('\n'), "not one line: {message}");
        message
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port))
    }

    fn v6(ip: Ipv6Addr, port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::new(IpAddr::V6(ip), port))
    }

    #[test]
    fn reference_1_8_4_file_loads() {
        let path = fixture("nymea-remoteproxy-1.8.4.conf");
        let config = load_file(&path).unwrap();
        let defaults = Config::default();
        assert_eq!(config.source.as_deref(), Some(path.as_path()));
        assert_eq!(config.server.name, "nymea-remoteproxy");
        assert!(!config.server.write_logs);
        assert_eq!(config.server.log_file, PathBuf::from("/var/log/nymea-remoteproxy.log"));
        assert!(!config.server.log_engine_enabled);
        assert_eq!(config.server.monitor_socket, Some(PathBuf::from("/tmp/nymea-remoteproxy-monitor.sock")));
        assert_eq!(config.timeouts.json_rpc, Duration::from_millis(10000));
        assert_eq!(config.timeouts.authentication, Duration::from_millis(8000));
        assert_eq!(config.timeouts.inactive, Duration::from_millis(8000));
        assert_eq!(config.timeouts.alone, Duration::from_millis(8000));
        // No [Authentication] type but an [AWS] section: aws-lambda, as the reference does.
        let kind = config.authentication.as_ref().map(|a| &a.kind);
        let Some(KindSettings::AwsLambda(aws)) = kind else { panic!("aws-lambda: {kind:?}") };
        assert_eq!(aws.function, "system-services-authorizer-dev-checkToken");
        assert!(config.authentication_implied);
        assert!(config.tls.enabled);
        assert_eq!(config.tls.certificate, Some(PathBuf::from("/etc/ssl/certs/ssl-cert-snakeoil.pem")));
        assert_eq!(config.tls.certificate_key, Some(PathBuf::from("/etc/ssl/private/ssl-cert-snakeoil.key")));
        assert_eq!(config.tls.certificate_chain, None);
        assert_eq!(config.listeners.websocket, v4(127, 0, 0, 1, 443));
        assert_eq!(config.listeners.tcp, v4(127, 0, 0, 1, 80));
        assert_eq!(config.listeners.unix, defaults.listeners.unix);
        assert_eq!(config.tunnel_proxy_listeners.websocket, v4(127, 0, 0, 1, 2212));
        assert_eq!(config.tunnel_proxy_listeners.tcp, v4(127, 0, 0, 1, 2213));
        assert_eq!(config.tunnel_proxy_listeners.unix, None);
        // Keys the reference does not have keep our defaults.
        assert_eq!(config.server.max_message_size, defaults.server.max_message_size);
        assert_eq!(config.server.max_connections, defaults.server.max_connections);
        assert_eq!(config.timeouts.tunnel_idle, None);
        assert_eq!(config.timeouts.handshake_deadline, defaults.timeouts.handshake_deadline);
    }

    #[test]
    fn empty_text_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("; only a comment\n\n# another\n[General]\n").unwrap(), Config::default());
    }

    #[test]
    fn every_key_of_ours_parses() {
        let config = parse(
            "[ProxyServer]\n\
             maxMessageSize=256\n\
             tunnelIdleTimeout=60000\n\
             maxConnections=1\n\
             shutdownGracePeriod=0\n\
             handshakeDeadline=1\n\
             tlsHandshakeTimeout=2500\n\
             maxClientsPerServer=3\n\
             tunnelProxyServerTimeout=30000\n\
             proxyEnabled=true\n\
             [UnixSocketServer]\n\
             unixSocketFileName=/tmp/proxy.sock\n\
             [UnixSocketServerTunnelProxy]\n\
             unixSocketFileName=/tmp/tunnel.sock\n\
             [Authentication]\n\
             type=mock\n",
        )
        .unwrap();
        assert_eq!(config.server.max_message_size, 256);
        assert_eq!(config.timeouts.tunnel_idle, Some(Duration::from_millis(60000)));
        assert_eq!(config.server.max_connections, 1);
        assert_eq!(config.server.shutdown_grace_period, Duration::ZERO);
        assert_eq!(config.timeouts.handshake_deadline, Duration::from_millis(1));
        assert_eq!(config.timeouts.tls_handshake, Duration::from_millis(2500));
        assert_eq!(config.server.max_clients_per_server, 3);
        assert_eq!(config.timeouts.tunnel_proxy_server, Duration::from_millis(30000));
        assert_eq!(config.listeners.unix, Some(PathBuf::from("/tmp/proxy.sock")));
        assert_eq!(config.tunnel_proxy_listeners.unix, Some(PathBuf::from("/tmp/tunnel.sock")));
        assert_eq!(config.authentication.unwrap().kind, KindSettings::Mock);
        assert!(config.listeners.websocket.is_some());

        let config = parse("[ProxyServer]\ntunnelIdleTimeout=0\n").unwrap();
        assert_eq!(config.timeouts.tunnel_idle, None);
    }

    #[test]
    fn proxy_disabled_turns_off_the_v1_listeners() {
        let config = parse("[ProxyServer]\nproxyEnabled=false\n").unwrap();
        assert_eq!(config.listeners.websocket, None);
        assert_eq!(config.listeners.tcp, None);
        assert_eq!(config.listeners.unix, None);
        assert_eq!(config.tunnel_proxy_listeners, Config::default().tunnel_proxy_listeners);
        // A mistake in a disabled listener's section is still reported.
        assert_eq!(
            error("[ProxyServer]\nproxyEnabled=false\n[TcpServer]\nport=x\n"),
            "/etc/remoteproxy.conf: [TcpServer] port: \"x\" is not a port number (0 to 65535)"
        );
    }

    #[test]
    fn bools_accept_the_usual_spellings() {
        for (text, expected) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("On", true),
            ("false", false),
            ("False", false),
            ("0", false),
            ("no", false),
            ("OFF", false),
        ] {
            let config = parse(&format!("[ProxyServer]\nwriteLogs={text}\n")).unwrap();
            assert_eq!(config.server.write_logs, expected, "{text}");
        }
    }

    #[test]
    fn syntax_details() {
        let config = parse(
            "\u{feff}  ; indented comment\r\n\
             [ SSL ]\r\n\
             \tenabled = false \r\n\
             [ProxyServer]\r\n\
             name = \" spaced, and; quoted \\\"name\\\" \"\r\n\
             logFile=/tmp/a\\\\b\r\n\
             name=\"last wins\"\r\n\
             [SSL]\r\n\
             certificate=\r\n",
        )
        .unwrap();
        assert!(!config.tls.enabled);
        assert_eq!(config.tls.certificate, None);
        assert_eq!(config.server.name, "last wins");
        assert_eq!(config.server.log_file, PathBuf::from("/tmp/a\\b"));

        let config = parse("[ProxyServer]\nname = \" spaced, and; \\\"quoted\\\" \"\n").unwrap();
        assert_eq!(config.server.name, " spaced, and; \"quoted\" ");
        let config = parse("[ProxyServer]\nname=a=b # not a comment\n").unwrap();
        assert_eq!(config.server.name, "a=b # not a comment");
    }

    #[test]
    fn syntax_errors_have_line_numbers() {
        assert_eq!(
            error("[ProxyServer]\nname=x\nwriteLogs\n"),
            "/etc/remoteproxy.conf: line 3: expected \"key=value\", a \"[Section]\" header or a comment (';' or '#')"
        );
        assert_eq!(
            error("\n[ProxyServer\n"),
            "/etc/remoteproxy.conf: line 2: a section header must be \"[Name]\" with nothing after the ']'"
        );
        assert_eq!(error("[]\n"), "/etc/remoteproxy.conf: line 1: empty section name \"[]\"");
        assert_eq!(
            error("[ProxyServer]\n=x\n"),
            "/etc/remoteproxy.conf: line 2: missing key name before '='"
        );
        assert_eq!(
            error("[ProxyServer]\nname=\"open\n"),
            "/etc/remoteproxy.conf: line 2: missing closing double quote"
        );
        assert_eq!(
            error("[ProxyServer]\nname=\"a\" b\n"),
            "/etc/remoteproxy.conf: line 2: text after the closing double quote"
        );
    }

    #[test]
    fn unknown_key() {
        // The message lists every known key of the section, in schema order.
        let message = error("[ProxyServer]\ninactivTimeout=8000\n");
        let known = keys_of("ProxyServer").unwrap().join(", ");
        assert_eq!(
            message,
            format!("/etc/remoteproxy.conf: [ProxyServer] inactivTimeout: unknown key (known keys: {known})")
        );
        assert!(
            known.starts_with("name, writeLogs, logFile, logEngineEnabled, monitorSocket, jsonRpcTimeout")
        );
        // Keys are case-sensitive, as in the reference.
        assert!(error("[SSL]\nEnabled=true\n").starts_with(
            "/etc/remoteproxy.conf: [SSL] Enabled: unknown key (known keys: enabled, certificate,"
        ));
        // Keys before the first section belong to Qt's [General] group.
        assert_eq!(
            error("name=x\n[ProxyServer]\n"),
            format!(
                "/etc/remoteproxy.conf: [General] name: unknown key (keys must be inside a section; \
                 known sections: {})",
                known_sections()
            )
        );
    }

    #[test]
    fn unknown_section() {
        assert_eq!(
            error("[ProxyServer]\nname=x\n[Foo]\n"),
            format!("/etc/remoteproxy.conf: [Foo]: unknown section (known sections: {})", known_sections())
        );
        assert!(
            known_sections().starts_with("ProxyServer, SSL, WebSocketServer, TcpServer, UnixSocketServer")
        );
        assert!(error("[ssl]\nenabled=true\n").starts_with("/etc/remoteproxy.conf: [ssl]: unknown section"));
    }

    #[test]
    fn bad_bool() {
        assert_eq!(
            error("[SSL]\nenabled=maybe\n"),
            "/etc/remoteproxy.conf: [SSL] enabled: \"maybe\" is not a boolean (use true or false)"
        );
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(
            error("[ProxyServer]\ninactiveTimeout=8s\n"),
            "/etc/remoteproxy.conf: [ProxyServer] inactiveTimeout: \"8s\" is not a whole number of milliseconds"
        );
        assert_eq!(
            error("[ProxyServer]\ninactiveTimeout=-1\n"),
            "/etc/remoteproxy.conf: [ProxyServer] inactiveTimeout: \"-1\" is not a whole number of milliseconds"
        );
        assert_eq!(
            error("[ProxyServer]\ninactiveTimeout=\n"),
            "/etc/remoteproxy.conf: [ProxyServer] inactiveTimeout: \"\" is not a whole number of milliseconds"
        );
        assert_eq!(
            error("[ProxyServer]\nmaxConnections=+5\n"),
            "/etc/remoteproxy.conf: [ProxyServer] maxConnections: \"+5\" is not a whole number"
        );
        assert_eq!(
            error("[ProxyServer]\nmaxMessageSize=99999999999999999999999\n"),
            "/etc/remoteproxy.conf: [ProxyServer] maxMessageSize: \"99999999999999999999999\" is too large"
        );
        assert_eq!(
            error("[ProxyServer]\naloneTimeout=31536000001\n"),
            "/etc/remoteproxy.conf: [ProxyServer] aloneTimeout: \"31536000001\" is too large \
             (at most 31536000000 milliseconds)"
        );
        assert_eq!(
            error("[ProxyServer]\nmaxMessageSize=255\n"),
            "/etc/remoteproxy.conf: [ProxyServer] maxMessageSize: must be at least 256 bytes"
        );
        assert_eq!(
            error("[ProxyServer]\nmaxConnections=0\n"),
            "/etc/remoteproxy.conf: [ProxyServer] maxConnections: must be at least 1"
        );
    }

    #[test]
    fn zero_timeouts_are_rejected() {
        for key in [
            "jsonRpcTimeout",
            "authenticationTimeout",
            "inactiveTimeout",
            "aloneTimeout",
            "handshakeDeadline",
            "tlsHandshakeTimeout",
        ] {
            assert_eq!(
                error(&format!("[ProxyServer]\n{key}=0\n")),
                format!("/etc/remoteproxy.conf: [ProxyServer] {key}: must be greater than 0 milliseconds")
            );
        }
    }

    #[test]
    fn empty_log_file_is_rejected() {
        assert_eq!(
            error("[ProxyServer]\nlogFile=\n"),
            "/etc/remoteproxy.conf: [ProxyServer] logFile: must not be empty (give a file path)"
        );
        let config = parse("[ProxyServer]\nmonitorSocket=\n").unwrap();
        assert_eq!(config.server.monitor_socket, None);
    }

    #[test]
    fn hosts_and_ports() {
        let config = parse(
            "[WebSocketServer]\nhost=::1\nport=0\n\
             [TcpServer]\nhost=[::]\nport=65535\n\
             [WebSocketServerTunnelProxy]\nhost=0.0.0.0\n\
             [TcpServerTunnelProxy]\nport=7000\n",
        )
        .unwrap();
        assert_eq!(config.listeners.websocket, v6(Ipv6Addr::LOCALHOST, 0));
        assert_eq!(config.listeners.tcp, v6(Ipv6Addr::UNSPECIFIED, 65535));
        // Only one of host/port given: the other keeps its default.
        assert_eq!(config.tunnel_proxy_listeners.websocket, v4(0, 0, 0, 0, 2212));
        assert_eq!(config.tunnel_proxy_listeners.tcp, v4(127, 0, 0, 1, 7000));

        let config = parse("[WebSocketServer]\nhost=[fe80::1]\nport=1\n").unwrap();
        assert_eq!(config.listeners.websocket, v6("fe80::1".parse().unwrap(), 1));
    }

    #[test]
    fn empty_host_disables_the_listener() {
        let config =
            parse("[TcpServer]\nhost=\nport=1213\n[UnixSocketServer]\nunixSocketFileName=\n").unwrap();
        assert_eq!(config.listeners.tcp, None);
        assert_eq!(config.listeners.unix, None);
        assert!(config.listeners.websocket.is_some());
    }

    #[test]
    fn bad_hosts_and_ports() {
        assert_eq!(
            error("[TcpServer]\nhost=localhost\n"),
            "/etc/remoteproxy.conf: [TcpServer] host: \"localhost\" is not an IP address literal \
             (for example 127.0.0.1, 0.0.0.0, ::1 or [::])"
        );
        for host in ["[127.0.0.1]", "[::1", "::1]", "1.2.3", "fe80::1%eth0", "::g"] {
            let message = error(&format!("[WebSocketServer]\nhost={host}\n"));
            assert!(message.contains("is not an IP address literal"), "{host}: {message}");
        }
        for port in ["65536", "-1", "http", "", " 1x"] {
            let message = error(&format!("[TcpServerTunnelProxy]\nport={port}\n"));
            assert!(
                message.starts_with("/etc/remoteproxy.conf: [TcpServerTunnelProxy] port: ")
                    && message.ends_with("is not a port number (0 to 65535)"),
                "{port}: {message}"
            );
        }
    }

    #[test]
    fn two_listeners_on_one_address_are_rejected() {
        assert_eq!(
            error("[TcpServer]\nport=1212\n"),
            "/etc/remoteproxy.conf: [TcpServer] port: 127.0.0.1:1212 is already used by [WebSocketServer]"
        );
        // Ephemeral ports never collide.
        parse("[TcpServer]\nport=0\n[WebSocketServer]\nport=0\n").unwrap();
    }

    fn kind(text: &str) -> KindSettings {
        parse(text).unwrap().authentication.expect("an authenticator").kind
    }

    #[test]
    fn authenticator_types() {
        assert_eq!(kind("[Authentication]\ntype=mock\n"), KindSettings::Mock);
        assert_eq!(parse("[Authentication]\ntype=\n").unwrap().authentication, None);
        assert_eq!(
            error("[Authentication]\ntype=ldap\n"),
            "/etc/remoteproxy.conf: [Authentication] type: \"ldap\" is not an authenticator type \
             (available: mock, aws-lambda, http, static, jwt, certificate)"
        );
    }

    #[test]
    fn aws_lambda_takes_the_reference_keys_and_defaults() {
        let reference = std::fs::read_to_string(fixture("nymea-remoteproxy-1.8.4.conf")).unwrap();
        let with_type = format!("{reference}\n[Authentication]\ntype=aws-lambda\n");
        assert_eq!(
            kind(&with_type),
            KindSettings::AwsLambda(AwsLambdaSettings {
                region: "eu-west-1".into(),
                function: "system-services-authorizer-dev-checkToken".into(),
                credentials_url: AWS_DEFAULT_CREDENTIALS_URL.into(),
                lambda_endpoint: None,
            })
        );
        let KindSettings::AwsLambda(aws) =
            kind("[Authentication]\ntype=aws-lambda\n[AWS]\nregion=\nlambdaEndpoint=http://127.0.0.1:9\n")
        else {
            panic!()
        };
        assert_eq!(aws.region, "eu-west-1", "empty means the default");
        assert_eq!(aws.lambda_endpoint.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn http_static_jwt_and_certificate_sections() {
        let KindSettings::Http(http) = kind(
            "[Authentication]\ntype=http\n[HttpAuthenticator]\nurl=https://auth.example/check\n\
             authorization=Bearer s3cret\ncaCertificate=/etc/ca.pem\n",
        ) else {
            panic!()
        };
        assert_eq!(http.url, "https://auth.example/check");
        assert_eq!(http.authorization.as_ref().map(|s| s.expose_secret()), Some("Bearer s3cret"));
        assert!(!format!("{http:?}").contains("s3cret"), "Debug hides the secret");
        assert_eq!(http.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            error("[Authentication]\ntype=http\n"),
            "/etc/remoteproxy.conf: [HttpAuthenticator] url: missing: set the URL the token is POSTed to"
        );

        assert_eq!(
            kind("[Authentication]\ntype=static\n[StaticAuthenticator]\nfile=/etc/tokens\n"),
            KindSettings::Static(StaticSettings {
                file: PathBuf::from("/etc/tokens"),
                reload_interval: Duration::from_secs(2)
            })
        );
        assert_eq!(
            kind(
                "[Authentication]\ntype=jwt\n[JwtAuthenticator]\njwks=/etc/jwks.json\naudience=broker\nleeway=5\n"
            ),
            KindSettings::Jwt(JwtSettings {
                jwks_file: PathBuf::from("/etc/jwks.json"),
                issuer: None,
                audience: Some("broker".into()),
                user_claim: "sub".into(),
                leeway: Duration::from_secs(5),
            })
        );
        assert!(
            error("[Authentication]\ntype=certificate\n")
                .contains("needs [SSL] enabled=true and clientCaCertificate")
        );
        assert_eq!(
            kind(
                "[Authentication]\ntype=certificate\n[SSL]\nclientCaCertificate=/etc/ca.pem\n\
                 [CertificateAuthenticator]\nuserName=O\n"
            ),
            KindSettings::Certificate(CertificateSettings { user_name_from: SubjectField::Organization })
        );
    }

    #[test]
    fn cache_throttle_and_request_timeout() {
        let settings = parse("[Authentication]\ntype=mock\n").unwrap().authentication.unwrap();
        assert_eq!(settings.cache_ttl, None);
        assert_eq!(
            settings.throttle,
            Some(ThrottleSettings { base: Duration::from_millis(250), max: Duration::from_millis(4000) })
        );
        assert_eq!(settings.request_timeout, Duration::from_millis(6000), "3/4 of authenticationTimeout");
        let settings =
            parse("[Authentication]\ntype=mock\ncacheTtl=30000\nthrottle=false\nrequestTimeout=1000\n")
                .unwrap()
                .authentication
                .unwrap();
        assert_eq!(settings.cache_ttl, Some(Duration::from_secs(30)));
        assert_eq!(settings.throttle, None);
        assert_eq!(settings.request_timeout, Duration::from_secs(1));
        assert!(error("[Authentication]\ntype=mock\nrequestTimeout=8000\n").contains("below"));
        assert!(error("[Authentication]\ntype=mock\nthrottleBaseDelay=5000\n").contains("throttleMaxDelay"));
    }

    #[test]
    fn authorization_values_never_appear_in_messages() {
        let message = error("[HttpAuthenticator]\nauthorization=Bearer s3cret\nurl=x\nfoo=1\n");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn unreadable_file() {
        let message = load_file(Path::new("/etc/x.conf")).unwrap_err().to_string();
        assert_eq!(
            message,
            "/etc/x.conf: cannot read the configuration file: No such file or directory (os error 2)"
        );
        let dir = fixture("tls");
        let message = load_file(&dir).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}: cannot read the configuration file: ", dir.display())),
            "{message}"
        );
    }

    #[test]
    fn invalid_utf8_is_a_syntax_error() {
        let error = decode(b"[ProxyServer]\nname=\xff\n".to_vec(), Path::new(FILE)).unwrap_err();
        assert_eq!(error.to_string(), "/etc/remoteproxy.conf: line 2: the file is not valid UTF-8");
        assert_eq!(decode(b"\xef\xbb\xbf[SSL]".to_vec(), Path::new(FILE)).unwrap(), "[SSL]");
    }

    #[test]
    fn values_in_messages() {
        assert_eq!(shown("port", "80"), "\"80\"");
        assert_eq!(shown("name", "a\"b\tc"), "\"a\\\"b\\tc\"");
        assert_eq!(shown("certificateKey", "/k.pem"), "\"/k.pem\"");
        for secret in ["token", "apiToken", "password", "clientSecret", "privateKey", "KEY"] {
            assert_eq!(shown(secret, "hunter2"), "(hidden value)", "{secret}");
        }
        let long = "x".repeat(100);
        assert_eq!(shown("name", &long), format!("\"{}\"...", "x".repeat(64)));
    }

    #[test]
    fn bad_value_without_a_file() {
        assert_eq!(
            ConfigError::bad_value(None, "SSL", "certificate", "cannot generate").to_string(),
            "built-in defaults: [SSL] certificate: cannot generate"
        );
        assert_eq!(
            ConfigError::bad_value(Some(Path::new("/a.conf")), "SSL", "certificate", "x").to_string(),
            "/a.conf: [SSL] certificate: x"
        );
    }
}
