//! Fault 2, the stalled reader: one end of a tunnel stops reading while the other writes as fast
//! as it can, with the receiver on TLS-TCP, then on WebSocket. This shows that the broker holds
//! the writer back instead of buffering without end, stays idle meanwhile (no core spent on a
//! tunnel that cannot move), keeps its memory bounded and the canary fast, and that every byte
//! written arrives in order once the receiver reads again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use remoteproxy_bench::client::Writer;

use super::canary::{check_canary, show_canary};
use super::checked_read::{Read, read_checked};
use super::cpu_meter::CpuMeter;
use super::{CHUNK, seed, start_fault};
use crate::Ctx;
use crate::broker::{Broker, Setup};
use crate::pattern::{Pattern, Verifier};
use crate::scenarios::common::{Peak, start_canary};
use crate::tunnels;

/// How long a stalled tunnel is held once its writer is held back, the most its writer may write
/// (far more than the socket buffers hold), and how much broker memory it may cost.
const STALL: Duration = Duration::from_secs(3);
const FLOOD_LIMIT: usize = 32 << 20;
const FLOOD_BOUND_KIB: u64 = 8 << 10;
/// The broker's CPU (share of one core) while tunnels are stalled: the canary's round trips cost
/// about 10% in a debug build.
const IDLE_SHARE: f64 = 0.3;

/// 2: end B of a tunnel never reads while end A writes as fast as it can: two tunnels with B on
/// TLS-TCP, then two with B on WebSocket (A on either). A's writes must be held back (the broker
/// does not buffer without end), and while they are the broker must stay idle (no core spent on
/// a tunnel that cannot move), its memory bounded and the canary fast; when B reads again, every
/// byte A's writes handed over arrives in order.
pub(super) async fn stalled_reader(ctx: &Ctx) {
    let r = &ctx.report;
    let what = format!("a receiver stops reading while its sender writes as fast as it can, held {STALL:?}");
    let setup = Setup { mock: true, ..Setup::default() };
    let Some(broker) = start_fault(ctx, "faults/stalled-reader", what, setup).await else { return };
    // Generated before anything is measured: in a debug build, generating while writing would
    // take this process's threads from the canary.
    let data = match tokio::task::spawn_blocking(|| {
        Bytes::from(Pattern::new(seed(2), 0, 0).next(FLOOD_LIMIT))
    })
    .await
    {
        Ok(data) => data,
        Err(e) => return r.error("the flood's data is generated", e),
    };
    // The four pairings of the mix, by the receiver's transport.
    stall_group(ctx, &broker, [0, 2], "TLS-TCP receivers", data.clone()).await;
    stall_group(ctx, &broker, [1, 3], "WebSocket receivers", data).await;
}

