//! Every section and key a file may have, each declared once: section, name, type, default and
//! doc. The parser takes the defaults from here (so [`Config::default`](super::Config) is the
//! build of an empty file), the unknown-name checks and their messages list these names, and
//! `--print-config` writes this table as a commented file. The authenticators declare their
//! sections next to their code (`remoteproxy_authenticators::config::SECTIONS`).

use remoteproxy_authenticators::config::{Key, Kind, SECTIONS as AUTHENTICATION, Section, key, optional};

use super::error::ConfigError;
use super::ini::Document;

/// Where the packaged service keeps its sockets. Defaults below written with this directory move
/// to [`runtime_dir`](super::runtime_dir) for a user who cannot use it.
pub(super) const SYSTEM_RUNTIME_DIR: &str = "/run/remoteproxy";

/// The keys of a TCP or WebSocket listener's section.
const fn listener(host: &'static str, port: &'static str) -> [Key; 2] {
    [
        key(
            "host",
            Kind::Host,
            host,
            "Address to listen on (0.0.0.0 or [::] for all); empty turns this listener off.",
        ),
        key("port", Kind::Port, port, "Port to listen on; 0 picks a free one."),
    ]
}

const V1_WEBSOCKET: [Key; 2] = listener("127.0.0.1", "1212");
const V1_TCP: [Key; 2] = listener("127.0.0.1", "1213");
const V2_WEBSOCKET: [Key; 2] = listener("127.0.0.1", "2212");
const V2_TCP: [Key; 2] = listener("127.0.0.1", "2213");

const UNIX_MODE: Key =
    key("unixSocketMode", Kind::Mode, "0660", "Permissions of the socket: who may connect.");
const UNIX_GROUP: Key = optional(
    "unixSocketGroup",
    Kind::Text,
    "Group of the socket (its members may connect with mode 0660); the broker's own group when not given.",
);

