//! remoteproxy: a secure tunnel broker that speaks the nymea-remoteproxy protocol.
//!
//! Devices and apps behind NAT both connect out to the broker, authenticate with a shared token,
//! and the broker joins them into a tunnel. The wire contract is PROTOCOL.md in the project's
//! shared documents; this crate is laid out along the path of one connection:
//!
//! * [`config`]: the nymea-compatible INI configuration and its defaults.
//! * [`transport`]: listeners, TLS, WebSocket, and a connection in its JSON phase.
//! * [`protocol`]: the JSON dialect: stream decoder, requests, responses, errors, introspection.
//! * `proxy`: the v1 API: one session state machine per connection and pairing.
//! * [`tunnelproxy`]: the v2 API: registered servers multiplexing their clients over SLIP.
//! * `relay`: the byte and message pump between the two ends of a tunnel.
//! * `stats`: live connections and tunnels, totals, events for metrics and the statistics log.
//! * [`monitor`], `metrics`, `statistics_log`: the monitor socket, the Prometheus endpoint, and
//!   the per-tunnel log with totals kept across restarts.
//! * [`server`]: wires it together ([`Server::run`]) and drains on shutdown ([`shutdown`]);
//!   [`reload`] handles SIGHUP; `systemd` tells the service manager.
//! * [`cli`], [`limits`], [`logging`]: the binary's flags and process set-up.
//!
//! Authenticators live in the `remoteproxy-authenticators` crate. What a user of the library
//! needs is public: the configuration, the server, the listeners, the monitor's limits and the
//! close reasons (`protocol::reasons`); the decoder, the sessions, the pumps, pairing and
//! bookkeeping are the crate's own, and so documented only where a comment says why.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod logging;
mod maps;
pub(crate) mod metrics;
pub mod monitor;
pub mod protocol;
pub(crate) mod proxy;
pub(crate) mod relay;
pub mod reload;
pub mod rendezvous;
pub mod server;
pub mod shutdown;
pub(crate) mod statistics_log;
pub(crate) mod stats;
pub(crate) mod systemd;
pub mod transport;
pub mod tunnelproxy;

pub use config::Config;
pub use remoteproxy_authenticators as authenticators;
pub use server::Server;
pub use transport::{Listeners, ServerListeners};
