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

    async fn next_frame(&mut self) -> slip::Frame {
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
    async fn notification(&mut self, name: &str) -> Value {
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

    async fn send(&mut self, address: u16, payload: &[u8]) {
        self.send_raw(&slip::encode(address, payload)).await
    }

    async fn send_json(&mut self, value: &Value) {
        self.send_raw(&slip_json(value)).await
    }
}

/// A registered server seen from the test: frames in and out.
struct SlipPeer {
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
    fn from_client(client: Client) -> SlipPeer {
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

    async fn next_frame(&mut self) -> slip::Frame {
        self.rx.next_frame().await
    }

    async fn next_json(&mut self) -> Value {
        self.rx.next_json().await
    }

    async fn notification(&mut self, name: &str) -> Value {
        self.rx.notification(name).await
    }

    async fn send(&mut self, address: u16, payload: &[u8]) {
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

// ---------------------------------------------------------------------------------------------
// 1. RegisterServer: uuid forms, invalid uuids, invalid params.

#[tokio::test]
async fn register_server_accepts_random_braced_unbraced_and_uppercase_uuids() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let plain = new_uuid();
        let braced_one = format!("{{{}}}", new_uuid());
        let upper = format!("{{{}}}", new_uuid().to_uppercase());
        let mut peers = Vec::new();
        for (id, uuid) in [(11, &plain), (12, &braced_one), (13, &upper)] {
            let mut c = broker.connect_v2(kind).await;
            let r = c
                .call(id, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": uuid}))
                .await;
            assert_eq!(
                r,
                success(id, json!({"slipEnabled": true, "tunnelProxyError": NO_ERROR})),
                "{kind:?} {uuid}"
            );
            peers.push(SlipPeer::from_client(c));
        }
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.ping(20 + i as i64).await;
        }
        // The same uuids spelled differently are the same registrations.
        let respelled = [
            format!("{{{plain}}}"),
            braced_one.trim_matches(['{', '}']).to_string(),
            upper.trim_matches(['{', '}']).to_lowercase(),
            plain.to_uppercase(),
        ];
        for (i, other) in respelled.iter().enumerate() {
            let id = 30 + i as i64;
            let mut c = broker.connect_v2(kind).await;
            let r = c
                .call(id, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": other}))
                .await;
            assert_eq!(
                r,
                success(id, json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED})),
                "{kind:?} {other}"
            );
            expect_closed_now(&mut c, CLOSE_ALREADY_REGISTERED).await;
        }
        // The first registrations are untouched.
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.ping(40 + i as i64).await;
        }
    }
}

#[tokio::test]
async fn register_server_with_null_or_invalid_uuid_answers_invalid_uuid_and_stays_open() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        let bad = [
            NULL_UUID.to_string(),
            format!("{{{NULL_UUID}}}"),
            "not a uuid".to_string(),
            String::new(),
            "3f2504e0-4f89-11d3-9a0c-0305e82c330".to_string(),
            "{3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_string() + "x}",
        ];
        for (i, uuid) in bad.iter().enumerate() {
            let id = 50 + i as i64;
            let r = c
                .call(id, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": uuid}))
                .await;
            assert_eq!(
                r,
                success(id, json!({"slipEnabled": false, "tunnelProxyError": INVALID_UUID})),
                "{kind:?} {uuid:?}"
            );
        }
        // Still open, still unregistered: a proper registration works now.
        let uuid = new_uuid();
        let r =
            c.call(60, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": uuid})).await;
        assert_eq!(r, success(60, json!({"slipEnabled": true, "tunnelProxyError": NO_ERROR})), "{kind:?}");
        let mut server = SlipPeer::from_client(c);
        server.ping(61).await;
        let (mut client, address) = join(&broker, &mut server, Kind::Tcp, &uuid).await;
        exchange(&mut server, &mut client, address, "after invalid uuids").await;
    }
}

#[tokio::test]
async fn uuid_params_that_are_not_strings_are_invalid_params() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let _server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    let requests = [
        register_server_request(70, Value::Null),
        register_server_request(71, json!(5)),
        register_client_request(72, Value::Null, json!(server_uuid)),
        register_client_request(73, json!(new_uuid()), Value::Null),
    ];
    for kind in ALL_KINDS {
        for request in &requests {
            let mut c = broker.connect_v2(kind).await;
            c.send_json(request).await;
            let r = next_msg(&mut c).await;
            assert_eq!(r["status"], "error", "{kind:?} {request}: {r}");
            assert_eq!(r["id"], request["id"], "{kind:?} {request}: {r}");
            let text = r["error"].as_str().unwrap_or_default();
            assert!(text.starts_with("Invalid params: "), "{kind:?} {request}: {r}");
            let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            keys.sort();
            assert_eq!(keys, ["error", "id", "status"], "{r}");
            expect_closed_now(&mut c, CLOSE_INVALID_PARAMS).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. RegisterClient.

#[tokio::test]
async fn register_client_reaches_the_server_with_client_connected() {
    // A fresh broker: notification ids start at 0 and count up across all servers.
    let broker = Broker::start().await;
    let mut next_id = 0u64;
    let mut keep = Vec::new();
    let mut servers = Vec::new();
    for server_kind in ALL_KINDS {
        let server_uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &server_uuid).await;
        for (i, client_kind) in ALL_KINDS.into_iter().enumerate() {
            // Registered in uppercase, braced on WebSocket: announced braced and lowercase.
            let uuid = new_uuid().to_uppercase();
            let spelled = if client_kind == Kind::WebSocket { format!("{{{uuid}}}") } else { uuid.clone() };
            let mut client = broker.connect_v2(client_kind).await;
            let params = json!({"clientName": format!("app {client_kind:?}"), "clientUuid": spelled, "serverUuid": server_uuid});
            let r = client.call(5, "TunnelProxy.RegisterClient", params).await;
            assert_eq!(
                r,
                success(5, json!({"tunnelProxyError": NO_ERROR})),
                "{server_kind:?} <- {client_kind:?}"
            );

            let message = server.next_json().await;
            assert_eq!(message["notification"], "TunnelProxy.ClientConnected", "{message}");
            assert_eq!(message["id"], json!(next_id), "notification ids count up from 0: {message}");
            next_id += 1;
            let p = &message["params"];
            let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            keys.sort();
            assert_eq!(keys, ["clientName", "clientPeerAddress", "clientUuid", "socketAddress"], "{message}");
            assert_eq!(p["clientName"], format!("app {client_kind:?}"), "{message}");
            assert_eq!(p["clientUuid"], braced(&uuid), "{message}");
            assert_eq!(p["socketAddress"], json!(i + 1), "addresses start at 1: {message}");
            match client_kind {
                Kind::Unix => {
                    let peer = p["clientPeerAddress"].as_str().expect("a string");
                    assert!(!peer.contains(':'), "{message}");
                }
                _ => assert_eq!(p["clientPeerAddress"], "127.0.0.1", "the IP without port: {message}"),
            }
            exchange(
                &mut server,
                &mut client,
                (i + 1) as u16,
                &format!("{server_kind:?} <- {client_kind:?}"),
            )
            .await;
            keep.push(client);
        }
        servers.push(server);
    }
}

#[tokio::test]
async fn register_client_to_an_unknown_server_is_refused_and_closed() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    let (_registered, _) = join(&broker, &mut server, Kind::Tcp, &server_uuid).await;
    for kind in ALL_KINDS {
        // No server at all with that uuid.
        let (mut c, r) = register_client(&broker, kind, &new_uuid(), &new_uuid()).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": SERVER_NOT_FOUND})), "{kind:?}");
        expect_closed_now(&mut c, CLOSE_UNKNOWN_SERVER).await;
        // A client's uuid is no server either.
        let client_uuid = new_uuid();
        let (known, r) = register_client(&broker, Kind::Unix, &client_uuid, &server_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        let address =
            server.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap();
        let (mut c, r) = register_client(&broker, kind, &new_uuid(), &client_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": SERVER_NOT_FOUND})), "{kind:?}");
        expect_closed_now(&mut c, CLOSE_UNKNOWN_SERVER).await;
        leave(&mut server, known, address as u16).await;
    }
}

#[tokio::test]
async fn register_client_with_null_or_invalid_uuids_answers_invalid_uuid_and_stays_open() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::WebSocket, &server_uuid).await;
    for kind in ALL_KINDS {
        let client_uuid = new_uuid();
        let mut c = broker.connect_v2(kind).await;
        let cases = [
            (json!(NULL_UUID), json!(server_uuid)),
            (json!(format!("{{{NULL_UUID}}}")), json!(server_uuid)),
            (json!("not a uuid"), json!(server_uuid)),
            (json!(""), json!(server_uuid)),
            (json!(client_uuid), json!(NULL_UUID)),
            (json!(client_uuid), json!("{not-a-uuid}")),
            (json!(client_uuid), json!("")),
            (json!(NULL_UUID), json!(NULL_UUID)),
        ];
        for (i, (client, server_param)) in cases.into_iter().enumerate() {
            let id = 80 + i as i64;
            c.send_json(&register_client_request(id, client.clone(), server_param.clone())).await;
            let r = next_msg(&mut c).await;
            assert_eq!(
                r,
                success(id, json!({"tunnelProxyError": INVALID_UUID})),
                "{kind:?} {client} -> {server_param}"
            );
        }
        // Still open, and nothing was left registered by the refusals: the same client uuid
        // registers now.
        let r = c
            .call(
                90,
                "TunnelProxy.RegisterClient",
                json!({"clientName": "app", "clientUuid": client_uuid, "serverUuid": server_uuid}),
            )
            .await;
        assert_eq!(r, success(90, json!({"tunnelProxyError": NO_ERROR})), "{kind:?}");
        let params = server.notification("TunnelProxy.ClientConnected").await;
        assert_eq!(params["clientUuid"], braced(&client_uuid));
        let address = params["socketAddress"].as_u64().unwrap() as u16;
        exchange(&mut server, &mut c, address, "after invalid uuids").await;
        leave(&mut server, c, address).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Duplicates, cross registration, registering twice.

#[tokio::test]
async fn duplicated_server_uuid_is_refused_and_the_first_server_keeps_working() {
    let broker = Broker::start().await;
    for (first_kind, second_kind) in
        [(Kind::Tcp, Kind::WebSocket), (Kind::WebSocket, Kind::Unix), (Kind::Unix, Kind::Tcp)]
    {
        let uuid = new_uuid();
        let mut first = SlipPeer::register(&broker, first_kind, &uuid).await;
        let mut second = broker.connect_v2(second_kind).await;
        let r = second
            .call(3, "TunnelProxy.RegisterServer", json!({"serverName": "again", "serverUuid": uuid}))
            .await;
        assert_eq!(r, success(3, json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED})));
        expect_closed_now(&mut second, CLOSE_ALREADY_REGISTERED).await;
        // The first one is untouched.
        first.ping(4).await;
        let (mut client, address) = join(&broker, &mut first, second_kind, &uuid).await;
        assert_eq!(address, 1);
        exchange(&mut first, &mut client, address, "first server").await;
    }
}

