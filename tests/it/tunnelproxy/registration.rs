//! RegisterServer and RegisterClient, duplicates and cross registration.

use super::*;

// ---------------------------------------------------------------------------------------------
// 1. RegisterServer: uuid forms, invalid uuids, invalid params.

#[tokio::test]
async fn register_server_accepts_random_braced_unbraced_and_uppercase_uuids() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let plain = new_uuid();
        let braced_one = format!("{{{}}}", new_uuid());
        let upper = format!("{{{}}}", new_uuid().to_uppercase());
        let mut peers = Vec::new();
        for (id, uuid) in [(11, &plain), (12, &braced_one), (13, &upper)] {
            let mut c = broker.connect_v2(kind).await;
            let r = c
                .call(id, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": uuid}))
                .await;
            assert_eq!(
                r,
                success(id, json!({"slipEnabled": true, "tunnelProxyError": NO_ERROR})),
                "{kind:?} {uuid}"
            );
            peers.push(SlipPeer::from_client(c));
        }
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.ping(20 + i as i64).await;
        }
        // The same uuids spelled differently are the same registrations.
        let respelled = [
            format!("{{{plain}}}"),
            braced_one.trim_matches(['{', '}']).to_string(),
            upper.trim_matches(['{', '}']).to_lowercase(),
            plain.to_uppercase(),
        ];
        for (i, other) in respelled.iter().enumerate() {
            let id = 30 + i as i64;
            let mut c = broker.connect_v2(kind).await;
            let r = c
                .call(id, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": other}))
                .await;
            assert_eq!(
                r,
                success(id, json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED})),
                "{kind:?} {other}"
            );
            expect_closed_now(&mut c, CLOSE_ALREADY_REGISTERED).await;
        }
        // The first registrations are untouched.
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.ping(40 + i as i64).await;
        }
    }
}

#[tokio::test]
async fn register_server_with_null_or_invalid_uuid_answers_invalid_uuid_and_stays_open() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let mut c = broker.connect_v2(kind).await;
        let bad = [
            NULL_UUID.to_string(),
            format!("{{{NULL_UUID}}}"),
            "not a uuid".to_string(),
            String::new(),
            "3f2504e0-4f89-11d3-9a0c-0305e82c330".to_string(),
            "{3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_string() + "x}",
        ];
        for (i, uuid) in bad.iter().enumerate() {
            let id = 50 + i as i64;
            let r = c
                .call(id, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": uuid}))
                .await;
            assert_eq!(
                r,
                success(id, json!({"slipEnabled": false, "tunnelProxyError": INVALID_UUID})),
                "{kind:?} {uuid:?}"
            );
        }
        // Still open, still unregistered: a proper registration works now.
        let uuid = new_uuid();
        let r =
            c.call(60, "TunnelProxy.RegisterServer", json!({"serverName": "d", "serverUuid": uuid})).await;
        assert_eq!(r, success(60, json!({"slipEnabled": true, "tunnelProxyError": NO_ERROR})), "{kind:?}");
        let mut server = SlipPeer::from_client(c);
        server.ping(61).await;
        let (mut client, address) = join(&broker, &mut server, Kind::Tcp, &uuid).await;
        exchange(&mut server, &mut client, address, "after invalid uuids").await;
    }
}

