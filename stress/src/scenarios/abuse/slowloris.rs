//! Slowloris: on every listener, connections that drip a ClientHello, a JSON request or a
//! WebSocket upgrade one byte a second. This shows that each is closed by its own timer and not
//! before it: `tlsHandshakeTimeout` for the ClientHello, `inactiveTimeout` for the upgrade, and
//! `handshakeDeadline` for JSON, which a drip restarts `inactiveTimeout` for but cannot extend.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use super::attack::Attack;
use super::sources::{abuser, connect_from};
use super::support::{Held, Target, bounded, joined};
use super::tls::Kit;
use super::{DEADLINE, EARLY, INACTIVE, MARGIN, TLS_TIMEOUT};
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::check_none;
use crate::tunnels::ms;

/// What a slowloris drips after TLS on a v1 or v2 JSON port and on the unix sockets: requests of
/// 49 bytes and more, which a byte a second never completes within the timers.
const V1_REQUEST: &[u8] = br#"{"id":1,"method":"RemoteProxy.Hello","params":{}}"#;
const V2_REQUEST: &[u8] =
    br#"{"id":1,"method":"TunnelProxy.RegisterServer","params":{"serverName":"slow","serverUuid":"7f1c2d3e-0000-4000-8000-000000000001"}}"#;
const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Slowloris on every listener, `slowloris` connections each. On the four TLS ports half drip a
/// ClientHello (closed by `tlsHandshakeTimeout`) and half finish TLS and drip a JSON request
/// (TCP ports: closed by `handshakeDeadline`) or a WebSocket upgrade (closed by the upgrade's
/// bound, `inactiveTimeout`); on both unix sockets they drip JSON (`handshakeDeadline`).
pub(super) async fn slowloris(ctx: &Ctx, broker: &Broker, attack: &Attack) {
    let (r, n) = (&ctx.report, ctx.size.slowloris);
    let source = abuser(50);
    let hello = attack.kit.client_hello();
    if hello.is_empty() {
        return r.error("slowloris: a ClientHello to drip", "rustls made none");
    }
    let ports = [
        (broker.tcp, Slow::JsonOverTls, V1_REQUEST),
        (broker.websocket, Slow::UpgradeOverTls, UPGRADE),
        (broker.tcp2, Slow::JsonOverTls, V2_REQUEST),
        (broker.websocket2, Slow::UpgradeOverTls, UPGRADE),
    ];
    let mut tasks = Vec::new();
    for (addr, after_tls, payload) in ports {
        for i in 0..n {
            let (kind, payload) =
                if i % 2 == 0 { (Slow::ClientHello, hello.clone()) } else { (after_tls, payload.to_vec()) };
            let target = Target::Tcp(addr);
            tasks.push((
                kind,
                attack.spawn(slow_connection(attack.kit.clone(), source, target, kind, payload)),
            ));
        }
    }
    for (path, payload) in [(&broker.unix, V1_REQUEST), (&broker.unix2, V2_REQUEST)] {
        for _ in 0..n {
            let target = Target::Unix(path.clone());
            let kind = Slow::JsonOverUnix;
            tasks.push((
                kind,
                attack.spawn(slow_connection(attack.kit.clone(), source, target, kind, payload.to_vec())),
            ));
        }
    }
    let (mut late, mut early, mut longest) = (Vec::new(), Vec::new(), Duration::ZERO);
    let mut by_kind: Vec<(Slow, Vec<Duration>)> = Vec::new();
    let total = tasks.len();
    for (kind, task) in tasks {
        match joined(task).await {
            Ok(held) => {
                longest = longest.max(held.least);
                if held.least > kind.timer() + MARGIN {
                    late.push(format!("{} held {}", kind.label(), ms(held.least)));
                }
                if held.most + EARLY < kind.timer() {
                    early.push(format!("{} closed after {}", kind.label(), ms(held.most)));
                }
                match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, held_list)) => held_list.push(held.least),
                    None => by_kind.push((kind, vec![held.least])),
                }
            }
            Err(e) => late.push(format!("{}: {e}", kind.label())),
        }
    }
    for (kind, held) in by_kind {
        // The latest close as seen from the end of the step that started the timer.
        let last = held.iter().max().copied().unwrap_or_default();
        r.figure(
            &format!("slowloris: {}", kind.label()),
            format!(
                "{} closed by {} ({}), the last {} after it",
                held.len(),
                kind.timer_name(),
                ms(kind.timer()),
                ms(last.saturating_sub(kind.timer()))
            ),
        );
    }
    r.figure("slowloris: longest held", ms(longest));
    check_none(
        r,
        &format!("slowloris: all {total} closed by the broker within their timer + {}", ms(MARGIN)),
        &late,
        "not",
    );
    check_none(
        r,
        "slowloris: none closed before its timer (a drip restarts inactiveTimeout but never handshakeDeadline)",
        &early,
        "early",
    );
}

