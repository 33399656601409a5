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

/// The v1 and v2 unix sockets take the configured mode (0660 by default, not the umask's) and
/// group, so that exactly the broker's user and that group may connect; a group that does not
/// exist stops the start with a message naming it.
#[tokio::test]
async fn unix_sockets_take_the_configured_mode_and_group() {
    use remoteproxy::ServerListeners;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (dir.path().join("v1.sock"), dir.path().join("v2.sock"));
    // As root any group will do, so pick one the process is not in; otherwise our own.
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let group = if root { "nogroup" } else { "" };
    let text = format!(
        "[WebSocketServer]\nhost=\n[TcpServer]\nhost=\n[UnixSocketServer]\nunixSocketFileName={}\n\
         [WebSocketServerTunnelProxy]\nhost=\n[TcpServerTunnelProxy]\nhost=\n\
         [UnixSocketServerTunnelProxy]\nunixSocketFileName={}\nunixSocketMode=0600\nunixSocketGroup={group}\n\
         [ProxyServer]\nmonitorSocket=\n",
        v1.display(),
        v2.display()
    );
    let config = remoteproxy::config::parse_str(&text, &dir.path().join("r.conf")).unwrap();
    let listeners = ServerListeners::bind(&config).await.unwrap();
    let mode = |path: &PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&v1), 0o660);
    assert_eq!(mode(&v2), 0o600);
    if root {
        assert_eq!(std::fs::metadata(&v2).unwrap().gid(), 65534, "nogroup");
    }
    drop(listeners);

    let text = text.replace(&format!("unixSocketGroup={group}"), "unixSocketGroup=no-such-group-here");
    let config = remoteproxy::config::parse_str(&text, &dir.path().join("r.conf")).unwrap();
    let error = ServerListeners::bind(&config).await.unwrap_err().to_string();
    assert!(error.contains("\"no-such-group-here\"") && error.contains("unixSocketGroup"), "{error}");
}

/// Plain HTTP on a WebSocket listener (here over TLS, as a load balancer or a browser sends it)
/// gets an answer instead of a silent close: `200 OK` on `healthCheckPath`, `426` elsewhere.
#[tokio::test]
async fn plain_http_on_a_websocket_listener_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker =
        Broker::builder().config(|c| c.server.health_check_path = Some("/healthz".to_string())).start().await;
    for (path, status) in [("/healthz", "HTTP/1.1 200 OK\r\n"), ("/", "HTTP/1.1 426 Upgrade Required\r\n")] {
        let tcp = TcpStream::connect(broker.websocket).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = within("TLS handshake", broker.client_tls().connect(name, tcp)).await.unwrap();
        tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        within("the answer and the close", tls.read_to_string(&mut answer)).await.unwrap();
        assert!(answer.starts_with(status), "{path}: {answer}");
    }
}
