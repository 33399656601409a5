//! Limits and flow control.

use super::*;

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
    use remoteproxy::tunnelproxy::CLIENT_QUEUE_LIMIT;
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