#[tokio::test]
async fn uuid_params_that_are_not_strings_are_invalid_params() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let _server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    let requests = [
        register_server_request(70, Value::Null),
        register_server_request(71, json!(5)),
        register_client_request(72, Value::Null, json!(server_uuid)),
        register_client_request(73, json!(new_uuid()), Value::Null),
    ];
    for kind in ALL_KINDS {
        for request in &requests {
            let mut c = broker.connect_v2(kind).await;
            c.send_json(request).await;
            let r = next_msg(&mut c).await;
            assert_eq!(r["status"], "error", "{kind:?} {request}: {r}");
            assert_eq!(r["id"], request["id"], "{kind:?} {request}: {r}");
            let text = r["error"].as_str().unwrap_or_default();
            assert!(text.starts_with("Invalid params: "), "{kind:?} {request}: {r}");
            let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            keys.sort();
            assert_eq!(keys, ["error", "id", "status"], "{r}");
            expect_closed_now(&mut c, CLOSE_INVALID_PARAMS).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. RegisterClient.

#[tokio::test]
async fn register_client_reaches_the_server_with_client_connected() {
    // A fresh broker: notification ids start at 0 and count up across all servers.
    let broker = Broker::start().await;
    let mut next_id = 0u64;
    let mut keep = Vec::new();
    let mut servers = Vec::new();
    for server_kind in ALL_KINDS {
        let server_uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, server_kind, &server_uuid).await;
        for (i, client_kind) in ALL_KINDS.into_iter().enumerate() {
            // Registered in uppercase, braced on WebSocket: announced braced and lowercase.
            let uuid = new_uuid().to_uppercase();
            let spelled = if client_kind == Kind::WebSocket { format!("{{{uuid}}}") } else { uuid.clone() };
            let mut client = broker.connect_v2(client_kind).await;
            let params = json!({"clientName": format!("app {client_kind:?}"), "clientUuid": spelled, "serverUuid": server_uuid});
            let r = client.call(5, "TunnelProxy.RegisterClient", params).await;
            assert_eq!(
                r,
                success(5, json!({"tunnelProxyError": NO_ERROR})),
                "{server_kind:?} <- {client_kind:?}"
            );

            let message = server.next_json().await;
            assert_eq!(message["notification"], "TunnelProxy.ClientConnected", "{message}");
            assert_eq!(message["id"], json!(next_id), "notification ids count up from 0: {message}");
            next_id += 1;
            let p = &message["params"];
            let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            keys.sort();
            assert_eq!(keys, ["clientName", "clientPeerAddress", "clientUuid", "socketAddress"], "{message}");
            assert_eq!(p["clientName"], format!("app {client_kind:?}"), "{message}");
            assert_eq!(p["clientUuid"], braced(&uuid), "{message}");
            assert_eq!(p["socketAddress"], json!(i + 1), "addresses start at 1: {message}");
            match client_kind {
                Kind::Unix => {
                    let peer = p["clientPeerAddress"].as_str().expect("a string");
                    assert!(!peer.contains(':'), "{message}");
                }
                _ => assert_eq!(p["clientPeerAddress"], "127.0.0.1", "the IP without port: {message}"),
            }
            exchange(
                &mut server,
                &mut client,
                (i + 1) as u16,
                &format!("{server_kind:?} <- {client_kind:?}"),
            )
            .await;
            keep.push(client);
        }
        servers.push(server);
    }
}

#[tokio::test]
async fn register_client_to_an_unknown_server_is_refused_and_closed() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    let (_registered, _) = join(&broker, &mut server, Kind::Tcp, &server_uuid).await;
    for kind in ALL_KINDS {
        // No server at all with that uuid.
        let (mut c, r) = register_client(&broker, kind, &new_uuid(), &new_uuid()).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": SERVER_NOT_FOUND})), "{kind:?}");
        expect_closed_now(&mut c, CLOSE_UNKNOWN_SERVER).await;
        // A client's uuid is no server either.
        let client_uuid = new_uuid();
        let (known, r) = register_client(&broker, Kind::Unix, &client_uuid, &server_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        let address =
            server.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap();
        let (mut c, r) = register_client(&broker, kind, &new_uuid(), &client_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": SERVER_NOT_FOUND})), "{kind:?}");
        expect_closed_now(&mut c, CLOSE_UNKNOWN_SERVER).await;
        leave(&mut server, known, address as u16).await;
    }
}

#[tokio::test]
async fn register_client_with_null_or_invalid_uuids_answers_invalid_uuid_and_stays_open() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::WebSocket, &server_uuid).await;
    for kind in ALL_KINDS {
        let client_uuid = new_uuid();
        let mut c = broker.connect_v2(kind).await;
        let cases = [
            (json!(NULL_UUID), json!(server_uuid)),
            (json!(format!("{{{NULL_UUID}}}")), json!(server_uuid)),
            (json!("not a uuid"), json!(server_uuid)),
            (json!(""), json!(server_uuid)),
            (json!(client_uuid), json!(NULL_UUID)),
            (json!(client_uuid), json!("{not-a-uuid}")),
            (json!(client_uuid), json!("")),
            (json!(NULL_UUID), json!(NULL_UUID)),
        ];
        for (i, (client, server_param)) in cases.into_iter().enumerate() {
            let id = 80 + i as i64;
            c.send_json(&register_client_request(id, client.clone(), server_param.clone())).await;
            let r = next_msg(&mut c).await;
            assert_eq!(
                r,
                success(id, json!({"tunnelProxyError": INVALID_UUID})),
                "{kind:?} {client} -> {server_param}"
            );
        }
        // Still open, and nothing was left registered by the refusals: the same client uuid
        // registers now.
        let r = c
            .call(
                90,
                "TunnelProxy.RegisterClient",
                json!({"clientName": "app", "clientUuid": client_uuid, "serverUuid": server_uuid}),
            )
            .await;
        assert_eq!(r, success(90, json!({"tunnelProxyError": NO_ERROR})), "{kind:?}");
        let params = server.notification("TunnelProxy.ClientConnected").await;
        assert_eq!(params["clientUuid"], braced(&client_uuid));
        let address = params["socketAddress"].as_u64().unwrap() as u16;
        exchange(&mut server, &mut c, address, "after invalid uuids").await;
        leave(&mut server, c, address).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Duplicates, cross registration, registering twice.

#[tokio::test]
async fn duplicated_server_uuid_is_refused_and_the_first_server_keeps_working() {
    let broker = Broker::start().await;
    for (first_kind, second_kind) in
        [(Kind::Tcp, Kind::WebSocket), (Kind::WebSocket, Kind::Unix), (Kind::Unix, Kind::Tcp)]
    {
        let uuid = new_uuid();
        let mut first = SlipPeer::register(&broker, first_kind, &uuid).await;
        let mut second = broker.connect_v2(second_kind).await;
        let r = second
            .call(3, "TunnelProxy.RegisterServer", json!({"serverName": "again", "serverUuid": uuid}))
            .await;
        assert_eq!(r, success(3, json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED})));
        expect_closed_now(&mut second, CLOSE_ALREADY_REGISTERED).await;
        // The first one is untouched.
        first.ping(4).await;
        let (mut client, address) = join(&broker, &mut first, second_kind, &uuid).await;
        assert_eq!(address, 1);
        exchange(&mut first, &mut client, address, "first server").await;
    }
}

