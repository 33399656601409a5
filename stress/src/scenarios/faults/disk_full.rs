//! Fault 5, the disk full: the broker runs under a file-size limit (as a unit's `LimitFSIZE=`
//! sets it) that its statistics log hits after a few hundred short tunnels. This shows that the
//! broker lives on, says that it cannot write the log, and keeps opening tunnels that carry data.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use remoteproxy_bench::client::Conn;

use super::checked_read::{Read, read_checked};
use super::{seed, start_fault};
use crate::Ctx;
use crate::broker::{Broker, Setup};
use crate::pattern::{Pattern, Verifier};
use crate::scenarios::common::check_none;
use crate::tunnels;

/// The file-size limit of the disk-full step.
const FILE_SIZE_LIMIT: u64 = 64 << 10;

/// 5: the statistics log cannot grow past a file-size limit of [`FILE_SIZE_LIMIT`]. Short
/// tunnels (one statistics line each) run until the limit is hit; the broker must live on, say
/// that it cannot write, and keep opening tunnels that carry data.
pub(super) async fn disk_full(ctx: &Ctx) {
    let r = &ctx.report;
    let what = format!("the statistics log hits a file-size limit of {} KiB", FILE_SIZE_LIMIT >> 10);
    let setup = Setup {
        mock: true,
        proxy_server: "logEngineEnabled=true".into(),
        file_size_limit: Some(FILE_SIZE_LIMIT),
        ..Setup::default()
    };
    let Some(mut broker) = start_fault(ctx, "faults/disk-full", what, setup).await else { return };
    let statistics = broker.dir.path().join("statistics.log");
    let size = || std::fs::metadata(&statistics).map(|m| m.len()).unwrap_or(0);
    let warning = |broker: &Broker| {
        broker.log_text().lines().find(|l| l.contains("statistics log")).map(str::to_string)
    };
    let seed = seed(5);

    // Batches of short tunnels until the log is at the limit (its writer lags a little).
    let (mut opened, mut errors) = (0u64, Vec::new());
    let start = Instant::now();
    while size() < FILE_SIZE_LIMIT && warning(&broker).is_none() && opened < 5_000 && broker.alive() {
        errors.extend(short_tunnels(ctx, &broker, seed, opened, 100).await);
        opened += 100;
    }
    r.figure(
        "short tunnels until the limit",
        format!("{opened} in {:.1} s, statistics.log {} bytes", start.elapsed().as_secs_f64(), size()),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut said = warning(&broker);
    while said.is_none() && Instant::now() < deadline && broker.alive() {
        // More tunnels: the writer only notices the limit with the next line.
        errors.extend(short_tunnels(ctx, &broker, seed, opened, 10).await);
        opened += 10;
        said = warning(&broker);
    }
    r.check(
        "the broker said it cannot write the statistics log",
        said.is_some(),
        said.as_deref().unwrap_or("nothing in its log").trim(),
    );
    let after = short_tunnels(ctx, &broker, seed, opened, 200).await;
    check_none(r, "200 tunnels opened and carried data after the limit was hit", &after, "failed");
    check_none(r, "every tunnel before the limit opened and carried data", &errors, "failed");
    r.figure("statistics.log size at the end", format!("{} bytes (limit {FILE_SIZE_LIMIT})", size()));
    let alive = broker.alive();
    r.check(
        "the broker is still running",
        alive,
        format!("pid {} after {} tunnels", broker.pid, opened + 200),
    );
}

/// `count` short tunnels (numbered from `first`), 16 at a time, each exchanging 512 checked
/// bytes both ways; their errors.
async fn short_tunnels(ctx: &Ctx, broker: &Broker, seed: u64, first: u64, count: u64) -> Vec<String> {
    futures_util::stream::iter(first..first + count)
        .map(|i| async move {
            let (a, b) = tunnels::open(&ctx.client, broker, i).await?;
            exchange(a, b, seed, i).await.map_err(|e| format!("tunnel {i}: {e}"))
        })
        .buffer_unordered(16)
        .filter_map(|result| async move { result.err() })
        .collect()
        .await
}

/// 512 checked bytes each way, then both ends close.
async fn exchange(a: Conn, b: Conn, seed: u64, i: u64) -> Result<(), String> {
    let (mut a, mut b) = (a.split(), b.split());
    for (from, to, direction) in [(&mut a.1, &mut b.0, 0), (&mut b.1, &mut a.0, 1)] {
        from.write(&Bytes::from(Pattern::new(seed, i, direction).next(512)))
            .await
            .map_err(|e| e.to_string())?;
        from.flush().await.map_err(|e| e.to_string())?;
        let mut verifier = Verifier::new(Pattern::new(seed, i, direction));
        match read_checked(to, &mut verifier, 512, Duration::from_secs(10)).await? {
            Read::Enough => {}
            other => return Err(format!("{} after {} bytes", other.describe(), verifier.verified)),
        }
    }
    Ok(())
}
