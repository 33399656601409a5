//! A connection's carrier split into a read half and a write half.
//!
//! The TunnelProxy API reads and writes one connection from different places: a registered
//! server's frames are decoded by its actor while a separate writer task sends what its clients
//! and the broker have for it, so a server that stops reading can never block the actor. Byte
//! streams split with `tokio::io::split`, WebSockets with `StreamExt::split`.

use std::io;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::BoxStream;
use super::connection::{Wire, ws_to_io};
use super::websocket::next_message;
use super::websocket::{CLOSE_LINGER, CloseKind, WsStream};

/// Bytes asked for per read.
const READ_CHUNK: usize = 64 << 10;

/// The reading side.
pub enum ReadHalf {
    Stream {
        stream: tokio::io::ReadHalf<BoxStream>,
        /// Allocated only while a read finds data; given back when the socket has none.
        buf: BytesMut,
    },
    /// A WebSocket: data frames' payloads are the byte stream.
    WebSocket(SplitStream<WsStream>),
}

/// The writing side.
pub enum WriteHalf {
    Stream(tokio::io::WriteHalf<BoxStream>),
    WebSocket {
        /// The sending side of the WebSocket.
        sink: SplitSink<WsStream, Message>,
        /// A partial UTF-8 character held back for the next text frame.
        carry: BytesMut,
    },
}

/// Splits a carrier.
pub fn split(wire: Wire) -> (ReadHalf, WriteHalf) {
    match wire {
        Wire::Stream(stream) => {
            let (read, write) = tokio::io::split(stream);
            (ReadHalf::Stream { stream: read, buf: BytesMut::new() }, WriteHalf::Stream(write))
        }
        Wire::WebSocket(ws) => {
            let (sink, stream) = (*ws).split();
            (ReadHalf::WebSocket(stream), WriteHalf::WebSocket { sink, carry: BytesMut::new() })
        }
    }
}

impl ReadHalf {
    /// The next chunk of payload bytes; `None` at the end of the connection. Control frames are
    /// answered by tungstenite and skipped here. Cancel-safe.
    pub async fn read(&mut self) -> io::Result<Option<Bytes>> {
        match self {
            ReadHalf::Stream { stream, buf } => {
                std::future::poll_fn(|cx| {
                    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                        buf.reserve(READ_CHUNK);
                    }
                    match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, buf) {
                        Poll::Pending => {
                            // An idle connection (most of a fleet) waits here without a buffer.
                            if buf.is_empty() {
                                *buf = BytesMut::new();
                            }
                            Poll::Pending
                        }
                        Poll::Ready(Ok(0)) => Poll::Ready(Ok(None)),
                        Poll::Ready(Ok(_)) => Poll::Ready(Ok(Some(buf.split().freeze()))),
                        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            Poll::Ready(Ok(None))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    }
                })
                .await
            }
            ReadHalf::WebSocket(stream) => loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => return Ok(Some(Bytes::from(text))),
                    Some(Ok(Message::Binary(data))) => return Ok(Some(data)),
                    Some(Ok(Message::Close(_))) | None => return Ok(None),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(ws_to_io(e)),
                }
            },
        }
    }
}

impl WriteHalf {
    /// Writes bytes that have no text meaning (SLIP): verbatim on a stream, one binary frame on a
    /// WebSocket.
    pub async fn write_binary(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            WriteHalf::Stream(stream) => {
                stream.write_all(&data).await?;
                stream.flush().await
            }
            WriteHalf::WebSocket { sink, .. } => sink.send(Message::Binary(data)).await.map_err(ws_to_io),
        }
    }

    /// Writes tunnel data the way the v1 relay does for stream-to-WebSocket: text frames while
    /// the bytes are UTF-8 (holding back a split character), binary otherwise.
    pub async fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            WriteHalf::Stream(stream) => {
                stream.write_all(data).await?;
                stream.flush().await
            }
            WriteHalf::WebSocket { sink, carry } => {
                carry.extend_from_slice(data);
                match next_message(carry, false) {
                    Some(message) => sink.send(message).await.map_err(ws_to_io),
                    None => Ok(()),
                }
            }
        }
    }

    /// Ends the connection: a close frame with `reason` on a WebSocket, a shutdown on a stream.
    /// Bounded, so a peer that stopped reading cannot hold it.
    pub async fn close(&mut self, kind: CloseKind, reason: &str) {
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            match self {
                WriteHalf::Stream(stream) => {
                    let _ = stream.shutdown().await;
                }
                WriteHalf::WebSocket { sink, carry } => {
                    if !carry.is_empty() {
                        let _ = sink.send(Message::Binary(carry.split().freeze())).await;
                    }
                    let frame = CloseFrame { code: kind.code(), reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    let _ = sink.close().await;
                }
            }
        })
        .await;
    }
}
