//! Data through tunnels (PROTOCOL §4 Passthrough, §6): byte-exact pipes on every pair of
//! transports, WebSocket frame types, no byte lost at the switch, half-close, pings.

use crate::common::*;

use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------------
// Helpers: a client split into halves so that one side can write while it reads.

type Ws = WebSocketStream<Box<dyn Io>>;

enum Rx {
    Stream(ReadHalf<Box<dyn Io>>, BytesMut),
    Ws(SplitStream<Ws>),
}

enum Tx {
    Stream(WriteHalf<Box<dyn Io>>),
    Ws(SplitSink<Ws, Message>),
}

/// Size of the binary frames a WebSocket end sends in the bulk tests.
const WS_FRAME: usize = 16 << 10;

fn split_client(client: Client) -> (Rx, Tx) {
    let Client { wire, buf, .. } = client;
    match wire {
        ClientWire::Stream(stream) => {
            let (r, w) = tokio::io::split(stream);
            (Rx::Stream(r, buf), Tx::Stream(w))
        }
        ClientWire::WebSocket(ws) => {
            assert!(buf.is_empty());
            let (sink, stream) = ws.split();
            (Rx::Ws(stream), Tx::Ws(sink))
        }
    }
}

impl Tx {
    /// Writes `data`: in one go on a stream, as binary frames of [`WS_FRAME`] bytes on a WebSocket.
    async fn send_all(&mut self, data: &[u8]) {
        match self {
            Tx::Stream(w) => {
                w.write_all(data).await.unwrap();
                w.flush().await.unwrap();
            }
            Tx::Ws(sink) => {
                for chunk in data.chunks(WS_FRAME) {
                    sink.send(Message::binary(chunk.to_vec())).await.unwrap();
                }
            }
        }
    }
}

impl Rx {
    /// Reads `n` payload bytes; returns them and, on a WebSocket, each frame's (is_text, len).
    async fn recv_all(&mut self, n: usize) -> (Vec<u8>, Vec<(bool, usize)>) {
        let mut out = Vec::with_capacity(n);
        let mut frames = Vec::new();
        match self {
            Rx::Stream(r, buf) => {
                let take = buf.len().min(n);
                out.extend_from_slice(&buf.split_to(take));
                let mut chunk = vec![0u8; 64 << 10];
                while out.len() < n {
                    let read = r.read(&mut chunk).await.unwrap();
                    assert!(read > 0, "EOF after {} of {n} bytes", out.len());
                    out.extend_from_slice(&chunk[..read]);
                }
            }
            Rx::Ws(stream) => {
                while out.len() < n {
                    match stream.next().await {
                        Some(Ok(Message::Text(t))) => {
                            frames.push((true, t.len()));
                            out.extend_from_slice(t.as_bytes());
                        }
                        Some(Ok(Message::Binary(b))) => {
                            frames.push((false, b.len()));
                            out.extend_from_slice(&b);
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        other => panic!("expected data after {} of {n} bytes, got {other:?}", out.len()),
                    }
                }
            }
        }
        assert_eq!(out.len(), n, "more data than expected");
        (out, frames)
    }
}

/// Asserts two byte strings are equal without printing megabytes.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{what}: got {} bytes, expected {}; first difference at byte {at}", got.len(), want.len());
    }
}

/// Sends `n` random bytes each way at the same time and checks both arrive byte-exact.
async fn exchange(a: Client, b: Client, n: usize) {
    let (a_kind, b_kind) = (a.kind, b.kind);
    let (mut a_rx, mut a_tx) = split_client(a);
    let (mut b_rx, mut b_tx) = split_client(b);
    let to_b = random_bytes(n);
    let to_a = random_bytes(n);
    let ((), (), (at_b, b_frames), (at_a, a_frames)) = within("concurrent exchange", async {
        tokio::join!(a_tx.send_all(&to_b), b_tx.send_all(&to_a), b_rx.recv_all(n), a_rx.recv_all(n))
    })
    .await;
    assert_same(&at_b, &to_b, &format!("{a_kind:?} -> {b_kind:?}"));
    assert_same(&at_a, &to_a, &format!("{b_kind:?} -> {a_kind:?}"));
    // WebSocket → WebSocket goes message by message and keeps the type.
    if a_kind == Kind::WebSocket && b_kind == Kind::WebSocket {
        let sent: Vec<(bool, usize)> = to_b.chunks(WS_FRAME).map(|c| (false, c.len())).collect();
        assert_eq!(b_frames, sent, "WS->WS frames are forwarded one by one, binary stays binary");
        assert_eq!(a_frames, sent, "WS->WS frames are forwarded one by one, binary stays binary");
    }
}

