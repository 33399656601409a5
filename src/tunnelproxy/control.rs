//! What passes between a registered server's actor and the rest of the broker: the requests
//! a session sends it ([`Control`]), what a joining client gets back ([`Joined`], [`Upstream`])
//! and how the actor ends a client ([`Kick`]). Its own module so that the registry, the sessions
//! and the actor all depend on it and not on each other.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use remoteproxy_wire as slip;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use uuid::Uuid;

use crate::stats::ConnStats;
use crate::transport::websocket::CloseKind;

/// Bytes a client may have waiting on its way to the server.
pub const CLIENT_IN_FLIGHT: usize = 256 << 10;

/// The actor's inbox, and the queue to its writer, are futures-channel's: those allocate a node
/// per message, where tokio's allocate a block of 32 slots with the channel, memory that a
/// registered server sitting idle for days would hold for nothing.
pub type ControlSender = futures_channel::mpsc::Sender<Control>;
pub type ControlReceiver = futures_channel::mpsc::Receiver<Control>;
pub(super) type OutgoingSender = futures_channel::mpsc::UnboundedSender<Outgoing>;
pub(super) type OutgoingReceiver = futures_channel::mpsc::UnboundedReceiver<Outgoing>;

/// A server actor's inbox holding up to `capacity` requests.
pub fn control_channel(capacity: usize) -> (ControlSender, ControlReceiver) {
    futures_channel::mpsc::channel(capacity)
}

/// What a server's actor is asked from outside.
pub enum Control {
    /// A client registered for this server. Boxed: the channel's first block of slots is
    /// allocated with it, once per registered server, and sized by the largest message.
    Join(Box<Join>),
    /// A client's connection ended.
    Leave {
        address: u16,
        /// Its join id (socket addresses are reused).
        id: u64,
    },
}

/// A client that registered for a server.
pub struct Join {
    pub uuid: Uuid,
    pub name: String,
    /// Its IP address as text (empty for unix clients).
    pub peer: String,
    /// Where the actor answers.
    pub reply: oneshot::Sender<Result<Joined, JoinRefusal>>,
}

/// Why the actor refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    /// `maxClientsPerServer` reached (or no socket address left).
    Full,
}

/// How the actor tells a client to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Deliver what is queued, then close with this reason.
    AfterQueue(&'static str),
    /// Close now, dropping what is queued.
    Now(&'static str),
}

/// What a joined client gets.
pub struct Joined {
    /// The server connection's statistics entry (its id, and its counter of bytes received).
    pub server_stats: Arc<ConnStats>,
    /// Its socket address on the server connection.
    pub address: u16,
    pub id: u64,
    /// Data the server sends it, in order.
    pub data: mpsc::UnboundedReceiver<Bytes>,
    /// Bytes in `data` not yet written; the client subtracts what it wrote.
    pub queued: Arc<AtomicUsize>,
    /// The actor's instruction to end.
    pub kick: oneshot::Receiver<Kick>,
    /// The way to the server.
    pub upstream: Upstream,
}

/// A client's way to send frames to the server.
pub struct Upstream {
    pub(super) address: u16,
    pub(super) writer: OutgoingSender,
    pub(super) budget: Arc<Semaphore>,
}

impl Upstream {
    /// Sends `payload` to the server as one frame from this client. Waits while the client has
    /// [`CLIENT_IN_FLIGHT`] bytes on their way already. `Err` when the server is gone.
    pub async fn send(&self, payload: &[u8]) -> Result<(), ()> {
        let frame = slip::encode(self.address, payload);
        let permits = frame.len().min(CLIENT_IN_FLIGHT) as u32;
        let permit = self.budget.clone().acquire_many_owned(permits).await.map_err(|_| ())?;
        self.writer.unbounded_send(Outgoing::Data { bytes: frame, permit }).map_err(|_| ())
    }
}

pub(super) enum Outgoing {
    /// Bytes to write; the permit returns their budget once written.
    Data { bytes: Bytes, permit: OwnedSemaphorePermit },
    /// Write a close and stop, even while clients still hold senders.
    Close { kind: CloseKind, reason: Cow<'static, str> },
}
