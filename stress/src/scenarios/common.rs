//! What more than one scenario does the same way: start the broker and the canary (a failed
//! check when they do not start), report a list of failures, wait for the broker to settle,
//! run checked transfers on opened tunnels, poll for a condition, and sample the broker's peak
//! memory and descriptors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use remoteproxy_bench::client::Conn;
use tokio::task::JoinHandle;

use crate::Ctx;
use crate::broker::{Broker, Setup};
use crate::report::Report;
use crate::tunnels::{self, Canary, Pace};

/// `: <the first error>` when there is one.
pub fn first(errors: &[String]) -> String {
    errors.first().map(|e| format!("; first: {e}")).unwrap_or_default()
}

/// Checks that nothing is in `failures`; the detail is how many there are (`{count} {word}`) and
/// the first of them.
pub fn check_none(r: &Report, claim: &str, failures: &[String], word: &str) {
    r.check(claim, failures.is_empty(), format!("{} {word}{}", failures.len(), first(failures)));
}

/// Starts a broker with `setup`; a failed check when it does not start.
pub async fn start_broker(ctx: &Ctx, setup: Setup) -> Option<Broker> {
    match Broker::start(&ctx.broker, &setup).await {
        Ok(broker) => Some(broker),
        Err(e) => {
            ctx.report.error("the broker starts", e);
            None
        }
    }
}

/// Starts the canary; a failed check when it cannot.
pub async fn start_canary(ctx: &Ctx, broker: &Broker) -> Option<Canary> {
    match Canary::start(&ctx.client, broker).await {
        Ok(canary) => Some(canary),
        Err(e) => {
            ctx.report.error("the canary tunnel opens", e);
            None
        }
    }
}

/// Checks `claim`, that the broker settles at `fds` descriptors ([`Broker::settles_at`]); when it
/// does, the detail is `detail` of the time it took, otherwise what is left.
pub async fn check_settled(
    r: &Report,
    broker: &Broker,
    fds: u64,
    claim: &str,
    detail: impl FnOnce(Duration) -> String,
) {
    match broker.settles_at(fds).await {
        Ok(t) => r.check(claim, true, detail(t)),
        Err(left) => r.check(claim, false, left),
    }
}

/// Starts a checked transfer at `pace` on each tunnel.
pub fn spawn_transfers(
    pairs: Vec<(u64, (Conn, Conn))>,
    seed: u64,
    pace: Pace,
) -> Vec<JoinHandle<Result<u64, String>>> {
    pairs.into_iter().map(|(i, (a, b))| tokio::spawn(tunnels::transfer(a, b, seed, i, pace))).collect()
}

/// Waits for the transfers: the bytes verified, and the errors.
pub async fn join_transfers(transfers: Vec<JoinHandle<Result<u64, String>>>) -> (u64, Vec<String>) {
    let (mut bytes, mut errors) = (0, Vec::new());
    for transfer in transfers {
        match transfer.await {
            Ok(Ok(b)) => bytes += b,
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (bytes, errors)
}

/// Polls `done` every 10 ms until it holds or `limit` passes; whether it held.
pub async fn wait_for(done: impl Fn() -> bool, limit: Duration) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// The broker's largest RSS and descriptor count, sampled once at the start and then every
/// `every` while a scenario or a step goes on.
pub struct Peak {
    rss: Arc<AtomicU64>,
    fds: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Peak {
    /// Starts sampling `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> Peak {
        let rss = Arc::new(AtomicU64::new(remoteproxy_bench::procfs::rss_kib(pid).unwrap_or(0)));
        let fds = Arc::new(AtomicU64::new(remoteproxy_bench::procfs::fd_count(pid).unwrap_or(0)));
        let (r, f) = (rss.clone(), fds.clone());
        let task = tokio::spawn(async move {
            loop {
                r.fetch_max(remoteproxy_bench::procfs::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                f.fetch_max(remoteproxy_bench::procfs::fd_count(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        });
        Peak { rss, fds, task }
    }

    /// Stops sampling; the largest RSS (KiB) and descriptor count seen.
    pub fn finish(self) -> (u64, u64) {
        self.task.abort();
        (self.rss.load(Ordering::Relaxed), self.fds.load(Ordering::Relaxed))
    }
}
