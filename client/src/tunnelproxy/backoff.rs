//! Reconnection delays: exponential, capped, with a little jitter so that many devices cut off
//! by one broker restart do not all come back in the same instant.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// How long a [`TunnelServer`](crate::TunnelServer) waits between connection attempts: the first
/// delay is `initial`, each failure doubles it up to `max`, and a successful registration starts
/// over at `initial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 0.5 s doubling to 30 s.
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

/// The delays of one run of failures (the v2 server's reconnects, the v1 `--keep` device's).
#[derive(Debug)]
pub struct Delays {
    policy: Backoff,
    next: Duration,
}

impl Delays {
    /// A run that starts at `policy.initial`.
    pub fn new(policy: Backoff) -> Delays {
        Delays { policy, next: policy.initial }
    }

    /// The delay before the next attempt (without jitter); doubles the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.policy.max);
        self.next = (delay * 2).min(self.policy.max);
        delay
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.next = self.policy.initial;
    }
}

/// `delay` shortened by up to a fifth, at random.
pub fn jittered(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let fifth = delay / 5;
    let cut = fifth.mul_f64((random % 1000) as f64 / 1000.0);
    delay - cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut delays = Delays::new(Backoff::default());
        let got: Vec<u64> = (0..9).map(|_| delays.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        delays.reset();
        assert_eq!(delays.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_only_shortens_a_little() {
        for _ in 0..100 {
            let delay = jittered(Duration::from_secs(10));
            assert!(delay <= Duration::from_secs(10) && delay >= Duration::from_secs(8), "{delay:?}");
        }
    }
}
