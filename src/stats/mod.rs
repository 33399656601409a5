//! What the broker is doing, for the people who run it.
//!
//! * [`live`]: every live connection and tunnel, with byte counters (the monitor's view).
//! * [`events`]: the events the broker reports and the [`StatsSink`] trait that receives them
//!   (Prometheus metrics, the statistics log).
//! * [`snapshot`]: the monitor snapshot of PROTOCOL §7.
//!
//! [`Stats`] ties them together: the registry, the totals (kept across restarts by the
//! statistics log's state file), the throughput of the last second, and the sinks.

pub mod events;
pub mod live;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use remoteproxy_authenticators::{AuthenticationError, PeerAddress, Transport};
use remoteproxy_wire::monitor::{ClusterStatistic, RendezvousStatistic};

pub use events::{Api, Refusal, SessionOutcome, StatsSink, TunnelRecord, TunnelSide};
pub use live::{ConnHandle, ConnInfo, ConnStats, Role, TunnelHandle, TunnelInfo};

/// Totals since the statistics began (persisted by the statistics log when it is on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// v1 connections ever served.
    pub clients: u64,
    /// v1 tunnels ever established.
    pub tunnels: u64,
    /// v1 payload bytes ever relayed.
    pub traffic: u64,
    /// v2 connections ever served.
    pub tunnel_proxy_clients: u64,
    /// v2 payload bytes ever relayed.
    pub tunnel_proxy_traffic: u64,
}

#[derive(Debug, Default)]
struct Counters {
    clients: AtomicU64,
    tunnels: AtomicU64,
    traffic: AtomicU64,
    tunnel_proxy_clients: AtomicU64,
    tunnel_proxy_traffic: AtomicU64,
}

/// The broker's statistics.
pub struct Stats {
    server_name: String,
    started: Instant,
    connections: Mutex<BTreeMap<u64, Arc<ConnStats>>>,
    tunnels: Mutex<BTreeMap<u64, TunnelInfo>>,
    tunnel_ids: AtomicU64,
    totals: Counters,
    /// Traffic at the last tick, and the bytes per second measured then (v1, v2).
    last_traffic: [AtomicU64; 2],
    throughput: [AtomicU64; 2],
    sinks: Vec<Arc<dyn StatsSink>>,
    /// WebSocket connections closed for a missing pong since the start.
    keepalive_timeouts: AtomicU64,
    /// The served certificate's expiry (Unix time), kept current by reloads; set once TLS is on.
    certificate_expiry: std::sync::OnceLock<prometheus_client::metrics::gauge::Gauge>,
    /// The rendezvous listener's table, read when a snapshot or a scrape is made.
    rendezvous: std::sync::OnceLock<Arc<dyn RendezvousSource>>,
    /// The cluster membership, read when a snapshot or a scrape is made.
    cluster: std::sync::OnceLock<Arc<dyn ClusterSource>>,
}

/// What cluster mode reports, read on demand.
pub trait ClusterSource: Send + Sync {
    /// The node, its registry's state, its relayed tunnels.
    fn statistic(&self) -> ClusterStatistic;
}

