//! A registered TunnelProxy server: one actor per server connection plus a writer task.
//!
//! The actor owns everything about the server: its client table (socket address → client), the
//! SLIP decoder for what the server sends, and the JSON channel on address 0. It never writes to
//! the socket itself; every outgoing byte goes through a queue to the writer task, so a server
//! that stops reading slows only what is addressed to it and never blocks the actor's reading.
//!
//! Memory stays bounded in both directions:
//! * client → server: each client may have at most [`CLIENT_IN_FLIGHT`] bytes queued for the
//!   writer; past that the client's task waits (and TCP slows that client down), not the others.
//! * server → client: each client has a queue of at most [`CLIENT_QUEUE_LIMIT`] bytes; a client
//!   that lets it overflow is disconnected (the server gets `ClientDisconnected`), because the
//!   one server connection cannot be slowed down for one client without stalling all of them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use remoteproxy_wire::{self as slip, Frame, FrameError, JSON_RPC_ADDRESS};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::{Instant, sleep};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::api::{TunnelProxyError, V2_API, common_answer};
use super::control::{
    CLIENT_IN_FLIGHT, Control, ControlReceiver, Join, JoinRefusal, Joined, Kick, Outgoing, OutgoingReceiver,
    OutgoingSender, Upstream,
};
use super::registry::{Guard, Refusal};
use super::{Carrier, TunnelProxyContext};
use crate::protocol::reasons::{self, STOP_SERVER};
use crate::protocol::{DecodeError, Decoder, RpcError, message};
use crate::stats::ConnHandle;
use crate::transport::Exit;
use crate::transport::halves::WriteHalf;
use crate::transport::websocket::CloseKind;

/// Largest SLIP payload accepted from a server; longer frames are dropped.
pub const MAX_FRAME: usize = 1 << 20;

/// Bytes the server may have waiting on their way to one client.
pub const CLIENT_QUEUE_LIMIT: usize = 4 << 20;

/// Bytes of the broker's own JSON replies waiting for the server.
const JSON_IN_FLIGHT: usize = 1 << 20;

/// The writer sends at most this much in one write, gathering small frames.
const WRITE_BATCH: usize = 256 << 10;

struct ClientSlot {
    id: u64,
    uuid: Uuid,
    data: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    kick: Option<oneshot::Sender<Kick>>,
}

