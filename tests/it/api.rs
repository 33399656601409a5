//! The v1 JSON-RPC surface on real sockets: Hello, Introspect, the error table of PROTOCOL §3,
//! the Authenticate outcomes of §4 and the framing rules of §2.

use crate::common::*;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------------
// Small helpers of this file (shared ones live in tests/it/common).

/// The next message is exactly this error response, and the close follows it directly.
async fn expect_error_then_close(c: &mut Client, error: &str, id: i64, reason: &str) {
    let response = next_msg(c).await;
    assert_eq!(response, json!({"error": error, "id": id, "status": "error"}), "{:?}", c.kind);
    expect_closed_now(c, reason).await;
}

fn ws(c: &mut Client) -> &mut WebSocketStream<Box<dyn Io>> {
    match &mut c.wire {
        ClientWire::WebSocket(ws) => ws,
        ClientWire::Stream(_) => panic!("not a WebSocket client"),
    }
}

/// Compact JSON with object keys in alphabetical order, built by hand so the check does not
/// depend on serde_json's map type.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        scalar => scalar.to_string(),
    }
}

fn assert_compact_sorted(raw: &str) {
    let value: Value = serde_json::from_str(raw).unwrap();
    assert_eq!(raw, format!("{}\n", canonical(&value)), "output must be compact JSON with sorted keys + \\n");
}

const SERVER_NAME: &str = "api-test-broker";

fn hello_line(id: i64) -> String {
    format!(
        "{{\"id\":{id},\"params\":{{\"apiVersion\":\"0.5\",\"name\":\"{SERVER_NAME}\",\"server\":\"remoteproxy\",\"version\":\"{}\"}},\"status\":\"success\"}}\n",
        env!("CARGO_PKG_VERSION")
    )
}

async fn named_broker() -> Broker {
    Broker::builder().config(|c| c.server.name = SERVER_NAME.to_string()).start().await
}

const AUTH_UUID: &str = "9b7e5a34-1c1f-4a8e-8d4e-0e6f3b2a1c00";

// ---------------------------------------------------------------------------------------------
// Hello and Introspect.

#[tokio::test]
async fn hello_is_exact_compact_and_sorted_on_every_transport() {
    let broker = named_broker().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        c.send_text("{\"id\":0,\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n").await;
        assert_eq!(next_raw(&mut c).await, hello_line(0), "{kind:?}");
        // Hello may be called any number of times; params may be left out.
        c.send_text("{\"id\":42,\"method\":\"RemoteProxy.Hello\"}\n").await;
        assert_eq!(next_raw(&mut c).await, hello_line(42), "{kind:?}");
        c.send_text("{\"id\":43,\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n").await;
        assert_eq!(next_raw(&mut c).await, hello_line(43), "{kind:?}");
    }
}

#[tokio::test]
async fn hello_uses_the_configured_name() {
    let broker = Broker::builder().config(|c| c.server.name = "Another Name 7".to_string()).start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        let r = c.hello().await;
        assert_eq!(
            r,
            json!({"id": 0, "status": "success", "params": {
                "apiVersion": "0.5", "name": "Another Name 7", "server": "remoteproxy",
                "version": env!("CARGO_PKG_VERSION")}}),
            "{kind:?}"
        );
    }
}

