//! Every timer of PROTOCOL §1, §4 and §6, with small configured values, on real sockets.

use crate::common::*;

use std::time::{Duration, Instant};

use remoteproxy::config::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Small helpers of this file (shared ones live in tests/it/common).

/// A tunnel end was closed by the broker (code 1011 on a WebSocket, any reason).
async fn expect_tunnel_end_closed(c: &mut Client, what: &str) {
    match c.closed().await {
        Closed::Eof => assert_ne!(c.kind, Kind::WebSocket, "{what}"),
        Closed::WebSocket(code, reason) => assert_eq!(code, 1011, "{what}: closed with {code} {reason:?}"),
        Closed::WebSocketNoFrame => panic!("{what}: WebSocket ended without a close frame"),
    }
}

const INACTIVE: &str = "Proxy timeout occurred. The socket was inactive.";
const ALONE: &str = "Proxy timeout occurred. The tunnel partner did not show up.";

const UUID_A: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const UUID_B: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `check` for every transport at once, so timers of one test overlap instead of adding up.
async fn for_all_kinds<F, Fut>(check: F)
where
    F: Fn(Kind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    tokio::join!(check(Kind::Tcp), check(Kind::WebSocket), check(Kind::Unix));
}

// ---------------------------------------------------------------------------------------------

#[test]
fn default_timeouts_match_the_protocol() {
    let c = Config::default();
    assert_eq!(c.timeouts.inactive, ms(8000));
    assert_eq!(c.timeouts.authentication, ms(8000));
    assert_eq!(c.timeouts.alone, ms(8000));
    assert_eq!(c.timeouts.json_rpc, ms(10000));
    assert_eq!(c.timeouts.tunnel_idle, None);
    assert_eq!(c.timeouts.handshake_deadline, ms(30000));
    assert_eq!(c.timeouts.tls_handshake, ms(5000));
    assert_eq!(c.server.max_message_size, 10240);
}

#[tokio::test]
async fn inactive_timeout_closes_an_idle_connection() {
    let broker = Broker::builder().config(|c| c.timeouts.inactive = ms(400)).start().await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            assert_quiet(&mut c, ms(150), "before inactiveTimeout").await;
            expect_closed_now(&mut c, INACTIVE).await;
        }
    })
    .await;
    // After a Hello the timer runs again from there.
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            assert_eq!(c.hello().await["status"], "success");
            expect_closed_now(&mut c, INACTIVE).await;
        }
    })
    .await;
}

#[tokio::test]
async fn inactive_timeout_is_restarted_by_every_chunk() {
    let inactive = ms(500);
    let broker = Broker::builder().config(|c| c.timeouts.inactive = inactive).start().await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            let start = Instant::now();
            // Hellos every 100 ms for two timeouts.
            while start.elapsed() < inactive * 2 {
                tokio::time::sleep(ms(100)).await;
                assert_eq!(c.hello().await["status"], "success", "{kind:?}");
            }
            // A request in pieces: each piece is a chunk that restarts the timer, although no
            // message is complete until the last one.
            let request = "{\"id\":5,\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n";
            let pieces: Vec<&[u8]> = request.as_bytes().chunks(request.len() / 6 + 1).collect();
            let start = Instant::now();
            for piece in pieces {
                tokio::time::sleep(ms(120)).await;
                c.send_text(std::str::from_utf8(piece).unwrap()).await;
            }
            assert!(start.elapsed() > inactive, "the pieces must span more than one timeout");
            let r = next_msg(&mut c).await;
            assert_eq!((r["id"].clone(), r["status"].clone()), (json!(5), json!("success")), "{kind:?}");
            // Silence now: the timer fires.
            expect_closed_now(&mut c, INACTIVE).await;
        }
    })
    .await;
}

#[tokio::test]
async fn handshake_deadline_ends_a_client_that_trickles_hellos() {
    let inactive = ms(400);
    let broker = Broker::builder()
        .config(|c| {
            c.timeouts.inactive = inactive;
            c.timeouts.handshake_deadline = ms(1000);
        })
        .start()
        .await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            let start = Instant::now();
            let mut last_answer = None;
            let closed = loop {
                assert!(start.elapsed() < ms(8000), "{kind:?}: handshakeDeadline never ended the connection");
                tokio::time::sleep(ms(100)).await;
                c.send_text("{\"id\":0,\"method\":\"RemoteProxy.Hello\"}\n").await;
                match next_event(&mut c).await {
                    Event::Raw(_) => last_answer = Some(start.elapsed()),
                    Event::Closed(how) => break how,
                }
            };
            assert_eq!(closed, expected_close(kind, INACTIVE), "{kind:?}");
            // The trickle did keep it alive past one inactiveTimeout: it was the deadline.
            let last_answer = last_answer.expect("some Hellos were answered");
            assert!(last_answer > inactive, "{kind:?}: closed after {last_answer:?}, before inactiveTimeout");
        }
    })
    .await;
}