#[tokio::test]
async fn duplicated_client_uuid_is_refused_on_any_server() {
    let broker = Broker::start().await;
    let one_uuid = new_uuid();
    let two_uuid = new_uuid();
    let mut one = SlipPeer::register(&broker, Kind::Tcp, &one_uuid).await;
    let mut two = SlipPeer::register(&broker, Kind::WebSocket, &two_uuid).await;
    for kind in ALL_KINDS {
        let uuid = new_uuid();
        let (mut a, r) = register_client(&broker, kind, &uuid, &one_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        let address =
            one.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap() as u16;
        // Same server, other spelling; other server.
        for (spelled, server) in [(braced(&uuid).to_uppercase(), &one_uuid), (uuid.clone(), &two_uuid)] {
            for other_kind in ALL_KINDS {
                let (mut b, r) = register_client(&broker, other_kind, &spelled, server).await;
                assert_eq!(r, success(2, json!({"tunnelProxyError": ALREADY_REGISTERED})), "{other_kind:?}");
                expect_closed_now(&mut b, CLOSE_ALREADY_REGISTERED).await;
            }
        }
        // Neither server heard of the refused ones: the next thing on their channel is a reply.
        one.ping(6).await;
        two.ping(7).await;
        exchange(&mut one, &mut a, address, "the first client").await;
        // Once it leaves, its uuid is free again.
        drop(a);
        assert_eq!(
            one.notification("TunnelProxy.ClientDisconnected").await,
            json!({"socketAddress": address})
        );
        let (mut again, r) = register_client(&broker, kind, &uuid, &two_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        let address =
            two.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap() as u16;
        exchange(&mut two, &mut again, address, "the uuid again").await;
        drop(again);
        assert_eq!(
            two.notification("TunnelProxy.ClientDisconnected").await,
            json!({"socketAddress": address})
        );
    }
}

#[tokio::test]
async fn cross_registration_is_refused_both_ways() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let server_uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
        let other_server = new_uuid();
        let _other = SlipPeer::register(&broker, Kind::Unix, &other_server).await;
        let (mut client, address) = join(&broker, &mut server, Kind::WebSocket, &server_uuid).await;
        // A client whose uuid the test knows.
        let client_uuid = new_uuid();
        let (_known, r) = register_client(&broker, Kind::Tcp, &client_uuid, &server_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        server.notification("TunnelProxy.ClientConnected").await;

        // A client with a server's uuid (to that server, to another one; spelled differently).
        for (spelled, target) in
            [(server_uuid.clone(), &server_uuid), (braced(&server_uuid).to_uppercase(), &other_server)]
        {
            let (mut c, r) = register_client(&broker, kind, &spelled, target).await;
            assert_eq!(r, success(2, json!({"tunnelProxyError": ALREADY_REGISTERED})), "{kind:?} {spelled}");
            expect_closed_now(&mut c, CLOSE_CROSS).await;
        }
        // A server with a registered client's uuid.
        for spelled in [client_uuid.clone(), braced(&client_uuid).to_uppercase()] {
            let mut c = broker.connect_v2(kind).await;
            let r = c
                .call(8, "TunnelProxy.RegisterServer", json!({"serverName": "x", "serverUuid": spelled}))
                .await;
            assert_eq!(
                r,
                success(8, json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED})),
                "{kind:?}"
            );
            expect_closed_now(&mut c, CLOSE_CROSS).await;
        }
        // Nothing else changed.
        server.ping(9).await;
        exchange(&mut server, &mut client, address, "after the refusals").await;
    }
}

#[tokio::test]
async fn registering_twice_on_one_server_connection_is_refused_and_closes() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let requests = [
            (
                json!({"id": 10, "method": "TunnelProxy.RegisterServer", "params": {"serverName": "x", "serverUuid": new_uuid()}}),
                json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED}),
            ),
            (
                json!({"id": 10, "method": "TunnelProxy.RegisterServer", "params": {"serverName": "x", "serverUuid": "same"}}),
                json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED}),
            ),
            (
                json!({"id": 10, "method": "TunnelProxy.RegisterClient", "params": {"clientName": "x", "clientUuid": new_uuid(), "serverUuid": new_uuid()}}),
                json!({"tunnelProxyError": ALREADY_REGISTERED}),
            ),
        ];
        for (mut request, result) in requests {
            let uuid = new_uuid();
            if request["params"]["serverUuid"] == "same" {
                request["params"]["serverUuid"] = json!(uuid);
            }
            let mut server = SlipPeer::register(&broker, kind, &uuid).await;
            let (mut client, _) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
            server.tx.send_json(&request).await;
            assert_eq!(server.next_json().await, success(10, result), "{kind:?} {request}");
            server.rx.expect_closed_now(CLOSE_ALREADY_REGISTERED).await;
            expect_pipe_closed_now(&mut client, CLOSE_SERVER_GONE).await;
            // Its uuid is free again.
            let mut again = SlipPeer::register(&broker, kind, &uuid).await;
            again.ping(11).await;
        }
    }
}