/// What the rendezvous listener reports: read on demand, as its table is the truth.
pub trait RendezvousSource: Send + Sync {
    /// Its meetings now and its refusals so far.
    fn statistic(&self) -> RendezvousStatistic;
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Stats {
    /// Statistics for a broker named `server_name`, reporting events to `sinks`.
    pub fn new(server_name: &str, sinks: Vec<Arc<dyn StatsSink>>) -> Arc<Stats> {
        Arc::new(Stats {
            server_name: server_name.to_string(),
            started: Instant::now(),
            connections: Mutex::new(BTreeMap::new()),
            tunnels: Mutex::new(BTreeMap::new()),
            tunnel_ids: AtomicU64::new(1),
            totals: Counters::default(),
            last_traffic: Default::default(),
            throughput: Default::default(),
            sinks,
            keepalive_timeouts: AtomicU64::new(0),
            certificate_expiry: std::sync::OnceLock::new(),
            rendezvous: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// Reports the rendezvous listener in snapshots and metrics from now on.
    pub fn watch_rendezvous(&self, source: Arc<dyn RendezvousSource>) {
        let _ = self.rendezvous.set(source);
    }

    /// Reports cluster mode in snapshots and metrics from now on.
    pub fn watch_cluster(&self, source: Arc<dyn ClusterSource>) {
        let _ = self.cluster.set(source);
    }

    /// Cluster mode's statistic, when the node is in a cluster.
    pub fn cluster(&self) -> Option<ClusterStatistic> {
        self.cluster.get().map(|source| source.statistic())
    }

    /// The rendezvous listener's statistic, when there is one.
    pub fn rendezvous(&self) -> Option<RendezvousStatistic> {
        self.rendezvous.get().map(|source| source.statistic())
    }

    /// Reports the served certificate's expiry in snapshots from now on (the gauge the
    /// certificate reload updates).
    pub fn watch_certificate_expiry(&self, expiry: prometheus_client::metrics::gauge::Gauge) {
        let _ = self.certificate_expiry.set(expiry);
    }

    /// The served certificate's expiry as Unix time, with TLS on.
    pub fn certificate_expiry(&self) -> Option<i64> {
        self.certificate_expiry.get().map(|gauge| gauge.get()).filter(|at| *at != 0)
    }

    /// The broker's name.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Registers a served connection; keep the handle for as long as the connection lives.
    pub fn open(self: &Arc<Self>, id: u64, api: Api, peer: PeerAddress, transport: Transport) -> ConnHandle {
        match api {
            Api::V1 => &self.totals.clients,
            Api::V2 => &self.totals.tunnel_proxy_clients,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.each(|sink| sink.connection_opened(api, transport));
        ConnHandle::register(self, id, api, peer, transport)
    }

    /// Registers an established v1 tunnel between two connections.
    pub fn tunnel_opened(self: &Arc<Self>, one: &ConnHandle, two: &ConnHandle) -> TunnelHandle {
        self.totals.tunnels.fetch_add(1, Ordering::Relaxed);
        for side in [one, two] {
            side.entry().update(|info| info.tunnel_connected = true);
        }
        let id = self.tunnel_ids.fetch_add(1, Ordering::Relaxed);
        let info = TunnelInfo { one: one.entry().id, two: two.entry().id, created: SystemTime::now() };
        TunnelHandle::register(self, id, info)
    }

    /// Counts payload bytes relayed.
    pub fn relayed(&self, api: Api, bytes: u64) {
        match api {
            Api::V1 => &self.totals.traffic,
            Api::V2 => &self.totals.tunnel_proxy_traffic,
        }
        .fetch_add(bytes, Ordering::Relaxed);
        self.each(|sink| sink.bytes_relayed(api, bytes));
    }

    /// The totals now.
    pub fn totals(&self) -> Totals {
        let t = &self.totals;
        Totals {
            clients: t.clients.load(Ordering::Relaxed),
            tunnels: t.tunnels.load(Ordering::Relaxed),
            traffic: t.traffic.load(Ordering::Relaxed),
            tunnel_proxy_clients: t.tunnel_proxy_clients.load(Ordering::Relaxed),
            tunnel_proxy_traffic: t.tunnel_proxy_traffic.load(Ordering::Relaxed),
        }
    }

    /// Adds totals saved by an earlier run.
    pub fn restore_totals(&self, saved: Totals) {
        let t = &self.totals;
        t.clients.fetch_add(saved.clients, Ordering::Relaxed);
        t.tunnels.fetch_add(saved.tunnels, Ordering::Relaxed);
        t.traffic.fetch_add(saved.traffic, Ordering::Relaxed);
        t.tunnel_proxy_clients.fetch_add(saved.tunnel_proxy_clients, Ordering::Relaxed);
        t.tunnel_proxy_traffic.fetch_add(saved.tunnel_proxy_traffic, Ordering::Relaxed);
        self.last_traffic[0].fetch_add(saved.traffic, Ordering::Relaxed);
        self.last_traffic[1].fetch_add(saved.tunnel_proxy_traffic, Ordering::Relaxed);
    }

    /// Measures the throughput of the last interval; call once a second.
    pub fn tick(&self) {
        let now = [
            self.totals.traffic.load(Ordering::Relaxed),
            self.totals.tunnel_proxy_traffic.load(Ordering::Relaxed),
        ];
        for (i, traffic) in now.into_iter().enumerate() {
            let before = self.last_traffic[i].swap(traffic, Ordering::Relaxed);
            self.throughput[i].store(traffic.saturating_sub(before), Ordering::Relaxed);
        }
    }

    /// Bytes per second over the last tick: (v1, v2).
    pub fn throughput(&self) -> (u64, u64) {
        (self.throughput[0].load(Ordering::Relaxed), self.throughput[1].load(Ordering::Relaxed))
    }

    /// A copy of every live connection's entry.
    pub fn connections(&self) -> Vec<Arc<ConnStats>> {
        self.connections.lock().expect("stats lock").values().cloned().collect()
    }

    /// A copy of every live tunnel.
    pub fn live_tunnels(&self) -> Vec<TunnelInfo> {
        self.tunnels.lock().expect("stats lock").values().copied().collect()
    }

    /// A connection was refused by a limit.
    pub fn connection_refused(&self, refusal: Refusal) {
        self.each(|sink| sink.connection_refused(refusal));
    }

    /// A TLS handshake failed.
    pub fn tls_handshake_failed(&self) {
        self.each(|sink| sink.tls_handshake_failed());
    }

    /// A TLS handshake completed, resumed or full.
    pub fn tls_handshake_done(&self, resumed: bool) {
        self.each(|sink| sink.tls_handshake_done(resumed));
    }

    /// A WebSocket connection answered no keepalive ping and is being closed.
    pub fn keepalive_timed_out(&self) {
        self.keepalive_timeouts.fetch_add(1, Ordering::Relaxed);
        self.each(|sink| sink.keepalive_timed_out());
    }

    /// WebSocket connections closed for a missing pong since the start.
    pub fn keepalive_timeouts(&self) -> u64 {
        self.keepalive_timeouts.load(Ordering::Relaxed)
    }

    /// An authenticator answered.
    pub fn authentication(&self, authenticator: &'static str, outcome: AuthenticationError) {
        self.each(|sink| sink.authentication(authenticator, outcome));
    }

    /// A v1 session ended.
    pub fn session_ended(&self, outcome: SessionOutcome) {
        self.each(|sink| sink.session_ended(outcome));
    }

    /// A v1 tunnel was established.
    pub fn tunnel_established(&self, setup: Duration) {
        self.each(|sink| sink.tunnel_established(setup));
    }

    /// A v1 tunnel ended.
    pub fn tunnel_closed(&self, record: &TunnelRecord) {
        self.each(|sink| sink.tunnel_closed(record));
    }

    fn connection_closed(&self, api: Api, transport: Transport) {
        self.each(|sink| sink.connection_closed(api, transport));
    }

    fn each(&self, event: impl Fn(&dyn StatsSink)) {
        for sink in &self.sinks {
            event(sink.as_ref());
        }
    }
}
