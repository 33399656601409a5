//! An upgraded WebSocket connection, server side: a `Stream` of messages and a `Sink` for them,
//! with the semantics of tokio-tungstenite's `WebSocketStream` (pings answered, the closing
//! handshake completed, protocol violations reported as errors) and tungstenite's message types.
//!
//! Written here rather than used from tungstenite because a fleet of idle connections must cost
//! almost nothing, and tungstenite's buffers cannot be made to: it keeps a read buffer of its
//! configured size per connection (zero-filled, so resident) and its write buffer at its largest.
//! Here the read buffer and the write buffer exist only while bytes move: each is given back when
//! it is empty and the socket has nothing more (an idle connection holds no buffer at all), and a
//! message that arrives in one frame is handed over without a copy.
//!
//! The keepalive lives here too (see [`KeepAlive`]): it needs to see every byte that arrives and
//! to put a ping on the wire between frames, which only the frame layer can do.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::frame::{self, BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT};
use crate::cluster::h2_stream::link_of;
use crate::stats::Stats;

/// Bytes asked of the socket per read while data flows.
const READ_CHUNK: usize = 64 << 10;

/// Below this much free room the read buffer grows before a read, so reads are never tiny.
const MIN_FREE: usize = 4 << 10;

/// Outgoing frames are gathered up to this size before `poll_ready` insists on writing them.
const WRITE_BATCH: usize = 64 << 10;

/// What a keepalive timeout surfaces as (inside `Error::Io`).
const KEEPALIVE_TIMEOUT: &str = "no pong within the keepalive timeout";

/// The keepalive of one listener's WebSocket connections: after `interval` without a byte from
/// the peer a ping goes out, and a connection that then stays silent for `timeout` fails with
/// [`is_keepalive_timeout`]. Each such failure is counted in the statistics.
#[derive(Debug)]
pub struct KeepAlive {
    pub interval: Duration,
    pub timeout: Duration,
    pub stats: Arc<Stats>,
}

/// Whether a read error is the keepalive giving up on a silent peer.
pub fn is_keepalive_timeout(error: &Error) -> bool {
    matches!(error, Error::Io(e) if e.kind() == io::ErrorKind::TimedOut && e.to_string() == KEEPALIVE_TIMEOUT)
}

/// Per connection: one timer, re-armed lazily (an arriving byte only records the time; the timer
/// looks at it when it fires), so a busy connection costs one clock read per socket read.
struct Timer {
    settings: Arc<KeepAlive>,
    sleep: Pin<Box<Sleep>>,
    last_heard: Instant,
    ping_sent: bool,
}

/// A message arriving in several frames.
struct Fragments {
    text: bool,
    data: BytesMut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// The broker sent its close frame; data may still arrive until the peer's.
    Sent,
    /// The peer closed; the reply is queued. Nothing more is read.
    Received,
    /// Both close frames were exchanged, or the stream ended.
    Done,
}

/// An upgraded server-side WebSocket over `S`.
pub struct WebSocket<S> {
    io: S,
    /// Bytes read and not yet parsed; empty and unallocated while the connection is idle.
    read: BytesMut,
    /// How many bytes the frame being read needs in `read`.
    want: usize,
    fragments: Option<Fragments>,
    /// Encoded frames not yet written; unallocated once written.
    out: BytesMut,
    /// The payload of the last ping, owed a pong.
    pong: Option<Bytes>,
    closing: Closing,
    /// The task waiting in the sink for the socket to take the outgoing bytes. Split in two (the
    /// TunnelProxy halves), the reading task also writes (pongs, pings, and whatever is queued
    /// before them), and the socket remembers only the last task that waited to write: this one
    /// is woken whenever the reader had to wait, so it waits again under its own name.
    flush_waiter: Option<Waker>,
    /// Largest message (and frame) accepted.
    max_message: usize,
    keepalive: Option<Timer>,
    /// The other side is a broker node that writes unmasked frames ([`WebSocket::peer`]).
    unmasked_peer: bool,
}

