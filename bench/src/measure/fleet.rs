//! `hold --hold-shape v2-tcp|v2-ws`: what an idle fleet of registered v2 TunnelProxy servers
//! costs the broker, and how fast a client reaches one of them while the fleet is held.
//!
//! A nymea device registers once as a TunnelProxy server and then waits, mostly for hours, for an
//! app to reach it; a broker holds tens of thousands of such idle servers. Per side (the broker,
//! then a freshly started baseline process, see [`crate::baseline`]):
//! 1. read RSS ("cold"); warm up: register `hold_concurrency` servers, reach each once with a
//!    client, close them, wait until memory settles; read RSS and descriptors ("before");
//! 2. register N servers, `hold_concurrency` at a time: connect (TLS, WebSocket upgrade on the
//!    WebSocket listener), `TunnelProxy.RegisterServer` with a fresh uuid, `NoError` and
//!    `slipEnabled` required. Each registered server is then held by a small task of the bench
//!    that keeps reading (so it hears of clients), echoes whatever a client sends back to it
//!    SLIP-framed, and sends `TunnelProxy.Ping` every 30 s as the nymea client library does (the
//!    broker closes a server that is silent for 60 s). The first ping goes out right after the
//!    registration (`--first-ping`, default 0 s) rather than 30 s later: what is measured is then a
//!    server as every server of a live fleet is after its first 30 s, one that has exchanged a
//!    message since it registered (at 18,000 servers the broker held 23.6 KiB per never-pinged
//!    server and 28.0 KiB once each had pinged after 30 s; `--first-ping 30` measures the former);
//! 3. after `hold_idle`, read RSS and descriptors ("held"): (held − before) / N is the cost of one
//!    registered, idle server;
//! 4. reach: M clients (`--reach-clients`), `concurrency` at a time, each connects to the same
//!    listener, `TunnelProxy.RegisterClient` naming a random held server, waits for `NoError`,
//!    sends 32 bytes and waits until the server has echoed them back. Reach latency runs from
//!    before the connect to the last echoed byte: what an app waits for before its first
//!    answer from a device;
//! 5. close everything, wait for descriptors and memory to come back ("after"), as `hold` does.
//!
//! A held server that the broker closes, or data for a socket address the broker never announced
//! with `TunnelProxy.ClientConnected`, counts as an error. The bench's own cost per held server
//! is kept small (a read buffer on the stack of each poll, no buffers while idle), since the
//! bench process holds the same 18,000 connections as the broker.

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::Bench;
use super::hold::{Readings, side, wait_for_release};
use crate::baseline::BaselineProcess;
use crate::client::{Client, Conn, Endpoint, Failure, Io};
use crate::goals::{self, FleetFacts};
use crate::results::{Errors, FleetResult, FleetSide, error_total, merge_errors};
use crate::server::Server;
use crate::slip;
use crate::stats::{self, Percentiles};

/// How often a held server pings the broker: the nymea client library's interval (the broker
/// closes a server that sent nothing for 60 s).
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Bytes a held server reads at once, into a buffer on the stack of the poll (none while idle).
const READ_CHUNK: usize = 2048;

/// Bytes a reach client sends and expects back.
const REACH_PAYLOAD: usize = 32;

/// The uuid "role" field of the servers and clients the bench registers.
const SERVER_ROLE: u16 = 0x5e;
const CLIENT_ROLE: u16 = 0xc1;

