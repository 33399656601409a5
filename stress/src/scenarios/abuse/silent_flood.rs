//! The silent flood: thousands of connections that finish TLS (perhaps a Hello or a WebSocket
//! upgrade) and then say nothing, all held at once. This shows that none is refused below the
//! limits, that a fresh tunnel still opens and carries data while they are held, and that the
//! broker's timers close every one of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::attack::Attack;
use super::counters::{Counter, refused};
use super::json_client::{Json, hello_on, upgrade};
use super::sources::{abuser, connect_from};
use super::support::joined;
use super::{DEADLINE, MARGIN};
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::{check_none, wait_for};
use crate::tunnels::{self, ms};

/// Silent connections being opened at once.
const SILENT_OPENING: usize = 64;

/// `silent` connections from 20 addresses that never authenticate, a quarter each: TLS and a
/// Hello; TLS only; TLS on the v2 port; TLS and a WebSocket upgrade. Then nothing. Below the limits
/// none may be refused; while they are all held a fresh tunnel must open and carry data; and the
/// timers must close each of them (`inactiveTimeout`, at the latest `handshakeDeadline`).
pub(super) async fn silent_flood(ctx: &Ctx, broker: &Broker, attack: &Attack) {
    let (r, n) = (&ctx.report, ctx.size.silent);
    let per_ip = Counter::start(broker, refused("maxConnectionsPerIp")).await;
    let pending = Counter::start(broker, refused("maxPendingHandshakes")).await;
    let counts = Arc::new(FloodCounts::default());
    let opening = Arc::new(Semaphore::new(SILENT_OPENING));
    let (v1, v2, ws) = (broker.tcp, broker.tcp2, broker.websocket);
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (kit, counts, opening) = (attack.kit.clone(), counts.clone(), opening.clone());
            let source = abuser(10 + (i % 20) as u8);
            attack.spawn(async move {
                let permit = opening.acquire_owned().await;
                let opened = async {
                    let addr = match i % 4 {
                        2 => v2,
                        3 => ws,
                        _ => v1,
                    };
                    let tcp = connect_from(source, addr).await?;
                    let start = Instant::now();
                    let tls = kit.tls_over(tcp).await?;
                    let json = match i % 4 {
                        0 => {
                            let mut json = Json::stream(tls);
                            hello_on(&mut json).await?;
                            json
                        }
                        3 => Json::Ws(Box::new(upgrade(tls).await?)),
                        _ => Json::stream(tls),
                    };
                    Ok::<_, String>((start, json))
                }
                .await;
                drop(permit);
                let (start, mut json) = match opened {
                    Ok(opened) => opened,
                    Err(e) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                };
                counts.opened.fetch_add(1, Ordering::Relaxed);
                let now = counts.open.fetch_add(1, Ordering::Relaxed) + 1;
                counts.most.fetch_max(now, Ordering::Relaxed);
                let closed = json.closed(DEADLINE + MARGIN + Duration::from_secs(5)).await;
                counts.open.fetch_sub(1, Ordering::Relaxed);
                if closed {
                    Ok(start.elapsed())
                } else {
                    Err(format!("still open after {}", ms(start.elapsed())))
                }
            })
        })
        .collect();
    let all_out = wait_for(
        || counts.opened.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) >= n,
        Duration::from_secs(300),
    )
    .await;
    let open_time = start.elapsed();
    let (held_then, rss, fds) = (counts.open.load(Ordering::Relaxed), broker.rss_kib(), broker.fds());
    // A fresh tunnel from another source while the flood is held, carrying a round trip.
    let fresh_start = Instant::now();
    let fresh = match tunnels::open(&ctx.client, broker, 1).await {
        Ok((a, b)) => {
            let (mut a, mut b) = (a.split(), b.split());
            tunnels::round_trip(&mut a, &mut b, &mut Vec::new()).await.map(|_| fresh_start.elapsed())
        }
        Err(e) => Err(e),
    };
    let held_during = counts.open.load(Ordering::Relaxed);
    let (mut late, mut longest) = (Vec::new(), Duration::ZERO);
    for task in tasks {
        match joined(task).await {
            Ok(held) => {
                longest = longest.max(held);
                if held > DEADLINE + MARGIN {
                    late.push(format!("held {}", ms(held)));
                }
            }
            Err(e) => late.push(e),
        }
    }
    let opened = counts.opened.load(Ordering::Relaxed);
    let (per_ip, pending) = (per_ip.added(broker).await, pending.added(broker).await);
    r.figure(
        "silent: admitted / refused or failed",
        format!("{opened} / {} in {:.1} s (refused by maxConnectionsPerIp {per_ip}, by maxPendingHandshakes {pending})", n - opened, open_time.as_secs_f64()),
    );
    r.figure(
        "silent: held at once (most / when all were out)",
        format!("{} / {held_then}", counts.most.load(Ordering::Relaxed)),
    );
    r.figure(
        "silent: broker RSS and descriptors with the flood held",
        format!("{rss} KiB, {fds} descriptors"),
    );
    r.figure("silent: longest held", ms(longest));
    r.check(
        "silent: every connection admitted below the limits, none refused",
        all_out && opened == n && per_ip == 0.0 && pending == 0.0,
        format!("{opened} of {n} admitted; {per_ip} + {pending} refused"),
    );
    r.check(
        "silent: the flood was held at once (at least 90% open when the last was out)",
        held_then * 10 >= n * 9,
        format!("{held_then} of {n} open"),
    );
    match fresh {
        Ok(t) => r.check(
            "silent: a fresh tunnel from another source opened and carried data while the flood was held",
            true,
            format!("in {} with {held_during} silent connections open", ms(t)),
        ),
        Err(e) => r.error(
            "silent: a fresh tunnel from another source opened and carried data while the flood was held",
            e,
        ),
    }
    check_none(
        r,
        &format!("silent: all closed by the timers (at the latest handshakeDeadline + {})", ms(MARGIN)),
        &late,
        "not",
    );
}

/// The silent flood's progress, shared by its connections.
#[derive(Default)]
struct FloodCounts {
    opened: AtomicU64,
    failed: AtomicU64,
    open: AtomicU64,
    most: AtomicU64,
}