/// The broker's own sections, in the order messages and the commented file use.
const BROKER: &[Section] = &[
    Section {
        name: "ProxyServer",
        doc: "The broker itself: its name, logs, monitor, limits and timers.",
        keys: &[
            key("name", Kind::Text, "remoteproxy", "The server name RemoteProxy.Hello returns."),
            key("writeLogs", Kind::Flag, "false", "Also write the log to logFile."),
            key(
                "logFile",
                Kind::Path,
                "/var/log/remoteproxy/remoteproxy.log",
                "The log file, with writeLogs.",
            ),
            key(
                "logEngineEnabled",
                Kind::Flag,
                "false",
                "Write one JSON line per finished tunnel to statisticsLogFile and keep totals in statisticsStateFile.",
            ),
            key(
                "monitorSocket",
                Kind::Path,
                "/run/remoteproxy/monitor.sock",
                "The monitor socket (remoteproxy-monitor reads it); empty turns it off.",
            ),
            key(
                "jsonRpcTimeout",
                Kind::Millis,
                "10000",
                "A call not answered within this closes the connection.",
            ),
            key("authenticationTimeout", Kind::Millis, "8000", "How long the authenticator may take."),
            key(
                "inactiveTimeout",
                Kind::Millis,
                "8000",
                "Silence allowed before authentication; restarted by every chunk received.",
            ),
            key(
                "aloneTimeout",
                Kind::Millis,
                "8000",
                "How long an authenticated client waits for its partner.",
            ),
            key(
                "proxyEnabled",
                Kind::Flag,
                "true",
                "Serve the v1 proxy API; false turns off its three listeners.",
            ),
            key(
                "maxMessageSize",
                Kind::Bytes,
                "10240",
                "An incoming JSON message still incomplete after this many bytes closes the connection; at least 256.",
            ),
            key(
                "tunnelIdleTimeout",
                Kind::Millis,
                "0",
                "An established tunnel with no byte in either direction for this long is closed; 0 means never.",
            ),
            key("maxConnections", Kind::Count, "65536", "Connections over this count are closed at accept."),
            key(
                "shutdownGracePeriod",
                Kind::Millis,
                "30000",
                "How long established tunnels may go on after a stop signal.",
            ),
            key(
                "handshakeDeadline",
                Kind::Millis,
                "30000",
                "From accept until Authenticate was received; not restarted by traffic.",
            ),
            key(
                "tlsHandshakeTimeout",
                Kind::Millis,
                "5000",
                "A TLS handshake not finished within this is dropped.",
            ),
            key(
                "maxClientsPerServer",
                Kind::Count,
                "1024",
                "Clients one registered TunnelProxy server may have at once; at most 65534.",
            ),
            key(
                "tunnelProxyServerTimeout",
                Kind::Millis,
                "60000",
                "A registered TunnelProxy server that sends nothing for this long is closed.",
            ),
            optional(
                "healthCheckPath",
                Kind::Text,
                "A plain HTTP GET of this path on a WebSocket listener gets 200 OK (a load balancer's health check); off when not given.",
            ),
            key("monitorSocketMode", Kind::Mode, "0660", "Permissions of the monitor socket."),
            optional(
                "monitorSocketGroup",
                Kind::Text,
                "Group of the monitor socket (its members may read the statistics); the broker's own group when not given.",
            ),
            key(
                "statisticsLogFile",
                Kind::Path,
                "/var/log/remoteproxy/statistics.log",
                "With logEngineEnabled: one JSON line per finished tunnel.",
            ),
            key(
                "statisticsStateFile",
                Kind::Path,
                "/var/lib/remoteproxy/statistics.json",
                "With logEngineEnabled: the totals kept across restarts.",
            ),
            key(
                "logLevel",
                Kind::Text,
                "info",
                "What the log shows: error, warn, info, debug or trace, or a filter like info,remoteproxy=debug; SIGHUP applies a change. RUST_LOG and --verbose override it.",
            ),
            key(
                "keepAliveInterval",
                Kind::Millis,
                "30000",
                "A WebSocket connection silent this long gets a ping, and TCP keepalive probes start after it; 0 turns both off.",
            ),
            key(
                "keepAliveTimeout",
                Kind::Millis,
                "10000",
                "A WebSocket connection that sends nothing (no pong) this long after a ping is closed, with its partner; TCP keepalive probes are spread over it.",
            ),
        ],
    },
    Section {
        name: "SSL",
        doc: "TLS on the TCP and WebSocket listeners.",
        keys: &[
            key("enabled", Kind::Flag, "true", "TLS on the TCP and WebSocket listeners."),
            optional(
                "certificate",
                Kind::Path,
                "PEM certificate, leaf first; without it a self-signed one is made at every start.",
            ),
            optional("certificateKey", Kind::Path, "PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)."),
            optional("certificateChain", Kind::Path, "PEM intermediate certificates served after the leaf."),
            optional(
                "clientCaCertificate",
                Kind::Path,
                "Verify client certificates against these CAs (the certificate authenticator needs it).",
            ),
            key(
                "certificateCheckInterval",
                Kind::Millis,
                "10000",
                "How often the certificate files are checked for a change, so a renewal is served without a restart; 0 turns the check off (SIGHUP still reloads).",
            ),
            key(
                "clientCertificateRequired",
                Kind::Flag,
                "false",
                "Refuse TLS handshakes without a client certificate.",
            ),
            key(
                "sessionResumption",
                Kind::Flag,
                "true",
                "Let reconnecting clients resume their TLS session (session tickets, TLS 1.2 and 1.3): no certificate signature, so a reconnect storm costs less.",
            ),
            key(
                "ticketKeyRotation",
                Kind::Seconds,
                "43200",
                "How long a session ticket key makes tickets; it opens them for as long again, so a ticket resumes for one to two periods.",
            ),
            key(
                "ticketKeyFile",
                Kind::Path,
                "/var/lib/remoteproxy/ticket-keys",
                "Where the ticket keys are kept (mode 0600), so tickets from before a restart still resume after it; empty keeps them in memory only.",
            ),
        ],
    },
    Section { name: "WebSocketServer", doc: "The v1 proxy API over WebSocket.", keys: &V1_WEBSOCKET },
    Section { name: "TcpServer", doc: "The v1 proxy API over TCP.", keys: &V1_TCP },
    Section {
        name: "UnixSocketServer",
        doc: "The v1 proxy API on a local unix socket.",
        keys: &[
            key(
                "unixSocketFileName",
                Kind::Path,
                "/run/remoteproxy/proxy.socket",
                "The socket's path; empty turns this listener off.",
            ),
            UNIX_MODE,
            UNIX_GROUP,
        ],
    },
    Section {
        name: "WebSocketServerTunnelProxy",
        doc: "The v2 TunnelProxy API over WebSocket.",
        keys: &V2_WEBSOCKET,
    },
    Section { name: "TcpServerTunnelProxy", doc: "The v2 TunnelProxy API over TCP.", keys: &V2_TCP },
    Section {
        name: "UnixSocketServerTunnelProxy",
        doc: "The v2 TunnelProxy API on a local unix socket.",
        keys: &[
            optional("unixSocketFileName", Kind::Path, "The socket's path; off when not given."),
            UNIX_MODE,
            UNIX_GROUP,
        ],
    },
    Section {
        name: "Limits",
        doc: "Limits that hold under abuse, checked at accept; each refusal is counted by reason in remoteproxy_connections_refused_total. 0 turns a limit off.",
        keys: &[
            key(
                "maxConnectionsPerIp",
                Kind::Count,
                "0",
                "Connections at once from one source address, any state (a site behind one NAT shares one; behind a load balancer all clients have its address).",
            ),
            key(
                "maxNewConnectionsPerIpPerSecond",
                Kind::Count,
                "0",
                "New connections per second from one source address; a second's worth may come at once.",
            ),
            key(
                "ipv6PrefixLength",
                Kind::Count,
                "64",
                "IPv6 sources are counted by this prefix (a customer network), at most 128.",
            ),
            key(
                "maxPendingHandshakes",
                Kind::Count,
                "8192",
                "Connections not yet authenticated (v1) or registered (v2) at once; more are closed at accept.",
            ),
            key(
                "maxTunnelsPerToken",
                Kind::Count,
                "0",
                "v1 tunnels (waiting or running) one token may have at once; another Authenticate gets ProxyError.",
            ),
        ],
    },
    Section {
        name: "ProxyProtocol",
        doc: "The PROXY protocol header (v1 or v2) a load balancer sends first on the TCP and WebSocket listeners; the client address it gives stands for the connection everywhere.",
        keys: &[
            key(
                "enabled",
                Kind::Flag,
                "false",
                "Read the header from the trusted addresses; others are served under their own address, and a header from them closes the connection.",
            ),
            key(
                "trusted",
                Kind::Text,
                "",
                "The load balancers: addresses and prefixes, comma-separated (10.0.0.0/8, 192.0.2.7, fd00::/8); a connection from one must start with a valid header.",
            ),
        ],
    },
    Section {
        name: "RendezvousServer",
        doc: "Path rendezvous, the Micronets way: two peers with client certificates from one root CA open wss://host:port/<pathPrefix><meeting id> and are joined. Off unless host is given.",
        keys: &[
            key("host", Kind::Host, "", "Address to listen on; empty (the default) turns rendezvous off."),
            key("port", Kind::Port, "5050", "Port to listen on; 0 picks a free one."),
            key(
                "pathPrefix",
                Kind::Text,
                "/micronets/v1/ws-proxy/",
                "What precedes the meeting id in the path; any other path gets 404.",
            ),
            key(
                "certificate",
                Kind::Path,
                "",
                "The broker's certificate chain (PEM); may also hold its key (a Micronets pkeycert.pem).",
            ),
            key(
                "certificateKey",
                Kind::Path,
                "",
                "The certificate's key (PEM); empty when certificate holds it.",
            ),
            key(
                "caCertificate",
                Kind::Path,
                "",
                "The root CA (PEM) whose certificates peers must present; required.",
            ),
            key(
                "helloTimeout",
                Kind::Millis,
                "10000",
                "A peer's CONN:HELLO must come within this, or it is closed.",
            ),
            key(
                "aloneTimeout",
                Kind::Millis,
                "0",
                "Close a peer whose partner has not come for this long; 0 waits for ever.",
            ),
            key(
                "maxHeldMessages",
                Kind::Count,
                "64",
                "Messages a peer may send while alone; they reach the partner on join.",
            ),
            key("maxHeldBytes", Kind::Bytes, "1048576", "Bytes a peer may send while alone."),
            key(
                "policyFile",
                Kind::Path,
                "",
                "Which certificate subjects (O or CN) may join which meetings, one SUBJECT: PATTERN... line each; empty lets any peer of the root join any meeting.",
            ),
        ],
    },
    Section {
        name: "Cluster",
        doc: "Several broker nodes sharing one registry in Redis: the two peers of a tunnel may connect to different nodes, which relay between them. Off unless enabled.",
        keys: &[
            key(
                "enabled",
                Kind::Flag,
                "false",
                "Join the cluster: register waiting peers and TunnelProxy servers in Redis, relay to the other nodes.",
            ),
            key(
                "redisUrl",
                Kind::Text,
                "redis://127.0.0.1:6379",
                "The registry (redis://[user:password@]host:port[/db], or rediss:// for TLS); every node of the cluster names the same one.",
            ),
            optional(
                "redisCaCertificate",
                Kind::Path,
                "PEM certificates a rediss:// server's certificate must chain to; unset trusts the system's store.",
            ),
            optional(
                "redisCertificate",
                Kind::Path,
                "PEM client certificate for a rediss:// server that asks for one (Redis's tls-auth-clients); needs redisCertificateKey.",
            ),
            optional("redisCertificateKey", Kind::Path, "The PEM private key of redisCertificate."),
            key(
                "redisKeyPrefix",
                Kind::Text,
                "remoteproxy:",
                "What every key of this cluster starts with, so several clusters can share one Redis.",
            ),
            key(
                "nodeId",
                Kind::Text,
                "",
                "This node's name, unique in the cluster; empty takes the host name.",
            ),
            key(
                "relayHost",
                Kind::Host,
                "0.0.0.0",
                "Address the inter-node relay listens on (the other nodes connect here).",
            ),
            key("relayPort", Kind::Port, "2214", "Port of the inter-node relay; 0 picks a free one."),
            key(
                "advertiseAddress",
                Kind::Text,
                "",
                "host:port the other nodes dial to reach this one; empty takes relayHost:relayPort (required when relayHost is 0.0.0.0 or [::]).",
            ),
            key(
                "secret",
                Kind::Text,
                "",
                "Shared by every node (at least 16 characters): the inter-node links prove it to each other without sending it.",
            ),
            optional(
                "secretFile",
                Kind::Path,
                "A file holding the secret instead (first line); keeps it out of this file.",
            ),
            key(
                "heartbeatInterval",
                Kind::Millis,
                "1000",
                "How often this node tells Redis it is alive; a node silent for three intervals is taken for dead and its entries ignored.",
            ),
        ],
    },
    Section {
        name: "Metrics",
        doc: "The Prometheus endpoint (/metrics and /healthz).",
        keys: &[
            key("enabled", Kind::Flag, "false", "Serve /metrics and /healthz."),
            key(
                "host",
                Kind::Host,
                "127.0.0.1",
                "Address to listen on (loopback: metrics are for the operator).",
            ),
            key("port", Kind::Port, "9164", "Port to listen on."),
        ],
    },
];