/// Runs the measure on the broker, then on a fresh baseline process.
pub async fn run(bench: &Bench) -> anyhow::Result<FleetResult> {
    let p = &bench.params;
    let shape = p.hold_shape;
    let flag = if shape == super::HoldShape::V2Ws { "--v2-ws-url" } else { "--v2-url" };
    let endpoint = shape.v2_endpoint(&bench.broker).with_context(|| {
        format!("--hold-shape {} needs the broker's TunnelProxy listener ({flag})", shape.name())
    })?;
    let transport = format!("v2 {}", endpoint.label());
    eprintln!("hold: broker: registering {} {transport} servers…", p.hold_tunnels);
    let broker = one_side(bench, &bench.broker, &endpoint).await;
    let baseline_process = BaselineProcess::start(bench.baseline_args()).await?;
    let baseline_endpoint = shape
        .v2_endpoint(&baseline_process.server)
        .context("the baseline server has no TunnelProxy listener")?;
    eprintln!("hold: baseline: registering {} {transport} servers…", p.hold_tunnels);
    let baseline = one_side(bench, &baseline_process.server, &baseline_endpoint).await;
    baseline_process.stop().await;
    let per_server = |s: &FleetSide| s.hold.rss_bytes_per_tunnel;
    let ratio = per_server(&broker).zip(per_server(&baseline)).and_then(|(a, b)| stats::ratio(a, b));
    let reached = |s: &FleetSide| (s.reach_ok > 0).then_some(s.reach_ms.clone());
    let reach_ratio = |pick: fn(&Percentiles) -> f64| {
        reached(&broker).zip(reached(&baseline)).and_then(|(a, b)| stats::ratio(pick(&a), pick(&b)))
    };
    let facts = FleetFacts {
        transport: transport.clone(),
        requested: p.hold_tunnels,
        established: broker.hold.established,
        bytes_per_server: per_server(&broker),
        rss_before_after: broker.hold.rss_kib.map(|t| (t.before, t.after)),
        fds_before_after: broker.hold.fds.map(|t| (t.before, t.after)),
        reach_p99_ms: reached(&broker).map(|r| r.p99),
        reach_errors: error_total(&broker.reach_errors),
    };
    let result = FleetResult {
        transport,
        servers: p.hold_tunnels,
        reach_clients: p.reach_clients,
        reach_concurrency: p.concurrency,
        first_ping_s: p.first_ping.as_secs_f64(),
        checks: goals::fleet(&facts),
        reach_ratio_p50: reach_ratio(|r| r.p50),
        reach_ratio_p99: reach_ratio(|r| r.p99),
        broker,
        baseline,
        ratio,
    };
    bench.printer.say(&result.human());
    Ok(result)
}

async fn one_side(bench: &Bench, server: &Server, endpoint: &Endpoint) -> FleetSide {
    let p = &bench.params;
    let cold = server.sample();
    let warm_count = p.hold_concurrency.min(p.hold_tunnels);
    let (warm, mut errors) = register_all(bench, endpoint, warm_count).await;
    let (_, mut reach_errors) =
        reach_all(&bench.client, endpoint, &warm.uuids, warm_count, p.concurrency).await;
    warm.stop().await;
    let (before, _) = wait_for_release(server, cold).await;

    let start = Instant::now();
    let (fleet, held_errors) = register_all(bench, endpoint, p.hold_tunnels).await;
    merge_errors(&mut errors, &held_errors);
    let open_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(p.hold_idle).await;
    let during = server.sample();
    let established = fleet.alive();

    eprintln!("hold: {}: {established} servers held; {} clients reach them…", server.role, p.reach_clients);
    let (latencies, timed_errors) =
        reach_all(&bench.client, endpoint, &fleet.uuids, p.reach_clients, p.concurrency).await;
    merge_errors(&mut reach_errors, &timed_errors);
    merge_errors(&mut errors, &fleet.troubles());
    fleet.stop().await;
    let (after, release_s) = wait_for_release(server, before).await;
    let hold = side(Readings { cold, before, during, after }, established, errors, open_s, release_s);
    let (reach_ms, _) = Percentiles::of_durations(&latencies, Duration::from_millis(1));
    FleetSide { hold, reach_ok: latencies.len(), reach_ms, reach_errors }
}

/// Registered servers, each held by its own task.
struct Fleet {
    uuids: Arc<Vec<String>>,
    holders: Vec<JoinHandle<()>>,
    watch: Arc<Watch>,
}

/// What the holders report.
#[derive(Default)]
struct Watch {
    /// Servers registered and not lost.
    alive: AtomicUsize,
    /// Servers lost while held, and data for unannounced socket addresses.
    troubles: Mutex<Errors>,
}

impl Watch {
    fn trouble(&self, kind: String) {
        *self.troubles.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() += 1;
    }
}

