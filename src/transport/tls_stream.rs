//! The server side of a TLS connection, on rustls' unbuffered API, holding no buffer while idle.
//!
//! Why not `tokio-rustls`: rustls' buffered connection keeps a zero-filled 4 KiB read buffer for
//! as long as the connection lives, and a fleet of idle devices is mostly that: thousands of
//! connections that carried a few bytes and then wait for hours. Here the bytes received, the
//! bytes decrypted and the bytes to send each live in a buffer that is given back as soon as it
//! is empty, so an idle connection holds only its TLS session state (keys and sequence numbers).
//!
//! The behaviour is tokio-rustls': a read returns decrypted bytes, `Ok(0)` after the peer's
//! close_notify, and an `UnexpectedEof` error when the socket ends without one (the peer did not
//! say it was done); a write encrypts and sends what the socket takes now, keeping the rest for
//! the next write or flush; shutdown sends close_notify. Reads never write to the socket: with
//! the stream split between a reading and a writing task, a read that waited for the socket to
//! take bytes would take the writer's place in line and leave it asleep. What the TLS layer has
//! to send unasked (a KeyUpdate reply) goes out with the next write or flush, as with rustls'
//! buffered connection.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::{ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Room made for one socket read: a whole TLS record (16 KiB of payload and its overhead).
const READ_SIZE: usize = 16 * 1024 + 512;

/// Room made for a socket read after a small one (and the first of a connection): a small record
/// (a device's message, a ping) then lands in a buffer the allocator hands out from its
/// per-thread cache instead of a [`READ_SIZE`] one from its large-object path on every message.
/// A read that fills it makes the next one [`READ_SIZE`].
const SMALL_READ: usize = 4 * 1024;

/// The most plaintext taken from one write.
const WRITE_CHUNK: usize = 64 * 1024;

/// Encrypted bytes the socket has not taken yet beyond which a write waits for it.
const UNSENT_LIMIT: usize = 64 * 1024;

/// Records sent under one TLS 1.3 key before this side changes keys itself (a KeyUpdate).
/// rustls changes keys on its own only near the cipher's limit, and in the unbuffered API its
/// KeyUpdate would be sent after records already under the new key; changing keys well before
/// (2^20 records is 16 GiB) keeps rustls from ever doing it.
const RECORDS_PER_KEY: u64 = 1 << 20;

/// A server-side TLS stream over `io`.
pub struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Received TLS bytes not yet processed (a partial record); empty and unallocated between
    /// records.
    incoming: BytesMut,
    /// Decrypted bytes not yet read.
    plain: BytesMut,
    /// TLS bytes to send; `outgoing[sent..]` is what the socket has not taken yet.
    outgoing: Vec<u8>,
    sent: usize,
    /// Application data records sent since the last key change.
    records: u64,
    /// [`RECORDS_PER_KEY`] (lower in tests).
    records_per_key: u64,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// The socket ended.
    eof: bool,
    close_notify_queued: bool,
    /// The last socket read filled a [`SMALL_READ`]: the next gets [`READ_SIZE`].
    busy: bool,
}

/// What to do once the connection may send application data.
#[derive(Clone, Copy)]
enum Outbound<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// Where processing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// The handshake needs more bytes from the peer.
    Handshaking,
    /// Application data may flow (more may arrive).
    Traffic,
    /// Both sides sent close_notify.
    Closed,
}

/// Completes a TLS handshake on `io` as its server.
pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    config: Arc<ServerConfig>,
) -> io::Result<TlsStream<IO>> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut stream = TlsStream {
        io,
        conn,
        incoming: BytesMut::new(),
        plain: BytesMut::new(),
        outgoing: Vec::new(),
        sent: 0,
        records: 0,
        records_per_key: RECORDS_PER_KEY,
        peer_closed: false,
        eof: false,
        close_notify_queued: false,
        busy: false,
    };
    poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