impl<S> WebSocket<S> {
    /// Wraps a stream whose upgrade is done; `tail` holds bytes already read behind the request.
    pub fn new(io: S, tail: BytesMut, max_message: usize, keepalive: Option<Arc<KeepAlive>>) -> Self {
        let keepalive = keepalive.map(|settings| Timer {
            sleep: Box::pin(tokio::time::sleep(settings.interval)),
            settings,
            last_heard: Instant::now(),
            ping_sent: false,
        });
        WebSocket {
            io,
            read: tail,
            want: 0,
            fragments: None,
            out: BytesMut::new(),
            pong: None,
            closing: Closing::Open,
            flush_waiter: None,
            max_message,
            keepalive,
            unmasked_peer: false,
        }
    }

    /// The far end of a cross-node tunnel: another node's relay writes the frames of its client's
    /// WebSocket over the link, unmasked as a server writes them.
    pub fn peer(io: S, max_message: usize) -> Self {
        WebSocket { unmasked_peer: true, ..WebSocket::new(io, BytesMut::new(), max_message, None) }
    }

    /// Changes the largest message accepted from now on (the limit is lower before a tunnel).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    /// Whether this is the far end of a cross-node tunnel ([`WebSocket::peer`]).
    pub fn is_peer(&self) -> bool {
        self.unmasked_peer
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Appends one frame to the outgoing bytes.
    fn encode(&mut self, opcode: u8, payload: &[u8]) {
        frame::put_header(&mut self.out, opcode, payload.len());
        self.out.extend_from_slice(payload);
    }

    fn encode_close(&mut self, close: Option<&CloseFrame>) {
        let mut payload = Vec::new();
        if let Some(close) = close {
            payload.extend_from_slice(&u16::from(close.code).to_be_bytes());
            payload.extend_from_slice(close.reason.as_bytes());
            payload.truncate(frame::MAX_CONTROL_PAYLOAD);
        }
        self.encode(CLOSE, &payload);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> WebSocket<S> {
    /// Writes the outgoing bytes until none are left, then gives their buffer back.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            if let Some(link) = link_of(&mut self.io) {
                // A link end to another node takes the encoded frames as they are.
                let n = ready!(link.poll_send_capacity(cx, self.out.len()))?;
                link.send_chunk(self.out.split_to(n).freeze())?;
                continue;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        // Unconditionally: a buffer written to its very end reports no capacity and still holds
        // its allocation.
        self.out = BytesMut::new();
        Poll::Ready(Ok(()))
    }

    /// The sink's write: like [`Self::poll_write_out`], remembering the waiting task.
    fn poll_sink_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = self.poll_write_out(cx);
        self.flush_waiter = match result {
            Poll::Pending => Some(cx.waker().clone()),
            Poll::Ready(_) => None,
        };
        result
    }

    /// Queues the owed pong and tries to write what is queued; a socket that cannot take it now
    /// gets it at the next read or write.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(payload) = self.pong.take() {
            self.encode(PONG, &payload);
        }
        match self.poll_write_out(cx) {
            Poll::Ready(result) => result,
            Poll::Pending => {
                // Wake the writer under its own name, but never the task polling now: in the
                // v1 relay one task drives both directions, and waking itself on every read of a
                // peer that does not read made it spin a core (found by the stress suite).
                if let Some(waiter) = &self.flush_waiter
                    && !waiter.will_wake(cx.waker())
                {
                    waiter.wake_by_ref();
                }
                Ok(())
            }
        }
    }

    /// Reads more bytes into `read`.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let free = self.read.capacity() - self.read.len();
        if free < MIN_FREE || self.want > self.read.capacity() {
            self.read.reserve(READ_CHUNK.max(self.want.saturating_sub(self.read.len())));
        }
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read))?;
        if n > 0
            && let Some(timer) = &mut self.keepalive
        {
            timer.last_heard = Instant::now();
            timer.ping_sent = false;
        }
        Poll::Ready(Ok(n))
    }

    /// Runs the keepalive: pings a peer silent for the interval, fails one silent for the
    /// timeout after the ping.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        let Some(timer) = &mut self.keepalive else { return Ok(()) };
        while timer.sleep.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if timer.ping_sent {
                timer.settings.stats.keepalive_timed_out();
                // Once: the connection is finished, whatever its owner still does with it.
                self.keepalive = None;
                return Err(Error::Io(io::Error::new(io::ErrorKind::TimedOut, KEEPALIVE_TIMEOUT)));
            }
            let due = timer.last_heard + timer.settings.interval;
            if due > now {
                timer.sleep.as_mut().reset(due);
                continue;
            }
            timer.ping_sent = true;
            let deadline = now + timer.settings.timeout;
            timer.sleep.as_mut().reset(deadline);
            self.encode(PING, &[]);
            self.poll_control(cx)?;
            return Ok(());
        }
        Ok(())
    }

    /// Takes complete frames out of `read` until one gives the caller a message: `Ok(None)` when
    /// more bytes are needed first.
    fn next_message(&mut self) -> Result<Option<Message>, Error> {
        loop {
            if let Some(message) = self.next_frame()? {
                return Ok(Some(message));
            }
            if self.want > 0 {
                return Ok(None);
            }
        }
    }

    /// Takes the next frame out of `read` and acts on it: `Ok(None)` when more bytes are needed
    /// (`want` says how many) or the frame gave the caller nothing (a fragment; `want` is 0).
    fn next_frame(&mut self) -> Result<Option<Message>, Error> {
        let Some(header) = frame::parse_from(&self.read, self.unmasked_peer)? else {
            self.want = self.read.len() + 1;
            return Ok(None);
        };
        let so_far = self.fragments.as_ref().map_or(0, |f| f.data.len());
        // Saturating: a 64-bit length near the top plus the fragments so far must not wrap
        // around to a small size that passes the limit (found by fuzzing).
        let size = (so_far as u64).saturating_add(header.len);
        if size > self.max_message as u64 {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            return Err(Error::Capacity(CapacityError::MessageTooLong { size, max_size: self.max_message }));
        }
        let needed = header.size + header.len as usize;
        if self.read.len() < needed {
            self.want = needed;
            return Ok(None);
        }
        self.want = 0;
        let mut payload = self.read.split_to(needed);
        payload.advance(header.size);
        if header.mask != [0; 4] {
            frame::unmask(&mut payload, header.mask);
        }
        match header.opcode {
            TEXT | BINARY => {
                if self.fragments.is_some() {
                    let data = if header.opcode == TEXT { Data::Text } else { Data::Binary };
                    return Err(ProtocolError::ExpectedFragment(data).into());
                }
                let text = header.opcode == TEXT;
                if header.fin {
                    return data_message(text, payload).map(Some);
                }
                self.fragments = Some(Fragments { text, data: payload });
                Ok(None)
            }
            CONTINUATION => {
                let Some(fragments) = &mut self.fragments else {
                    return Err(ProtocolError::UnexpectedContinueFrame.into());
                };
                fragments.data.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let Fragments { text, data } = self.fragments.take().expect("checked above");
                data_message(text, data).map(Some)
            }
            PING => {
                let payload = payload.freeze();
                if self.closing == Closing::Open {
                    self.pong = Some(payload.clone());
                }
                Ok(Some(Message::Ping(payload)))
            }
            PONG => Ok(Some(Message::Pong(payload.freeze()))),
            CLOSE => {
                let close = close_frame(payload.freeze())?;
                match self.closing {
                    Closing::Open => {
                        // Echo the code (RFC 6455 §5.5.1); the reply goes out before the end.
                        let reply = close.as_ref().map(|c| CloseFrame { code: c.code, reason: "".into() });
                        self.encode_close(reply.as_ref());
                        self.closing = Closing::Received;
                    }
                    Closing::Sent => self.closing = Closing::Done,
                    Closing::Received | Closing::Done => {}
                }
                Ok(Some(Message::Close(close)))
            }
            _ => unreachable!("frame::parse admits no other opcode"),
        }
    }
}

