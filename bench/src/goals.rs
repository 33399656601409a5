//! The targets the broker is measured against (issue #7), as pass/fail checks next to each
//! result. A check with errors on either side fails: a fast broker that drops tunnels is not fast.

use serde::{Deserialize, Serialize};

use crate::stats::{format_bytes, format_ratio};

/// One target and whether the measured value meets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is required, e.g. `rate ≥ 0.80× baseline`.
    pub target: String,
    /// What was measured, e.g. `0.83`.
    pub actual: String,
    /// Whether it holds.
    pub pass: bool,
}

impl Check {
    fn new(target: impl Into<String>, actual: impl Into<String>, pass: bool) -> Check {
        Check { target: target.into(), actual: actual.into(), pass }
    }

    /// `PASS`/`FAIL`.
    pub fn verdict(&self) -> &'static str {
        if self.pass { "PASS" } else { "FAIL" }
    }

    /// `rate ≥ 0.80× baseline: PASS (0.83)`.
    pub fn line(&self) -> String {
        format!("{}: {} ({})", self.target, self.verdict(), self.actual)
    }
}

fn at_least(ratio: Option<f64>, floor: f64, errors: usize, what: &str) -> Check {
    let actual = with_errors(format_ratio(ratio), errors);
    Check::new(
        format!("{what} ≥ {floor:.2}× baseline"),
        actual,
        errors == 0 && ratio.is_some_and(|r| r >= floor),
    )
}

fn with_errors(actual: String, errors: usize) -> String {
    if errors == 0 { actual } else { format!("{actual}, {errors} errors") }
}

/// Throughput: TLS-TCP ≥ 0.85× the TLS relay, plain TCP ≥ 0.9× the plain relay, WebSocket ≥ 0.8×
/// the tokio-tungstenite message relay. The mixed measure has no target.
pub fn throughput(transport: &str, ratio: Option<f64>, errors: usize) -> Vec<Check> {
    let floor = match transport {
        "tls-tcp" => 0.85,
        "tcp" => 0.90,
        "ws" | "wss" => 0.80,
        _ => return Vec::new(),
    };
    vec![at_least(ratio, floor, errors, "MB/s")]
}

/// Latency: p50 ≤ 1.2× the baseline relay's.
pub fn latency(ratio_p50: Option<f64>, errors: usize) -> Vec<Check> {
    let actual = with_errors(format_ratio(ratio_p50), errors);
    vec![Check::new("p50 ≤ 1.20× baseline", actual, errors == 0 && ratio_p50.is_some_and(|r| r <= 1.2))]
}

/// Setup: rate ≥ 0.8× the bare TLS-accept-and-pair baseline, p99 under 50 ms (the target is
/// stated for C=8), no errors.
pub fn setup(rate_ratio: Option<f64>, p99_ms: f64, concurrency: usize, errors: usize) -> Vec<Check> {
    let p99_target = if concurrency == 8 {
        "p99 < 50 ms".to_string()
    } else {
        format!("p99 < 50 ms (stated for C=8; this is C={concurrency})")
    };
    vec![
        at_least(rate_ratio, 0.80, errors, "tunnels/s"),
        Check::new(p99_target, with_errors(format!("{p99_ms:.1} ms"), errors), errors == 0 && p99_ms < 50.0),
    ]
}

/// Inputs of the hold checks.
pub struct HoldFacts {
    /// Tunnels asked for.
    pub requested: usize,
    /// Tunnels that were established and carried their traffic.
    pub established: usize,
    /// Broker RSS growth per held tunnel.
    pub bytes_per_tunnel: Option<f64>,
    /// RSS (KiB) and descriptors before opening and after closing.
    pub rss_before_after: Option<(u64, u64)>,
    /// Open descriptors before opening and after closing.
    pub fds_before_after: Option<(u64, u64)>,
}

/// Within 10% of where it started (rounded up, so 15 descriptors may come back as 17).
pub fn within_ten_percent(before: u64, after: u64) -> bool {
    after <= before + before.div_ceil(10)
}

/// Hold: ≤ 24 KiB of broker RSS per idle tunnel after traffic, every tunnel held without error,
/// memory and descriptors back within 10% after they close.
pub fn hold(facts: &HoldFacts) -> Vec<Check> {
    let mut checks = vec![Check::new(
        format!("{} tunnels held, no error", facts.requested),
        format!("{} held", facts.established),
        facts.established == facts.requested,
    )];
    if let Some(per_tunnel) = facts.bytes_per_tunnel {
        checks.push(Check::new(
            "RSS ≤ 24 KiB per idle tunnel",
            format_bytes(per_tunnel),
            per_tunnel <= 24.0 * 1024.0,
        ));
    }
    if let Some((before, after)) = facts.rss_before_after {
        checks.push(Check::new(
            "RSS back within 10% after close",
            format!("{} → {}", format_bytes(before as f64 * 1024.0), format_bytes(after as f64 * 1024.0)),
            within_ten_percent(before, after),
        ));
    }
    if let Some((before, after)) = facts.fds_before_after {
        checks.push(Check::new(
            "fds back within 10% after close",
            format!("{before} → {after}"),
            within_ten_percent(before, after),
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_floors_per_transport() {
        assert!(throughput("tls-tcp", Some(0.86), 0)[0].pass);
        assert!(!throughput("tls-tcp", Some(0.84), 0)[0].pass);
        assert!(!throughput("tcp", Some(0.89), 0)[0].pass);
        assert!(throughput("wss", Some(0.80), 0)[0].pass);
        assert!(!throughput("wss", Some(0.99), 1)[0].pass, "errors fail the check");
        assert!(!throughput("ws", None, 0)[0].pass);
        assert!(throughput("mixed tls-tcp→wss", Some(0.5), 0).is_empty());
    }

    #[test]
    fn setup_and_latency() {
        let checks = setup(Some(0.81), 12.0, 8, 0);
        assert!(checks.iter().all(|c| c.pass));
        assert_eq!(checks[1].target, "p99 < 50 ms");
        assert!(!setup(Some(0.81), 51.0, 8, 0)[1].pass);
        assert!(setup(Some(0.81), 12.0, 32, 0)[1].target.contains("C=32"));
        assert!(latency(Some(1.19), 0)[0].pass);
        assert!(!latency(Some(1.21), 0)[0].pass);
        assert_eq!(latency(Some(1.0), 0)[0].line(), "p50 ≤ 1.20× baseline: PASS (1.00)");
    }

    #[test]
    fn hold_checks() {
        assert!(within_ten_percent(100, 110));
        assert!(!within_ten_percent(100, 111));
        assert!(within_ten_percent(15, 17));
        assert!(within_ten_percent(15, 3));
        let facts = HoldFacts {
            requested: 10,
            established: 10,
            bytes_per_tunnel: Some(20_000.0),
            rss_before_after: Some((1000, 1200)),
            fds_before_after: Some((20, 20)),
        };
        let checks = hold(&facts);
        assert_eq!(checks.iter().map(|c| c.pass).collect::<Vec<_>>(), [true, true, false, true]);
        let partial = HoldFacts { established: 9, bytes_per_tunnel: None, rss_before_after: None, ..facts };
        assert_eq!(hold(&partial).len(), 2);
        assert!(!hold(&partial)[0].pass);
    }
}
