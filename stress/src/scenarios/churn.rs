//! churn: tens of thousands of tunnel setups and teardowns, each carrying a checked exchange,
//! half of them ended by one side and half by the other. Afterwards nothing may be left: no
//! client or tunnel in the broker's tables (the monitor), no descriptor above the start
//! (`/proc/<pid>/fd`: a connection's task holds its socket until it ends), no socket in
//! CLOSE_WAIT.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use remoteproxy_bench::client::{Conn, Reader};

use crate::Ctx;
use crate::broker::Setup;
use crate::pattern::{Pattern, Verifier};
use crate::scenarios::common::{check_none, check_settled, start_broker};
use crate::tunnels;

/// Bytes each way per tunnel.
const EXCHANGE: usize = 1024;

pub async fn run(ctx: &Ctx) {
    let (r, n) = (&ctx.report, ctx.size.churn);
    r.scenario(
        "churn",
        format!(
            "{n} tunnel setups and teardowns, {} at a time, TCP and WebSocket mixed",
            ctx.size.churn_concurrency
        ),
    );
    let Some(broker) = start_broker(ctx, Setup { mock: true, ..Setup::default() }).await else { return };
    let (fds, threads, rss) = (broker.fds(), broker.threads(), broker.rss_kib());
    let seed = u64::from(std::process::id()) << 20;
    let start = Instant::now();
    let errors: Vec<String> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, broker) = (&ctx.client, &broker);
            async move {
                let (a, b) = tunnels::open(client, broker, i).await?;
                one_tunnel(a, b, seed, i).await.map_err(|e| format!("tunnel {i}: {e}"))
            }
        })
        .buffer_unordered(ctx.size.churn_concurrency as usize)
        .filter_map(|result: Result<(), String>| async move { result.err() })
        .collect()
        .await;
    let elapsed = start.elapsed();
    r.figure(
        "setups and teardowns",
        format!("{n} in {:.1} s ({:.0}/s)", elapsed.as_secs_f64(), n as f64 / elapsed.as_secs_f64()),
    );
    check_none(r, "every tunnel opened, exchanged and closed, 0 errors", &errors, "failed");
    check_settled(r, &broker, fds, "no client, tunnel or descriptor left (monitor, /proc/<pid>/fd)", |t| {
        format!("{fds} descriptors as at the start, after {:.1} s", t.as_secs_f64())
    })
    .await;
    let close_wait = broker.close_wait();
    r.check("no socket of the broker in CLOSE_WAIT", close_wait == 0, format!("{close_wait}"));
    let snapshot = broker.snapshot().await;
    let (clients, tunnels) = snapshot
        .as_ref()
        .map(|s| (s.proxy_statistic.clients.len(), s.proxy_statistic.tunnels.len()))
        .unwrap_or((usize::MAX, usize::MAX));
    r.check(
        "the monitor lists no client and no tunnel",
        clients + tunnels == 0,
        format!("{clients} clients, {tunnels} tunnels"),
    );
    let total = snapshot.map(|s| s.proxy_statistic.total.total_tunnel_count).unwrap_or(0);
    r.check(
        "the totals counted every tunnel",
        total >= n - errors.len() as u64,
        format!("{total} tunnels counted"),
    );
    r.figure("broker threads at start → after", format!("{threads} → {}", broker.threads()));
    r.figure("broker RSS at start → after", format!("{rss} KiB → {} KiB", broker.rss_kib()));
}

/// Exchanges a checked kilobyte each way, then one side closes and the other must see the end.
async fn one_tunnel(a: Conn, b: Conn, seed: u64, i: u64) -> Result<(), String> {
    let (mut a, mut b) = (a.split(), b.split());
    let forward = Bytes::from(Pattern::new(seed, i, 0).next(EXCHANGE));
    let backward = Bytes::from(Pattern::new(seed, i, 1).next(EXCHANGE));
    a.1.write(&forward).await.map_err(|e| e.to_string())?;
    a.1.flush().await.map_err(|e| e.to_string())?;
    b.1.write(&backward).await.map_err(|e| e.to_string())?;
    b.1.flush().await.map_err(|e| e.to_string())?;
    expect(&mut b.0, Pattern::new(seed, i, 0)).await?;
    expect(&mut a.0, Pattern::new(seed, i, 1)).await?;
    // Half the tunnels end from one side, half from the other; the survivor must see the end.
    let (closer, survivor) = if i.is_multiple_of(2) { (a, b) } else { (b, a) };
    drop(closer);
    let (mut reader, _writer) = survivor;
    let mut scratch = vec![0u8; 4096];
    let mut rest = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), reader.read_into(&mut rest, &mut scratch)).await {
        Err(_) => Err("the partner's close did not arrive within 10 s".into()),
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => Err(format!("{n} unexpected bytes after the exchange")),
    }
}

async fn expect(reader: &mut Reader, pattern: Pattern) -> Result<(), String> {
    let mut verifier = Verifier::new(pattern);
    let mut scratch = vec![0u8; EXCHANGE];
    while verifier.verified < EXCHANGE as u64 {
        let mut got = Vec::new();
        let want = EXCHANGE - verifier.verified as usize;
        match tokio::time::timeout(Duration::from_secs(10), reader.read_into(&mut got, &mut scratch[..want]))
            .await
        {
            Err(_) => return Err(format!("timed out after {} bytes", verifier.verified)),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Err(format!("ended after {} bytes", verifier.verified)),
            Ok(Ok(_)) => verifier.check(&got).map_err(|at| format!("byte {at} differs"))?,
        }
    }
    Ok(())
}
