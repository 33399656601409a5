//! What the broker reports as it works, for the sinks that count or record it (Prometheus
//! metrics, the statistics log). Every label is from a small fixed set: never a token, uuid or
//! address.

use std::time::{Duration, SystemTime};

use remoteproxy_authenticators::{AuthenticationError, Transport};

/// Which API a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// The token-paired proxy API.
    V1,
    /// The TunnelProxy API.
    V2,
}

impl Api {
    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::V1 => "v1",
            Api::V2 => "v2",
        }
    }
}

/// Why a connection was refused before it was served: the setting whose limit it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::enum_variant_names, reason = "each variant is named after its setting, max... all")]
pub enum Refusal {
    /// `maxConnections` reached.
    MaxConnections,
    /// `maxClientsPerServer` reached (v2).
    MaxClientsPerServer,
    /// `[Limits] maxConnectionsPerIp` reached.
    MaxConnectionsPerIp,
    /// `[Limits] maxNewConnectionsPerIpPerSecond` exceeded.
    MaxNewConnectionsPerIpPerSecond,
    /// `[Limits] maxPendingHandshakes` reached.
    MaxPendingHandshakes,
    /// `[Limits] maxTunnelsPerToken` reached (v1, after authentication).
    MaxTunnelsPerToken,
    /// A PROXY protocol header from an address not in `[ProxyProtocol] trusted`.
    ProxyProtocolTrusted,
    /// A trusted address sent no valid PROXY protocol header in time.
    ProxyProtocolHeader,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 8] = [
        Refusal::MaxConnections,
        Refusal::MaxClientsPerServer,
        Refusal::MaxConnectionsPerIp,
        Refusal::MaxNewConnectionsPerIpPerSecond,
        Refusal::MaxPendingHandshakes,
        Refusal::MaxTunnelsPerToken,
        Refusal::ProxyProtocolTrusted,
        Refusal::ProxyProtocolHeader,
    ];

    /// The label value: the name of the setting that refused.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "maxConnections",
            Refusal::MaxClientsPerServer => "maxClientsPerServer",
            Refusal::MaxConnectionsPerIp => "maxConnectionsPerIp",
            Refusal::MaxNewConnectionsPerIpPerSecond => "maxNewConnectionsPerIpPerSecond",
            Refusal::MaxPendingHandshakes => "maxPendingHandshakes",
            Refusal::MaxTunnelsPerToken => "maxTunnelsPerToken",
            Refusal::ProxyProtocolTrusted => "proxyProtocolTrusted",
            Refusal::ProxyProtocolHeader => "proxyProtocolHeader",
        }
    }

    /// What happened, for the (rate-limited) log line.
    pub fn describe(self) -> std::borrow::Cow<'static, str> {
        match self {
            Refusal::ProxyProtocolTrusted => {
                "a PROXY protocol header came from an address not in [ProxyProtocol] trusted".into()
            }
            Refusal::ProxyProtocolHeader => "a trusted address sent no valid PROXY protocol header".into(),
            limit => format!("{} reached", limit.as_str()).into(),
        }
    }

    /// Its place in [`Refusal::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a v1 session ended (the names the Magic Wormhole transit relay gave them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionOutcome {
    /// It was part of a tunnel that ran and ended.
    Happy,
    /// It authenticated but its partner never came (`aloneTimeout`).
    Lonely,
    /// It was refused as a duplicate (tunnel exists, duplicate uuid).
    Redundant,
    /// It sent data before its tunnel existed.
    Impatient,
    /// It broke the protocol (bad JSON, unknown method, params, buffer overflow, refused token).
    Errory,
    /// It ran into a timer (inactive, handshake deadline, authentication, JSON-RPC).
    Timeout,
}

impl SessionOutcome {
    /// All outcomes, for exporting zeros.
    pub const ALL: [SessionOutcome; 6] = [
        SessionOutcome::Happy,
        SessionOutcome::Lonely,
        SessionOutcome::Redundant,
        SessionOutcome::Impatient,
        SessionOutcome::Errory,
        SessionOutcome::Timeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionOutcome::Happy => "happy",
            SessionOutcome::Lonely => "lonely",
            SessionOutcome::Redundant => "redundant",
            SessionOutcome::Impatient => "impatient",
            SessionOutcome::Errory => "errory",
            SessionOutcome::Timeout => "timeout",
        }
    }
}

/// One side of a finished v1 tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSide {
    pub transport: Transport,
    /// The user name the authenticator gave, if any.
    pub user_name: Option<String>,
    /// Bytes it sent into the tunnel.
    pub bytes_sent: u64,
}

/// A finished v1 tunnel, for the statistics log. Never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRecord {
    /// When the tunnel was established.
    pub start: SystemTime,
    pub end: SystemTime,
    /// The client that waited.
    pub first: TunnelSide,
    /// The client that joined.
    pub second: TunnelSide,
    /// Why it ended: `closed`, `failed`, `idle`, `shutdown`.
    pub reason: &'static str,
}

/// Receives the broker's events. Every method has an empty default, so a sink implements only
/// what it records. Methods are called on the hot path of a connection: they must not block.
pub trait StatsSink: Send + Sync + 'static {
    /// A connection was accepted (after TLS and the WebSocket upgrade) and is being served.
    fn connection_opened(&self, _api: Api, _transport: Transport) {}

    /// A connection that was opened ended.
    fn connection_closed(&self, _api: Api, _transport: Transport) {}

    /// A connection was refused by a limit.
    fn connection_refused(&self, _refusal: Refusal) {}

    /// A TLS handshake failed or timed out.
    fn tls_handshake_failed(&self) {}

    /// A TLS handshake completed: a resumed session, or a full handshake.
    fn tls_handshake_done(&self, _resumed: bool) {}

    /// A WebSocket connection was closed because its pong did not come within the keepalive
    /// timeout.
    fn keepalive_timed_out(&self) {}

    /// An authenticator answered (or timed out).
    fn authentication(&self, _authenticator: &'static str, _outcome: AuthenticationError) {}

    /// A v1 session ended this way.
    fn session_ended(&self, _outcome: SessionOutcome) {}

    /// A v1 tunnel was established, `setup` after the joining client's connection was accepted.
    fn tunnel_established(&self, _setup: Duration) {}

    /// A v1 tunnel ended.
    fn tunnel_closed(&self, _record: &TunnelRecord) {}

    /// Payload bytes crossed a tunnel (either API).
    fn bytes_relayed(&self, _api: Api, _bytes: u64) {}
}

/// The duration of a record.
impl TunnelRecord {
    /// How long the tunnel ran.
    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }
}
