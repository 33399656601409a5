//! The v2 TunnelProxy API through real sockets.

mod common;
use common::*;

use bytes::BytesMut;
use remoteproxy_slip as slip;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// A registered server seen from the test: frames in and out.
struct SlipPeer {
    client: Client,
    decoder: slip::Decoder,
    frames: std::collections::VecDeque<slip::Frame>,
}

impl SlipPeer {
    async fn register(broker: &Broker, kind: Kind, uuid: &str) -> SlipPeer {
        let mut client = broker.connect_v2(kind).await;
        let response = client
            .call(1, "TunnelProxy.RegisterServer", json!({"serverName": "device", "serverUuid": uuid}))
            .await;
        assert_eq!(
            response["params"],
            json!({"slipEnabled": true, "tunnelProxyError": "TunnelProxyErrorNoError"}),
            "{response}"
        );
        let mut peer = SlipPeer { client, decoder: slip::Decoder::new(1 << 20), frames: Default::default() };
        // Bytes that arrived behind the response are SLIP already.
        let early = peer.client.buf.split().freeze();
        peer.push(&early);
        peer
    }

    fn push(&mut self, data: &[u8]) {
        let frames = &mut self.frames;
        self.decoder.decode(data, |f| frames.push_back(f.expect("valid frame from the broker")));
    }

    async fn next_frame(&mut self) -> slip::Frame {
        within("a SLIP frame", async {
            loop {
                if let Some(frame) = self.frames.pop_front() {
                    return frame;
                }
                let data = match &mut self.client.wire {
                    ClientWire::Stream(s) => {
                        let mut buf = BytesMut::with_capacity(65536);
                        let n = s.read_buf(&mut buf).await.unwrap();
                        assert!(n > 0, "server connection closed");
                        buf.freeze()
                    }
                    ClientWire::WebSocket(_) => self.client.recv_frame().await.1.into(),
                };
                self.push(&data);
            }
        })
        .await
    }

    async fn next_json(&mut self) -> Value {
        let frame = self.next_frame().await;
        assert_eq!(frame.address, 0, "expected a JSON frame, got data for {}", frame.address);
        assert!(frame.payload.ends_with(b"\n"));
        serde_json::from_slice(&frame.payload).unwrap()
    }

    async fn send(&mut self, address: u16, payload: &[u8]) {
        self.client.send_bytes(&slip::encode(address, payload)).await;
    }
}

async fn register_client(broker: &Broker, kind: Kind, uuid: &str, server: &str) -> (Client, Value) {
    let mut client = broker.connect_v2(kind).await;
    let response = client
        .call(
            2,
            "TunnelProxy.RegisterClient",
            json!({"clientName": "app", "clientUuid": uuid, "serverUuid": server}),
        )
        .await;
    (client, response)
}

#[tokio::test]
async fn server_and_clients_exchange_data_through_slip() {
    let broker = Broker::start().await;
    let server_uuid = uuid::Uuid::new_v4().to_string();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;

    let (mut a, response) =
        register_client(&broker, Kind::WebSocket, &uuid::Uuid::new_v4().to_string(), &server_uuid).await;
    assert_eq!(response["params"]["tunnelProxyError"], "TunnelProxyErrorNoError");
    let connected = server.next_json().await;
    assert_eq!(connected["notification"], "TunnelProxy.ClientConnected", "{connected}");
    let address_a = connected["params"]["socketAddress"].as_u64().unwrap() as u16;
    assert_eq!(address_a, 1);
    assert_eq!(connected["params"]["clientPeerAddress"], "127.0.0.1");

    let (mut b, _) =
        register_client(&broker, Kind::Tcp, &uuid::Uuid::new_v4().to_string(), &server_uuid).await;
    let address_b = server.next_json().await["params"]["socketAddress"].as_u64().unwrap() as u16;
    assert_eq!(address_b, 2);

    // Payloads full of SLIP's special bytes, both ways.
    let nasty: Vec<u8> = (0..3000).map(|i| [0xC0, 0xDB, 0xDC, 0xDD, b'x'][i % 5]).collect();
    b.send_bytes(&nasty).await;
    let mut got = Vec::new();
    while got.len() < nasty.len() {
        let frame = server.next_frame().await;
        assert_eq!(frame.address, address_b);
        got.extend_from_slice(&frame.payload);
    }
    assert_eq!(got, nasty);
    server.send(address_b, &nasty).await;
    assert_eq!(b.read_exact(nasty.len()).await, nasty);
    server.send(address_a, b"hello a").await;
    assert_eq!(a.recv_data(7).await, b"hello a");

    // A client leaves: the server is told.
    drop(b);
    let gone = server.next_json().await;
    assert_eq!(gone["notification"], "TunnelProxy.ClientDisconnected");
    assert_eq!(gone["params"]["socketAddress"], address_b);

    // The server goes away: its clients are closed.
    drop(server);
    expect_close(&mut a, "Server disconnected").await;
}
