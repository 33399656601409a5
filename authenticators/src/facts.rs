//! What the broker knows about a connection when it asks an authenticator.

use std::fmt;
use std::net::SocketAddr;

pub use remoteproxy_wire::Transport;

/// Where a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddress {
    /// An IP peer (TCP and WebSocket listeners).
    Ip(SocketAddr),
    /// A local process on the unix socket; it has no network address.
    Unix,
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddress::Ip(addr) => write!(f, "{addr}"),
            PeerAddress::Unix => f.write_str("unix"),
        }
    }
}

/// Facts about the connection and the identity its client claimed in `Authenticate`.
#[derive(Debug, Clone)]
pub struct ConnectionFacts {
    /// The remote address.
    pub peer: PeerAddress,
    /// The listener kind.
    pub transport: Transport,
    /// The `uuid` the client gave (braces removed).
    pub uuid: String,
    /// The `name` the client gave.
    pub name: String,
    /// The `nonce` the client gave; empty when it gave none.
    pub nonce: String,
    /// The DER-encoded client certificate chain from the TLS handshake, leaf first, when the
    /// client presented one.
    pub client_certificates: Option<Vec<Vec<u8>>>,
}