#[tokio::test]
async fn a_registered_client_sending_a_register_request_is_just_data() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    for kind in ALL_KINDS {
        let (mut client, address) = join(&broker, &mut server, kind, &server_uuid).await;
        for request in [
            register_server_request(12, json!(new_uuid())),
            register_client_request(13, json!(new_uuid()), json!(server_uuid)),
        ] {
            let mut line = serde_json::to_vec(&request).unwrap();
            line.push(b'\n');
            client.send_bytes(&line).await;
            assert_eq!(server.rx.collect(address, line.len()).await, line);
        }
        assert_no_data(&mut client, Duration::from_millis(200), "no answer from the broker").await;
        exchange(&mut server, &mut client, address, "still a pipe").await;
        leave(&mut server, client, address).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. DisconnectClient.

#[tokio::test]
async fn disconnect_client_closes_it_after_its_data_and_notifies_before_the_response() {
    for (server_kind, client_kind, other_kind) in [
        (Kind::Tcp, Kind::WebSocket, Kind::Tcp),
        (Kind::WebSocket, Kind::Tcp, Kind::Unix),
        (Kind::Unix, Kind::Unix, Kind::WebSocket),
    ] {
        let broker = Broker::start().await;
        let server_uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &server_uuid).await;
        let (mut victim, victim_address) = join(&broker, &mut server, client_kind, &server_uuid).await;
        let (mut other, other_address) = join(&broker, &mut server, other_kind, &server_uuid).await;

        // Data, then the request, in one write: all the data still arrives.
        let data = nasty_payload(256 << 10);
        let mut write = BytesMut::new();
        for chunk in data.chunks(32 << 10) {
            slip::encode_into(victim_address, chunk, &mut write);
        }
        write.extend_from_slice(&slip_json(
            &json!({"id": 14, "method": "TunnelProxy.DisconnectClient", "params": {"socketAddress": victim_address}}),
        ));
        server.tx.send_raw(&write).await;
        assert_eq!(
            server.notification("TunnelProxy.ClientDisconnected").await,
            json!({"socketAddress": victim_address}),
            "{server_kind:?}: the notification comes before the response"
        );
        assert_eq!(server.next_json().await, success(14, json!({"tunnelProxyError": NO_ERROR})));
        assert!(
            victim.recv_data(data.len()).await == data,
            "{client_kind:?}: the data sent before DisconnectClient arrives intact"
        );
        expect_pipe_closed_now(&mut victim, CLOSE_DISCONNECT_REQUESTED).await;

        // No second ClientDisconnected for it; unknown addresses; the server stays open.
        for (id, address) in
            [(15, json!(victim_address)), (16, json!(999)), (17, json!(0)), (18, json!(65535))]
        {
            let r = server.call(id, "TunnelProxy.DisconnectClient", json!({"socketAddress": address})).await;
            assert_eq!(r, success(id, json!({"tunnelProxyError": UNKNOWN_SOCKET_ADDRESS})), "{address}");
        }
        server.ping(19).await;
        exchange(&mut server, &mut other, other_address, "the other client").await;
        // Frames for the address that was freed are dropped.
        server.send(victim_address, b"too late").await;
        server.ping(20).await;
    }
}

#[tokio::test]
async fn disconnect_client_on_an_unregistered_connection_is_not_registered() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    let (_client, address) = join(&broker, &mut server, Kind::Tcp, &server_uuid).await;
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        let r = c.call(21, "TunnelProxy.DisconnectClient", json!({"socketAddress": address})).await;
        assert_eq!(r, success(21, json!({"tunnelProxyError": NOT_REGISTERED})), "{kind:?}");
        // Open, and the server's client was not touched.
        assert_eq!(c.hello().await["status"], "success");
    }
    server.ping(22).await;
}

// ---------------------------------------------------------------------------------------------
// 5. A server or a client going away.

#[tokio::test]
async fn server_going_away_closes_its_clients_after_their_data_and_frees_its_uuid() {
    let broker = Broker::start().await;
    for server_kind in ALL_KINDS {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &uuid).await;
        let mut clients = Vec::new();
        for kind in ALL_KINDS {
            clients.push(join(&broker, &mut server, kind, &uuid).await);
        }
        let mut last = BytesMut::new();
        for (_, address) in &clients {
            slip::encode_into(*address, format!("last words for {address}").as_bytes(), &mut last);
        }
        server.tx.send_raw(&last).await;
        drop(server);
        for (client, address) in &mut clients {
            let words = format!("last words for {address}");
            assert_eq!(client.recv_data(words.len()).await, words.as_bytes(), "{:?}", client.kind);
            expect_pipe_closed_now(client, CLOSE_SERVER_GONE).await;
        }
        // The uuid is free at once; the new connection's addresses start at 1 again.
        let mut again = SlipPeer::register(&broker, server_kind, &uuid).await;
        let (mut client, address) = join(&broker, &mut again, Kind::Tcp, &uuid).await;
        assert_eq!(address, 1);
        exchange(&mut again, &mut client, address, "registered again").await;
    }
}

#[tokio::test]
async fn client_going_away_notifies_its_server_after_its_last_data() {
    let broker = Broker::start().await;
    for server_kind in ALL_KINDS {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &uuid).await;
        // Each transport just dropping the connection, and a WebSocket closing properly.
        for (kind, graceful) in
            [(Kind::Tcp, false), (Kind::WebSocket, false), (Kind::Unix, false), (Kind::WebSocket, true)]
        {
            let (mut client, address) = join(&broker, &mut server, kind, &uuid).await;
            let data = nasty_payload(100 << 10);
            client.send_bytes(&data).await;
            if graceful && let ClientWire::WebSocket(ws) = &mut client.wire {
                within("a WebSocket close", ws.close(None)).await.unwrap();
            }
            drop(client);
            assert!(
                server.rx.collect(address, data.len()).await == data,
                "{kind:?}: all data before the notification"
            );
            assert_eq!(
                server.notification("TunnelProxy.ClientDisconnected").await,
                json!({"socketAddress": address}),
                "{kind:?}"
            );
        }
        server.ping(23).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Data.

/// The test this file started with: TCP server, WebSocket and TCP clients, special bytes both ways.
#[tokio::test]
async fn server_and_clients_exchange_data_through_slip() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;

    let (mut a, response) = register_client(&broker, Kind::WebSocket, &new_uuid(), &server_uuid).await;
    assert_eq!(response["params"]["tunnelProxyError"], NO_ERROR);
    let connected = server.notification("TunnelProxy.ClientConnected").await;
    let address_a = connected["socketAddress"].as_u64().unwrap() as u16;
    assert_eq!(address_a, 1);
    assert_eq!(connected["clientPeerAddress"], "127.0.0.1");

    let (mut b, address_b) = join(&broker, &mut server, Kind::Tcp, &server_uuid).await;
    assert_eq!(address_b, 2);

    // Payloads full of SLIP's special bytes, both ways.
    let nasty: Vec<u8> = (0..3000).map(|i| [0xC0, 0xDB, 0xDC, 0xDD, b'x'][i % 5]).collect();
    b.send_bytes(&nasty).await;
    assert_eq!(server.rx.collect(address_b, nasty.len()).await, nasty);
    server.send(address_b, &nasty).await;
    assert_eq!(b.read_exact(nasty.len()).await, nasty);
    server.send(address_a, b"hello a").await;
    assert_eq!(a.recv_data(7).await, b"hello a");

    // A client leaves: the server is told.
    drop(b);
    assert_eq!(
        server.notification("TunnelProxy.ClientDisconnected").await,
        json!({"socketAddress": address_b})
    );

    // The server goes away: its clients are closed.
    drop(server);
    expect_pipe_closed_now(&mut a, CLOSE_SERVER_GONE).await;
}

