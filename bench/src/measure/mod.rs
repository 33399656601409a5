//! The measures. Each runs the same client code against the broker and against a baseline
//! in the same run, `rounds` times per side, alternating which side goes first so that drift
//! (another process waking up, thermal changes) hits both alike. Reported values are the median
//! of the rounds (rates) or the pooled samples (latency distributions).

pub mod cluster;
pub mod fleet;
pub mod hold;
pub mod latency;
pub mod setup;
pub mod storm;
pub mod throughput;

use std::sync::Arc;
use std::time::Duration;

use crate::baseline::BaselineArgs;
use crate::client::{Client, Endpoint};
use crate::server::Server;

/// Sizes, counts and repetitions.
#[derive(Debug, Clone)]
pub struct Params {
    /// Setup: tunnels per round and side.
    pub setup_tunnels: usize,
    /// Setup: tunnels in flight at once.
    pub concurrency: usize,
    /// Throughput: bytes per direction.
    pub bytes: u64,
    /// Size of each write (stream) or message (WebSocket).
    pub chunk: usize,
    /// Latency: timed round trips per round and side.
    pub round_trips: usize,
    /// Latency: bytes each way per round trip.
    pub message_size: usize,
    /// Hold: what is held, see [`HoldShape`].
    pub hold_shape: HoldShape,
    /// Hold: tunnels (v1 shapes) or registered servers (v2 shapes).
    pub hold_tunnels: usize,
    /// Hold: tunnels being opened at once.
    pub hold_concurrency: usize,
    /// Hold: bytes each tunnel carries each way before going idle.
    pub hold_bytes: u64,
    /// Hold: how long the tunnels sit idle before memory is read.
    pub hold_idle: Duration,
    /// Fleet (v2 shapes): clients that reach a held server, timed.
    pub reach_clients: usize,
    /// Fleet (v2 shapes): when a held server sends its first ping after registering.
    pub first_ping: Duration,
    /// Storm: devices (v2 servers) per storm.
    pub storm_servers: usize,
    /// Storm: devices between connect and registration at once.
    pub storm_in_flight: usize,
    /// Storm: retries a device makes after a failed attempt.
    pub storm_retries: usize,
    /// Storm: v1 tunnels doing ping-pong during each storm.
    pub storm_tunnels: usize,
    /// Storm: ask the driver to restart the broker (stderr, stdin) and storm the new one.
    pub restart_via_stdin: bool,
    /// Repetitions per side of setup, throughput and latency.
    pub rounds: usize,
    /// Bound of one transfer (throughput, latency, hold traffic).
    pub transfer_timeout: Duration,
}

/// What `hold` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HoldShape {
    /// v1 tunnels, both ends on the byte-stream listener (TLS-TCP with TLS on).
    #[default]
    V1Tcp,
    /// v1 tunnels, both ends on the WebSocket listener (wss with TLS on).
    V1Ws,
    /// Registered v2 TunnelProxy servers on the TunnelProxy TCP listener.
    V2Tcp,
    /// Registered v2 TunnelProxy servers on the TunnelProxy WebSocket listener.
    V2Ws,
}

impl HoldShape {
    /// The flag's spelling, `v1-tcp` ...
    pub fn name(self) -> &'static str {
        match self {
            HoldShape::V1Tcp => "v1-tcp",
            HoldShape::V1Ws => "v1-ws",
            HoldShape::V2Tcp => "v2-tcp",
            HoldShape::V2Ws => "v2-ws",
        }
    }

    /// Whether this holds v2 servers (the fleet measure) rather than v1 tunnels.
    pub fn is_v2(self) -> bool {
        matches!(self, HoldShape::V2Tcp | HoldShape::V2Ws)
    }

    /// The v1 pairing of the tunnels held, for the v1 shapes.
    pub fn pairing(self) -> Option<Pairing> {
        match self {
            HoldShape::V1Tcp => Some(Pairing::Stream),
            HoldShape::V1Ws => Some(Pairing::Ws),
            HoldShape::V2Tcp | HoldShape::V2Ws => None,
        }
    }

    /// The TunnelProxy listener of `server` a v2 shape uses.
    pub fn v2_endpoint(self, server: &Server) -> Option<Endpoint> {
        match self {
            HoldShape::V2Tcp => server.v2.clone(),
            HoldShape::V2Ws => server.v2_ws.clone(),
            HoldShape::V1Tcp | HoldShape::V1Ws => None,
        }
    }
}

/// Where human lines go: stdout, or stderr when stdout carries the JSON document.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// `--json` was given.
    pub json: bool,
}