#[tokio::test]
async fn handshake_deadline_stops_once_authenticate_was_received() {
    // The authenticator answers after the deadline; the client then waits alone past it.
    let authenticator = TestAuthenticator::new(Outcome::NoError, ms(900));
    let broker = Broker::builder()
        .authenticator(authenticator)
        .config(|c| {
            c.timeouts.handshake_deadline = ms(500);
            c.timeouts.alone = ms(5000);
        })
        .start()
        .await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let token = format!("deadline-{kind:?}");
            let mut a = broker.connect(kind).await;
            assert_eq!(a.authenticate(UUID_A, "first", &token, None).await, "AuthenticationErrorNoError");
            assert_quiet(&mut a, ms(300), "waiting alone after the deadline").await;
            let mut b = broker.connect(Kind::Tcp).await;
            assert_eq!(b.authenticate(UUID_B, "second", &token, None).await, "AuthenticationErrorNoError");
            assert_eq!(b.wait_tunnel().await, json!({"name": "first", "uuid": UUID_A}));
            assert_eq!(a.wait_tunnel().await, json!({"name": "second", "uuid": UUID_B}));
        }
    })
    .await;
}

#[tokio::test]
async fn alone_timeout_closes_a_client_whose_partner_does_not_come() {
    let broker = Broker::builder().config(|c| c.timeouts.alone = ms(400)).start().await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            let token = format!("alone-{kind:?}");
            assert_eq!(
                c.authenticate(UUID_A, "lonely", &token, Some("n")).await,
                "AuthenticationErrorNoError"
            );
            assert_quiet(&mut c, ms(150), "before aloneTimeout").await;
            expect_closed_now(&mut c, ALONE).await;
            // The key is free again: a new pair works.
            let (mut a, mut b) = (broker.connect(kind).await, broker.connect(Kind::Tcp).await);
            assert_eq!(a.authenticate(UUID_A, "a", &token, Some("n")).await, "AuthenticationErrorNoError");
            assert_eq!(b.authenticate(UUID_B, "b", &token, Some("n")).await, "AuthenticationErrorNoError");
            assert_eq!(b.wait_tunnel().await, json!({"name": "a", "uuid": UUID_A}));
            assert_eq!(a.wait_tunnel().await, json!({"name": "b", "uuid": UUID_B}));
        }
    })
    .await;
}

#[tokio::test]
async fn authentication_timeout_yields_authentication_error_timeout() {
    let authenticator = TestAuthenticator::new(Outcome::NoError, ms(5000));
    let broker = Broker::builder()
        .authenticator(authenticator.clone())
        .config(|c| c.timeouts.authentication = ms(300))
        .start()
        .await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            c.send_json(&json!({"id": 8, "method": "Authentication.Authenticate",
                "params": {"uuid": UUID_A, "name": "n", "token": format!("slow-{kind:?}")}}))
                .await;
            assert_eq!(
                next_msg(&mut c).await,
                json!({"id": 8, "params": {"authenticationError": "AuthenticationErrorTimeout"}, "status": "success"}),
                "{kind:?}"
            );
            match next_event(&mut c).await {
                Event::Closed(Closed::Eof) if kind != Kind::WebSocket => {}
                Event::Closed(Closed::WebSocket(1011, _)) if kind == Kind::WebSocket => {}
                other => panic!("{kind:?}: expected the close after a refusal, got {other:?}"),
            }
        }
    })
    .await;
    let mut seen = authenticator.seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["slow-Tcp", "slow-Unix", "slow-WebSocket"]);
}

#[tokio::test]
async fn json_rpc_timeout_answers_command_timed_out() {
    let authenticator = TestAuthenticator::new(Outcome::NoError, ms(3000));
    let broker = Broker::builder()
        .authenticator(authenticator)
        .config(|c| {
            c.timeouts.json_rpc = ms(300);
            c.timeouts.authentication = ms(5000);
        })
        .start()
        .await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            c.send_json(&json!({"id": 33, "method": "Authentication.Authenticate",
                "params": {"uuid": UUID_A, "name": "n", "token": "t"}}))
                .await;
            // Hello is still answered while the call is pending.
            assert_eq!(c.hello().await["status"], "success");
            assert_eq!(
                next_msg(&mut c).await,
                json!({"error": "Command timed out", "id": 33, "status": "error"}),
                "{kind:?}"
            );
            expect_closed_now(&mut c, "API call timeouted.").await;
        }
    })
    .await;
}

#[tokio::test]
async fn json_rpc_timeout_counts_from_the_call_not_from_connect() {
    let authenticator = TestAuthenticator::new(Outcome::NoError, ms(100));
    let broker = Broker::builder()
        .authenticator(authenticator)
        .config(|c| c.timeouts.json_rpc = ms(300))
        .start()
        .await;
    for_all_kinds(|kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            let start = Instant::now();
            while start.elapsed() < ms(600) {
                assert_eq!(c.hello().await["status"], "success");
                tokio::time::sleep(ms(100)).await;
            }
            let token = format!("rpc-{kind:?}");
            assert_eq!(c.authenticate(UUID_A, "n", &token, None).await, "AuthenticationErrorNoError");
        }
    })
    .await;
}

