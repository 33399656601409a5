//! Listener-level behaviour: address families, configured certificates, the connection limit.

use crate::common::*;

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

#[tokio::test]
async fn ipv6_literal_listeners_serve_every_transport() {
    let broker = Broker::builder().bind_host("::1".parse().unwrap()).start().await;
    assert!(broker.tcp.is_ipv6() && broker.websocket.is_ipv6());
    for kind in [Kind::Tcp, Kind::WebSocket] {
        let mut client = broker.connect(kind).await;
        assert_eq!(client.hello().await["status"], "success", "{kind:?}");
    }
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, "v6").await;
    a.send_bytes(b"over ipv6").await;
    assert_eq!(b.recv_data(9).await, b"over ipv6");
}

/// RSA (PKCS#1), ECDSA P-256 and Ed25519 certificates from files are served by the running
/// broker on both TLS listeners, and the configured chain reaches the client.
#[tokio::test]
async fn configured_certificates_of_every_key_type_are_served() {
    for (cert, key, chain_len) in [
        ("rsa.crt", "rsa.key", 1),
        ("ecdsa.crt", "ecdsa.key", 1),
        ("ed25519.crt", "ed25519.key", 1),
        ("leaf-signed.crt", "leaf-signed.key", 2),
    ] {
        let broker = Broker::builder()
            .config(|c| {
                c.tls.certificate = Some(fixture(cert));
                c.tls.certificate_key = Some(fixture(key));
                if chain_len == 2 {
                    c.tls.certificate_chain = Some(fixture("ca.crt"));
                }
            })
            .start()
            .await;
        assert_eq!(broker.certificates.len(), chain_len, "{cert}");
        for kind in [Kind::Tcp, Kind::WebSocket] {
            let mut client = broker.connect(kind).await;
            assert_eq!(client.hello().await["status"], "success", "{cert} {kind:?}");
        }
    }
}

/// A TLS client on the TCP listener, or `None` when the broker drops the connection at accept.
async fn try_client(broker: &Broker) -> Option<Client> {
    let tcp = TcpStream::connect(broker.tcp).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within("TLS handshake or refusal", broker.client_tls().connect(name, tcp)).await.ok()?;
    Some(Client { kind: Kind::Tcp, wire: ClientWire::Stream(Box::new(tls)), buf: BytesMut::new() })
}

#[tokio::test]
async fn max_connections_is_enforced_at_accept_and_frees_up() {
    let broker = Broker::builder().config(|c| c.server.max_connections = 2).start().await;
    let mut first = broker.connect(Kind::Tcp).await;
    let mut second = broker.connect(Kind::WebSocket).await;
    first.hello().await;
    second.hello().await;
    assert!(try_client(&broker).await.is_none(), "a third connection must be refused");
    // The two admitted clients are undisturbed.
    assert_eq!(first.hello().await["status"], "success");
    assert_eq!(second.hello().await["status"], "success");
    // One leaves: its place becomes free once the broker has seen it go.
    drop(first);
    let mut third = within("a free connection slot", async {
        loop {
            if let Some(client) = try_client(&broker).await {
                break client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(third.hello().await["status"], "success");
    assert_eq!(second.hello().await["status"], "success");
}
