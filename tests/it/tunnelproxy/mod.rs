//! The v2 TunnelProxy API (PROTOCOL §5) through real sockets: registration rules, the SLIP
//! multiplex in both directions, DisconnectClient, timers, limits and flow control, shutdown.
//!
//! A registered server is driven by [`SlipPeer`] (split into a reader and a writer, so a test can
//! send and receive at once); a registered client is either a plain harness [`Client`] or, when
//! both directions must run at once, a [`Pipe`].

use crate::common::*;

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::join_all;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use remoteproxy_wire as slip;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::sleep;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

mod calls;
mod data;
mod disconnects;
mod limits;
mod registration;
mod shutdown;
mod timers;

// ---------------------------------------------------------------------------------------------
// Wire constants of PROTOCOL §3/§5 (spelled out, so a change in src cannot silently follow).

const NO_ERROR: &str = "TunnelProxyErrorNoError";
const INVALID_UUID: &str = "TunnelProxyErrorInvalidUuid";
const INTERNAL_SERVER_ERROR: &str = "TunnelProxyErrorInternalServerError";
const SERVER_NOT_FOUND: &str = "TunnelProxyErrorServerNotFound";
const ALREADY_REGISTERED: &str = "TunnelProxyErrorAlreadyRegistered";
const NOT_REGISTERED: &str = "TunnelProxyErrorNotRegistered";
const UNKNOWN_SOCKET_ADDRESS: &str = "TunnelProxyErrorUnknownSocketAddress";

const CLOSE_ALREADY_REGISTERED: &str = "Already registered";
const CLOSE_CROSS: &str = "UUID cross registeration";
const CLOSE_UNKNOWN_SERVER: &str = "Unknown server";
const CLOSE_SERVER_GONE: &str = "Server disconnected";
const CLOSE_DISCONNECT_REQUESTED: &str = "Server requested disconnect.";
const CLOSE_INACTIVE: &str = "Proxy timeout occurred. The socket was inactive.";
const CLOSE_INVALID_PARAMS: &str = "Invalid params passed.";

const NULL_UUID: &str = "00000000-0000-0000-0000-000000000000";

// ---------------------------------------------------------------------------------------------
// Helpers.

type Ws = WebSocketStream<Box<dyn Io>>;

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The braced lowercase form the broker uses in `ClientConnected`.
fn braced(uuid: &str) -> String {
    format!("{{{}}}", uuid.trim_matches(['{', '}']).to_lowercase())
}

fn success(id: i64, params: Value) -> Value {
    json!({"id": id, "params": params, "status": "success"})
}

fn register_server_request(id: i64, uuid: Value) -> Value {
    json!({"id": id, "method": "TunnelProxy.RegisterServer",
           "params": {"serverName": "device", "serverUuid": uuid}})
}

fn register_client_request(id: i64, client: Value, server: Value) -> Value {
    json!({"id": id, "method": "TunnelProxy.RegisterClient",
           "params": {"clientName": "app", "clientUuid": client, "serverUuid": server}})
}

fn slip_json(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec(value).unwrap();
    text.push(b'\n');
    slip::encode(0, &text).to_vec()
}

/// Bounds a long future (bulk transfers) by `secs`.
async fn within_secs<F: std::future::Future>(secs: u64, what: &str, future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s: {what}"))
}

fn copy_closed(c: &Closed) -> Closed {
    match c {
        Closed::Eof => Closed::Eof,
        Closed::WebSocket(code, reason) => Closed::WebSocket(*code, reason.clone()),
        Closed::WebSocketNoFrame => Closed::WebSocketNoFrame,
    }
}

/// Half random, then runs of SLIP's special bytes: 0xC0 0xDB 0xDC 0xDD mixed, all 0xC0, all 0xDB.
fn nasty_payload(len: usize) -> Vec<u8> {
    let mut data = random_bytes(len / 2);
    let specials = [0xC0, 0xDB, 0xDC, 0xDD];
    while data.len() < len * 5 / 8 {
        data.push(specials[data.len() % 4]);
    }
    data.resize(len * 13 / 16, 0xC0);
    data.resize(len, 0xDB);
    data
}

/// A deterministic byte stream (with 0xC0 and 0xDB in it): bytes `offset..offset + len`.
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// The reading half of a split connection.
enum InHalf {
    Stream(tokio::io::ReadHalf<Box<dyn Io>>),
    WebSocket(SplitStream<Ws>),
}