impl Fleet {
    fn alive(&self) -> usize {
        self.watch.alive.load(Ordering::Acquire)
    }

    fn troubles(&self) -> Errors {
        self.watch.troubles.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops every server connection.
    async fn stop(self) {
        for holder in &self.holders {
            holder.abort();
        }
        for holder in self.holders {
            let _ = holder.await;
        }
    }
}

async fn register_all(bench: &Bench, endpoint: &Endpoint, count: usize) -> (Fleet, Errors) {
    let watch = Arc::new(Watch::default());
    let next = Arc::new(AtomicUsize::new(0));
    let registered = Arc::new(Mutex::new((Vec::with_capacity(count), Vec::with_capacity(count))));
    let first_ping = bench.params.first_ping;
    let mut workers = JoinSet::new();
    for _ in 0..bench.params.hold_concurrency.clamp(1, count.max(1)) {
        let (client, endpoint, next, registered, watch) =
            (bench.client.clone(), endpoint.clone(), next.clone(), registered.clone(), watch.clone());
        workers.spawn(async move {
            let mut errors = Errors::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let uuid = client.fresh_uuid(SERVER_ROLE);
                match client.register_server(&endpoint, &uuid, "bench-server").await {
                    Ok(conn) => {
                        watch.alive.fetch_add(1, Ordering::AcqRel);
                        let holder = tokio::spawn(hold_server(conn, first_ping, watch.clone()));
                        let mut registered = registered.lock().unwrap_or_else(|e| e.into_inner());
                        registered.0.push(uuid);
                        registered.1.push(holder);
                    }
                    Err(failure) => *errors.entry(failure.key()).or_default() += 1,
                }
            }
            errors
        });
    }
    let mut errors = Errors::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(e) => merge_errors(&mut errors, &e),
            Err(panic) => *errors.entry(format!("bench worker failed: {panic}")).or_default() += 1,
        }
    }
    let (uuids, holders) = std::mem::take(&mut *registered.lock().unwrap_or_else(|e| e.into_inner()));
    (Fleet { uuids: Arc::new(uuids), holders, watch }, errors)
}

/// Holds one registered server until the broker closes it (or the task is aborted).
async fn hold_server(conn: Conn, first_ping: Duration, watch: Arc<Watch>) {
    let failure = match conn {
        Conn::Stream { io, buf } => hold_stream(io, buf, first_ping, &watch).await,
        Conn::Ws(ws) => hold_ws(*ws, first_ping, &watch).await,
    };
    watch.alive.fetch_sub(1, Ordering::AcqRel);
    watch.trouble(format!("server connection lost while held: {failure}"));
}

/// A held server's protocol state: the SLIP decoder and the socket addresses of its clients.
#[derive(Default)]
struct Served {
    slip: slip::Decoder,
    clients: Vec<u16>,
    next_id: u64,
}

impl Served {
    /// Acts on bytes from the broker: notes clients that come and go, queues echoes of their data.
    fn on_bytes(&mut self, data: &[u8], replies: &mut Vec<Bytes>, watch: &Watch) {
        let clients = &mut self.clients;
        self.slip.decode(data, |address, payload| {
            if address == 0 {
                on_json(&payload, clients);
            } else if clients.contains(&address) {
                replies.push(slip::encode(address, &payload));
            } else {
                watch.trouble(format!("data for socket address {address} before its ClientConnected"));
            }
        });
        if clients.is_empty() && clients.capacity() > 0 {
            *clients = Vec::new();
        }
    }

    /// A `TunnelProxy.Ping` on address 0.
    fn ping(&mut self) -> Bytes {
        self.next_id += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let request = format!(
            r#"{{"id":{},"method":"TunnelProxy.Ping","params":{{"timestamp":{now}}}}}"#,
            self.next_id + 1
        );
        slip::encode(0, format!("{request}\n").as_bytes())
    }
}