fn check_introspection(r: &Value, id: i64) {
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["id"], json!(id), "{r}");
    let p = r["params"].as_object().expect("params object");
    let mut top: Vec<&str> = p.keys().map(|k| k.as_str()).collect();
    top.sort();
    assert_eq!(top, ["methods", "notifications", "types"]);

    let methods = p["methods"].as_object().expect("methods object");
    let mut names: Vec<&str> = methods.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(names, ["Authentication.Authenticate", "RemoteProxy.Hello", "RemoteProxy.Introspect"]);
    for (name, m) in methods {
        let mut keys: Vec<&str> = m.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["description", "params", "returns"], "{name}");
        assert!(m["description"].as_str().is_some_and(|d| !d.is_empty()), "{name}");
    }
    let auth = &methods["Authentication.Authenticate"];
    assert_eq!(
        auth["params"],
        json!({"uuid": "String", "name": "String", "token": "String", "o:nonce": "String"})
    );
    assert_eq!(auth["returns"], json!({"authenticationError": "$ref:AuthenticationError"}));
    assert_eq!(methods["RemoteProxy.Hello"]["params"], json!({}));
    let mut hello_returns: Vec<&str> =
        methods["RemoteProxy.Hello"]["returns"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    hello_returns.sort();
    assert_eq!(hello_returns, ["apiVersion", "name", "server", "version"]);
    assert_eq!(methods["RemoteProxy.Introspect"]["params"], json!({}));

    let notifications = p["notifications"].as_object().expect("notifications object");
    assert_eq!(notifications.keys().collect::<Vec<_>>(), ["RemoteProxy.TunnelEstablished"]);
    let established = &notifications["RemoteProxy.TunnelEstablished"];
    assert_eq!(established["params"], json!({"name": "String", "uuid": "String"}));
    assert!(established["description"].is_string());

    let types = p["types"].as_object().expect("types object");
    let mut type_names: Vec<&str> = types.keys().map(|k| k.as_str()).collect();
    type_names.sort();
    assert_eq!(type_names, ["AuthenticationError", "BasicType", "TunnelProxyError"]);
    assert_eq!(
        types["AuthenticationError"],
        json!([
            "AuthenticationErrorNoError",
            "AuthenticationErrorUnknown",
            "AuthenticationErrorTimeout",
            "AuthenticationErrorAborted",
            "AuthenticationErrorAuthenticationFailed",
            "AuthenticationErrorProxyError"
        ])
    );
    assert_eq!(
        types["BasicType"],
        json!(["Uuid", "String", "Int", "UInt", "Double", "Bool", "Variant", "Object"])
    );
    assert_eq!(
        types["TunnelProxyError"],
        json!([
            "TunnelProxyErrorNoError",
            "TunnelProxyErrorInvalidUuid",
            "TunnelProxyErrorInternalServerError",
            "TunnelProxyErrorServerNotFound",
            "TunnelProxyErrorForbiddenCall",
            "TunnelProxyErrorAlreadyRegistered",
            "TunnelProxyErrorNotRegistered",
            "TunnelProxyErrorUnknownSocketAddress"
        ])
    );
}

#[tokio::test]
async fn introspect_on_every_transport() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        c.send_text("{\"id\":3,\"method\":\"RemoteProxy.Introspect\",\"params\":{}}\n").await;
        let raw = next_raw(&mut c).await;
        assert_compact_sorted(&raw);
        check_introspection(&serde_json::from_str(&raw).unwrap(), 3);
        // The connection stays usable.
        c.send_text("{\"id\":4,\"method\":\"RemoteProxy.Introspect\"}\n").await;
        check_introspection(&next_msg(&mut c).await, 4);
        assert_eq!(c.hello().await["status"], "success", "{kind:?}");
    }
}

#[tokio::test]
async fn hello_while_authenticate_is_running() {
    let authenticator = TestAuthenticator::new(Outcome::NoError, Duration::from_millis(1000));
    let broker = Broker::builder()
        .config(|c| c.server.name = SERVER_NAME.to_string())
        .authenticator(authenticator)
        .start()
        .await;
    // The three transports at once, so their authenticator delays overlap.
    let check = |kind: Kind| {
        let broker = &broker;
        async move {
            let mut c = broker.connect(kind).await;
            c.send_json(&json!({"id": 1, "method": "Authentication.Authenticate",
            "params": {"uuid": AUTH_UUID, "name": "n", "token": "tok", "nonce": format!("{kind:?}")}}))
                .await;
            c.send_text("{\"id\":2,\"method\":\"RemoteProxy.Hello\"}\n").await;
            assert_eq!(next_raw(&mut c).await, hello_line(2), "{kind:?}");
            c.send_text("{\"id\":3,\"method\":\"RemoteProxy.Hello\"}\n").await;
            assert_eq!(next_raw(&mut c).await, hello_line(3), "{kind:?}");
            c.send_text("{\"id\":4,\"method\":\"RemoteProxy.Introspect\"}\n").await;
            check_introspection(&next_msg(&mut c).await, 4);
            assert_eq!(
                next_msg(&mut c).await,
                json!({"id": 1, "params": {"authenticationError": "AuthenticationErrorNoError"}, "status": "success"}),
                "{kind:?}"
            );
        }
    };
    tokio::join!(check(Kind::Tcp), check(Kind::WebSocket), check(Kind::Unix));
}

