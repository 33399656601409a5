//! An optional short-lived cache of verdicts, so a burst of clients with one token costs one
//! call to a remote service.
//!
//! Keys are SHA-256 digests (the cache holds no token). Only definite answers are cached (accepted
//! and refused); service failures and timeouts are asked again. The cache is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::{AuthRequest, AuthenticationError, Authenticator, Verdict};

/// Most entries kept; past this, expired entries go first, then arbitrary ones.
const MAX_ENTRIES: usize = 10_000;

/// Wraps an authenticator with a verdict cache.
pub struct Cached {
    inner: Arc<dyn Authenticator>,
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Verdict, Instant)>>,
}

impl Cached {
    /// Caches `inner`'s definite verdicts for `ttl`.
    pub fn new(inner: Arc<dyn Authenticator>, ttl: Duration) -> Self {
        Cached { inner, ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The token, and the connection facts when the verdict can depend on them.
    fn key(&self, request: &AuthRequest) -> [u8; 32] {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(request.token.expose_secret().as_bytes());
        if self.inner.verdict_depends_on_facts() {
            let facts = &request.facts;
            field(facts.uuid.as_bytes());
            field(facts.name.as_bytes());
            field(facts.nonce.as_bytes());
            // The address, not the port: every new connection has a new port.
            let peer = match facts.peer {
                crate::PeerAddress::Ip(addr) => addr.ip().to_string(),
                crate::PeerAddress::Unix => "unix".to_string(),
            };
            field(peer.as_bytes());
            field(facts.transport.as_str().as_bytes());
        }
        hasher.finalize().into()
    }
}

#[async_trait]
impl Authenticator for Cached {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        let key = self.key(request);
        let now = Instant::now();
        if let Some((verdict, expires)) = self.entries.lock().expect("cache lock").get(&key)
            && *expires > now
        {
            return verdict.clone();
        }
        let verdict = self.inner.authenticate(request).await;
        if matches!(verdict.error, AuthenticationError::NoError | AuthenticationError::AuthenticationFailed) {
            let mut entries = self.entries.lock().expect("cache lock");
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (_, expires)| *expires > now);
            }
            if entries.len() >= MAX_ENTRIES
                && let Some(victim) = entries.keys().next().copied()
            {
                entries.remove(&victim);
            }
            entries.insert(key, (verdict.clone(), now + self.ttl));
        }
        verdict
    }

    fn reload(&self) -> Result<(), String> {
        self.entries.lock().expect("cache lock").clear();
        self.inner.reload()
    }

    fn verdict_depends_on_facts(&self) -> bool {
        self.inner.verdict_depends_on_facts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Counting, request};

    #[tokio::test]
    async fn definite_verdicts_are_cached_until_they_expire() {
        let inner = Arc::new(Counting::new(AuthenticationError::NoError));
        let cached = Cached::new(inner.clone(), Duration::from_millis(100));
        for _ in 0..3 {
            assert_eq!(cached.authenticate(&request("t", "n")).await.error, AuthenticationError::NoError);
        }
        assert_eq!(inner.calls(), 1);
        cached.authenticate(&request("other", "n")).await;
        assert_eq!(inner.calls(), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
        cached.authenticate(&request("t", "n")).await;
        assert_eq!(inner.calls(), 3);
    }

    #[tokio::test]
    async fn service_failures_are_not_cached() {
        let inner = Arc::new(Counting::new(AuthenticationError::ProxyError));
        let cached = Cached::new(inner.clone(), Duration::from_secs(60));
        cached.authenticate(&request("t", "n")).await;
        cached.authenticate(&request("t", "n")).await;
        assert_eq!(inner.calls(), 2);
    }

    #[tokio::test]
    async fn reload_empties_the_cache() {
        let inner = Arc::new(Counting::new(AuthenticationError::NoError));
        let cached = Cached::new(inner.clone(), Duration::from_secs(60));
        cached.authenticate(&request("t", "n")).await;
        cached.reload().unwrap();
        cached.authenticate(&request("t", "n")).await;
        assert_eq!(inner.calls(), 2);
    }
}
