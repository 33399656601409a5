//! PROXY protocol headers: from an untrusted address on every TCP listener, from the trusted
//! balancer naming a client, and from the balancer without a header. This shows that the broker
//! closes and counts the untrusted ones (`proxyProtocolTrusted`), serves the balancer's clients
//! under the addresses their header names, and closes and counts a trusted sender that sends no
//! header (`proxyProtocolHeader`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::attack::Attack;
use super::counters::{Counter, refused};
use super::json_client::{Json, hello_on, upgrade};
use super::sources::{abuser, connect_from};
use super::support::{bounded, joined, until_closed};
use super::{BALANCER, MARGIN, TLS_TIMEOUT};
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::first;
use crate::tunnels::ms;

/// PROXY protocol headers from an untrusted address on every TCP listener, followed by a
/// ClientHello: each closed and counted as `proxyProtocolTrusted`. The trusted balancer's header
/// naming 203.0.113.9 (TLS-TCP) and 203.0.113.10 (WebSocket) then TLS and a Hello: served, and
/// the monitor shows the named client. The balancer without a header: closed, counted as
/// `proxyProtocolHeader`.
pub(super) async fn proxy_headers(ctx: &Ctx, broker: &Broker, attack: &Attack) {
    let r = &ctx.report;
    let per_listener = 5;
    let untrusted = abuser(41);
    let trusted = Counter::start(broker, refused("proxyProtocolTrusted")).await;
    let header = Counter::start(broker, refused("proxyProtocolHeader")).await;
    let ports = [broker.tcp, broker.websocket, broker.tcp2, broker.websocket2];
    let mut tasks = Vec::new();
    for addr in ports {
        for _ in 0..per_listener {
            let mut bytes = b"PROXY TCP4 10.1.2.3 10.0.0.1 1234 443\r\n".to_vec();
            bytes.extend_from_slice(&attack.kit.client_hello());
            tasks.push(attack.spawn(async move {
                let mut tcp = connect_from(untrusted, addr).await?;
                let start = Instant::now();
                // The broker may close before it has read everything: a failed write is a close.
                let _ = tcp.write_all(&bytes).await;
                match until_closed(&mut tcp, TLS_TIMEOUT + MARGIN).await {
                    Some(_) => Ok(start.elapsed()),
                    None => Err("still open".to_string()),
                }
            }));
        }
    }
    let sent = tasks.len();
    let (mut wrong, mut longest) = (Vec::new(), Duration::ZERO);
    for task in tasks {
        match joined(task).await {
            Ok(t) => longest = longest.max(t),
            Err(e) => wrong.push(e),
        }
    }

    // The balancer: a header naming the client, then TLS and a Hello, on TLS-TCP and WebSocket.
    let kit = attack.kit.clone();
    let (tcp_port, ws_port) = (broker.tcp, broker.websocket);
    let served = attack.spawn(async move {
        let header =
            |client: &str, port: u16| format!("PROXY TCP4 {client} 10.0.0.1 {port} 443\r\n").into_bytes();
        let mut tcp = connect_from(IpAddr::V4(BALANCER), tcp_port).await?;
        bounded("header", tcp.write_all(&header("203.0.113.9", 40000))).await?;
        let mut a = Json::stream(kit.tls_over(tcp).await?);
        hello_on(&mut a).await?;
        let mut tcp = connect_from(IpAddr::V4(BALANCER), ws_port).await?;
        bounded("header", tcp.write_all(&header("203.0.113.10", 40001))).await?;
        let mut b = Json::Ws(Box::new(upgrade(kit.tls_over(tcp).await?).await?));
        hello_on(&mut b).await?;
        Ok::<_, String>((a, b))
    });
    let served = joined(served).await;
    // While both are open, the monitor lists them under the addresses their header named.
    let seen = match &served {
        Ok(_) => match broker.snapshot().await {
            Ok(s) => {
                let addresses: Vec<&str> =
                    s.proxy_statistic.clients.iter().map(|c| c.address.as_str()).collect();
                let named = ["203.0.113.9", "203.0.113.10"]
                    .iter()
                    .all(|a| addresses.iter().any(|seen| seen.contains(a)));
                if named { Ok(()) } else { Err(format!("the monitor lists {addresses:?}")) }
            }
            Err(e) => Err(format!("no snapshot: {e}")),
        },
        Err(e) => Err(e.clone()),
    };
    drop(served);

    // The balancer without a header: a ClientHello straight away.
    let hello = attack.kit.client_hello();
    let bare = attack
        .run(async move {
            let mut tcp = connect_from(IpAddr::V4(BALANCER), tcp_port).await?;
            let _ = tcp.write_all(&hello).await;
            until_closed(&mut tcp, TLS_TIMEOUT + MARGIN)
                .await
                .map(|_| ())
                .ok_or_else(|| "still open".to_string())
        })
        .await;
    let trusted_counted = trusted.added(broker).await;
    let header_counted = header.added(broker).await;
    r.figure("PROXY protocol: untrusted headers closed after at most", ms(longest));
    r.check(
        &format!("PROXY protocol: all {sent} headers from an untrusted address closed and counted (proxyProtocolTrusted)"),
        wrong.is_empty() && trusted_counted as usize == sent,
        format!("{} not closed{}, {trusted_counted} counted", wrong.len(), first(&wrong)),
    );
    match seen {
        Ok(()) => r.check(
            "PROXY protocol: the balancer's clients served and seen as 203.0.113.9 and .10",
            true,
            "TLS-TCP and WebSocket, Hello answered, the monitor shows them",
        ),
        Err(e) => r.error("PROXY protocol: the balancer's clients served and seen as 203.0.113.9 and .10", e),
    }
    r.check(
        "PROXY protocol: the balancer without a header closed and counted (proxyProtocolHeader)",
        bare.is_ok() && header_counted == 1.0,
        format!("{}, {header_counted} counted", bare.err().unwrap_or_else(|| "closed".into())),
    );
}