// ---------------------------------------------------------------------------------------------
// The error table (PROTOCOL §3), on TCP, WebSocket and unix.

#[tokio::test]
async fn error_not_json() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        for input in ["this is not json\n", "{\"id\":1,\"method\":}\n", "{\"id\" 1}\n"] {
            let mut c = broker.connect(kind).await;
            c.send_text(input).await;
            let r = next_msg(&mut c).await;
            let text = r["error"].as_str().unwrap_or_else(|| panic!("{kind:?} {input:?}: {r}"));
            let prefix = "Failed to parse JSON data: ";
            assert!(text.starts_with(prefix) && text.len() > prefix.len(), "{kind:?} {input:?}: {text:?}");
            assert_eq!(r, json!({"error": text, "id": -1, "status": "error"}), "{kind:?} {input:?}");
            expect_closed_now(&mut c, "Invalid JSON data received.").await;
        }
    }
}

/// Bytes that can no longer become a JSON object are answered at once, not when the inactivity
/// timer runs out (set to a minute here; the answer must come within seconds).
#[tokio::test]
async fn broken_json_is_answered_at_once() {
    let broker =
        Broker::builder().config(|c| c.timeouts.inactive = std::time::Duration::from_secs(60)).start().await;
    let padded = format!("{{\"id\" 42{}", " ".repeat(200));
    for kind in ALL_KINDS {
        for input in
            ["hello world}", "{\"id\":42, \"method\":\"RemoteProx}\n", "{\"id\": 42, method", &padded]
        {
            let mut c = broker.connect(kind).await;
            c.send_text(input).await;
            let r = tokio::time::timeout(std::time::Duration::from_secs(5), next_msg(&mut c))
                .await
                .unwrap_or_else(|_| panic!("{kind:?} {input:?}: no answer before the inactivity timer"));
            let text = r["error"].as_str().unwrap_or_else(|| panic!("{kind:?} {input:?}: {r}"));
            assert!(text.starts_with("Failed to parse JSON data: "), "{kind:?} {input:?}: {text:?}");
            assert_eq!(r, json!({"error": text, "id": -1, "status": "error"}), "{kind:?} {input:?}");
            expect_closed_now(&mut c, "Invalid JSON data received.").await;
        }
    }
}

#[tokio::test]
async fn error_no_usable_id() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        for input in [
            "{\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n",
            "{\"id\":\"abc\",\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n",
        ] {
            let mut c = broker.connect(kind).await;
            c.send_text(input).await;
            expect_error_then_close(
                &mut c,
                "Error parsing command. Missing 'id'",
                -1,
                "The id property is missing in the request.",
            )
            .await;
        }
    }
}

#[tokio::test]
async fn error_method_not_namespace_dot_method() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        for (id, method) in [(5, "Hello"), (6, "A.B.C")] {
            let mut c = broker.connect(kind).await;
            c.send_json(&json!({"id": id, "method": method, "params": {}})).await;
            let text = format!("Error parsing method. Got: '{method}'', Expected: 'Namespace.method'");
            expect_error_then_close(&mut c, &text, id, "Invalid method passed.").await;
        }
    }
}

#[tokio::test]
async fn error_unknown_namespace() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        // The v2 namespace does not exist on the v1 API.
        for (id, method) in [(7, "Foo.Hello"), (8, "TunnelProxy.RegisterServer")] {
            let mut c = broker.connect(kind).await;
            c.send_json(&json!({"id": id, "method": method, "params": {}})).await;
            expect_error_then_close(&mut c, "No such namespace", id, "No such namespace.").await;
        }
    }
}

#[tokio::test]
async fn error_unknown_method() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        for (id, method) in [(9, "RemoteProxy.Goodbye"), (10, "Authentication.Login")] {
            let mut c = broker.connect(kind).await;
            c.send_json(&json!({"id": id, "method": method, "params": {}})).await;
            expect_error_then_close(&mut c, "No such method", id, "No such method.").await;
        }
    }
}

