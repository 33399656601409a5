//! `hold`: what idle tunnels cost, and whether it all comes back.
//!
//! `--hold-shape v1-tcp` (the default) holds tunnels with both ends on the byte-stream listener,
//! `v1-ws` with both ends on the WebSocket listener (the baseline's is the tokio-tungstenite
//! message relay); the v2 shapes are in [`super::fleet`], which shares the reading and waiting
//! here.
//!
//! Per side (the broker, then a freshly started baseline process):
//! 1. read the server's RSS ("cold"), then warm it up: open `hold_concurrency` tunnels with the
//!    same traffic and close them again, and wait until its memory settles. One-time costs
//!    (allocator thread caches, lazily built tables, the TLS session cache) are paid here, so
//!    they count neither as per-tunnel cost nor as memory that did not come back. Read RSS and
//!    open descriptors ("before");
//! 2. open N tunnels on the stream listener, `hold_concurrency` at a time; each carries `hold_bytes`
//!    (1 MiB) in both directions at once, so every buffer a relay keeps has been touched, then it
//!    stays open and silent (an idle-only test would miss buffers that only exist after traffic);
//! 3. after all are open, let them sit idle for `hold_idle` (2 s), read RSS and descriptors
//!    ("held"): (held − before) / N is the cost of one idle tunnel;
//! 4. drop every connection, wait (up to 30 s) until the descriptors are back to "before", then
//!    until RSS stops falling (allocators give freed pages back with a delay; at most 10 s),
//!    read again ("after"). Memory and descriptors should be within 10% of "before".
//!
//! The baseline's hold runs in its own fresh process so its "before" is a clean start; the
//! broker's is whatever state the broker is in (`all` runs hold first, on a fresh broker).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

use super::{Bench, Pairing};
use crate::baseline::BaselineProcess;
use crate::client::{Client, Endpoint, Failure, Handshake, Reader, Writer, payload_chunk};
use crate::goals::{self, HoldFacts};
use crate::procfs::Sample;
use crate::results::{Errors, HoldResult, HoldSide, Triple, merge_errors};
use crate::server::Server;
use crate::stats;

/// How long closed tunnels may take to give their descriptors back.
const RELEASE_LIMIT: Duration = Duration::from_secs(30);

/// How long memory may take to settle after tunnels closed.
const SETTLE_LIMIT: Duration = Duration::from_secs(15);

/// Allocators give memory back on timers (jemalloc's decay starts after a quiet moment), so
/// RSS is not judged settled before this.
const SETTLE_MIN: Duration = Duration::from_secs(2);

/// RSS counts as settled when it fell by less than this over [`SETTLE_STEP`].
const SETTLE_SLACK_KIB: u64 = 64;

/// Interval between RSS readings while waiting for it to settle.
const SETTLE_STEP: Duration = Duration::from_secs(1);

/// Both ends of an open tunnel, kept only to be dropped later.
type Held = (Reader, Writer, Reader, Writer);

/// Runs the measure on the broker, then on a fresh baseline process.
pub async fn run(bench: &Bench) -> anyhow::Result<HoldResult> {
    let p = &bench.params;
    let pairing = p.hold_shape.pairing().unwrap_or(Pairing::Stream);
    anyhow::ensure!(
        pairing.endpoints(&bench.broker).is_some(),
        "--hold-shape {} needs the broker's WebSocket listener (--ws-url)",
        p.hold_shape.name()
    );
    let transport = pairing.label(&bench.broker);
    eprintln!(
        "hold: broker: opening {} {transport} tunnels ({} each way)…",
        p.hold_tunnels,
        stats::format_bytes(p.hold_bytes as f64)
    );
    let broker = one_side(bench, &bench.broker, pairing).await;
    let baseline_process = BaselineProcess::start(bench.baseline_args()).await?;
    eprintln!("hold: baseline: opening {} {transport} tunnels…", p.hold_tunnels);
    let baseline = one_side(bench, &baseline_process.server, pairing).await;
    baseline_process.stop().await;
    let ratio =
        broker.rss_bytes_per_tunnel.zip(baseline.rss_bytes_per_tunnel).and_then(|(a, b)| stats::ratio(a, b));
    let facts = HoldFacts {
        transport: transport.clone(),
        requested: p.hold_tunnels,
        established: broker.established,
        bytes_per_tunnel: broker.rss_bytes_per_tunnel,
        rss_before_after: broker.rss_kib.map(|t| (t.before, t.after)),
        fds_before_after: broker.fds.map(|t| (t.before, t.after)),
    };
    let result = HoldResult {
        transport,
        tunnels: p.hold_tunnels,
        bytes_each_way: p.hold_bytes,
        checks: goals::hold(&facts),
        broker,
        baseline,
        ratio,
    };
    bench.printer.say(&result.human());
    Ok(result)
}