async fn several_clients_exchange_data_both_ways_at_once(server_kind: Kind) {
    const SIZE: usize = 200 << 10;
    const PIECE: usize = 8 << 10;
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, server_kind, &server_uuid).await;
    let kinds = [Kind::Tcp, Kind::WebSocket, Kind::Unix, Kind::Tcp, Kind::WebSocket];
    let mut pipes = Vec::new();
    let mut addresses = Vec::new();
    for kind in kinds {
        let (client, address) = join(&broker, &mut server, kind, &server_uuid).await;
        pipes.push(Pipe::new(client));
        addresses.push(address);
    }
    assert_eq!(addresses, [1, 2, 3, 4, 5], "addresses start at 1 and are unique");

    let ups: Vec<Vec<u8>> = kinds.iter().map(|_| nasty_payload(SIZE)).collect();
    let downs: Vec<Vec<u8>> = kinds.iter().map(|_| nasty_payload(SIZE)).collect();
    let want: HashMap<u16, usize> = addresses.iter().map(|a| (*a, SIZE)).collect();
    let (rxs, txs): (Vec<_>, Vec<_>) = pipes.iter_mut().map(|p| (&mut p.rx, &mut p.tx)).unzip();
    let uploads = join_all(txs.into_iter().zip(&ups).map(|(tx, data)| async move {
        for chunk in data.chunks(16 << 10) {
            tx.write_unbounded(chunk).await;
        }
    }));
    let downloads =
        join_all(rxs.into_iter().zip(&downs).map(|(rx, data)| rx.recv_exact_unbounded(data.len())));
    let SlipPeer { rx, tx, .. } = &mut server;
    let server_sends = async {
        // Interleaved: one piece for every client per write.
        for offset in (0..SIZE).step_by(PIECE) {
            let mut write = BytesMut::new();
            for (address, data) in addresses.iter().zip(&downs) {
                slip::encode_into(*address, &data[offset..(offset + PIECE).min(SIZE)], &mut write);
            }
            tx.output.write_unbounded(&write).await;
        }
    };
    let server_receives = rx.collect_unbounded(&want);
    let (_, got_down, _, got_up) = within_secs(60, "200 KiB each way for 5 clients", async {
        tokio::join!(uploads, downloads, server_sends, server_receives)
    })
    .await;
    for (i, address) in addresses.iter().enumerate() {
        assert!(
            got_up[address] == ups[i],
            "{:?} client {address}: its data reached the server intact",
            kinds[i]
        );
        assert!(got_down[i] == downs[i], "{:?} client {address}: got exactly its own data", kinds[i]);
    }
    for pipe in &mut pipes {
        pipe.rx.assert_quiet(Duration::from_millis(200), "nothing more").await;
    }
    server.rx.assert_quiet(Duration::from_millis(200), "nothing more").await;

    // A freed address is not handed out again at once (round robin).
    drop(pipes.remove(1));
    assert_eq!(server.notification("TunnelProxy.ClientDisconnected").await, json!({"socketAddress": 2}));
    let (mut newcomer, address) = join(&broker, &mut server, Kind::Tcp, &server_uuid).await;
    assert_eq!(address, 6, "the next address after the last one given, not the freed 2");
    exchange(&mut server, &mut newcomer, address, "newcomer").await;
    let (mut another, address) = join(&broker, &mut server, Kind::WebSocket, &server_uuid).await;
    assert_eq!(address, 7);
    exchange(&mut server, &mut another, address, "another").await;
}

#[tokio::test]
async fn several_clients_exchange_data_both_ways_at_once_through_a_tcp_server() {
    several_clients_exchange_data_both_ways_at_once(Kind::Tcp).await;
}

#[tokio::test]
async fn several_clients_exchange_data_both_ways_at_once_through_a_websocket_server() {
    several_clients_exchange_data_both_ways_at_once(Kind::WebSocket).await;
}

#[tokio::test]
async fn utf8_from_the_server_reaches_websocket_clients_as_text_frames() {
    let broker = Broker::start().await;
    for server_kind in [Kind::Tcp, Kind::WebSocket] {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &uuid).await;
        let (mut client, address) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
        let text = "grüße, 🌍\n";
        server.send(address, text.as_bytes()).await;
        assert_eq!(client.recv_frame().await, (true, text.as_bytes().to_vec()), "{server_kind:?}");
        // A character split over two frames arrives whole, as text.
        server.send(address, b"h\xC3").await;
        server.send(address, b"\xA9llo").await;
        let mut got = Vec::new();
        while got.len() < "héllo".len() {
            let (is_text, data) = client.recv_frame().await;
            assert!(is_text, "{server_kind:?}: {data:?}");
            got.extend(data);
        }
        assert_eq!(got, "héllo".as_bytes());
        // Not UTF-8: binary.
        server.send(address, &[0xFF, 0xC0, 0xDB]).await;
        assert_eq!(client.recv_frame().await, (false, vec![0xFF, 0xC0, 0xDB]), "{server_kind:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 7. SLIP fixes.

#[tokio::test]
async fn server_payload_arrives_unescaped_never_doubly_escaped() {
    let broker = Broker::start().await;
    for server_kind in [Kind::Tcp, Kind::WebSocket] {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &uuid).await;
        for kind in ALL_KINDS {
            let (mut client, address) = join(&broker, &mut server, kind, &uuid).await;
            // Literal escape sequences and raw specials in the payload.
            let payload = [0xDB, 0xDC, b'a', 0xDB, 0xDD, 0xC0, 0xDB, b'z', 0xDC, 0xDD];
            server.send(address, &payload).await;
            assert_eq!(client.recv_data(payload.len()).await, payload, "{server_kind:?} -> {kind:?}");
            let marker = b"end";
            server.send(address, marker).await;
            assert_eq!(
                client.recv_data(marker.len()).await,
                marker,
                "{server_kind:?} -> {kind:?}: exactly the payload, nothing more"
            );
            leave(&mut server, client, address).await;
        }
    }
}

#[tokio::test]
async fn invalid_escape_drops_only_its_frame() {
    let broker = Broker::start().await;
    for server_kind in [Kind::Tcp, Kind::WebSocket, Kind::Unix] {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &uuid).await;
        let (mut a, address_a) = join(&broker, &mut server, Kind::Tcp, &uuid).await;
        let (mut b, address_b) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
        let [a0, a1] = address_a.to_be_bytes();
        let [b0, b1] = address_b.to_be_bytes();

        let mut write = BytesMut::new();
        slip::encode_into(address_a, b"one ", &mut write);
        write.extend_from_slice(&[a0, a1, b'b', b'a', 0xDB, b'x', b'd', 0xC0]); // bad escape for A
        slip::encode_into(address_b, b"two ", &mut write);
        write.extend_from_slice(&[b0, b1, b'b', 0xDB, 0xC0]); // escape followed by the end, for B
        write.extend_from_slice(&[0, 0, b'{', 0xDB, 0x01, b'}', b'\n', 0xC0]); // bad escape on address 0
        slip::encode_into(address_a, b"three ", &mut write);
        slip::encode_into(address_b, b"four ", &mut write);
        server.tx.send_raw(&write).await;
        // A bad escape split across two writes.
        server.tx.send_raw(&[a0, a1, b'b', b'a', b'd', 0xDB]).await;
        sleep(Duration::from_millis(50)).await;
        server.tx.send_raw(&[0x00, b'!', 0xC0]).await;
        let mut write = BytesMut::new();
        slip::encode_into(address_a, b"five", &mut write);
        slip::encode_into(address_b, b"six", &mut write);
        server.tx.send_raw(&write).await;

        assert_eq!(a.recv_data(14).await, b"one three five", "{server_kind:?}");
        assert_eq!(b.recv_data(12).await, b"two four six", "{server_kind:?}");
        server.ping(24).await;
        assert_no_data(&mut a, Duration::from_millis(200), "only the good frames").await;
        assert_no_data(&mut b, Duration::from_millis(200), "only the good frames").await;
        exchange(&mut server, &mut a, address_a, "after bad escapes").await;
    }
}

