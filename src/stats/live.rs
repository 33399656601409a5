//! The live view of connections and tunnels, for the monitor.
//!
//! Every served connection registers a [`ConnStats`] and keeps its [`ConnHandle`] for as long as
//! it lives (the handle moves with the connection into a tunnel); dropping the handle removes the
//! entry. Byte counters are atomics the relay bumps per chunk, so reading a snapshot never
//! blocks a tunnel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use remoteproxy_authenticators::{PeerAddress, Transport};

use super::Stats;
use super::events::Api;

/// What a connection is in the TunnelProxy API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Not registered (or a v1 connection).
    #[default]
    None,
    Server,
    /// A registered client of the server connection with this id.
    Client {
        /// The server's connection id.
        server: u64,
    },
}

/// What the client said about itself and what the broker decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// `name` (v1) or `serverName`/`clientName` (v2).
    pub name: String,
    /// `uuid` (v1) or `serverUuid`/`clientUuid` (v2).
    pub uuid: String,
    /// From the authenticator (v1).
    pub user_name: Option<String>,
    /// Authenticated (v1) or registered (v2).
    pub authenticated: bool,
    /// Part of a tunnel (v1) or a joined client (v2).
    pub tunnel_connected: bool,
    pub role: Role,
}

/// One live connection.
#[derive(Debug)]
pub struct ConnStats {
    /// Process-unique connection id.
    pub id: u64,
    pub api: Api,
    pub peer: PeerAddress,
    pub transport: Transport,
    pub created: SystemTime,
    /// Payload bytes it sent through its tunnel.
    pub rx: AtomicU64,
    /// Payload bytes delivered to it through its tunnel.
    pub tx: AtomicU64,
    info: Mutex<ConnInfo>,
}

impl ConnStats {
    /// A copy of the descriptive fields.
    pub fn info(&self) -> ConnInfo {
        self.info.lock().expect("stats lock").clone()
    }

    /// Changes the descriptive fields.
    pub fn update(&self, change: impl FnOnce(&mut ConnInfo)) {
        change(&mut self.info.lock().expect("stats lock"));
    }
}

/// A registered connection; dropping it unregisters the connection.
#[derive(Debug)]
pub struct ConnHandle {
    entry: Arc<ConnStats>,
    stats: Arc<Stats>,
}

impl ConnHandle {
    pub(super) fn register(
        stats: &Arc<Stats>,
        id: u64,
        api: Api,
        peer: PeerAddress,
        transport: Transport,
    ) -> Self {
        let entry = Arc::new(ConnStats {
            id,
            api,
            peer,
            transport,
            created: SystemTime::now(),
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            info: Mutex::new(ConnInfo::default()),
        });
        stats.connections.lock().expect("stats lock").insert(id, entry.clone());
        ConnHandle { entry, stats: stats.clone() }
    }

    /// The entry.
    pub fn entry(&self) -> &Arc<ConnStats> {
        &self.entry
    }

    /// The broker's statistics this handle reports to.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Counts `bytes` this connection sent into its tunnel.
    pub fn sent(&self, bytes: u64) {
        self.entry.rx.fetch_add(bytes, Ordering::Relaxed);
        self.stats.relayed(self.entry.api, bytes);
    }

    /// Counts `bytes` delivered to this connection.
    pub fn received(&self, bytes: u64) {
        self.entry.tx.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.stats.connections.lock().expect("stats lock").remove(&self.entry.id);
        self.stats.connection_closed(self.entry.api, self.entry.transport);
    }
}

/// One live v1 tunnel.
#[derive(Debug, Clone, Copy)]
pub struct TunnelInfo {
    /// The waiting client's connection id.
    pub one: u64,
    /// The joining client's connection id.
    pub two: u64,
    pub created: SystemTime,
}

/// A registered tunnel; dropping it unregisters the tunnel.
#[derive(Debug)]
pub struct TunnelHandle {
    id: u64,
    stats: Arc<Stats>,
}

impl TunnelHandle {
    pub(super) fn register(stats: &Arc<Stats>, id: u64, info: TunnelInfo) -> Self {
        stats.tunnels.lock().expect("stats lock").insert(id, info);
        TunnelHandle { id, stats: stats.clone() }
    }
}

impl Drop for TunnelHandle {
    fn drop(&mut self) {
        self.stats.tunnels.lock().expect("stats lock").remove(&self.id);
    }
}
