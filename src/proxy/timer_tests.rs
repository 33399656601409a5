//! The v1 session's timers on tokio's paused clock, over an in-memory pipe: no sockets, no real
//! waiting, exact times.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use remoteproxy_authenticators::mock::MockAuthenticator;
use remoteproxy_authenticators::{PeerAddress, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ProxyContext, Registry, session};
use crate::config::Config;
use crate::stats::Stats;
use crate::transport::Connection;
use crate::transport::connection::Wire;

/// A session on one end of an in-memory pipe, with the default timers; the other end.
fn session() -> DuplexStream {
    let config = Config::default();
    let ctx = Arc::new(ProxyContext {
        server_name: "timers".into(),
        timeouts: config.timeouts,
        authenticator: Arc::new(MockAuthenticator),
        registry: Arc::new(Registry::default()),
        notification_ids: AtomicU64::new(0),
        stop: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        stats: Stats::new("timers", Vec::new()),
        cluster: None,
    });
    let (client, broker) = tokio::io::duplex(64 << 10);
    let wire = Wire::Stream(Box::new(broker));
    let conn = Connection::new(1, PeerAddress::Unix, Transport::Unix, Instant::now(), wire, 10240, None);
    tokio::spawn(session::serve(conn, ctx));
    client
}

/// Reads until the broker closes; returns what it sent.
async fn until_closed(client: &mut DuplexStream) -> String {
    let mut all = Vec::new();
    client.read_to_end(&mut all).await.unwrap();
    String::from_utf8(all).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_at_the_inactive_timeout() {
    let inactive = Config::default().timeouts.inactive;
    let start = Instant::now();
    let mut client = session();
    let said = until_closed(&mut client).await;
    assert_eq!(start.elapsed(), inactive, "closed exactly at inactiveTimeout");
    assert_eq!(said, "", "a byte stream cannot carry the reason");
}

#[tokio::test(start_paused = true)]
async fn talking_keeps_a_client_until_the_handshake_deadline() {
    let timeouts = Config::default().timeouts;
    let start = Instant::now();
    let (mut read, mut write) = tokio::io::split(session());
    // A Hello just before each inactive timeout: the inactivity timer restarts each time, the
    // handshake deadline does not.
    let talk = async {
        let mut id = 0;
        loop {
            tokio::time::sleep(timeouts.inactive - Duration::from_millis(500)).await;
            let hello = format!("{{\"id\":{id},\"method\":\"RemoteProxy.Hello\"}}\n");
            if write.write_all(hello.as_bytes()).await.is_err() {
                return;
            }
            id += 1;
        }
    };
    let mut received = Vec::new();
    let read_all = read.read_to_end(&mut received);
    tokio::select! {
        _ = read_all => {}
        () = talk => {}
    }
    let elapsed = start.elapsed();
    let answered = String::from_utf8_lossy(&received).matches("\"status\":\"success\"").count();
    assert!(answered >= 3, "every Hello was answered while the deadline ran: {answered}");
    assert!(elapsed >= timeouts.handshake_deadline, "closed at {elapsed:?}, before handshakeDeadline");
    assert!(elapsed < timeouts.handshake_deadline + timeouts.inactive, "closed at {elapsed:?}");
}
