//! One client of a registered server, as the server's application sees it.
//!
//! All clients share the server's single connection to the broker. What a client sends arrives
//! in a per-client queue filled by the demultiplexer ([`super::mux`]), bounded in bytes; what the
//! application writes becomes SLIP frames for the client's socket address, queued (bounded) for
//! the connection's one writer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::tunnelproxy::outgoing::{ClientState, Outgoing, disconnect_frame};

/// Largest payload of one SLIP frame this side writes. Larger writes are split; the bound keeps
/// one client from holding the shared connection for long and stays far below any broker's
/// frame limit.
pub(crate) const MAX_WRITE_PAYLOAD: usize = 16 << 10;

/// A client that the broker connected to this server.
#[derive(Debug)]
pub struct IncomingClient {
    /// The client's `clientName`.
    pub name: String,
    /// The client's `clientUuid`, without the braces the broker adds.
    pub uuid: String,
    /// The client's IP address as the broker saw it (no port).
    pub peer_address: String,
    /// The SLIP socket address the broker gave the client (1..=0xFFFE); unique among the
    /// connected clients of this server, but reused after a client leaves.
    pub socket_address: u16,
    /// The byte pipe to the client.
    pub stream: IncomingStream,
}

/// The server's end of one client's pipe: `AsyncRead + AsyncWrite`.
///
/// * Reading returns what the client sent, and end of stream once the broker reports the client
///   gone (`ClientDisconnected`). When the connection to the broker is lost instead, reading
///   fails with [`io::ErrorKind::ConnectionAborted`]. When the application lets more than 4 MiB
///   of the client's data pile up unread, the client is disconnected (the other clients go on)
///   and reading fails after the queued bytes: data was lost.
/// * Each write becomes one SLIP frame (at most 16 KiB of payload; larger writes are partial).
///   Writes wait while the connection's write queue is full, and fail with
///   [`io::ErrorKind::BrokenPipe`] once the client is gone.
/// * `flush` returns at once: frames are queued for the connection's writer, which flushes
///   whenever its queue runs empty.
/// * `shutdown` asks the broker to disconnect the client (`TunnelProxy.DisconnectClient`),
///   after everything written before it. The v2 API has no half-close: this ends both
///   directions. Dropping the stream without `shutdown` does the same.
#[derive(Debug)]
pub struct IncomingStream {
    state: Arc<ClientState>,
    data: mpsc::UnboundedReceiver<Bytes>,
    pending: Bytes,
    writer: PollSender<Outgoing>,
    ids: Arc<AtomicI64>,
    /// Tells the demultiplexer about a drop without `shutdown`, which cannot wait for room in
    /// the write queue. Holds at most one entry per client.
    dropped: mpsc::UnboundedSender<Arc<ClientState>>,
    shut_down: bool,
}

impl IncomingStream {
    pub(crate) fn new(
        state: Arc<ClientState>,
        data: mpsc::UnboundedReceiver<Bytes>,
        writer: mpsc::Sender<Outgoing>,
        ids: Arc<AtomicI64>,
        dropped: mpsc::UnboundedSender<Arc<ClientState>>,
    ) -> IncomingStream {
        IncomingStream {
            state,
            data,
            pending: Bytes::new(),
            writer: PollSender::new(writer),
            ids,
            dropped,
            shut_down: false,
        }
    }

    /// The client's SLIP socket address.
    pub fn socket_address(&self) -> u16 {
        self.state.address
    }

    /// Whether the broker reported the client gone.
    pub fn is_disconnected(&self) -> bool {
        self.state.is_disconnected()
    }

    fn gone(&self) -> io::Error {
        if self.state.is_overflowed() {
            overflowed()
        } else if self.state.is_disconnected() {
            io::Error::new(io::ErrorKind::BrokenPipe, "the client disconnected")
        } else if self.shut_down {
            io::Error::new(io::ErrorKind::BrokenPipe, "the stream was shut down")
        } else {
            lost()
        }
    }
}

fn overflowed() -> io::Error {
    io::Error::other(
        "the application did not read this client's data in time; the client was disconnected and data was lost",
    )
}

fn lost() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the connection to the broker was lost")
}

impl AsyncRead for IncomingStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        while this.pending.is_empty() {
            match ready!(this.data.poll_recv(cx)) {
                Some(chunk) => {
                    this.state.queued.fetch_sub(chunk.len(), Ordering::AcqRel);
                    this.pending = chunk;
                }
                // The demultiplexer marks the client before it drops the queue's sender.
                None if this.state.is_overflowed() => return Poll::Ready(Err(overflowed())),
                None if this.state.is_disconnected() => return Poll::Ready(Ok(())),
                None => return Poll::Ready(Err(lost())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for IncomingStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state.is_disconnected() || this.state.is_overflowed() || this.shut_down {
            return Poll::Ready(Err(this.gone()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ready!(this.writer.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(lost()));
        }
        let n = data.len().min(MAX_WRITE_PAYLOAD);
        let frame = remoteproxy_wire::encode(this.state.address, &data[..n]);
        let item = Outgoing::for_client(frame, this.state.clone());
        if this.writer.send_item(item).is_err() {
            return Poll::Ready(Err(lost()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shut_down || this.state.is_disconnected() {
            return Poll::Ready(Ok(()));
        }
        if ready!(this.writer.poll_reserve(cx)).is_err() {
            // The connection is gone, and with it the client.
            this.shut_down = true;
            return Poll::Ready(Ok(()));
        }
        let id = this.ids.fetch_add(1, Ordering::Relaxed);
        let item = Outgoing::for_client(disconnect_frame(id, this.state.address), this.state.clone());
        this.shut_down = true;
        // A failure means the connection is gone, and with it the client.
        let _ = this.writer.send_item(item);
        Poll::Ready(Ok(()))
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if !self.shut_down && !self.state.is_disconnected() {
            let _ = self.dropped.send(self.state.clone());
        }
    }
}