/// What a slowloris drips, and so which timer must close it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slow {
    ClientHello,
    JsonOverTls,
    UpgradeOverTls,
    JsonOverUnix,
}

impl Slow {
    /// What the figures call it.
    fn label(self) -> &'static str {
        match self {
            Slow::ClientHello => "ClientHello dripped on the TLS ports",
            Slow::JsonOverTls => "JSON dripped after TLS (v1, v2 TCP)",
            Slow::UpgradeOverTls => "upgrade dripped after TLS (v1, v2 WebSocket)",
            Slow::JsonOverUnix => "JSON dripped on the unix sockets",
        }
    }

    /// The timer that must close it.
    fn timer(self) -> Duration {
        match self {
            Slow::ClientHello => TLS_TIMEOUT,
            Slow::JsonOverTls | Slow::JsonOverUnix => DEADLINE,
            Slow::UpgradeOverTls => INACTIVE,
        }
    }

    /// That timer's configuration key.
    fn timer_name(self) -> &'static str {
        match self {
            Slow::ClientHello => "tlsHandshakeTimeout",
            Slow::JsonOverTls | Slow::JsonOverUnix => "handshakeDeadline",
            Slow::UpgradeOverTls => "inactiveTimeout",
        }
    }
}

/// One slowloris connection, and how long the broker held it.
async fn slow_connection(
    kit: Kit,
    source: IpAddr,
    target: Target,
    kind: Slow,
    payload: Vec<u8>,
) -> Result<Held, String> {
    let timer = kind.timer();
    let before = Instant::now();
    match (kind, target) {
        (Slow::ClientHello, Target::Tcp(addr)) => {
            let tcp = connect_from(source, addr).await?;
            drip(tcp, &payload, before, Instant::now(), timer).await
        }
        (Slow::JsonOverTls, Target::Tcp(addr)) => {
            let tcp = connect_from(source, addr).await?;
            let after = Instant::now();
            let tls = kit.tls_over(tcp).await?;
            drip(tls, &payload, before, after, timer).await
        }
        (Slow::UpgradeOverTls, Target::Tcp(addr)) => {
            let tls = kit.tls(source, addr).await?;
            drip(tls, &payload, before, Instant::now(), timer).await
        }
        (_, Target::Unix(path)) => {
            let unix = bounded("connect", UnixStream::connect(&path)).await?;
            drip(unix, &payload, before, Instant::now(), timer).await
        }
        (_, Target::Tcp(_)) => Err("no such slowloris".into()),
    }
}

/// Writes `payload` a byte a second (the first at once) while reading whatever comes, until the
/// broker closes the connection; how long it was held (see [`Held`]). Gives up well past `timer`.
async fn drip<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    payload: &[u8],
    before: Instant,
    after: Instant,
    timer: Duration,
) -> Result<Held, String> {
    let (mut read, mut write) = tokio::io::split(stream);
    let give_up = tokio::time::Instant::from_std(after + timer + MARGIN + Duration::from_secs(5));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut next, mut scratch) = (0, vec![0u8; 4096]);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(give_up) => return Err(format!("still open after {}", ms(after.elapsed()))),
            read = read.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return Ok(Held::since(before, after)),
                Ok(_) => {}
            },
            _ = tick.tick() => if next < payload.len() {
                next += 1;
                if write.write_all(&payload[next - 1..next]).await.is_err() || write.flush().await.is_err() {
                    return Ok(Held::since(before, after));
                }
            },
        }
    }
}
