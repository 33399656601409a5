//! `maxConnections` and `[Limits]` at accept, over real sockets: a refused connection is closed
//! before anything is said on it, is counted by reason, and disturbs nobody else.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;
use crate::metrics::scrape_until;

/// A plain TCP connection to `addr` from the loopback address `source` (any 127.x.y.z works as a
/// source on Linux, so a test has as many client addresses as it needs).
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    within("connect", socket.connect(addr)).await.unwrap()
}

/// Whether the broker serves `stream`: it answers a Hello (served) or closes it unanswered.
async fn served(stream: &mut TcpStream) -> bool {
    if stream.write_all(b"{\"id\":1,\"method\":\"RemoteProxy.Hello\"}\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 256];
    match within("an answer or a close", stream.read(&mut buf)).await {
        Ok(0) | Err(_) => false,
        Ok(_) => {
            assert!(buf.starts_with(b"{"), "{:?}", String::from_utf8_lossy(&buf));
            true
        }
    }
}

async fn refused_count(broker: &Broker, reason: &str, n: f64) {
    let label = [("reason", reason)];
    scrape_until(broker, reason, |s| s.get("remoteproxy_connections_refused_total", &label) == n).await;
}

#[tokio::test]
async fn a_tunnel_counts_against_max_connections() {
    // Both ends of an established tunnel hold their place: a connection handed to the relay
    // used to give its place back, so tunnels never counted against maxConnections.
    let broker = Broker::builder().tls(false).config(|c| c.server.max_connections = 2).start().await;
    let (first, second) = tunnel(&broker, Kind::Tcp, Kind::Tcp, "token").await;
    let mut third = TcpStream::connect(broker.tcp).await.unwrap();
    assert!(!served(&mut third).await, "a third connection while the tunnel runs");
    drop((first, second));
    within("a place once the tunnel is gone", async {
        loop {
            let mut next = TcpStream::connect(broker.tcp).await.unwrap();
            if served(&mut next).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn one_source_is_limited_and_another_is_still_served() {
    let broker = Broker::builder()
        .tls(false)
        .config(|c| {
            c.metrics.enabled = true;
            c.limits.max_connections_per_ip = Some(2);
        })
        .start()
        .await;
    let mut a = connect_from("127.0.0.1", broker.tcp).await;
    let mut b = connect_from("127.0.0.1", broker.websocket).await;
    assert!(served(&mut a).await);
    let _ = &mut b;
    let mut c = connect_from("127.0.0.1", broker.tcp).await;
    assert!(!served(&mut c).await, "a third connection from 127.0.0.1, across listeners");
    let mut other = connect_from("127.0.0.2", broker.tcp).await;
    assert!(served(&mut other).await, "127.0.0.2 is another source");
    assert!(served(&mut a).await, "the admitted connection is undisturbed");
    refused_count(&broker, "maxConnectionsPerIp", 1.0).await;
}

#[tokio::test]
async fn new_connections_from_one_source_are_paced() {
    let broker = Broker::builder()
        .tls(false)
        .config(|c| {
            c.metrics.enabled = true;
            c.limits.max_new_connections_per_ip_per_second = Some(3);
        })
        .start()
        .await;
    let started = tokio::time::Instant::now();
    let mut admitted = 0;
    for _ in 0..10 {
        let mut stream = connect_from("127.0.0.3", broker.tcp).await;
        admitted += usize::from(served(&mut stream).await);
    }
    // A second's worth at once, then 3 per second: at most 3 more for each second the loop took.
    let allowed = 3 + (started.elapsed().as_secs_f64() * 3.0).floor() as usize;
    assert!((3..=allowed.min(9)).contains(&admitted), "{admitted} of 10 admitted, at most {allowed}");
    let mut other = connect_from("127.0.0.4", broker.tcp).await;
    assert!(served(&mut other).await, "another source has its own bucket");
    let refused = (10 - admitted) as f64;
    refused_count(&broker, "maxNewConnectionsPerIpPerSecond", refused).await;
}

#[tokio::test]
async fn silent_connections_cannot_crowd_out_authenticated_ones() {
    let broker = Broker::builder()
        .tls(false)
        .config(|c| {
            c.metrics.enabled = true;
            c.limits.max_pending_handshakes = Some(2);
        })
        .start()
        .await;
    // A device that authenticated (and waits for its partner) no longer counts as pending.
    let mut device = broker.connect(Kind::Tcp).await;
    assert_eq!(
        device.authenticate("uuid-d", "device", "token", Some("nonce")).await,
        "AuthenticationErrorNoError"
    );
    let silent_one = TcpStream::connect(broker.tcp).await.unwrap();
    let mut silent_two = TcpStream::connect(broker.websocket).await.unwrap();
    let _ = &mut silent_two;
    let mut third = TcpStream::connect(broker.tcp).await.unwrap();
    assert!(!served(&mut third).await, "two connections are pending already");
    refused_count(&broker, "maxPendingHandshakes", 1.0).await;
    // The partner still gets in once a silent one has gone, and the tunnel forms.
    drop(silent_one);
    let mut partner = within("a pending place", async {
        loop {
            let mut stream = TcpStream::connect(broker.tcp).await.unwrap();
            if served(&mut stream).await {
                break stream;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let authenticate = b"{\"id\":2,\"method\":\"Authentication.Authenticate\",\"params\":\
        {\"uuid\":\"uuid-p\",\"name\":\"partner\",\"token\":\"token\",\"nonce\":\"nonce\"}}\n";
    partner.write_all(authenticate).await.unwrap();
    assert_eq!(device.wait_tunnel().await["name"], "partner");
}

#[tokio::test]
async fn a_token_has_at_most_its_tunnels() {
    let broker = Broker::builder()
        .config(|c| {
            c.metrics.enabled = true;
            c.limits.max_tunnels_per_token = Some(1);
        })
        .start()
        .await;
    let mut first = broker.connect(Kind::Tcp).await;
    assert_eq!(first.authenticate("uuid-1", "first", "tok", Some("n1")).await, "AuthenticationErrorNoError");
    // A second tunnel (another nonce) for the same token is refused after authentication.
    let mut second = broker.connect(Kind::WebSocket).await;
    assert_eq!(
        second.authenticate("uuid-2", "second", "tok", Some("n2")).await,
        "AuthenticationErrorProxyError"
    );
    expect_close(&mut second, "Too many tunnels for this token.").await;
    refused_count(&broker, "maxTunnelsPerToken", 1.0).await;
    // Another token has its own count, and the first tunnel can still be joined.
    let mut other = broker.connect(Kind::Tcp).await;
    assert_eq!(other.authenticate("uuid-3", "other", "tok2", Some("n2")).await, "AuthenticationErrorNoError");
    let mut partner = broker.connect(Kind::Tcp).await;
    assert_eq!(
        partner.authenticate("uuid-4", "partner", "tok", Some("n1")).await,
        "AuthenticationErrorNoError"
    );
    assert_eq!(partner.wait_tunnel().await["name"], "first");
}