/// A complete text or binary message; text must be UTF-8.
fn data_message(text: bool, data: BytesMut) -> Result<Message, Error> {
    let data = data.freeze();
    if !text {
        return Ok(Message::Binary(data));
    }
    Utf8Bytes::try_from(data).map(Message::Text).map_err(|e| Error::Utf8(e.to_string()))
}

/// A close frame's payload: nothing, or a valid code and a UTF-8 reason.
fn close_frame(payload: Bytes) -> Result<Option<CloseFrame>, Error> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidCloseSequence.into()),
        _ => {
            let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_allowed() {
                return Err(ProtocolError::InvalidCloseSequence.into());
            }
            let reason = Utf8Bytes::try_from(payload.slice(2..)).map_err(|e| Error::Utf8(e.to_string()))?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Err(error) = this.poll_control(cx) {
            return Poll::Ready(Some(Err(error.into())));
        }
        if matches!(this.closing, Closing::Received | Closing::Done) {
            // The peer's close was delivered; the reply leaves before the stream ends.
            return match ready!(this.poll_write_out(cx)) {
                Ok(()) | Err(_) => Poll::Ready(None),
            };
        }
        loop {
            match this.next_message() {
                Ok(Some(message)) => {
                    if this.closing == Closing::Received {
                        // Send the reply now, so a caller that stops reading at the close
                        // frame has still completed the handshake.
                        let _ = this.poll_control(cx);
                    }
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    let open = this.closing == Closing::Open;
                    this.closing = Closing::Done;
                    return Poll::Ready(
                        open.then(|| Err(ProtocolError::ResetWithoutClosingHandshake.into())),
                    );
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                Poll::Pending => {
                    // Not `capacity() > 0`: a buffer consumed to its very end has none left and
                    // still holds (a share of) its allocation.
                    if this.read.is_empty() {
                        this.read = BytesMut::new();
                    }
                    if let Err(error) = this.poll_keepalive(cx) {
                        return Poll::Ready(Some(Err(error)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if this.out.len() >= WRITE_BATCH {
            ready!(this.poll_sink_write(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        let this = self.get_mut();
        match this.closing {
            Closing::Open => {}
            // The peer closed first: like tungstenite, a close now is already answered.
            Closing::Received | Closing::Done if matches!(message, Message::Close(_)) => return Ok(()),
            Closing::Sent if matches!(message, Message::Close(_)) => return Ok(()),
            _ => return Err(ProtocolError::SendAfterClosing.into()),
        }
        match message {
            Message::Text(text) => this.encode(TEXT, text.as_bytes()),
            Message::Binary(data) => this.encode(BINARY, &data),
            Message::Ping(data) => this.encode(PING, &data[..data.len().min(frame::MAX_CONTROL_PAYLOAD)]),
            Message::Pong(data) => this.encode(PONG, &data[..data.len().min(frame::MAX_CONTROL_PAYLOAD)]),
            Message::Close(close) => {
                this.encode_close(close.as_ref());
                this.closing = Closing::Sent;
                // The closing handshake has its own bound; a silent peer now is no news.
                this.keepalive = None;
            }
            Message::Frame(_) => return Err(ProtocolError::InvalidOpcode(0).into()),
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if let Some(payload) = this.pong.take() {
            this.encode(PONG, &payload);
        }
        ready!(this.poll_sink_write(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.closing == Closing::Open {
            self.encode_close(None);
            self.closing = Closing::Sent;
            self.keepalive = None;
        }
        self.poll_flush(cx)
    }
}

#[cfg(test)]
#[path = "socket_tests.rs"]
mod tests;
