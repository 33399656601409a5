//! `cluster`: tunnels whose two ends are on different cluster nodes, next to tunnels on one node,
//! in the same run.
//!
//! The broker under test (`--url`, `--ws-url`) is one node; `--peer-url` (`--peer-ws-url`) is
//! another node of the same cluster. Per round, alternating which goes first, each measure runs
//! on one-node tunnels (both ends on the first node) and on cross-node tunnels (the second end on
//! the other node, so every byte crosses the inter-node link):
//! * setup: N tunnels at concurrency C, as `setup` measures them; target: cross-node ≥ 0.5×;
//! * throughput: B bytes both ways through one tunnel, as `throughput`; target: cross-node ≥ 0.6×;
//!   with `--pid` also the first node's CPU time per GB moved: on a machine where the bench client
//!   and both nodes share the cores, throughput is bounded by the total CPU, and the CPU a node
//!   spends per byte says what nodes on hosts of their own would do;
//! * latency: 64-byte round trips, as `latency`; target: what the second node adds to the p50 is
//!   at most one relay hop's worth, taken as the whole one-node round trip (client → broker →
//!   client), which a second relay on the way can at most repeat.

use std::time::Duration;

use super::{Bench, Pairing, Side, order};
use crate::client::payload_chunk;
use crate::goals;
use crate::results::{ClusterResult, ClusterSide, Errors, error_total, merge_errors};
use crate::server::Server;
use crate::stats::{self, Percentiles};

/// Runs the three measures on `pairing` (stream, or WebSocket when both nodes have one).
pub async fn run(bench: &Bench, peer: &Server, pairing: Pairing) -> ClusterResult {
    let p = &bench.params;
    let one_node = bench.broker.clone();
    let cross_node = Server { peer: Some(Box::new(peer.clone())), ..bench.broker.clone() };
    let chunk = payload_chunk(p.chunk);
    let warmup = (p.round_trips / 10).clamp(10, 1000);
    let mut sides: [Samples; 2] = Default::default();
    for round in 0..p.rounds {
        for side in order(round) {
            // `Broker` stands for the cross-node tunnels here, `Baseline` for the one-node ones.
            let server = if side == Side::Broker { &cross_node } else { &one_node };
            let samples = &mut sides[side as usize];
            let setup = super::setup::one_round(&bench.client, server, p.setup_tunnels, p.concurrency).await;
            samples.setup.push(setup.latencies.len() as f64 / setup.elapsed.as_secs_f64().max(1e-9));
            merge_errors(&mut samples.errors, &setup.errors);
            let transfer = super::throughput::transfer(
                &bench.client,
                server,
                pairing,
                true,
                p.bytes,
                &chunk,
                p.transfer_timeout,
            )
            .await;
            match transfer {
                Ok(t) => {
                    samples.throughput.push(stats::mb_per_s(t.moved, t.elapsed));
                    if let Some(cpu) = t.cpu {
                        samples.cpu_s_per_gb.push(cpu.as_secs_f64() / (t.moved as f64 / 1e9));
                    }
                }
                Err(failure) => *samples.errors.entry(failure.key()).or_default() += 1,
            }
            let ping = super::latency::ping_pong(
                &bench.client,
                server,
                pairing,
                warmup,
                p.round_trips,
                p.message_size,
                p.transfer_timeout,
            )
            .await;
            match ping {
                Ok(rtts) => samples.rtts.extend(rtts),
                Err(failure) => *samples.errors.entry(failure.key()).or_default() += 1,
            }
        }
    }
    let [cross_node, one_node] = sides.map(Samples::summarize);
    let setup_ratio = stats::ratio(cross_node.tunnels_per_s, one_node.tunnels_per_s);
    let throughput_ratio = stats::ratio(cross_node.mb_per_s, one_node.mb_per_s);
    let added_rtt_us = cross_node.rtt_us.p50 - one_node.rtt_us.p50;
    let errors = error_total(&cross_node.errors) + error_total(&one_node.errors);
    let checks = goals::cluster(setup_ratio, throughput_ratio, added_rtt_us, one_node.rtt_us.p50, errors);
    ClusterResult {
        transport: pairing.label(&bench.broker),
        one_node,
        cross_node,
        setup_ratio,
        throughput_ratio,
        added_rtt_us,
        checks,
    }
}

/// What one side gathered over the rounds.
#[derive(Default)]
struct Samples {
    setup: Vec<f64>,
    throughput: Vec<f64>,
    rtts: Vec<Duration>,
    /// The first node's CPU seconds per GB moved.
    cpu_s_per_gb: Vec<f64>,
    errors: Errors,
}

impl Samples {
    fn summarize(self) -> ClusterSide {
        ClusterSide {
            tunnels_per_s: stats::median(&self.setup).unwrap_or(0.0),
            mb_per_s: stats::median(&self.throughput).unwrap_or(0.0),
            cpu_s_per_gb: stats::median(&self.cpu_s_per_gb),
            rtt_us: Percentiles::of_durations(&self.rtts, Duration::from_micros(1)).0,
            errors: self.errors,
        }
    }
}
