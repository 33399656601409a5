//! Half-close over WebSocket: negotiated at the upgrade, an empty binary message ends one
//! direction; a plain WebSocket peer (a nymea client) sees the wire it always saw.

use std::io::ErrorKind;

use crate::common::{Broker, Client, ClientWire, Closed, Kind, random_bytes, within};
use bytes::Bytes;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

fn marker() -> Message {
    Message::Binary(Bytes::new())
}

async fn authenticate(client: &mut Client, uuid: &str, token: &str, nonce: &str) {
    assert_eq!(client.authenticate(uuid, uuid, token, Some(nonce)).await, "AuthenticationErrorNoError");
}

/// A half-closing WebSocket client (first) and a partner of `kind` (second, plain).
async fn half_close_tunnel(broker: &Broker, partner: Option<Kind>, token: &str) -> (Client, Client) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let (mut first, granted) = broker.connect_half_close(false).await;
    assert!(granted, "the v1 WebSocket listener grants half-close");
    let mut second = match partner {
        Some(kind) => broker.connect(kind).await,
        None => {
            let (client, granted) = broker.connect_half_close(false).await;
            assert!(granted);
            client
        }
    };
    authenticate(&mut first, "a", token, &nonce).await;
    authenticate(&mut second, "b", token, &nonce).await;
    assert_eq!(second.wait_tunnel().await, json!({"name": "a", "uuid": "a"}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "b", "uuid": "b"}));
    (first, second)
}

/// Reads a stream client to its end: Ok(bytes) after a clean end, Err after a cut.
async fn read_to_end(client: &mut Client) -> std::io::Result<Vec<u8>> {
    let ClientWire::Stream(s) = &mut client.wire else { panic!("stream client expected") };
    let mut all = std::mem::take(&mut client.buf).to_vec();
    within("the end of the stream", s.read_to_end(&mut all)).await.map(|_| all)
}

/// Collects WebSocket data until a non-data message (returned with the data).
async fn recv_until_not_data(client: &mut Client) -> (Vec<u8>, Option<Message>) {
    let mut data = Vec::new();
    loop {
        match client.next_ws().await {
            Some(Message::Binary(b)) if !b.is_empty() => data.extend_from_slice(&b),
            Some(Message::Text(t)) => data.extend_from_slice(t.as_bytes()),
            other => return (data, other),
        }
    }
}

#[tokio::test]
async fn the_v2_listener_does_not_grant_half_close() {
    let broker = Broker::start().await;
    let (_client, granted) = broker.connect_half_close(true).await;
    assert!(!granted, "the v2 API has no half-close towards a server");
}

#[tokio::test]
async fn marker_becomes_a_fin_and_a_fin_becomes_a_marker() {
    let broker = Broker::start().await;
    for kind in [Kind::Tcp, Kind::Unix] {
        let (mut ws, mut stream) = half_close_tunnel(&broker, Some(kind), "hc-stream").await;
        let to_stream = random_bytes(200_000);
        ws.send_bytes(&to_stream).await;
        ws.send_ws(marker()).await;
        // The stream end gets everything, then a clean end of stream; it may still send.
        let got = read_to_end(&mut stream).await.expect("a clean end, not a cut");
        assert!(got == to_stream, "{kind:?}: WebSocket -> stream differs");
        let to_ws = random_bytes(300_000);
        stream.send_bytes(&to_ws).await;
        stream.shutdown_write().await;
        let (got, next) = recv_until_not_data(&mut ws).await;
        assert!(got == to_ws, "{kind:?}: stream -> WebSocket differs after the half-close");
        assert_eq!(next, Some(marker()), "{kind:?}: the FIN arrives as the marker");
        // Both directions ended: the tunnel is over.
        assert_eq!(ws.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
    }
}

#[tokio::test]
async fn two_half_closing_ends_each_finish_their_own_direction() {
    let broker = Broker::start().await;
    let (mut a, mut b) = half_close_tunnel(&broker, None, "hc-both").await;
    let (to_b, to_a) = (random_bytes(100_000), random_bytes(150_000));
    a.send_bytes(&to_b).await;
    a.send_ws(marker()).await;
    let (got, next) = recv_until_not_data(&mut b).await;
    assert!(got == to_b);
    assert_eq!(next, Some(marker()), "the marker is forwarded");
    b.send_bytes(&to_a).await;
    b.send_ws(marker()).await;
    let (got, next) = recv_until_not_data(&mut a).await;
    assert!(got == to_a, "the partner still sends after the first marker");
    assert_eq!(next, Some(marker()));
    assert_eq!(a.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
    assert_eq!(b.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
}

#[tokio::test]
async fn a_plain_websocket_partner_sees_the_wire_it_always_saw() {
    let broker = Broker::start().await;
    let (mut hc, mut plain) = half_close_tunnel(&broker, Some(Kind::WebSocket), "hc-plain").await;
    let to_plain = random_bytes(50_000);
    hc.send_bytes(&to_plain).await;
    hc.send_ws(marker()).await;
    assert_eq!(plain.recv_data(to_plain.len()).await, to_plain);
    // The tunnel stays open: the plain end still reaches the half-closed one.
    let to_hc = random_bytes(70_000);
    plain.send_bytes(&to_hc).await;
    assert_eq!(hc.recv_data(to_hc.len()).await, to_hc);
    // An empty binary message from a plain client is just an empty message, not an end.
    plain.send_ws(marker()).await;
    plain.send_bytes(b"more").await;
    assert_eq!(hc.recv_data(4).await, b"more");
    // The plain end closes, as nymea clients do: everything it sent arrived, so the half-closing
    // end gets its marker before the close.
    plain.send_ws(Message::Close(None)).await;
    assert_eq!(hc.next_ws().await, Some(marker()));
    assert_eq!(hc.closed().await, Closed::WebSocket(1011, "Tunnel client disconnected".into()));
    // The plain end never saw a marker: its next message is the close handshake's answer.
    assert!(matches!(plain.next_ws().await, Some(Message::Close(_)) | None));
}

#[tokio::test]
async fn a_tls_partner_that_leaves_without_close_notify_is_a_cut() {
    let broker = Broker::start().await;
    let (mut hc, stream) = half_close_tunnel(&broker, Some(Kind::Tcp), "hc-cut").await;
    drop(stream);
    // No marker before the close: the half-closing end knows its partner did not finish.
    assert_eq!(hc.next_ws().await.map(|m| m.is_close()), Some(true));
}

#[tokio::test]
async fn a_half_closing_end_that_closes_without_its_marker_is_a_cut() {
    let broker = Broker::start().await;
    let (mut hc, mut stream) = half_close_tunnel(&broker, Some(Kind::Tcp), "hc-abort").await;
    hc.send_bytes(b"partial").await;
    hc.send_ws(Message::Close(None)).await;
    assert_eq!(stream.read_exact(7).await, b"partial");
    let error = read_to_end(&mut stream).await.expect_err("a cut, not a clean end");
    assert_eq!(error.kind(), ErrorKind::UnexpectedEof, "{error}");
}