impl Printer {
    /// Prints lines as they are ready.
    pub fn say(&self, lines: &[String]) {
        for line in lines {
            if self.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
}

/// Everything a measure needs.
pub struct Bench {
    /// The client, shared by every measure and both sides.
    pub client: Arc<Client>,
    /// The broker under test.
    pub broker: Server,
    /// Sizes and counts.
    pub params: Params,
    /// Output.
    pub printer: Printer,
}

impl Bench {
    /// What the baseline must terminate to match the broker: TLS where the broker has TLS.
    pub fn baseline_args(&self) -> BaselineArgs {
        let tls_stream = self.broker.stream.tls;
        let tls_ws = self.broker.ws.as_ref().map_or(tls_stream, |ws| ws.tls);
        BaselineArgs { tls_stream, tls_ws, tickets: false }
    }
}

/// Which side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The broker under test.
    Broker = 0,
    /// The in-run baseline.
    Baseline = 1,
}

/// Round 0 runs the broker first, round 1 the baseline first, and so on.
pub fn order(round: usize) -> [Side; 2] {
    if round.is_multiple_of(2) { [Side::Broker, Side::Baseline] } else { [Side::Baseline, Side::Broker] }
}

/// The two ends of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Both ends on the byte-stream listener.
    Stream,
    /// Both ends on the WebSocket listener.
    Ws,
    /// First end on the stream listener, second on the WebSocket listener.
    Mixed,
}

impl Pairing {
    /// The pairings a server offers: stream always, WebSocket and mixed with a WebSocket URL.
    pub fn available(server: &Server) -> Vec<Pairing> {
        if server.ws.is_some() {
            vec![Pairing::Stream, Pairing::Ws, Pairing::Mixed]
        } else {
            vec![Pairing::Stream]
        }
    }

    /// The endpoints of the two ends on `server` (the second on its `peer`, when it has one).
    pub fn endpoints(self, server: &Server) -> Option<(Endpoint, Endpoint)> {
        let second = server.peer.as_deref().unwrap_or(server);
        match self {
            Pairing::Stream => Some((server.stream.clone(), second.stream.clone())),
            Pairing::Ws => Some((server.ws.clone()?, second.ws.clone()?)),
            Pairing::Mixed => Some((server.stream.clone(), second.ws.clone()?)),
        }
    }

    /// The name in results, from the broker's endpoints: `tls-tcp`, `wss`, `mixed tls-tcp/wss`.
    pub fn label(self, server: &Server) -> String {
        match self.endpoints(server) {
            Some((a, _)) if self == Pairing::Stream => a.label().to_string(),
            Some((a, _)) if self == Pairing::Ws => a.label().to_string(),
            Some((a, b)) => format!("mixed {}/{}", a.label(), b.label()),
            None => "n/a".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Handshake;

    #[test]
    fn rounds_alternate() {
        assert_eq!(order(0), [Side::Broker, Side::Baseline]);
        assert_eq!(order(1), [Side::Baseline, Side::Broker]);
        assert_eq!(order(2), order(0));
    }

    #[test]
    fn pairings_follow_the_listeners() {
        let mut server = Server {
            role: "broker",
            stream: Endpoint::parse("ssl://127.0.0.1:1").unwrap(),
            ws: None,
            v2: None,
            v2_ws: None,
            pid: None,
            handshake: Handshake::V1,
            peer: None,
        };
        assert_eq!(Pairing::available(&server), [Pairing::Stream]);
        assert_eq!(Pairing::Stream.label(&server), "tls-tcp");
        server.ws = Some(Endpoint::parse("wss://127.0.0.1:2").unwrap());
        assert_eq!(Pairing::available(&server).len(), 3);
        assert_eq!(Pairing::Ws.label(&server), "wss");
        assert_eq!(Pairing::Mixed.label(&server), "mixed tls-tcp/wss");
        let (a, b) = Pairing::Mixed.endpoints(&server).unwrap();
        assert!(!a.websocket && b.websocket);
    }

    #[test]
    fn hold_shapes_pick_their_listeners() {
        let mut server = Server {
            role: "broker",
            stream: Endpoint::parse("ssl://127.0.0.1:1").unwrap(),
            ws: Some(Endpoint::parse("wss://127.0.0.1:2").unwrap()),
            v2: Some(Endpoint::parse("ssl://127.0.0.1:3").unwrap()),
            v2_ws: None,
            pid: None,
            handshake: Handshake::V1,
            peer: None,
        };
        assert_eq!(HoldShape::default(), HoldShape::V1Tcp);
        assert_eq!(HoldShape::V1Ws.pairing(), Some(Pairing::Ws));
        assert_eq!(HoldShape::V1Ws.pairing().unwrap().label(&server), "wss");
        assert_eq!(HoldShape::V2Tcp.pairing(), None);
        assert_eq!(HoldShape::V2Tcp.v2_endpoint(&server).unwrap().addr.port(), 3);
        assert!(HoldShape::V2Ws.v2_endpoint(&server).is_none());
        server.v2_ws = Some(Endpoint::parse("wss://127.0.0.1:4/").unwrap());
        assert!(HoldShape::V2Ws.v2_endpoint(&server).unwrap().websocket);
        assert!(HoldShape::V2Ws.is_v2() && !HoldShape::V1Ws.is_v2());
        assert_eq!(HoldShape::V2Ws.name(), "v2-ws");
    }
}