/// The broker's JSON on address 0: `ClientConnected` and `ClientDisconnected` notifications
/// (replies to pings are ignored).
fn on_json(payload: &[u8], clients: &mut Vec<u16>) {
    for text in payload.split(|b| *b == b'\n').filter(|t| !t.trim_ascii().is_empty()) {
        let Ok(message) = serde_json::from_slice::<Value>(text) else { continue };
        let address = message["params"]["socketAddress"].as_u64().and_then(|a| u16::try_from(a).ok());
        match (message["notification"].as_str(), address) {
            (Some("TunnelProxy.ClientConnected"), Some(address)) => clients.push(address),
            (Some("TunnelProxy.ClientDisconnected"), Some(address)) => clients.retain(|a| *a != address),
            _ => {}
        }
    }
}

async fn hold_stream(mut io: Io, early: BytesMut, first_ping: Duration, watch: &Watch) -> Failure {
    let mut served = Served::default();
    let mut replies = Vec::new();
    served.on_bytes(&early, &mut replies, watch);
    drop(early);
    let mut ping = pin!(tokio::time::sleep(first_ping));
    loop {
        if !replies.is_empty() {
            for frame in replies.drain(..) {
                if let Err(e) = io.write_all(&frame).await {
                    return Failure::Data(format!("write: {e}"));
                }
            }
            if let Err(e) = io.flush().await {
                return Failure::Data(format!("flush: {e}"));
            }
            replies = Vec::new();
        }
        tokio::select! {
            read = poll_fn(|cx| poll_served(&mut io, cx, &mut served, &mut replies, watch)) => match read {
                Ok(0) => return Failure::Closed,
                Ok(_) => {}
                Err(e) => return Failure::Data(format!("read: {e}")),
            },
            () = &mut ping => {
                replies.push(served.ping());
                ping.as_mut().reset(tokio::time::Instant::now() + PING_INTERVAL);
            }
        }
    }
}

/// Reads what is there into a buffer that lives only during this poll, and hands it to `served`.
fn poll_served(
    io: &mut Io,
    cx: &mut Context<'_>,
    served: &mut Served,
    replies: &mut Vec<Bytes>,
    watch: &Watch,
) -> Poll<io::Result<usize>> {
    let mut buf = [0u8; READ_CHUNK];
    let mut read = ReadBuf::new(&mut buf);
    ready!(Pin::new(io).poll_read(cx, &mut read))?;
    served.on_bytes(read.filled(), replies, watch);
    Poll::Ready(Ok(read.filled().len()))
}

async fn hold_ws(mut ws: WebSocketStream<Io>, first_ping: Duration, watch: &Watch) -> Failure {
    let mut served = Served::default();
    let mut replies = Vec::new();
    let mut ping = pin!(tokio::time::sleep(first_ping));
    loop {
        if !replies.is_empty() {
            for frame in replies.drain(..) {
                if let Err(e) = ws.feed(Message::Binary(frame)).await {
                    return Failure::Data(format!("write: {e}"));
                }
            }
            if let Err(e) = ws.flush().await {
                return Failure::Data(format!("flush: {e}"));
            }
            replies = Vec::new();
        }
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Binary(data))) => served.on_bytes(&data, &mut replies, watch),
                Some(Ok(Message::Text(text))) => served.on_bytes(text.as_bytes(), &mut replies, watch),
                Some(Ok(Message::Close(_))) | None => return Failure::Closed,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Failure::Data(format!("read: {e}")),
            },
            () = &mut ping => {
                replies.push(served.ping());
                ping.as_mut().reset(tokio::time::Instant::now() + PING_INTERVAL);
            }
        }
    }
}