impl InHalf {
    /// The next chunk of payload `(came as a text frame, bytes)`, or how the connection ended.
    /// Unbounded and cancel-safe; callers bound it.
    async fn read(&mut self) -> Result<(bool, Vec<u8>), Closed> {
        match self {
            InHalf::Stream(s) => {
                let mut buf = vec![0u8; 64 << 10];
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => Err(Closed::Eof),
                    Ok(n) => {
                        buf.truncate(n);
                        Ok((false, buf))
                    }
                }
            }
            InHalf::WebSocket(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => return Ok((true, t.as_bytes().to_vec())),
                    Some(Ok(Message::Binary(b))) => return Ok((false, b.to_vec())),
                    Some(Ok(Message::Close(Some(f)))) => {
                        return Err(Closed::WebSocket(f.code.into(), f.reason.to_string()));
                    }
                    Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                        return Err(Closed::WebSocketNoFrame);
                    }
                    Some(Ok(_)) => continue,
                }
            },
        }
    }
}

/// The writing half of a split connection.
enum OutHalf {
    Stream(tokio::io::WriteHalf<Box<dyn Io>>),
    WebSocket(SplitSink<Ws, Message>),
}

impl OutHalf {
    /// Writes bytes (one binary frame on a WebSocket), unbounded.
    async fn write_unbounded(&mut self, data: &[u8]) {
        match self {
            OutHalf::Stream(s) => {
                s.write_all(data).await.unwrap();
                s.flush().await.unwrap();
            }
            OutHalf::WebSocket(sink) => sink.send(Message::binary(data.to_vec())).await.unwrap(),
        }
    }

    async fn write(&mut self, data: &[u8]) {
        within("a write to the broker", self.write_unbounded(data)).await
    }
}

fn split_wire(wire: ClientWire) -> (InHalf, OutHalf) {
    match wire {
        ClientWire::Stream(s) => {
            let (r, w) = tokio::io::split(s);
            (InHalf::Stream(r), OutHalf::Stream(w))
        }
        ClientWire::WebSocket(ws) => {
            let (sink, stream) = ws.split();
            (InHalf::WebSocket(stream), OutHalf::WebSocket(sink))
        }
    }
}

/// The reading side of a registered server: SLIP frames.
struct SlipReader {
    kind: Kind,
    input: InHalf,
    decoder: slip::Decoder,
    frames: VecDeque<slip::Frame>,
    closed: Option<Closed>,
}

impl SlipReader {
    fn push(&mut self, data: &[u8]) {
        let frames = &mut self.frames;
        self.decoder.decode(data, |f| frames.push_back(f.expect("the broker sends valid SLIP frames")));
    }

    /// The next frame, or how the connection ended. Unbounded, cancel-safe.
    async fn next_unbounded(&mut self) -> Result<slip::Frame, Closed> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Ok(frame);
            }
            if let Some(closed) = &self.closed {
                return Err(copy_closed(closed));
            }
            match self.input.read().await {
                Ok((_, data)) => self.push(&data),
                Err(closed) => self.closed = Some(closed),
            }
        }
    }

    async fn next(&mut self) -> Result<slip::Frame, Closed> {
        within("a SLIP frame or the close", self.next_unbounded()).await
    }

    pub(crate) async fn next_frame(&mut self) -> slip::Frame {
        match self.next().await {
            Ok(frame) => frame,
            Err(how) => panic!("{:?} server: expected a frame, the connection closed: {how:?}", self.kind),
        }
    }

    fn parse_json(frame: &slip::Frame) -> Value {
        assert_eq!(
            frame.address,
            0,
            "expected a JSON frame, got {} bytes for address {}",
            frame.payload.len(),
            frame.address
        );
        assert!(frame.payload.ends_with(b"\n"), "JSON on address 0 ends with \\n: {:?}", frame.payload);
        serde_json::from_slice(&frame.payload).expect("JSON on address 0")
    }

    async fn next_json_unbounded(&mut self) -> Value {
        match self.next_unbounded().await {
            Ok(frame) => Self::parse_json(&frame),
            Err(how) => panic!("{:?} server: expected JSON, the connection closed: {how:?}", self.kind),
        }
    }

    async fn next_json(&mut self) -> Value {
        Self::parse_json(&self.next_frame().await)
    }

    /// The next frame is this notification; returns its params.
    pub(crate) async fn notification(&mut self, name: &str) -> Value {
        let message = self.next_json().await;
        assert_eq!(message["notification"], name, "{message}");
        let mut keys: Vec<&str> = message.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["id", "notification", "params"], "{message}");
        assert!(message["id"].is_u64(), "{message}");
        message["params"].clone()
    }

    /// The very next event is the close with `reason` (no frame before it).
    async fn expect_closed_now(&mut self, reason: &str) {
        match self.next().await {
            Err(how) => assert_eq!(how, expected_close(self.kind, reason), "{:?} server", self.kind),
            Ok(frame) => panic!(
                "{:?} server: expected the close ({reason}), got a frame for {}: {:?}",
                self.kind,
                frame.address,
                String::from_utf8_lossy(&frame.payload[..frame.payload.len().min(200)])
            ),
        }
    }

    /// Nothing (no frame, no close) for `dur`.
    async fn assert_quiet(&mut self, dur: Duration, what: &str) {
        if let Ok(got) = tokio::time::timeout(dur, self.next_unbounded()).await {
            panic!("{what} ({:?} server): expected nothing for {dur:?}, got {got:?}", self.kind);
        }
    }

    /// Reads data frames until every address in `want` got its byte count; any other frame
    /// (JSON, another address, more than expected) fails. Unbounded.
    async fn collect_unbounded(&mut self, want: &HashMap<u16, usize>) -> HashMap<u16, Vec<u8>> {
        let mut got: HashMap<u16, Vec<u8>> = want.keys().map(|a| (*a, Vec::new())).collect();
        while want.iter().any(|(a, n)| got[a].len() < *n) {
            let frame = match self.next_unbounded().await {
                Ok(frame) => frame,
                Err(how) => panic!("{:?} server closed while collecting data: {how:?}", self.kind),
            };
            let Some(buf) = got.get_mut(&frame.address) else {
                panic!(
                    "unexpected frame for address {}: {:?}",
                    frame.address,
                    String::from_utf8_lossy(&frame.payload[..frame.payload.len().min(200)])
                );
            };
            buf.extend_from_slice(&frame.payload);
            assert!(
                buf.len() <= want[&frame.address],
                "more data than was sent from address {}",
                frame.address
            );
        }
        got
    }

    async fn collect(&mut self, address: u16, n: usize) -> Vec<u8> {
        let want = HashMap::from([(address, n)]);
        within("data frames", self.collect_unbounded(&want)).await.remove(&address).unwrap()
    }
}