/// Qt's name for the keys before the first section header. It has no keys of ours.
pub(super) const GENERAL: &str = "General";

/// Every section: the broker's, then the authenticators'.
pub(crate) fn sections() -> impl Iterator<Item = &'static Section> {
    BROKER.iter().chain(AUTHENTICATION)
}

pub(super) fn known_sections() -> String {
    sections().map(|section| section.name).collect::<Vec<_>>().join(", ")
}

pub(super) fn section(name: &str) -> Option<&'static Section> {
    sections().find(|section| section.name == name)
}

/// The names of a section's keys, in declaration order.
pub(super) fn keys_of(name: &str) -> Option<Vec<&'static str>> {
    section(name).map(|section| section.keys.iter().map(|key| key.name).collect())
}

/// The declaration of `key` in `section`.
pub(super) fn declared(section_name: &str, key: &str) -> Option<&'static Key> {
    section(section_name).and_then(|section| section.key(key))
}

impl Document<'_> {
    /// Rejects unknown sections, then unknown keys, each in file order.
    pub(super) fn check_names(&self) -> Result<(), ConfigError> {
        for name in &self.sections {
            if name != GENERAL && section(name).is_none() {
                return Err(ConfigError::UnknownSection {
                    path: self.path.to_path_buf(),
                    section: name.clone(),
                });
            }
        }
        for entry in &self.entries {
            if declared(&entry.section, &entry.key).is_none() {
                let hint = if entry.section == GENERAL {
                    format!("keys must be inside a section; known sections: {}", known_sections())
                } else {
                    format!("known keys: {}", keys_of(&entry.section).unwrap_or_default().join(", "))
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

/// Every section and key as a commented configuration file: each key at its default, commented
/// out, under what it does. The authentication sections' headers are commented out too, because
/// an `[AWS]` header alone would choose the AWS authenticator.
pub fn commented_file() -> String {
    let mut out = String::from(
        "# remoteproxy configuration (the nymea-remoteproxy INI format, with keys of our own).\n\
         # Every key is shown at its default and commented out: remove the '#' to change one.\n",
    );
    for section in sections() {
        let header = if BROKER.iter().any(|own| own.name == section.name) { "" } else { "#" };
        out.push_str(&format!("\n# {}\n{header}[{}]\n", section.doc, section.name));
        for key in section.keys {
            out.push_str(&format!("# {} ({})\n", key.doc, key.kind.describe()));
            out.push_str(&format!("#{}={}\n", key.name, key.default.unwrap_or("")));
        }
    }
    out
}