async fn one_side(bench: &Bench, server: &Server, pairing: Pairing) -> HoldSide {
    let p = &bench.params;
    let Some(ends) = pairing.endpoints(server) else {
        let mut errors = Errors::new();
        errors.insert(format!("{} has no listener for this shape", server.role), p.hold_tunnels);
        return HoldSide { errors, ..HoldSide::default() };
    };
    let cold = server.sample();
    let (warm_up, mut errors) = open_all(bench, server, &ends, p.hold_concurrency.min(p.hold_tunnels)).await;
    drop(warm_up);
    let (before, _) = wait_for_release(server, cold).await;
    let start = Instant::now();
    let (held, held_errors) = open_all(bench, server, &ends, p.hold_tunnels).await;
    merge_errors(&mut errors, &held_errors);
    let open_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(p.hold_idle).await;
    let during = server.sample();
    let established = held.len();
    drop(held);
    let (after, release_s) = wait_for_release(server, before).await;
    side(Readings { cold, before, during, after }, established, errors, open_s, release_s)
}

/// The four readings of one side: before the warm-up, after it, while held, after closing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Readings {
    pub cold: Option<Sample>,
    pub before: Option<Sample>,
    pub during: Option<Sample>,
    pub after: Option<Sample>,
}

/// A side's result from its readings; per-unit costs divide by `established`.
pub(super) fn side(
    readings: Readings,
    established: usize,
    errors: Errors,
    open_s: f64,
    release_s: f64,
) -> HoldSide {
    let Readings { cold, before, during, after } = readings;
    let (rss_kib, fds) = match (before, during, after) {
        (Some(b), Some(d), Some(a)) => (
            Some(Triple { before: b.rss_kib, held: d.rss_kib, after: a.rss_kib }),
            Some(Triple { before: b.fds, held: d.fds, after: a.fds }),
        ),
        _ => (None, None),
    };
    let per_tunnel = |t: Option<Triple>, scale: f64| {
        t.filter(|_| established > 0).map(|t| (t.held as f64 - t.before as f64) * scale / established as f64)
    };
    HoldSide {
        established,
        cold_rss_kib: cold.map(|c| c.rss_kib),
        errors,
        open_s,
        release_s,
        rss_kib,
        fds,
        rss_bytes_per_tunnel: per_tunnel(rss_kib, 1024.0),
        fds_per_tunnel: per_tunnel(fds, 1.0),
    }
}

async fn open_all(
    bench: &Bench,
    server: &Server,
    ends: &(Endpoint, Endpoint),
    count: usize,
) -> (Vec<Held>, Errors) {
    let p = &bench.params;
    let chunk = payload_chunk(p.chunk);
    let next = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut workers = JoinSet::new();
    for _ in 0..p.hold_concurrency.clamp(1, count.max(1)) {
        let (client, ends, next, held, chunk) =
            (bench.client.clone(), ends.clone(), next.clone(), held.clone(), chunk.clone());
        let handshake = server.handshake;
        let (bytes, limit) = (p.hold_bytes, p.transfer_timeout);
        workers.spawn(async move {
            let mut errors = Errors::new();
            let mut scratch = vec![0u8; 64 << 10];
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let opened = tokio::time::timeout(
                    limit,
                    open_and_fill(&client, &ends, handshake, bytes, &chunk, &mut scratch),
                )
                .await
                .unwrap_or(Err(Failure::Timeout("open and fill")));
                match opened {
                    Ok(tunnel) => held.lock().unwrap_or_else(|e| e.into_inner()).push(tunnel),
                    Err(failure) => *errors.entry(failure.key()).or_default() += 1,
                }
            }
            errors
        });
    }
    let mut errors = Errors::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(e) => merge_errors(&mut errors, &e),
            Err(panic) => *errors.entry(format!("bench worker failed: {panic}")).or_default() += 1,
        }
    }
    let held = std::mem::take(&mut *held.lock().unwrap_or_else(|e| e.into_inner()));
    (held, errors)
}

async fn open_and_fill(
    client: &Client,
    (a, b): &(Endpoint, Endpoint),
    handshake: Handshake,
    bytes: u64,
    chunk: &Bytes,
    scratch: &mut [u8],
) -> Result<Held, Failure> {
    let (a, b) = client.open_tunnel(a, b, handshake).await?;
    let (mut a_in, mut a_out) = a.split();
    let (mut b_in, mut b_out) = b.split();
    let (a_scratch, b_scratch) = scratch.split_at_mut(scratch.len() / 2);
    tokio::try_join!(
        a_out.write_total(bytes, chunk),
        b_in.read_exactly(bytes, b_scratch),
        b_out.write_total(bytes, chunk),
        a_in.read_exactly(bytes, a_scratch),
    )?;
    Ok((a_in, a_out, b_in, b_out))
}

/// Waits until the server's descriptors are back to `before` (bounded) and returns how long that
/// took; then waits until its RSS stops falling (bounded) and reads again.
pub(super) async fn wait_for_release(server: &Server, before: Option<Sample>) -> (Option<Sample>, f64) {
    let Some(before) = before else { return (None, 0.0) };
    let start = Instant::now();
    while let Some(now) = server.sample() {
        if now.fds <= before.fds || start.elapsed() >= RELEASE_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let release_s = start.elapsed().as_secs_f64();
    let settle = Instant::now();
    let mut last = server.sample();
    while settle.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(SETTLE_STEP).await;
        let now = server.sample();
        match (last, now) {
            (Some(l), Some(n))
                if settle.elapsed() < SETTLE_MIN
                    || l.rss_kib.saturating_sub(n.rss_kib) >= SETTLE_SLACK_KIB =>
            {
                last = now
            }
            _ => return (now, release_s),
        }
    }
    (last, release_s)
}
