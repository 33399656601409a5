//! The v2 TunnelProxy API (PROTOCOL §5): a device registers once as a server; any number of
//! clients join it, each multiplexed over the server's one connection with SLIP frames.
//!
//! * `api`: the method table and the `TunnelProxyError` enum.
//! * `session`: a connection before registration (requests, registration rules, timers).
//! * `registry`: which uuids are registered, as server or client.
//! * `server`: a registered server's actor (client table, SLIP, JSON on address 0) and writer.
//! * `client`: a registered client's pipe to its server.
//! * `remote`: clients whose server is registered on another cluster node.
//!
//! The SLIP codec itself is in the `remoteproxy-wire` crate, shared with the client library.

pub(crate) mod api;
pub(crate) mod client;
pub(crate) mod control;
pub(crate) mod registry;
pub mod remote;
pub(crate) mod server;
pub(crate) mod session;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::Timeouts;
use crate::stats::ConnHandle;
use crate::transport::halves::{ReadHalf, WriteHalf};

/// A registered connection's parts, handed from the session to the server or client role.
pub struct Carrier {
    /// Where its bytes come from.
    pub reader: ReadHalf,
    /// Where bytes for it go.
    pub writer: WriteHalf,
    /// What it sent behind its registering call.
    pub early: Bytes,
    /// Its statistics entry.
    pub stats: ConnHandle,
    /// What it holds against `maxConnections` and `[Limits]` while it lives.
    pub ticket: Option<crate::transport::admission::Ticket>,
}

pub(crate) use registry::Registry;
pub use server::CLIENT_QUEUE_LIMIT;

/// What every v2 connection shares.
pub struct TunnelProxyContext {
    /// `[ProxyServer] name`, returned by `Hello`.
    pub server_name: String,
    /// Timers.
    pub timeouts: Timeouts,
    /// `maxMessageSize`, also for a registered server's JSON channel.
    pub max_message_size: usize,
    /// `maxClientsPerServer`.
    pub max_clients_per_server: usize,
    /// Registered uuids.
    pub registry: Arc<Registry>,
    /// Notification ids, one counter for the API.
    pub notification_ids: AtomicU64,
    /// Cancelled on a stop signal: unregistered connections close.
    pub stop: CancellationToken,
    /// Cancelled when the grace period is over: servers and clients close too.
    pub hard_stop: CancellationToken,
    /// Connections and events for the monitor and metrics.
    pub stats: Arc<crate::stats::Stats>,
    /// `[Cluster]`: where servers registered on other nodes are found.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}