/// The writing side of a registered server.
struct SlipWriter {
    output: OutHalf,
}

impl SlipWriter {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.output.write(bytes).await
    }

    pub(crate) async fn send(&mut self, address: u16, payload: &[u8]) {
        self.send_raw(&slip::encode(address, payload)).await
    }

    async fn send_json(&mut self, value: &Value) {
        self.send_raw(&slip_json(value)).await
    }
}

/// A registered server seen from the test: frames in and out.
pub(crate) struct SlipPeer {
    kind: Kind,
    rx: SlipReader,
    tx: SlipWriter,
}

impl SlipPeer {
    /// Registers a server with `uuid` on `kind`; it must succeed.
    async fn register(broker: &Broker, kind: Kind, uuid: &str) -> SlipPeer {
        let mut client = broker.connect_v2(kind).await;
        let response = client
            .call(1, "TunnelProxy.RegisterServer", json!({"serverName": "device", "serverUuid": uuid}))
            .await;
        assert_eq!(
            response,
            success(1, json!({"slipEnabled": true, "tunnelProxyError": NO_ERROR})),
            "{kind:?} {uuid}"
        );
        SlipPeer::from_client(client)
    }

    /// Turns a connection whose RegisterServer succeeded into a SLIP peer.
    pub(crate) fn from_client(client: Client) -> SlipPeer {
        let Client { kind, wire, buf } = client;
        let (input, output) = split_wire(wire);
        let mut rx = SlipReader {
            kind,
            input,
            decoder: slip::Decoder::new(4 << 20),
            frames: VecDeque::new(),
            closed: None,
        };
        // Bytes that arrived behind the response are SLIP already.
        rx.push(&buf);
        SlipPeer { kind, rx, tx: SlipWriter { output } }
    }

    pub(crate) async fn next_frame(&mut self) -> slip::Frame {
        self.rx.next_frame().await
    }

    async fn next_json(&mut self) -> Value {
        self.rx.next_json().await
    }

    pub(crate) async fn notification(&mut self, name: &str) -> Value {
        self.rx.notification(name).await
    }

    pub(crate) async fn send(&mut self, address: u16, payload: &[u8]) {
        self.tx.send(address, payload).await
    }

    /// A request on address 0; returns the next JSON message.
    async fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.tx.send_json(&json!({"id": id, "method": method, "params": params})).await;
        self.next_json().await
    }

    /// `TunnelProxy.Ping` on address 0: the timestamp comes back.
    async fn ping(&mut self, id: i64) {
        let timestamp = 1_700_000_000_000u64 + id as u64;
        let response = self.call(id, "TunnelProxy.Ping", json!({"timestamp": timestamp})).await;
        assert_eq!(response, success(id, json!({"timestamp": timestamp})), "{:?} server", self.kind);
    }
}

/// A registered client split in two, for tests that need both directions at once.
struct Pipe {
    rx: PipeReader,
    tx: OutHalf,
}