#[tokio::test]
async fn error_missing_param_key_masks_the_token() {
    let authenticator = TestAuthenticator::accepting();
    let broker = Broker::builder().authenticator(authenticator.clone()).start().await;
    let secret = "very-secret-token-123";
    for kind in ALL_KINDS {
        // `token` missing.
        let mut c = broker.connect(kind).await;
        c.send_json(&json!({"id": 11, "method": "Authentication.Authenticate",
            "params": {"uuid": "u-1", "name": "n", "nonce": "x"}}))
            .await;
        let text = "Invalid params: Missing key token in {\n    \"name\": \"n\",\n    \"nonce\": \"x\",\n    \"uuid\": \"u-1\"\n}\n";
        expect_error_then_close(&mut c, text, 11, "Invalid params passed.").await;

        // `name` missing, the token is given and must not be echoed.
        let mut c = broker.connect(kind).await;
        c.send_json(&json!({"id": 12, "method": "Authentication.Authenticate",
            "params": {"uuid": "u-1", "token": secret}}))
            .await;
        let r = next_msg(&mut c).await;
        let text = r["error"].as_str().unwrap().to_string();
        assert!(!text.contains(secret), "the token leaked into the error text: {text:?}");
        assert_eq!(
            text,
            "Invalid params: Missing key name in {\n    \"token\": \"MASKED\",\n    \"uuid\": \"u-1\"\n}\n"
        );
        assert_eq!(r, json!({"error": text, "id": 12, "status": "error"}));
        expect_closed_now(&mut c, "Invalid params passed.").await;
    }
    assert!(authenticator.seen.lock().unwrap().is_empty(), "invalid calls must not reach the authenticator");
}

#[tokio::test]
async fn error_forbidden_param_key() {
    let authenticator = TestAuthenticator::accepting();
    let broker = Broker::builder().authenticator(authenticator.clone()).start().await;
    let secret = "secret-xyz-987";
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        c.send_json(&json!({"id": 13, "method": "Authentication.Authenticate",
            "params": {"uuid": "u", "name": "n", "token": secret, "extra": 1}}))
            .await;
        let text = "Invalid params: Forbidden key \"extra\" in {\n    \"extra\": 1,\n    \"name\": \"n\",\n    \"token\": \"MASKED\",\n    \"uuid\": \"u\"\n}\n";
        assert!(!text.contains(secret));
        expect_error_then_close(&mut c, text, 13, "Invalid params passed.").await;

        let mut c = broker.connect(kind).await;
        c.send_json(&json!({"id": 14, "method": "RemoteProxy.Hello", "params": {"foo": "bar"}})).await;
        let text = "Invalid params: Forbidden key \"foo\" in {\n    \"foo\": \"bar\"\n}\n";
        expect_error_then_close(&mut c, text, 14, "Invalid params passed.").await;
    }
    assert!(authenticator.seen.lock().unwrap().is_empty(), "invalid calls must not reach the authenticator");
}

#[tokio::test]
async fn error_call_not_answered_within_json_rpc_timeout() {
    // Authenticator slower than jsonRpcTimeout, which is shorter than authenticationTimeout.
    let authenticator = TestAuthenticator::new(Outcome::NoError, Duration::from_secs(3));
    let broker = Broker::builder()
        .authenticator(authenticator)
        .config(|c| {
            c.timeouts.json_rpc = Duration::from_millis(300);
            c.timeouts.authentication = Duration::from_secs(5);
        })
        .start()
        .await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        c.send_json(&json!({"id": 15, "method": "Authentication.Authenticate",
            "params": {"uuid": AUTH_UUID, "name": "n", "token": "t"}}))
            .await;
        expect_error_then_close(&mut c, "Command timed out", 15, "API call timeouted.").await;
    }
}

#[tokio::test]
async fn error_data_buffer_size_violation() {
    let broker = Broker::builder().config(|c| c.server.max_message_size = 1024).start().await;
    let incomplete =
        format!("{{\"id\":0,\"method\":\"RemoteProxy.Hello\",\"params\":{{\"x\":\"{}", "y".repeat(2000));
    for kind in [Kind::Tcp, Kind::Unix] {
        // On byte streams: no response at all, just the close.
        let mut c = broker.connect(kind).await;
        c.send_text(&incomplete).await;
        let closed = c.closed().await;
        assert_eq!(closed, Closed::Eof, "{kind:?}");
        assert!(
            c.buf.is_empty(),
            "{kind:?}: no response expected, got {:?}",
            String::from_utf8_lossy(&c.buf)
        );
    }
    // On WebSocket: an object spanning frames grows past the limit; the close is the first and
    // only thing the client sees.
    let mut c = broker.connect(Kind::WebSocket).await;
    for piece in incomplete.as_bytes().chunks(500) {
        c.send_text(std::str::from_utf8(piece).unwrap()).await;
    }
    expect_closed_now(&mut c, "Data buffer size violation.").await;
    // In one frame, too.
    let mut c = broker.connect(Kind::WebSocket).await;
    c.send_text(&incomplete).await;
    expect_closed_now(&mut c, "Data buffer size violation.").await;
}

