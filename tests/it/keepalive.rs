//! Keepalive (`keepAliveInterval`, `keepAliveTimeout`): WebSocket pings to silent connections,
//! closing those that do not answer together with their partner, TCP keepalive on accepted
//! sockets, and the count of connections closed for a missing pong.

use crate::common::*;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const INTERVAL: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_millis(300);

async fn broker() -> Broker {
    Broker::builder()
        .config(|c| {
            c.timeouts.keep_alive_interval = Some(INTERVAL);
            c.timeouts.keep_alive_timeout = TIMEOUT;
        })
        .start()
        .await
}

/// One monitor snapshot, asked for.
async fn snapshot(broker: &Broker) -> Value {
    let stream = within("connect to the monitor", UnixStream::connect(&broker.monitor)).await.unwrap();
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(b"{\"method\":\"refresh\"}\n").await.unwrap();
    let mut line = String::new();
    within("a snapshot", stream.read_line(&mut line)).await.unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Waits until the monitor counts `n` keepalive timeouts.
async fn counted(broker: &Broker, n: u64) {
    within("the keepalive timeout to be counted", async {
        while snapshot(broker).await["keepAliveTimeouts"] != json!(n) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_websocket_end_that_never_answers_is_closed_with_its_partner() {
    let broker = broker().await;
    let (silent, mut partner) = tunnel(&broker, Kind::WebSocket, Kind::Tcp, "keepalive-silent").await;
    let established = Instant::now();
    // `silent` is never read from here on, so its pings stay unanswered.
    assert_eq!(partner.closed().await, Closed::Eof);
    let waited = established.elapsed();
    assert!(waited >= INTERVAL + TIMEOUT - Duration::from_millis(50), "closed after {waited:?}");
    counted(&broker, 1).await;
    drop(silent);
}

#[tokio::test]
async fn ends_that_answer_keep_their_tunnel_and_pings_never_become_data() {
    let broker = broker().await;
    let (ws, mut tcp) = tunnel(&broker, Kind::WebSocket, Kind::Tcp, "keepalive-alive").await;
    let ClientWire::WebSocket(ws) = ws.wire else { panic!("a WebSocket client") };
    let (mut sink, mut stream) = ws.split();
    // The WebSocket end reads all the time (tungstenite answers each ping as it reads) and keeps
    // the data it gets apart from the pings.
    let reader = tokio::spawn(async move {
        let (mut pings, mut data) = (0, Vec::new());
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Ping(_) => pings += 1,
                Message::Text(text) => data.extend_from_slice(text.as_bytes()),
                Message::Binary(bytes) => data.extend_from_slice(&bytes),
                _ => break,
            }
            if data.ends_with(b"END") {
                break;
            }
        }
        (pings, data)
    });
    // Several intervals of silence on the stream end's side, with a little data from the
    // WebSocket end now and then (quieter than the interval, so it is pinged too).
    let mut sent_up = Vec::new();
    for round in 0..4u8 {
        tokio::time::sleep(INTERVAL * 2).await;
        let piece = vec![b'a' + round; 1000];
        within("send", sink.send(Message::binary(piece.clone()))).await.unwrap();
        sent_up.extend_from_slice(&piece);
    }
    // Exactly what the WebSocket end sent reaches the stream end: no ping bytes among it.
    assert_eq!(tcp.read_exact(sent_up.len()).await, sent_up);
    let mut sent_down = random_bytes(5000);
    sent_down.extend_from_slice(b"END");
    tcp.send_bytes(&sent_down).await;
    let (pings, received) = within("the WebSocket end's data", reader).await.unwrap();
    assert_eq!(received, sent_down);
    assert!(pings >= 2, "the WebSocket end was pinged {pings} times in 8 intervals");
    assert_eq!(snapshot(&broker).await["keepAliveTimeouts"], json!(0));
}

#[tokio::test]
async fn a_silent_websocket_client_before_its_tunnel_is_dropped() {
    let broker = broker().await;
    let mut client = broker.connect(Kind::WebSocket).await;
    client.hello().await;
    // Authenticated and waiting for a partner that never comes (aloneTimeout is far away).
    assert_eq!(
        client.authenticate("uuid-a", "waiting", "keepalive-alone", Some("n")).await,
        "AuthenticationErrorNoError"
    );
    counted(&broker, 1).await;
}

#[tokio::test]
async fn a_v2_server_that_never_answers_goes_with_its_clients() {
    let broker = broker().await;
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut server = broker.connect_v2(Kind::WebSocket).await;
    let response = server
        .call(1, "TunnelProxy.RegisterServer", json!({"serverName": "device", "serverUuid": uuid}))
        .await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError");
    let mut client = broker.connect_v2(Kind::WebSocket).await;
    let params =
        json!({"clientName": "app", "clientUuid": uuid::Uuid::new_v4().to_string(), "serverUuid": uuid});
    let response = client.call(1, "TunnelProxy.RegisterClient", params).await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError");
    // The server is never read again; the client reads (and so answers its own pings).
    assert_eq!(client.closed().await, Closed::WebSocket(1011, "Server disconnected".into()));
    counted(&broker, 1).await;
    drop(server);
}

/// The broker's side of a TCP connection in /proc/net/tcp: (timer kind, ticks until it fires).
/// Timer kind 2 is the socket timer, which on an established socket is the keepalive timer.
fn broker_side_timer(broker_port: u16, client_port: u16) -> Option<(u32, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
        if port(fields[1])? != broker_port || port(fields[2])? != client_port {
            return None;
        }
        let (kind, when) = fields[5].split_once(':')?;
        Some((kind.parse().ok()?, u64::from_str_radix(when, 16).ok()?))
    })
}

/// A plain TCP client the broker is serving (it answered a Hello), and the broker's timer on it.
async fn served_client_timer(broker: &Broker) -> (tokio::net::TcpStream, Option<(u32, u64)>) {
    let client = within("connect", tokio::net::TcpStream::connect(broker.tcp)).await.unwrap();
    let client_port = client.local_addr().unwrap().port();
    let mut client = BufReader::new(client);
    client.get_mut().write_all(b"{\"id\":1,\"method\":\"RemoteProxy.Hello\"}\n").await.unwrap();
    let mut line = String::new();
    within("the Hello response", client.read_line(&mut line)).await.unwrap();
    assert!(line.contains("\"status\":\"success\""), "{line}");
    (client.into_inner(), broker_side_timer(broker.tcp.port(), client_port))
}

#[tokio::test]
async fn accepted_tcp_sockets_get_tcp_keepalive_from_the_same_settings() {
    let broker = Broker::builder()
        .tls(false)
        .config(|c| c.timeouts.keep_alive_interval = Some(Duration::from_secs(120)))
        .start()
        .await;
    let (_client, timer) = served_client_timer(&broker).await;
    let (kind, ticks) = timer.expect("the broker's socket is listed");
    assert_eq!(kind, 2, "a keepalive timer runs on the accepted socket");
    // USER_HZ is 100: the first probe is due after the interval (120 s), not the kernel's 2 h.
    assert!((100 * 100..=120 * 100).contains(&ticks), "first probe in {ticks} ticks");

    let off = Broker::builder().tls(false).config(|c| c.timeouts.keep_alive_interval = None).start().await;
    let (_client, timer) = served_client_timer(&off).await;
    assert_eq!(timer.map(|(kind, _)| kind), Some(0), "no keepalive when turned off");
}
