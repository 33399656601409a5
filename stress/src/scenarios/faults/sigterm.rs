//! Fault 6, SIGTERM under load: the broker is told to stop while tunnels move checked data
//! slowly. This shows the graceful shutdown: every tunnel finishes within `shutdownGracePeriod`
//! with every byte, a new connection is refused once the broker stops, and it exits 0.

use std::time::{Duration, Instant};

use super::{open_many, seed, start_fault};
use crate::Ctx;
use crate::broker::{Broker, Setup};
use crate::scenarios::common::{check_none, spawn_transfers, wait_for};
use crate::tunnels::{Pace, ms};

/// `shutdownGracePeriod` of the SIGTERM step.
const GRACE: Duration = Duration::from_millis(5000);

/// 6: SIGTERM while tunnels move checked data slowly. Within `shutdownGracePeriod` every tunnel
/// must finish with every byte, a new connection must be refused, and the broker must exit 0.
pub(super) async fn sigterm(ctx: &Ctx) {
    let (r, n) = (&ctx.report, ctx.size.bystanders);
    let what = format!("SIGTERM mid-transfer, {n} tunnels, shutdownGracePeriod={}", GRACE.as_millis());
    let setup = Setup {
        mock: true,
        proxy_server: format!("shutdownGracePeriod={}", GRACE.as_millis()),
        ..Setup::default()
    };
    let Some(mut broker) = start_fault(ctx, "faults/sigterm", what, setup).await else { return };
    let seed = seed(6);
    let (pairs, open_errors) = open_many(ctx, &broker, 0, n).await;
    check_none(r, "every tunnel opened", &open_errors, "failed");
    let count = pairs.len() as u64;
    let start = Instant::now();
    let pace =
        Pace { chunk: 1024, interval: Duration::from_millis(50), until: start + Duration::from_secs(2) };
    let transfers: Vec<_> = spawn_transfers(pairs, seed, pace)
        .into_iter()
        .map(|t| tokio::spawn(async move { (t.await, Instant::now()) }))
        .collect();

    // The signal falls in the middle of the transfers (a schedule, not a wait for an outcome).
    tokio::time::sleep_until(tokio::time::Instant::from_std(start + Duration::from_secs(1))).await;
    if let Err(e) = broker.signal("TERM") {
        return r.error("SIGTERM sent", e);
    }
    let signalled = Instant::now();
    r.figure("SIGTERM sent", format!("{:.2} s into the transfers", (signalled - start).as_secs_f64()));

    match refused_after_stop(ctx, &broker).await {
        Ok((after, how)) => r.check(
            "a new connection after the SIGTERM is refused",
            true,
            format!("{how}, {} after the signal", ms(after)),
        ),
        Err(e) => r.check("a new connection after the SIGTERM is refused", false, e),
    }

    let (mut bytes, mut errors, mut last) = (0u64, Vec::new(), signalled);
    for transfer in transfers {
        match transfer.await {
            Ok((Ok(Ok(b)), at)) => {
                bytes += b;
                last = last.max(at);
            }
            Ok((Ok(Err(e)), _)) => errors.push(e),
            Ok((Err(e), _)) => errors.push(e.to_string()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    // Each direction writes a chunk per interval for 2 s; every byte written was verified by
    // `transfer`, and at least 90% of the plan shows the writers were not cut short.
    let planned = count * 2 * (2000 / 50) * 1024;
    r.figure("bytes verified (both ways)", format!("{bytes} of {planned} planned"));
    r.figure("SIGTERM → last tunnel done", format!("{:.2} s", (last - signalled).as_secs_f64()));
    check_none(
        r,
        "every tunnel finished in the grace period with every byte, 0 errors",
        &errors,
        "tunnels failed",
    );
    r.check(
        "the pace was kept through the signal (at least 90% of the planned bytes)",
        bytes * 10 >= planned * 9,
        format!("{bytes} of {planned}"),
    );
    let limit = GRACE + Duration::from_secs(6);
    let exit = broker.exit(limit.saturating_sub(signalled.elapsed())).await;
    let took = signalled.elapsed();
    r.figure("SIGTERM → broker exit", format!("{:.2} s", took.as_secs_f64()));
    match exit {
        Ok(status) => r.check(
            "the broker exited 0 within the grace period + 6 s",
            status.success() && took <= limit,
            format!("{status} after {:.2} s", took.as_secs_f64()),
        ),
        Err(e) => r.error("the broker exited 0 within the grace period + 6 s", e),
    }
}

/// Waits (up to 5 s) for the broker to log that it stops, then connects until a connection is
/// refused or closed without a Hello answer (up to 1 s more): when, since the signal, and how.
async fn refused_after_stop(ctx: &Ctx, broker: &Broker) -> Result<(Duration, String), String> {
    let signalled = Instant::now();
    if !wait_for(|| broker.log_text().contains("stopping"), Duration::from_secs(5)).await {
        return Err("the broker did not log that it stops within 5 s".into());
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ctx.client.hello(&broker.v1_tcp())).await {
            Ok(Err(failure)) => return Ok((signalled.elapsed(), failure.to_string())),
            Err(_) => return Ok((signalled.elapsed(), "no Hello answer within 3 s".into())),
            Ok(Ok(server)) if Instant::now() > deadline => {
                return Err(format!("{server} still answers Hello after the SIGTERM"));
            }
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
