//! The v2 TunnelProxy API (PROTOCOL §5): a server registers under a uuid and stays connected;
//! clients name that uuid and each gets a byte pipe to the server.
//!
//! Unlike the v1 token pairing, one server connection carries all its clients: the broker
//! frames every client's bytes with SLIP and a 2-byte socket address, and uses address 0 for
//! JSON (responses and the `ClientConnected`/`ClientDisconnected` notifications). The client
//! side sees no framing at all.
//!
//! * [`TunnelClient`] (`client.rs`): register and get a [`TunnelStream`](crate::TunnelStream).
//! * [`TunnelServer`] (`server.rs`): stay registered, reconnect with [`Backoff`]
//!   (`backoff.rs`), and accept [`IncomingClient`]s (`incoming.rs`).
//! * `mux.rs`: the demultiplexer, writer and pinger of one server connection; `outgoing.rs`:
//!   the frames its writer sends and the state a client shares with it.
//! * `register.rs`: the registration calls; [`TunnelProxyError`] comes from `remoteproxy-wire`.

mod backoff;
mod client;
mod incoming;
mod mux;
mod outgoing;
mod register;
mod server;

#[cfg(test)]
mod tests;

pub use backoff::{Backoff, Delays, jittered};
pub use client::TunnelClient;
pub use incoming::{IncomingClient, IncomingStream};
pub use mux::PING_INTERVAL;
pub use remoteproxy_wire::TunnelProxyError;
pub use server::{ServerRegistration, ServerSettings, ServerStatus, TunnelServer};
