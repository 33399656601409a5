//! v1 tunnels whose peers are on different nodes: bytes both ways, the pairing rules across
//! nodes, a node killed, Redis stopped and started.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::{Node, Redis, three_nodes};
use crate::common::{Client, ClientWire, Closed, Kind, WAIT, random_bytes, within};

pub(super) const UUID_A: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
pub(super) const UUID_B: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const UUID_C: &str = "7c6b5a49-3827-4165-9f8e-7d6c5b4a3928";

const OK: &str = "AuthenticationErrorNoError";
const PROXY_ERROR: &str = "AuthenticationErrorProxyError";

/// `first` waits on its node, `second` joins from its own; both see the other's identity.
async fn pair_across(
    first_node: &Node,
    a: Kind,
    second_node: &Node,
    b: Kind,
    token: &str,
    nonce: &str,
) -> (Client, Client) {
    let mut first = first_node.client(a).await;
    let mut second = second_node.client(b).await;
    assert_eq!(first.authenticate(UUID_A, "first", token, Some(nonce)).await, OK);
    assert_eq!(second.authenticate(UUID_B, "second", token, Some(nonce)).await, OK);
    assert_eq!(second.wait_tunnel().await, json!({"name": "first", "uuid": UUID_A}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": UUID_B}));
    (first, second)
}

pub(super) enum Writer {
    Stream(tokio::io::WriteHalf<Box<dyn crate::common::Io>>),
    WebSocket(
        futures_util::stream::SplitSink<
            tokio_tungstenite::WebSocketStream<Box<dyn crate::common::Io>>,
            Message,
        >,
    ),
}

pub(super) enum Reader {
    Stream(tokio::io::ReadHalf<Box<dyn crate::common::Io>>, Vec<u8>),
    WebSocket(
        futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<Box<dyn crate::common::Io>>>,
    ),
}

fn split(client: Client) -> (Writer, Reader) {
    match client.wire {
        ClientWire::Stream(stream) => {
            let (read, write) = tokio::io::split(stream);
            (Writer::Stream(write), Reader::Stream(read, client.buf.to_vec()))
        }
        ClientWire::WebSocket(ws) => {
            let (sink, stream) = ws.split();
            (Writer::WebSocket(sink), Reader::WebSocket(stream))
        }
    }
}

async fn write_all(writer: &mut Writer, data: &[u8]) {
    for chunk in data.chunks(64 << 10) {
        match writer {
            Writer::Stream(stream) => stream.write_all(chunk).await.unwrap(),
            Writer::WebSocket(sink) => sink.send(Message::binary(chunk.to_vec())).await.unwrap(),
        }
    }
    if let Writer::Stream(stream) = writer {
        stream.flush().await.unwrap();
    }
}

async fn read_n(reader: &mut Reader, n: usize) -> Vec<u8> {
    match reader {
        Reader::Stream(stream, buffered) => {
            let mut out = std::mem::take(buffered);
            out.reserve(n);
            while out.len() < n {
                let mut chunk = vec![0u8; 64 << 10];
                let read = stream.read(&mut chunk).await.unwrap();
                assert!(read > 0, "EOF after {} of {n} bytes", out.len());
                out.extend_from_slice(&chunk[..read]);
            }
            out
        }
        Reader::WebSocket(stream) => {
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                match stream.next().await {
                    Some(Ok(Message::Binary(data))) => out.extend_from_slice(&data),
                    Some(Ok(Message::Text(text))) => out.extend_from_slice(text.as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("after {} of {n} bytes: {other:?}", out.len()),
                }
            }
            out
        }
    }
}

/// Moves `n` random bytes each way at once and checks both arrive exactly.
pub(super) async fn both_ways(a: Client, b: Client, n: usize) -> ((Writer, Reader), (Writer, Reader)) {
    let (ab, ba) = (random_bytes(n), random_bytes(n));
    let ((mut a_tx, mut a_rx), (mut b_tx, mut b_rx)) = (split(a), split(b));
    let (_, _, at_b, at_a) = within("10 MiB both ways across nodes", async {
        tokio::join!(
            write_all(&mut a_tx, &ab),
            write_all(&mut b_tx, &ba),
            read_n(&mut b_rx, n),
            read_n(&mut a_rx, n)
        )
    })
    .await;
    assert!(at_b == ab, "the bytes from the first client arrived changed");
    assert!(at_a == ba, "the bytes from the second client arrived changed");
    ((a_tx, a_rx), (b_tx, b_rx))
}

#[tokio::test]
async fn ten_mib_cross_nodes_both_ways_over_every_pair_of_transports() {
    let redis = Redis::start().await;
    let [a, b, _c] = three_nodes(&redis).await;
    let kinds = [
        (Kind::Tcp, Kind::Tcp),
        (Kind::WebSocket, Kind::WebSocket),
        (Kind::Tcp, Kind::WebSocket),
        (Kind::WebSocket, Kind::Tcp),
    ];
    for (i, (first, second)) in kinds.into_iter().enumerate() {
        let (x, y) = pair_across(&a, first, &b, second, "token", &format!("n{i}")).await;
        eprintln!("pair {i}: {first:?} {second:?}");
        both_ways(x, y, 10 << 20).await;
    }
}

#[tokio::test]
async fn text_stays_text_and_a_close_reaches_the_other_node() {
    let redis = Redis::start().await;
    let [a, b, _c] = three_nodes(&redis).await;
    let (mut x, mut y) = pair_across(&a, Kind::WebSocket, &b, Kind::WebSocket, "token", "text").await;
    x.send_ws(Message::text("hello from a\n")).await;
    assert_eq!(y.next_ws().await, Some(Message::text("hello from a\n")));
    y.send_ws(Message::binary(vec![0xff, 0, 1])).await;
    assert_eq!(x.next_ws().await, Some(Message::binary(vec![0xff, 0, 1])));
    x.send_ws(Message::Close(None)).await;
    assert_eq!(y.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
}

#[tokio::test]
async fn a_stream_half_close_crosses_nodes_and_the_other_direction_goes_on() {
    let redis = Redis::start().await;
    let [a, b, _c] = three_nodes(&redis).await;
    let (mut x, mut y) = pair_across(&a, Kind::Tcp, &b, Kind::Tcp, "token", "half").await;
    x.send_bytes(b"last words").await;
    x.shutdown_write().await;
    assert_eq!(y.read_exact(10).await, b"last words");
    let ClientWire::Stream(stream) = &mut y.wire else { unreachable!() };
    let mut rest = [0u8; 1];
    assert_eq!(within("EOF after the half-close", stream.read(&mut rest)).await.unwrap(), 0);
    y.send_bytes(b"still talking").await;
    assert_eq!(x.read_exact(13).await, b"still talking");
}

#[tokio::test]
async fn the_pairing_rules_hold_across_nodes() {
    let redis = Redis::start().await;
    let [a, b, c] = three_nodes(&redis).await;
    // A duplicate uuid on another node is refused; the waiting client stays.
    let mut first = a.client(Kind::Tcp).await;
    assert_eq!(first.authenticate(UUID_A, "first", "token", Some("rules")).await, OK);
    let mut twin = b.client(Kind::WebSocket).await;
    assert_eq!(twin.authenticate(UUID_A, "twin", "token", Some("rules")).await, PROXY_ERROR);
    assert_eq!(twin.closed().await, Closed::WebSocket(1011, "Duplicated client UUID.".into()));
    // The second client joins from a third node...
    let mut second = c.client(Kind::Tcp).await;
    assert_eq!(second.authenticate(UUID_B, "second", "token", Some("rules")).await, OK);
    assert_eq!(second.wait_tunnel().await, json!({"name": "first", "uuid": UUID_A}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": UUID_B}));
    // ...and a third client is refused on every node, the owner's too, without disturbing them.
    for node in [&a, &b, &c] {
        let mut third = node.client(Kind::WebSocket).await;
        assert_eq!(third.authenticate(UUID_C, "third", "token", Some("rules")).await, PROXY_ERROR);
        assert_eq!(
            third.closed().await,
            Closed::WebSocket(1011, "Tunnel already exists for this token nonce combination.".into()),
            "on {}",
            node.id
        );
    }
    first.send_bytes(b"ping").await;
    assert_eq!(second.read_exact(4).await, b"ping");
    second.send_bytes(b"pong").await;
    assert_eq!(first.read_exact(4).await, b"pong");
    // Once the tunnel is over the key is free everywhere.
    drop((first, second));
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = b.client(Kind::Tcp).await;
        if again.authenticate(UUID_C, "again", "token", Some("rules")).await == OK {
            break;
        }
        assert!(Instant::now() < deadline, "the key never became free");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn peers_on_one_node_still_pair_there() {
    let redis = Redis::start().await;
    let [a, _b, _c] = three_nodes(&redis).await;
    let (x, y) = pair_across(&a, Kind::Tcp, &a, Kind::WebSocket, "token", "local").await;
    both_ways(x, y, 1 << 20).await;
    assert!(!a.proc.stderr_text().contains("tunnel established across nodes"));
}

#[tokio::test]
async fn killing_the_owner_node_cuts_its_tunnels_and_its_waiting_entries_stop_matching() {
    let redis = Redis::start().await;
    let [mut a, b, c] = three_nodes(&redis).await;
    let (_x, mut y) = pair_across(&a, Kind::Tcp, &b, Kind::WebSocket, "token", "running").await;
    // A client waits on node a for a partner that comes after a is gone.
    let mut waiting = a.client(Kind::Tcp).await;
    assert_eq!(waiting.authenticate(UUID_A, "ghost", "token", Some("waiting")).await, OK);
    a.proc.signal("KILL");
    let _ = a.proc.exit_status(WAIT).await;
    let started = Instant::now();
    // The tunnel's other end learns at once (a cut, not a clean close).
    assert_eq!(y.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // A partner for the dead node's waiting client is never joined to it: refused while the
    // node still looks alive, then it waits on its own node and a third node's client joins it.
    let deadline = Instant::now() + WAIT;
    let mut partner = loop {
        let mut partner = b.client(Kind::Tcp).await;
        match partner.authenticate(UUID_B, "partner", "token", Some("waiting")).await.as_str() {
            OK => break partner,
            outcome => assert_eq!(outcome, PROXY_ERROR),
        }
        assert!(Instant::now() < deadline, "the dead node's entry kept matching");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut late = c.client(Kind::WebSocket).await;
    assert_eq!(late.authenticate(UUID_C, "late", "token", Some("waiting")).await, OK);
    assert_eq!(late.wait_tunnel().await, json!({"name": "partner", "uuid": UUID_B}));
    assert_eq!(partner.wait_tunnel().await, json!({"name": "late", "uuid": UUID_C}));
}

#[tokio::test]
async fn redis_down_for_a_while_leaves_the_nodes_working() {
    let mut redis = Redis::start().await;
    let [a, b, _c] = three_nodes(&redis).await;
    redis.kill();
    a.proc.logged("Redis is unreachable").await;
    // Peers on one node still pair while Redis is away.
    let (x, y) = pair_across(&a, Kind::Tcp, &a, Kind::Tcp, "token", "down").await;
    both_ways(x, y, 64 << 10).await;
    // A peer that starts waiting during the outage...
    let mut patient = a.client(Kind::Tcp).await;
    assert_eq!(patient.authenticate(UUID_A, "patient", "token", Some("through")).await, OK);
    redis.restart().await;
    a.proc.logged("Redis is reachable again").await;
    b.proc.logged("Redis is reachable again").await;
    // ...is registered once Redis is back, and a partner on another node finds it.
    let deadline = Instant::now() + WAIT;
    while redis.count_keys("remoteproxy:v1:*").await == 0 {
        assert!(Instant::now() < deadline, "the waiting peer was never registered after the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut partner = b.client(Kind::WebSocket).await;
    assert_eq!(partner.authenticate(UUID_B, "partner", "token", Some("through")).await, OK);
    assert_eq!(partner.wait_tunnel().await, json!({"name": "patient", "uuid": UUID_A}));
    assert_eq!(patient.wait_tunnel().await, json!({"name": "partner", "uuid": UUID_B}));
    // Every node wrote its heartbeat again: peers on different nodes pair again.
    let deadline = Instant::now() + WAIT;
    for attempt in 0.. {
        let mut first = a.client(Kind::Tcp).await;
        let mut second = b.client(Kind::Tcp).await;
        let nonce = format!("up-{attempt}");
        assert_eq!(first.authenticate(UUID_A, "first", "token", Some(&nonce)).await, OK);
        assert_eq!(second.authenticate(UUID_B, "second", "token", Some(&nonce)).await, OK);
        let joined = tokio::time::timeout(Duration::from_millis(500), second.recv_json()).await;
        if let Ok(notification) = joined {
            assert_eq!(notification["params"], json!({"name": "first", "uuid": UUID_A}));
            assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": UUID_B}));
            both_ways(first, second, 64 << 10).await;
            break;
        }
        assert!(Instant::now() < deadline, "cross-node pairing never came back");
    }
}

#[tokio::test]
async fn peers_that_wait_on_two_nodes_through_a_redis_outage_meet_when_it_is_back() {
    let mut redis = Redis::start().await;
    let [a, b, _c] = three_nodes(&redis).await;
    redis.kill();
    a.proc.logged("Redis is unreachable").await;
    b.proc.logged("Redis is unreachable").await;
    // Each starts waiting on its own node while neither node can tell the other.
    let mut device = a.client(Kind::Tcp).await;
    assert_eq!(device.authenticate(UUID_A, "device", "token", Some("outage")).await, OK);
    let mut app = b.client(Kind::WebSocket).await;
    assert_eq!(app.authenticate(UUID_B, "app", "token", Some("outage")).await, OK);
    redis.restart().await;
    // Whichever node writes the key first keeps its peer waiting; the other node's peer joins it.
    assert_eq!(app.wait_tunnel().await, json!({"name": "device", "uuid": UUID_A}));
    assert_eq!(device.wait_tunnel().await, json!({"name": "app", "uuid": UUID_B}));
    both_ways(device, app, 256 << 10).await;
}

#[tokio::test]
async fn a_drained_node_lets_its_tunnels_finish_and_its_devices_pair_elsewhere() {
    let redis = Redis::start().await;
    let [mut a, b, c] = three_nodes(&redis).await;
    let (mut x, mut y) = pair_across(&a, Kind::Tcp, &b, Kind::Tcp, "token", "running").await;
    let mut device = a.client(Kind::WebSocket).await;
    assert_eq!(device.authenticate(UUID_A, "device", "token", Some("moved")).await, OK);

    let config = a.proc.dir.path().join("remoteproxy.conf");
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, stderr) = crate::binary::run_to_exit(&config, elsewhere.path(), &["drain"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    a.proc.logged("drain requested over the monitor socket").await;

    // The waiting device is told the node stops; the running tunnel goes on.
    assert_eq!(device.closed().await, Closed::WebSocket(1000, "Stop server".into()));
    x.send_bytes(b"still here").await;
    assert_eq!(y.read_exact(10).await, b"still here");
    // The device comes back on another node, and its partner finds it there.
    let mut device = b.client(Kind::WebSocket).await;
    assert_eq!(device.authenticate(UUID_A, "device", "token", Some("moved")).await, OK);
    let mut app = c.client(Kind::Tcp).await;
    assert_eq!(app.authenticate(UUID_B, "app", "token", Some("moved")).await, OK);
    assert_eq!(app.wait_tunnel().await, json!({"name": "device", "uuid": UUID_A}));
    assert_eq!(device.wait_tunnel().await, json!({"name": "app", "uuid": UUID_B}));
    // The drained node exits once its tunnel is done.
    drop((x, y));
    let status = a.proc.exit_status(WAIT).await;
    assert!(status.success(), "{status}: {}", a.proc.stderr_text());
}

/// One snapshot from a node's monitor socket.
async fn snapshot(node: &Node) -> serde_json::Value {
    let mut stream =
        tokio::net::UnixStream::connect(node.proc.dir.path().join("monitor.sock")).await.unwrap();
    stream.write_all(b"{\"method\":\"refresh\"}\n").await.unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while within("a snapshot", stream.read(&mut byte)).await.unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    serde_json::from_slice(&line).unwrap()
}

#[tokio::test]
async fn the_monitor_and_metrics_show_the_node_its_peers_and_redis() {
    let mut redis = Redis::start().await;
    let [a, b, _c] = three_nodes(&redis).await;
    let (_x, _y) = pair_across(&a, Kind::Tcp, &b, Kind::Tcp, "token", "watched").await;
    let deadline = Instant::now() + WAIT;
    let cluster = loop {
        let cluster = snapshot(&a).await["clusterStatistic"].clone();
        if cluster["nodes"].as_array().is_some_and(|nodes| nodes.len() == 3) {
            break cluster;
        }
        assert!(Instant::now() < deadline, "never listed three nodes: {cluster}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cluster["nodeId"], "node-a");
    assert_eq!(cluster["redis"], "up");
    assert_eq!(cluster["draining"], false);
    assert_eq!(cluster["relayedTunnels"], json!({"node-b": 1}));
    assert_eq!(cluster["relayedTotal"], 1);
    let ids: Vec<&str> =
        cluster["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["node-a", "node-b", "node-c"]);
    assert_eq!(a.metric("remoteproxy_cluster_redis_up").await, 1.0);
    assert_eq!(a.metric("remoteproxy_cluster_nodes").await, 3.0);
    assert_eq!(a.metric("remoteproxy_cluster_relayed_tunnels_active").await, 1.0);
    assert_eq!(a.metric("remoteproxy_cluster_relayed_tunnels_total").await, 1.0);
    // No secret in the snapshot or the log.
    assert!(!snapshot(&a).await.to_string().contains(super::SECRET));
    crate::binary::assert_not_in_log(&a.proc.stderr_text(), &[super::SECRET]);
    // Redis goes away: the snapshot says so.
    redis.kill();
    let deadline = Instant::now() + WAIT;
    while snapshot(&b).await["clusterStatistic"]["redis"] != "down" {
        assert!(Instant::now() < deadline, "Redis never reported down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.metric("remoteproxy_cluster_redis_up").await, 0.0);
}

#[tokio::test]
async fn websocket_markers_and_closes_cross_nodes_as_on_one_node() {
    let redis = Redis::start().await;
    let [a, b, _c] = three_nodes(&redis).await;
    // Plain WebSockets on both sides: an empty binary message is data, not an end.
    let (mut w, mut j) = pair_across(&a, Kind::WebSocket, &b, Kind::WebSocket, "token", "plain").await;
    w.send_ws(Message::binary(Vec::new())).await;
    assert_eq!(j.next_ws().await, Some(Message::binary(Vec::new())));
    w.send_ws(Message::text("after the empty one")).await;
    assert_eq!(j.next_ws().await, Some(Message::text("after the empty one")));
    j.send_ws(Message::binary(Vec::new())).await;
    assert_eq!(w.next_ws().await, Some(Message::binary(Vec::new())));

    // The joiner asked for half-close, the waiting client did not: when the waiting client
    // closes, the joiner gets the marker and the close, as it would on one node.
    let mut waiting = a.client(Kind::WebSocket).await;
    assert_eq!(waiting.authenticate(UUID_A, "waiting", "token", Some("half")).await, OK);
    let mut joiner = b.client_half_close().await;
    assert_eq!(joiner.authenticate(UUID_B, "joiner", "token", Some("half")).await, OK);
    assert_eq!(joiner.wait_tunnel().await, json!({"name": "waiting", "uuid": UUID_A}));
    assert_eq!(waiting.wait_tunnel().await, json!({"name": "joiner", "uuid": UUID_B}));
    waiting.send_ws(Message::text("bye\n")).await;
    assert_eq!(joiner.next_ws().await, Some(Message::text("bye\n")));
    waiting.send_ws(Message::Close(None)).await;
    assert_eq!(joiner.next_ws().await, Some(Message::binary(Vec::new())), "the marker");
    assert_eq!(joiner.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
}
