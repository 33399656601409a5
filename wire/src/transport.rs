//! The listener kinds, by the names the monitor snapshot, the statistics log and the metrics
//! labels use: the broker writes them, the monitor and the authenticators read them.

use std::fmt;

/// The listener kind a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP (with or without TLS) speaking the byte-stream framing.
    Tcp,
    /// WebSocket (with or without TLS).
    WebSocket,
    /// A local unix-domain socket.
    Unix,
}

impl Transport {
    /// Every kind, in the order the monitor lists them.
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::WebSocket, Transport::Unix];

    /// The name on the wire (PROTOCOL §7).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::WebSocket => "WebSocket",
            Transport::Unix => "unix",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
