//! The canary during a fault: stopped and either checked (its round trips stayed fast and without
//! error while the fault went on) or only shown (while the fault itself takes the CPU).

use std::time::Duration;

use crate::report::Report;
use crate::tunnels::{Canary, CanaryResult, ms};

/// The canary's bound while a fault goes on.
const CANARY_P99: Duration = Duration::from_millis(20);

/// Stops the canary and checks it kept its round trips fast and without error `during` a fault.
pub(super) async fn check_canary(r: &Report, canary: Option<Canary>, during: &str) {
    let Some(canary) = canary else { return };
    let result = canary.finish().await;
    let (detail, p99) = canary_summary(&result);
    r.figure("canary round trips", &detail);
    let claim = format!("the canary kept working during {during} (p99 < 20 ms, no error)");
    match result.error {
        Some(e) => r.check(&claim, false, format!("{e}; {detail}")),
        None => r.check(&claim, !result.rtts.is_empty() && p99 < CANARY_P99, detail),
    }
}

/// Stops the canary and prints what it saw as the figure `name`, without judging it.
pub(super) async fn show_canary(r: &Report, canary: Option<Canary>, name: &str) {
    let Some(canary) = canary else { return };
    let result = canary.finish().await;
    let (detail, _) = canary_summary(&result);
    match result.error {
        Some(e) => r.figure(name, format!("{detail}; ended by: {e}")),
        None => r.figure(name, detail),
    }
}

/// The canary's round trips in a line, and their p99.
fn canary_summary(result: &CanaryResult) -> (String, Duration) {
    let (p50, p99) = (result.percentile(50.0), result.percentile(99.0));
    let max = result.rtts.last().copied().unwrap_or(Duration::MAX);
    (format!("{} round trips, p50 {}, p99 {}, max {}", result.rtts.len(), ms(p50), ms(p99), ms(max)), p99)
}