#[tokio::test]
async fn frames_for_unknown_addresses_and_short_frames_are_ignored() {
    let broker = Broker::start().await;
    for server_kind in [Kind::Tcp, Kind::WebSocket] {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &uuid).await;
        let (mut client, address) = join(&broker, &mut server, Kind::Tcp, &uuid).await;
        let mut write = BytesMut::new();
        for unknown in [77u16, 0xFFFE, 0xFFFF, address + 1] {
            slip::encode_into(unknown, b"nobody", &mut write);
        }
        write.extend_from_slice(&[0x05, 0xC0]); // no room for an address
        slip::encode_into(address, b"", &mut write); // an empty payload
        slip::encode_into(address, b"somebody", &mut write);
        server.tx.send_raw(&write).await;
        assert_eq!(client.recv_data(8).await, b"somebody", "{server_kind:?}");
        server.ping(25).await;
        assert_no_data(&mut client, Duration::from_millis(200), "only its own data").await;
        exchange(&mut server, &mut client, address, "after unknown addresses").await;
    }
}

#[tokio::test]
async fn leading_frame_ends_are_tolerated() {
    let broker = Broker::start().await;
    for server_kind in ALL_KINDS {
        // A lone END as the first write, then a frame.
        let mut server = SlipPeer::register(&broker, server_kind, &new_uuid()).await;
        server.tx.send_raw(&[0xC0]).await;
        server.ping(26).await;
        // Several ENDs in front of the first frame, in the same write; ENDs between frames.
        let mut server = SlipPeer::register(&broker, server_kind, &new_uuid()).await;
        let mut write = vec![0xC0, 0xC0, 0xC0];
        write
            .extend(slip_json(&json!({"id": 27, "method": "TunnelProxy.Ping", "params": {"timestamp": 27}})));
        write.extend([0xC0, 0xC0]);
        write
            .extend(slip_json(&json!({"id": 28, "method": "TunnelProxy.Ping", "params": {"timestamp": 28}})));
        server.tx.send_raw(&write).await;
        assert_eq!(server.next_json().await, success(27, json!({"timestamp": 27})), "{server_kind:?}");
        assert_eq!(server.next_json().await, success(28, json!({"timestamp": 28})), "{server_kind:?}");
    }
}

/// Registers a server with `first` as one write (one binary frame on a WebSocket); `first`
/// holds the request and SLIP bytes behind it. Returns the peer after checking the response.
async fn register_with_trailing_slip(broker: &Broker, kind: Kind, first: &[u8]) -> SlipPeer {
    let mut c = broker.connect_v2(kind).await;
    c.send_bytes(first).await;
    let r = c.recv_json().await;
    assert_eq!(r, success(1, json!({"slipEnabled": true, "tunnelProxyError": NO_ERROR})), "{kind:?}");
    SlipPeer::from_client(c)
}

#[tokio::test]
async fn slip_bytes_in_the_same_write_as_register_server_are_not_lost() {
    let broker = Broker::start().await;
    let ping =
        |id: i64| slip_json(&json!({"id": id, "method": "TunnelProxy.Ping", "params": {"timestamp": id}}));
    for kind in ALL_KINDS {
        for separator in [&b"\n"[..], b"", b"\r\n", b"\n\xC0", b"\xC0"] {
            let uuid = new_uuid();
            let mut first = serde_json::to_vec(&register_server_request(1, json!(uuid))).unwrap();
            first.extend_from_slice(separator);
            first.extend(ping(30));
            first.extend(ping(31));
            let mut server = register_with_trailing_slip(&broker, kind, &first).await;
            assert_eq!(
                server.next_json().await,
                success(30, json!({"timestamp": 30})),
                "{kind:?} {separator:?}"
            );
            assert_eq!(
                server.next_json().await,
                success(31, json!({"timestamp": 31})),
                "{kind:?} {separator:?}"
            );
            let (mut client, address) = join(&broker, &mut server, Kind::Tcp, &uuid).await;
            exchange(&mut server, &mut client, address, "after early SLIP").await;
        }
        // The first frame split: half in the registration write, the rest later.
        let uuid = new_uuid();
        let mut first = serde_json::to_vec(&register_server_request(1, json!(uuid))).unwrap();
        first.push(b'\n');
        let frame = ping(32);
        first.extend_from_slice(&frame[..5]);
        let mut server = register_with_trailing_slip(&broker, kind, &first).await;
        server.tx.send_raw(&frame[5..]).await;
        assert_eq!(server.next_json().await, success(32, json!({"timestamp": 32})), "{kind:?}");
    }
    // WebSocket: a text frame with the request and a binary frame with SLIP, back to back.
    let uuid = new_uuid();
    let mut c = broker.connect_v2(Kind::WebSocket).await;
    c.send_json(&register_server_request(1, json!(uuid))).await;
    c.send_bytes(&ping(33)).await;
    assert_eq!(c.recv_json().await, success(1, json!({"slipEnabled": true, "tunnelProxyError": NO_ERROR})));
    let mut server = SlipPeer::from_client(c);
    assert_eq!(server.next_json().await, success(33, json!({"timestamp": 33})));
}

#[tokio::test]
async fn data_in_the_same_write_as_register_client_reaches_the_server() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    for kind in ALL_KINDS {
        let uuid = new_uuid();
        let mut first =
            serde_json::to_vec(&register_client_request(2, json!(uuid), json!(server_uuid))).unwrap();
        // Only the line ending behind the request is a separator; the spaces are data.
        first.extend_from_slice(b"\r\n \tearly \xC0\xDB bytes");
        let mut client = broker.connect_v2(kind).await;
        client.send_bytes(&first).await;
        assert_eq!(client.recv_json().await, success(2, json!({"tunnelProxyError": NO_ERROR})), "{kind:?}");
        let params = server.notification("TunnelProxy.ClientConnected").await;
        let address = params["socketAddress"].as_u64().unwrap() as u16;
        assert_eq!(server.rx.collect(address, 16).await, b" \tearly \xC0\xDB bytes", "{kind:?}");
        exchange(&mut server, &mut client, address, "after early data").await;
        leave(&mut server, client, address).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Ping, Hello, Introspect, Authenticate.

#[tokio::test]
async fn ping_echoes_the_timestamp_before_and_after_registration() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        for (id, timestamp) in [(40, json!(0)), (41, json!(1_700_000_000_123u64)), (42, json!(u32::MAX))] {
            let r = c.call(id, "TunnelProxy.Ping", json!({"timestamp": timestamp})).await;
            assert_eq!(r, success(id, json!({"timestamp": timestamp})), "{kind:?}");
        }
        // A numeric string id is echoed as a number.
        c.send_json(&json!({"id": "43", "method": "TunnelProxy.Ping", "params": {"timestamp": 43}})).await;
        assert_eq!(next_msg(&mut c).await, success(43, json!({"timestamp": 43})), "{kind:?}");

        let mut server = SlipPeer::register(&broker, kind, &new_uuid()).await;
        for (id, timestamp) in [(44, json!(0)), (45, json!(1_700_000_000_123u64))] {
            let r = server.call(id, "TunnelProxy.Ping", json!({"timestamp": timestamp})).await;
            assert_eq!(r, success(id, json!({"timestamp": timestamp})), "{kind:?}");
        }
        server
            .tx
            .send_json(&json!({"id": "46", "method": "TunnelProxy.Ping", "params": {"timestamp": 46}}))
            .await;
        assert_eq!(server.next_json().await, success(46, json!({"timestamp": 46})), "{kind:?}");
    }
}