/// Serves a registered server until its connection ends, then closes all its clients.
/// `early` are bytes the server sent behind its `RegisterServer` call: the first SLIP bytes.
pub async fn run(
    ctx: Arc<TunnelProxyContext>,
    carrier: Carrier,
    uuid: Uuid,
    name: String,
    guard: Guard,
    mut control: ControlReceiver,
) {
    // `_ticket` lives to the end: the connection counts against the limits until it is gone.
    let Carrier { mut reader, writer, early, stats, ticket: _ticket } = carrier;
    let (out, out_rx) = futures_channel::mpsc::unbounded();
    let mut writer_task = tokio::spawn(write_loop(writer, out_rx));
    let mut writer_done = false;
    let mut actor = Actor {
        ctx: ctx.clone(),
        uuid,
        clients: HashMap::new(),
        next_address: 1,
        next_id: AtomicU64::new(1),
        out,
        json_budget: Arc::new(Semaphore::new(JSON_IN_FLIGHT)),
        slip: slip::Decoder::new(MAX_FRAME),
        json: Decoder::new(ctx.max_message_size),
        stats,
    };
    info!(server = %uuid, %name, "TunnelProxy server registered");
    let idle_limit = ctx.timeouts.tunnel_proxy_server;
    let mut idle = pin!(sleep(idle_limit));
    // The busy phases (feeding bytes, serving a control request) are boxed: the task keeps only
    // the waiting state (the select below) for an idle server's whole life.
    let mut exit = Box::pin(actor.feed(&early)).await.err();
    drop(early);
    while exit.is_none() {
        tokio::select! {
            biased;
            _ = ctx.hard_stop.cancelled() => exit = Some(Exit::shutdown()),
            // A stopping broker waits (up to its grace period) only for tunnels: a server
            // without clients goes at once, and one with clients when its last one leaves.
            _ = ctx.stop.cancelled(), if actor.clients.is_empty() => exit = Some(Exit::shutdown()),
            Some(request) = control.next() => Box::pin(actor.control(request)).await,
            chunk = reader.read() => match chunk {
                Ok(Some(bytes)) => {
                    idle.as_mut().reset(Instant::now() + idle_limit);
                    exit = Box::pin(actor.feed(&bytes)).await.err();
                }
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    info!(server = %uuid, "TunnelProxy server answered no keepalive; closing it");
                    exit = Some(Exit::Done);
                }
                Ok(None) | Err(_) => exit = Some(Exit::Done),
            },
            _ = &mut idle => exit = Some(Exit::error(reasons::INACTIVE)),
            // The writer stops when the socket fails.
            _ = &mut writer_task, if !writer_done => {
                writer_done = true;
                exit = Some(Exit::Done);
            }
        }
    }
    // Free the uuid first, so the server can register again at once.
    drop(guard);
    let clients = actor.clients.len();
    let shutdown = matches!(exit, Some(Exit::Close(CloseKind::Shutdown, _)));
    for (_, mut slot) in actor.clients.drain() {
        let kick = if shutdown { Kick::Now(STOP_SERVER) } else { Kick::AfterQueue(reasons::SERVER_GONE) };
        if let Some(sender) = slot.kick.take() {
            let _ = sender.send(kick);
        }
    }
    // The writer stops at this even while kicked clients still hold senders to it.
    let (kind, reason) = match exit {
        Some(Exit::Close(kind, reason)) => (kind, reason),
        _ => (CloseKind::Error, Cow::Borrowed(reasons::SERVER_GONE)),
    };
    debug!(%reason, "closing the server connection");
    let _ = actor.out.unbounded_send(Outgoing::Close { kind, reason });
    drop(actor);
    if !writer_done {
        let _ = writer_task.await;
    }
    info!(server = %uuid, clients, "TunnelProxy server gone");
}

/// Sends what the actor and the clients queue, batching small frames into one write.
async fn write_loop(mut writer: WriteHalf, mut queue: OutgoingReceiver) {
    let mut batch = BytesMut::new();
    let mut permits = Vec::new();
    while let Some(first) = queue.next().await {
        let mut close = None;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Data { bytes, permit } => {
                    batch.extend_from_slice(&bytes);
                    permits.push(permit);
                }
                Outgoing::Close { kind, reason } => {
                    close = Some((kind, reason));
                    break;
                }
            }
            if batch.len() < WRITE_BATCH {
                next = queue.try_recv().ok();
            }
        }
        // Taken whole, so an idle server's writer keeps no batch memory.
        if !batch.is_empty() && writer.write_binary(std::mem::take(&mut batch).freeze()).await.is_err() {
            break;
        }
        permits = Vec::new();
        if let Some((kind, reason)) = close {
            writer.close(kind, &reason).await;
            return;
        }
    }
    // The queue closed (the actor is gone) or the socket failed: dropping the receiver tells the
    // actor and the clients.
}

struct Actor {
    ctx: Arc<TunnelProxyContext>,
    uuid: Uuid,
    clients: HashMap<u16, ClientSlot>,
    next_address: u16,
    next_id: AtomicU64,
    out: OutgoingSender,
    json_budget: Arc<Semaphore>,
    slip: slip::Decoder,
    json: Decoder,
    /// The server connection's statistics entry.
    stats: ConnHandle,
}

