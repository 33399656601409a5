//! The pairing rules of PROTOCOL §4 on real sockets: (token, nonce) keys, refusals, the
//! TunnelEstablished notification, and keys being freed.

use crate::common::*;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------------
// Small helpers of this file (shared ones live in tests/it/common).

async fn auth_ok(c: &mut Client, uuid: &str, name: &str, token: &str, nonce: Option<&str>) {
    assert_eq!(c.authenticate(uuid, name, token, nonce).await, "AuthenticationErrorNoError", "{:?}", c.kind);
}

/// Authenticate and return the raw response line.
async fn authenticate_raw(
    c: &mut Client,
    id: i64,
    uuid: &str,
    name: &str,
    token: &str,
    nonce: Option<&str>,
) -> String {
    let mut params = json!({"uuid": uuid, "name": name, "token": token});
    if let Some(nonce) = nonce {
        params["nonce"] = json!(nonce);
    }
    c.send_json(&json!({"id": id, "method": "Authentication.Authenticate", "params": params})).await;
    next_raw(c).await
}

fn auth_line(id: i64, outcome: &str) -> String {
    format!("{{\"id\":{id},\"params\":{{\"authenticationError\":\"{outcome}\"}},\"status\":\"success\"}}\n")
}

const UUID_A: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const UUID_B: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const UUID_C: &str = "7c6b5a49-3827-4165-9f8e-7d6c5b4a3928";