fn check_hello(r: &Value, id: i64) {
    assert_eq!(
        *r,
        success(
            id,
            json!({"apiVersion": "0.5", "name": "remoteproxy", "server": "remoteproxy", "version": env!("CARGO_PKG_VERSION")})
        )
    );
}

fn check_v2_introspection(r: &Value, id: i64) {
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["id"], json!(id), "{r}");
    let p = &r["params"];
    let methods = p["methods"].as_object().expect("methods");
    let mut names: Vec<&str> = methods.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "RemoteProxy.Hello",
            "RemoteProxy.Introspect",
            "TunnelProxy.DisconnectClient",
            "TunnelProxy.Ping",
            "TunnelProxy.RegisterClient",
            "TunnelProxy.RegisterServer"
        ],
        "no Authentication namespace on v2"
    );
    assert_eq!(
        methods["TunnelProxy.RegisterServer"]["params"],
        json!({"serverName": "String", "serverUuid": "Uuid"})
    );
    assert_eq!(
        methods["TunnelProxy.RegisterServer"]["returns"],
        json!({"slipEnabled": "Bool", "tunnelProxyError": "$ref:TunnelProxyError"})
    );
    assert_eq!(
        methods["TunnelProxy.RegisterClient"]["params"],
        json!({"clientName": "String", "clientUuid": "Uuid", "serverUuid": "Uuid"})
    );
    assert_eq!(
        methods["TunnelProxy.RegisterClient"]["returns"],
        json!({"tunnelProxyError": "$ref:TunnelProxyError"})
    );
    assert_eq!(methods["TunnelProxy.DisconnectClient"]["params"], json!({"socketAddress": "UInt"}));
    assert_eq!(
        methods["TunnelProxy.DisconnectClient"]["returns"],
        json!({"tunnelProxyError": "$ref:TunnelProxyError"})
    );
    assert_eq!(methods["TunnelProxy.Ping"]["params"], json!({"timestamp": "UInt"}));
    assert_eq!(methods["TunnelProxy.Ping"]["returns"], json!({"timestamp": "UInt"}));
    let notifications = p["notifications"].as_object().expect("notifications");
    let mut names: Vec<&str> = notifications.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(names, ["TunnelProxy.ClientConnected", "TunnelProxy.ClientDisconnected"]);
    assert_eq!(
        notifications["TunnelProxy.ClientConnected"]["params"],
        json!({"clientName": "String", "clientPeerAddress": "String", "clientUuid": "String", "socketAddress": "UInt"})
    );
    assert_eq!(notifications["TunnelProxy.ClientDisconnected"]["params"], json!({"socketAddress": "UInt"}));
    assert_eq!(
        p["types"]["TunnelProxyError"],
        json!([
            "TunnelProxyErrorNoError",
            "TunnelProxyErrorInvalidUuid",
            "TunnelProxyErrorInternalServerError",
            "TunnelProxyErrorServerNotFound",
            "TunnelProxyErrorForbiddenCall",
            "TunnelProxyErrorAlreadyRegistered",
            "TunnelProxyErrorNotRegistered",
            "TunnelProxyErrorUnknownSocketAddress"
        ])
    );
}

#[tokio::test]
async fn hello_and_introspect_work_on_v2_before_and_after_registration() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        check_hello(&c.call(47, "RemoteProxy.Hello", json!({})).await, 47);
        check_v2_introspection(&c.call(48, "RemoteProxy.Introspect", json!({})).await, 48);
        // Still unregistered and open: it can register.
        let r = c
            .call(49, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": new_uuid()}))
            .await;
        assert_eq!(r["params"]["tunnelProxyError"], NO_ERROR);
        let mut server = SlipPeer::from_client(c);
        check_hello(&server.call(50, "RemoteProxy.Hello", json!({})).await, 50);
        check_v2_introspection(&server.call(51, "RemoteProxy.Introspect", json!({})).await, 51);
    }
}

#[tokio::test]
async fn authentication_namespace_does_not_exist_on_v2() {
    let broker = Broker::start().await;
    let params = json!({"uuid": "u", "name": "n", "token": "t"});
    let expected = |id: i64| json!({"error": "No such namespace", "id": id, "status": "error"});
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        let r = c.call(52, "Authentication.Authenticate", params.clone()).await;
        assert_eq!(r, expected(52), "{kind:?}");
        expect_closed_now(&mut c, "No such namespace.").await;

        // On a registered server's channel: the error, then the close (its clients with it).
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, kind, &uuid).await;
        let (mut client, _) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
        assert_eq!(
            server.call(53, "Authentication.Authenticate", params.clone()).await,
            expected(53),
            "{kind:?}"
        );
        server.rx.expect_closed_now("No such namespace.").await;
        expect_pipe_closed_now(&mut client, CLOSE_SERVER_GONE).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Timers.

#[tokio::test]
async fn unregistered_connection_closes_after_inactive_timeout_restarted_by_traffic() {
    let broker =
        Broker::builder().config(|c| c.timeouts.inactive = Duration::from_millis(1000)).start().await;
    let mut silent = Vec::new();
    for kind in ALL_KINDS {
        silent.push(broker.connect_v2(kind).await);
    }
    let mut talking = broker.connect_v2(Kind::WebSocket).await;
    // Traffic restarts the timer: 8 × 200 ms of Hellos outlive one inactiveTimeout.
    for i in 0..8 {
        check_hello(&talking.call(i, "RemoteProxy.Hello", json!({})).await, i);
        sleep(Duration::from_millis(200)).await;
    }
    for c in &mut silent {
        expect_closed_now(c, CLOSE_INACTIVE).await;
    }
    // Silence now: it closes too.
    expect_closed_now(&mut talking, CLOSE_INACTIVE).await;
}

#[tokio::test]
async fn handshake_deadline_closes_a_connection_that_only_pings_but_not_a_registered_server() {
    let broker = Broker::builder()
        .config(|c| {
            c.timeouts.handshake_deadline = Duration::from_millis(1000);
            c.timeouts.inactive = Duration::from_secs(8);
        })
        .start()
        .await;
    let uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &uuid).await;
    let pings = async {
        let mut outcomes = Vec::new();
        for kind in ALL_KINDS {
            let mut c = broker.connect_v2(kind).await;
            let mut answered = 0;
            let closed = loop {
                assert!(answered < 60, "{kind:?}: still open after {answered} pings at 100 ms");
                c.send_json(
                    &json!({"id": answered, "method": "TunnelProxy.Ping", "params": {"timestamp": 1}}),
                )
                .await;
                match next_event(&mut c).await {
                    Event::Raw(raw) => {
                        let r: Value = serde_json::from_slice(&raw).unwrap();
                        assert_eq!(r, success(answered, json!({"timestamp": 1})));
                        answered += 1;
                    }
                    Event::Closed(how) => break how,
                }
                sleep(Duration::from_millis(100)).await;
            };
            outcomes.push((kind, answered, closed));
        }
        outcomes
    };
    let server_pings = async {
        // The registered server outlives the deadline: ~2.4 s of pings.
        for id in 0..12 {
            server.ping(id).await;
            sleep(Duration::from_millis(200)).await;
        }
    };
    let (outcomes, _) = within_secs(30, "pings", async { tokio::join!(pings, server_pings) }).await;
    for (kind, answered, closed) in outcomes {
        assert!(answered > 0, "{kind:?}: pings are answered before the deadline");
        assert_eq!(closed, expected_close(kind, CLOSE_INACTIVE), "{kind:?}");
    }
    let (mut client, address) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
    exchange(&mut server, &mut client, address, "after the deadline").await;
}

