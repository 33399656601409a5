//! Fault 4, the stalled monitor client: a client of the monitor socket sends 10,000 refresh
//! requests and never reads an answer. This shows that another monitor client still gets its
//! snapshots, that the stalled one is dropped, and that the broker's memory stays bounded and the
//! canary fast meanwhile.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::canary::check_canary;
use super::start_fault;
use crate::Ctx;
use crate::broker::Setup;
use crate::scenarios::common::{Peak, first, start_canary};
use crate::tunnels::ms;

/// Requests the stalled monitor client sends, and how much broker memory it may cost.
const MONITOR_REQUESTS: usize = 10_000;
const MONITOR_BOUND_KIB: u64 = 16 << 10;

/// 4: a monitor client sends [`MONITOR_REQUESTS`] refresh requests and never reads. Another
/// monitor client must keep getting snapshots, the stalled one must be dropped, the broker's
/// memory stay bounded and the canary keep working.
pub(super) async fn stalled_monitor(ctx: &Ctx) {
    let r = &ctx.report;
    let what = format!("a monitor client sends {MONITOR_REQUESTS} requests and never reads");
    let setup = Setup { mock: true, ..Setup::default() };
    let Some(broker) = start_fault(ctx, "faults/stalled-monitor", what, setup).await else { return };
    let canary = start_canary(ctx, &broker).await;
    let before = broker.rss_kib();
    let peak = Peak::start(broker.pid, Duration::from_millis(50));
    let stream = match UnixStream::connect(&broker.monitor).await {
        Ok(s) => s,
        Err(e) => return r.error("a monitor client connects", e),
    };
    let start = Instant::now();
    let stall = tokio::spawn(stall_monitor(stream));

    // Meanwhile another client asks for snapshots, one every 250 ms while the stall lasts.
    let (mut asked, mut worst, mut failures) = (0u32, Duration::ZERO, Vec::new());
    while !stall.is_finished() && start.elapsed() < Duration::from_secs(20) {
        let asking = Instant::now();
        match broker.snapshot().await {
            Ok(_) => worst = worst.max(asking.elapsed()),
            Err(e) => failures.push(e.to_string()),
        }
        asked += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stalled = match tokio::time::timeout(Duration::from_secs(5), stall).await {
        Ok(Ok(s)) => Some(s),
        _ => None,
    };
    let (peak, _) = peak.finish();
    r.figure("snapshots taken meanwhile", format!("{asked}, slowest {}", ms(worst)));
    r.check(
        "another monitor client got every snapshot within 3 s",
        asked > 0 && failures.is_empty() && worst < Duration::from_secs(3),
        format!("{} of {asked} failed{}", failures.len(), first(&failures)),
    );
    match stalled {
        Some(Stalled { requests, dropped: Some((after, how)) }) => {
            r.figure("requests written until its socket was full", requests);
            r.check(
                "the stalled monitor client was dropped (README: 5 s)",
                after <= Duration::from_secs(15),
                format!("after {:.1} s: {how}", after.as_secs_f64()),
            );
        }
        Some(Stalled { requests, dropped: None }) => r.check(
            "the stalled monitor client was dropped (README: 5 s)",
            false,
            format!("still connected after 20 s, {requests} requests written"),
        ),
        None => {
            r.error("the stalled monitor client was dropped (README: 5 s)", "the stalling task did not end")
        }
    }
    r.figure("broker RSS before → peak", format!("{before} KiB → {peak} KiB"));
    let growth = peak.saturating_sub(before);
    r.check(
        "broker RSS stayed bounded (< 16 MiB growth)",
        growth < MONITOR_BOUND_KIB,
        format!("+{growth} KiB"),
    );
    check_canary(r, canary, "the stalled monitor").await;
}

/// What the stalled monitor client saw: requests written, and when (since it started) and how
/// the broker dropped it.
struct Stalled {
    requests: usize,
    dropped: Option<(Duration, String)>,
}

/// Writes refresh requests without ever reading: [`MONITOR_REQUESTS`] in batches, then one every
/// 100 ms, until a write fails (the broker dropped the connection) or 20 s passed.
async fn stall_monitor(stream: UnixStream) -> Stalled {
    const REQUEST: &[u8] = b"{\"method\":\"refresh\",\"params\":{\"printAll\":true}}\n";
    let start = Instant::now();
    // The reading half is kept, unread, so the connection stays open both ways.
    let (_read, mut write) = stream.into_split();
    let batch = REQUEST.repeat(100);
    let mut requests = 0;
    let deadline = start + Duration::from_secs(20);
    let failed = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), async {
        loop {
            let (lines, count) = if requests < MONITOR_REQUESTS { (&batch[..], 100) } else { (REQUEST, 1) };
            if let Err(e) = write.write_all(lines).await {
                break e;
            }
            requests += count;
            if requests > MONITOR_REQUESTS {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
    .await;
    let dropped = failed.ok().map(|e| (start.elapsed(), e.to_string()));
    Stalled { requests, dropped }
}