const MIB: usize = 1 << 20;

async fn bulk(a: Kind, b: Kind, tls: bool) {
    let broker = Broker::builder().tls(tls).start().await;
    let (first, second) = tunnel(&broker, a, b, "bulk-token").await;
    exchange(first, second, MIB).await;
    broker.stop().await;
}

/// Reads from a stream client and asserts the next thing is EOF (no more bytes).
async fn expect_eof(client: &mut Client) {
    assert!(client.buf.is_empty(), "unexpected buffered bytes: {:?}", client.buf);
    let ClientWire::Stream(s) = &mut client.wire else { panic!("stream client expected") };
    let mut one = [0u8; 1024];
    let n = within("EOF", s.read(&mut one)).await.expect("a clean EOF, not an error");
    assert_eq!(n, 0, "expected EOF, got {:?}", &one[..n]);
}

fn ws(client: &mut Client) -> &mut Ws {
    match &mut client.wire {
        ClientWire::WebSocket(ws) => ws,
        _ => panic!("WebSocket client expected"),
    }
}

/// The next message of a WebSocket client, whatever it is (pings included).
async fn next_ws_message(client: &mut Client) -> Message {
    within("a WebSocket message", ws(client).next()).await.expect("stream ended").expect("WebSocket error")
}

fn authenticate_request(uuid: &str, name: &str, token: &str, nonce: &str) -> String {
    let request = json!({
        "id": 1,
        "method": "Authentication.Authenticate",
        "params": {"uuid": uuid, "name": name, "token": token, "nonce": nonce},
    });
    format!("{request}\n")
}

// ---------------------------------------------------------------------------------------------
// 1. Byte-exact bulk transfer both ways at once.

#[tokio::test]
async fn tcp_to_tcp_one_mib_each_way() {
    bulk(Kind::Tcp, Kind::Tcp, true).await;
}

#[tokio::test]
async fn websocket_to_websocket_one_mib_each_way() {
    bulk(Kind::WebSocket, Kind::WebSocket, true).await;
}

#[tokio::test]
async fn tcp_to_websocket_one_mib_each_way() {
    bulk(Kind::Tcp, Kind::WebSocket, true).await;
}

#[tokio::test]
async fn websocket_to_tcp_one_mib_each_way() {
    bulk(Kind::WebSocket, Kind::Tcp, true).await;
}

#[tokio::test]
async fn unix_to_tcp_one_mib_each_way() {
    bulk(Kind::Unix, Kind::Tcp, true).await;
}

#[tokio::test]
async fn tcp_to_unix_one_mib_each_way() {
    bulk(Kind::Tcp, Kind::Unix, true).await;
}

#[tokio::test]
async fn unix_to_websocket_one_mib_each_way() {
    bulk(Kind::Unix, Kind::WebSocket, true).await;
}

#[tokio::test]
async fn tcp_to_websocket_without_tls_one_mib_each_way() {
    bulk(Kind::Tcp, Kind::WebSocket, false).await;
}

#[tokio::test]
async fn tcp_to_tcp_without_tls_one_mib_each_way() {
    bulk(Kind::Tcp, Kind::Tcp, false).await;
}

// ---------------------------------------------------------------------------------------------
// 2. WebSocket frame types.

#[tokio::test]
async fn websocket_to_websocket_keeps_frame_types_in_order() {
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::WebSocket, Kind::WebSocket, "frames").await;
    let frames: Vec<(bool, Vec<u8>)> = vec![
        (true, b"hello".to_vec()),
        (false, vec![0, 1, 2, 0xff]),
        (true, "w\u{f6}rld \u{20ac}".as_bytes().to_vec()),
        // Valid UTF-8, but sent as binary: it must stay binary.
        (false, b"looks like text".to_vec()),
        (true, b"{\"id\":1}\n".to_vec()),
        (false, vec![0xc3]),
    ];
    send_frames(&mut a, &frames).await;
    for expected in &frames {
        assert_eq!(&b.recv_frame().await, expected, "A -> B");
    }
    send_frames(&mut b, &frames).await;
    for expected in &frames {
        assert_eq!(&a.recv_frame().await, expected, "B -> A");
    }
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((a, b));
    broker.stop().await;
}