#[tokio::test]
async fn silent_registered_server_is_closed_with_its_clients_while_a_pinging_one_stays() {
    let broker = Broker::builder()
        .config(|c| {
            c.timeouts.tunnel_proxy_server = Duration::from_millis(1500);
            c.timeouts.inactive = Duration::from_millis(1000);
        })
        .start()
        .await;
    let mut silent = Vec::new();
    let mut pinging = Vec::new();
    for kind in ALL_KINDS {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, kind, &uuid).await;
        let (client, address) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
        silent.push((server, client, address, uuid));
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, kind, &uuid).await;
        let (client, address) = join(&broker, &mut server, kind, &uuid).await;
        pinging.push((server, client, address));
    }
    let pingers = join_all(pinging.iter_mut().map(|(server, _, _)| async move {
        // 12 × 250 ms: twice the server timeout.
        for id in 0..12 {
            server.ping(id).await;
            sleep(Duration::from_millis(250)).await;
        }
    }));
    let watchers = join_all(silent.iter_mut().map(|(server, client, address, _)| async move {
        // Data from its client does not count: the server itself sends nothing.
        client.send_bytes(b"to a silent server").await;
        let frame = server.next_frame().await;
        assert_eq!((frame.address, &frame.payload[..]), (*address, &b"to a silent server"[..]));
        server.rx.expect_closed_now(CLOSE_INACTIVE).await;
        expect_pipe_closed_now(client, CLOSE_SERVER_GONE).await;
    }));
    within_secs(30, "timers", async { tokio::join!(pingers, watchers) }).await;
    // The pinging servers' clients were idle for longer than both timeouts: still fine.
    for (server, client, address) in &mut pinging {
        exchange(server, client, *address, "idle client of a pinging server").await;
    }
    // The silent servers' uuids are free.
    for (server, _, _, uuid) in &silent {
        SlipPeer::register(&broker, server.kind, uuid).await.ping(1).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Limits and flow control.

#[tokio::test]
async fn max_clients_per_server_refuses_the_next_client_and_keeps_the_others() {
    use remoteproxy::protocol::reasons::SERVER_FULL;
    let broker = Broker::builder().config(|c| c.server.max_clients_per_server = 2).start().await;
    let uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &uuid).await;
    let (mut first, first_address) = join(&broker, &mut server, Kind::Tcp, &uuid).await;
    let (mut second, second_address) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
    let refused_uuid = new_uuid();
    for kind in ALL_KINDS {
        let (mut third, r) = register_client(&broker, kind, &refused_uuid, &uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": INTERNAL_SERVER_ERROR})), "{kind:?}");
        expect_closed_now(&mut third, SERVER_FULL).await;
    }
    // The server heard nothing of them; the first two keep working.
    server.ping(54).await;
    exchange(&mut server, &mut first, first_address, "first").await;
    exchange(&mut server, &mut second, second_address, "second").await;
    // Another server is not limited by this one's clients.
    let other_uuid = new_uuid();
    let mut other = SlipPeer::register(&broker, Kind::Unix, &other_uuid).await;
    let (_a, _) = join(&broker, &mut other, Kind::Tcp, &other_uuid).await;
    let (_b, _) = join(&broker, &mut other, Kind::Tcp, &other_uuid).await;
    // Once one leaves, there is room again, also for the uuid that was refused.
    drop(first);
    assert_eq!(
        server.notification("TunnelProxy.ClientDisconnected").await,
        json!({"socketAddress": first_address})
    );
    let (mut third, r) = register_client(&broker, Kind::Unix, &refused_uuid, &uuid).await;
    assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
    let params = server.notification("TunnelProxy.ClientConnected").await;
    assert_eq!(params["clientUuid"], braced(&refused_uuid));
    let address = params["socketAddress"].as_u64().unwrap() as u16;
    exchange(&mut server, &mut third, address, "third").await;
    exchange(&mut server, &mut second, second_address, "second").await;
}

#[tokio::test]
async fn slow_client_is_disconnected_while_another_client_keeps_receiving() {
    use remoteproxy::protocol::reasons::TOO_SLOW;
    use remoteproxy::tunnelproxy::server::CLIENT_QUEUE_LIMIT;
    const SLOW_FRAME: usize = 64 << 10;
    const FAST_PIECE: usize = 16 << 10;
    const SLOW_MAX: usize = 96 << 20;
    for (slow_kind, fast_kind) in [(Kind::Tcp, Kind::WebSocket), (Kind::WebSocket, Kind::Tcp)] {
        let broker = Broker::start().await;
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, Kind::Tcp, &uuid).await;
        let (mut slow, slow_address) = join(&broker, &mut server, slow_kind, &uuid).await;
        let (fast, fast_address) = join(&broker, &mut server, fast_kind, &uuid).await;
        let mut fast = Pipe::new(fast);

        let disconnected = Cell::new(false);
        let fast_total = Cell::new(usize::MAX);
        let SlipPeer { rx, tx, .. } = &mut server;
        let writer = async {
            let slow_payload = vec![b's'; SLOW_FRAME];
            let mut slow_sent = 0;
            let mut fast_sent = 0;
            while !disconnected.get() {
                assert!(
                    slow_sent < SLOW_MAX,
                    "{slow_kind:?}: the slow client was not disconnected after {slow_sent} bytes"
                );
                let mut write = BytesMut::new();
                for _ in 0..4 {
                    slip::encode_into(slow_address, &slow_payload, &mut write);
                }
                slip::encode_into(fast_address, &pattern(fast_sent, FAST_PIECE), &mut write);
                tx.output.write_unbounded(&write).await;
                slow_sent += 4 * SLOW_FRAME;
                fast_sent += FAST_PIECE;
                // Let the readers run.
                tokio::task::yield_now().await;
            }
            // After the disconnect: 1 MiB more for the fast client, and frames for the gone
            // address (ignored).
            fast_total.set(fast_sent + (1 << 20));
            while fast_sent < fast_total.get() {
                let mut write = BytesMut::new();
                slip::encode_into(fast_address, &pattern(fast_sent, FAST_PIECE), &mut write);
                slip::encode_into(slow_address, b"gone", &mut write);
                tx.output.write_unbounded(&write).await;
                fast_sent += FAST_PIECE;
            }
            slow_sent
        };
        let notifications = async {
            let message = rx.next_json_unbounded().await;
            assert_eq!(message["notification"], "TunnelProxy.ClientDisconnected", "{message}");
            assert_eq!(message["params"], json!({"socketAddress": slow_address}));
            disconnected.set(true);
        };
        let fast_reader = async {
            let mut received = 0;
            while received < fast_total.get() {
                match fast.rx.input.read().await {
                    Ok((_, data)) => {
                        assert!(
                            data == pattern(received, data.len()),
                            "{fast_kind:?}: fast client data at {received}"
                        );
                        received += data.len();
                    }
                    Err(how) => {
                        panic!("{fast_kind:?}: the fast client was closed after {received} bytes: {how:?}")
                    }
                }
            }
            received
        };
        let (slow_sent, _, received) = within_secs(120, "the slow client to be disconnected", async {
            tokio::join!(writer, notifications, fast_reader)
        })
        .await;
        assert!(slow_sent > CLIENT_QUEUE_LIMIT, "{slow_sent}");
        assert_eq!(received, fast_total.get());
        // Nothing else for the server; the fast client still works both ways.
        server.rx.assert_quiet(Duration::from_millis(200), "after the slow client's disconnect").await;
        server.ping(55).await;
        fast.tx.write(b"still here").await;
        assert_eq!(server.rx.collect(fast_address, 10).await, b"still here");
        // The slow client is closed (after what the kernel buffered for it).
        let closed = slow.closed().await;
        match slow_kind {
            Kind::WebSocket => assert!(
                matches!(&closed, Closed::WebSocket(1011, reason) if reason == TOO_SLOW)
                    || closed == Closed::WebSocketNoFrame,
                "{closed:?}"
            ),
            _ => assert_eq!(closed, Closed::Eof),
        }
    }
}

