//! Ping, Hello, Introspect, Authenticate on the v2 ports.

use super::*;

// ---------------------------------------------------------------------------------------------
// 8. Ping, Hello, Introspect, Authenticate.

#[tokio::test]
async fn ping_echoes_the_timestamp_before_and_after_registration() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        for (id, timestamp) in [(40, json!(0)), (41, json!(1_700_000_000_123u64)), (42, json!(u32::MAX))] {
            let r = c.call(id, "TunnelProxy.Ping", json!({"timestamp": timestamp})).await;
            assert_eq!(r, success(id, json!({"timestamp": timestamp})), "{kind:?}");
        }
        // A numeric string id is echoed as a number.
        c.send_json(&json!({"id": "43", "method": "TunnelProxy.Ping", "params": {"timestamp": 43}})).await;
        assert_eq!(next_msg(&mut c).await, success(43, json!({"timestamp": 43})), "{kind:?}");

        let mut server = SlipPeer::register(&broker, kind, &new_uuid()).await;
        for (id, timestamp) in [(44, json!(0)), (45, json!(1_700_000_000_123u64))] {
            let r = server.call(id, "TunnelProxy.Ping", json!({"timestamp": timestamp})).await;
            assert_eq!(r, success(id, json!({"timestamp": timestamp})), "{kind:?}");
        }
        server
            .tx
            .send_json(&json!({"id": "46", "method": "TunnelProxy.Ping", "params": {"timestamp": 46}}))
            .await;
        assert_eq!(server.next_json().await, success(46, json!({"timestamp": 46})), "{kind:?}");
    }
}

fn check_v2_introspection(r: &Value, id: i64) {
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["id"], json!(id), "{r}");
    let p = &r["params"];
    let methods = p["methods"].as_object().expect("methods");
    let mut names: Vec<&str> = methods.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "RemoteProxy.Hello",
            "RemoteProxy.Introspect",
            "TunnelProxy.DisconnectClient",
            "TunnelProxy.Ping",
            "TunnelProxy.RegisterClient",
            "TunnelProxy.RegisterServer"
        ],
        "no Authentication namespace on v2"
    );
    assert_eq!(
        methods["TunnelProxy.RegisterServer"]["params"],
        json!({"serverName": "String", "serverUuid": "Uuid"})
    );
    assert_eq!(
        methods["TunnelProxy.RegisterServer"]["returns"],
        json!({"slipEnabled": "Bool", "tunnelProxyError": "$ref:TunnelProxyError"})
    );
    assert_eq!(
        methods["TunnelProxy.RegisterClient"]["params"],
        json!({"clientName": "String", "clientUuid": "Uuid", "serverUuid": "Uuid"})
    );
    assert_eq!(
        methods["TunnelProxy.RegisterClient"]["returns"],
        json!({"tunnelProxyError": "$ref:TunnelProxyError"})
    );
    assert_eq!(methods["TunnelProxy.DisconnectClient"]["params"], json!({"socketAddress": "UInt"}));
    assert_eq!(
        methods["TunnelProxy.DisconnectClient"]["returns"],
        json!({"tunnelProxyError": "$ref:TunnelProxyError"})
    );
    assert_eq!(methods["TunnelProxy.Ping"]["params"], json!({"timestamp": "UInt"}));
    assert_eq!(methods["TunnelProxy.Ping"]["returns"], json!({"timestamp": "UInt"}));
    let notifications = p["notifications"].as_object().expect("notifications");
    let mut names: Vec<&str> = notifications.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(names, ["TunnelProxy.ClientConnected", "TunnelProxy.ClientDisconnected"]);
    assert_eq!(
        notifications["TunnelProxy.ClientConnected"]["params"],
        json!({"clientName": "String", "clientPeerAddress": "String", "clientUuid": "String", "socketAddress": "UInt"})
    );
    assert_eq!(notifications["TunnelProxy.ClientDisconnected"]["params"], json!({"socketAddress": "UInt"}));
    assert_eq!(
        p["types"]["TunnelProxyError"],
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
async fn hello_and_introspect_work_on_v2_before_and_after_registration() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        check_hello(&c.call(47, "RemoteProxy.Hello", json!({})).await, 47);
        check_v2_introspection(&c.call(48, "RemoteProxy.Introspect", json!({})).await, 48);
        // Still unregistered and open: it can register.
        let r = c
            .call(49, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": new_uuid()}))
            .await;
        assert_eq!(r["params"]["tunnelProxyError"], NO_ERROR);
        let mut server = SlipPeer::from_client(c);
        check_hello(&server.call(50, "RemoteProxy.Hello", json!({})).await, 50);
        check_v2_introspection(&server.call(51, "RemoteProxy.Introspect", json!({})).await, 51);
    }
}

#[tokio::test]
async fn authentication_namespace_does_not_exist_on_v2() {
    let broker = Broker::start().await;
    let params = json!({"uuid": "u", "name": "n", "token": "t"});
    let expected = |id: i64| json!({"error": "No such namespace", "id": id, "status": "error"});
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        let r = c.call(52, "Authentication.Authenticate", params.clone()).await;
        assert_eq!(r, expected(52), "{kind:?}");
        expect_closed_now(&mut c, "No such namespace.").await;

        // On a registered server's channel: the error, then the close (its clients with it).
        let uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, kind, &uuid).await;
        let (mut client, _) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
        assert_eq!(
            server.call(53, "Authentication.Authenticate", params.clone()).await,
            expected(53),
            "{kind:?}"
        );
        server.rx.expect_closed_now("No such namespace.").await;
        expect_pipe_closed_now(&mut client, CLOSE_SERVER_GONE).await;
    }
}
