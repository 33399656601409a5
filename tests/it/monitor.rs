//! The monitor socket (PROTOCOL §7) against a real broker: push mode and request mode while
//! tunnels of both APIs carry data, the counts and byte counters of the snapshot, the bounds on
//! clients, and the socket file (mode, stale file, removal).

use crate::common::*;

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use remoteproxy::config::{Config, ListenerSettings};
use remoteproxy::transport::ServerListeners;
use remoteproxy::{Server, monitor};
use remoteproxy_wire as slip;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

// ---------------------------------------------------------------------------------------------
// A monitor client.

/// One connection to the monitor socket, reading JSON lines.
struct Monitor {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Monitor {
    async fn connect(path: &Path) -> Monitor {
        let stream = within("connect to the monitor socket", UnixStream::connect(path)).await.unwrap();
        Monitor { stream, buf: Vec::new() }
    }

    /// The next line, unbounded; `None` when the broker closed the connection.
    async fn line_unbounded(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(String::from_utf8(line).expect("snapshots are UTF-8"));
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    assert!(self.buf.is_empty(), "unterminated line before the close: {:?}", self.buf);
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next snapshot: one compact JSON line.
    async fn snapshot(&mut self) -> Value {
        let line = within("a snapshot", self.line_unbounded()).await.expect("the monitor closed");
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'), "{line:?}");
        assert!(!line.contains("\n "), "compact JSON");
        serde_json::from_str(&line).expect("a snapshot is JSON")
    }

    async fn send(&mut self, text: &str) {
        within("write to the monitor", self.stream.write_all(text.as_bytes())).await.unwrap();
    }

    /// Sends a refresh request and returns the answer.
    async fn refresh(&mut self, print_all: Option<bool>) -> Value {
        let request = match print_all {
            None => json!({"method": "refresh"}),
            Some(print_all) => json!({"method": "refresh", "params": {"printAll": print_all}}),
        };
        self.send(&format!("{request}\n")).await;
        self.snapshot().await
    }

    /// Refreshes until `done` holds (bounded by [`WAIT`]) and returns the last snapshot, so
    /// counters bumped just after the data was delivered are seen; the caller asserts on it.
    async fn settled(&mut self, print_all: bool, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let snapshot = self.refresh(Some(print_all)).await;
            if done(&snapshot) || Instant::now() > deadline {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the broker closes this connection; lines before the close are
    /// snapshots pushed before the request was read.
    async fn closed(&mut self) {
        within("the monitor to close the connection", async {
            while let Some(line) = self.line_unbounded().await {
                serde_json::from_str::<Value>(&line).expect("only snapshots before the close");
            }
        })
        .await
    }

    /// Nothing arrives for `dur`.
    async fn quiet(&mut self, dur: Duration) {
        if let Ok(line) = tokio::time::timeout(dur, self.line_unbounded()).await {
            panic!("expected nothing for {dur:?}, got {line:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A v2 server speaking SLIP, and v2 clients.

struct SlipServer {
    io: Box<dyn Io>,
    decoder: slip::Decoder,
    frames: VecDeque<slip::Frame>,
}

impl SlipServer {
    async fn register(broker: &Broker, kind: Kind, name: &str, uuid: &str) -> SlipServer {
        let mut client = broker.connect_v2(kind).await;
        let response = client
            .call(1, "TunnelProxy.RegisterServer", json!({"serverName": name, "serverUuid": uuid}))
            .await;
        assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError", "{response}");
        let Client { wire: ClientWire::Stream(io), buf, .. } = client else {
            panic!("the SLIP server helper is for stream transports")
        };
        let mut server = SlipServer { io, decoder: slip::Decoder::new(1 << 20), frames: VecDeque::new() };
        server.push(&buf);
        server
    }

    fn push(&mut self, data: &[u8]) {
        let frames = &mut self.frames;
        self.decoder.decode(data, |frame| frames.push_back(frame.expect("valid SLIP from the broker")));
    }

    async fn frame(&mut self) -> slip::Frame {
        within("a SLIP frame", async {
            loop {
                if let Some(frame) = self.frames.pop_front() {
                    return frame;
                }
                let mut chunk = [0u8; 16384];
                let n = self.io.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the broker closed the server connection");
                self.push(&chunk[..n]);
            }
        })
        .await
    }

    /// The `socketAddress` of the next `ClientConnected`.
    async fn client_connected(&mut self) -> u16 {
        let frame = self.frame().await;
        assert_eq!(frame.address, 0);
        let message: Value = serde_json::from_slice(&frame.payload).unwrap();
        assert_eq!(message["notification"], "TunnelProxy.ClientConnected", "{message}");
        message["params"]["socketAddress"].as_u64().unwrap() as u16
    }

    /// Collects `n` payload bytes from `address`.
    async fn collect(&mut self, address: u16, n: usize) -> Vec<u8> {
        let mut data = Vec::new();
        while data.len() < n {
            let frame = self.frame().await;
            assert_eq!(frame.address, address, "a frame for another address");
            data.extend_from_slice(&frame.payload);
        }
        assert_eq!(data.len(), n, "more data than was sent");
        data
    }

    async fn send(&mut self, address: u16, payload: &[u8]) {
        let frame = slip::encode(address, payload);
        within("write to the broker", self.io.write_all(&frame)).await.unwrap();
    }
}

async fn register_client(broker: &Broker, kind: Kind, name: &str, uuid: &str, server: &str) -> Client {
    let mut client = broker.connect_v2(kind).await;
    let response = client
        .call(
            1,
            "TunnelProxy.RegisterClient",
            json!({"clientName": name, "clientUuid": uuid, "serverUuid": server}),
        )
        .await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError", "{response}");
    client
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The braced form the broker shows v2 uuids in (as the reference's `QUuid::toString`).
fn braced(uuid: &str) -> String {
    format!("{{{uuid}}}")
}

/// The element of `list` whose `key` is `value`.
fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|item| item[key] == value)
        .unwrap_or_else(|| panic!("no {key}={value} in {list}"))
}

// ---------------------------------------------------------------------------------------------
// Push mode and request mode with traffic on both APIs.

/// What the test sent through each tunnel, to compare with the counters.
const V1_FIRST_SENT: usize = 3000; // TCP client -> WebSocket client
const V1_SECOND_SENT: usize = 5000; // WebSocket client -> TCP client
const V2_APP1_SENT: usize = 1111; // TCP client -> server
const V2_TO_APP1: usize = 2222;
const V2_APP2_SENT: usize = 3333; // WebSocket client -> server
const V2_TO_APP2: usize = 4444;

/// A broker with a v1 tunnel (TCP <-> WebSocket), a v2 server "device" (TCP) with two clients
/// (TCP and WebSocket) and an idle v2 server (unix), each of which has carried known data.
struct Traffic {
    _v1: (Client, Client),
    _v2: (SlipServer, Client, Client, SlipServer),
    server_uuid: String,
    idle_uuid: String,
    app1_uuid: String,
    app2_uuid: String,
}

async fn run_traffic(broker: &Broker) -> Traffic {
    let (mut first, mut second) = tunnel(broker, Kind::Tcp, Kind::WebSocket, "token").await;
    let data = random_bytes(V1_FIRST_SENT);
    first.send_bytes(&data).await;
    assert_eq!(second.recv_data(V1_FIRST_SENT).await, data);
    let data = random_bytes(V1_SECOND_SENT);
    second.send_bytes(&data).await;
    assert_eq!(first.recv_data(V1_SECOND_SENT).await, data);

    let (server_uuid, idle_uuid, app1_uuid, app2_uuid) = (new_uuid(), new_uuid(), new_uuid(), new_uuid());
    let mut server = SlipServer::register(broker, Kind::Tcp, "device", &server_uuid).await;
    let idle = SlipServer::register(broker, Kind::Unix, "idle-device", &idle_uuid).await;
    let mut app1 = register_client(broker, Kind::Tcp, "app-1", &app1_uuid, &server_uuid).await;
    let address1 = server.client_connected().await;
    let mut app2 = register_client(broker, Kind::WebSocket, "app-2", &app2_uuid, &server_uuid).await;
    let address2 = server.client_connected().await;
    for (app, address, sent, received) in
        [(&mut app1, address1, V2_APP1_SENT, V2_TO_APP1), (&mut app2, address2, V2_APP2_SENT, V2_TO_APP2)]
    {
        let data = random_bytes(sent);
        app.send_bytes(&data).await;
        assert_eq!(server.collect(address, sent).await, data);
        let data = random_bytes(received);
        server.send(address, &data).await;
        assert_eq!(app.recv_data(received).await, data);
    }
    Traffic {
        _v1: (first, second),
        _v2: (server, app1, app2, idle),
        server_uuid,
        idle_uuid,
        app1_uuid,
        app2_uuid,
    }
}

/// Every byte counter has caught up with what the test sent.
fn counted(s: &Value) -> bool {
    let v1 = s["proxyStatistic"]["total"]["totalTraffic"] == (V1_FIRST_SENT + V1_SECOND_SENT) as u64;
    let v2_sent = (V2_APP1_SENT + V2_APP2_SENT + V2_TO_APP1 + V2_TO_APP2) as u64;
    let servers = s["tunnelProxyStatistic"]["tunnelConnections"].as_array().cloned().unwrap_or_default();
    let v2: u64 = servers
        .iter()
        .flat_map(|server| server["clientConnections"].as_array().cloned().unwrap_or_default())
        .map(|c| c["rxDataCount"].as_u64().unwrap_or(0) + c["txDataCount"].as_u64().unwrap_or(0))
        .sum();
    let tx: u64 = s["proxyStatistic"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["txDataCount"].as_u64().unwrap())
        .sum();
    v1 && v2 == v2_sent && tx == (V1_FIRST_SENT + V1_SECOND_SENT) as u64
}

/// The snapshot describes exactly what [`run_traffic`] set up.
fn check_snapshot(s: &Value, t: &Traffic, print_all: bool) {
    assert_eq!(s["apiVersion"], "0.5", "{s}");
    assert_eq!(s["serverName"], "remoteproxy");
    assert_eq!(s["serverVersion"], env!("CARGO_PKG_VERSION"));
    assert!(s["uptime"].is_u64());

    let p = &s["proxyStatistic"];
    assert_eq!(p["clientCount"], 2, "{p}");
    assert_eq!(p["tunnelCount"], 1, "{p}");
    assert_eq!(p["troughput"], p["throughput"]);
    assert_eq!(
        p["total"],
        json!({"totalClientCount": 2, "totalTraffic": V1_FIRST_SENT + V1_SECOND_SENT, "totalTunnelCount": 1})
    );
    let first = find(&p["clients"], "name", "first");
    let second = find(&p["clients"], "name", "second");
    for (client, uuid, sent, received) in
        [(first, "uuid-a", V1_FIRST_SENT, V1_SECOND_SENT), (second, "uuid-b", V1_SECOND_SENT, V1_FIRST_SENT)]
    {
        assert_eq!(client["uuid"], uuid, "{client}");
        assert_eq!(client["address"], "127.0.0.1", "{client}");
        assert_eq!(client["authenticated"], true, "{client}");
        assert_eq!(client["tunnelConnected"], true, "{client}");
        assert_eq!(client["userName"], format!("user-of-{}", client["name"].as_str().unwrap()));
        assert_eq!(client["rxDataCount"], sent, "bytes {} sent into the tunnel", client["name"]);
        assert_eq!(client["txDataCount"], received, "bytes delivered to {}", client["name"]);
        assert!(client["timestamp"].as_u64().unwrap() > 1_600_000_000);
    }
    assert_eq!(
        p["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (&t["clientOne"], &t["clientTwo"]))
            .collect::<Vec<_>>(),
        [(&first["id"], &second["id"])],
        "the waiting client is clientOne"
    );

    let v2 = &s["tunnelProxyStatistic"];
    assert_eq!(v2["serverConnectionsCount"], 2, "{v2}");
    assert_eq!(v2["clientConnectionsCount"], 2, "{v2}");
    assert_eq!(v2["totalClientCount"], 4, "v2 connections open now");
    assert_eq!(v2["troughput"], v2["throughput"]);
    assert_eq!(v2["transports"], json!({"TCP": 2, "WebSocket": 1, "unix": 1}));
    let servers = v2["tunnelConnections"].as_array().unwrap();
    assert_eq!(servers.len(), if print_all { 2 } else { 1 }, "idle servers only with printAll: {v2}");
    let server = find(&v2["tunnelConnections"], "name", "device");
    assert_eq!(server["serverUuid"], braced(&t.server_uuid));
    assert_eq!(server["address"], "127.0.0.1");
    assert_eq!(server["rxDataCount"], V2_TO_APP1 + V2_TO_APP2, "payload the server sent: {server}");
    assert_eq!(server["txDataCount"], V2_APP1_SENT + V2_APP2_SENT, "payload delivered to the server");
    let clients = &server["clientConnections"];
    assert_eq!(clients.as_array().unwrap().len(), 2, "{server}");
    for (name, uuid, sent, received) in
        [("app-1", &t.app1_uuid, V2_APP1_SENT, V2_TO_APP1), ("app-2", &t.app2_uuid, V2_APP2_SENT, V2_TO_APP2)]
    {
        let client = find(clients, "name", name);
        assert_eq!(client["clientUuid"], braced(uuid), "{client}");
        assert_eq!(client["address"], "127.0.0.1");
        assert_eq!(client["rxDataCount"], sent, "bytes {name} sent");
        assert_eq!(client["txDataCount"], received, "bytes delivered to {name}");
    }
    if print_all {
        let idle = find(&v2["tunnelConnections"], "name", "idle-device");
        assert_eq!(idle["serverUuid"], braced(&t.idle_uuid));
        assert_eq!(idle["address"], "", "unix peers have no address");
        assert_eq!(idle["clientConnections"], json!([]));
    }
    assert!(!s.to_string().contains("token"), "no token in a snapshot");
}

#[tokio::test]
async fn request_mode_answers_each_refresh_with_the_counts_and_byte_counters() {
    let broker = Broker::start().await;
    let traffic = run_traffic(&broker).await;

    let mut monitor = Monitor::connect(&broker.monitor).await;
    let snapshot = monitor.settled(false, counted).await;
    check_snapshot(&snapshot, &traffic, false);
    check_snapshot(&monitor.refresh(None).await, &traffic, false);
    check_snapshot(&monitor.refresh(Some(true)).await, &traffic, true);
    // A request that names printAll false is the plain refresh.
    check_snapshot(&monitor.refresh(Some(false)).await, &traffic, false);
    // Several requests in one write get one answer each, in order.
    monitor
        .send("{\"method\":\"refresh\",\"params\":{\"printAll\":true}}\n\n{\"method\":\"refresh\"}\n")
        .await;
    check_snapshot(&monitor.snapshot().await, &traffic, true);
    check_snapshot(&monitor.snapshot().await, &traffic, false);
    // Request mode never pushes.
    monitor.quiet(Duration::from_millis(1500)).await;
    check_snapshot(&monitor.refresh(None).await, &traffic, false);
}

#[tokio::test]
async fn push_mode_sends_a_snapshot_every_second_while_tunnels_run() {
    let broker = Broker::start().await;
    let traffic = run_traffic(&broker).await;
    // Wait until the counters have caught up, so every pushed snapshot shows them.
    Monitor::connect(&broker.monitor).await.settled(false, counted).await;

    let mut push = Monitor::connect(&broker.monitor).await;
    let start = Instant::now();
    let one = push.snapshot().await;
    let first_at = start.elapsed();
    let two = push.snapshot().await;
    let gap = start.elapsed() - first_at;
    assert!(gap >= Duration::from_millis(500), "pushes come about a second apart, got {gap:?}");
    check_snapshot(&one, &traffic, false);
    check_snapshot(&two, &traffic, false);

    // A push client that half-closes its side keeps getting snapshots.
    push.stream.shutdown().await.unwrap();
    check_snapshot(&push.snapshot().await, &traffic, false);

    // A push client may switch to request mode at any time.
    let mut late = Monitor::connect(&broker.monitor).await;
    late.snapshot().await;
    check_snapshot(&late.refresh(Some(true)).await, &traffic, true);
}

#[tokio::test]
async fn counts_follow_connections_that_end() {
    let broker = Broker::start().await;
    let mut monitor = Monitor::connect(&broker.monitor).await;
    let empty = monitor.refresh(None).await;
    assert_eq!(empty["proxyStatistic"]["clientCount"], 0, "{empty}");
    assert_eq!(empty["proxyStatistic"]["clients"], json!([]));
    assert_eq!(empty["tunnelProxyStatistic"]["tunnelConnections"], json!([]));

    let (first, second) = tunnel(&broker, Kind::Unix, Kind::Tcp, "token").await;
    let during = monitor.settled(false, |s| s["proxyStatistic"]["tunnelCount"] == 1).await;
    assert_eq!(during["proxyStatistic"]["clientCount"], 2, "{during}");
    assert_eq!(find(&during["proxyStatistic"]["clients"], "name", "first")["address"], "");
    drop((first, second));
    let after = monitor.settled(false, |s| s["proxyStatistic"]["clientCount"] == 0).await;
    assert_eq!(after["proxyStatistic"]["clientCount"], 0, "{after}");
    assert_eq!(after["proxyStatistic"]["tunnelCount"], 0);
    assert_eq!(after["proxyStatistic"]["total"]["totalClientCount"], 2);
    assert_eq!(after["proxyStatistic"]["total"]["totalTunnelCount"], 1);
}

// ---------------------------------------------------------------------------------------------
// What closes a monitor connection.

#[tokio::test]
async fn anything_but_a_refresh_request_closes_the_connection() {
    let broker = Broker::start().await;
    for bad in [
        "{\"method\":\"stop\"}\n",
        "not json\n",
        "{\"method\":\"refresh\",\"params\":{\"printAll\":\"yes\"}}\n",
        "{\"method\":\"refresh\",\"params\":true}\n",
        "[1,2,3]\n",
    ] {
        let mut monitor = Monitor::connect(&broker.monitor).await;
        monitor.send(bad).await;
        monitor.closed().await;
    }
    // Also after a valid request.
    let mut monitor = Monitor::connect(&broker.monitor).await;
    monitor.refresh(None).await;
    monitor.send("{\"method\":\"refresh\"}\n{\"method\":\"quit\"}\n").await;
    monitor.snapshot().await;
    monitor.closed().await;
}

#[tokio::test]
async fn an_overlong_request_line_closes_the_connection() {
    let broker = Broker::start().await;
    let mut monitor = Monitor::connect(&broker.monitor).await;
    monitor
        .send(&format!("{{\"method\":\"refresh\",\"x\":\"{}", "x".repeat(monitor::MAX_REQUEST + 100)))
        .await;
    monitor.closed().await;
}

#[tokio::test]
async fn clients_beyond_the_limit_are_closed_at_once() {
    let broker = Broker::start().await;
    let mut served = Vec::new();
    for _ in 0..monitor::MAX_CLIENTS {
        let mut monitor = Monitor::connect(&broker.monitor).await;
        monitor.refresh(None).await;
        served.push(monitor);
    }
    let mut refused = Monitor::connect(&broker.monitor).await;
    assert_eq!(within("the refused client's close", refused.line_unbounded()).await, None);
    // The served ones still work, and a slot frees when one leaves.
    served[0].refresh(Some(true)).await;
    served.pop();
    let mut next = Monitor::connect(&broker.monitor).await;
    let deadline = Instant::now() + WAIT;
    loop {
        next.send("{\"method\":\"refresh\"}\n").await;
        if within("an answer or the close", next.line_unbounded()).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed after a client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
        next = Monitor::connect(&broker.monitor).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The socket file.

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_monitor_socket_has_mode_0660_by_default() {
    let defaults = Config::default();
    assert_eq!(defaults.server.monitor_socket.as_deref(), Some(Path::new("/run/remoteproxy/monitor.sock")));
    assert_eq!(defaults.server.monitor_socket_mode, 0o660);
    let broker = Broker::start().await;
    assert_eq!(mode_of(&broker.monitor), 0o660);
}

/// A config with only the monitor socket, from an INI file's `[ProxyServer]` keys.
fn monitor_only_config(dir: &Path, extra: &str) -> Config {
    let path = dir.join("sub/dir/monitor.sock");
    let text = format!("[ProxyServer]\nmonitorSocket={}\n{extra}", path.display());
    let mut config = remoteproxy::config::parse_str(&text, &dir.join("remoteproxy.conf")).unwrap();
    let none = ListenerSettings { websocket: None, tcp: None, unix: None, ..config.listeners.clone() };
    config.listeners = none.clone();
    config.tunnel_proxy_listeners = none;
    config.tls.enabled = false;
    config
}

/// Serves `config` until the returned sender is dropped or fired.
async fn serve(config: Config) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listeners = ServerListeners::bind(&config).await.unwrap();
    let server = Server::new(config, TestAuthenticator::accepting()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listeners, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

#[tokio::test]
async fn the_socket_mode_comes_from_the_config_and_a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = monitor_only_config(dir.path(), "monitorSocketMode=0600\n");
    let path = config.server.monitor_socket.clone().unwrap();
    // A socket file left by a broker that died: bound, never served, not removed.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert!(std::os::unix::net::UnixStream::connect(&path).is_err(), "nobody listens on a stale socket");

    let (stop, task) = serve(config.clone()).await;
    assert_eq!(mode_of(&path), 0o600);
    let mut monitor = Monitor::connect(&path).await;
    let snapshot = monitor.refresh(None).await;
    assert_eq!(snapshot["proxyStatistic"]["clientCount"], 0, "{snapshot}");

    // A live socket is not taken over by a second broker.
    let error = ServerListeners::bind(&config).await.unwrap_err();
    assert!(error.to_string().contains("monitor socket"), "{error}");
    monitor.refresh(None).await;

    // The broker's stop closes monitor clients and removes the socket file.
    let _ = stop.send(());
    within("the broker to stop", task).await.unwrap();
    monitor.closed().await;
    assert!(!path.exists(), "the socket file is removed at the end");
}

/// With TLS on the snapshot says when the served certificate expires (a key of ours).
#[tokio::test]
async fn the_snapshot_tells_the_certificate_expiry() {
    let broker = Broker::start().await;
    let mut monitor = Monitor::connect(&broker.monitor).await;
    let snapshot = monitor.refresh(None).await;
    let (_, leaf) = x509_parser::parse_x509_certificate(broker.certificates[0].as_ref()).unwrap();
    assert_eq!(snapshot["certificateExpiry"], leaf.validity().not_after.timestamp());
}
