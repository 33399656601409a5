//! Broker configuration: one struct tree, its built-in defaults, and the INI loader.
//!
//! The file format is the nymea-remoteproxy 1.8.4 INI file (Qt `QSettings` IniFormat), read
//! unchanged, plus keys of our own. `ini` reads the file's syntax, `schema` knows its sections and
//! keys, `build` turns it into a [`Config`] (`error` words what goes wrong); everything else in the
//! broker only ever sees the typed tree, so a key is parsed and validated in exactly one place.
//!
//! Every key is declared once, with its default and doc, in `schema`. Defaults are those of
//! PROTOCOL §1 and §4: with no file at all the broker listens on
//! 127.0.0.1:1212 (WebSocket) and 127.0.0.1:1213 (TCP) with TLS on, and on the unix socket
//! `/run/remoteproxy/proxy.socket`. A user who cannot write `/run/remoteproxy` (anybody but root
//! or the service's own user) gets the sockets in `$XDG_RUNTIME_DIR/remoteproxy` instead (or a
//! per-user directory under the temporary directory), so the defaults start as any user; see
//! [`runtime_dir`].

mod build;
mod error;
mod ini;
mod schema;
mod trusted;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use build::{load_file, parse_str};
pub use error::ConfigError;
pub use remoteproxy_authenticators::settings::{
    AuthenticationSettings, AwsLambdaSettings, CertificateSettings, HttpSettings, JwtSettings, KindSettings,
    StaticSettings, SubjectField, ThrottleSettings,
};
pub use schema::commented_file;
pub use trusted::Trusted;

/// The whole broker configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this was read from; `None` for built-in defaults.
    pub source: Option<PathBuf>,
    /// `[ProxyServer]` settings.
    pub server: ServerSettings,
    /// Timeouts (`[ProxyServer]` keys, milliseconds in the file).
    pub timeouts: Timeouts,
    /// `[SSL]`.
    pub tls: TlsSettings,
    /// The v1 listeners: `[WebSocketServer]`, `[TcpServer]`, `[UnixSocketServer]`.
    pub listeners: ListenerSettings,
    /// The v2 TunnelProxy listeners. Accepted and validated now; served by a later part.
    pub tunnel_proxy_listeners: ListenerSettings,
    /// `[Metrics]`: the Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// `[Limits]`.
    pub limits: LimitsSettings,
    /// `[ProxyProtocol]`: who may send a PROXY protocol header; `None` when it is off.
    pub proxy_protocol: Option<Trusted>,
    /// `[RendezvousServer]`; `None` when it is off.
    pub rendezvous: Option<RendezvousSettings>,
    /// `[Cluster]`; `None` when it is off (no Redis, no relay listener).
    pub cluster: Option<ClusterSettings>,
    /// `[Authentication]` and the chosen kind's section. `None` means no authenticator was
    /// configured, and the broker refuses to start unless `--mock-authenticator` is given.
    pub authentication: Option<AuthenticationSettings>,
    /// The file named no `[Authentication] type` but has an `[AWS]` section, as nymea-remoteproxy
    /// 1.8.4 files do: `authentication` is aws-lambda because of that.
    pub authentication_implied: bool,
}

/// `[ProxyServer]` keys other than timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// `name`: returned by `RemoteProxy.Hello`.
    pub name: String,
    /// `writeLogs`: also write the log to `log_file`.
    pub write_logs: bool,
    /// `logFile`.
    pub log_file: PathBuf,
    /// `logLevel` (ours): the log's filter (a level or an `EnvFilter` directive list).
    pub log_level: String,
    /// `logEngineEnabled`: per-tunnel statistics log (used by the monitoring part).
    pub log_engine_enabled: bool,
    /// `monitorSocket`: path of the monitor unix socket; `None` (empty in the file) turns the
    /// monitor off.
    pub monitor_socket: Option<PathBuf>,
    /// `monitorSocketMode` (ours, octal): permissions of the monitor socket, so only the broker's
    /// group can read the statistics.
    pub monitor_socket_mode: u32,
    /// `monitorSocketGroup` (ours): the group that owns the monitor socket; `None` leaves the
    /// broker's own.
    pub monitor_socket_group: Option<String>,
    /// `statisticsLogFile` (ours): with `logEngineEnabled`, one JSON line per finished tunnel.
    pub statistics_log_file: PathBuf,
    /// `statisticsStateFile` (ours): with `logEngineEnabled`, the totals kept across restarts.
    pub statistics_state_file: PathBuf,
    /// `maxMessageSize` (ours): an incoming JSON message still incomplete after this many bytes
    /// closes the connection.
    pub max_message_size: usize,
    /// `maxConnections` (ours): connections over this count are closed at accept.
    pub max_connections: usize,
    /// `shutdownGracePeriod` (ours, milliseconds): how long established tunnels may go on after a
    /// stop signal.
    pub shutdown_grace_period: Duration,
    /// `maxClientsPerServer`: clients one registered TunnelProxy server may have at once.
    pub max_clients_per_server: usize,
    /// `healthCheckPath` (ours): a plain HTTP GET of this path on a WebSocket listener is
    /// answered `200 OK`; `None` (not given) answers it 426 like any other plain request.
    pub health_check_path: Option<String>,
}

