//! Stalled TLS handshakes: connections to the four TLS ports that send a complete ClientHello and
//! then nothing. This shows that the broker drops each of them after `tlsHandshakeTimeout`, not
//! before and not much later, and counts them as failed handshakes.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::attack::Attack;
use super::counters::Counter;
use super::sources::{abuser, connect_from};
use super::support::{Held, bounded, closed_within, joined};
use super::{EARLY, MARGIN, TLS_TIMEOUT};
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::check_none;
use crate::tunnels::ms;

/// `stalled_tls` connections over the four TLS ports that send a complete ClientHello and
/// nothing more: the broker answers with its first flight and must drop each after
/// `tlsHandshakeTimeout`.
pub(super) async fn stalled_tls(ctx: &Ctx, broker: &Broker, attack: &Attack) {
    let (r, n) = (&ctx.report, ctx.size.stalled_tls);
    let source = abuser(51);
    let ports = [broker.tcp, broker.websocket, broker.tcp2, broker.websocket2];
    let failures = Counter::start(broker, "remoteproxy_tls_handshake_failures_total").await;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (addr, hello) = (ports[i as usize % ports.len()], attack.kit.client_hello());
            attack.spawn(async move {
                let before = Instant::now();
                let mut tcp = connect_from(source, addr).await?;
                bounded("ClientHello", tcp.write_all(&hello)).await?;
                let after = Instant::now();
                closed_within(&mut tcp, TLS_TIMEOUT + MARGIN + Duration::from_secs(5), after)
                    .await
                    .map(|()| Held::since(before, after))
            })
        })
        .collect();
    let (mut wrong, mut longest) = (Vec::new(), Duration::ZERO);
    for task in tasks {
        match joined(task).await {
            Ok(held) => {
                longest = longest.max(held.least);
                if held.least > TLS_TIMEOUT + MARGIN || held.most + EARLY < TLS_TIMEOUT {
                    wrong.push(format!("held {} to {}", ms(held.least), ms(held.most)));
                }
            }
            Err(e) => wrong.push(e),
        }
    }
    let failures = failures.added(broker).await;
    r.figure("stalled TLS: longest held", ms(longest));
    r.figure("stalled TLS: TLS handshake failures counted meanwhile", failures);
    check_none(
        r,
        &format!(
            "stalled TLS: all {n} dropped by tlsHandshakeTimeout ({} to {})",
            ms(TLS_TIMEOUT),
            ms(TLS_TIMEOUT + MARGIN)
        ),
        &wrong,
        "not",
    );
}
