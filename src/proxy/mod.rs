//! The v1 proxy API: token-paired tunnels (PROTOCOL §4).
//!
//! * [`api`]: the method table (dispatch, validation, introspection).
//! * [`session`]: the state machine of one connection.
//! * [`pairing`]: pair-or-park of authenticated clients, keyed by (token, nonce), and what a
//!   waiting client hands to its partner.
//! * [`tunnel`]: the last phase, two connections joined: the relay, then the books.
//! * [`remote`]: tunnels whose peers are on different cluster nodes.

pub mod api;
pub mod pairing;
pub mod remote;
pub mod session;
pub mod tunnel;

#[cfg(test)]
mod timer_tests;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use remoteproxy_authenticators::Authenticator;
use tokio_util::sync::CancellationToken;

use crate::config::Timeouts;

pub use pairing::Registry;

/// What every v1 session shares.
pub struct ProxyContext {
    /// `[ProxyServer] name`, returned by `Hello`.
    pub server_name: String,
    pub timeouts: Timeouts,
    /// Decides who may open tunnels.
    pub authenticator: Arc<dyn Authenticator>,
    pub registry: Arc<Registry>,
    /// Notification ids, one counter for the API.
    pub notification_ids: AtomicU64,
    /// Cancelled on a stop signal: connections that are not tunnels close.
    pub stop: CancellationToken,
    /// Cancelled when the grace period is over: tunnels close too.
    pub hard_stop: CancellationToken,
    /// Connections, tunnels and events for the monitor, metrics and the statistics log.
    pub stats: Arc<crate::stats::Stats>,
    /// `[Cluster]`: where peers on other nodes are found (`None`: this node is alone).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}
