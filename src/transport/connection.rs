//! One accepted connection before it becomes a tunnel: read chunks, write JSON messages, close
//! with a reason, or turn into a raw end for the relay.
//!
//! Byte streams (TCP, TLS, unix) and WebSocket differ in how messages travel, not in what the
//! session does with them, so the session sees only this type. Incoming bytes (stream reads or
//! WebSocket frame payloads) go into the [`Decoder`] buffer; whatever is still there when the
//! tunnel starts is handed to the relay with the raw end.

use std::borrow::Cow;
use std::io;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use remoteproxy_authenticators::{PeerAddress, Transport};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::BoxStream;
use super::admission::Ticket;
use super::frames::FrameLog;
use super::websocket::{self, CloseKind, MAX_TUNNEL_MESSAGE, WsStream};
use crate::protocol::{Decoder, message};

/// Bytes asked for per read before the tunnel; handshake messages are small.
const HANDSHAKE_READ: usize = 8 << 10;

/// After the broker closes a byte stream it reads and discards for at most this long, so the
/// peer is not reset (which could destroy the error response still in flight to it).
const STREAM_LINGER: Duration = Duration::from_secs(1);

/// The transport-level carrier of a connection.
pub enum Wire {
    /// TCP, TLS over TCP, or a unix socket.
    Stream(BoxStream),
    /// A WebSocket (over TLS or plain TCP).
    WebSocket(Box<WsStream>),
}

impl Wire {
    /// Closes the carrier: a WebSocket with a close frame carrying `kind`'s code and `reason`, a
    /// byte stream with a clean shutdown (it has no way to carry a reason).
    pub async fn close(self, kind: CloseKind, reason: &str) {
        match self {
            Wire::Stream(stream) => close_stream(stream).await,
            Wire::WebSocket(mut ws) => websocket::close(&mut ws, kind, reason).await,
        }
    }
}

/// Tunnel data the broker read during the handshake, in the shape it arrived.
#[derive(Debug)]
pub enum EarlyData {
    Bytes(Bytes),
    /// From a WebSocket: whole frames with their types.
    Frames(Vec<Message>),
}

/// What one read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Payload bytes were appended to the decoder buffer.
    Data,
    /// A WebSocket control frame (ping, pong): no payload, and not activity in the protocol sense.
    Control,
    /// The peer closed the connection.
    Closed,
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// The socket failed (the reason is not kept: the connection just ends).
    Io,
    /// The peer sent a message (or frame) larger than the pre-tunnel limit.
    Oversized,
}

/// How a session's JSON phase ended without a tunnel (v1 and v2 alike).
pub enum Exit {
    /// Close with this WebSocket code and reason.
    Close(CloseKind, Cow<'static, str>),
    /// The peer is gone or the connection was handed over: nothing to close.
    Done,
}

impl Exit {
    /// Close as an error with `reason`.
    pub fn error(reason: &'static str) -> Exit {
        Exit::Close(CloseKind::Error, Cow::Borrowed(reason))
    }

    /// Close because the broker stops.
    pub fn shutdown() -> Exit {
        Exit::Close(CloseKind::Shutdown, Cow::Borrowed(crate::protocol::reasons::STOP_SERVER))
    }
}

/// An accepted connection in its JSON phase.
pub struct Connection {
    /// Process-unique id, for logs.
    pub id: u64,
    pub peer: PeerAddress,
    pub transport: Transport,
    /// When the TCP (or unix) connection was accepted; `handshakeDeadline` counts from here.
    /// tokio's clock, so the session timers can be tested with paused time.
    pub accepted_at: Instant,
    /// Client certificate chain from TLS, when presented.
    pub client_certificates: Option<Vec<Vec<u8>>>,
    /// The WebSocket upgrade's request path (`None` on byte streams).
    pub path: Option<String>,
    /// Incoming bytes not yet consumed as messages.
    pub decoder: Decoder,
    /// The connection's entry in the broker's statistics, set by the API's session; it moves
    /// with the connection (into a tunnel) and unregisters it when dropped.
    pub stats: Option<crate::stats::ConnHandle>,
    /// The WebSocket client asked for half-close and was granted it (an empty binary message
    /// ends its direction); always false on byte streams, which half-close natively.
    pub half_close: bool,
    /// WebSocket frame boundaries of the bytes in `decoder`.
    frames: FrameLog,
    wire: Wire,
    /// Counts against `maxConnections` and `[Limits]` for as long as the connection lives:
    /// sessions move it into the tunnel or the v2 carrier, as they do `stats`.
    pub ticket: Option<Ticket>,
    /// The log span of the connection (id, peer, transport). The session runs its phases in it;
    /// an established tunnel does not keep it (see `proxy::tunnel`), because the subscriber keeps
    /// storage for as many spans as were ever open at once.
    pub span: tracing::Span,
}

impl Connection {
    /// Wraps an established carrier.
    pub fn new(
        id: u64,
        peer: PeerAddress,
        transport: Transport,
        accepted_at: Instant,
        wire: Wire,
        max_message_size: usize,
        ticket: Option<Ticket>,
    ) -> Self {
        Connection {
            id,
            peer,
            transport,
            accepted_at,
            client_certificates: None,
            path: None,
            decoder: Decoder::new(max_message_size),
            stats: None,
            half_close: false,
            frames: FrameLog::default(),
            wire,
            ticket,
            span: tracing::Span::none(),
        }
    }

