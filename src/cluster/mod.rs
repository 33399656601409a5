//! Cluster mode (`[Cluster]`): several broker nodes behind one name, sharing a directory in Redis,
//! so that the two peers of a tunnel may connect to different nodes (TLS hides the token from any
//! load balancer, so it cannot route them together).
//!
//! * [`directory`]: the Redis side: heartbeats, entries for waiting v1 peers and v2 servers,
//!   claim / compare-and-delete / refresh scripts, and the up/down state.
//! * [`link`]: the authenticated, multiplexed inter-node links (TLS pinned through the
//!   heartbeat, channel-bound proofs of the shared secret, HTTP/2 streams).
//! * [`h2_stream`]: one link stream as a byte stream for the relay.
//!
//! How a tunnel crosses nodes is the v1 API's business (`proxy::remote`): the node where the first
//! peer waits owns the tunnel's entry; a second peer elsewhere opens a stream to it, and each node
//! runs the ordinary relay between its own client and the stream.

pub mod directory;
pub mod h2_stream;
pub mod link;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::ClusterSettings;
use directory::{Claim, Directory, Entry, NodeRecord};
use h2_stream::H2Stream;
use link::{Identity, Incoming, Links, ListenerTls};

pub use link::hex;

/// How long an entry lives without a refresh; refreshed every third of it while held.
const ENTRY_TTL: Duration = Duration::from_secs(30);

/// The digest in a key name, back to bytes.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Counts for the monitor and metrics.
#[derive(Default)]
pub struct Counters {
    /// Cross-node tunnels running now, by the other node.
    pub relayed_by_node: Mutex<HashMap<String, u64>>,
    /// Cross-node tunnels since start.
    pub relayed_total: AtomicU64,
}

/// A relayed tunnel's place in [`Counters`], given back when dropped.
pub struct RelayedGuard {
    cluster: Arc<Cluster>,
    node: String,
}

impl Drop for RelayedGuard {
    fn drop(&mut self) {
        let mut by_node = self.cluster.counters.relayed_by_node.lock().expect("counters lock poisoned");
        if let Some(count) = by_node.get_mut(&self.node) {
            *count -= 1;
            if *count == 0 {
                by_node.remove(&self.node);
            }
        }
    }
}

impl crate::stats::ClusterSource for Cluster {
    fn statistic(&self) -> remoteproxy_wire::monitor::ClusterStatistic {
        remoteproxy_wire::monitor::ClusterStatistic {
            node_id: self.node.clone(),
            redis: if self.redis_up() { "up" } else { "down" }.to_string(),
            draining: self.is_draining(),
            nodes: self
                .nodes()
                .into_iter()
                .map(|node| remoteproxy_wire::monitor::ClusterNode { id: node.node, address: node.address })
                .collect(),
            relayed_tunnels: self
                .counters
                .relayed_by_node
                .lock()
                .expect("counters lock poisoned")
                .iter()
                .map(|(node, count)| (node.clone(), *count))
                .collect(),
            relayed_total: self.counters.relayed_total.load(Ordering::Relaxed),
        }
    }
}

/// This node's membership: its directory, its links, what it holds in Redis.
pub struct Cluster {
    /// `nodeId`.
    pub node: String,
    /// Random per run: entries of an earlier run of this node id do not count.
    instance: String,
    directory: Directory,
    links: Links,
    identity: Arc<Identity>,
    tls: ListenerTls,
    heartbeat_interval: Duration,
    /// `host:port` the other nodes dial.
    advertise: Mutex<String>,
    /// Entries this node wrote and refreshes: key → value.
    owned: Mutex<HashMap<String, String>>,
    /// Waiting v1 peers by key, with the entry value of their slot: told the other node's entry
    /// if that node took the key while Redis was away (see [`Cluster::watch_lost`]).
    lost_watchers: Mutex<HashMap<String, (String, oneshot::Sender<Entry>)>>,
    /// Every live node, as last read (for the monitor).
    nodes: Mutex<Vec<NodeRecord>>,
    draining: AtomicBool,
    /// Keys the names of v1 entries (see [`Cluster::entry_key`]).
    names: ring::hmac::Key,
    /// Relayed tunnels, for the monitor and metrics.
    pub counters: Counters,
}

