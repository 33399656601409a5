//! load: thousands of concurrent tunnels (TLS, TCP and WebSocket mixed) move paced, checked data
//! both ways; every byte must arrive in order on the right partner, with no error, and the
//! broker's memory must stay within what its buffers allow.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::Ctx;
use crate::broker::Setup;
use crate::scenarios::common::{
    Peak, check_none, check_settled, join_transfers, spawn_transfers, start_broker,
};
use crate::tunnels::{self, Pace};

/// Each direction of each tunnel writes this much per interval.
const CHUNK: usize = 2048;
const INTERVAL: Duration = Duration::from_millis(250);
/// The documented bound: one 64 KiB buffer per direction at most, plus the TLS records.
const BOUND_PER_TUNNEL_KIB: u64 = 2 * 64 + 32;

pub async fn run(ctx: &Ctx) {
    let (r, n) = (&ctx.report, ctx.size.load_tunnels);
    r.scenario(
        "load",
        format!(
            "{n} tunnels over TLS (TCP and WebSocket mixed) move checked data both ways for {:?}",
            ctx.size.load_time
        ),
    );
    let Some(broker) = start_broker(ctx, Setup { mock: true, ..Setup::default() }).await else { return };
    let (idle_rss, idle_fds) = (broker.rss_kib(), broker.fds());

    let start = Instant::now();
    let opened: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, broker) = (&ctx.client, &broker);
            async move { (i, tunnels::open(client, broker, i).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let setup_time = start.elapsed();
    let mut setup_errors = Vec::new();
    let mut pairs = Vec::new();
    for (i, result) in opened {
        match result {
            Ok(pair) => pairs.push((i, pair)),
            Err(e) => setup_errors.push(e),
        }
    }
    r.figure(
        "tunnels opened",
        format!(
            "{} in {:.1} s ({:.0}/s)",
            pairs.len(),
            setup_time.as_secs_f64(),
            pairs.len() as f64 / setup_time.as_secs_f64()
        ),
    );
    let held_rss = broker.rss_kib();
    r.figure("broker RSS idle → tunnels open", format!("{idle_rss} KiB → {held_rss} KiB"));

    let seed = u64::from(std::process::id());
    let pace = Pace { chunk: CHUNK, interval: INTERVAL, until: Instant::now() + ctx.size.load_time };
    let sampling = Peak::start(broker.pid, Duration::from_millis(200));
    let moving = Instant::now();
    let (bytes, errors) = join_transfers(spawn_transfers(pairs, seed, pace)).await;
    let elapsed = moving.elapsed();
    let (peak, _) = sampling.finish();
    r.figure(
        "bytes verified (both ways)",
        format!(
            "{:.1} MiB in {:.1} s ({:.2} MB/s)",
            bytes as f64 / 1048576.0,
            elapsed.as_secs_f64(),
            bytes as f64 / 1e6 / elapsed.as_secs_f64()
        ),
    );
    r.figure(
        "broker RSS peak while moving",
        format!(
            "{peak} KiB ({:.1} KiB per tunnel above idle)",
            (peak.saturating_sub(idle_rss)) as f64 / n as f64
        ),
    );
    let expected =
        n * 2 * (ctx.size.load_time.as_millis() as u64 / INTERVAL.as_millis() as u64) * CHUNK as u64;
    check_none(r, "every tunnel opened", &setup_errors, "failed");
    check_none(r, "every byte arrived in order on its partner, 0 errors", &errors, "tunnels failed");
    r.check(
        "the pace was kept (at least 90% of the planned bytes)",
        bytes * 10 >= expected * 9,
        format!("{bytes} of {expected}"),
    );
    let bound = idle_rss + n * BOUND_PER_TUNNEL_KIB;
    r.check(
        "broker RSS stayed bounded",
        peak <= bound,
        format!("peak {peak} KiB, bound {bound} KiB = idle + {BOUND_PER_TUNNEL_KIB} KiB per tunnel"),
    );
    check_settled(r, &broker, idle_fds, "every tunnel gone after the clients closed", |t| {
        format!("in {:.1} s", t.as_secs_f64())
    })
    .await;
}
