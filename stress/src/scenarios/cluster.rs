//! cluster: three nodes of one cluster on one Redis hold more tunnels at once than one broker
//! process can (its open-files limit stops one at about 9,000 tunnels here), every tunnel with
//! its two ends on two different nodes. The clients are worker processes of this program (one
//! process could not hold the client sockets either); each tunnel carries a checked message both
//! ways when it opens and again once all are open. Afterwards every node is back to no client and
//! no relayed tunnel.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::Ctx;
use crate::broker::{Broker, Setup};
use crate::redis::Redis;
use crate::scenarios::common::start_broker;

/// How long opening or checking every tunnel may take.
const PHASE_LIMIT: Duration = Duration::from_secs(900);

/// Tunnels each worker opens at once.
const CONCURRENCY: usize = 32;

pub async fn run(ctx: &Ctx) {
    let (r, per) = (&ctx.report, ctx.size.cluster_tunnels_per_node);
    r.scenario(
        "cluster",
        format!("3 nodes on one Redis hold {} tunnels at once, each with its ends on two nodes", 3 * per),
    );
    let redis = match Redis::start().await {
        Ok(redis) => redis,
        Err(e) => return r.error("redis-server starts", e),
    };
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        let sections = format!(
            "[Cluster]\nenabled=true\nredisUrl={}\nnodeId={id}\nrelayHost=127.0.0.1\nrelayPort=0\n\
             secret=stress-cluster-secret-{}\nheartbeatInterval=500\n",
            redis.url(),
            std::process::id()
        );
        let Some(node) = start_broker(ctx, Setup { mock: true, sections, ..Setup::default() }).await else {
            return;
        };
        nodes.push(node);
    }
    if let Err(e) = all_listed(&nodes).await {
        return r.error("every node sees the three nodes in Redis", e);
    }

    let start = Instant::now();
    let mut workers = Vec::new();
    for i in 0..3 {
        let (first, second) = (&nodes[i], &nodes[(i + 1) % 3]);
        match spawn_worker(first, second, per) {
            Ok(worker) => workers.push(worker),
            Err(e) => return r.error("the client workers start", e),
        }
    }
    let ready = phase(&mut workers, "ready").await;
    let opened: usize = ready.iter().map(|(ok, _, _)| ok).sum();
    let open_errors: usize = ready.iter().map(|(_, errors, _)| errors).sum();
    let elapsed = start.elapsed();
    r.figure(
        "tunnels opened across nodes",
        format!(
            "{opened} in {:.1} s ({:.0}/s)",
            elapsed.as_secs_f64(),
            opened as f64 / elapsed.as_secs_f64()
        ),
    );
    let mut relayed = 0;
    let mut clients = 0;
    for (node, id) in nodes.iter().zip(["node-a", "node-b", "node-c"]) {
        let snapshot = node.snapshot().await.ok();
        let node_relayed: u64 = snapshot
            .as_ref()
            .and_then(|s| s.cluster_statistic.as_ref())
            .map_or(0, |c| c.relayed_tunnels.values().sum());
        let node_clients = snapshot.as_ref().map_or(0, |s| s.proxy_statistic.client_count);
        relayed += node_relayed;
        clients += node_clients;
        r.figure(
            &format!("{id} holds"),
            format!(
                "{node_clients} clients, {node_relayed} relayed tunnels, {} descriptors, RSS {} MiB",
                node.fds(),
                node.rss_kib() / 1024
            ),
        );
    }
    let limit = open_files_limit(nodes[0].pid).unwrap_or(0);
    r.figure(
        "client connections across the nodes",
        format!("{clients} (one process may hold {limit} descriptors)"),
    );
    r.check(
        "every tunnel opened across two nodes, its first message both ways checked",
        opened == 3 * per && open_errors == 0,
        format!("{opened} of {}, {open_errors} errors{}", 3 * per, first_error(&ready)),
    );
    // Each tunnel is relayed on both its nodes.
    r.check(
        "every tunnel is relayed between two nodes",
        relayed == 2 * opened as u64 && clients == 2 * opened as u64,
        format!("{relayed} relayed tunnel ends, {clients} clients"),
    );
    if per >= 8_000 {
        r.check(
            "the cluster holds more client connections than one process may have descriptors",
            clients > limit,
            format!("{clients} > {limit}"),
        );
    }

    let checked = phase(&mut workers, "checked").await;
    let ok: usize = checked.iter().map(|(ok, _, _)| ok).sum();
    let errors: usize = checked.iter().map(|(_, errors, _)| errors).sum();
    r.check(
        "with all open, every tunnel carries a checked message both ways again",
        ok == opened && errors == 0,
        format!("{ok} of {opened}, {errors} errors{}", first_error(&checked)),
    );
    for worker in &mut workers {
        let _ = tokio::time::timeout(PHASE_LIMIT, worker.child.wait()).await;
    }
    let mut left = Vec::new();
    for (node, id) in nodes.iter().zip(["node-a", "node-b", "node-c"]) {
        if let Err(e) = settled(node).await {
            left.push(format!("{id}: {e}"));
        }
    }
    r.check("afterwards no node has a client or a relayed tunnel left", left.is_empty(), left.join("; "));
}

