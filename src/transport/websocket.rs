//! WebSocket specifics: the codec configuration, the upgrade, and closing with a code and reason.
//!
//! Any URL path is accepted (PROTOCOL §1). Pings are answered by tungstenite itself whenever the
//! connection is read or written.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::BoxStream;
use super::budget::ReadBudget;

/// The WebSocket stream type of every WebSocket connection.
pub type WsStream = WebSocketStream<ReadBudget<BoxStream>>;

/// Largest message (and frame) accepted once a tunnel runs: big enough for the large JSON replies
/// nymea devices send as one message, small enough to bound a tunnel's memory.
pub const MAX_TUNNEL_MESSAGE: usize = 16 << 20;

/// tungstenite reads the socket in chunks of this size.
const READ_BUFFER: usize = 32 << 10;

/// Outgoing frames are collected up to this size before they are written, so small messages
/// share syscalls; the relay flushes whenever its source has nothing more to give.
const WRITE_BUFFER: usize = 64 << 10;

/// How long a closing handshake may take before the socket is simply dropped.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + MAX_TUNNEL_MESSAGE + 1024)
        .max_message_size(Some(MAX_TUNNEL_MESSAGE))
        .max_frame_size(Some(MAX_TUNNEL_MESSAGE))
}

/// Performs the server side of the upgrade. `pre_tunnel_budget` bounds what a client may make
/// the broker buffer before it is a tunnel (see [`super::budget`]).
pub async fn accept(
    stream: BoxStream,
    pre_tunnel_budget: usize,
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    let budgeted = ReadBudget::new(stream, pre_tunnel_budget);
    tokio_tungstenite::accept_async_with_config(budgeted, Some(config())).await
}

/// How the broker ends a WebSocket connection (PROTOCOL §3 and §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// Errors, refusals, timeouts, a partner gone: code 1011.
    Error,
    /// The broker's own shutdown: code 1000.
    Shutdown,
}

/// Sends a close frame with `reason`, waits (bounded) for the peer's close, then drops.
pub async fn close(ws: &mut WsStream, kind: CloseKind, reason: &str) {
    let code = match kind {
        CloseKind::Error => CloseCode::Error,
        CloseKind::Shutdown => CloseCode::Normal,
    };
    let frame = CloseFrame { code, reason: reason.into() };
    // Boxed: a closing handshake is short and its future is not; inline it would enlarge every
    // future that may close a WebSocket, for that future's whole life.
    let _ = Box::pin(tokio::time::timeout(CLOSE_LINGER, async {
        // When the peer closed first, sending our own close fails; reading on still flushes the
        // reply tungstenite queued for it, which completes the peer's closing handshake.
        let _ = ws.close(Some(frame)).await;
        while let Some(Ok(_)) = ws.next().await {}
        // Then end TLS properly (close_notify), so the peer sees a clean end of stream.
        let _ = ws.get_mut().shutdown().await;
    }))
    .await;
}

/// Flushes whatever tungstenite still buffers (used before handing a stream to the relay).
pub async fn flush(ws: &mut WsStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.flush().await
}
