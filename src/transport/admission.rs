//! Who may connect: the limits checked at accept, and what a connection holds against them for
//! as long as it lives (a [`Ticket`]).
//!
//! * `maxConnections`: every connection, whatever its state, tunnels included.
//! * `[Limits] maxConnectionsPerIp`: connections at once from one source, any state.
//! * `[Limits] maxNewConnectionsPerIpPerSecond`: a token bucket per source (a second's worth of
//!   burst), so a reconnecting site behind one NAT gets in at that pace and a flood does not.
//! * `[Limits] maxPendingHandshakes`: connections not yet authenticated (TLS, the WebSocket
//!   upgrade and the JSON phase together, until `Authenticate` succeeded or a v2 registration),
//!   so silent connections cannot crowd out real devices.
//!
//! A source is an IPv4 address, or an IPv6 prefix of `ipv6PrefixLength` bits (one customer's
//! network is a /64, and rotating through its addresses must not escape the limits). Sources
//! are kept while they have connections, and, with the rate limit on, until their bucket is full
//! again (one second): an expiry queue in time order removes them without ever scanning the
//! table, so each connection costs O(1) whatever the number of sources.
//!
//! Refusals are counted by reason in the metrics and logged at most once per
//! [`LOG_EVERY`] per reason, with how many were not logged: a flood must not become a flood of
//! log lines.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use remoteproxy_authenticators::PeerAddress;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::config::LimitsSettings;
use crate::stats::{Refusal, Stats};

/// At most one log line per refusal reason this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A source: an IPv4 address or an IPv6 prefix, as one number (IPv4 in the IPv4-mapped range).
type SourceKey = u128;

