//! faults: what goes wrong around the broker must stay where it happened. Each fault runs on a
//! fresh broker, with real sockets and real processes:
//!
//! 1. a peer process (`remoteproxy-client --stdio`) killed with SIGKILL mid-transfer: its partner
//!    sees the tunnel end within 2 s, tunnels moving data beside it lose nothing;
//! 2. a peer that stops reading while its partner writes as fast as it can: the writer is held
//!    back, and while it is the broker stays idle, its memory bounded and the canary's round
//!    trips fast; once the peer reads again every byte arrives in order;
//! 3. the HTTP authenticator hanging, failing and slow: every Authenticate is answered within
//!    `authenticationTimeout` (an error for a hang or a failure, success when slow), the canary
//!    keeps working;
//! 4. a monitor client that sends 10,000 requests and never reads: another monitor client still
//!    gets its snapshot, the stalled one is dropped, memory stays bounded;
//! 5. the statistics log's disk full (a file-size limit, as `LimitFSIZE=` sets it): the broker
//!    stays up, says it cannot write, and tunnels open and carry data after the limit is hit;
//! 6. SIGTERM to the broker under load: tunnels finish within `shutdownGracePeriod` with every
//!    byte, a new connection is refused, and the broker exits 0.
//!
//! Each fault has a file of its own, named after it; `canary`, `checked_read` and `cpu_meter`
//! hold what the faults watch with.

mod authenticator;
mod canary;
mod checked_read;
mod cpu_meter;
mod disk_full;
mod killed_peer;
mod sigterm;
mod stalled_monitor;
mod stalled_reader;

use std::fmt::Display;

use futures_util::StreamExt;
use remoteproxy_bench::client::Conn;

use crate::Ctx;
use crate::broker::{Broker, Setup};
use crate::scenarios::common::start_broker;
use crate::tunnels;

/// The write size of floods and of the killed peer's input.
const CHUNK: usize = 16 << 10;

pub async fn run(ctx: &Ctx) {
    ctx.report.scenario(
        "faults",
        format!(
            "six faults, each on a fresh broker, {} tunnels moving checked data beside them where it matters",
            ctx.size.bystanders
        ),
    );
    killed_peer::killed_peer(ctx).await;
    stalled_reader::stalled_reader(ctx).await;
    authenticator::authenticator(ctx).await;
    stalled_monitor::stalled_monitor(ctx).await;
    disk_full::disk_full(ctx).await;
    sigterm::sigterm(ctx).await;
}

/// Starts fault `name`: its heading (what it does, `what`), then its broker with `setup`; a
/// failed check when the broker does not start.
async fn start_fault(ctx: &Ctx, name: &str, what: impl Display, setup: Setup) -> Option<Broker> {
    ctx.report.scenario(name, what);
    start_broker(ctx, setup).await
}

/// A run's seed, different per fault.
fn seed(fault: u64) -> u64 {
    (u64::from(std::process::id()) << 24) ^ (fault << 56)
}

/// Opens `count` tunnels of the mix (numbered from `first`), 16 at a time.
async fn open_many(
    ctx: &Ctx,
    broker: &Broker,
    first: u64,
    count: u64,
) -> (Vec<(u64, (Conn, Conn))>, Vec<String>) {
    let opened: Vec<_> = futures_util::stream::iter(first..first + count)
        .map(|i| async move { (i, tunnels::open(&ctx.client, broker, i).await) })
        .buffer_unordered(16)
        .collect()
        .await;
    let (mut pairs, mut errors) = (Vec::new(), Vec::new());
    for (i, result) in opened {
        match result {
            Ok(pair) => pairs.push((i, pair)),
            Err(e) => errors.push(format!("tunnel {i}: {e}")),
        }
    }
    (pairs, errors)
}
