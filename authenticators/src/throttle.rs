//! Slows down repeated authentication failures from one IP address, to blunt token guessing.
//!
//! After `n` consecutive refusals from an address, its next attempt waits `base * 2^(n-1)`
//! (capped) before it is even checked; a success forgets the address. The wait counts against
//! the broker's `authenticationTimeout`, and the state is bounded: addresses whose penalty has
//! run out are forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::settings::ThrottleSettings;
use crate::{AuthRequest, AuthenticationError, Authenticator, PeerAddress, Verdict};

/// Most addresses remembered.
const MAX_ADDRESSES: usize = 65_536;

struct Penalty {
    failures: u32,
    last_failure: Instant,
}

/// Wraps an authenticator with per-address failure throttling.
pub struct Throttled {
    inner: Arc<dyn Authenticator>,
    settings: ThrottleSettings,
    penalties: Mutex<HashMap<IpAddr, Penalty>>,
}

impl Throttled {
    /// Throttles `inner`.
    pub fn new(inner: Arc<dyn Authenticator>, settings: ThrottleSettings) -> Self {
        Throttled { inner, settings, penalties: Mutex::new(HashMap::new()) }
    }

    fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.settings.base.saturating_mul(factor).min(self.settings.max)
    }

    /// How long an attempt from `ip` must wait now.
    fn wait_for(&self, ip: IpAddr) -> Duration {
        let penalties = self.penalties.lock().expect("throttle lock");
        match penalties.get(&ip) {
            Some(penalty) => (penalty.last_failure + self.delay(penalty.failures))
                .saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    fn record(&self, ip: IpAddr, error: AuthenticationError) {
        let mut penalties = self.penalties.lock().expect("throttle lock");
        match error {
            AuthenticationError::NoError => {
                penalties.remove(&ip);
            }
            AuthenticationError::AuthenticationFailed => {
                let now = Instant::now();
                if penalties.len() >= MAX_ADDRESSES && !penalties.contains_key(&ip) {
                    let max = self.settings.max;
                    penalties.retain(|_, p| now.saturating_duration_since(p.last_failure) < max);
                    if penalties.len() >= MAX_ADDRESSES {
                        // Everyone is being punished at once; forget the oldest half.
                        let mut ages: Vec<Instant> = penalties.values().map(|p| p.last_failure).collect();
                        ages.sort();
                        let cut = ages[ages.len() / 2];
                        penalties.retain(|_, p| p.last_failure > cut);
                    }
                }
                let penalty = penalties.entry(ip).or_insert(Penalty { failures: 0, last_failure: now });
                penalty.failures = penalty.failures.saturating_add(1);
                penalty.last_failure = now;
            }
            // Service trouble says nothing about the client.
            _ => {}
        }
    }
}

#[async_trait]
impl Authenticator for Throttled {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        let PeerAddress::Ip(addr) = request.facts.peer else {
            // Local clients on the unix socket are trusted with their own pace.
            return self.inner.authenticate(request).await;
        };
        let wait = self.wait_for(addr.ip());
        if !wait.is_zero() {
            tracing::debug!(peer = %addr.ip(), ?wait, "throttling after failed authentications");
            tokio::time::sleep(wait).await;
        }
        let verdict = self.inner.authenticate(request).await;
        self.record(addr.ip(), verdict.error);
        verdict
    }

    fn reload(&self) -> Result<(), String> {
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

    fn throttled(outcome: AuthenticationError) -> Throttled {
        let settings = ThrottleSettings { base: Duration::from_millis(100), max: Duration::from_millis(400) };
        Throttled::new(Arc::new(Counting::new(outcome)), settings)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_double_the_wait_up_to_the_cap() {
        let t = throttled(AuthenticationError::AuthenticationFailed);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let start = Instant::now();
            t.authenticate(&request("bad", "n")).await;
            waits.push(start.elapsed().as_millis());
        }
        assert_eq!(waits, vec![0, 100, 200, 400, 400, 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn success_forgets_and_other_outcomes_do_not_count() {
        let t = throttled(AuthenticationError::NoError);
        for _ in 0..3 {
            let start = Instant::now();
            t.authenticate(&request("good", "n")).await;
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
        let t = throttled(AuthenticationError::ProxyError);
        for _ in 0..3 {
            let start = Instant::now();
            t.authenticate(&request("x", "n")).await;
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
    }

    #[test]
    fn delay_never_overflows() {
        let t = throttled(AuthenticationError::AuthenticationFailed);
        assert_eq!(t.delay(u32::MAX), Duration::from_millis(400));
        assert_eq!(t.delay(1), Duration::from_millis(100));
    }
}
