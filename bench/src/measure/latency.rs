//! `latency`: small-message round trips through one tunnel.
//!
//! Per round and side, a fresh tunnel: the first end sends a 64-byte message (one write + flush,
//! or one binary WebSocket message), the second end reads all 64 bytes and sends 64 back, the
//! first reads them; the round trip is timed at the first end. Strictly one message in flight.
//! The first 10% of round trips (at least 10, at most 1000) warm up and are not counted. Both
//! ends run in one task, so every wake-up is the same for broker and baseline. Samples of all
//! rounds are pooled for the percentiles.

use std::time::{Duration, Instant};

use super::{Bench, Pairing, Side, order};
use crate::client::{Client, Failure, payload_chunk};
use crate::goals;
use crate::results::{Errors, LatencyResult, LatencySide, error_total};
use crate::server::Server;
use crate::stats::{self, Percentiles};

/// Runs the stream pairing, and the WebSocket one when the broker has a WebSocket URL.
pub async fn run(bench: &Bench, baseline: &Server) -> Vec<LatencyResult> {
    let mut results = Vec::new();
    for pairing in Pairing::available(&bench.broker).into_iter().filter(|p| *p != Pairing::Mixed) {
        let result = measure(bench, baseline, pairing).await;
        bench.printer.say(&result.human());
        results.push(result);
    }
    results
}

async fn measure(bench: &Bench, baseline: &Server, pairing: Pairing) -> LatencyResult {
    let p = &bench.params;
    let warmup = (p.round_trips / 10).clamp(10, 1000);
    let mut sides: [(Vec<Duration>, Errors); 2] = Default::default();
    for round in 0..p.rounds {
        for side in order(round) {
            let server = if side == Side::Broker { &bench.broker } else { baseline };
            let outcome = ping_pong(
                &bench.client,
                server,
                pairing,
                warmup,
                p.round_trips,
                p.message_size,
                p.transfer_timeout,
            )
            .await;
            let (samples, errors) = &mut sides[side as usize];
            match outcome {
                Ok(s) => samples.extend(s),
                Err(failure) => *errors.entry(failure.key()).or_default() += 1,
            }
        }
    }
    let [broker, baseline] = sides.map(|(samples, errors)| LatencySide {
        rtt_us: Percentiles::of_durations(&samples, Duration::from_micros(1)).0,
        errors,
    });
    let ratio_p50 = stats::ratio(broker.rtt_us.p50, baseline.rtt_us.p50);
    let ratio_p99 = stats::ratio(broker.rtt_us.p99, baseline.rtt_us.p99);
    let errors = error_total(&broker.errors) + error_total(&baseline.errors);
    LatencyResult {
        transport: pairing.label(&bench.broker),
        round_trips: p.round_trips,
        message_bytes: p.message_size,
        broker,
        baseline,
        ratio_p50,
        ratio_p99,
        checks: goals::latency(ratio_p50, errors),
    }
}

pub(crate) async fn ping_pong(
    client: &Client,
    server: &Server,
    pairing: Pairing,
    warmup: usize,
    round_trips: usize,
    size: usize,
    limit: Duration,
) -> Result<Vec<Duration>, Failure> {
    let (a, b) = pairing.endpoints(server).ok_or(Failure::Protocol("no WebSocket listener".into()))?;
    let (a, b) = client.open_tunnel(&a, &b, server.handshake).await?;
    let (mut a_in, mut a_out) = a.split();
    let (mut b_in, mut b_out) = b.split();
    let message = payload_chunk(size);
    let total = warmup + round_trips;
    let ping = async {
        let mut scratch = vec![0u8; size.max(64)];
        let mut samples = Vec::with_capacity(round_trips);
        for i in 0..total {
            let start = Instant::now();
            a_out.write(&message).await?;
            a_out.flush().await?;
            a_in.read_exactly(size as u64, &mut scratch).await?;
            if i >= warmup {
                samples.push(start.elapsed());
            }
        }
        Ok::<_, Failure>(samples)
    };
    let pong = async {
        let mut scratch = vec![0u8; size.max(64)];
        for _ in 0..total {
            b_in.read_exactly(size as u64, &mut scratch).await?;
            b_out.write(&message).await?;
            b_out.flush().await?;
        }
        Ok::<_, Failure>(())
    };
    let (samples, ()) = tokio::time::timeout(limit, async { tokio::try_join!(ping, pong) })
        .await
        .map_err(|_| Failure::Timeout("ping-pong"))??;
    Ok(samples)
}
