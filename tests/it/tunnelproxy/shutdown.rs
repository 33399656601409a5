//! Graceful shutdown.

use super::*;

// ---------------------------------------------------------------------------------------------
// 11. Graceful shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_unregistered_connections_and_keeps_tunnels_during_the_grace_period() {
    let grace = Duration::from_secs(4);
    let mut broker = Broker::builder().config(|c| c.server.shutdown_grace_period = grace).start().await;
    let mut unregistered = Vec::new();
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        check_hello(&c.hello().await, 0);
        unregistered.push(c);
    }
    let uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::WebSocket, &uuid).await;
    let mut clients = Vec::new();
    for kind in [Kind::WebSocket, Kind::Tcp, Kind::WebSocket, Kind::Unix, Kind::WebSocket, Kind::WebSocket] {
        clients.push(join(&broker, &mut server, kind, &uuid).await);
    }

    broker.signal_stop();
    let stopped_at = tokio::time::Instant::now();
    for c in &mut unregistered {
        let expected = match c.kind {
            Kind::WebSocket => Closed::WebSocket(1000, "Stop server".into()),
            _ => Closed::Eof,
        };
        match next_event(c).await {
            Event::Closed(how) => assert_eq!(how, expected, "{:?}", c.kind),
            Event::Raw(raw) => {
                panic!("{:?}: expected the close, got {:?}", c.kind, String::from_utf8_lossy(&raw))
            }
        }
    }
    // The registered server and its clients go on.
    for round in 0..3 {
        for (client, address) in &mut clients {
            exchange(&mut server, client, *address, &format!("grace round {round}")).await;
        }
        server.ping(57 + round).await;
    }
    assert!(
        stopped_at.elapsed() < grace,
        "the exchanges took longer than the grace period; the test proves nothing"
    );

    // After the grace period everything is closed, as a shutdown (1000 on WebSocket).
    match within_secs(15, "the server's close", server.rx.next_unbounded()).await {
        Err(how) => assert_eq!(how, Closed::WebSocket(1000, "Stop server".into()), "server"),
        Ok(frame) => panic!("expected the close, got a frame for {}", frame.address),
    }
    for (client, _) in &mut clients {
        let closed = client.closed().await;
        match client.kind {
            Kind::WebSocket => assert_eq!(closed, Closed::WebSocket(1000, "Stop server".into()), "client"),
            _ => assert_eq!(closed, Closed::Eof),
        }
    }
    assert!(stopped_at.elapsed() >= grace, "the tunnels were closed before the grace period ended");
    assert!(
        broker.stopped_within(Duration::from_secs(10)).await,
        "run did not return after the grace period"
    );
}

/// A registered server without clients is no tunnel: a stopping broker closes it at once
/// instead of waiting out the grace period for it; one with a client goes when that client goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_servers_without_clients() {
    let grace = Duration::from_secs(30);
    let mut broker = Broker::builder().config(|c| c.server.shutdown_grace_period = grace).start().await;
    let (idle_uuid, busy_uuid) = (new_uuid(), new_uuid());
    let mut idle = SlipPeer::register(&broker, Kind::Tcp, &idle_uuid).await;
    let mut busy = SlipPeer::register(&broker, Kind::WebSocket, &busy_uuid).await;
    let (mut client, address) = join(&broker, &mut busy, Kind::Tcp, &busy_uuid).await;
    broker.signal_stop();
    match within_secs(5, "the idle server's close", idle.rx.next_unbounded()).await {
        Err(how) => assert_eq!(how, Closed::Eof, "idle server"),
        Ok(frame) => panic!("expected the close, got a frame for {}", frame.address),
    }
    // The busy one still carries its client's tunnel.
    exchange(&mut busy, &mut client, address, "still carried").await;
    drop(client);
    loop {
        match within_secs(5, "the busy server's close", busy.rx.next_unbounded()).await {
            Err(how) => break assert_eq!(how, Closed::WebSocket(1000, "Stop server".into()), "busy server"),
            // The ClientDisconnected notification comes first.
            Ok(frame) => assert_eq!(frame.address, 0, "only notifications before the close"),
        }
    }
    assert!(broker.stopped_within(Duration::from_secs(5)).await, "the broker waited for idle servers");
}
