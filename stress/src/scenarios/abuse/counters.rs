//! The broker's counters as the attacks read them from `/metrics`: a counter's value before an
//! attack, and what the attack added to it (how many handshakes failed, how many connections
//! were refused and for which reason).

use crate::broker::Broker;

/// The series that counts the connections refused for `reason`.
pub(super) fn refused(reason: &str) -> String {
    format!("remoteproxy_connections_refused_total{{reason=\"{reason}\"}}")
}

/// One counter of `/metrics`, read before an attack (0 when absent or unreadable).
pub(super) struct Counter {
    series: String,
    before: f64,
}

impl Counter {
    /// Reads `series` now.
    pub(super) async fn start(broker: &Broker, series: impl Into<String>) -> Counter {
        let series = series.into();
        let before = broker.metric(&series).await.unwrap_or(0.0);
        Counter { series, before }
    }

    /// What the counter grew by since the start (a reading that fails counts as 0).
    pub(super) async fn added(&self, broker: &Broker) -> f64 {
        broker.metric(&self.series).await.unwrap_or(0.0) - self.before
    }
}
