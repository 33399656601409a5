//! `setup`: how fast tunnels are made.
//!
//! N tunnels at concurrency C, per round and side: C workers each take the next tunnel number
//! until N are done. One tunnel = two connections opened at the same time, each from the next
//! source address in 127.0.0.2..254: TCP connect, TLS handshake (full, no resumption), then the
//! handshake (broker: Hello → response, Authenticate → response, TunnelEstablished; baseline: one
//! line each way), then one byte from the first end to the second. The latency of a tunnel runs
//! from before the first connect until that byte has arrived. The connections are then dropped
//! (closing is not timed but happens while later tunnels are being set up, as in real churn).
//!
//! Before each timed round, 2×C tunnels warm up both sides (not counted). Tunnels per second =
//! tunnels established / wall time of the round.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

use super::{Bench, Side, order};
use crate::client::{Client, Failure};
use crate::goals;
use crate::procfs::CpuMeter;
use crate::results::{Errors, SetupResult, SetupSide, error_total, merge_errors};
use crate::server::Server;
use crate::stats::{self, Percentiles};

/// One round on one side.
pub(crate) struct Round {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: Errors,
    pub(crate) elapsed: Duration,
    cpu: Option<Duration>,
}

/// Runs the measure against the broker and `baseline`.
pub async fn run(bench: &Bench, baseline: &Server) -> SetupResult {
    let p = &bench.params;
    let mut rounds: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for round in 0..p.rounds {
        for side in order(round) {
            let server = if side == Side::Broker { &bench.broker } else { baseline };
            rounds[side as usize]
                .push(one_round(&bench.client, server, p.setup_tunnels, p.concurrency).await);
        }
    }
    let [broker, baseline] = rounds.map(|r| summarize(&r, p.setup_tunnels));
    let ratio = stats::ratio(broker.tunnels_per_s, baseline.tunnels_per_s);
    let errors = error_total(&broker.errors) + error_total(&baseline.errors);
    let checks = goals::setup(ratio, broker.latency_ms.p99, p.concurrency, errors);
    SetupResult {
        transport: bench.broker.stream.label().to_string(),
        tunnels: p.setup_tunnels,
        concurrency: p.concurrency,
        broker,
        baseline,
        ratio,
        checks,
    }
}

pub(crate) async fn one_round(
    client: &Arc<Client>,
    server: &Server,
    tunnels: usize,
    concurrency: usize,
) -> Round {
    let warmup = (2 * concurrency).min(tunnels);
    let _ = batch(client, server, warmup, concurrency).await;
    let cpu = CpuMeter::start(server.pid);
    let start = Instant::now();
    let (latencies, errors) = batch(client, server, tunnels, concurrency).await;
    let elapsed = start.elapsed();
    Round { latencies, errors, elapsed, cpu: cpu.elapsed() }
}

/// Opens `count` tunnels with `concurrency` workers; returns the latencies of the good ones and
/// the failures.
pub async fn batch(
    client: &Arc<Client>,
    server: &Server,
    count: usize,
    concurrency: usize,
) -> (Vec<Duration>, Errors) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (client, server, next) = (client.clone(), server.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Errors::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let start = Instant::now();
                match one_tunnel(&client, &server).await {
                    Ok(()) => latencies.push(start.elapsed()),
                    Err(failure) => *errors.entry(failure.key()).or_default() += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut errors = Errors::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((l, e)) => {
                latencies.extend(l);
                merge_errors(&mut errors, &e);
            }
            Err(panic) => *errors.entry(format!("bench worker failed: {panic}")).or_default() += 1,
        }
    }
    (latencies, errors)
}

async fn one_tunnel(client: &Client, server: &Server) -> Result<(), Failure> {
    let (a, b) = super::Pairing::Stream.endpoints(server).expect("a stream listener is always there");
    let (a, b) = client.open_tunnel(&a, &b, server.handshake).await?;
    let (_a_in, mut a_out) = a.split();
    let (mut b_in, _b_out) = b.split();
    a_out.write(&Bytes::from_static(b"!")).await?;
    a_out.flush().await?;
    tokio::time::timeout(client.step_timeout, b_in.read_exactly(1, &mut [0u8; 64]))
        .await
        .map_err(|_| Failure::Timeout("the byte through the tunnel"))?
}

fn summarize(rounds: &[Round], tunnels: usize) -> SetupSide {
    let mut errors = Errors::new();
    let mut latencies = Vec::new();
    let mut cpu_total = Some(Duration::ZERO);
    let mut rates = Vec::new();
    for round in rounds {
        merge_errors(&mut errors, &round.errors);
        latencies.extend_from_slice(&round.latencies);
        rates.push(round.latencies.len() as f64 / round.elapsed.as_secs_f64().max(1e-9));
        cpu_total = cpu_total.zip(round.cpu).map(|(a, b)| a + b);
    }
    let ok = latencies.len();
    let (latency_ms, sorted) = Percentiles::of_durations(&latencies, Duration::from_millis(1));
    SetupSide {
        tunnels_per_s: stats::median(&rates).unwrap_or(0.0),
        rounds_tunnels_per_s: rates,
        attempted: tunnels * rounds.len(),
        ok,
        errors,
        latency_ms,
        latency_cdf_ms: stats::cdf_points(&sorted),
        cpu_ms_per_tunnel: cpu_total.filter(|_| ok > 0).map(|cpu| cpu.as_secs_f64() * 1e3 / ok as f64),
    }
}