async fn send_frames(from: &mut Client, frames: &[(bool, Vec<u8>)]) {
    for (text, payload) in frames {
        if *text {
            from.send_text(std::str::from_utf8(payload).unwrap()).await;
        } else {
            from.send_bytes(payload).await;
        }
    }
}

/// Reads frames until `n` payload bytes arrived; returns the frames.
async fn frames_totalling(client: &mut Client, n: usize) -> Vec<(bool, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut total = 0;
    while total < n {
        let frame = client.recv_frame().await;
        total += frame.1.len();
        frames.push(frame);
    }
    assert_eq!(total, n, "more bytes than sent: {frames:?}");
    frames
}

#[tokio::test]
async fn tcp_to_websocket_text_when_utf8_binary_otherwise() {
    let broker = Broker::start().await;
    let (mut tcp, mut ws) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "utf8").await;

    tcp.send_bytes(b"plain ascii").await;
    let frames = frames_totalling(&mut ws, 11).await;
    assert!(frames.iter().all(|(text, _)| *text), "ASCII arrives as text: {frames:?}");
    assert_eq!(frames.concat_payload(), b"plain ascii");

    let utf8 = "h\u{e9}llo w\u{f6}rld \u{20ac} \u{1f600}";
    tcp.send_bytes(utf8.as_bytes()).await;
    let frames = frames_totalling(&mut ws, utf8.len()).await;
    assert!(frames.iter().all(|(text, _)| *text), "UTF-8 arrives as text: {frames:?}");
    assert_eq!(frames.concat_payload(), utf8.as_bytes());

    let invalid = [b'o', b'k', 0xff, 0xfe, 0x00, 0x80];
    tcp.send_bytes(&invalid).await;
    let frames = frames_totalling(&mut ws, invalid.len()).await;
    assert!(frames.iter().any(|(text, _)| !*text), "invalid UTF-8 arrives as binary: {frames:?}");
    assert_eq!(frames.concat_payload(), invalid);
    for (text, payload) in &frames {
        if *text {
            assert!(std::str::from_utf8(payload).is_ok());
        }
    }
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((tcp, ws));
    broker.stop().await;
}

trait ConcatPayload {
    fn concat_payload(&self) -> Vec<u8>;
}

impl ConcatPayload for Vec<(bool, Vec<u8>)> {
    fn concat_payload(&self) -> Vec<u8> {
        self.iter().flat_map(|(_, p)| p.iter().copied()).collect()
    }
}

#[tokio::test]
async fn tcp_to_websocket_character_split_across_reads_stays_text() {
    let broker = Broker::start().await;
    let (mut tcp, mut ws) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "split-char").await;

    tcp.send_bytes(b"h\xC3").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    tcp.send_bytes(b"\xA9llo").await;
    let frames = frames_totalling(&mut ws, 6).await;
    assert!(frames.iter().all(|(text, _)| *text), "every frame is text: {frames:?}");
    assert_eq!(frames.concat_payload(), "h\u{e9}llo".as_bytes());

    // A three-byte character in three writes.
    for part in [&b"\xE2"[..], b"\x82", b"\xAC!"] {
        tcp.send_bytes(part).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let frames = frames_totalling(&mut ws, 4).await;
    assert!(frames.iter().all(|(text, _)| *text), "every frame is text: {frames:?}");
    assert_eq!(frames.concat_payload(), "\u{20ac}!".as_bytes());
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((tcp, ws));
    broker.stop().await;
}

