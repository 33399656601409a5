//! Timers.

use super::*;

// ---------------------------------------------------------------------------------------------
// 9. Timers.

#[tokio::test]
async fn unregistered_connection_closes_after_inactive_timeout_restarted_by_traffic() {
    let broker =
        Broker::builder().config(|c| c.timeouts.inactive = Duration::from_millis(1000)).start().await;
    let mut silent = Vec::new();
    for kind in ALL_KINDS {
        silent.push(broker.connect_v2(kind).await);
    }
    let mut talking = broker.connect_v2(Kind::WebSocket).await;
    // Traffic restarts the timer: 8 × 200 ms of Hellos outlive one inactiveTimeout.
    for i in 0..8 {
        check_hello(&talking.call(i, "RemoteProxy.Hello", json!({})).await, i);
        sleep(Duration::from_millis(200)).await;
    }
    for c in &mut silent {
        expect_closed_now(c, CLOSE_INACTIVE).await;
    }
    // Silence now: it closes too.
    expect_closed_now(&mut talking, CLOSE_INACTIVE).await;
}

#[tokio::test]
async fn handshake_deadline_closes_a_connection_that_only_pings_but_not_a_registered_server() {
    let broker = Broker::builder()
        .config(|c| {
            c.timeouts.handshake_deadline = Duration::from_millis(1000);
            c.timeouts.inactive = Duration::from_secs(8);
        })
        .start()
        .await;
    let uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &uuid).await;
    let pings = async {
        let mut outcomes = Vec::new();
        for kind in ALL_KINDS {
            let mut c = broker.connect_v2(kind).await;
            let mut answered = 0;
            let closed = loop {
                assert!(answered < 60, "{kind:?}: still open after {answered} pings at 100 ms");
                c.send_json(
                    &json!({"id": answered, "method": "TunnelProxy.Ping", "params": {"timestamp": 1}}),
                )
                .await;
                match next_event(&mut c).await {
                    Event::Raw(raw) => {
                        let r: Value = serde_json::from_slice(&raw).unwrap();
                        assert_eq!(r, success(answered, json!({"timestamp": 1})));
                        answered += 1;
                    }
                    Event::Closed(how) => break how,
                }
                sleep(Duration::from_millis(100)).await;
            };
            outcomes.push((kind, answered, closed));
        }
        outcomes
    };
    let server_pings = async {
        // The registered server outlives the deadline: ~2.4 s of pings.
        for id in 0..12 {
            server.ping(id).await;
            sleep(Duration::from_millis(200)).await;
        }
    };
    let (outcomes, _) = within_secs(30, "pings", async { tokio::join!(pings, server_pings) }).await;
    for (kind, answered, closed) in outcomes {
        assert!(answered > 0, "{kind:?}: pings are answered before the deadline");
        assert_eq!(closed, expected_close(kind, CLOSE_INACTIVE), "{kind:?}");
    }
    let (mut client, address) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
    exchange(&mut server, &mut client, address, "after the deadline").await;
}

#[tokio::test]
async fn silent_registered_server_is_closed_with_its_clients_while_a_pinging_one_stays() {
    let broker = Broker::builder()
        .config(|c| {
            c.timeouts.tunnel_proxy_server = Duration::from_millis(1500);
            c.timeouts.inactive = Duration::from_millis(1000);
        })
        .start()
        .await;
    let mut silent = Vec::new();
    let mut pinging = Vec::new();
    for kind in ALL_KINDS {
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, kind, &uuid).await;
        let (client, address) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
        silent.push((server, client, address, uuid));
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, kind, &uuid).await;
        let (client, address) = join(&broker, &mut server, kind, &uuid).await;
        pinging.push((server, client, address));
    }
    let pingers = join_all(pinging.iter_mut().map(|(server, _, _)| async move {
        // 12 × 250 ms: twice the server timeout.
        for id in 0..12 {
            server.ping(id).await;
            sleep(Duration::from_millis(250)).await;
        }
    }));
    let watchers = join_all(silent.iter_mut().map(|(server, client, address, _)| async move {
        // Data from its client does not count: the server itself sends nothing.
        client.send_bytes(b"to a silent server").await;
        let frame = server.next_frame().await;
        assert_eq!((frame.address, &frame.payload[..]), (*address, &b"to a silent server"[..]));
        server.rx.expect_closed_now(CLOSE_INACTIVE).await;
        expect_pipe_closed_now(client, CLOSE_SERVER_GONE).await;
    }));
    within_secs(30, "timers", async { tokio::join!(pingers, watchers) }).await;
    // The pinging servers' clients were idle for longer than both timeouts: still fine.
    for (server, client, address) in &mut pinging {
        exchange(server, client, *address, "idle client of a pinging server").await;
    }
    // The silent servers' uuids are free.
    for (server, _, _, uuid) in &silent {
        SlipPeer::register(&broker, server.kind, uuid).await.ping(1).await;
    }
}
