//! Settling after the abuse: no client, tunnel or v2 connection left in the broker, and its
//! descriptors back to the start once its pooled connections to the authenticator (which it keeps
//! open on purpose) are set aside. This shows that no attack leaks a socket.

use std::time::{Duration, Instant};

use crate::broker::{Broker, SETTLE};

/// Waits (bounded by [`SETTLE`]) until the broker has no client, tunnel or v2 connection left and
/// its descriptors, less its pooled connections to the authenticator, are back to the start.
pub(super) async fn settled(
    broker: &Broker,
    fds: u64,
    pooled: u64,
    auth_port: u16,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let left = match broker.snapshot().await {
            Ok(s) => {
                let v2 = &s.tunnel_proxy_statistic;
                let connections = s.proxy_statistic.client_count
                    + s.proxy_statistic.tunnel_count
                    + v2.server_connections_count
                    + v2.client_connections_count.max(v2.total_client_count);
                let (now, pooled_now) = (broker.fds(), connections_to(broker, auth_port));
                if connections == 0 && now.saturating_sub(pooled_now) <= fds.saturating_sub(pooled) {
                    return Ok(start.elapsed());
                }
                format!(
                    "{connections} connections, {now} descriptors with {pooled_now} to the authenticator (started with {fds}, {pooled})"
                )
            }
            Err(e) => format!("no snapshot: {e}"),
        };
        if start.elapsed() > SETTLE {
            return Err(left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The broker's established TCP connections to `port` on loopback (its pooled connections to
/// the authenticator).
pub(super) fn connections_to(broker: &Broker, port: u16) -> u64 {
    broker.sockets(|state, remote| state == "01" && remote == Some(port)) as u64
}