#[tokio::test]
async fn duplicated_client_uuid_is_refused_on_any_server() {
    let broker = Broker::start().await;
    let one_uuid = new_uuid();
    let two_uuid = new_uuid();
    let mut one = SlipPeer::register(&broker, Kind::Tcp, &one_uuid).await;
    let mut two = SlipPeer::register(&broker, Kind::WebSocket, &two_uuid).await;
    for kind in ALL_KINDS {
        let uuid = new_uuid();
        let (mut a, r) = register_client(&broker, kind, &uuid, &one_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        let address =
            one.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap() as u16;
        // Same server, other spelling; other server.
        for (spelled, server) in [(braced(&uuid).to_uppercase(), &one_uuid), (uuid.clone(), &two_uuid)] {
            for other_kind in ALL_KINDS {
                let (mut b, r) = register_client(&broker, other_kind, &spelled, server).await;
                assert_eq!(r, success(2, json!({"tunnelProxyError": ALREADY_REGISTERED})), "{other_kind:?}");
                expect_closed_now(&mut b, CLOSE_ALREADY_REGISTERED).await;
            }
        }
        // Neither server heard of the refused ones: the next thing on their channel is a reply.
        one.ping(6).await;
        two.ping(7).await;
        exchange(&mut one, &mut a, address, "the first client").await;
        // Once it leaves, its uuid is free again.
        drop(a);
        assert_eq!(
            one.notification("TunnelProxy.ClientDisconnected").await,
            json!({"socketAddress": address})
        );
        let (mut again, r) = register_client(&broker, kind, &uuid, &two_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        let address =
            two.notification("TunnelProxy.ClientConnected").await["socketAddress"].as_u64().unwrap() as u16;
        exchange(&mut two, &mut again, address, "the uuid again").await;
        drop(again);
        assert_eq!(
            two.notification("TunnelProxy.ClientDisconnected").await,
            json!({"socketAddress": address})
        );
    }
}

#[tokio::test]
async fn cross_registration_is_refused_both_ways() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let server_uuid = new_uuid();
        let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
        let other_server = new_uuid();
        let _other = SlipPeer::register(&broker, Kind::Unix, &other_server).await;
        let (mut client, address) = join(&broker, &mut server, Kind::WebSocket, &server_uuid).await;
        // A client whose uuid the test knows.
        let client_uuid = new_uuid();
        let (_known, r) = register_client(&broker, Kind::Tcp, &client_uuid, &server_uuid).await;
        assert_eq!(r, success(2, json!({"tunnelProxyError": NO_ERROR})));
        server.notification("TunnelProxy.ClientConnected").await;

        // A client with a server's uuid (to that server, to another one; spelled differently).
        for (spelled, target) in
            [(server_uuid.clone(), &server_uuid), (braced(&server_uuid).to_uppercase(), &other_server)]
        {
            let (mut c, r) = register_client(&broker, kind, &spelled, target).await;
            assert_eq!(r, success(2, json!({"tunnelProxyError": ALREADY_REGISTERED})), "{kind:?} {spelled}");
            expect_closed_now(&mut c, CLOSE_CROSS).await;
        }
        // A server with a registered client's uuid.
        for spelled in [client_uuid.clone(), braced(&client_uuid).to_uppercase()] {
            let mut c = broker.connect_v2(kind).await;
            let r = c
                .call(8, "TunnelProxy.RegisterServer", json!({"serverName": "x", "serverUuid": spelled}))
                .await;
            assert_eq!(
                r,
                success(8, json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED})),
                "{kind:?}"
            );
            expect_closed_now(&mut c, CLOSE_CROSS).await;
        }
        // Nothing else changed.
        server.ping(9).await;
        exchange(&mut server, &mut client, address, "after the refusals").await;
    }
}

