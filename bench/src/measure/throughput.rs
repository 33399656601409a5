//! `throughput`: bulk data through one tunnel.
//!
//! For each pairing (stream↔stream, WebSocket↔WebSocket, and mixed: first end on the stream
//! listener, second on the WebSocket one) and each direction mode, per round and side: a fresh
//! tunnel, then
//! * one-way: the first end sends B bytes, the second receives them;
//! * both-ways: each end sends B bytes and receives the other's B, at the same time;
//!
//! timed from the first write until the last byte has arrived, the tunnel closed afterwards.
//! The rate is payload delivered (B, or 2B both ways) per second. Writes are `chunk` bytes (64
//! KiB) of pseudo-random data: byte-stream writes, or one binary message each on WebSocket.
//! The four directions of a tunnel end are driven from one task, as the broker drives a tunnel
//! from one task. Server CPU time (from /proc) over the transfer is reported per GB.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Bench, Pairing, Side, order};
use crate::client::{Client, Failure, payload_chunk};
use crate::goals;
use crate::procfs::CpuMeter;
use crate::results::{Errors, ThroughputResult, ThroughputSide, error_total};
use crate::server::Server;
use crate::stats;

/// Read buffer per receiving end (stream carriers; WebSocket payloads are counted in place).
const SCRATCH: usize = 256 << 10;

pub(crate) struct Transfer {
    pub(crate) moved: u64,
    pub(crate) elapsed: Duration,
    pub(crate) cpu: Option<Duration>,
}

/// Runs every available pairing in both direction modes; prints each result as it is done.
pub async fn run(bench: &Bench, baseline: &Server) -> Vec<ThroughputResult> {
    let chunk = payload_chunk(bench.params.chunk);
    let mut results = Vec::new();
    for pairing in Pairing::available(&bench.broker) {
        for both in [false, true] {
            let result = measure(bench, baseline, pairing, both, &chunk).await;
            bench.printer.say(&result.human());
            results.push(result);
        }
    }
    results
}

async fn measure(
    bench: &Bench,
    baseline: &Server,
    pairing: Pairing,
    both: bool,
    chunk: &Bytes,
) -> ThroughputResult {
    let p = &bench.params;
    let mut sides: [(Vec<Transfer>, Errors); 2] = Default::default();
    for round in 0..p.rounds {
        for side in order(round) {
            let server = if side == Side::Broker { &bench.broker } else { baseline };
            let outcome =
                transfer(&bench.client, server, pairing, both, p.bytes, chunk, p.transfer_timeout).await;
            let (transfers, errors) = &mut sides[side as usize];
            match outcome {
                Ok(t) => transfers.push(t),
                Err(failure) => *errors.entry(failure.key()).or_default() += 1,
            }
        }
    }
    let [broker, baseline] = sides.map(|(transfers, errors)| summarize(&transfers, errors));
    let ratio = stats::ratio(broker.mb_per_s, baseline.mb_per_s);
    let transport = pairing.label(&bench.broker);
    let errors = error_total(&broker.errors) + error_total(&baseline.errors);
    let checks =
        if pairing == Pairing::Mixed { Vec::new() } else { goals::throughput(&transport, ratio, errors) };
    ThroughputResult {
        transport,
        direction: if both { "both-ways" } else { "one-way" }.to_string(),
        bytes: p.bytes,
        broker,
        baseline,
        ratio,
        checks,
    }
}

pub(crate) async fn transfer(
    client: &Client,
    server: &Server,
    pairing: Pairing,
    both: bool,
    bytes: u64,
    chunk: &Bytes,
    limit: Duration,
) -> Result<Transfer, Failure> {
    let (a, b) = pairing.endpoints(server).ok_or(Failure::Protocol("no WebSocket listener".into()))?;
    let (a, b) = client.open_tunnel(&a, &b, server.handshake).await?;
    let (mut a_in, mut a_out) = a.split();
    let (mut b_in, mut b_out) = b.split();
    let (mut a_scratch, mut b_scratch) = (vec![0u8; SCRATCH], vec![0u8; SCRATCH]);
    let cpu = CpuMeter::start(server.pid);
    let start = Instant::now();
    let work = async {
        if both {
            tokio::try_join!(
                a_out.write_total(bytes, chunk),
                b_in.read_exactly(bytes, &mut b_scratch),
                b_out.write_total(bytes, chunk),
                a_in.read_exactly(bytes, &mut a_scratch),
            )
            .map(|_| ())
        } else {
            tokio::try_join!(a_out.write_total(bytes, chunk), b_in.read_exactly(bytes, &mut b_scratch))
                .map(|_| ())
        }
    };
    tokio::time::timeout(limit, work).await.map_err(|_| Failure::Timeout("transfer"))??;
    let elapsed = start.elapsed();
    Ok(Transfer { moved: if both { 2 * bytes } else { bytes }, elapsed, cpu: cpu.elapsed() })
}

fn summarize(transfers: &[Transfer], errors: Errors) -> ThroughputSide {
    let rates: Vec<f64> = transfers.iter().map(|t| stats::mb_per_s(t.moved, t.elapsed)).collect();
    let moved: u64 = transfers.iter().map(|t| t.moved).sum();
    let cpu: Option<Duration> = transfers.iter().map(|t| t.cpu).sum();
    ThroughputSide {
        mb_per_s: stats::median(&rates).unwrap_or(0.0),
        rounds_mb_per_s: rates,
        cpu_s_per_gb: cpu.filter(|_| moved > 0).map(|cpu| cpu.as_secs_f64() / (moved as f64 / 1e9)),
        errors,
    }
}