impl Actor {
    /// Decodes bytes from the server and acts on every complete frame.
    async fn feed(&mut self, bytes: &[u8]) -> Result<(), Exit> {
        let mut frames = Vec::new();
        self.slip.decode(bytes, |frame| frames.push(frame));
        for frame in frames {
            match frame {
                Ok(Frame { address: JSON_RPC_ADDRESS, payload }) => {
                    self.json.extend(&payload);
                    self.serve_json().await?;
                }
                Ok(Frame { address, payload }) => self.deliver(address, payload).await,
                Err(FrameError::InvalidEscape) => warn!("dropped a frame with an invalid SLIP escape"),
                Err(FrameError::Oversized) => warn!("dropped a frame larger than {MAX_FRAME} bytes"),
                Err(FrameError::TooShort) => warn!("dropped a frame without a socket address"),
            }
        }
        Ok(())
    }

    /// Hands data to a client's queue, or disconnects the client when it overflows.
    async fn deliver(&mut self, address: u16, payload: Bytes) {
        let Some(slot) = self.clients.get(&address) else {
            debug!(address, "data for a socket address without a client; dropped");
            return;
        };
        let queued = slot.queued.load(Ordering::Acquire);
        if queued > 0 && queued + payload.len() > CLIENT_QUEUE_LIMIT {
            warn!(address, client = %slot.uuid, "client does not read fast enough; disconnecting it");
            self.disconnect(address, Kick::Now(reasons::TOO_SLOW)).await;
            return;
        }
        slot.queued.fetch_add(payload.len(), Ordering::AcqRel);
        self.stats.sent(payload.len() as u64);
        let _ = slot.data.send(payload);
    }

    /// Removes a client, tells it why, and tells the server.
    async fn disconnect(&mut self, address: u16, kick: Kick) {
        if let Some(mut slot) = self.clients.remove(&address) {
            if let Some(sender) = slot.kick.take() {
                let _ = sender.send(kick);
            }
            self.notify("TunnelProxy.ClientDisconnected", json!({"socketAddress": address})).await;
        }
    }

    async fn control(&mut self, request: Control) {
        match request {
            Control::Join(join) => {
                let Join { uuid, name, peer, reply } = *join;
                let Some(address) = self.allocate() else {
                    let _ = reply.send(Err(JoinRefusal::Full));
                    return;
                };
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (data_tx, data_rx) = mpsc::unbounded_channel();
                let (kick_tx, kick_rx) = oneshot::channel();
                let queued = Arc::new(AtomicUsize::new(0));
                let joined = Joined {
                    server_stats: self.stats.entry().clone(),
                    address,
                    id,
                    data: data_rx,
                    queued: queued.clone(),
                    kick: kick_rx,
                    upstream: Upstream {
                        address,
                        writer: self.out.clone(),
                        budget: Arc::new(Semaphore::new(CLIENT_IN_FLIGHT)),
                    },
                };
                // The server hears of the client before any of its data can arrive.
                let params = json!({
                    "clientName": name,
                    "clientPeerAddress": peer,
                    "clientUuid": format!("{{{}}}", uuid.hyphenated()),
                    "socketAddress": address,
                });
                self.notify("TunnelProxy.ClientConnected", params).await;
                if reply.send(Ok(joined)).is_ok() {
                    let slot = ClientSlot { id, uuid, data: data_tx, queued, kick: Some(kick_tx) };
                    self.clients.insert(address, slot);
                    debug!(address, client = %uuid, "client joined");
                } else {
                    self.notify("TunnelProxy.ClientDisconnected", json!({"socketAddress": address})).await;
                }
            }
            Control::Leave { address, id } => {
                if self.clients.get(&address).is_some_and(|slot| slot.id == id) {
                    self.clients.remove(&address);
                    debug!(address, "client left");
                    self.notify("TunnelProxy.ClientDisconnected", json!({"socketAddress": address})).await;
                }
            }
        }
    }