#[tokio::test]
async fn registering_twice_on_one_server_connection_is_refused_and_closes() {
    let broker = Broker::start().await;
    for kind in ALL_KINDS {
        let requests = [
            (
                json!({"id": 10, "method": "TunnelProxy.RegisterServer", "params": {"serverName": "x", "serverUuid": new_uuid()}}),
                json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED}),
            ),
            (
                json!({"id": 10, "method": "TunnelProxy.RegisterServer", "params": {"serverName": "x", "serverUuid": "same"}}),
                json!({"slipEnabled": false, "tunnelProxyError": ALREADY_REGISTERED}),
            ),
            (
                json!({"id": 10, "method": "TunnelProxy.RegisterClient", "params": {"clientName": "x", "clientUuid": new_uuid(), "serverUuid": new_uuid()}}),
                json!({"tunnelProxyError": ALREADY_REGISTERED}),
            ),
        ];
        for (mut request, result) in requests {
            let uuid = new_uuid();
            if request["params"]["serverUuid"] == "same" {
                request["params"]["serverUuid"] = json!(uuid);
            }
            let mut server = SlipPeer::register(&broker, kind, &uuid).await;
            let (mut client, _) = join(&broker, &mut server, Kind::WebSocket, &uuid).await;
            server.tx.send_json(&request).await;
            assert_eq!(server.next_json().await, success(10, result), "{kind:?} {request}");
            server.rx.expect_closed_now(CLOSE_ALREADY_REGISTERED).await;
            expect_pipe_closed_now(&mut client, CLOSE_SERVER_GONE).await;
            // Its uuid is free again.
            let mut again = SlipPeer::register(&broker, kind, &uuid).await;
            again.ping(11).await;
        }
    }
}

#[tokio::test]
async fn a_registered_client_sending_a_register_request_is_just_data() {
    let broker = Broker::start().await;
    let server_uuid = new_uuid();
    let mut server = SlipPeer::register(&broker, Kind::Tcp, &server_uuid).await;
    for kind in ALL_KINDS {
        let (mut client, address) = join(&broker, &mut server, kind, &server_uuid).await;
        for request in [
            register_server_request(12, json!(new_uuid())),
            register_client_request(13, json!(new_uuid()), json!(server_uuid)),
        ] {
            let mut line = serde_json::to_vec(&request).unwrap();
            line.push(b'\n');
            client.send_bytes(&line).await;
            assert_eq!(server.rx.collect(address, line.len()).await, line);
        }
        assert_no_data(&mut client, Duration::from_millis(200), "no answer from the broker").await;
        exchange(&mut server, &mut client, address, "still a pipe").await;
        leave(&mut server, client, address).await;
    }
}