#[tokio::test]
async fn default_max_message_size_is_10240() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        // An incomplete message of 10200 bytes is held (whitespace inside the object)...
        let mut c = broker.connect(kind).await;
        let head = format!("{{\"id\":1,{}", " ".repeat(10192));
        assert_eq!(head.len(), 10200);
        c.send_text(&head).await;
        assert_quiet(&mut c, Duration::from_millis(150), "an incomplete message under the limit").await;
        // ...and answered once it is complete.
        c.send_text("\"method\":\"RemoteProxy.Hello\"}\n").await;
        let r = next_msg(&mut c).await;
        assert_eq!((r["id"].clone(), r["status"].clone()), (json!(1), json!("success")), "{kind:?}");
        // An incomplete one past 10240 bytes is not.
        let incomplete = format!("{{\"id\":2,{}", " ".repeat(10300));
        c.send_text(&incomplete).await;
        expect_closed_now(&mut c, "Data buffer size violation.").await;
    }
}

// ---------------------------------------------------------------------------------------------
// Framing and the dialect.

#[tokio::test]
async fn numeric_string_id_is_echoed_as_integer() {
    let broker = named_broker().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        c.send_text("{\"id\":\"17\",\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n").await;
        assert_eq!(next_raw(&mut c).await, hello_line(17), "{kind:?}");
        // Also in an error response.
        c.send_text("{\"id\":\"23\",\"method\":\"Foo.Bar\"}\n").await;
        let raw = next_raw(&mut c).await;
        assert_eq!(raw, "{\"error\":\"No such namespace\",\"id\":23,\"status\":\"error\"}\n", "{kind:?}");
        expect_closed_now(&mut c, "No such namespace.").await;
    }
}

#[tokio::test]
async fn keys_in_any_order_are_accepted() {
    let broker = named_broker().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        c.send_text("{\"params\":{},\"method\":\"RemoteProxy.Hello\",\"id\":4}\n").await;
        assert_eq!(next_raw(&mut c).await, hello_line(4), "{kind:?}");
    }
}

#[tokio::test]
async fn several_requests_in_one_write() {
    let broker = named_broker().await;
    let batch = "{\"id\":1,\"method\":\"RemoteProxy.Hello\"}{\"id\":2,\"method\":\"RemoteProxy.Hello\",\"params\":{}} \r\n\t{\"id\":\"3\",\"method\":\"RemoteProxy.Introspect\"}{\"id\":4,\"method\":\"RemoteProxy.Hello\"}";
    for kind in ALL_KINDS {
        // One write on a stream, one frame on a WebSocket.
        let mut c = broker.connect(kind).await;
        c.send_text(batch).await;
        assert_eq!(next_raw(&mut c).await, hello_line(1), "{kind:?}");
        assert_eq!(next_raw(&mut c).await, hello_line(2), "{kind:?}");
        check_introspection(&next_msg(&mut c).await, 3);
        assert_eq!(next_raw(&mut c).await, hello_line(4), "{kind:?}");
        assert_quiet(&mut c, Duration::from_millis(100), "after the batch").await;
    }
}

#[tokio::test]
async fn request_split_over_many_writes() {
    let broker = named_broker().await;
    let request = "{\"id\":31,\"method\":\"RemoteProxy.Hello\",\"params\":{}}\n{\"id\":32,\"method\":\"RemoteProxy.Hello\"}\n";
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        // Byte by byte on streams; a few bytes per frame on a WebSocket (an object spanning frames).
        let step = if kind == Kind::WebSocket { 7 } else { 1 };
        for piece in request.as_bytes().chunks(step) {
            c.send_text(std::str::from_utf8(piece).unwrap()).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(next_raw(&mut c).await, hello_line(31), "{kind:?}");
        assert_eq!(next_raw(&mut c).await, hello_line(32), "{kind:?}");
    }
}

