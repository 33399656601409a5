//! A registered TunnelProxy client: a raw pipe to its server over the server's connection.
//!
//! What the client sends goes to the server as SLIP frames with the client's socket address;
//! what the server sends for that address arrives through a queue the server's actor fills. The
//! client's own task runs both directions, so a slow client only ever waits on itself.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::SinkExt;
use tracing::debug;

use super::control::{Control, ControlSender, Joined, Kick, Upstream};
use super::registry::Guard;
use super::{Carrier, TunnelProxyContext};
use crate::protocol::reasons::{self, STOP_SERVER};
use crate::relay::CHUNK;
use crate::stats::{ConnHandle, ConnStats};
use crate::transport::websocket::CloseKind;

/// Sends a piece of what the client sent up to its server, and counts it for both.
async fn send_up(
    upstream: &Upstream,
    stats: &ConnHandle,
    server: &ConnStats,
    piece: &[u8],
) -> Result<(), ()> {
    upstream.send(piece).await?;
    let len = piece.len() as u64;
    stats.sent(len);
    server.tx.fetch_add(len, Ordering::Relaxed);
    Ok(())
}

/// How long a departing client may take to read what its server sent before it left.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How the pipe ended.
enum End {
    /// The client's connection ended.
    ClientGone,
    /// The actor ended it.
    Kicked(Kick),
    /// The broker's grace period is over.
    Shutdown,
}

/// Runs the client's pipe until either side ends it. `early` are bytes the client sent behind
/// its `RegisterClient` call: the first data for the server.
pub async fn run(
    ctx: Arc<TunnelProxyContext>,
    carrier: Carrier,
    joined: Joined,
    mut server: ControlSender,
    guard: Guard,
) {
    // `_ticket` lives to the end: the connection counts against the limits until it is gone.
    let Carrier { mut reader, mut writer, early, stats, ticket: _ticket } = carrier;
    let Joined { server_stats, address, id, mut data, queued, mut kick, upstream } = joined;
    let end = {
        let to_server = async {
            for piece in early.chunks(CHUNK) {
                if send_up(&upstream, &stats, &server_stats, piece).await.is_err() {
                    return;
                }
            }
            while let Ok(Some(bytes)) = reader.read().await {
                for piece in bytes.chunks(CHUNK) {
                    if send_up(&upstream, &stats, &server_stats, piece).await.is_err() {
                        return;
                    }
                }
            }
        };
        let from_server = async {
            let server_gone = Kick::AfterQueue(reasons::SERVER_GONE);
            let kicked = loop {
                let bytes = tokio::select! {
                    biased;
                    kicked = &mut kick => break kicked.unwrap_or(server_gone),
                    bytes = data.recv() => match bytes {
                        Some(bytes) => bytes,
                        // The actor dropped the queue; its reason is on its way (or it is gone).
                        None => break (&mut kick).await.unwrap_or(server_gone),
                    },
                };
                // A client that stops reading must still notice when it is disconnected.
                let write = writer.write_data(&bytes);
                let mut write = std::pin::pin!(write);
                tokio::select! {
                    result = &mut write => {
                        if result.is_err() {
                            return Kick::Now("write failed");
                        }
                    }
                    kicked = &mut kick => {
                        let kicked = kicked.unwrap_or(server_gone);
                        if let Kick::AfterQueue(_) = kicked
                            && write.await.is_ok()
                        {
                            break kicked;
                        }
                        return kicked;
                    }
                }
                queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                stats.received(bytes.len() as u64);
            };
            if let Kick::AfterQueue(_) = kicked {
                let _ = tokio::time::timeout(DRAIN_LIMIT, async {
                    while let Some(bytes) = data.recv().await {
                        if writer.write_data(&bytes).await.is_err() {
                            break;
                        }
                    }
                })
                .await;
            }
            kicked
        };
        // The broker's stop comes first: at the end of the grace period the server's actor also
        // kicks its clients, and they must see code 1000 `Stop server`, not a kick.
        tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => End::Shutdown,
            _ = to_server => End::ClientGone,
            kicked = from_server => End::Kicked(kicked),
        }
    };
    // The registration is freed before the server hears of the departure.
    drop(guard);
    let _ = server.send(Control::Leave { address, id }).await;
    match end {
        End::ClientGone => {
            // Answer the client's close (or FIN) so it sees a clean end, not a reset.
            debug!(address, "client disconnected");
            writer.close(CloseKind::Error, reasons::CLIENT_GONE).await;
        }
        End::Kicked(Kick::AfterQueue(reason) | Kick::Now(reason)) => {
            debug!(address, reason, "closing client");
            writer.close(CloseKind::Error, reason).await;
        }
        End::Shutdown => writer.close(CloseKind::Shutdown, STOP_SERVER).await,
    }
}