    /// The next free socket address after the last one given, so a departed client's address is
    /// not handed out again while stale frames for it may still be on their way.
    fn allocate(&mut self) -> Option<u16> {
        if self.clients.len() >= self.ctx.max_clients_per_server {
            return None;
        }
        for _ in 0..0xFFFE {
            let address = self.next_address;
            self.next_address = if address >= 0xFFFE { 1 } else { address + 1 };
            if !self.clients.contains_key(&address) {
                return Some(address);
            }
        }
        None
    }

    /// Answers the JSON requests that arrived on address 0.
    async fn serve_json(&mut self) -> Result<(), Exit> {
        loop {
            let message = match self.json.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(DecodeError::Parse(text)) => return Err(self.refuse(RpcError::InvalidJson(text)).await),
                Err(DecodeError::Oversized) => return Err(self.refuse(RpcError::BufferOverflow).await),
            };
            let (request, method) = match V2_API.accept(message) {
                Ok(accepted) => accepted,
                Err(error) => return Err(self.refuse(error).await),
            };
            let id = request.id;
            if let Some(result) = common_answer(method, &request, &self.ctx.server_name) {
                self.reply(id, result).await;
                continue;
            }
            match (method.namespace, method.name) {
                ("TunnelProxy", "DisconnectClient") => {
                    let address = socket_address(request.params.get("socketAddress"));
                    let error = match address.filter(|a| self.clients.contains_key(a)) {
                        Some(address) => {
                            self.disconnect(address, Kick::AfterQueue(reasons::DISCONNECT_REQUESTED)).await;
                            TunnelProxyError::NoError
                        }
                        None => TunnelProxyError::UnknownSocketAddress,
                    };
                    self.reply(id, json!({"tunnelProxyError": error.wire_name()})).await;
                }
                ("TunnelProxy", "RegisterServer") => {
                    let result = json!({
                        "slipEnabled": false,
                        "tunnelProxyError": TunnelProxyError::AlreadyRegistered.wire_name(),
                    });
                    self.reply(id, result).await;
                    return Err(Exit::error(Refusal::AlreadyRegistered.reason()));
                }
                ("TunnelProxy", "RegisterClient") => {
                    let result = json!({"tunnelProxyError": TunnelProxyError::AlreadyRegistered.wire_name()});
                    self.reply(id, result).await;
                    return Err(Exit::error(Refusal::AlreadyRegistered.reason()));
                }
                (namespace, name) => unreachable!("{namespace}.{name} is in V2_API but has no handler"),
            }
        }
    }

    async fn refuse(&mut self, error: RpcError) -> Exit {
        warn!(server = %self.uuid, reason = error.close_reason(), "protocol error on the server's JSON channel");
        if let Some(text) = error.response_text() {
            self.send_json(&message::error(error.id(), &text)).await;
        }
        Exit::Close(CloseKind::Error, error.close_reason().into())
    }

    async fn reply(&mut self, id: i64, params: Value) {
        self.send_json(&message::success(id, params)).await;
    }

    async fn notify(&mut self, name: &str, params: Value) {
        let id = self.ctx.notification_ids.fetch_add(1, Ordering::Relaxed);
        self.send_json(&message::notification(id, name, params)).await;
    }

    /// Queues a JSON message on address 0. Waits while [`JSON_IN_FLIGHT`] bytes of replies are
    /// unsent, so a server that never reads cannot grow the queue.
    async fn send_json(&mut self, value: &Value) {
        let frame = slip::encode(JSON_RPC_ADDRESS, &message::encode(value));
        let permits = frame.len().min(JSON_IN_FLIGHT) as u32;
        let Ok(permit) = self.json_budget.clone().acquire_many_owned(permits).await else { return };
        let _ = self.out.unbounded_send(Outgoing::Data { bytes: frame, permit });
    }
}

/// A `socketAddress` param (validated as a scalar) as a client address.
fn socket_address(value: Option<&Value>) -> Option<u16> {
    let number = match value? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    u16::try_from(number).ok().filter(|a| (1..=0xFFFE).contains(a))
}
