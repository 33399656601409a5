//! The per-source burst: `maxConnectionsPerIp` + 50 connections at once from one address. This
//! shows that exactly the excess is refused at once and counted, that the admitted ones are
//! dropped by `tlsHandshakeTimeout`, and that another address is served while this one is at its
//! limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::attack::Attack;
use super::counters::{Counter, refused};
use super::json_client::hello_on;
use super::sources::{abuser, connect_from};
use super::support::{bounded, closed_within, joined};
use super::{MARGIN, TLS_TIMEOUT};
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::{check_none, wait_for};
use crate::tunnels::ms;

/// Connections over `maxConnectionsPerIp` in the burst from one source.
const OVER_LIMIT: u64 = 50;

/// `maxConnectionsPerIp` + 50 connections at once from one source, each sending the start of a
/// ClientHello (the PROXY protocol check admits a client by its first bytes): the 50 over the
/// limit are refused at once and counted, the rest held until `tlsHandshakeTimeout`, and another
/// source gets a Hello answered while this one is at its limit.
pub(super) async fn per_source_burst(ctx: &Ctx, broker: &Broker, attack: &Attack, per_ip: u64) {
    let r = &ctx.report;
    let (source, attempts) = (abuser(30), per_ip + OVER_LIMIT);
    let refusals = Counter::start(broker, refused("maxConnectionsPerIp")).await;
    let hello = attack.kit.client_hello();
    let start = hello.get(..64).map(<[u8]>::to_vec).unwrap_or_default();
    let sent = Arc::new(AtomicU64::new(0));
    let burst = Instant::now();
    let addr = broker.tcp;
    let tasks: Vec<_> = (0..attempts)
        .map(|_| {
            let (start, sent) = (start.clone(), sent.clone());
            attack.spawn(async move {
                let out = async {
                    let mut tcp = connect_from(source, addr).await?;
                    bounded("first bytes", tcp.write_all(&start)).await?;
                    Ok::<_, String>(tcp)
                }
                .await;
                sent.fetch_add(1, Ordering::Relaxed);
                let (mut tcp, at) = (out?, Instant::now());
                closed_within(&mut tcp, TLS_TIMEOUT + MARGIN + Duration::from_secs(5), at)
                    .await
                    .map(|()| (at, at.elapsed()))
            })
        })
        .collect();
    // The source is at its limit once every attempt is out: another one must be served now.
    let all_out = wait_for(|| sent.load(Ordering::Relaxed) >= attempts, TLS_TIMEOUT).await;
    let burst_time = burst.elapsed();
    let kit = attack.kit.clone();
    let other = attack
        .run(async move {
            let mut json = kit.json(abuser(31), addr, false).await?;
            hello_on(&mut json).await
        })
        .await;
    let (mut refused, mut wrong, mut last_out) = (0u64, Vec::new(), burst);
    for task in tasks {
        match joined(task).await {
            Ok((at, held)) => {
                last_out = last_out.max(at);
                if held < TLS_TIMEOUT / 2 {
                    refused += 1;
                } else if held > TLS_TIMEOUT + MARGIN {
                    wrong.push(format!("held {}", ms(held)));
                }
            }
            Err(e) => wrong.push(e),
        }
    }
    let counted = refusals.added(broker).await as u64;
    let spread = last_out.saturating_duration_since(burst);
    r.figure(
        "per-source burst: attempts from one address",
        format!("{attempts} (maxConnectionsPerIp={per_ip}) out in {}", ms(spread)),
    );
    r.figure("per-source burst: refused at once / counted", format!("{refused} / {counted}"));
    // An admitted connection holds its place for tlsHandshakeTimeout: while the whole burst is
    // out within that, exactly the excess is refused.
    let exact = all_out && spread + Duration::from_millis(500) < TLS_TIMEOUT;
    let held = if exact {
        refused == OVER_LIMIT && counted == OVER_LIMIT
    } else {
        refused >= 1 && refused == counted
    };
    r.check(
        &format!(
            "maxConnectionsPerIp: the {OVER_LIMIT} connections over the limit refused at once and counted"
        ),
        held,
        format!(
            "{refused} refused, {counted} counted{}",
            if exact { "" } else { "; the burst was slower than tlsHandshakeTimeout" }
        ),
    );
    check_none(r, "maxConnectionsPerIp: the admitted ones dropped by tlsHandshakeTimeout", &wrong, "not");
    match other {
        Ok(t) => r.check(
            "maxConnectionsPerIp: another source served while one is at its limit",
            true,
            format!("Hello in {} after {}", ms(t), ms(burst_time)),
        ),
        Err(e) => r.error("maxConnectionsPerIp: another source served while one is at its limit", e),
    }
}