#[tokio::test]
async fn websocket_binary_frame_before_the_tunnel_is_treated_as_text() {
    let broker = named_broker().await;
    let mut c = broker.connect(Kind::WebSocket).await;
    c.send_bytes(b"{\"id\":51,\"method\":\"RemoteProxy.Hello\"}\n").await;
    assert_eq!(next_raw(&mut c).await, hello_line(51));
    // Two requests in one binary frame, answered as two text frames.
    c.send_bytes(
        b"{\"id\":52,\"method\":\"RemoteProxy.Hello\"}{\"id\":53,\"method\":\"RemoteProxy.Introspect\"}",
    )
    .await;
    assert_eq!(next_raw(&mut c).await, hello_line(52));
    check_introspection(&next_msg(&mut c).await, 53);
    // And Authenticate in a binary frame works too.
    let response = {
        c.send_bytes(
            json!({"id": 54, "method": "Authentication.Authenticate",
                "params": {"uuid": AUTH_UUID, "name": "n", "token": "t"}})
            .to_string()
            .as_bytes(),
        )
        .await;
        next_msg(&mut c).await
    };
    assert_eq!(
        response,
        json!({"id": 54, "params": {"authenticationError": "AuthenticationErrorNoError"}, "status": "success"})
    );
}

#[tokio::test]
async fn websocket_ping_before_the_tunnel_gets_a_pong() {
    let broker = named_broker().await;
    let mut c = broker.connect(Kind::WebSocket).await;
    for payload in [&b"ping-123"[..], b"", b"\x00\xffbinary"] {
        within("ping", ws(&mut c).send(Message::Ping(bytes::Bytes::copy_from_slice(payload)))).await.unwrap();
        let got = match within("pong", ws(&mut c).next()).await {
            Some(Ok(Message::Pong(p))) => p.to_vec(),
            other => panic!("expected a pong, got {other:?}"),
        };
        assert_eq!(got, payload);
    }
    // Still a working connection.
    c.send_text("{\"id\":61,\"method\":\"RemoteProxy.Hello\"}\n").await;
    assert_eq!(next_raw(&mut c).await, hello_line(61));
}

#[tokio::test]
async fn error_responses_are_compact_and_sorted() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        c.send_text("{\"method\":\"RemoteProxy.Hello\"}\n").await;
        let raw = next_raw(&mut c).await;
        assert_eq!(
            raw, "{\"error\":\"Error parsing command. Missing 'id'\",\"id\":-1,\"status\":\"error\"}\n",
            "{kind:?}"
        );
        assert_compact_sorted(&raw);
    }
}

// ---------------------------------------------------------------------------------------------
// Authenticate outcomes (PROTOCOL §4).

async fn check_outcome(outcome: Outcome) {
    let authenticator = TestAuthenticator::new(outcome, Duration::ZERO);
    let broker = Broker::builder().authenticator(authenticator.clone()).start().await;
    for kind in ALL_KINDS {
        let token = format!("token-{kind:?}-{}", outcome.wire_name());
        let mut c = broker.connect(kind).await;
        c.send_json(&json!({"id": 21, "method": "Authentication.Authenticate",
            "params": {"uuid": AUTH_UUID, "name": "first", "token": token, "nonce": "n"}}))
            .await;
        let raw = next_raw(&mut c).await;
        assert_eq!(
            raw,
            format!(
                "{{\"id\":21,\"params\":{{\"authenticationError\":\"{}\"}},\"status\":\"success\"}}\n",
                outcome.wire_name()
            ),
            "{kind:?}"
        );
        if outcome != Outcome::NoError {
            expect_closed_now(&mut c, "API call was not successfully.").await;
            continue;
        }
        // NoError: the client waits alone, connection open and silent.
        assert_quiet(&mut c, Duration::from_millis(200), "an authenticated client waiting alone").await;
        let mut partner = broker.connect(Kind::Tcp).await;
        assert_eq!(
            partner.authenticate("2c5e7d44-0000-4000-8000-000000000002", "second", &token, Some("n")).await,
            "AuthenticationErrorNoError"
        );
        assert_eq!(partner.wait_tunnel().await, json!({"name": "first", "uuid": AUTH_UUID}), "{kind:?}");
        assert_eq!(
            c.wait_tunnel().await,
            json!({"name": "second", "uuid": "2c5e7d44-0000-4000-8000-000000000002"})
        );
    }
}

