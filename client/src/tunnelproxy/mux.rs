//! One registered server connection: the SLIP demultiplexer, the single writer and the pinger.
//!
//! After `RegisterServer` the broker multiplexes every client over this connection. Three parts
//! run concurrently in one task, so dropping the session stops all of them:
//!
//! * the **demultiplexer** reads SLIP frames; address 0 is JSON from the broker (responses and
//!   the `ClientConnected`/`ClientDisconnected` notifications), every other address is a
//!   client's data, handed to that client's queue. The demultiplexer never waits for a client:
//!   a client whose application lets more than [`CLIENT_QUEUE_BYTES`] pile up is disconnected
//!   (`DisconnectClient`) and its stream fails after the bytes it had, so one stalled reader
//!   never stalls the other clients of the connection, and memory stays bounded (the broker
//!   treats its slow clients the same way).
//! * the **writer** owns the write half; everything (client data, `DisconnectClient`, pings)
//!   goes through one bounded queue of encoded frames, so frames never interleave and a
//!   `DisconnectClient` follows the data written before it.
//! * the **pinger** sends `TunnelProxy.Ping` every 30 s (the broker closes a server that sends
//!   nothing for 60 s) and declares the connection dead when nothing at all arrived from the
//!   broker for a whole interval after a ping, unless the demultiplexer was waiting for the
//!   application meanwhile (then it simply was not reading).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use remoteproxy_wire::{Decoder, Frame, JSON_RPC_ADDRESS};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};

use crate::error::ClientError;
use crate::tunnelproxy::TunnelProxyError;
use crate::tunnelproxy::incoming::{IncomingClient, IncomingStream};
use crate::tunnelproxy::outgoing::{ClientState, Outgoing, disconnect_frame, request_frame};
use crate::tunnelproxy::register::outcome;

/// How often the server pings the broker.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Bytes queued for one client's application before that client is disconnected.
pub const CLIENT_QUEUE_BYTES: usize = 4 << 20;
/// Encoded frames queued for the writer before writers wait.
const WRITE_QUEUE: usize = 64;
/// Largest frame payload accepted from the broker; a longer frame is dropped, not buffered.
const MAX_READ_PAYLOAD: usize = 1 << 20;
/// Bytes per read from the broker, and the most the writer gathers into one write.
const CHUNK: usize = 64 << 10;

/// Runs a registered server connection until it ends; returns why it ended. New clients go to
/// `accept`.
pub(crate) async fn run<S>(
    stream: S,
    accept: mpsc::Sender<IncomingClient>,
    ping_interval: Duration,
) -> ClientError
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    // A zero interval would make the ticker panic.
    let ping_interval = ping_interval.max(Duration::from_millis(10));
    let (reader, writer) = tokio::io::split(stream);
    let (queue, queued) = mpsc::channel(WRITE_QUEUE);
    let (dropped, dropped_streams) = mpsc::unbounded_channel();
    let ids = Arc::new(AtomicI64::new(0));
    let liveness = Liveness::default();
    let demux = Demux {
        clients: HashMap::new(),
        queue: queue.clone(),
        ids: ids.clone(),
        dropped,
        accept,
        liveness: &liveness,
    };
    tokio::select! {
        end = demux.run(reader, dropped_streams) => end,
        end = write_loop(writer, queued) => end,
        end = ping_loop(queue, &ids, &liveness, ping_interval) => end,
    }
}

/// What the pinger needs to know about the demultiplexer.
#[derive(Debug, Default)]
struct Liveness {
    /// Reads that returned data.
    reads: AtomicU64,
    /// The demultiplexer is waiting for the application right now.
    waiting: AtomicBool,
    /// ...or was, at some time since the pinger last looked.
    waited: AtomicBool,
}

impl Liveness {
    fn wait_start(&self) {
        self.waiting.store(true, Ordering::SeqCst);
        self.waited.store(true, Ordering::SeqCst);
    }

    fn wait_end(&self) {
        self.waiting.store(false, Ordering::SeqCst);
    }

    /// Whether the demultiplexer may have been prevented from reading since the last look.
    fn excused(&self) -> bool {
        let waited = self.waited.swap(false, Ordering::SeqCst);
        waited || self.waiting.load(Ordering::SeqCst)
    }
}

/// A connected client as the demultiplexer keeps it.
struct Entry {
    data: mpsc::UnboundedSender<Bytes>,
    state: Arc<ClientState>,
}

