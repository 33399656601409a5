//! A server under test: the broker, or a baseline, driven by the same client code.

use crate::client::{Endpoint, Handshake};
use crate::procfs::{self, Sample};

/// Where a server listens and how to talk to it.
#[derive(Debug, Clone)]
pub struct Server {
    /// `broker` or `baseline`, for messages.
    pub role: &'static str,
    /// The byte-stream listener (v1 TCP, with or without TLS).
    pub stream: Endpoint,
    /// The WebSocket listener, when known.
    pub ws: Option<Endpoint>,
    /// The v2 TunnelProxy byte-stream listener, when known.
    pub v2: Option<Endpoint>,
    /// The v2 TunnelProxy WebSocket listener, when known.
    pub v2_ws: Option<Endpoint>,
    /// Its process, for memory, descriptor and CPU readings.
    pub pid: Option<u32>,
    /// What the client says before the tunnel.
    pub handshake: Handshake,
    /// Another node of the same cluster: the second end of every tunnel connects there (the
    /// `cluster` measure's cross-node tunnels).
    pub peer: Option<Box<Server>>,
}

impl Server {
    /// RSS and open descriptors now, when the process can be read.
    pub fn sample(&self) -> Option<Sample> {
        procfs::sample(self.pid?).ok()
    }
}
