//! The pump between the two ends of a tunnel.
//!
//! One future owns both ends and moves bytes in both directions, like tokio's
//! `copy_bidirectional`, so a tunnel costs one task and no locks. Per direction it holds at most
//! one buffer of [`CHUNK`] bytes (or one WebSocket message) and reads the source again only when
//! the destination has taken everything: a reader that stops reading stops its writer, and the
//! broker's memory per tunnel stays bounded (PROTOCOL §4, Passthrough).
//!
//! What crosses depends on the kinds of the ends:
//! * stream → stream: bytes verbatim; a FIN (or TLS close_notify) becomes a half-close on the other
//!   side, and the tunnel ends when both directions have ended.
//! * WebSocket → WebSocket: message by message, text stays text and binary stays binary.
//! * stream → WebSocket: text frames while the bytes are valid UTF-8 (a character split across
//!   reads is held back until complete), binary frames otherwise.
//! * WebSocket → stream: each data frame's payload verbatim.
//!
//! A WebSocket has no half-close of its own. A WebSocket end that negotiated it at the upgrade
//! ([`crate::transport::websocket::HALF_CLOSE_HEADER`]) ends its direction with an empty binary
//! message and receives one when its partner's direction ends normally (a FIN, a marker, or a
//! plain WebSocket partner's close). Such a direction ends like a stream's: the other goes on.
//! A marker towards a WebSocket end that did not negotiate sends nothing; that tunnel lasts until
//! someone closes. Any other end of a direction with a WebSocket involved (a close frame, a FIN
//! towards a plain WebSocket) ends the whole tunnel, closing the other end with the reason
//! `Tunnel client disconnected`.
//!
//! The ends learn how the tunnel ended: after a normal end a stream is shut down cleanly (TLS
//! close_notify) and a half-close end got its marker; after a failure (a reset, an abnormal
//! close, the grace period of a stop running out) a stream is dropped without close_notify and
//! no marker is sent, so a client can tell a cut from a finish.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::cluster::h2_stream::link_of;
use crate::protocol::reasons::{PARTNER_GONE, STOP_SERVER};
use crate::stats::ConnHandle;
use crate::transport::connection::{EarlyData, Wire};
use crate::transport::websocket::{CloseKind, is_keepalive_timeout, next_message};

/// Bytes read per call from a stream end. 64 KiB moves about three times the data of tokio's
/// default 8 KiB on loopback.
pub const CHUNK: usize = 64 << 10;

/// Bytes read after a small read (and the first read of a tunnel): small messages (a device's
/// requests, a ping) then come in a buffer the allocator hands out from its per-thread cache,
/// not a [`CHUNK`] that goes through its large-object path (and may fault fresh pages in) on
/// every message. A read that fills it makes the next one a whole chunk.
const SMALL_READ: usize = 4 << 10;

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// An end closed (both directions finished, or a WebSocket end closed).
    Closed,
    /// An end failed (reset, protocol error).
    Failed,
    /// No byte moved for `tunnelIdleTimeout`.
    Idle,
    /// A WebSocket end answered no keepalive ping within `keepAliveTimeout`.
    KeepAlive,
    /// The broker's grace period after a stop signal ran out.
    Shutdown,
}

impl EndReason {
    /// The name used in the statistics log.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Failed => "failed",
            EndReason::Idle => "idle",
            EndReason::KeepAlive => "keepalive",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// What a finished tunnel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Payload bytes delivered from the first end to the second.
    pub a_to_b: u64,
    /// Payload bytes delivered from the second end to the first.
    pub b_to_a: u64,
    pub reason: EndReason,
}

/// One end of a tunnel: its carrier and the bytes that came from it before the switch.
pub struct TunnelEnd {
    pub wire: Wire,
    /// What this end sent that the broker already read during the handshake; it goes out first.
    pub early_data: EarlyData,
    /// A WebSocket end that negotiated half-close (see the module doc).
    pub half_close: bool,
    /// Its statistics entry: bytes are counted as they are delivered.
    pub stats: Option<ConnHandle>,
}