/// `[Limits]`: limits checked at accept (`None`: the limit is off, 0 in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsSettings {
    /// `maxConnectionsPerIp`: connections at once from one source.
    pub max_connections_per_ip: Option<u32>,
    /// `maxNewConnectionsPerIpPerSecond`: new connections per second from one source.
    pub max_new_connections_per_ip_per_second: Option<u32>,
    /// `ipv6PrefixLength`: the bits of an IPv6 address that make a source.
    pub ipv6_prefix_length: u8,
    /// `maxPendingHandshakes`: connections not yet authenticated or registered.
    pub max_pending_handshakes: Option<usize>,
    /// `maxTunnelsPerToken`: v1 tunnels, waiting or running, per token.
    pub max_tunnels_per_token: Option<usize>,
}

/// `[RendezvousServer]`: path rendezvous with client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RendezvousSettings {
    /// `host`, `port`.
    pub address: SocketAddr,
    /// `pathPrefix`: starts and ends with `/`.
    pub path_prefix: String,
    /// `certificate`, `certificateKey` (`None`: the key is in `certificate`).
    pub certificate: PathBuf,
    #[allow(missing_docs)]
    pub certificate_key: Option<PathBuf>,
    /// `caCertificate`: the root peers' certificates must chain to.
    pub ca_certificate: PathBuf,
    /// `helloTimeout`.
    pub hello_timeout: Duration,
    /// `aloneTimeout` (`None`: 0, wait for ever).
    pub alone_timeout: Option<Duration>,
    /// `maxHeldMessages`, `maxHeldBytes`.
    pub max_held_messages: usize,
    #[allow(missing_docs)]
    pub max_held_bytes: usize,
    /// `policyFile`: subjects → meeting patterns (`None`: any peer, any meeting).
    pub policy_file: Option<PathBuf>,
}

/// `[Cluster]`: this node's place in a cluster of brokers sharing a Redis registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redisUrl`: parsed by the redis crate when the node starts. A secret: it may hold Redis's
    /// password.
    pub redis_url: remoteproxy_authenticators::Secret,
    /// `redisCaCertificate`, `redisCertificate`, `redisCertificateKey`, read (only with rediss://).
    pub redis_tls: Option<RedisTls>,
    /// `redisKeyPrefix`.
    pub key_prefix: String,
    /// `nodeId`, or the host name.
    pub node_id: String,
    /// `relayHost`, `relayPort`: the inter-node relay listener.
    pub relay_address: SocketAddr,
    /// `advertiseAddress` (`None`: the relay listener's own address, once bound).
    pub advertise_address: Option<String>,
    /// `secret` or the first line of `secretFile`.
    pub secret: remoteproxy_authenticators::Secret,
    /// `heartbeatInterval`.
    pub heartbeat_interval: Duration,
}

/// TLS to Redis beyond the URL's `rediss://`: whom to trust, and this node's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM roots (`None`: the system's trust store).
    pub ca_certificate: Option<Vec<u8>>,
    /// PEM certificate and private key for servers that ask clients for one.
    pub client: Option<(Vec<u8>, remoteproxy_authenticators::Secret)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What is set, never the key.
        f.debug_struct("RedisTls")
            .field("ca_certificate", &self.ca_certificate.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// `[Metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `enabled`: serve `/metrics` and `/healthz`.
    pub enabled: bool,
    /// `host`, `port`: where (loopback by default: metrics are for the operator, not the world).
    pub address: SocketAddr,
}