#[tokio::test]
async fn websocket_to_tcp_payloads_verbatim() {
    let broker = Broker::start().await;
    let (mut ws, mut tcp) = tunnel(&broker, Kind::WebSocket, Kind::Tcp, "verbatim").await;
    ws.send_text("text \u{e9} frame\n").await;
    ws.send_bytes(&[0xff, 0x00, 0x01, b'{', 0xc0]).await;
    ws.send_text("").await;
    ws.send_bytes(b"end").await;
    let mut expected = "text \u{e9} frame\n".as_bytes().to_vec();
    expected.extend_from_slice(&[0xff, 0x00, 0x01, b'{', 0xc0]);
    expected.extend_from_slice(b"end");
    assert_eq!(tcp.read_exact(expected.len()).await, expected);
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((ws, tcp));
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. No byte lost at the switch.

/// The second client sends Authenticate and tunnel bytes in one write while the authenticator
/// takes 100 ms; the partner gets those bytes first and complete, then later data.
async fn early_bytes_in_the_authenticate_write(first_kind: Kind, second_kind: Kind) {
    let authenticator = TestAuthenticator::new(Outcome::NoError, Duration::from_millis(100));
    let broker = Broker::builder().authenticator(authenticator.clone()).start().await;
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut first = broker.connect(first_kind).await;
    assert_eq!(
        first.authenticate("uuid-a", "first", "early", Some(&nonce)).await,
        "AuthenticationErrorNoError"
    );

    // Leading whitespace is data too: only the one separator behind the JSON is dropped.
    let mut early = vec![b' ', b'\t', 0x00, 0x01, 0xff, b'{', b'x'];
    early.extend(random_bytes(3000));
    let request = authenticate_request("uuid-b", "second", "early", &nonce);
    let mut second = broker.connect(second_kind).await;
    match &mut second.wire {
        ClientWire::Stream(s) => {
            let mut one_write = request.into_bytes();
            one_write.extend_from_slice(&early);
            s.write_all(&one_write).await.unwrap();
            s.flush().await.unwrap();
        }
        ClientWire::WebSocket(ws) => {
            // Two frames, one write.
            ws.feed(Message::text(request)).await.unwrap();
            ws.feed(Message::binary(early.clone())).await.unwrap();
            ws.flush().await.unwrap();
        }
    }
    let response = second.recv_json().await;
    assert_eq!(response["params"]["authenticationError"], "AuthenticationErrorNoError", "{response}");
    assert_eq!(second.wait_tunnel().await, json!({"name": "first", "uuid": "uuid-a"}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": "uuid-b"}));
    let later = random_bytes(5000);
    second.send_bytes(&later).await;

    let mut expected = early.clone();
    expected.extend_from_slice(&later);
    let got = first.recv_data(expected.len()).await;
    assert_same(&got, &expected, "early bytes then later bytes");
    assert_eq!(authenticator.seen.lock().unwrap().len(), 2);

    // The tunnel works the other way too.
    first.send_bytes(b"back").await;
    assert_eq!(second.recv_data(4).await, b"back");
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((first, second));
    broker.stop().await;
}

#[tokio::test]
async fn early_bytes_tcp_to_tcp() {
    early_bytes_in_the_authenticate_write(Kind::Tcp, Kind::Tcp).await;
}

#[tokio::test]
async fn early_bytes_unix_to_tcp() {
    early_bytes_in_the_authenticate_write(Kind::Tcp, Kind::Unix).await;
}

#[tokio::test]
async fn early_bytes_tcp_to_websocket() {
    early_bytes_in_the_authenticate_write(Kind::WebSocket, Kind::Tcp).await;
}

#[tokio::test]
async fn early_bytes_websocket_to_tcp() {
    early_bytes_in_the_authenticate_write(Kind::Tcp, Kind::WebSocket).await;
}

/// An early binary frame from a WebSocket client whose payload happens to be valid UTF-8 must
/// reach a WebSocket partner as a binary frame (WS↔WS keeps the frame type), and the frame after
/// it as what it was.
#[tokio::test]
async fn early_binary_frame_stays_binary_between_websockets() {
    let authenticator = TestAuthenticator::new(Outcome::NoError, Duration::from_millis(100));
    let broker = Broker::builder().authenticator(authenticator).start().await;
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut first = broker.connect(Kind::WebSocket).await;
    assert_eq!(
        first.authenticate("uuid-a", "first", "early-ws", Some(&nonce)).await,
        "AuthenticationErrorNoError"
    );
    let mut second = broker.connect(Kind::WebSocket).await;
    let request = authenticate_request("uuid-b", "second", "early-ws", &nonce);
    {
        let ws = ws(&mut second);
        ws.feed(Message::text(request)).await.unwrap();
        ws.feed(Message::binary(&b"\x00binary but valid UTF-8"[..])).await.unwrap();
        ws.feed(Message::text("then text")).await.unwrap();
        ws.flush().await.unwrap();
    }
    let response = second.recv_json().await;
    assert_eq!(response["params"]["authenticationError"], "AuthenticationErrorNoError", "{response}");
    second.wait_tunnel().await;
    first.wait_tunnel().await;
    assert_eq!(first.recv_frame().await, (false, b"\x00binary but valid UTF-8".to_vec()));
    assert_eq!(first.recv_frame().await, (true, b"then text".to_vec()));
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((first, second));
    broker.stop().await;
}

/// Both clients send the instant they read TunnelEstablished; everything arrives.
async fn data_right_after_tunnel_established(first_kind: Kind, second_kind: Kind) {
    let broker = Broker::start().await;
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut first = broker.connect(first_kind).await;
    let mut second = broker.connect(second_kind).await;
    assert_eq!(
        first.authenticate("uuid-a", "first", "instant", Some(&nonce)).await,
        "AuthenticationErrorNoError"
    );
    assert_eq!(
        second.authenticate("uuid-b", "second", "instant", Some(&nonce)).await,
        "AuthenticationErrorNoError"
    );
    let from_second = random_bytes(16 << 10);
    let from_first = random_bytes(16 << 10);
    second.wait_tunnel().await;
    second.send_bytes(&from_second).await;
    first.wait_tunnel().await;
    first.send_bytes(&from_first).await;
    let at_first = first.recv_data(from_second.len()).await;
    let at_second = second.recv_data(from_first.len()).await;
    assert_same(&at_first, &from_second, "second -> first");
    assert_same(&at_second, &from_first, "first -> second");
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((first, second));
    broker.stop().await;
}

#[tokio::test]
async fn instant_data_tcp_tcp() {
    data_right_after_tunnel_established(Kind::Tcp, Kind::Tcp).await;
}

#[tokio::test]
async fn instant_data_websocket_websocket() {
    data_right_after_tunnel_established(Kind::WebSocket, Kind::WebSocket).await;
}

#[tokio::test]
async fn instant_data_tcp_websocket() {
    data_right_after_tunnel_established(Kind::Tcp, Kind::WebSocket).await;
}

#[tokio::test]
async fn instant_data_websocket_tcp() {
    data_right_after_tunnel_established(Kind::WebSocket, Kind::Tcp).await;
}

#[tokio::test]
async fn instant_data_unix_tcp() {
    data_right_after_tunnel_established(Kind::Unix, Kind::Tcp).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Half-close and close.

async fn half_close(a_kind: Kind, b_kind: Kind, tls: bool) {
    let broker = Broker::builder().tls(tls).start().await;
    let (mut a, mut b) = tunnel(&broker, a_kind, b_kind, "half-close").await;
    let x = random_bytes(100_000);
    a.send_bytes(&x).await;
    a.shutdown_write().await;
    assert_same(&b.read_exact(x.len()).await, &x, "A -> B before the half-close");
    expect_eof(&mut b).await;

    // B can still talk to A.
    let y = random_bytes(70_000);
    b.send_bytes(&y).await;
    assert_same(&a.read_exact(y.len()).await, &y, "B -> A after A's half-close");
    b.send_bytes(b"more").await;
    assert_eq!(a.read_exact(4).await, b"more");
    b.shutdown_write().await;
    expect_eof(&mut a).await;
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((a, b));
    broker.stop().await;
}

#[tokio::test]
async fn half_close_tcp_tcp_tls() {
    half_close(Kind::Tcp, Kind::Tcp, true).await;
}

#[tokio::test]
async fn half_close_tcp_tcp_plain() {
    half_close(Kind::Tcp, Kind::Tcp, false).await;
}

#[tokio::test]
async fn half_close_unix_tcp() {
    half_close(Kind::Unix, Kind::Tcp, true).await;
}

#[tokio::test]
async fn tcp_end_closes_entirely_partner_gets_everything_then_eof() {
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Tcp, "full-close").await;
    let x = random_bytes(300_000);
    a.send_bytes(&x).await;
    // A clean TLS close: close_notify, then the socket goes.
    a.shutdown_write().await;
    drop(a);
    assert_same(&b.read_exact(x.len()).await, &x, "data sent before the close");
    expect_eof(&mut b).await;
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop(b);
    broker.stop().await;
}

#[tokio::test]
async fn tls_end_gone_without_close_notify_is_a_cut_for_its_partner() {
    // Without close_notify nobody can tell a finished sender from a killed one: the partner gets
    // every byte that arrived, then an end without close_notify of its own, never a clean EOF.
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Tcp, "cut-close").await;
    let x = random_bytes(300_000);
    a.send_bytes(&x).await;
    drop(a);
    assert_same(&b.read_exact(x.len()).await, &x, "data sent before the cut");
    let ClientWire::Stream(s) = &mut b.wire else { panic!("stream client expected") };
    let mut one = [0u8; 1024];
    let error = within("the cut", s.read(&mut one)).await.expect_err("a cut, not a clean EOF");
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
    drop(b);
    broker.stop().await;
}

#[tokio::test]
async fn tcp_end_closes_websocket_partner_gets_everything_then_close_1011() {
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "full-close-ws").await;
    let x = random_bytes(300_000);
    a.send_bytes(&x).await;
    drop(a);
    assert_same(&b.recv_data(x.len()).await, &x, "data sent before the close");
    assert_eq!(b.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop(b);
    broker.stop().await;
}

#[tokio::test]
async fn tcp_end_half_closes_websocket_partner_gets_everything_then_close_1011() {
    // A WebSocket has no half-close: a FIN from the TCP end ends the tunnel.
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "fin-ws").await;
    let x = random_bytes(50_000);
    a.send_bytes(&x).await;
    a.shutdown_write().await;
    assert_same(&b.recv_data(x.len()).await, &x, "data sent before the FIN");
    assert_eq!(b.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
    expect_eof(&mut a).await;
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((a, b));
    broker.stop().await;
}

#[tokio::test]
async fn websocket_end_closes_tcp_partner_gets_everything_then_eof() {
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::WebSocket, Kind::Tcp, "ws-close").await;
    let x = random_bytes(300_000);
    for chunk in x.chunks(WS_FRAME) {
        a.send_bytes(chunk).await;
    }
    within("ws close", ws(&mut a).close(None)).await.unwrap();
    assert_same(&b.read_exact(x.len()).await, &x, "data sent before the close");
    expect_eof(&mut b).await;
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((a, b));
    broker.stop().await;
}

#[tokio::test]
async fn websocket_end_closes_websocket_partner_gets_everything_then_close_1011() {
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::WebSocket, Kind::WebSocket, "ws-ws-close").await;
    let x = random_bytes(300_000);
    for chunk in x.chunks(WS_FRAME) {
        a.send_bytes(chunk).await;
    }
    within("ws close", ws(&mut a).close(None)).await.unwrap();
    assert_same(&b.recv_data(x.len()).await, &x, "data sent before the close");
    assert_eq!(b.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((a, b));
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Pings.

async fn ping_is_answered_not_forwarded(partner_kind: Kind) {
    let broker = Broker::start().await;
    let (mut a, mut b) = tunnel(&broker, Kind::WebSocket, partner_kind, "ping").await;
    within("ping", ws(&mut a).send(Message::Ping(b"ping-payload-42"[..].into()))).await.unwrap();
    match next_ws_message(&mut a).await {
        Message::Pong(payload) => assert_eq!(&payload[..], b"ping-payload-42"),
        other => panic!("expected the pong, got {other:?}"),
    }
    // The partner sees the next data and nothing of the ping.
    a.send_bytes(b"marker").await;
    match partner_kind {
        Kind::WebSocket => match next_ws_message(&mut b).await {
            Message::Binary(data) => assert_eq!(&data[..], b"marker"),
            other => panic!("expected the marker frame, got {other:?}"),
        },
        _ => assert_eq!(b.read_exact(6).await, b"marker"),
    }
    // And the tunnel goes on both ways.
    b.send_bytes(b"reply").await;
    assert_eq!(a.recv_data(5).await, b"reply");
    // The tunnel ends when its clients leave; then the broker drains at once.
    drop((a, b));
    broker.stop().await;
}

#[tokio::test]
async fn websocket_ping_in_tunnel_to_tcp() {
    ping_is_answered_not_forwarded(Kind::Tcp).await;
}

#[tokio::test]
async fn websocket_ping_in_tunnel_to_websocket() {
    ping_is_answered_not_forwarded(Kind::WebSocket).await;
}

/// A WebSocket end that closes first completes its closing handshake: the broker answers with
/// its close frame and then ends the stream cleanly (TLS close_notify, no error), and the partner
/// is told `Tunnel client disconnected`.
#[tokio::test]
async fn websocket_end_closing_first_gets_the_close_reply_and_a_clean_end() {
    let broker = Broker::start().await;
    for partner_kind in [Kind::WebSocket, Kind::Tcp] {
        let (mut a, mut b) = tunnel(&broker, Kind::WebSocket, partner_kind, "closes-first").await;
        let ClientWire::WebSocket(ws) = &mut a.wire else { unreachable!() };
        within("sending close", ws.send(Message::Close(None))).await.unwrap();
        let reply = within("the close reply", ws.next()).await;
        assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{partner_kind:?}: {reply:?}");
        let end = within("the end of the stream", ws.next()).await;
        assert!(end.is_none(), "{partner_kind:?}: expected a clean end, got {end:?}");
        expect_close(&mut b, "Tunnel client disconnected").await;
    }
}