/// How the ends are told the tunnel is over, by how it ended (a shutdown always says
/// `Stop server`, code 1000).
pub struct Farewell {
    /// After a normal end (an end closed, or both directions finished).
    pub closed: (CloseKind, &'static str),
    /// After a failure, a keepalive timeout or the idle time.
    pub failed: (CloseKind, &'static str),
    /// Called once the tunnel stopped moving, before the closing handshakes (which may take a
    /// moment): what the tunnel held (a meeting's places) is free at once.
    pub on_end: Option<Box<dyn FnOnce() + Send>>,
    /// Payload bytes moved so far, both ways, counted as they move (what a monitor shows of a
    /// tunnel that has no statistics entry, such as a rendezvous meeting).
    pub live_bytes: Option<Arc<AtomicU64>>,
}

impl Farewell {
    /// The v1 API's: `Tunnel client disconnected` with code 1011 either way (PROTOCOL §6).
    pub fn v1() -> Farewell {
        Farewell {
            closed: (CloseKind::Error, PARTNER_GONE),
            failed: (CloseKind::Error, PARTNER_GONE),
            on_end: None,
            live_bytes: None,
        }
    }
}

/// Runs the tunnel until it ends, then closes both ends (as the v1 API does).
pub async fn run(
    a: TunnelEnd,
    b: TunnelEnd,
    idle_timeout: Option<Duration>,
    hard_shutdown: CancellationToken,
) -> Report {
    run_with(a, b, idle_timeout, hard_shutdown, Farewell::v1()).await
}

/// [`run`], telling the ends `farewell`.
pub async fn run_with(
    a: TunnelEnd,
    b: TunnelEnd,
    idle_timeout: Option<Duration>,
    hard_shutdown: CancellationToken,
    mut farewell: Farewell,
) -> Report {
    let end = |end: &TunnelEnd| End {
        ws: matches!(end.wire, Wire::WebSocket(_)),
        half_close: end.half_close,
        peer: matches!(&end.wire, Wire::WebSocket(ws) if ws.is_peer()),
    };
    let (a_ends, b_ends) = (end(&a), end(&b));
    let mut tunnel = Tunnel {
        ab: Pump::new(a.early_data, a_ends, b_ends),
        ba: Pump::new(b.early_data, b_ends, a_ends),
        a: a.wire,
        b: b.wire,
        a_stats: a.stats,
        b_stats: b.stats,
        idle: idle_timeout.map(|timeout| IdleTimer {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            last_activity: Instant::now(),
        }),
        shutdown: Box::pin(hard_shutdown.cancelled_owned()),
        live_bytes: farewell.live_bytes.take(),
    };
    let reason = poll_fn(|cx| tunnel.poll(cx)).await;
    let report = Report { a_to_b: tunnel.ab.delivered, b_to_a: tunnel.ba.delivered, reason };
    if let Some(on_end) = farewell.on_end {
        on_end();
    }
    let (kind, text) = match reason {
        EndReason::Shutdown => (CloseKind::Shutdown, STOP_SERVER),
        EndReason::Closed => farewell.closed,
        EndReason::Failed | EndReason::Idle | EndReason::KeepAlive => farewell.failed,
    };
    let cut = matches!(reason, EndReason::Failed | EndReason::KeepAlive | EndReason::Shutdown);
    // Boxed: the closing handshakes are short-lived and big; inline they would enlarge every
    // tunnel's task for its whole life (an async fn's state is as large as its largest phase).
    Box::pin(async {
        tokio::join!(close_end(tunnel.a, kind, text, cut), close_end(tunnel.b, kind, text, cut))
    })
    .await;
    report
}

/// Closes one end. A `cut` stream is dropped without a clean shutdown, so a TLS peer reads an end
/// without close_notify: the truth that bytes may have been lost on the way. So is a cut link to
/// another node, WebSocket-shaped or not: the reset tells that node's relay it was a cut.
async fn close_end(wire: Wire, kind: CloseKind, reason: &str, cut: bool) {
    match wire {
        Wire::Stream(stream) if cut => drop(stream),
        Wire::WebSocket(ws) if cut && ws.is_peer() => drop(ws),
        wire => wire.close(kind, reason).await,
    }
}

/// What a pump needs to know of an end.
#[derive(Debug, Clone, Copy)]
struct End {
    ws: bool,
    half_close: bool,
    /// A link to another cluster node carrying its client's WebSocket messages
    /// ([`crate::transport::websocket::WebSocket::peer`]).
    peer: bool,
}

struct IdleTimer {
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    last_activity: Instant,
}

struct Tunnel {
    a: Wire,
    b: Wire,
    a_stats: Option<ConnHandle>,
    b_stats: Option<ConnHandle>,
    ab: Pump,
    ba: Pump,
    idle: Option<IdleTimer>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    live_bytes: Option<Arc<AtomicU64>>,
}

impl Tunnel {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<EndReason> {
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(EndReason::Shutdown);
        }
        let before = self.ab.delivered + self.ba.delivered;
        let (a_stats, b_stats) = (self.a_stats.as_ref(), self.b_stats.as_ref());
        let ab = if !self.ab.finished {
            Some(self.ab.poll(cx, &mut self.a, &mut self.b, a_stats, b_stats))
        } else if self.ab.watch {
            Some(poll_watch(cx, &mut self.a))
        } else {
            None
        };
        let ba = if !self.ba.finished {
            Some(self.ba.poll(cx, &mut self.b, &mut self.a, b_stats, a_stats))
        } else if self.ba.watch {
            Some(poll_watch(cx, &mut self.b))
        } else {
            None
        };
        let moved = self.ab.delivered + self.ba.delivered - before;
        if moved > 0
            && let Some(live) = &self.live_bytes
        {
            live.fetch_add(moved, Ordering::Relaxed);
        }
        for step in [ab, ba].into_iter().flatten() {
            match step {
                Poll::Ready(PumpEnd::Failed) => return Poll::Ready(EndReason::Failed),
                Poll::Ready(PumpEnd::Silent) => return Poll::Ready(EndReason::KeepAlive),
                Poll::Ready(PumpEnd::Closed) => return Poll::Ready(EndReason::Closed),
                Poll::Ready(PumpEnd::HalfClosed) | Poll::Pending => {}
            }
        }
        if self.ab.finished && self.ba.finished {
            return Poll::Ready(EndReason::Closed);
        }
        if let Some(idle) = &mut self.idle {
            if self.ab.delivered + self.ba.delivered != before {
                idle.last_activity = Instant::now();
            }
            while idle.sleep.as_mut().poll(cx).is_ready() {
                let deadline = idle.last_activity + idle.timeout;
                if deadline <= Instant::now() {
                    return Poll::Ready(EndReason::Idle);
                }
                idle.sleep.as_mut().reset(deadline);
            }
        }
        Poll::Pending
    }
}

/// How a direction ended.
enum PumpEnd {
    /// Stream to stream: the source's FIN was passed on; the other direction goes on.
    HalfClosed,
    /// The source closed and the tunnel must end (a WebSocket was involved).
    Closed,
    /// A read or write failed.
    Failed,
    /// The source answered no keepalive ping.
    Silent,
}

/// One direction of a tunnel.
struct Pump {
    /// Stream source: bytes read and not yet written (to a stream), or a held-back partial UTF-8
    /// character (to a WebSocket).
    buf: BytesMut,
    /// WebSocket source to stream destination: the payload being written.
    payload: Bytes,
    /// Message waiting for the WebSocket destination.
    message: Option<Message>,
    /// Early frames from a WebSocket source, for a WebSocket destination.
    queued: VecDeque<Message>,
    src_is_ws: bool,
    dst_is_ws: bool,
    /// The source or the destination is a link to another cluster node (see [`End::peer`]).
    src_peer: bool,
    dst_peer: bool,
    /// The source is a link that half-closed: it is still read for the other node's close or
    /// cut, which ends the tunnel (on one node the partner's close would end it the same way).
    watch: bool,
    /// The source is a WebSocket whose empty binary message ends its direction.
    src_half_close: bool,
    /// The destination is a WebSocket that gets an empty binary message when this direction
    /// ends normally.
    dst_half_close: bool,
    src_ended: bool,
    /// The source ended its direction only (a FIN or a half-close marker), not the connection.
    src_half_closed: bool,
    src_failed: bool,
    /// The source failed by the keepalive's timeout.
    src_silent: bool,
    /// The end-of-direction marker went to the destination.
    marker_sent: bool,
    need_flush: bool,
    finished: bool,
    delivered: u64,
    /// The last read from a stream source filled a [`SMALL_READ`]: the next gets a [`CHUNK`].
    busy: bool,
    /// What `buf` held went to a link as a chunk that still shares its allocation: the rest of
    /// that allocation is read into before a new one is made, so chunks in flight on a link that
    /// pushes back pin no more memory than their own bytes (and one buffer's tail).
    lent: bool,
}

impl Pump {
    fn new(early_data: EarlyData, src: End, dst: End) -> Pump {
        let (src_is_ws, dst_is_ws) = (src.ws, dst.ws);
        let mut pump = Pump {
            buf: BytesMut::new(),
            payload: Bytes::new(),
            message: None,
            queued: VecDeque::new(),
            src_is_ws,
            dst_is_ws,
            src_peer: src.peer,
            dst_peer: dst.peer,
            watch: false,
            src_half_close: src.ws && src.half_close,
            dst_half_close: dst.ws && dst.half_close,
            src_ended: false,
            src_half_closed: false,
            src_failed: false,
            src_silent: false,
            marker_sent: false,
            need_flush: false,
            finished: false,
            delivered: 0,
            busy: false,
            lent: false,
        };
        match early_data {
            EarlyData::Bytes(bytes) => {
                pump.buf.extend_from_slice(&bytes);
                if dst_is_ws {
                    pump.message = next_message(&mut pump.buf, false);
                }
            }
            EarlyData::Frames(mut frames) => {
                // A half-close marker among the early frames ends the direction there.
                let marker = frames.iter().position(|m| pump.src_half_close && is_marker(m));
                if let Some(at) = marker {
                    frames.truncate(at);
                }
                if dst_is_ws {
                    pump.queued = frames.into();
                } else {
                    let payload: Vec<u8> = frames.into_iter().flat_map(|m| m.into_data()).collect();
                    pump.payload = Bytes::from(payload);
                }
                if marker.is_some() {
                    pump.end_source(false, true);
                }
            }
        }
        pump
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut Wire,
        dst: &mut Wire,
        src_stats: Option<&ConnHandle>,
        dst_stats: Option<&ConnHandle>,
    ) -> Poll<PumpEnd> {
        let before = self.delivered;
        let result = self.poll_inner(cx, src, dst);
        // Counted once per poll, not per write: a few atomics per batch of chunks.
        let moved = self.delivered - before;
        if moved > 0 {
            if let Some(stats) = src_stats {
                stats.sent(moved);
            }
            if let Some(stats) = dst_stats {
                stats.received(moved);
            }
        }
        if result.is_ready() {
            self.finished = true;
        }
        result
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>, src: &mut Wire, dst: &mut Wire) -> Poll<PumpEnd> {
        loop {
            // 1. Hand everything pending to the destination before reading more.
            match ready!(self.poll_write_pending(cx, dst)) {
                Ok(()) => {}
                Err(_) => return Poll::Ready(PumpEnd::Failed),
            }
            // 2. The source is done and everything it sent is out: pass the end on.
            if self.src_ended {
                return self.poll_finish(cx, dst);
            }
            // 3. Read more.
            match self.poll_read(cx, src) {
                Poll::Ready(()) => continue,
                Poll::Pending => {
                    if self.need_flush {
                        match poll_flush(dst, cx) {
                            Poll::Ready(Ok(())) => self.need_flush = false,
                            Poll::Ready(Err(_)) => return Poll::Ready(PumpEnd::Failed),
                            Poll::Pending => {}
                        }
                    }
                    self.release_idle_buffer();
                    return Poll::Pending;
                }
            }
        }
    }