struct PipeReader {
    kind: Kind,
    input: InHalf,
    pending: Vec<u8>,
}

impl Pipe {
    fn new(client: Client) -> Pipe {
        let Client { kind, wire, buf } = client;
        let (input, tx) = split_wire(wire);
        Pipe { rx: PipeReader { kind, input, pending: buf.to_vec() }, tx }
    }
}

impl PipeReader {
    /// Exactly `n` bytes (unbounded).
    async fn recv_exact_unbounded(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            match self.input.read().await {
                Ok((_, data)) => self.pending.extend_from_slice(&data),
                Err(how) => {
                    panic!("{:?} client closed after {} of {n} bytes: {how:?}", self.kind, self.pending.len())
                }
            }
        }
        let rest = self.pending.split_off(n);
        std::mem::replace(&mut self.pending, rest)
    }

    async fn assert_quiet(&mut self, dur: Duration, what: &str) {
        assert!(
            self.pending.is_empty(),
            "{what}: {:?} client has unexpected bytes {:?}",
            self.kind,
            self.pending
        );
        if let Ok(got) = tokio::time::timeout(dur, self.input.read()).await {
            panic!("{what} ({:?} client): expected nothing for {dur:?}, got {got:?}", self.kind);
        }
    }
}

/// Registers a client (id 2, name "app") and returns the connection and the response.
async fn register_client(broker: &Broker, kind: Kind, uuid: &str, server: &str) -> (Client, Value) {
    let mut client = broker.connect_v2(kind).await;
    let params = json!({"clientName": "app", "clientUuid": uuid, "serverUuid": server});
    let response = client.call(2, "TunnelProxy.RegisterClient", params).await;
    (client, response)
}

/// A client of `kind` joins `server`: it must succeed and the server must hear of it. Returns
/// the client and its socket address.
async fn join(broker: &Broker, server: &mut SlipPeer, kind: Kind, server_uuid: &str) -> (Client, u16) {
    let uuid = new_uuid();
    let (client, response) = register_client(broker, kind, &uuid, server_uuid).await;
    assert_eq!(response, success(2, json!({"tunnelProxyError": NO_ERROR})), "{kind:?}");
    let params = server.notification("TunnelProxy.ClientConnected").await;
    assert_eq!(params["clientUuid"], braced(&uuid), "{params}");
    let address = params["socketAddress"].as_u64().expect("socketAddress is a number");
    assert!((1..0xFFFF).contains(&address), "{params}");
    (client, address as u16)
}

/// On a registered client: the very next thing is the close with `reason` (no more data).
async fn expect_pipe_closed_now(c: &mut Client, reason: &str) {
    assert!(c.buf.is_empty(), "{:?} client: unexpected bytes {:?} before the close", c.kind, c.buf);
    let how = within("the broker to close the client", async {
        match &mut c.wire {
            ClientWire::Stream(s) => {
                let mut buf = [0u8; 4096];
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => Closed::Eof,
                    Ok(n) => {
                        panic!("expected the close ({reason}), got {n} more bytes {:?}", &buf[..n.min(64)])
                    }
                }
            }
            ClientWire::WebSocket(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Close(Some(f)))) => {
                        break Closed::WebSocket(f.code.into(), f.reason.to_string());
                    }
                    Some(Ok(Message::Close(None))) | None | Some(Err(_)) => break Closed::WebSocketNoFrame,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(other)) => panic!("expected the close ({reason}), got {other:?}"),
                }
            },
        }
    })
    .await;
    assert_eq!(how, expected_close(c.kind, reason), "{:?} client", c.kind);
}

/// The client leaves; the server hears of it.
async fn leave(server: &mut SlipPeer, client: Client, address: u16) {
    drop(client);
    assert_eq!(
        server.notification("TunnelProxy.ClientDisconnected").await,
        json!({"socketAddress": address})
    );
}

/// Quick check that a client and its server are connected both ways.
async fn exchange(server: &mut SlipPeer, client: &mut Client, address: u16, what: &str) {
    let down = format!("down to {address}: {what}");
    server.send(address, down.as_bytes()).await;
    assert_eq!(client.recv_data(down.len()).await, down.as_bytes(), "{what}");
    let up = format!("up from {address}: {what}");
    client.send_bytes(up.as_bytes()).await;
    assert_eq!(server.rx.collect(address, up.len()).await, up.as_bytes(), "{what}");
}

/// The Hello answer of the v2 ports.
fn check_hello(r: &Value, id: i64) {
    assert_eq!(
        *r,
        success(
            id,
            json!({"apiVersion": "0.5", "name": "remoteproxy", "server": "remoteproxy", "version": env!("CARGO_PKG_VERSION")})
        )
    );
}
