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
