//! v2 TunnelProxy clients reaching a server registered on another node.

use serde_json::json;

use super::{Redis, three_nodes};
use crate::common::{Client, Closed, Kind};
use crate::tunnelproxy::SlipPeer;

const NO_ERROR: &str = "TunnelProxyErrorNoError";
const ALREADY_REGISTERED: &str = "TunnelProxyErrorAlreadyRegistered";
const SERVER_NOT_FOUND: &str = "TunnelProxyErrorServerNotFound";

async fn register_server(client: &mut Client, uuid: &str) -> serde_json::Value {
    client.call(1, "TunnelProxy.RegisterServer", json!({"serverName": "device", "serverUuid": uuid})).await
}

async fn register_client(client: &mut Client, uuid: &str, server: &str) -> String {
    let response = client
        .call(
            1,
            "TunnelProxy.RegisterClient",
            json!({"clientName": "app", "clientUuid": uuid, "serverUuid": server}),
        )
        .await;
    response["params"]["tunnelProxyError"].as_str().unwrap().to_string()
}

/// Collects `n` payload bytes the server receives from `address`.
async fn collect(server: &mut SlipPeer, address: u16, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = server.next_frame().await;
        if frame.address == address {
            out.extend_from_slice(&frame.payload);
        }
    }
    out
}

#[tokio::test]
async fn a_client_reaches_a_server_on_another_node_and_sees_its_end() {
    let redis = Redis::start().await;
    let [a, b, c] = three_nodes(&redis).await;
    let server_uuid = uuid::Uuid::new_v4().to_string();
    let mut registering = a.client_v2(Kind::Tcp).await;
    let answer = register_server(&mut registering, &server_uuid).await;
    assert_eq!(answer["params"]["tunnelProxyError"], NO_ERROR, "{answer}");
    let mut server = SlipPeer::from_client(registering);
    // The uuid is taken on every node now.
    let mut twin = c.client_v2(Kind::Tcp).await;
    assert_eq!(
        register_server(&mut twin, &server_uuid).await["params"]["tunnelProxyError"],
        ALREADY_REGISTERED
    );
    assert_eq!(twin.closed().await, Closed::Eof);

    // A TCP client and a WebSocket client on another node.
    let mut tcp = b.client_v2(Kind::Tcp).await;
    assert_eq!(register_client(&mut tcp, &uuid::Uuid::new_v4().to_string(), &server_uuid).await, NO_ERROR);
    let connected = server.notification("TunnelProxy.ClientConnected").await;
    let tcp_address = connected["socketAddress"].as_u64().unwrap() as u16;
    assert_eq!(connected["clientPeerAddress"], "127.0.0.1");
    let mut ws = c.client_v2(Kind::WebSocket).await;
    assert_eq!(register_client(&mut ws, &uuid::Uuid::new_v4().to_string(), &server_uuid).await, NO_ERROR);
    let ws_address =
        server.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap() as u16;

    // Bytes full of SLIP's special characters both ways, and a larger piece.
    let nasty: Vec<u8> = (0..300_000).map(|i| [0xC0, 0xDB, 0xDC, 0xDD, b'x'][i % 5]).collect();
    tcp.send_bytes(&nasty).await;
    assert_eq!(collect(&mut server, tcp_address, nasty.len()).await, nasty);
    server.send(tcp_address, &nasty).await;
    assert_eq!(tcp.read_exact(nasty.len()).await, nasty);
    ws.send_bytes(b"from the app").await;
    assert_eq!(collect(&mut server, ws_address, 12).await, b"from the app");
    server.send(ws_address, b"from the device").await;
    assert_eq!(ws.recv_data(15).await, b"from the device");

    // A WebSocket client's last message and its close reach the server's node.
    let mut last = c.client_v2(Kind::WebSocket).await;
    assert_eq!(register_client(&mut last, &uuid::Uuid::new_v4().to_string(), &server_uuid).await, NO_ERROR);
    let last_address =
        server.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap() as u16;
    last.send_bytes(b"last words").await;
    let crate::common::ClientWire::WebSocket(socket) = &mut last.wire else { unreachable!() };
    futures_util::SinkExt::send(socket, tokio_tungstenite::tungstenite::Message::Close(None)).await.unwrap();
    assert_eq!(collect(&mut server, last_address, 10).await, b"last words");
    assert_eq!(
        server.notification("TunnelProxy.ClientDisconnected").await,
        json!({"socketAddress": last_address})
    );
    // A client that leaves is reported to the server.
    drop(tcp);
    assert_eq!(
        server.notification("TunnelProxy.ClientDisconnected").await,
        json!({"socketAddress": tcp_address})
    );
    // The server leaves: the WebSocket client on the other node sees the reason a local one would.
    drop(server);
    assert_eq!(ws.closed().await, Closed::WebSocket(1011, "Server disconnected".into()));
    // And then the server is unknown everywhere.
    let mut late = b.client_v2(Kind::WebSocket).await;
    let deadline = std::time::Instant::now() + crate::common::WAIT;
    loop {
        match register_client(&mut late, &uuid::Uuid::new_v4().to_string(), &server_uuid).await.as_str() {
            SERVER_NOT_FOUND => break,
            other => assert!(std::time::Instant::now() < deadline, "still found: {other}"),
        }
        late = b.client_v2(Kind::WebSocket).await;
    }
}