    /// Reads once. Cancel-safe: when dropped before completion nothing is lost.
    pub async fn read_chunk(&mut self) -> Result<Chunk, ReadError> {
        match &mut self.wire {
            Wire::Stream(stream) => {
                let buf = self.decoder.buffer_mut();
                buf.reserve(HANDSHAKE_READ);
                match stream.read_buf(buf).await {
                    Ok(0) => Ok(Chunk::Closed),
                    Ok(_) => Ok(Chunk::Data),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Chunk::Closed),
                    Err(_) => Err(ReadError::Io),
                }
            }
            Wire::WebSocket(ws) => match ws.next().await {
                None | Some(Ok(Message::Close(_))) => Ok(Chunk::Closed),
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    let text = message.is_text();
                    let payload = message.into_data();
                    self.frames.record(payload.len(), text, self.decoder.buffered());
                    self.decoder.extend(&payload);
                    Ok(Chunk::Data)
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(Chunk::Control),
                Some(Err(WsError::Capacity(_))) => Err(ReadError::Oversized),
                Some(Err(_)) => Err(ReadError::Io),
            },
        }
    }

    /// Sends one JSON message: `{...}\n` on a stream, one text frame on a WebSocket.
    pub async fn send(&mut self, value: &Value) -> io::Result<()> {
        let bytes = message::encode(value);
        match &mut self.wire {
            Wire::Stream(stream) => {
                stream.write_all(&bytes).await?;
                stream.flush().await
            }
            Wire::WebSocket(ws) => {
                let text = String::from_utf8(bytes).expect("serde_json output is UTF-8");
                ws.send(Message::text(text)).await.map_err(ws_to_io)
            }
        }
    }

    /// Whether the connection is a WebSocket (its messages cross a tunnel as messages).
    pub fn is_websocket(&self) -> bool {
        matches!(self.wire, Wire::WebSocket(_))
    }

    /// Closes the connection. On a WebSocket the close frame carries `kind`'s code and `reason`;
    /// a byte stream is shut down (it has no way to carry a reason).
    pub async fn close(self, kind: CloseKind, reason: &str) {
        self.wire.close(kind, reason).await
    }

    /// Ends the JSON phase: the carrier (a WebSocket now takes tunnel-sized messages) and the data that was
    /// already read but not consumed, which belongs to the tunnel.
    pub fn into_raw(mut self) -> (Wire, EarlyData) {
        let leftover = self.decoder.take_remaining();
        match self.wire {
            Wire::WebSocket(mut ws) => {
                ws.set_max_message(MAX_TUNNEL_MESSAGE);
                (Wire::WebSocket(ws), EarlyData::Frames(self.frames.split(leftover)))
            }
            stream => (stream, EarlyData::Bytes(leftover)),
        }
    }
}

/// Shuts a byte stream down and drains it briefly, so unread input does not turn the close into
/// a reset that would discard data still travelling to the peer.
///
/// Boxed inside: the drain buffer would otherwise sit in the state of every future that can
/// close a connection (a session's or a tunnel's) for its whole life.
pub async fn close_stream(mut stream: BoxStream) {
    Box::pin(async move {
        let _ = tokio::time::timeout(STREAM_LINGER, async {
            if stream.shutdown().await.is_ok() {
                let mut sink = [0u8; 4096];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            }
        })
        .await;
    })
    .await;
}

/// tungstenite errors as io errors, for callers that only need to know the send failed.
pub fn ws_to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}
