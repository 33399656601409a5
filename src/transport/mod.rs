//! Listeners and connections: everything below the JSON-RPC dialect.
//!
//! * `listeners`: binding TCP and unix sockets (startup errors name the address).
//! * `accept`: accept loops, TLS handshake and WebSocket upgrade.
//! * `admission`: the limits checked at accept (`maxConnections`, `[Limits]`) and the ticket a
//!   connection holds against them.
//! * `proxy_protocol`: the PROXY protocol header a trusted load balancer sends first (v1, v2).
//! * `tls`: certificates and keys, or a generated self-signed certificate.
//! * `tls_stream`: the server side of TLS on rustls' unbuffered API (no buffer held while idle).
//! * `handshakes`: the lower-priority threads TLS handshakes run on (fair to established tunnels).
//! * `tickets`: TLS session tickets whose keys persist and rotate (resumption across restarts).
//! * `websocket`: the upgrade, the frame layer with its keepalive, closing with a code and reason.
//! * `frames`: remembers WebSocket frame types of bytes still buffered at the switch.
//! * `halves`: a carrier split into read and write halves (TunnelProxy multiplexing).
//! * `connection`: one connection in its JSON phase, and its hand-over to the relay.

pub(crate) mod accept;
pub(crate) mod admission;
pub(crate) mod certificate;
pub(crate) mod connection;
pub(crate) mod frames;
pub(crate) mod halves;
pub(crate) mod handshakes;
pub mod listeners;
pub mod proxy_protocol;
pub(crate) mod tickets;
pub(crate) mod tls;
pub(crate) mod tls_stream;
pub(crate) mod websocket;

use tokio::io::{AsyncRead, AsyncWrite};

pub(crate) use connection::{Chunk, Connection, EarlyData, Exit, ReadError};
pub use listeners::{BindError, Listeners, ServerListeners, UnixSocketListener};

/// Any byte stream a connection can run on: TCP, TLS over TCP, unix.
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The stream itself, so the relay can tell a link to another cluster node (which takes and
    /// hands over owned chunks, saving a copy each way) from a socket.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> IoStream for T {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A boxed byte stream. One virtual call per read or write is nothing next to a syscall, and it
/// keeps one code path for every kind of stream.
pub type BoxStream = Box<dyn IoStream>;