#[tokio::test]
async fn authenticate_outcome_no_error() {
    check_outcome(Outcome::NoError).await;
}

#[tokio::test]
async fn authenticate_outcome_unknown() {
    check_outcome(Outcome::Unknown).await;
}

#[tokio::test]
async fn authenticate_outcome_timeout() {
    check_outcome(Outcome::Timeout).await;
}

#[tokio::test]
async fn authenticate_outcome_aborted() {
    check_outcome(Outcome::Aborted).await;
}

#[tokio::test]
async fn authenticate_outcome_authentication_failed() {
    check_outcome(Outcome::AuthenticationFailed).await;
}

#[tokio::test]
async fn authenticate_outcome_proxy_error() {
    check_outcome(Outcome::ProxyError).await;
}

#[tokio::test]
async fn authenticator_sees_exactly_the_given_token() {
    let authenticator = TestAuthenticator::accepting();
    let broker = Broker::builder().authenticator(authenticator.clone()).start().await;
    let token = "tok-\u{3b1}\u{3b2}\u{3b3}-{\"quoted\"}-123";
    let mut a = broker.connect(Kind::WebSocket).await;
    a.hello().await;
    a.call(2, "RemoteProxy.Introspect", json!({})).await;
    assert!(authenticator.seen.lock().unwrap().is_empty(), "Hello/Introspect reached the authenticator");
    assert_eq!(a.authenticate(AUTH_UUID, "a", token, Some("nonce-1")).await, "AuthenticationErrorNoError");
    assert_eq!(*authenticator.seen.lock().unwrap(), vec![token.to_string()]);
    let mut b = broker.connect(Kind::Unix).await;
    assert_eq!(
        b.authenticate("5a1f0b8e-0000-4000-8000-00000000000b", "b", token, Some("nonce-1")).await,
        "AuthenticationErrorNoError"
    );
    b.wait_tunnel().await;
    a.wait_tunnel().await;
    assert_eq!(*authenticator.seen.lock().unwrap(), vec![token.to_string(), token.to_string()]);
}

#[tokio::test]
async fn numbers_are_accepted_where_a_string_is_expected() {
    let authenticator = TestAuthenticator::accepting();
    let broker = Broker::builder().authenticator(authenticator.clone()).start().await;
    let mut a = broker.connect(Kind::Tcp).await;
    let r = a
        .call(1, "Authentication.Authenticate", json!({"uuid": 5, "name": 7, "token": 12345, "nonce": 99}))
        .await;
    assert_eq!(
        r,
        json!({"id": 1, "params": {"authenticationError": "AuthenticationErrorNoError"}, "status": "success"})
    );
    assert_eq!(*authenticator.seen.lock().unwrap(), vec!["12345".to_string()]);
    // The partner with the same values as strings pairs with it.
    let mut b = broker.connect(Kind::WebSocket).await;
    assert_eq!(b.authenticate("6", "eight", "12345", Some("99")).await, "AuthenticationErrorNoError");
    assert_eq!(b.wait_tunnel().await, json!({"name": "7", "uuid": "5"}));
    assert_eq!(a.wait_tunnel().await, json!({"name": "eight", "uuid": "6"}));
}

#[tokio::test]
async fn second_authenticate_while_one_is_running_is_refused() {
    let authenticator = TestAuthenticator::new(Outcome::NoError, Duration::from_millis(1500));
    let broker = Broker::builder().authenticator(authenticator.clone()).start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect(kind).await;
        let params = json!({"uuid": AUTH_UUID, "name": "n", "token": "t", "nonce": format!("{kind:?}")});
        c.send_json(&json!({"id": 1, "method": "Authentication.Authenticate", "params": params})).await;
        c.send_json(&json!({"id": 2, "method": "Authentication.Authenticate", "params": params})).await;
        expect_error_then_close(
            &mut c,
            "Authentication already in progress",
            2,
            "Authentication already in progress.",
        )
        .await;
    }
}
