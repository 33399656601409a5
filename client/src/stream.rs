//! The tunnel as a byte stream: `AsyncRead + AsyncWrite` over a TCP, TLS, unix or WebSocket
//! carrier.
//!
//! Over a WebSocket every data frame's payload is read as bytes and every write goes out as one
//! binary frame (binary is byte-exact to any partner). A WebSocket has no half-close, so
//! `shutdown` closes the whole tunnel there (close code 1000); on byte streams it is a half-close
//! the broker passes on to the partner.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::BoxStream;

/// How the broker ended a WebSocket tunnel, when it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code (1011 when the partner left, 1000 when the broker stopped).
    pub code: u16,
    /// The close reason.
    pub reason: String,
}

/// One end of an established tunnel.
pub struct TunnelStream {
    /// Bytes that arrived together with `TunnelEstablished`; they are read first.
    early: Bytes,
    carrier: Carrier,
}

enum Carrier {
    Stream(BoxStream),
    WebSocket { ws: Box<WebSocketStream<BoxStream>>, payload: Bytes, close: Option<CloseInfo> },
}

impl TunnelStream {
    pub(crate) fn stream(stream: BoxStream, early: Bytes) -> Self {
        TunnelStream { early, carrier: Carrier::Stream(stream) }
    }

    pub(crate) fn websocket(ws: WebSocketStream<BoxStream>) -> Self {
        TunnelStream {
            early: Bytes::new(),
            carrier: Carrier::WebSocket { ws: Box::new(ws), payload: Bytes::new(), close: None },
        }
    }

    /// Whether the carrier can half-close. When it cannot (WebSocket), the end of reading is the
    /// end of the whole tunnel.
    pub fn supports_half_close(&self) -> bool {
        matches!(self.carrier, Carrier::Stream(_))
    }

    /// The WebSocket close frame that ended the tunnel, once reading returned end of stream.
    pub fn close_info(&self) -> Option<&CloseInfo> {
        match &self.carrier {
            Carrier::WebSocket { close, .. } => close.as_ref(),
            Carrier::Stream(_) => None,
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        match &mut this.carrier {
            Carrier::Stream(stream) => Pin::new(stream).poll_read(cx, buf),
            Carrier::WebSocket { ws, payload, close } => loop {
                if !payload.is_empty() {
                    let n = payload.len().min(buf.remaining());
                    buf.put_slice(&payload[..n]);
                    payload.advance(n);
                    return Poll::Ready(Ok(()));
                }
                match ready!(Pin::new(&mut **ws).poll_next(cx)) {
                    Some(Ok(Message::Text(text))) => *payload = Bytes::from(text),
                    Some(Ok(Message::Binary(data))) => *payload = data,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        *close =
                            frame.map(|f| CloseInfo { code: f.code.into(), reason: f.reason.to_string() });
                        return Poll::Ready(Ok(()));
                    }
                    None => return Poll::Ready(Ok(())),
                    Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                }
            },
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().carrier {
            Carrier::Stream(stream) => Pin::new(stream).poll_write(cx, data),
            Carrier::WebSocket { ws, .. } => {
                ready!(Pin::new(&mut **ws).poll_ready(cx)).map_err(io::Error::other)?;
                Pin::new(&mut **ws).start_send(Message::binary(data.to_vec())).map_err(io::Error::other)?;
                Poll::Ready(Ok(data.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().carrier {
            Carrier::Stream(stream) => Pin::new(stream).poll_flush(cx),
            Carrier::WebSocket { ws, .. } => Pin::new(&mut **ws).poll_flush(cx).map_err(io::Error::other),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().carrier {
            Carrier::Stream(stream) => Pin::new(stream).poll_shutdown(cx),
            Carrier::WebSocket { ws, .. } => match ready!(Pin::new(&mut **ws).poll_close(cx)) {
                Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
                Err(e) => Poll::Ready(Err(io::Error::other(e))),
            },
        }
    }
}