#[tokio::test]
async fn client_flooding_a_server_that_does_not_read_does_not_stall_other_servers() {
    const FLOOD: usize = 8 << 20;
    let broker = Broker::start().await;
    let a_uuid = new_uuid();
    let mut a = SlipPeer::register(&broker, Kind::Tcp, &a_uuid).await;
    let (flooder, flooder_address) = join(&broker, &mut a, Kind::Tcp, &a_uuid).await;
    let mut flooder = Pipe::new(flooder);
    let b_uuid = new_uuid();
    let mut b = SlipPeer::register(&broker, Kind::WebSocket, &b_uuid).await;
    let (b_client, b_address) = join(&broker, &mut b, Kind::WebSocket, &b_uuid).await;
    let mut b_client = Pipe::new(b_client);

    let flood = nasty_payload(FLOOD);
    let upload = async {
        for chunk in flood.chunks(64 << 10) {
            flooder.tx.write_unbounded(chunk).await;
        }
    };
    let rest = async {
        // A does not read for a while; B and its client exchange 1 MiB each way meanwhile.
        sleep(Duration::from_millis(300)).await;
        let down = nasty_payload(1 << 20);
        let up = nasty_payload(1 << 20);
        let SlipPeer { rx, tx, .. } = &mut b;
        let b_sends = async {
            for chunk in down.chunks(32 << 10) {
                tx.send(b_address, chunk).await;
            }
        };
        let client_sends = async {
            for chunk in up.chunks(32 << 10) {
                b_client.tx.write(chunk).await;
            }
        };
        let want = HashMap::from([(b_address, up.len())]);
        let (_, _, got_down, mut got_up) = tokio::join!(
            b_sends,
            client_sends,
            b_client.rx.recv_exact_unbounded(down.len()),
            rx.collect_unbounded(&want)
        );
        assert!(got_down == down, "B's client got B's data while A was not reading");
        assert!(got_up.remove(&b_address).unwrap() == up, "B got its client's data while A was not reading");
        // A fresh connection is served too.
        let mut fresh = broker.connect_v2(Kind::Tcp).await;
        check_hello(&fresh.hello().await, 0);
        // Now A reads: everything its client sent arrives, in order.
        let want = HashMap::from([(flooder_address, FLOOD)]);
        a.rx.collect_unbounded(&want).await.remove(&flooder_address).unwrap()
    };
    let (_, got) = within_secs(120, "the flood", async { tokio::join!(upload, rest) }).await;
    assert!(got == flood, "A got its client's data intact");
    a.ping(56).await;
}

// ---------------------------------------------------------------------------------------------
// 11. Graceful shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_unregistered_connections_and_keeps_tunnels_during_the_grace_period() {
    let grace = Duration::from_secs(4);
    let mut broker = Broker::builder().config(|c| c.server.shutdown_grace_period = grace).start().await;
    let mut unregistered = Vec::new();
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        check_hello(&c.hello().await, 0);
        unregistered.push(c);
    }
    let uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::WebSocket, &uuid).await;
    let mut clients = Vec::new();
    for kind in [Kind::WebSocket, Kind::Tcp, Kind::WebSocket, Kind::Unix, Kind::WebSocket, Kind::WebSocket] {
        clients.push(join(&broker, &mut server, kind, &uuid).await);
    }

    broker.signal_stop();
    let stopped_at = tokio::time::Instant::now();
    for c in &mut unregistered {
        let expected = match c.kind {
            Kind::WebSocket => Closed::WebSocket(1000, "Stop server".into()),
            _ => Closed::Eof,
        };
        match next_event(c).await {
            Event::Closed(how) => assert_eq!(how, expected, "{:?}", c.kind),
            Event::Raw(raw) => {
                panic!("{:?}: expected the close, got {:?}", c.kind, String::from_utf8_lossy(&raw))
            }
        }
    }
    // The registered server and its clients go on.
    for round in 0..3 {
        for (client, address) in &mut clients {
            exchange(&mut server, client, *address, &format!("grace round {round}")).await;
        }
        server.ping(57 + round).await;
    }
    assert!(
        stopped_at.elapsed() < grace,
        "the exchanges took longer than the grace period; the test proves nothing"
    );

    // After the grace period everything is closed, as a shutdown (1000 on WebSocket).
    match within_secs(15, "the server's close", server.rx.next_unbounded()).await {
        Err(how) => assert_eq!(how, Closed::WebSocket(1000, "Stop server".into()), "server"),
        Ok(frame) => panic!("expected the close, got a frame for {}", frame.address),
    }
    for (client, _) in &mut clients {
        let closed = client.closed().await;
        match client.kind {
            Kind::WebSocket => assert_eq!(closed, Closed::WebSocket(1000, "Stop server".into()), "client"),
            _ => assert_eq!(closed, Closed::Eof),
        }
    }
    assert!(stopped_at.elapsed() >= grace, "the tunnels were closed before the grace period ended");
    assert!(
        broker.stopped_within(Duration::from_secs(10)).await,
        "run did not return after the grace period"
    );
}

/// A registered server without clients is no tunnel: a stopping broker closes it at once
/// instead of waiting out the grace period for it; one with a client goes when that client goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_servers_without_clients() {
    let grace = Duration::from_secs(30);
    let mut broker = Broker::builder().config(|c| c.server.shutdown_grace_period = grace).start().await;
    let (idle_uuid, busy_uuid) = (new_uuid(), new_uuid());
    let mut idle = SlipPeer::register(&broker, Kind::Tcp, &idle_uuid).await;
    let mut busy = SlipPeer::register(&broker, Kind::WebSocket, &busy_uuid).await;
    let (mut client, address) = join(&broker, &mut busy, Kind::Tcp, &busy_uuid).await;
    broker.signal_stop();
    match within_secs(5, "the idle server's close", idle.rx.next_unbounded()).await {
        Err(how) => assert_eq!(how, Closed::Eof, "idle server"),
        Ok(frame) => panic!("expected the close, got a frame for {}", frame.address),
    }
    // The busy one still carries its client's tunnel.
    exchange(&mut busy, &mut client, address, "still carried").await;
    drop(client);
    loop {
        match within_secs(5, "the busy server's close", busy.rx.next_unbounded()).await {
            Err(how) => break assert_eq!(how, Closed::WebSocket(1000, "Stop server".into()), "busy server"),
            // The ClientDisconnected notification comes first.
            Ok(frame) => assert_eq!(frame.address, 0, "only notifications before the close"),
        }
    }
    assert!(broker.stopped_within(Duration::from_secs(5)).await, "the broker waited for idle servers");
}