/// Stalls tunnels `group` of the mix at once (all receivers on one transport, `receiver`). One
/// canary runs while the writers fill the socket buffers at full speed, and is only shown: that is
/// a transfer, and in a debug build its TLS takes the CPU from everything else. A second one runs
/// once the writers are held back, and is checked: the stall must cost the others nothing.
async fn stall_group(ctx: &Ctx, broker: &Broker, group: [u64; 2], receiver: &str, data: Bytes) {
    let r = &ctx.report;
    let paths: Vec<String> = group
        .iter()
        .map(|&n| {
            let (a, b) = tunnels::mix(broker, n);
            format!("{} → {}", a.label(), b.label())
        })
        .collect();
    let filling = start_canary(ctx, broker).await;
    let before = broker.rss_kib();
    let peak = Peak::start(broker.pid, Duration::from_millis(50));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let progress = Arc::new(AtomicU64::new(0));
    let mut stalled = Vec::new();
    for (&n, path) in group.iter().zip(&paths) {
        match tunnels::open(&ctx.client, broker, n).await {
            Ok((a, b)) => {
                // A's reading half and B are kept, unread, until the drain below.
                let (a_read, a_write) = a.split();
                let flooding = tokio::spawn(flood(a_write, data.clone(), progress.clone(), stopped.clone()));
                stalled.push((path, a_read, b, flooding));
            }
            Err(e) => r.error(&format!("{path}: the tunnel opens"), e),
        }
    }
    let held_back = until_still(&progress, Duration::from_secs(10)).await;
    let written = progress.load(Ordering::Relaxed);
    show_canary(r, filling, "canary while the writers fill the buffers").await;
    let claim = format!("to {receiver}: the writers were held back");
    match held_back {
        Some(at) => r.check(
            &claim,
            true,
            format!(
                "{:.2} MiB taken in {:.2} s, then no write done for 0.5 s",
                written as f64 / 1048576.0,
                at.as_secs_f64()
            ),
        ),
        None => r.check(&claim, false, format!("{written} bytes written, still writing after 10 s")),
    }
    // The stall itself: A still writing, B not reading, the broker watched.
    let canary = start_canary(ctx, broker).await;
    let cpu = CpuMeter::start(broker.pid);
    tokio::time::sleep(STALL).await;
    let busy = cpu.share();
    let _ = stop.send(true);
    let (peak, _) = peak.finish();
    r.figure(
        &format!("to {receiver}: broker CPU during the stall"),
        format!("{:.0}% of a core", busy * 100.0),
    );
    r.check(
        &format!("to {receiver}: the broker stays idle while the tunnels cannot move (< 30% of a core)"),
        busy < IDLE_SHARE,
        format!("{:.0}% of a core over {STALL:?}", busy * 100.0),
    );
    r.figure(&format!("to {receiver}: broker RSS before → peak"), format!("{before} KiB → {peak} KiB"));
    let growth = peak.saturating_sub(before);
    r.check(
        &format!("to {receiver}: broker RSS stayed bounded (< 8 MiB growth)"),
        growth < FLOOD_BOUND_KIB,
        format!("+{growth} KiB"),
    );
    check_canary(r, canary, &format!("the stall to {receiver}")).await;

    // B reads again: what A's writes handed over must all arrive, in order.
    for (path, _a_read, b, flooding) in stalled {
        let claim = format!("{path}: once B reads again, every byte written arrives in order");
        let (mut writer, written) = match flooding.await.map_err(|e| e.to_string()).and_then(|f| f) {
            Ok(flooded) => flooded,
            Err(e) => {
                r.error(&claim, e);
                continue;
            }
        };
        let (mut reader, _b_write) = b.split();
        let mut verifier = Verifier::new(Pattern::new(seed(2), 0, 0));
        // A's transport may still hold the tail of the write the stop cut.
        let (flushed, read) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), writer.flush()),
            read_checked(&mut reader, &mut verifier, written, Duration::from_secs(10)),
        );
        match (flushed, read) {
            (Ok(Ok(())), Ok(Read::Enough)) => {
                r.check(&claim, true, format!("{:.2} MiB", verifier.verified as f64 / 1048576.0))
            }
            (flushed, read) => r.check(
                &claim,
                false,
                format!(
                    "flush {flushed:?}, read {:?}: {} of {written} bytes",
                    read.map(|r| r.describe()),
                    verifier.verified
                ),
            ),
        }
    }
}

/// Writes `data` as fast as the tunnel takes it until `stop`, adding the bytes of completed
/// writes to `progress`; the writer and the bytes it wrote. Writing all of `data` means the
/// writer was never held back: an error.
async fn flood(
    mut writer: Writer,
    data: Bytes,
    progress: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(Writer, u64), String> {
    let mut written = 0;
    while written < data.len() {
        let chunk = data.slice(written..(written + CHUNK).min(data.len()));
        let stopped = tokio::select! {
            _ = stop.changed() => true,
            result = writer.write(&chunk) => {
                result.map_err(|e| format!("after {written} bytes: {e}"))?;
                false
            }
        };
        if stopped {
            return Ok((writer, written as u64));
        }
        written += chunk.len();
        progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    Err(format!("all {} MiB written: never held back", data.len() >> 20))
}

/// Waits (polling every 50 ms, up to `limit`) until `progress` has not moved for 0.5 s; when it
/// last moved.
async fn until_still(progress: &AtomicU64, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let (mut last, mut moved) = (progress.load(Ordering::Relaxed), start);
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = progress.load(Ordering::Relaxed);
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() >= Duration::from_millis(500) {
            return Some(moved - start);
        }
    }
    None
}
