//! Data both ways and the SLIP fixes.

use super::*;

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
