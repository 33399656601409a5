//! The command line client's own parts: flags, the broker options, the modes, and one module
//! per way of running (v1 token pairing, the v2 server and client).

pub use remoteproxy_client::args;
pub mod broker;
pub mod modes;
pub mod tunnel_client;
pub mod tunnel_server;
pub mod v1;
