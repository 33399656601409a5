//! The cluster's directory in Redis: which nodes are alive and where each waiting v1 peer and
//! each registered v2 server is.
//!
//! Keys (all under `redisKeyPrefix`):
//! * `node:<id>` = `<instance> <certificate fingerprint> <relay address>`, set with a TTL of three
//!   heartbeats: a node is alive while its key is there, and an entry counts only while the node
//!   that wrote it is alive *in the same run* (the instance is random per start), so a node that
//!   crashed and came back does not resurrect what it had before.
//! * `v1:<hex HMAC, keyed by the cluster secret, of the SHA-256 of token and nonce>` =
//!   `<node> <instance> <claim>`: the first authenticated peer of a tunnel (never the token, and
//!   nothing to test token guesses against without the secret).
//! * `v2:<server uuid>` = `<node> <instance> <claim>`: a registered TunnelProxy server.
//!
//! Entries are written by a script that sets the key unless a live node holds it (`SET NX`, plus
//! taking over the entry of a dead node in the same atomic step), removed by compare-and-delete
//! (a node never removes another's entry) and refreshed while their owner holds them.
//!
//! Redis being down is a state, not an error: every call is bounded ([`OP_TIMEOUT`]), a failure
//! marks the directory down (logged once, then once a minute), and while it is down the pairing
//! calls answer [`Claim::Unavailable`] at once without trying, so peers pair on their own node
//! without waiting; the heartbeat, which goes on trying with the connection manager's backoff,
//! brings it back up.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::RedisTls;

/// Longest a single Redis call may take before it counts as a failure.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// How often a still-unreachable Redis is logged again.
const DOWN_LOG_INTERVAL: Duration = Duration::from_secs(60);

const CLAIM: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local node, instance = string.match(current, '^(%S+) (%S+)')
  if node then
    local beat = redis.call('GET', ARGV[3] .. node)
    if beat and string.sub(beat, 1, #instance + 1) == instance .. ' ' then
      return {0, current, beat}
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, ARGV[1], ''}
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// KEYS: the entries; ARGV: their values, then the TTL. Returns per key 1 (refreshed), 2 (had
/// expired, written again) or 0 (another node holds it now).
const REFRESH: &str = r"
local ttl = ARGV[#ARGV]
local result = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if current == ARGV[i] then
    redis.call('PEXPIRE', key, ttl)
    result[i] = 1
  elseif not current then
    redis.call('SET', key, ARGV[i], 'PX', ttl)
    result[i] = 2
  else
    result[i] = 0
  end
end
return result
";

const LOOKUP: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return {0, '', ''} end
local node, instance = string.match(current, '^(%S+) (%S+)')
if not node then return {0, '', ''} end
local beat = redis.call('GET', ARGV[1] .. node)
if beat and string.sub(beat, 1, #instance + 1) == instance .. ' ' then
  return {1, current, beat}
end
return {0, '', ''}
";

/// A live node, as its heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its `nodeId`.
    pub node: String,
    /// Its run (random per start).
    pub instance: String,
    /// SHA-256 of its relay certificate, hex: what a link to it pins.
    pub fingerprint: String,
    /// Where its relay listens (`host:port`).
    pub address: String,
}

/// An entry held by a live node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's value, exactly (what compare-and-delete compares).
    pub value: String,
    /// The owner's claim number within its run.
    pub claim: u64,
    /// The node holding it.
    pub owner: NodeRecord,
}

/// What claiming an entry found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The entry is this node's now.
    Ours,
    /// A live node holds it.
    Elsewhere(Entry),
    /// Redis cannot be asked now.
    Unavailable,
}

/// The directory: one reconnecting connection to Redis, the scripts, the up/down state.
pub struct Directory {
    client: redis::Client,
    /// Made on first use, inside the runtime (the manager spawns its reconnecting task).
    conn: std::sync::OnceLock<ConnectionManager>,
    prefix: String,
    up: AtomicBool,
    /// Whether Redis ever answered (the first success logs "connected", later ones "again").
    ever_up: AtomicBool,
    /// Redis came back since the last [`Directory::take_recovered`].
    recovered: AtomicBool,
    last_down_log: Mutex<Option<Instant>>,
    /// `host:port` of the URL without credentials, for log lines.
    shown_url: String,
    claim: Script,
    release: Script,
    refresh: Script,
    lookup: Script,
}

