//! DisconnectClient, and a server or a client going away.

use super::*;

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