async fn tunnel_with(broker: &Broker, a: Kind, b: Kind, token: &str) -> (Client, Client) {
    let mut first = broker.connect(a).await;
    let mut second = broker.connect(b).await;
    assert_eq!(first.authenticate(UUID_A, "first", token, None).await, "AuthenticationErrorNoError");
    assert_eq!(second.authenticate(UUID_B, "second", token, None).await, "AuthenticationErrorNoError");
    second.wait_tunnel().await;
    first.wait_tunnel().await;
    (first, second)
}

#[tokio::test]
async fn tunnel_idle_timeout_closes_both_ends_of_an_idle_tunnel() {
    let broker = Broker::builder().config(|c| c.timeouts.tunnel_idle = Some(ms(400))).start().await;
    let pairs = [(Kind::Tcp, Kind::Tcp), (Kind::WebSocket, Kind::Unix), (Kind::WebSocket, Kind::WebSocket)];
    let checks = pairs.map(|(ka, kb)| {
        let broker = &broker;
        async move {
            let what = format!("{ka:?}<->{kb:?}");
            let (mut a, mut b) = tunnel_with(broker, ka, kb, &format!("idle-{what}")).await;
            // Some traffic first, then silence.
            a.send_bytes(b"ping").await;
            assert_eq!(b.recv_data(4).await, b"ping");
            assert_no_data(&mut a, ms(150), &format!("{what}: first end before tunnelIdleTimeout")).await;
            expect_tunnel_end_closed(&mut a, &what).await;
            expect_tunnel_end_closed(&mut b, &what).await;
        }
    });
    let [x, y, z] = checks;
    tokio::join!(x, y, z);
}

#[tokio::test]
async fn tunnel_idle_timeout_spares_a_tunnel_that_carries_traffic() {
    let idle = ms(500);
    let broker = Broker::builder().config(|c| c.timeouts.tunnel_idle = Some(idle)).start().await;
    let pairs = [(Kind::Tcp, Kind::WebSocket), (Kind::Unix, Kind::Tcp)];
    let checks = pairs.map(|(ka, kb)| {
        let broker = &broker;
        async move {
            let what = format!("{ka:?}->{kb:?}");
            let (mut a, mut b) = tunnel_with(broker, ka, kb, &format!("busy-{what}")).await;
            // Traffic in one direction only, for two timeouts.
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < idle * 2 {
                tokio::time::sleep(ms(100)).await;
                let data = format!("chunk {n:04}");
                a.send_bytes(data.as_bytes()).await;
                assert_eq!(b.recv_data(data.len()).await, data.as_bytes(), "{what}");
                n += 1;
            }
            // Still a working tunnel in the other direction too.
            b.send_bytes(b"reply").await;
            assert_eq!(a.recv_data(5).await, b"reply", "{what}");
            // Silence now: it closes.
            expect_tunnel_end_closed(&mut a, &what).await;
            expect_tunnel_end_closed(&mut b, &what).await;
        }
    });
    let [x, y] = checks;
    tokio::join!(x, y);
}

#[tokio::test]
async fn tls_handshake_timeout_drops_a_silent_client() {
    let broker = Broker::builder().config(|c| c.timeouts.tls_handshake = ms(400)).start().await;
    let check = |addr: std::net::SocketAddr| async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(ms(150), tcp.read(&mut buf)).await;
        assert!(early.is_err(), "{addr}: closed before the TLS handshake timeout: {early:?}");
        let read = within("the broker to drop the silent client", tcp.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{addr}: expected the connection closed, got {read:?}");
    };
    tokio::join!(check(broker.tcp), check(broker.websocket));
    // The broker serves TLS clients as before.
    for kind in [Kind::Tcp, Kind::WebSocket] {
        let mut c = broker.connect(kind).await;
        assert_eq!(c.hello().await["status"], "success");
    }
}

#[tokio::test]
async fn plain_bytes_on_a_tls_port_close_the_connection() {
    let broker = Broker::start().await;
    let inputs: [&[u8]; 2] = [
        b"{\"id\":0,\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ];
    for addr in [broker.tcp, broker.websocket] {
        for input in inputs {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(input).await.unwrap();
            let mut received = Vec::new();
            let _ = within("the broker to close a plain-text client", tcp.read_to_end(&mut received)).await;
            // At most a TLS alert, never a JSON or HTTP answer.
            assert!(
                !received.starts_with(b"{") && !received.starts_with(b"HTTP"),
                "{addr}: got {:?}",
                String::from_utf8_lossy(&received)
            );
        }
    }
    // Others are still served.
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        assert_eq!(c.hello().await["status"], "success");
    }
}

#[tokio::test]
async fn websocket_upgrade_that_never_comes_is_dropped() {
    // A TLS client on the WebSocket port that never sends the HTTP upgrade is dropped
    // (bounded by inactiveTimeout).
    let broker = Broker::builder().config(|c| c.timeouts.inactive = ms(400)).start().await;
    let mut raw = broker.raw_stream(Kind::WebSocket).await;
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(ms(150), raw.read(&mut buf)).await;
    assert!(early.is_err(), "closed too early: {early:?}");
    let read = within("the broker to drop a client that never upgrades", raw.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "expected the connection closed, got {read:?}");
}
