//! Garbage: 64 KiB of random bytes on every listener (plain TCP to the TLS ports), on both unix
//! sockets and on the monitor socket. This shows that the broker closes each such connection
//! (and, with the checks after the abuse, that it still serves and has not panicked).

use std::time::{Duration, Instant};

use remoteproxy_bench::client::payload_chunk;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use super::attack::Attack;
use super::sources::{abuser, connect_from};
use super::support::{Target, bounded, joined, until_closed};
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::check_none;
use crate::tunnels::ms;

/// 64 KiB of random bytes on every listener (plain TCP to the TLS ports), on both unix sockets
/// and on the monitor socket: each connection must be closed.
pub(super) async fn garbage(ctx: &Ctx, broker: &Broker, attack: &Attack) {
    let r = &ctx.report;
    let data = payload_chunk(64 << 10);
    let targets = [
        ("v1 TCP", Target::Tcp(broker.tcp)),
        ("v1 WebSocket", Target::Tcp(broker.websocket)),
        ("v2 TCP", Target::Tcp(broker.tcp2)),
        ("v2 WebSocket", Target::Tcp(broker.websocket2)),
        ("v1 unix", Target::Unix(broker.unix.clone())),
        ("v2 unix", Target::Unix(broker.unix2.clone())),
        ("monitor", Target::Unix(broker.monitor.clone())),
    ];
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|(name, target)| {
            let data = data.clone();
            (
                name,
                attack.spawn(async move {
                    let start = Instant::now();
                    let closed = match target {
                        Target::Tcp(addr) => throw(connect_from(abuser(52), addr).await?, &data).await,
                        Target::Unix(path) => {
                            throw(bounded("connect", UnixStream::connect(&path)).await?, &data).await
                        }
                    };
                    if closed { Ok(start.elapsed()) } else { Err("still open after 10 s".to_string()) }
                }),
            )
        })
        .collect();
    let (mut wrong, mut longest) = (Vec::new(), Duration::ZERO);
    for (name, task) in tasks {
        match joined(task).await {
            Ok(t) => longest = longest.max(t),
            Err(e) => wrong.push(format!("{name}: {e}")),
        }
    }
    r.figure("garbage: closed after at most", ms(longest));
    check_none(
        r,
        "garbage: every listener, both unix sockets and the monitor closed the connection",
        &wrong,
        "not",
    );
}

/// Writes `data` while reading; whether the peer closed within 10 s.
async fn throw<S: AsyncRead + AsyncWrite + Unpin>(stream: S, data: &[u8]) -> bool {
    let limit = Duration::from_secs(10);
    let (mut read, mut write) = tokio::io::split(stream);
    let write = async {
        let _ = tokio::time::timeout(limit, write.write_all(data)).await;
    };
    let ((), closed) = tokio::join!(write, until_closed(&mut read, limit));
    closed.is_some()
}