/// The timers of PROTOCOL §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `jsonRpcTimeout`: a call not answered within this closes the connection.
    pub json_rpc: Duration,
    /// `authenticationTimeout`: how long the authenticator may take.
    pub authentication: Duration,
    /// `inactiveTimeout`: silence allowed before authentication; restarted by every chunk.
    pub inactive: Duration,
    /// `aloneTimeout`: how long an authenticated client waits for its partner.
    pub alone: Duration,
    /// `tunnelIdleTimeout` (ours): an established tunnel with no byte in either direction for this
    /// long is closed. `None` (0 in the file) means never.
    pub tunnel_idle: Option<Duration>,
    /// `handshakeDeadline` (ours): from accept until `Authenticate` was received; not restarted
    /// by traffic.
    pub handshake_deadline: Duration,
    /// `tlsHandshakeTimeout` (ours): a TLS handshake not finished within this is dropped.
    pub tls_handshake: Duration,
    /// `tunnelProxyServerTimeout` (ours): a registered TunnelProxy server that sends nothing for
    /// this long is closed (its client library pings every 30 s).
    pub tunnel_proxy_server: Duration,
    /// `keepAliveInterval` (ours): silence after which a WebSocket connection gets a ping and TCP
    /// keepalive probes start. `None` (0 in the file) turns both off.
    pub keep_alive_interval: Option<Duration>,
    /// `keepAliveTimeout` (ours): how long a pinged WebSocket connection may stay silent.
    pub keep_alive_timeout: Duration,
}

/// `[SSL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `enabled`: TLS on the TCP and WebSocket listeners.
    pub enabled: bool,
    /// `certificate`: PEM certificate (leaf first, more certificates may follow). `None` with TLS
    /// on means: generate a self-signed certificate at start.
    pub certificate: Option<PathBuf>,
    /// `certificateKey`: PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub certificate_key: Option<PathBuf>,
    /// `certificateChain`: PEM intermediate certificates served after the leaf.
    pub certificate_chain: Option<PathBuf>,
    /// `certificateCheckInterval` (ours): how often the files are checked for a change and
    /// reloaded; `None` (0 in the file) leaves reloading to SIGHUP.
    pub certificate_check_interval: Option<Duration>,
    /// `clientCaCertificate` (ours): verify client certificates against these CAs (the
    /// certificate authenticator needs it). `None`: no client certificates are asked for.
    pub client_ca: Option<PathBuf>,
    /// `clientCertificateRequired` (ours): refuse TLS handshakes without a client certificate
    /// (otherwise such clients connect and the certificate authenticator refuses them).
    pub client_certificate_required: bool,
    /// `sessionResumption` (ours): session tickets and TLS 1.3 resumption.
    pub session_resumption: bool,
    /// `ticketKeyRotation` (ours): how long a ticket key makes tickets (it opens them for twice
    /// as long).
    pub ticket_key_rotation: Duration,
    /// `ticketKeyFile` (ours): where the ticket keys persist; `None` keeps them in memory.
    pub ticket_key_file: Option<PathBuf>,
}

/// Where one API listens. `None` disables that listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// `[...WebSocketServer...] host, port`.
    pub websocket: Option<SocketAddr>,
    /// `[...TcpServer...] host, port`.
    pub tcp: Option<SocketAddr>,
    /// `[...UnixSocketServer...] unixSocketFileName`.
    pub unix: Option<PathBuf>,
    /// `unixSocketMode` (ours): the unix socket's permissions.
    pub unix_mode: u32,
    /// `unixSocketGroup` (ours): the group that owns the unix socket; `None` leaves the broker's
    /// own.
    pub unix_group: Option<String>,
}

/// Where the default unix sockets live: `/run/remoteproxy` for root and for the user that owns
/// it (the packaged service), otherwise `$XDG_RUNTIME_DIR/remoteproxy`, or
/// `remoteproxy-<uid>` in the temporary directory when there is no XDG runtime directory.
pub fn runtime_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    const SYSTEM: &str = schema::SYSTEM_RUNTIME_DIR;
    // The owner of /proc/self is the process's effective user.
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    let usable = match std::fs::metadata(SYSTEM) {
        Ok(meta) => meta.is_dir() && (uid == 0 || meta.uid() == uid),
        Err(_) => uid == 0,
    };
    if usable {
        return PathBuf::from(SYSTEM);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|dir| dir.is_dir()) {
        Some(dir) => dir.join("remoteproxy"),
        None => std::env::temp_dir().join(format!("remoteproxy-{uid}")),
    }
}

impl Default for Config {
    /// The build of an empty file: every key at its default as declared in `schema.rs`.
    fn default() -> Self {
        // The declared defaults are tested to build (`config::tests::defaults_build`).
        parse_str("", std::path::Path::new("built-in defaults"))
            .unwrap_or_else(|error| unreachable!("the declared defaults do not build: {error}"))
    }
}
