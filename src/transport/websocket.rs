//! WebSocket specifics: the codec configuration, the upgrade, and closing with a code and reason.
//!
//! Any URL path is accepted (PROTOCOL §1). Pings are answered by tungstenite itself whenever the
//! connection is read or written.

use std::time::Duration;

use bytes::BytesMut;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

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

/// The upgrade header by which a client asks for (and the broker grants) half-close: on such a
/// connection an empty binary message means "no more data in this direction" (see the README,
/// "Half-close over WebSocket"). A header rather than a subprotocol, because WebSocket clients
/// such as tungstenite fail the upgrade when they ask for a subprotocol and a server (the
/// reference broker) answers without one; an unknown header is ignored both ways, so either side
/// without it keeps the plain wire.
pub const HALF_CLOSE_HEADER: &str = "remoteproxy-half-close";

/// Performs the server side of the upgrade. `pre_tunnel_budget` bounds what a client may make
/// the broker buffer before it is a tunnel (see [`super::budget`]). With `offer_half_close` a
/// client that asks for half-close gets it; the second value says whether it did.
// tungstenite's handshake callback fixes the error type (an HTTP response) to what clippy finds large.
#[allow(clippy::result_large_err)]
pub async fn accept(
    stream: BoxStream,
    pre_tunnel_budget: usize,
    offer_half_close: bool,
) -> Result<(WsStream, bool), tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    let budgeted = ReadBudget::new(stream, pre_tunnel_budget);
    let mut half_close = false;
    let negotiate = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let asked = request.headers().get(HALF_CLOSE_HEADER).is_some_and(|value| value.as_bytes() == b"1");
        if offer_half_close && asked {
            half_close = true;
            response.headers_mut().insert(HALF_CLOSE_HEADER, "1".parse().expect("a valid header value"));
        }
        Ok(response)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(budgeted, negotiate, Some(config())).await?;
    Ok((ws, half_close))
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

/// Turns bytes from a stream into one WebSocket message: text when they are valid UTF-8 (holding
/// back an incomplete trailing character unless `final_chunk`), binary otherwise.
pub fn next_message(buf: &mut BytesMut, final_chunk: bool) -> Option<Message> {
    if buf.is_empty() {
        return None;
    }
    let complete = match std::str::from_utf8(buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() && !final_chunk => {
            if e.valid_up_to() == 0 {
                return None;
            }
            e.valid_up_to()
        }
        Err(_) => return Some(Message::Binary(buf.split().freeze())),
    };
    let text = buf.split_to(complete).freeze();
    Some(Message::Text(Utf8Bytes::try_from(text).expect("checked to be UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &[&[u8]]) -> Vec<(bool, Vec<u8>)> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in input {
            buf.extend_from_slice(chunk);
            if let Some(m) = next_message(&mut buf, false) {
                out.push((m.is_text(), m.into_data().to_vec()));
            }
        }
        out
    }

    #[test]
    fn split_character_is_held_until_complete() {
        let got = texts(&[b"h\xC3", b"\xA9llo"]);
        assert_eq!(got, vec![(true, b"h".to_vec()), (true, "éllo".as_bytes().to_vec())]);
        let got = texts(&[b"\xE2", b"\x82", b"\xAC"]);
        assert_eq!(got, vec![(true, "€".as_bytes().to_vec())]);
    }

    #[test]
    fn invalid_utf8_goes_out_binary() {
        let got = texts(&[b"ok\xFF\xFE"]);
        assert_eq!(got, vec![(false, b"ok\xFF\xFE".to_vec())]);
    }

    #[test]
    fn partial_character_at_the_end_is_binary() {
        let mut buf = BytesMut::from(&b"\xC3"[..]);
        let m = next_message(&mut buf, true).unwrap();
        assert!(m.is_binary());
    }
}
