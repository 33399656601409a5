//! `[ProxyProtocol]` over real sockets and real TLS: a trusted balancer's header names the
//! client for the authenticator and the per-source limits; a header from anyone else, or a
//! trusted connection without one, is closed and counted; direct clients are still served.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::BytesMut;
use remoteproxy::config::Trusted;
use remoteproxy_authenticators::{AuthRequest, AuthenticationError, Authenticator, PeerAddress, Verdict};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;
use crate::metrics::scrape_until;

/// Accepts every token and remembers the address each request came from.
#[derive(Default)]
struct Recording(Mutex<Vec<PeerAddress>>);

#[async_trait]
impl Authenticator for Recording {
    fn kind(&self) -> &'static str {
        "recording"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        self.0.lock().unwrap().push(request.facts.peer);
        Verdict { error: AuthenticationError::NoError, user_name: None }
    }
}

async fn broker(authenticator: Arc<Recording>, per_ip: Option<u32>) -> Broker {
    Broker::builder()
        .authenticator(authenticator)
        .config(|c| {
            c.metrics.enabled = true;
            c.limits.max_connections_per_ip = per_ip;
            c.proxy_protocol = Some(Trusted::parse("127.0.0.1, 127.0.5.0/24").unwrap());
        })
        .start()
        .await
}

async fn tcp_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    within("connect", socket.connect(addr)).await.unwrap()
}

/// A v1 header naming `client`, as HAProxy sends it.
fn v1(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    format!("PROXY TCP4 {} 192.0.2.1 {} 443\r\n", client.ip(), client.port()).into_bytes()
}

/// A v2 header naming `client`, as AWS's Network Load Balancer sends it.
fn v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let addresses = (client, "192.0.2.1:443".parse::<SocketAddr>().unwrap());
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap()
}

/// A client of `kind` connecting from `source`, `header` sent first, then TLS (and the upgrade).
async fn client_behind(broker: &Broker, kind: Kind, source: &str, header: &[u8]) -> Client {
    let addr = if kind == Kind::Tcp { broker.tcp } else { broker.websocket };
    let mut tcp = tcp_from(source, addr).await;
    tcp.write_all(header).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within("TLS handshake", broker.client_tls().connect(name, tcp)).await.unwrap();
    let stream: Box<dyn Io> = Box::new(tls);
    let wire = match kind {
        Kind::WebSocket => {
            let url = format!("wss://{}/", broker.websocket);
            let (ws, _) = within("upgrade", tokio_tungstenite::client_async(url, stream)).await.unwrap();
            ClientWire::WebSocket(ws)
        }
        _ => ClientWire::Stream(stream),
    };
    Client { kind, wire, buf: BytesMut::new() }
}

async fn refused_count(broker: &Broker, reason: &str, n: f64) {
    let label = [("reason", reason)];
    scrape_until(broker, reason, |s| s.get("remoteproxy_connections_refused_total", &label) == n).await;
}

#[tokio::test]
async fn the_header_names_the_client_for_authenticators_and_tunnels() {
    let recording = Arc::new(Recording::default());
    let broker = broker(recording.clone(), None).await;
    let mut a = client_behind(&broker, Kind::Tcp, "127.0.0.1", &v1("203.0.113.7:40001")).await;
    let mut b = client_behind(&broker, Kind::WebSocket, "127.0.5.9", &v2("198.51.100.4:40002")).await;
    a.authenticate("aa", "device", "token", Some("n")).await;
    b.authenticate("bb", "app", "token", Some("n")).await;
    a.wait_tunnel().await;
    b.wait_tunnel().await;
    a.send_bytes(b"through the balancer").await;
    assert_eq!(b.recv_data(20).await, b"through the balancer");

    let mut seen: Vec<String> = recording.0.lock().unwrap().iter().map(|p| p.to_string()).collect();
    seen.sort();
    assert_eq!(seen, ["198.51.100.4:40002", "203.0.113.7:40001"]);
}

#[tokio::test]
async fn per_source_limits_count_the_client_not_the_balancer() {
    let broker = broker(Arc::new(Recording::default()), Some(1)).await;
    // Two clients behind one balancer address: each its own source.
    let mut one = client_behind(&broker, Kind::Tcp, "127.0.0.1", &v1("203.0.113.1:1000")).await;
    let mut two = client_behind(&broker, Kind::Tcp, "127.0.0.1", &v1("203.0.113.2:1000")).await;
    assert!(one.hello().await["status"] == "success");
    assert!(two.hello().await["status"] == "success");
    // A second connection of the same client is over its limit, at whatever balancer address.
    let mut tcp = tcp_from("127.0.5.1", broker.tcp).await;
    tcp.write_all(&v2("203.0.113.1:2000")).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(within("the refused client's close", tcp.read(&mut buf)).await.unwrap_or(0), 0);
    refused_count(&broker, "maxConnectionsPerIp", 1.0).await;
    assert!(one.hello().await["status"] == "success", "the admitted client is undisturbed");
}

#[tokio::test]
async fn untrusted_headers_and_missing_headers_are_closed_and_counted() {
    let broker = broker(Arc::new(Recording::default()), None).await;
    // A header from an address not in `trusted`: someone trying to choose their address.
    let mut spoof = tcp_from("127.0.0.2", broker.tcp).await;
    spoof.write_all(&v1("10.0.0.1:1")).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(within("the spoofer's close", spoof.read(&mut buf)).await.unwrap_or(0), 0);
    refused_count(&broker, "proxyProtocolTrusted", 1.0).await;

    // A trusted balancer's connection that starts with TLS instead of the header.
    let tcp = tcp_from("127.0.0.1", broker.tcp).await;
    let name = ServerName::try_from("localhost").unwrap();
    let handshake = within("a handshake without the header", broker.client_tls().connect(name, tcp)).await;
    assert!(handshake.is_err(), "a trusted address without a header must not be served");
    refused_count(&broker, "proxyProtocolHeader", 1.0).await;

    // A malformed header from a trusted address.
    let mut bad = tcp_from("127.0.5.2", broker.websocket).await;
    bad.write_all(b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n").await.unwrap();
    assert_eq!(within("the malformed header's close", bad.read(&mut buf)).await.unwrap_or(0), 0);
    refused_count(&broker, "proxyProtocolHeader", 2.0).await;

    // A direct client from an untrusted address, without a header, is served as itself.
    let tcp = tcp_from("127.0.0.3", broker.tcp).await;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within("TLS handshake", broker.client_tls().connect(name, tcp)).await.unwrap();
    let mut direct =
        Client { kind: Kind::Tcp, wire: ClientWire::Stream(Box::new(tls)), buf: BytesMut::new() };
    assert!(direct.hello().await["status"] == "success");
}
