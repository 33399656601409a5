//! Every close reason the broker sends, once (PROTOCOL §3, §4 and §6): on a WebSocket they are
//! the close frame's reason, and clients in the field match these exact strings.

/// `inactiveTimeout`, `handshakeDeadline` or `tunnelProxyServerTimeout` expired.
pub const INACTIVE: &str = "Proxy timeout occurred. The socket was inactive.";
/// `aloneTimeout` expired (v1).
pub const ALONE: &str = "Proxy timeout occurred. The tunnel partner did not show up.";
/// Data from an authenticated v1 client that is still alone.
pub const DATA_WHILE_ALONE: &str = "Data received while authenticated but not remote connected.";
/// The authenticator refused (v1).
pub const NOT_SUCCESSFUL: &str = "API call was not successfully.";
/// A second `Authenticate` while the first is still running (v1).
pub const AUTHENTICATION_IN_PROGRESS: &str = "Authentication already in progress.";
/// The other end of a v1 tunnel went away.
pub const PARTNER_GONE: &str = "Tunnel client disconnected";
/// The broker stops (WebSocket code 1000).
pub const STOP_SERVER: &str = "Stop server";
/// A v2 client ended its connection; the broker's answering close carries this.
pub const CLIENT_GONE: &str = "Client disconnected";
/// A v2 server's connection ended; sent to each of its clients.
pub const SERVER_GONE: &str = "Server disconnected";
/// The v2 server asked for its client's disconnection.
pub const DISCONNECT_REQUESTED: &str = "Server requested disconnect.";
/// A v2 client did not read what its server sent fast enough.
pub const TOO_SLOW: &str = "Client did not read fast enough.";
/// `maxClientsPerServer` reached (v2).
pub const SERVER_FULL: &str = "Too many clients on this server.";
/// (Cluster) the node where the tunnel partner waits cannot be reached; the client may retry.
pub const PARTNER_NODE_UNREACHABLE: &str = "The tunnel partner's broker node cannot be reached.";

/// The rendezvous listener's close reasons (`[RendezvousServer]`, the Micronets way).
pub mod rendezvous {
    /// The path names no meeting after the prefix (code 1008).
    pub const NO_MEETING: &str = "No meeting id in the path.";
    /// A third peer on a meeting that has two (code 1008).
    pub const FULL: &str = "This meeting already has two peers.";
    /// No first message within `helloTimeout` (code 1008).
    pub const NO_HELLO: &str = "No CONN:HELLO within helloTimeout.";
    /// `policyFile` does not let this certificate into this meeting (code 1008).
    pub const NOT_ALLOWED: &str = "Your certificate may not join this meeting.";
    /// The first message was not a `CONN:HELLO` (code 1008).
    pub const NOT_HELLO: &str = "The first message must be a CONN:HELLO.";
    /// More held than `maxHeldMessages` or `maxHeldBytes` before the partner came (code 1008).
    pub const TOO_MUCH_HELD: &str = "Too many messages before the partner joined.";
    /// The partner left the meeting (code 1001): reconnect to meet again.
    pub const PARTNER_LEFT: &str = "Your partner left the meeting.";
    /// The partner's connection failed (code 1011).
    pub const PARTNER_FAILED: &str = "Your partner's connection failed.";
    /// The partner's hand-over was lost (code 1011).
    pub const PARTNER_GONE: &str = "Your partner is gone.";
    /// The peer itself left; the answering close carries this (code 1001).
    pub const LEFT: &str = "Goodbye.";
    /// `aloneTimeout` expired (code 1001).
    pub const ALONE: &str = "No partner joined within aloneTimeout.";
}