struct Worker {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

fn spawn_worker(first: &Broker, second: &Broker, tunnels: usize) -> anyhow::Result<Worker> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("cluster-worker")
        .arg(format!("ssl://{}", first.tcp))
        .arg(format!("ssl://{}", second.tcp))
        .arg(tunnels.to_string())
        .arg(CONCURRENCY.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    Ok(Worker { child, lines: BufReader::new(stdout).lines() })
}

/// Tells every worker to go on (except before `ready`) and reads its `WORD OK ERRORS FIRST` line.
async fn phase(workers: &mut [Worker], word: &str) -> Vec<(usize, usize, String)> {
    let mut results = Vec::new();
    for worker in workers.iter_mut() {
        if word != "ready"
            && let Some(stdin) = worker.child.stdin.as_mut()
        {
            let _ = stdin.write_all(b"go on\n").await;
        }
    }
    for worker in workers.iter_mut() {
        let line = tokio::time::timeout(PHASE_LIMIT, worker.lines.next_line()).await;
        let line = match line {
            Ok(Ok(Some(line))) => line,
            _ => {
                results.push((0, 1, format!("a worker said nothing for {word}")));
                continue;
            }
        };
        let mut parts = line.splitn(4, ' ');
        let (said, ok, errors, first) = (parts.next(), parts.next(), parts.next(), parts.next());
        match (said == Some(word), ok.and_then(|n| n.parse().ok()), errors.and_then(|n| n.parse().ok())) {
            (true, Some(ok), Some(errors)) => results.push((ok, errors, first.unwrap_or("").to_string())),
            _ => results.push((0, 1, format!("a worker said {line:?}"))),
        }
    }
    results
}

fn first_error(results: &[(usize, usize, String)]) -> String {
    results
        .iter()
        .find(|(_, _, first)| !first.is_empty())
        .map(|(_, _, first)| format!("; first: {first}"))
        .unwrap_or_default()
}

/// Waits until every node lists the three nodes as alive.
async fn all_listed(nodes: &[Broker]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut listed = Vec::new();
        for node in nodes {
            let count =
                node.snapshot().await.ok().and_then(|s| s.cluster_statistic).map_or(0, |c| c.nodes.len());
            listed.push(count);
        }
        if listed.iter().all(|n| *n == 3) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the nodes list {listed:?} nodes"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the node has no client and no relayed tunnel.
async fn settled(node: &Broker) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (clients, relayed) = match node.snapshot().await {
            Ok(s) => (
                s.proxy_statistic.client_count,
                s.cluster_statistic.map_or(0, |c| c.relayed_tunnels.values().sum::<u64>()),
            ),
            Err(e) => return Err(e.to_string()),
        };
        if clients == 0 && relayed == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{clients} clients, {relayed} relayed tunnels"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The soft open-files limit of a process, from /proc.
fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