impl<IO> TlsStream<IO> {
    /// The TLS state: how the handshake went, the client's certificates.
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    /// The same connection over `f(io)`: the socket in another form (moved between reactors).
    pub fn try_map_io<T>(self, f: impl FnOnce(IO) -> io::Result<T>) -> io::Result<TlsStream<T>> {
        Ok(TlsStream {
            io: f(self.io)?,
            conn: self.conn,
            incoming: self.incoming,
            plain: self.plain,
            outgoing: self.outgoing,
            sent: self.sent,
            records: self.records,
            records_per_key: self.records_per_key,
            peer_closed: self.peer_closed,
            eof: self.eof,
            close_notify_queued: self.close_notify_queued,
            busy: self.busy,
        })
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let progress = self.process(Outbound::Nothing)?;
            // Our flight (and, once done, the session tickets) before anything else.
            ready!(self.poll_send(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if progress == Progress::Closed || self.peer_closed || self.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                )));
            }
            ready!(self.poll_receive(cx))?;
        }
    }

    /// Reads what the socket has into `incoming`; at its end, sets `eof`.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.incoming.reserve(if self.busy { READ_SIZE } else { SMALL_READ });
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.incoming) {
            Poll::Pending => {
                // An idle connection waits here without a buffer.
                if self.incoming.is_empty() {
                    self.incoming = BytesMut::new();
                }
                Poll::Pending
            }
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(n)) => {
                self.busy = n >= SMALL_READ;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
        }
    }

    /// Writes `outgoing` to the socket until it is all taken, then gives its memory back.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Runs the TLS state machine over `incoming` until it needs more bytes from the peer:
    /// decrypted data goes to `plain`, TLS bytes to send to `outgoing`, in order, and `send` is
    /// encrypted once application data may flow. A TLS error ends the connection, with the alert
    /// that describes it queued for the peer where rustls has one.
    fn process(&mut self, send: Outbound<'_>) -> io::Result<Progress> {
        let tls13 = self.conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(error) => {
                    self.incoming.advance(discard.min(self.incoming.len()));
                    self.queue_alert();
                    return Err(tls_error(error));
                }
            };
            let stop = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        self.plain.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(&mut self.outgoing, 0, |out| encoded(encode.encode(out)))?;
                    None
                }
                // Queued in `outgoing`, which goes out in order before anything queued later.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    Some(Progress::Closed)
                }
                ConnectionState::BlockedHandshake => Some(Progress::Handshaking),
                ConnectionState::WriteTraffic(mut traffic) => {
                    match send {
                        Outbound::Nothing => Some(Progress::Traffic),
                        Outbound::Data(_) if tls13 && self.records >= self.records_per_key => {
                            // The KeyUpdate comes out of the next round, before the data.
                            traffic.refresh_traffic_keys().map_err(tls_error)?;
                            self.records = 0;
                            None
                        }
                        Outbound::Data(data) => {
                            let records = data.len().div_ceil(16 * 1024);
                            append(&mut self.outgoing, data.len() + records * 64, |out| {
                                encrypted(traffic.encrypt(data, out))
                            })?;
                            self.records += records as u64;
                            Some(Progress::Traffic)
                        }
                        Outbound::CloseNotify => {
                            append(&mut self.outgoing, 64, |out| encrypted(traffic.queue_close_notify(out)))?;
                            self.close_notify_queued = true;
                            Some(Progress::Traffic)
                        }
                    }
                }
                ConnectionState::ReadEarlyData(_) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected TLS early data"));
                }
                _ => return Err(io::Error::other("unexpected TLS connection state")),
            };
            self.incoming.advance(discard);
            if let Some(progress) = stop {
                if self.incoming.is_empty() {
                    self.incoming = BytesMut::new();
                }
                return Ok(progress);
            }
        }
    }

    /// After a TLS error: queues the alert rustls has for the peer, if any.
    fn queue_alert(&mut self) {
        loop {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if append(&mut self.outgoing, 64, |out| encoded(encode.encode(out))).is_err() {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }

    /// Encrypts `data` (not more than [`WRITE_CHUNK`] of it) into `outgoing`.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<usize> {
        let data = &data[..data.len().min(WRITE_CHUNK)];
        match self.process(Outbound::Data(data))? {
            Progress::Traffic => Ok(data.len()),
            Progress::Handshaking => Err(io::Error::other("TLS renegotiation is not supported")),
            Progress::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = buf.remaining().min(this.plain.len());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                if this.plain.is_empty() {
                    this.plain = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection without sending TLS close_notify",
                )));
            }
            ready!(this.poll_receive(cx))?;
            if let Err(error) = this.process(Outbound::Nothing) {
                // A last try to tell the peer why.
                let _ = this.poll_send(cx);
                return Poll::Ready(Err(error));
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        while this.outgoing.len() - this.sent >= UNSENT_LIMIT {
            ready!(this.poll_send(cx))?;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let taken = this.encrypt(buf)?;
        // Sends what the socket takes now; the rest goes with the next write or flush.
        if let Poll::Ready(Err(error)) = this.poll_send(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // What the TLS layer queued on its own (a KeyUpdate reply) goes too.
        this.process(Outbound::Nothing)?;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_queued {
            this.process(Outbound::CloseNotify)?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Appends what `write` puts into a slice at the end of `out`, starting with `room` bytes and
/// growing to what `write` says it needs (`Err(required)`).
fn append(
    out: &mut Vec<u8>,
    room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<io::Result<usize>, usize>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = room;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(Ok(n)) => {
                out.truncate(start + n);
                return Ok(());
            }
            Ok(Err(error)) => {
                out.truncate(start);
                return Err(error);
            }
            Err(required) if required > room => room = required,
            Err(_) => {
                out.truncate(start);
                return Err(io::Error::other("the TLS layer asked for less room than it had"));
            }
        }
    }
}

/// An encoding's outcome for [`append`]: the bytes written, or the room it needs.
fn encoded(result: Result<usize, EncodeError>) -> Result<io::Result<usize>, usize> {
    match result {
        Ok(n) => Ok(Ok(n)),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => Err(required_size),
        Err(error) => Ok(Err(io::Error::other(error))),
    }
}

/// An encryption's outcome for [`append`]: the bytes written, or the room it needs.
fn encrypted(result: Result<usize, EncryptError>) -> Result<io::Result<usize>, usize> {
    match result {
        Ok(n) => Ok(Ok(n)),
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => Err(required_size),
        Err(error) => Ok(Err(io::Error::other(error))),
    }
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
#[path = "tls_stream_tests.rs"]
mod tests;