struct Demux<'a> {
    clients: HashMap<u16, Entry>,
    queue: mpsc::Sender<Outgoing>,
    ids: Arc<AtomicI64>,
    dropped: mpsc::UnboundedSender<Arc<ClientState>>,
    accept: mpsc::Sender<IncomingClient>,
    liveness: &'a Liveness,
}

impl Demux<'_> {
    async fn run<R: AsyncRead>(
        mut self,
        reader: R,
        mut dropped_streams: mpsc::UnboundedReceiver<Arc<ClientState>>,
    ) -> ClientError {
        tokio::pin!(reader);
        let mut decoder = Decoder::new(MAX_READ_PAYLOAD);
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut frames = Vec::new();
        loop {
            tokio::select! {
                // `self.dropped` keeps the channel open, so this never yields `None`.
                Some(state) = dropped_streams.recv() => {
                    if let Err(end) = self.disconnect_dropped(state).await {
                        return end;
                    }
                }
                read = reader.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => return ClientError::ServerClosed { reason: None },
                        Ok(_) => {}
                        Err(e) => return ClientError::Io(e),
                    }
                    self.liveness.reads.fetch_add(1, Ordering::SeqCst);
                    decoder.decode(&buf, |frame| frames.push(frame));
                    buf.clear();
                    buf.reserve(CHUNK);
                    for frame in frames.drain(..) {
                        if let Err(end) = self.frame(frame).await {
                            return end;
                        }
                    }
                }
            }
        }
    }

    async fn frame(&mut self, frame: Result<Frame, remoteproxy_wire::FrameError>) -> Result<(), ClientError> {
        match frame {
            Err(error) => {
                warn!(?error, "dropped an invalid SLIP frame from the broker");
                Ok(())
            }
            Ok(Frame { address: JSON_RPC_ADDRESS, payload }) => self.json(&payload).await,
            Ok(Frame { address, payload }) => {
                self.data(address, payload).await;
                Ok(())
            }
        }
    }

    async fn data(&mut self, address: u16, payload: Bytes) {
        // An empty chunk would read as end of stream.
        if payload.is_empty() {
            return;
        }
        let Some(entry) = self.clients.get(&address) else {
            debug!(address, bytes = payload.len(), "data for an unknown socket address; dropped");
            return;
        };
        trace!(address, bytes = payload.len(), "<-- client data");
        let queued = entry.state.queued.fetch_add(payload.len(), Ordering::AcqRel) + payload.len();
        if queued > CLIENT_QUEUE_BYTES {
            return self.overflowed(address).await;
        }
        // A dropped stream fails the send; its disconnect is already on the way.
        let _ = entry.data.send(payload);
    }

    /// The application stopped reading `address`'s data: disconnect that client, and only it.
    async fn overflowed(&mut self, address: u16) {
        let Some(entry) = self.clients.remove(&address) else { return };
        warn!(
            address,
            limit = CLIENT_QUEUE_BYTES,
            "the application did not read a client's data; disconnecting that client"
        );
        // Before the sender drops: its stream reads an error after the queued bytes, not an end.
        entry.state.mark_overflowed();
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let item = Outgoing::for_client(disconnect_frame(id, address), entry.state);
        let _ = self.queue.send(item).await;
    }

    async fn json(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        for message in serde_json::Deserializer::from_slice(payload).into_iter::<Value>() {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    warn!(error = %e, "the broker sent invalid JSON on the control channel");
                    break;
                }
            };
            trace!(%message, "received");
            match message.get("notification").and_then(Value::as_str) {
                Some("TunnelProxy.ClientConnected") => self.connected(&message["params"]).await?,
                Some("TunnelProxy.ClientDisconnected") => self.disconnected(&message["params"]),
                Some(other) => debug!(notification = other, "ignoring an unknown notification"),
                None => response(&message),
            }
        }
        Ok(())
    }

    async fn connected(&mut self, params: &Value) -> Result<(), ClientError> {
        let Some(address) = socket_address(params) else {
            warn!(%params, "ClientConnected without a usable socketAddress");
            return Ok(());
        };
        let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let state = ClientState::new(address);
        let (data, queue) = mpsc::unbounded_channel();
        let entry = Entry { data, state: state.clone() };
        if let Some(old) = self.clients.insert(address, entry) {
            warn!(address, "the broker reused a socket address without ClientDisconnected");
            old.state.mark_disconnected();
        }
        let client = IncomingClient {
            name: text("clientName"),
            uuid: text("clientUuid").trim_start_matches('{').trim_end_matches('}').to_string(),
            peer_address: text("clientPeerAddress"),
            socket_address: address,
            stream: IncomingStream::new(
                state,
                queue,
                self.queue.clone(),
                self.ids.clone(),
                self.dropped.clone(),
            ),
        };
        info!(address, name = %client.name, uuid = %client.uuid, peer = %client.peer_address, "client connected");
        self.liveness.wait_start();
        let sent = self.accept.send(client).await;
        self.liveness.wait_end();
        // Nobody accepts any more: the TunnelServer was dropped.
        sent.map_err(|_| ClientError::Stopped)
    }

    fn disconnected(&mut self, params: &Value) {
        let Some(address) = socket_address(params) else {
            warn!(%params, "ClientDisconnected without a usable socketAddress");
            return;
        };
        match self.clients.remove(&address) {
            Some(entry) => {
                info!(address, "client disconnected");
                // Before the sender drops, so the stream reads end of stream, not a lost connection.
                entry.state.mark_disconnected();
            }
            None => debug!(address, "ClientDisconnected for an unknown socket address"),
        }
    }

    /// A stream was dropped without `shutdown`: ask the broker to disconnect its client. The
    /// entry stays until `ClientDisconnected`, which marks the state so that this request is
    /// not sent once the address may belong to someone else.
    async fn disconnect_dropped(&mut self, state: Arc<ClientState>) -> Result<(), ClientError> {
        // An overflowed client's disconnect went out already.
        if state.is_disconnected() || state.is_overflowed() {
            return Ok(());
        }
        debug!(address = state.address, "stream dropped; disconnecting its client");
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let item = Outgoing::for_client(disconnect_frame(id, state.address), state);
        self.queue.send(item).await.map_err(|_| ClientError::Stopped)
    }
}

