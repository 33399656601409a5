//! One HTTP/2 stream of an inter-node link as a byte stream (`AsyncRead` + `AsyncWrite`), so the
//! relay treats the far end of a cross-node tunnel like any other stream end.
//!
//! What a local stream end's events become on the link, and back:
//! * bytes: DATA frames, within HTTP/2's per-stream flow-control window: a reader that stops
//!   reading stops the writer on the other node, as it does on a local tunnel;
//! * a finished direction (FIN, close_notify): END_STREAM, read as end of stream on the other side;
//! * a cut (dropped without a clean shutdown): RST_STREAM, read as an error, so the other node cuts
//!   its client too and no end reports a finish that did not happen.
//!
//! Received data is handed back to the flow-control window as soon as it is copied out, so this
//! holds at most one DATA frame (`MAX_FRAME` bytes) beyond what the caller took.
//!
//! Besides `AsyncRead`/`AsyncWrite`, which copy each chunk into and out of the caller's buffer,
//! the relay (and a WebSocket shaped link end, for its encoded frames, see [`link_of`]) moves a
//! cross-node tunnel's bytes as owned chunks ([`H2Stream::poll_chunk`],
//! [`H2Stream::poll_send_capacity`] and [`H2Stream::send_chunk`]): HTTP/2 frames are `Bytes`
//! already, and on a 2-core host every copy of a tunnel's bytes costs the nodes a few percent of
//! their throughput.

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::transport::BoxStream;

/// The largest preamble accepted (the JSON that opens a stream, see [`H2Stream::read_preamble`]).
const MAX_PREAMBLE: usize = 16 << 10;

/// Bytes asked for per write: the relay writes at most a chunk at a time.
const MAX_RESERVE: usize = 256 << 10;

/// A bidirectional HTTP/2 stream.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read.
    pending: Bytes,
    /// END_STREAM sent: dropping no longer resets.
    finished: bool,
}

impl H2Stream {
    /// The stream of an opened (or accepted) request: its send side and its received body.
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> H2Stream {
        H2Stream { send, recv, pending: Bytes::new(), finished: false }
    }

    /// Writes one length-prefixed JSON value: how a stream says what it is for and how the other
    /// side answers, before the tunnel's bytes.
    pub async fn write_preamble(&mut self, value: &serde_json::Value) -> io::Result<()> {
        let body = serde_json::to_vec(value).map_err(io::Error::other)?;
        let mut framed = Vec::with_capacity(4 + body.len());
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        self.write_all(&framed).await?;
        self.flush().await
    }

    /// Reads one length-prefixed JSON value (at most 16 KiB).
    pub async fn read_preamble(&mut self) -> io::Result<serde_json::Value> {
        use tokio::io::AsyncReadExt;
        let mut len = [0u8; 4];
        self.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_PREAMBLE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "preamble too large"));
        }
        let mut body = vec![0; len];
        self.read_exact(&mut body).await?;
        serde_json::from_slice(&body).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }
}

impl H2Stream {
    /// The next received chunk, as it came (no copy); `None` at the end of the stream.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.pending))));
        }
        match ready!(self.recv.poll_data(cx)) {
            None => Poll::Ready(Ok(None)),
            Some(Ok(data)) => {
                let _ = self.recv.flow_control().release_capacity(data.len());
                Poll::Ready(Ok(Some(data)))
            }
            Some(Err(error)) => Poll::Ready(Err(h2_to_io(error))),
        }
    }

    /// Waits until the other node's window takes some of `want` bytes; returns how many (≥ 1)
    /// may go to [`H2Stream::send_chunk`] now.
    pub fn poll_send_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        loop {
            let capacity = self.send.capacity();
            if capacity > 0 {
                return Poll::Ready(Ok(capacity.min(want)));
            }
            self.send.reserve_capacity(want.min(MAX_RESERVE));
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Poll::Ready(Err(h2_to_io(error))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    /// Sends `chunk` as it is (no copy); it must fit what [`H2Stream::poll_send_capacity`] said.
    pub fn send_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        self.send.send_data(chunk, false).map_err(h2_to_io)
    }
}

/// The link `io` is, when it is a stream end boxed around one (every stream end is a
/// [`BoxStream`]), so a reader or a writer holding its bytes as a buffer can take or hand over
/// chunks instead of copying them. Generic so the WebSocket layer can ask of its stream.
pub fn link_of<S: 'static>(io: &mut S) -> Option<&mut H2Stream> {
    let io: &mut dyn Any = io;
    // `**`: the boxed stream itself, not the box (which is an `IoStream` too).
    (**io.downcast_mut::<BoxStream>()?).as_any_mut().downcast_mut::<H2Stream>()
}

fn h2_to_io(error: h2::Error) -> io::Error {
    if error.is_io() {
        return error.into_io().unwrap_or_else(|| io::Error::other("link failed"));
    }
    io::Error::new(io::ErrorKind::ConnectionReset, error)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // An empty DATA frame is no end of stream: wait for the next.
        while self.pending.is_empty() {
            match ready!(self.poll_chunk(cx))? {
                Some(data) => self.pending = data,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(self.poll_send_capacity(cx, buf.len()))?;
        self.send_chunk(Bytes::copy_from_slice(&buf[..n]))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The link's connection task writes queued frames as soon as it can.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.finished {
            self.finished = true;
            self.send.reserve_capacity(0);
            self.send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        if !self.finished {
            // Not finished cleanly: the other node must read a cut, not an end.
            self.send.send_reset(Reason::CANCEL);
        }
    }
}
