//! The tunnel as a byte stream: `AsyncRead + AsyncWrite` over a TCP, TLS, unix or WebSocket
//! carrier.
//!
//! Over a WebSocket every data frame's payload is read as bytes and every write goes out as one
//! binary frame (binary is byte-exact to any partner).
//!
//! `shutdown` is a half-close wherever the carrier has one: on byte streams natively, and over a
//! WebSocket whose broker granted half-close at the upgrade, as an empty binary message (the
//! broker passes either on to the partner). There the partner's end arrives the same way, and
//! a close before it means the tunnel was cut: reading then fails instead of returning the end of
//! stream, so no caller mistakes a cut for a finished transfer. Over a WebSocket without it,
//! `shutdown` closes the whole tunnel (close code 1000).

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
    WebSocket {
        ws: Box<WebSocketStream<BoxStream>>,
        payload: Bytes,
        close: Option<CloseInfo>,
        /// Half-close was granted at the upgrade.
        half_close: bool,
        /// The partner's end-of-data marker arrived.
        partner_done: bool,
        /// Our end-of-data marker went out.
        marker_sent: bool,
    },
}

/// How long [`TunnelStream::close`] waits for the broker's part of the closing handshake.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

impl TunnelStream {
    pub(crate) fn stream(stream: BoxStream, early: Bytes) -> Self {
        TunnelStream { early, carrier: Carrier::Stream(stream) }
    }

    pub(crate) fn websocket(ws: WebSocketStream<BoxStream>, half_close: bool) -> Self {
        TunnelStream {
            early: Bytes::new(),
            carrier: Carrier::WebSocket {
                ws: Box::new(ws),
                payload: Bytes::new(),
                close: None,
                half_close,
                partner_done: false,
                marker_sent: false,
            },
        }
    }

    /// Whether the carrier can half-close: a byte stream, or a WebSocket whose broker granted it.
    /// When it cannot, `shutdown` closes the whole tunnel.
    pub fn supports_half_close(&self) -> bool {
        match &self.carrier {
            Carrier::Stream(_) => true,
            Carrier::WebSocket { half_close, .. } => *half_close,
        }
    }

    /// Ends the tunnel cleanly: our direction's end first (a FIN with close_notify, or the
    /// half-close marker, so the partner knows we finished rather than were cut), then the
    /// WebSocket closing handshake, all bounded.
    pub async fn close(&mut self) {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            let _ = self.shutdown().await;
            if let Carrier::WebSocket { ws, .. } = &mut self.carrier {
                let _ = WebSocketStream::close(ws, None).await;
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
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
            Carrier::Stream(stream) => Pin::new(stream).poll_read(cx, buf).map_err(read_error),
            Carrier::WebSocket { ws, payload, close, half_close, partner_done, .. } => loop {
                if *partner_done {
                    return Poll::Ready(Ok(()));
                }
                if !payload.is_empty() {
                    let n = payload.len().min(buf.remaining());
                    buf.put_slice(&payload[..n]);
                    payload.advance(n);
                    return Poll::Ready(Ok(()));
                }
                match ready!(Pin::new(&mut **ws).poll_next(cx)) {
                    Some(Ok(Message::Text(text))) => *payload = Bytes::from(text),
                    Some(Ok(Message::Binary(data))) if data.is_empty() && *half_close => {
                        *partner_done = true;
                    }
                    Some(Ok(Message::Binary(data))) => *payload = data,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        *close =
                            frame.map(|f| CloseInfo { code: f.code.into(), reason: f.reason.to_string() });
                        if *half_close {
                            return Poll::Ready(Err(cut(close.as_ref().map(|c| c.reason.as_str()))));
                        }
                        return Poll::Ready(Ok(()));
                    }
                    None if *half_close => return Poll::Ready(Err(cut(None))),
                    None => return Poll::Ready(Ok(())),
                    Some(Err(e)) => return Poll::Ready(Err(read_error(ws_io_error(e)))),
                }
            },
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().carrier {
            Carrier::Stream(stream) => Pin::new(stream).poll_write(cx, data),
            // An empty message would be the end-of-data marker: an empty write sends nothing.
            Carrier::WebSocket { .. } if data.is_empty() => Poll::Ready(Ok(0)),
            Carrier::WebSocket { ws, .. } => {
                ready!(Pin::new(&mut **ws).poll_ready(cx)).map_err(ws_io_error)?;
                Pin::new(&mut **ws).start_send(Message::binary(data.to_vec())).map_err(ws_io_error)?;
                Poll::Ready(Ok(data.len()))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().carrier {
            Carrier::Stream(stream) => Pin::new(stream).poll_flush(cx),
            Carrier::WebSocket { ws, .. } => Pin::new(&mut **ws).poll_flush(cx).map_err(ws_io_error),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().carrier {
            Carrier::Stream(stream) => Pin::new(stream).poll_shutdown(cx),
            Carrier::WebSocket { ws, half_close: true, marker_sent, .. } => {
                if !*marker_sent {
                    ready!(Pin::new(&mut **ws).poll_ready(cx)).map_err(ws_io_error)?;
                    Pin::new(&mut **ws).start_send(Message::Binary(Bytes::new())).map_err(ws_io_error)?;
                    *marker_sent = true;
                }
                Pin::new(&mut **ws).poll_flush(cx).map_err(ws_io_error)
            }
            Carrier::WebSocket { ws, .. } => match ready!(Pin::new(&mut **ws).poll_close(cx)) {
                Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
                Err(e) => Poll::Ready(Err(ws_io_error(e))),
            },
        }
    }
}

/// The broker closed a half-closing tunnel before the partner's end-of-data marker: it was cut.
fn cut(reason: Option<&str>) -> io::Error {
    let text = match reason {
        Some(reason) if !reason.is_empty() => {
            format!("cut before the partner finished sending (the broker said: {reason})")
        }
        _ => "cut before the partner finished sending".to_string(),
    };
    io::Error::new(io::ErrorKind::ConnectionAborted, text)
}

/// A read that failed ended the tunnel before the partner finished: say so in one plain line
/// (rustls's own text for a missing close_notify carries a link into its docs).
fn read_error(error: io::Error) -> io::Error {
    match error.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "cut before the partner finished sending (the connection ended without TLS close_notify)",
        ),
        io::ErrorKind::ConnectionReset => {
            io::Error::new(io::ErrorKind::ConnectionReset, format!("cut: {error}"))
        }
        _ => error,
    }
}

/// tungstenite errors as io errors with a plain message.
fn ws_io_error(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        Error::Io(e) => e,
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the connection to the broker broke off without a close",
        ),
        Error::ConnectionClosed | Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the tunnel is closed")
        }
        other => io::Error::other(other.to_string()),
    }
}