impl Directory {
    /// A directory for `url` (with `tls`'s certificates for a rediss:// one); connects lazily (a
    /// Redis that is down at start is not fatal).
    pub fn new(url: &str, tls: Option<&RedisTls>, prefix: &str) -> Result<Directory, String> {
        let client = match tls {
            None => redis::Client::open(url),
            Some(tls) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: tls.client.as_ref().map(|(certificate, key)| redis::ClientTlsConfig {
                        client_cert: certificate.clone(),
                        client_key: key.expose_secret().as_bytes().to_vec(),
                    }),
                    root_cert: tls.ca_certificate.clone(),
                },
            ),
        }
        .map_err(|error| format!("redisUrl is not usable: {}", error.kind_text()))?;
        let shown_url = client.get_connection_info().addr().to_string();
        Ok(Directory {
            client,
            conn: std::sync::OnceLock::new(),
            prefix: prefix.to_string(),
            up: AtomicBool::new(false),
            ever_up: AtomicBool::new(false),
            recovered: AtomicBool::new(false),
            last_down_log: Mutex::new(None),
            shown_url,
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
            refresh: Script::new(REFRESH),
            lookup: Script::new(LOOKUP),
        })
    }

    /// The connection manager (reconnecting with backoff by itself).
    fn conn(&self) -> ConnectionManager {
        self.conn
            .get_or_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(OP_TIMEOUT))
                    .set_response_timeout(Some(OP_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .expect("a push sender is only needed for resubscription, which is off")
            })
            .clone()
    }

    /// Whether Redis came back after being down since the last call of this (whichever call
    /// noticed it first).
    pub fn take_recovered(&self) -> bool {
        self.recovered.swap(false, Ordering::Relaxed)
    }

    /// Whether the last call reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The key of an entry: `kind` is `v1` or `v2`.
    pub fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn node_prefix(&self) -> String {
        format!("{}node:", self.prefix)
    }

    /// Writes this node's heartbeat; `Ok` when Redis took it.
    pub async fn beat(&self, node: &str, value: &str, ttl: Duration) -> bool {
        let key = format!("{}{node}", self.node_prefix());
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(value).arg("PX").arg(ttl.as_millis() as u64);
        self.run(async { cmd.query_async::<()>(&mut self.conn()).await }).await.is_some()
    }

    /// Removes this node's heartbeat if it is still this run's (a clean stop: the others stop
    /// counting this node's entries at once instead of after three heartbeats).
    pub async fn forget_node(&self, node: &str, value: &str) {
        let key = format!("{}{node}", self.node_prefix());
        let mut invocation = self.release.key(key);
        invocation.arg(value);
        self.run(async { invocation.invoke_async::<i64>(&mut self.conn()).await }).await;
    }

    /// Claims `key` with `value` unless a live node holds it.
    pub async fn claim(&self, key: &str, value: &str, ttl: Duration) -> Claim {
        if !self.is_up() {
            return Claim::Unavailable;
        }
        let mut invocation = self.claim.key(key);
        invocation.arg(value).arg(ttl.as_millis() as u64).arg(self.node_prefix());
        let answer = self
            .run(async { invocation.invoke_async::<(i64, String, String)>(&mut self.conn()).await })
            .await;
        match answer {
            None => Claim::Unavailable,
            Some((1, _, _)) => Claim::Ours,
            Some((_, value, beat)) => match parse_entry(&value, &beat) {
                Some(entry) => Claim::Elsewhere(entry),
                None => Claim::Unavailable,
            },
        }
    }

    /// The live entry at `key`: `Err` when Redis cannot be asked.
    pub async fn lookup(&self, key: &str) -> Result<Option<Entry>, ()> {
        if !self.is_up() {
            return Err(());
        }
        let mut invocation = self.lookup.key(key);
        invocation.arg(self.node_prefix());
        let answer = self
            .run(async { invocation.invoke_async::<(i64, String, String)>(&mut self.conn()).await })
            .await;
        match answer {
            None => Err(()),
            Some((1, value, beat)) => Ok(parse_entry(&value, &beat)),
            Some(_) => Ok(None),
        }
    }

    /// Removes `key` if it still holds `value`.
    pub async fn release(&self, key: &str, value: &str) {
        let mut invocation = self.release.key(key);
        invocation.arg(value);
        self.run(async { invocation.invoke_async::<i64>(&mut self.conn()).await }).await;
    }

    /// Refreshes entries this node holds (written again if they expired while Redis was away).
    /// Returns the entries (key and this node's value) another node holds now, or `None` when
    /// Redis cannot be asked.
    pub async fn refresh(
        &self,
        entries: &[(String, String)],
        ttl: Duration,
    ) -> Option<Vec<(String, String)>> {
        let mut lost = Vec::new();
        for batch in entries.chunks(512) {
            let mut invocation = self.refresh.prepare_invoke();
            for (key, _) in batch {
                invocation.key(key);
            }
            for (_, value) in batch {
                invocation.arg(value);
            }
            invocation.arg(ttl.as_millis() as u64);
            let answers: Vec<i64> =
                self.run(async { invocation.invoke_async(&mut self.conn()).await }).await?;
            lost.extend(
                batch
                    .iter()
                    .zip(&answers)
                    .filter(|(_, answer)| **answer == 0)
                    .map(|(entry, _)| entry.clone()),
            );
        }
        Some(lost)
    }

    /// Every live node's heartbeat (for the monitor; a SCAN, so on a slower timer than the
    /// heartbeat, with a longer bound, and without counting as Redis's state: a large shared
    /// Redis may take a while to scan, which says nothing about pairing).
    pub async fn nodes(&self) -> Option<Vec<NodeRecord>> {
        let prefix = self.node_prefix();
        let pattern = format!("{prefix}*");
        let listed = tokio::time::timeout(OP_TIMEOUT * 5, async {
            let mut conn = self.conn();
            let mut keys: Vec<String> = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(256)
                    .query_async(&mut conn)
                    .await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 || keys.len() > 10_000 {
                    break;
                }
            }
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            let mut nodes: Vec<NodeRecord> = keys
                .iter()
                .zip(values)
                .filter_map(|(key, value)| parse_beat(key.strip_prefix(&prefix)?, &value?))
                .collect();
            nodes.sort_by(|a, b| a.node.cmp(&b.node));
            Ok::<_, RedisError>(nodes)
        })
        .await;
        listed.ok()?.ok()
    }

    /// Runs one call under [`OP_TIMEOUT`], keeping the up/down state.
    async fn run<T>(&self, call: impl Future<Output = Result<T, RedisError>>) -> Option<T> {
        match tokio::time::timeout(OP_TIMEOUT, call).await {
            Ok(Ok(value)) => {
                self.went_up();
                Some(value)
            }
            Ok(Err(error)) => {
                self.went_down(&error.kind_text());
                None
            }
            Err(_) => {
                self.went_down("no answer within a second");
                None
            }
        }
    }

    fn went_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            if self.ever_up.swap(true, Ordering::Relaxed) {
                self.recovered.store(true, Ordering::Relaxed);
                info!(redis = %self.shown_url, "Redis is reachable again: cross-node pairing resumes");
            } else {
                info!(redis = %self.shown_url, "connected to Redis");
            }
        }
    }

    fn went_down(&self, why: &str) {
        let was_up = self.up.swap(false, Ordering::Relaxed);
        let mut last = self.last_down_log.lock().expect("log lock poisoned");
        let due = last.is_none_or(|at| at.elapsed() >= DOWN_LOG_INTERVAL);
        if was_up || due {
            *last = Some(Instant::now());
            warn!(
                redis = %self.shown_url,
                reason = why,
                "Redis is unreachable: serving tunnels whose peers meet on this node only, retrying"
            );
        }
    }
}