/// A response on the control channel: nothing waits for it, so it is only logged.
fn response(message: &Value) {
    match message.get("status").and_then(Value::as_str) {
        Some("success") => match outcome(&message["params"]) {
            Ok(TunnelProxyError::NoError) => {}
            Ok(error) => warn!(%error, id = %message["id"], "the broker refused a request"),
            // Ping answers carry no tunnelProxyError.
            Err(_) => {}
        },
        _ => {
            let error = message.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            warn!(error, "the broker answered with an error");
        }
    }
}

fn socket_address(params: &Value) -> Option<u16> {
    let address = params.get("socketAddress")?.as_u64()?;
    u16::try_from(address).ok().filter(|a| *a != JSON_RPC_ADDRESS && *a != 0xFFFF)
}

/// Writes queued frames, gathering what is already queued into one write and flushing when the
/// queue runs empty.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queued: mpsc::Receiver<Outgoing>,
) -> ClientError {
    let mut batch = BytesMut::with_capacity(CHUNK);
    loop {
        let Some(first) = queued.recv().await else {
            return ClientError::Stopped;
        };
        let mut next = Some(first);
        while let Some(item) = next.take() {
            if item.is_current() {
                batch.extend_from_slice(&item.frame);
            } else {
                trace!("dropped a frame for a client that is gone");
            }
            if batch.len() >= CHUNK {
                break;
            }
            next = queued.try_recv().ok();
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = writer.write_all(&batch).await {
            return ClientError::Io(e);
        }
        batch.clear();
        if queued.is_empty()
            && let Err(e) = writer.flush().await
        {
            return ClientError::Io(e);
        }
    }
}

/// Pings the broker and notices a broker that stopped answering.
async fn ping_loop(
    queue: mpsc::Sender<Outgoing>,
    ids: &AtomicI64,
    liveness: &Liveness,
    interval: Duration,
) -> ClientError {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reads_at_ping = None;
    loop {
        ticker.tick().await;
        let reads = liveness.reads.load(Ordering::SeqCst);
        let excused = liveness.excused();
        if reads_at_ping == Some(reads) && !excused {
            return ClientError::Timeout("the broker's answer to a ping");
        }
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let frame = request_frame(id, "TunnelProxy.Ping", json!({"timestamp": timestamp as u64}));
        trace!(id, "--> ping");
        // A writer that cannot take a ping for a whole interval is stuck behind a broker that
        // does not read.
        match tokio::time::timeout(interval, queue.send(Outgoing::control(frame))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return ClientError::Stopped,
            Err(_) => return ClientError::Timeout("the broker to take data"),
        }
        reads_at_ping = Some(reads);
    }
}