/// `count` reach attempts, `concurrency` at a time, each to a random server of `uuids`; returns
/// the latencies of those that got their bytes back, and the failures.
async fn reach_all(
    client: &Arc<Client>,
    endpoint: &Endpoint,
    uuids: &Arc<Vec<String>>,
    count: usize,
    concurrency: usize,
) -> (Vec<Duration>, Errors) {
    if uuids.is_empty() {
        return (Vec::new(), Errors::from([("no server held to reach".to_string(), count)]));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let mut workers = JoinSet::new();
    for worker in 0..concurrency.clamp(1, count.max(1)) {
        let (client, endpoint, uuids, next) = (client.clone(), endpoint.clone(), uuids.clone(), next.clone());
        let mut rng = Rng::new(seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Errors::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                let server = &uuids[rng.below(uuids.len())];
                let start = Instant::now();
                match reach_one(&client, &endpoint, server, n).await {
                    Ok(()) => latencies.push(start.elapsed()),
                    Err(failure) => *errors.entry(failure.key()).or_default() += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut errors = Errors::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((l, e)) => {
                latencies.extend(l);
                merge_errors(&mut errors, &e);
            }
            Err(panic) => *errors.entry(format!("bench worker failed: {panic}")).or_default() += 1,
        }
    }
    (latencies, errors)
}

/// One client: register with `server_uuid`, send [`REACH_PAYLOAD`] bytes, get them back.
async fn reach_one(client: &Client, endpoint: &Endpoint, server_uuid: &str, n: usize) -> Result<(), Failure> {
    let conn = client.register_client(endpoint, &client.fresh_uuid(CLIENT_ROLE), server_uuid).await?;
    let (mut reader, mut writer) = conn.split();
    let payload = Bytes::from(reach_payload(n));
    writer.write(&payload).await?;
    writer.flush().await?;
    tokio::time::timeout(client.step_timeout, reader.read_exactly(payload.len() as u64, &mut [0u8; 256]))
        .await
        .map_err(|_| Failure::Timeout("the bytes echoed back by the server"))?
}

/// `reach 17` padded to [`REACH_PAYLOAD`] bytes, ending in a newline (text, so a broker that
/// forwards text frames as text has nothing to convert).
fn reach_payload(n: usize) -> String {
    format!("{:<width$}\n", format!("reach {n}"), width = REACH_PAYLOAD - 1)
}

/// xorshift64*: which held server each reach client picks.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_echoes_only_announced_clients() {
        let watch = Watch::default();
        let mut served = Served::default();
        let mut replies = Vec::new();
        let connected = br#"{"id":3,"notification":"TunnelProxy.ClientConnected","params":{"clientName":"c","clientPeerAddress":"127.0.0.1","clientUuid":"{x}","socketAddress":7}}"#;
        let mut wire = slip::encode(0, &[&connected[..], b"\n"].concat()).to_vec();
        wire.extend_from_slice(&slip::encode(7, b"hello\xC0"));
        wire.extend_from_slice(&slip::encode(8, b"stray"));
        served.on_bytes(&wire, &mut replies, &watch);
        assert_eq!(replies, [slip::encode(7, b"hello\xC0")]);
        assert_eq!(served.clients, [7]);
        assert_eq!(watch.troubles.lock().unwrap().len(), 1, "data for address 8 was never announced");
        let gone =
            br#"{"id":4,"notification":"TunnelProxy.ClientDisconnected","params":{"socketAddress":7}}"#;
        served.on_bytes(&slip::encode(0, gone), &mut replies, &watch);
        assert!(served.clients.is_empty() && served.clients.capacity() == 0);
    }

    #[test]
    fn pings_are_slip_json_with_fresh_ids() {
        let mut served = Served::default();
        let (first, second) = (served.ping(), served.ping());
        let mut decoder = slip::Decoder::default();
        let mut frames = Vec::new();
        decoder.decode(&[first, second].concat(), |address, payload| frames.push((address, payload)));
        let ids: Vec<_> = frames
            .iter()
            .map(|(address, payload)| {
                assert_eq!(*address, 0);
                let v: Value = serde_json::from_slice(payload).unwrap();
                assert_eq!(v["method"], "TunnelProxy.Ping");
                assert!(v["params"]["timestamp"].is_u64());
                v["id"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], 1, "id 1 is the registration's");
    }

    #[test]
    fn reach_payloads_and_picks() {
        assert_eq!(reach_payload(17).len(), REACH_PAYLOAD);
        assert!(reach_payload(17).starts_with("reach 17 ") && reach_payload(17).ends_with('\n'));
        let mut rng = Rng::new(42);
        let picks: Vec<usize> = (0..1000).map(|_| rng.below(10)).collect();
        assert!(picks.iter().all(|p| *p < 10));
        assert!((0..10).all(|v| picks.contains(&v)), "every server gets picked");
    }
}