    /// The source has nothing now. If nothing of it is waiting either, give the read buffer back:
    /// an idle tunnel then holds no relay buffer at all (64 KiB per direction otherwise, for as
    /// long as the tunnel lives), and a busy one allocates again on its next read.
    fn release_idle_buffer(&mut self) {
        // Not `capacity() > 0`: a buffer advanced to its very end has no capacity left and still
        // holds its allocation.
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Writes buffered bytes or the pending message. Ready(Ok) means nothing is pending.
    fn poll_write_pending(&mut self, cx: &mut Context<'_>, dst: &mut Wire) -> Poll<io::Result<()>> {
        match dst {
            Wire::Stream(stream) => {
                // Only one of the two holds data: `buf` for stream sources, `payload` for
                // WebSocket sources.
                loop {
                    let data: &[u8] = if self.payload.is_empty() { &self.buf } else { &self.payload };
                    if data.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    if let Some(link) = link_of(stream) {
                        // Handed over, not copied.
                        let n = ready!(link.poll_send_capacity(cx, data.len()))?;
                        let chunk = match self.payload.is_empty() {
                            true => {
                                self.lent = true;
                                self.buf.split_to(n).freeze()
                            }
                            false => self.payload.split_to(n),
                        };
                        link.send_chunk(chunk)?;
                        self.delivered += n as u64;
                        self.need_flush = true;
                        continue;
                    }
                    let n = ready!(Pin::new(&mut **stream).poll_write(cx, data))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    if self.payload.is_empty() {
                        self.buf.advance(n);
                    } else {
                        self.payload.advance(n);
                        if self.payload.is_empty() {
                            // An advanced-to-empty `Bytes` still holds the whole message.
                            self.payload = Bytes::new();
                        }
                    }
                    self.delivered += n as u64;
                    self.need_flush = true;
                }
            }
            Wire::WebSocket(ws) => {
                while self.message.is_some() || !self.queued.is_empty() {
                    ready!(Pin::new(&mut **ws).poll_ready(cx)).map_err(ws_error)?;
                    let message =
                        self.message.take().or_else(|| self.queued.pop_front()).expect("checked above");
                    let len = message.len() as u64;
                    Pin::new(&mut **ws).start_send(message).map_err(ws_error)?;
                    self.delivered += len;
                    self.need_flush = true;
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Reads once from the source into the pending slot. Ready means: something changed (data,
    /// end of source, or a control frame consumed); Pending means the source has nothing now.
    fn poll_read(&mut self, cx: &mut Context<'_>, src: &mut Wire) -> Poll<()> {
        if let Wire::Stream(stream) = src
            && !self.dst_is_ws
            && self.buf.is_empty()
            && let Some(link) = link_of(stream)
        {
            // A link's chunks are passed on as they came, not copied into `buf`.
            match ready!(link.poll_chunk(cx)) {
                Ok(Some(chunk)) => self.payload = chunk,
                Ok(None) => self.end_source(false, true),
                Err(_) => self.end_source(true, false),
            }
            return Poll::Ready(());
        }
        match src {
            Wire::Stream(stream) => {
                if !(self.lent && self.buf.capacity() - self.buf.len() >= SMALL_READ) {
                    self.buf.reserve(if self.busy { CHUNK } else { SMALL_READ });
                    self.lent = false;
                }
                match ready!(tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut self.buf)) {
                    Ok(0) => self.end_source(false, true),
                    Ok(n) => {
                        self.busy = n >= SMALL_READ;
                        if self.dst_is_ws {
                            self.message = next_message(&mut self.buf, false);
                        }
                    }
                    // A TLS peer that closes the socket without close_notify did not say it was
                    // done: its partner must not take that for a finished transfer.
                    Err(_) => self.end_source(true, false),
                }
            }
            Wire::WebSocket(ws) => match ready!(Pin::new(&mut **ws).poll_next(cx)) {
                Some(Ok(message)) if self.src_half_close && is_marker(&message) => {
                    self.watch = self.src_peer;
                    self.end_source(false, true)
                }
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    if self.dst_is_ws {
                        self.message = Some(message);
                    } else {
                        self.payload = match message {
                            Message::Text(text) => Bytes::from(text),
                            Message::Binary(data) => data,
                            _ => unreachable!("matched above"),
                        };
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // A half-closing client closes only after its marker: a close before it is a cut.
                // Another node closes its link only after a normal end (a cut resets it).
                Some(Ok(Message::Close(_))) | None => {
                    self.end_source(self.src_half_close && !self.src_peer, false)
                }
                Some(Err(error)) => {
                    self.src_silent = is_keepalive_timeout(&error);
                    self.end_source(true, false)
                }
            },
        }
        Poll::Ready(())
    }

    fn end_source(&mut self, failed: bool, half_closed: bool) {
        self.src_ended = true;
        self.src_failed = failed;
        self.src_half_closed = half_closed;
        if self.dst_is_ws && !self.buf.is_empty() {
            // A partial character at the very end can never complete: send it as it is.
            self.message = Some(Message::Binary(self.buf.split().freeze()));
        }
    }

    /// Everything the source sent is written: flush, then pass the end on.
    fn poll_finish(&mut self, cx: &mut Context<'_>, dst: &mut Wire) -> Poll<PumpEnd> {
        if ready!(poll_flush(dst, cx)).is_err() {
            return Poll::Ready(PumpEnd::Failed);
        }
        self.need_flush = false;
        if self.src_failed {
            return Poll::Ready(if self.src_silent { PumpEnd::Silent } else { PumpEnd::Failed });
        }
        match dst {
            // The whole tunnel ends: the link's close frame tells the other node, whose relay
            // gives its client the marker (if it takes one) and the close, as on one node.
            Wire::WebSocket(_) if self.dst_peer && !self.src_half_closed => Poll::Ready(PumpEnd::Closed),
            Wire::Stream(stream) if self.src_half_closed => {
                // Half-close: the destination learns that no more bytes come; it may still send.
                // A failure means the destination is gone already, which ends this direction
                // just the same; its own read side reports how it ended.
                let _ = ready!(Pin::new(&mut **stream).poll_shutdown(cx));
                Poll::Ready(PumpEnd::HalfClosed)
            }
            Wire::Stream(_) => Poll::Ready(PumpEnd::Closed),
            Wire::WebSocket(ws) if self.dst_half_close => {
                if !self.marker_sent {
                    if ready!(Pin::new(&mut **ws).poll_ready(cx)).is_err()
                        || Pin::new(&mut **ws).start_send(Message::Binary(Bytes::new())).is_err()
                    {
                        return Poll::Ready(PumpEnd::Failed);
                    }
                    self.marker_sent = true;
                }
                if ready!(Pin::new(&mut **ws).poll_flush(cx)).is_err() {
                    return Poll::Ready(PumpEnd::Failed);
                }
                Poll::Ready(if self.src_half_closed { PumpEnd::HalfClosed } else { PumpEnd::Closed })
            }
            // A plain WebSocket cannot learn of a half-close: a marker's tunnel stays open until
            // someone closes (nothing is lost that way); a FIN closes it, as the reference does.
            Wire::WebSocket(_) if self.src_half_closed && self.src_is_ws => Poll::Ready(PumpEnd::HalfClosed),
            Wire::WebSocket(_) => Poll::Ready(PumpEnd::Closed),
        }
    }
}

/// A link source after its marker: its close ends the tunnel normally, a cut or anything else
/// ends it as failed.
fn poll_watch(cx: &mut Context<'_>, source: &mut Wire) -> Poll<PumpEnd> {
    let Wire::WebSocket(ws) = source else { return Poll::Pending };
    loop {
        return match ready!(Pin::new(&mut **ws).poll_next(cx)) {
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => Poll::Ready(PumpEnd::Closed),
            Some(Ok(_)) | Some(Err(_)) => Poll::Ready(PumpEnd::Failed),
        };
    }
}

/// The half-close marker: an empty binary message.
fn is_marker(message: &Message) -> bool {
    matches!(message, Message::Binary(data) if data.is_empty())
}

fn poll_flush(wire: &mut Wire, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    match wire {
        Wire::Stream(stream) => Pin::new(&mut **stream).poll_flush(cx),
        Wire::WebSocket(ws) => Pin::new(&mut **ws).poll_flush(cx).map_err(ws_error),
    }
}

fn ws_error(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    crate::transport::connection::ws_to_io(error)
}