impl Cluster {
    /// Prepares membership (nothing is contacted yet).
    pub fn new(settings: &ClusterSettings) -> Result<Arc<Cluster>, String> {
        let directory = Directory::new(
            settings.redis_url.expose_secret(),
            settings.redis_tls.as_ref(),
            &settings.key_prefix,
        )?;
        let identity = Arc::new(Identity::new(&settings.node_id, settings.secret.expose_secret()));
        let tls = ListenerTls::generate(&settings.node_id)?;
        let mut instance = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut instance)
            .map_err(|_| "cannot read random bytes".to_string())?;
        Ok(Arc::new(Cluster {
            node: settings.node_id.clone(),
            instance: hex(&instance),
            directory,
            links: Links::new(identity.clone()),
            identity,
            tls,
            heartbeat_interval: settings.heartbeat_interval,
            advertise: Mutex::new(settings.advertise_address.clone().unwrap_or_default()),
            owned: Mutex::new(HashMap::new()),
            lost_watchers: Mutex::new(HashMap::new()),
            nodes: Mutex::new(Vec::new()),
            draining: AtomicBool::new(false),
            names: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, settings.secret.expose_secret().as_bytes()),
            counters: Counters::default(),
        }))
    }

    /// Whether Redis answered the last call.
    pub fn redis_up(&self) -> bool {
        self.directory.is_up()
    }

    /// Whether this node is draining: it takes no new pairings, so its clients go elsewhere.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Every live node as last read.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes.lock().expect("nodes lock poisoned").clone()
    }

    /// Starts serving: the relay listener (its address advertised unless `advertiseAddress` is
    /// given) and the heartbeat, until `ended`. `handle` gets the streams other nodes open.
    pub fn start(
        self: &Arc<Self>,
        listener: TcpListener,
        handle: Arc<dyn Fn(Incoming) + Send + Sync>,
        ended: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        {
            let mut advertise = self.advertise.lock().expect("advertise lock poisoned");
            if advertise.is_empty()
                && let Ok(address) = listener.local_addr()
            {
                *advertise = address.to_string();
            }
        }
        info!(
            node = %self.node,
            relay = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            advertised = %self.advertise.lock().expect("advertise lock poisoned"),
            "cluster: relay listener"
        );
        let serve =
            link::serve(listener, self.tls.config.clone(), self.identity.clone(), handle, ended.clone());
        vec![tokio::spawn(serve), tokio::spawn(self.clone().heartbeat(ended))]
    }

    fn beat_value(&self) -> String {
        directory::beat_value(
            &self.instance,
            &self.tls.fingerprint,
            &self.advertise.lock().expect("advertise lock poisoned"),
        )
    }

    /// Tells Redis this node is alive, refreshes what it holds, reads who else is; on `ended`
    /// removes its heartbeat so the others stop counting its entries at once.
    async fn heartbeat(self: Arc<Self>, ended: CancellationToken) {
        let mut interval = tokio::time::interval(self.heartbeat_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = |period: Duration| {
            (period.as_millis() / self.heartbeat_interval.as_millis().max(1)).max(1) as u64
        };
        let (beats_per_refresh, beats_per_list) = (every(ENTRY_TTL / 3), every(Duration::from_secs(2)));
        // Three beats, and never less than three Redis calls' bound: a beat late by one slow call
        // must not make this node look dead.
        let beat_ttl = (self.heartbeat_interval * 3).max(directory::OP_TIMEOUT * 3);
        let mut beats = 0u64;
        loop {
            tokio::select! {
                _ = ended.cancelled() => break,
                _ = interval.tick() => {}
            }
            if self.is_draining() {
                break;
            }
            let beat = self.beat_value();
            if !self.directory.beat(&self.node, &beat, beat_ttl).await {
                continue;
            }
            // Back after an outage: write what was claimed meanwhile at once.
            let recovered = self.directory.take_recovered();
            if beats.is_multiple_of(beats_per_list)
                && let Some(nodes) = self.directory.nodes().await
            {
                *self.nodes.lock().expect("nodes lock poisoned") = nodes;
            }
            if recovered || beats.is_multiple_of(beats_per_refresh) {
                let entries: Vec<(String, String)> = self
                    .owned
                    .lock()
                    .expect("owned lock poisoned")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Some(lost) = self.directory.refresh(&entries, ENTRY_TTL).await
                    && !lost.is_empty()
                {
                    self.hand_over_lost(lost).await;
                }
            }
            beats += 1;
        }
        self.directory.forget_node(&self.node, &self.beat_value()).await;
    }

    /// Keys another node took while Redis was away (both nodes had a peer or server waiting for
    /// it): a v1 peer waiting here is told the other node's entry and joins that node's peer,
    /// as if it had arrived second. What is left (v2 servers registered on two nodes, an entry
    /// of a node that is not alive) stays this node's alone and is logged.
    async fn hand_over_lost(&self, lost: Vec<(String, String)>) {
        let mut left = 0usize;
        for (key, value) in lost {
            let watcher = {
                let mut watchers = self.lost_watchers.lock().expect("watchers lock poisoned");
                match watchers.get(&key) {
                    Some((watched, _)) if *watched == value => {
                        watchers.remove(&key).map(|(_, sender)| sender)
                    }
                    _ => None,
                }
            };
            let Some(watcher) = watcher.filter(|watcher| !watcher.is_closed()) else {
                left += 1;
                continue;
            };
            match self.directory.lookup(&key).await {
                Ok(Some(entry)) if entry.owner.node != self.node => {
                    let mut owned = self.owned.lock().expect("owned lock poisoned");
                    if owned.get(&key) == Some(&value) {
                        owned.remove(&key);
                    }
                    drop(owned);
                    if let Err(entry) = watcher.send(entry) {
                        // The peer left meanwhile: nothing of it is in Redis.
                        debug!(node = %entry.owner.node, "a peer that waited through the outage left");
                    }
                }
                _ => {
                    left += 1;
                    // Watched again while the peer still waits (its slot's entry still owned).
                    let waiting = self.owned.lock().expect("owned lock poisoned").get(&key) == Some(&value);
                    if waiting && !watcher.is_closed() {
                        self.lost_watchers
                            .lock()
                            .expect("watchers lock poisoned")
                            .insert(key, (value, watcher));
                    }
                }
            }
        }
        if left > 0 {
            info!(
                left,
                "entries another node holds since Redis was away: those peers and servers are reachable on this node only"
            );
        }
    }

    /// For a waiting v1 peer (slot `claim`): the other node's entry, if that node takes the key
    /// while Redis is away: the peer claimed before the outage and its entry expired during it,
    /// or the claim found Redis away (handed over by the heartbeat's refresh).
    pub fn watch_lost(&self, kind: &str, id: &str, claim: u64) -> oneshot::Receiver<Entry> {
        let (sender, receiver) = oneshot::channel();
        let value = directory::entry_value(&self.node, &self.instance, claim);
        self.lost_watchers
            .lock()
            .expect("watchers lock poisoned")
            .insert(self.entry_key(kind, id), (value, sender));
        receiver
    }

    /// The Redis key of an entry. A v1 tunnel's is an HMAC of its (token, nonce) digest keyed by
    /// the cluster secret: whoever can read Redis cannot test guesses of weak tokens against it.
    fn entry_key(&self, kind: &str, id: &str) -> String {
        match kind {
            "v1" => self.directory.key(kind, &hex(ring::hmac::sign(&self.names, id.as_bytes()).as_ref())),
            _ => self.directory.key(kind, id),
        }
    }

    /// Claims the entry of a waiting v1 peer or a v2 server (`id`: the key's hex digest or the
    /// server's uuid; `claim`: its slot's or its registration's).
    pub async fn claim(&self, kind: &str, id: &str, claim: u64) -> Claim {
        let key = self.entry_key(kind, id);
        let value = directory::entry_value(&self.node, &self.instance, claim);
        for _ in 0..3 {
            match self.directory.claim(&key, &value, ENTRY_TTL).await {
                Claim::Ours => {
                    self.owned.lock().expect("owned lock poisoned").insert(key, value);
                    return Claim::Ours;
                }
                // An entry of this run for an older slot of the key, whose removal has not
                // reached Redis yet: remove it and claim again.
                Claim::Elsewhere(entry)
                    if entry.owner.node == self.node && entry.owner.instance == self.instance =>
                {
                    self.directory.release(&key, &entry.value).await;
                }
                // Redis cannot be asked: the entry is written by the refresh once it can (unless
                // another node took the key meanwhile), so a partner on another node finds this
                // peer or server after an outage too.
                Claim::Unavailable => {
                    self.owned.lock().expect("owned lock poisoned").insert(key, value);
                    return Claim::Unavailable;
                }
                other => return other,
            }
        }
        Claim::Unavailable
    }

    /// The live entry for `id`, if any (`Err`: Redis cannot be asked).
    pub async fn lookup(&self, kind: &str, id: &str) -> Result<Option<Entry>, ()> {
        self.directory.lookup(&self.entry_key(kind, id)).await
    }

    /// A slot this node held is gone: its entry goes too (if it is still this node's).
    pub fn release(self: &Arc<Self>, kind: &str, id: &str, claim: u64) {
        let key = self.entry_key(kind, id);
        let value = directory::entry_value(&self.node, &self.instance, claim);
        let owned = {
            let mut owned = self.owned.lock().expect("owned lock poisoned");
            match owned.get(&key) {
                Some(held) if *held == value => owned.remove(&key).is_some(),
                _ => false,
            }
        };
        {
            let mut watchers = self.lost_watchers.lock().expect("watchers lock poisoned");
            if watchers.get(&key).is_some_and(|(watched, _)| *watched == value) {
                watchers.remove(&key);
            }
        }
        if owned && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let cluster = self.clone();
            runtime.spawn(async move { cluster.directory.release(&key, &value).await });
        }
    }

    /// Removes an entry whose owner said it has no such slot any more.
    pub async fn forget_stale(&self, kind: &str, id: &str, entry: &Entry) {
        self.directory.release(&self.entry_key(kind, id), &entry.value).await;
    }

    /// Opens a stream to `node` for `path`.
    pub async fn open(&self, node: &NodeRecord, path: &str) -> std::io::Result<H2Stream> {
        self.links.open(node, path).await
    }

    /// Counts a cross-node tunnel with `node` until the guard is dropped.
    pub fn relayed(self: &Arc<Self>, node: &str) -> RelayedGuard {
        self.counters.relayed_total.fetch_add(1, Ordering::Relaxed);
        *self
            .counters
            .relayed_by_node
            .lock()
            .expect("counters lock poisoned")
            .entry(node.to_string())
            .or_default() += 1;
        RelayedGuard { cluster: self.clone(), node: node.to_string() }
    }

    /// Starts draining (see [`Cluster::is_draining`]): the heartbeat stops and is removed, so the
    /// other nodes take this node's entries for a dead node's at once and pair their clients
    /// among themselves; this node's tunnels run on.
    pub async fn drain(&self) {
        if !self.draining.swap(true, Ordering::Relaxed) {
            info!(node = %self.node, "cluster: draining, leaving the registry");
            self.directory.forget_node(&self.node, &self.beat_value()).await;
        }
    }
}
