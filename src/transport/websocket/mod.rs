//! WebSocket, server side: the upgrade ([`upgrade`]), frames ([`frame`]), the connection as a
//! stream and sink of messages with its keepalive ([`socket`]), and closing with a code and
//! reason.
//!
//! Any URL path is accepted (PROTOCOL §1). Pings are answered whenever the connection is read or
//! written. tungstenite provides the message types; the frame layer is the broker's own, for
//! memory (see [`socket`]).

pub(crate) mod frame;
mod socket;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub use socket::{KeepAlive, WebSocket, is_keepalive_timeout};
pub use upgrade::UpgradeError;

use super::BoxStream;

/// The WebSocket stream type of every WebSocket connection.
pub type WsStream = WebSocket<BoxStream>;

/// Largest message (and frame) accepted once a tunnel runs: big enough for the large JSON replies
/// nymea devices send as one message, small enough to bound a tunnel's memory.
pub const MAX_TUNNEL_MESSAGE: usize = 16 << 20;

/// How long a closing handshake may take before the socket is simply dropped.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The same for a link to another cluster node: what the relay queued for it must reach that
/// node (whose own client may read slowly) before the close, and dropping the link unfinished
/// would reset it, which means a cut.
pub const PEER_CLOSE_LINGER: Duration = Duration::from_secs(30);

/// The upgrade header by which a client asks for (and the broker grants) half-close: on such a
/// connection an empty binary message means "no more data in this direction" (see the README,
/// "Half-close over WebSocket"). A header rather than a subprotocol, because WebSocket clients
/// such as tungstenite fail the upgrade when they ask for a subprotocol and a server (the
/// reference broker) answers without one; an unknown header is ignored both ways, so either side
/// without it keeps the plain wire.
pub const HALF_CLOSE_HEADER: &str = "remoteproxy-half-close";

/// Performs the server side of the upgrade. `pre_tunnel_limit` is the largest message accepted
/// before the connection is a tunnel (raised with [`WebSocket::set_max_message`] at the switch), so
/// an unauthenticated client cannot make the broker buffer megabytes. With `offer_half_close` a
/// client that asks for half-close gets it; the second value says whether it did, the third is
/// the request's path (outside `path_prefix`, when given, the client got 404).
pub async fn accept(
    mut stream: BoxStream,
    pre_tunnel_limit: usize,
    offer_half_close: bool,
    keepalive: Option<Arc<KeepAlive>>,
    health_path: Option<&str>,
    path_prefix: Option<&str>,
) -> Result<(WsStream, bool, String), UpgradeError> {
    let upgraded = upgrade::upgrade(&mut stream, offer_half_close, health_path, path_prefix).await?;
    let ws = WebSocket::new(stream, upgraded.tail, pre_tunnel_limit, keepalive);
    Ok((ws, upgraded.half_close, upgraded.path))
}

/// How the broker ends a WebSocket connection (PROTOCOL §3 and §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// Errors, refusals, timeouts, a partner gone: code 1011.
    Error,
    /// The broker's own shutdown: code 1000.
    Shutdown,
    /// A rendezvous peer whose partner left: code 1001 (going away), so it reconnects.
    GoingAway,
    /// A rendezvous peer that broke the rules (no HELLO, a full meeting): code 1008.
    Policy,
}

impl CloseKind {
    /// The close frame's code.
    pub fn code(self) -> CloseCode {
        match self {
            CloseKind::Error => CloseCode::Error,
            CloseKind::Shutdown => CloseCode::Normal,
            CloseKind::GoingAway => CloseCode::Away,
            CloseKind::Policy => CloseCode::Policy,
        }
    }
}

/// Sends a close frame with `reason`, waits (bounded) for the peer's close, then drops.
pub async fn close(ws: &mut WsStream, kind: CloseKind, reason: &str) {
    let frame = CloseFrame { code: kind.code(), reason: reason.into() };
    let linger = if ws.is_peer() { PEER_CLOSE_LINGER } else { CLOSE_LINGER };
    // Boxed: a closing handshake is short and its future is not; inline it would enlarge every
    // future that may close a WebSocket, for that future's whole life.
    let _ = Box::pin(tokio::time::timeout(linger, async {
        // When the peer closed first, sending our own close fails; reading on still flushes the
        // reply tungstenite queued for it, which completes the peer's closing handshake.
        let _ = ws.send(Message::Close(Some(frame))).await;
        if ws.is_peer() {
            // The link's END_STREAM right behind the close: what is queued goes out even if
            // the other node's reply never comes.
            let _ = ws.get_mut().shutdown().await;
        }
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