/// A Redis error in words, without the URL or anything else it was given.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for RedisError {
    fn kind_text(&self) -> String {
        match self.kind() {
            redis::ErrorKind::Io => {
                let text = self.to_string();
                if let Some(reason) = tls_reason(&text) {
                    return reason.to_string();
                }
                // The I/O error's own words ("Connection refused (os error 111)").
                text.rsplit(": ").next().unwrap_or("I/O error").to_string()
            }
            kind => format!("{kind:?}").to_lowercase(),
        }
    }
}

/// What went wrong in a TLS handshake with Redis, in words that name the key to check (rustls
/// says it with the names of its error variants).
fn tls_reason(text: &str) -> Option<&'static str> {
    let reasons = [
        ("UnknownIssuer", "its certificate is not signed by redisCaCertificate (or the system's CAs)"),
        ("NotValidForName", "its certificate does not name the host in redisUrl"),
        ("Expired", "its certificate has expired"),
        ("NotValidYet", "its certificate is not valid yet"),
        (
            "CertificateRequired",
            "it wants a client certificate: set redisCertificate and redisCertificateKey",
        ),
        ("peer certificate", "its certificate was refused"),
        ("AlertReceived", "it refused this node's TLS handshake (check redisCertificate)"),
        ("InvalidContentType", "it does not speak TLS on this port (redis:// instead of rediss://?)"),
        ("CorruptMessage", "it does not speak TLS on this port (redis:// instead of rediss://?)"),
    ];
    reasons.into_iter().find(|(marker, _)| text.contains(marker)).map(|(_, reason)| reason)
}

fn parse_beat(node: &str, beat: &str) -> Option<NodeRecord> {
    let mut parts = beat.split(' ');
    let (instance, fingerprint, address) = (parts.next()?, parts.next()?, parts.next()?);
    Some(NodeRecord {
        node: node.to_string(),
        instance: instance.to_string(),
        fingerprint: fingerprint.to_string(),
        address: address.to_string(),
    })
}

fn parse_entry(value: &str, beat: &str) -> Option<Entry> {
    let mut parts = value.split(' ');
    let (node, _instance, claim) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Entry { value: value.to_string(), claim: claim.parse().ok()?, owner: parse_beat(node, beat)? })
}

/// The value of an entry this node writes.
pub fn entry_value(node: &str, instance: &str, claim: u64) -> String {
    format!("{node} {instance} {claim}")
}

/// The value of this node's heartbeat.
pub fn beat_value(instance: &str, fingerprint: &str, address: &str) -> String {
    format!("{instance} {fingerprint} {address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_beats_read_back() {
        let beat = beat_value("i1", "ab12", "10.0.0.1:2214");
        let entry = parse_entry(&entry_value("node-a", "i1", 7), &beat).unwrap();
        assert_eq!(entry.claim, 7);
        assert_eq!(entry.owner.node, "node-a");
        assert_eq!(entry.owner.address, "10.0.0.1:2214");
        assert_eq!(entry.owner.fingerprint, "ab12");
        assert!(parse_entry("garbage", &beat).is_none());
        assert!(parse_entry(&entry_value("n", "i", 1), "short").is_none());
    }
}