/// Two clients joined with (token, nonce); checks both notifications.
async fn pair(broker: &Broker, a: Kind, b: Kind, token: &str, nonce: Option<&str>) -> (Client, Client) {
    let mut first = broker.connect(a).await;
    let mut second = broker.connect(b).await;
    auth_ok(&mut first, UUID_A, "first", token, nonce).await;
    auth_ok(&mut second, UUID_B, "second", token, nonce).await;
    assert_eq!(second.wait_tunnel().await, json!({"name": "first", "uuid": UUID_A}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": UUID_B}));
    (first, second)
}

/// Sends distinct data both ways and checks each side receives exactly the other's.
async fn exchange(a: &mut Client, b: &mut Client, tag: &str) {
    let ab = format!("{tag}: from the first to the second");
    let ba = format!("{tag}: from the second to the first, a bit longer");
    a.send_bytes(ab.as_bytes()).await;
    b.send_bytes(ba.as_bytes()).await;
    assert_eq!(String::from_utf8_lossy(&b.recv_data(ab.len()).await), ab, "{tag}");
    assert_eq!(String::from_utf8_lossy(&a.recv_data(ba.len()).await), ba, "{tag}");
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn five_tunnels_share_one_token_with_different_nonces() {
    let broker = Broker::start().await;
    let token = "shared-token";
    let mut firsts = Vec::new();
    let mut seconds = Vec::new();
    for i in 0..5 {
        firsts.push(broker.connect(ALL_KINDS[i % 3]).await);
        seconds.push(broker.connect(ALL_KINDS[(i + 1) % 3]).await);
    }
    // All five wait at the same time...
    for (i, c) in firsts.iter_mut().enumerate() {
        let uuid = format!("00000000-0000-4000-8000-00000000010{i}");
        auth_ok(c, &uuid, &format!("first-{i}"), token, Some(&format!("nonce-{i}"))).await;
    }
    // ...then their partners arrive, in a different order.
    for i in [3, 0, 4, 2, 1] {
        let c = &mut seconds[i];
        let uuid = format!("00000000-0000-4000-8000-00000000020{i}");
        auth_ok(c, &uuid, &format!("second-{i}"), token, Some(&format!("nonce-{i}"))).await;
        assert_eq!(
            c.wait_tunnel().await,
            json!({"name": format!("first-{i}"), "uuid": format!("00000000-0000-4000-8000-00000000010{i}")})
        );
    }
    for (i, c) in firsts.iter_mut().enumerate() {
        assert_eq!(
            c.wait_tunnel().await,
            json!({"name": format!("second-{i}"), "uuid": format!("00000000-0000-4000-8000-00000000020{i}")})
        );
    }
    // Distinct data per tunnel, all sent before any is read, so misrouting would show.
    for round in 0..2 {
        for i in 0..5 {
            firsts[i].send_bytes(format!("[round {round}] tunnel {i}: first -> second").as_bytes()).await;
            seconds[i].send_bytes(format!("[round {round}] tunnel {i}: second -> first!").as_bytes()).await;
        }
        for i in 0..5 {
            let to_second = format!("[round {round}] tunnel {i}: first -> second");
            let to_first = format!("[round {round}] tunnel {i}: second -> first!");
            assert_eq!(String::from_utf8_lossy(&seconds[i].recv_data(to_second.len()).await), to_second);
            assert_eq!(String::from_utf8_lossy(&firsts[i].recv_data(to_first.len()).await), to_first);
        }
    }
    for i in 0..5 {
        assert_no_data(&mut firsts[i], Duration::from_millis(30), "no stray data").await;
        assert_no_data(&mut seconds[i], Duration::from_millis(30), "no stray data").await;
    }
}

#[tokio::test]
async fn no_nonce_pairs_with_no_nonce() {
    let broker = Broker::start().await;
    let (mut a, mut b) = pair(&broker, Kind::Tcp, Kind::WebSocket, "token-without-nonce", None).await;
    exchange(&mut a, &mut b, "no nonce").await;
    // A missing nonce is the empty nonce.
    let mut c = broker.connect(Kind::Unix).await;
    let mut d = broker.connect(Kind::Tcp).await;
    auth_ok(&mut c, UUID_A, "first", "token-2", None).await;
    auth_ok(&mut d, UUID_B, "second", "token-2", Some("")).await;
    assert_eq!(d.wait_tunnel().await, json!({"name": "first", "uuid": UUID_A}));
    assert_eq!(c.wait_tunnel().await, json!({"name": "second", "uuid": UUID_B}));
    exchange(&mut c, &mut d, "missing and empty nonce").await;
}

#[tokio::test]
async fn no_nonce_does_not_pair_with_a_nonce() {
    let alone = Duration::from_millis(400);
    let broker = Broker::builder().config(|c| c.timeouts.alone = alone).start().await;
    let mut a = broker.connect(Kind::WebSocket).await;
    let mut b = broker.connect(Kind::WebSocket).await;
    auth_ok(&mut a, UUID_A, "first", "token-3", None).await;
    auth_ok(&mut b, UUID_B, "second", "token-3", Some("some-nonce")).await;
    // Neither is joined: each times out alone.
    let reason = "Proxy timeout occurred. The tunnel partner did not show up.";
    expect_closed_now(&mut a, reason).await;
    expect_closed_now(&mut b, reason).await;
}

#[tokio::test]
async fn third_client_is_refused_and_the_tunnel_is_untouched() {
    let broker = Broker::start().await;
    for (a_kind, b_kind, third_kind) in [
        (Kind::Tcp, Kind::Tcp, Kind::WebSocket),
        (Kind::WebSocket, Kind::Tcp, Kind::Tcp),
        (Kind::Unix, Kind::WebSocket, Kind::Unix),
    ] {
        let tag = format!("{a_kind:?}/{b_kind:?}/{third_kind:?}");
        let token = format!("token-{tag}");
        let (mut a, mut b) = pair(&broker, a_kind, b_kind, &token, Some("nonce-x")).await;
        exchange(&mut a, &mut b, &format!("{tag} before")).await;

        let mut third = broker.connect(third_kind).await;
        let raw = authenticate_raw(&mut third, 1, UUID_C, "third", &token, Some("nonce-x")).await;
        assert_eq!(raw, auth_line(1, "AuthenticationErrorProxyError"), "{tag}");
        expect_closed_now(&mut third, "Tunnel already exists for this token nonce combination.").await;
        // Neither end of the tunnel saw anything of it.
        assert_no_data(&mut a, Duration::from_millis(50), "first end after the refusal").await;
        assert_no_data(&mut b, Duration::from_millis(50), "second end after the refusal").await;
        exchange(&mut a, &mut b, &format!("{tag} after the refusal")).await;

        // The refused client is gone completely now; the tunnel still works both ways.
        drop(third);
        broker.v1_clients_settle_at(2).await;
        exchange(&mut a, &mut b, &format!("{tag} after the refused client left")).await;
        exchange(&mut b, &mut a, &format!("{tag} reversed")).await;
    }
}

#[tokio::test]
async fn refused_clients_in_a_row_leave_the_tunnel_alone() {
    // Several refused clients in a row, each disconnecting on its own; the tunnel survives all.
    let broker = Broker::start().await;
    let (mut a, mut b) = pair(&broker, Kind::Tcp, Kind::Unix, "busy-token", Some("n")).await;
    for round in 0..5 {
        let mut third = broker.connect(ALL_KINDS[round % 3]).await;
        let uuid = format!("00000000-0000-4000-8000-0000000003{round:02}");
        let raw = authenticate_raw(&mut third, 9, &uuid, "intruder", "busy-token", Some("n")).await;
        assert_eq!(raw, auth_line(9, "AuthenticationErrorProxyError"));
        expect_closed_now(&mut third, "Tunnel already exists for this token nonce combination.").await;
        drop(third);
        exchange(&mut a, &mut b, &format!("round {round}")).await;
    }
}

async fn check_duplicate_uuid(waiting_uuid: &str, duplicate_uuid: &str, dup_kind: Kind) {
    let broker = Broker::start().await;
    let token = "dup-token";
    let mut a = broker.connect(Kind::Tcp).await;
    auth_ok(&mut a, waiting_uuid, "waiting", token, Some("n")).await;

    let mut dup = broker.connect(dup_kind).await;
    let raw = authenticate_raw(&mut dup, 4, duplicate_uuid, "impostor", token, Some("n")).await;
    assert_eq!(raw, auth_line(4, "AuthenticationErrorProxyError"), "{waiting_uuid} vs {duplicate_uuid}");
    expect_closed_now(&mut dup, "Duplicated client UUID.").await;
    drop(dup);

    // The waiting client keeps waiting: no message, not closed.
    assert_quiet(&mut a, Duration::from_millis(150), "the waiting client after a duplicate").await;

    // A proper partner still joins it.
    let mut c = broker.connect(Kind::WebSocket).await;
    auth_ok(&mut c, UUID_C, "proper", token, Some("n")).await;
    assert_eq!(c.wait_tunnel().await, json!({"name": "waiting", "uuid": UUID_A}));
    assert_eq!(a.wait_tunnel().await, json!({"name": "proper", "uuid": UUID_C}));
    exchange(&mut a, &mut c, "after the duplicate").await;
}

#[tokio::test]
async fn duplicate_uuid_is_refused_and_the_waiting_client_keeps_waiting() {
    for kind in ALL_KINDS {
        check_duplicate_uuid(UUID_A, UUID_A, kind).await;
    }
}

#[tokio::test]
async fn duplicate_uuid_in_another_spelling_is_refused() {
    let braced_upper = format!("{{{}}}", UUID_A.to_uppercase());
    let braced = format!("{{{UUID_A}}}");
    check_duplicate_uuid(UUID_A, &braced_upper, Kind::WebSocket).await;
    check_duplicate_uuid(&braced, UUID_A, Kind::Tcp).await;
    check_duplicate_uuid(&braced_upper, &braced, Kind::Unix).await;
}

#[tokio::test]
async fn different_tokens_with_the_same_nonce_do_not_pair() {
    let alone = Duration::from_millis(400);
    let broker = Broker::builder().config(|c| c.timeouts.alone = alone).start().await;
    let reason = "Proxy timeout occurred. The tunnel partner did not show up.";
    for (ka, kb) in [(Kind::WebSocket, Kind::WebSocket), (Kind::Tcp, Kind::Unix)] {
        let nonce = format!("same-nonce-{ka:?}-{kb:?}");
        let mut a = broker.connect(ka).await;
        let mut b = broker.connect(kb).await;
        auth_ok(&mut a, UUID_A, "first", "token-one", Some(&nonce)).await;
        auth_ok(&mut b, UUID_B, "second", "token-two", Some(&nonce)).await;
        // No TunnelEstablished: the next thing each sees is its alone timeout.
        expect_closed_now(&mut a, reason).await;
        expect_closed_now(&mut b, reason).await;
    }
}

#[tokio::test]
async fn data_while_alone_closes_the_client_and_frees_the_key() {
    let broker = Broker::start().await;
    let reason = "Data received while authenticated but not remote connected.";
    for kind in ALL_KINDS {
        let token = format!("alone-data-{kind:?}");
        let mut a = broker.connect(kind).await;
        auth_ok(&mut a, UUID_A, "eager", &token, Some("n")).await;
        a.send_bytes(b"too early").await;
        expect_closed_now(&mut a, reason).await;
        drop(a);
        // The key is free: a new pair with the same token and nonce works.
        let (mut b, mut c) = pair(&broker, kind, Kind::Tcp, &token, Some("n")).await;
        exchange(&mut b, &mut c, &format!("{kind:?} after data while alone")).await;
    }
}

#[tokio::test]
async fn data_in_the_same_write_as_authenticate_while_alone_closes_the_client() {
    let broker = Broker::start().await;
    let reason = "Data received while authenticated but not remote connected.";
    for kind in ALL_KINDS {
        let token = format!("same-write-{kind:?}");
        let mut a = broker.connect(kind).await;
        let request = json!({"id": 1, "method": "Authentication.Authenticate",
            "params": {"uuid": UUID_A, "name": "eager", "token": token, "nonce": "n"}});
        // One write (one frame on a WebSocket): the request, then bytes that are not JSON.
        a.send_text(&format!("{request}\nnot json, tunnel data")).await;
        assert_eq!(next_raw(&mut a).await, auth_line(1, "AuthenticationErrorNoError"), "{kind:?}");
        expect_closed_now(&mut a, reason).await;
        drop(a);
        let (mut b, mut c) = pair(&broker, Kind::Tcp, kind, &token, Some("n")).await;
        exchange(&mut b, &mut c, &format!("{kind:?} after early data")).await;
    }
}

#[tokio::test]
async fn tunnel_established_carries_the_partner_and_follows_the_response() {
    let broker = Broker::start().await;
    let mut ids = Vec::new();
    for (round, joiner_kind) in ALL_KINDS.into_iter().enumerate() {
        let token = format!("notify-{round}");
        let mut a = broker.connect(Kind::Tcp).await;
        let braced_a = format!("{{{UUID_A}}}");
        auth_ok(&mut a, &braced_a, "alpha", &token, Some("n")).await;
        // The joiner: the response first, then the notification (raw, maybe in one read).
        let mut b = broker.connect(joiner_kind).await;
        let braced_b = format!("{{{UUID_B}}}");
        let raw = authenticate_raw(&mut b, 77, &braced_b, "beta", &token, Some("n")).await;
        assert_eq!(raw, auth_line(77, "AuthenticationErrorNoError"), "{joiner_kind:?}");
        let raw = next_raw(&mut b).await;
        let notification: Value = serde_json::from_str(&raw).unwrap();
        let id = notification["id"].as_i64().expect("integer notification id");
        ids.push(id);
        assert_eq!(
            raw,
            format!(
                "{{\"id\":{id},\"notification\":\"RemoteProxy.TunnelEstablished\",\"params\":{{\"name\":\"alpha\",\"uuid\":\"{UUID_A}\"}}}}\n"
            ),
            "{joiner_kind:?}"
        );
        // The waiting client gets the joiner's data, uuid without braces.
        let raw = next_raw(&mut a).await;
        let notification: Value = serde_json::from_str(&raw).unwrap();
        let id = notification["id"].as_i64().expect("integer notification id");
        ids.push(id);
        assert_eq!(
            raw,
            format!(
                "{{\"id\":{id},\"notification\":\"RemoteProxy.TunnelEstablished\",\"params\":{{\"name\":\"beta\",\"uuid\":\"{UUID_B}\"}}}}\n"
            )
        );
        // It is the last message from the broker: what follows is the partner's.
        exchange(&mut a, &mut b, &format!("round {round}")).await;
    }
    // One counter for the API, starting at 0.
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn pairing_across_transports() {
    let broker = Broker::start().await;
    for (ka, kb) in [
        (Kind::Tcp, Kind::WebSocket),
        (Kind::WebSocket, Kind::Tcp),
        (Kind::Unix, Kind::Tcp),
        (Kind::Tcp, Kind::Unix),
        (Kind::WebSocket, Kind::Unix),
        (Kind::Unix, Kind::WebSocket),
    ] {
        let (mut a, mut b) = pair(&broker, ka, kb, &format!("across-{ka:?}-{kb:?}"), Some("n")).await;
        exchange(&mut a, &mut b, &format!("{ka:?} <-> {kb:?}")).await;
    }
}

#[tokio::test]
async fn disconnect_while_waiting_frees_the_key() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let token = format!("leaver-{kind:?}");
        let mut ghost = broker.connect(kind).await;
        auth_ok(&mut ghost, UUID_A, "ghost", &token, Some("n")).await;
        drop(ghost);
        // The broker noticed the disconnect.
        broker.v1_clients_settle_at(0).await;

        // The next client with that key waits (it is not joined to the ghost, nor refused)...
        let mut b = broker.connect(Kind::Tcp).await;
        auth_ok(&mut b, UUID_B, "second", &token, Some("n")).await;
        assert_quiet(&mut b, Duration::from_millis(150), "a client that took over a freed key").await;
        // ...and is joined by the next one.
        let mut c = broker.connect(Kind::WebSocket).await;
        auth_ok(&mut c, UUID_C, "third", &token, Some("n")).await;
        assert_eq!(c.wait_tunnel().await, json!({"name": "second", "uuid": UUID_B}), "{kind:?}");
        assert_eq!(b.wait_tunnel().await, json!({"name": "third", "uuid": UUID_C}), "{kind:?}");
        exchange(&mut b, &mut c, &format!("{kind:?} after the ghost")).await;
    }
}

#[tokio::test]
async fn refused_client_does_not_free_the_key() {
    // A refused third client leaving must not free the key: a fourth is refused too, and the
    // tunnel keeps working.
    let broker = Broker::start().await;
    let (mut a, mut b) = pair(&broker, Kind::WebSocket, Kind::WebSocket, "kept-token", Some("n")).await;
    let mut third = broker.connect(Kind::Tcp).await;
    assert_eq!(
        third.authenticate(UUID_C, "third", "kept-token", Some("n")).await,
        "AuthenticationErrorProxyError"
    );
    expect_closed_now(&mut third, "Tunnel already exists for this token nonce combination.").await;
    drop(third);
    broker.v1_clients_settle_at(2).await;
    let mut fourth = broker.connect(Kind::WebSocket).await;
    assert_eq!(
        fourth.authenticate("44444444-4444-4444-8444-444444444444", "fourth", "kept-token", Some("n")).await,
        "AuthenticationErrorProxyError"
    );
    expect_closed_now(&mut fourth, "Tunnel already exists for this token nonce combination.").await;
    exchange(&mut a, &mut b, "after two refusals").await;
}

#[tokio::test]
async fn websocket_ping_while_alone_is_not_data() {
    use futures_util::SinkExt;
    let broker = Broker::start().await;
    let mut a = broker.connect(Kind::WebSocket).await;
    auth_ok(&mut a, UUID_A, "pinger", "ping-token", Some("n")).await;
    let ClientWire::WebSocket(ws) = &mut a.wire else { unreachable!() };
    within("ping", ws.send(Message::Ping(bytes::Bytes::from_static(b"still there?")))).await.unwrap();
    let pong = within("pong", ws.next()).await;
    assert!(
        matches!(&pong, Some(Ok(Message::Pong(p))) if &p[..] == b"still there?"),
        "expected the pong, got {pong:?}"
    );
    assert_quiet(&mut a, Duration::from_millis(100), "a waiting client after a ping").await;
    let mut b = broker.connect(Kind::Tcp).await;
    auth_ok(&mut b, UUID_B, "partner", "ping-token", Some("n")).await;
    assert_eq!(b.wait_tunnel().await, json!({"name": "pinger", "uuid": UUID_A}));
    assert_eq!(a.wait_tunnel().await, json!({"name": "partner", "uuid": UUID_B}));
    exchange(&mut a, &mut b, "after the ping").await;
}

#[tokio::test]
async fn two_joiners_at_once_exactly_one_wins() {
    let broker = Broker::start().await;
    for round in 0..5 {
        let token = format!("race-{round}");
        let mut a = broker.connect(Kind::Tcp).await;
        auth_ok(&mut a, UUID_A, "waiting", &token, Some("n")).await;
        let mut b = broker.connect(ALL_KINDS[round % 3]).await;
        let mut c = broker.connect(ALL_KINDS[(round + 1) % 3]).await;
        let (rb, rc) = tokio::join!(
            b.authenticate(UUID_B, "b", &token, Some("n")),
            c.authenticate(UUID_C, "c", &token, Some("n"))
        );
        let (mut winner, mut loser, winner_name, winner_uuid) = match (rb.as_str(), rc.as_str()) {
            ("AuthenticationErrorNoError", "AuthenticationErrorProxyError") => (b, c, "b", UUID_B),
            ("AuthenticationErrorProxyError", "AuthenticationErrorNoError") => (c, b, "c", UUID_C),
            other => panic!("round {round}: expected one winner and one refusal, got {other:?}"),
        };
        expect_closed_now(&mut loser, "Tunnel already exists for this token nonce combination.").await;
        drop(loser);
        assert_eq!(winner.wait_tunnel().await, json!({"name": "waiting", "uuid": UUID_A}));
        assert_eq!(a.wait_tunnel().await, json!({"name": winner_name, "uuid": winner_uuid}));
        exchange(&mut a, &mut winner, &format!("race round {round}")).await;
    }
}

#[tokio::test]
async fn crlf_after_authenticate_in_the_same_write_is_not_data() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let token = format!("crlf-{kind:?}");
        let mut a = broker.connect(kind).await;
        let request = json!({"id": 2, "method": "Authentication.Authenticate",
            "params": {"uuid": UUID_A, "name": "crlf", "token": token, "nonce": "n"}});
        a.send_text(&format!("{request}\r\n")).await;
        assert_eq!(next_raw(&mut a).await, auth_line(2, "AuthenticationErrorNoError"), "{kind:?}");
        assert_quiet(&mut a, Duration::from_millis(100), "whitespace is not tunnel data").await;
        let mut b = broker.connect(Kind::Tcp).await;
        auth_ok(&mut b, UUID_B, "partner", &token, Some("n")).await;
        assert_eq!(b.wait_tunnel().await, json!({"name": "crlf", "uuid": UUID_A}));
        assert_eq!(a.wait_tunnel().await, json!({"name": "partner", "uuid": UUID_B}));
        exchange(&mut a, &mut b, &format!("{kind:?} after CRLF")).await;
    }
}