/// The limits of one server's listeners.
pub struct Admission {
    connections: Arc<Semaphore>,
    pending: Option<Arc<Semaphore>>,
    per_ip: Option<u32>,
    per_ip_rate: Option<u32>,
    ipv6_prefix: u8,
    sources: Mutex<Sources>,
    logs: [RefusalLog; Refusal::ALL.len()],
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Sources {
    table: HashMap<SourceKey, Source>,
    /// Sources that had no connection left, with when their bucket is full again; in time order.
    expiring: VecDeque<(SourceKey, Instant)>,
}

struct Source {
    open: u32,
    tokens: f64,
    refilled: Instant,
}

/// What a connection holds against the limits; dropping it gives everything back. Boxed: it
/// travels in every task and future of its connection for the connection's whole life, and one
/// pointer there keeps those from growing into the next allocator size class.
pub struct Ticket(Box<Held>);

struct Held {
    _connection: OwnedSemaphorePermit,
    pending: Option<OwnedSemaphorePermit>,
    source: Option<(Arc<Admission>, SourceKey)>,
}

impl Ticket {
    /// The connection authenticated (v1) or registered (v2): it no longer counts as pending.
    pub fn authenticated(&mut self) {
        self.0.pending = None;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((admission, key)) = self.source.take() {
            admission.left(key);
        }
    }
}

impl Admission {
    pub fn new(max_connections: usize, limits: &LimitsSettings, stats: Arc<Stats>) -> Admission {
        Admission {
            connections: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            pending: limits
                .max_pending_handshakes
                .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))),
            per_ip: limits.max_connections_per_ip,
            per_ip_rate: limits.max_new_connections_per_ip_per_second,
            ipv6_prefix: limits.ipv6_prefix_length,
            sources: Mutex::default(),
            logs: Default::default(),
            stats,
        }
    }

    /// Admits a connection from `peer`, or refuses it (counted and, rate-limited, logged).
    pub fn admit(self: &Arc<Self>, peer: &PeerAddress) -> Option<Ticket> {
        let mut ticket = self.admit_globally(peer)?;
        self.admit_source(&mut ticket, peer).then_some(ticket)
    }

    /// The first half of [`Admission::admit`]: `maxConnections` and `maxPendingHandshakes`,
    /// which do not depend on who the client is. Behind a PROXY protocol sender the client is
    /// known only once its header is read; until then the connection counts as pending.
    pub fn admit_globally(self: &Arc<Self>, peer: &PeerAddress) -> Option<Ticket> {
        let Ok(connection) = self.connections.clone().try_acquire_owned() else {
            return self.refuse(Refusal::MaxConnections, peer);
        };
        let pending = match &self.pending {
            None => None,
            Some(pending) => match pending.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return self.refuse(Refusal::MaxPendingHandshakes, peer),
            },
        };
        Some(Ticket(Box::new(Held { _connection: connection, pending, source: None })))
    }

    /// The second half: the per-source limits, for the client at `peer`; `false` (counted and
    /// logged) when it is refused.
    pub fn admit_source(self: &Arc<Self>, ticket: &mut Ticket, peer: &PeerAddress) -> bool {
        match peer {
            PeerAddress::Ip(addr) if self.per_ip.is_some() || self.per_ip_rate.is_some() => {
                let key = self.key(addr.ip());
                if let Err(refusal) = self.arrived(key, Instant::now()) {
                    self.refuse(refusal, peer);
                    return false;
                }
                ticket.0.source = Some((self.clone(), key));
                true
            }
            _ => true,
        }
    }

    /// A connection refused for a reason outside the limits (the PROXY protocol's), counted
    /// and logged the same way.
    pub fn refused(&self, refusal: Refusal, peer: &PeerAddress) {
        self.refuse(refusal, peer);
    }

    /// A connection from `key` arrived at `now`: counted, or the limit it would break.
    fn arrived(&self, key: SourceKey, now: Instant) -> Result<(), Refusal> {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources.expire(now, self.per_ip_rate);
        let burst = f64::from(self.per_ip_rate.unwrap_or(0));
        let source = sources.table.entry(key).or_insert(Source { open: 0, tokens: burst, refilled: now });
        if let Some(max) = self.per_ip
            && source.open >= max
        {
            return Err(Refusal::MaxConnectionsPerIp);
        }
        if let Some(rate) = self.per_ip_rate {
            let elapsed = now.saturating_duration_since(source.refilled).as_secs_f64();
            source.tokens = (source.tokens + elapsed * f64::from(rate)).min(burst);
            source.refilled = now;
            if source.tokens < 1.0 {
                // A source without connections is already queued to expire.
                return Err(Refusal::MaxNewConnectionsPerIpPerSecond);
            }
            source.tokens -= 1.0;
        }
        source.open += 1;
        Ok(())
    }

    /// A connection from `key` ended.
    fn left(&self, key: SourceKey) {
        self.left_at(key, Instant::now());
    }

    fn left_at(&self, key: SourceKey, now: Instant) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(source) = sources.table.get_mut(&key) else { return };
        source.open = source.open.saturating_sub(1);
        if source.open == 0 {
            match self.per_ip_rate {
                // Nothing to remember about a source without connections.
                None => {
                    sources.table.remove(&key);
                }
                // Its bucket must outlive it, or closing and reconnecting would refill it.
                Some(_) => sources.expiring.push_back((key, now + Duration::from_secs(1))),
            }
        }
        sources.expire(now, self.per_ip_rate);
    }

    /// The source an address belongs to.
    fn key(&self, ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                match self.ipv6_prefix {
                    0 => 0,
                    prefix @ 1..=127 => bits & (u128::MAX << (128 - u32::from(prefix))),
                    _ => bits,
                }
            }
        }
    }

    fn refuse(&self, refusal: Refusal, peer: &PeerAddress) -> Option<Ticket> {
        self.stats.connection_refused(refusal);
        self.logs[refusal.index()].refused(refusal, peer);
        None
    }

    /// Sources tracked now (for tests and the monitor).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner).table.len()
    }
}

impl Sources {
    /// Forgets the sources whose bucket has been full again since their last connection left.
    fn expire(&mut self, now: Instant, rate: Option<u32>) {
        while let Some(&(key, at)) = self.expiring.front() {
            if at > now {
                break;
            }
            self.expiring.pop_front();
            if let Some(source) = self.table.get(&key) {
                let full = rate
                    .is_none_or(|_| now.saturating_duration_since(source.refilled) >= Duration::from_secs(1));
                if source.open == 0 && full {
                    self.table.remove(&key);
                } else if source.open == 0 {
                    // Refused attempts since kept its bucket low: look again when it is full.
                    self.expiring.push_back((key, source.refilled + Duration::from_secs(1)));
                }
            }
        }
    }
}

/// One refusal reason's log: a line at most every [`LOG_EVERY`], saying how many were skipped.
#[derive(Default)]
struct RefusalLog {
    /// Milliseconds since `EPOCH` of the last line, plus one (0: never).
    last: AtomicU64,
    skipped: AtomicU64,
}

impl RefusalLog {
    fn refused(&self, refusal: Refusal, peer: &PeerAddress) {
        let now = epoch_millis();
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last - 1) >= LOG_EVERY.as_millis() as u64;
        if due && self.last.compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            let skipped = self.skipped.swap(0, Ordering::Relaxed);
            let what = refusal.describe();
            warn!(
                %peer,
                limit = refusal.as_str(),
                more = skipped,
                "connection refused: {what} (the count is in remoteproxy_connections_refused_total)"
            );
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn epoch_millis() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
