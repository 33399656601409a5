//! TLS session resumption (`[SSL] sessionResumption`, `ticketKeyRotation`, `ticketKeyFile`):
//! a reconnecting client resumes, a ticket outlives a key rotation for one period and no
//! longer, and tickets from before a restart resume after it when the keys are kept in a file.

use crate::common::*;
use crate::metrics::{Scrape, scrape_until};

use std::path::Path;
use std::time::Duration;

use rustls::HandshakeKind;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// A broker serving the fixed test certificate (so one client trusts every broker of a test),
/// with its ticket keys in `key_file` (in memory when `None`) rotating every `rotation`.
async fn broker(key_file: Option<&Path>, rotation: Duration, resumption: bool) -> Broker {
    let key_file = key_file.map(Path::to_path_buf);
    Broker::builder()
        .fixture_certificate()
        .config(move |c| {
            c.metrics.enabled = true;
            c.tls.session_resumption = resumption;
            c.tls.ticket_key_rotation = rotation;
            c.tls.ticket_key_file = key_file;
        })
        .start()
        .await
}

/// A client with its own session store (rustls keeps tickets per server name), trusting the
/// fixed test certificate.
fn client() -> TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(tls_fixture("ecdsa.crt")).unwrap();
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem).map(Result::unwrap).collect();
    connector_trusting(&certificates)
}

/// Connects, answers one Hello (so the tickets the broker sends after the handshake are read),
/// closes, and says how the handshake went.
async fn visit(broker: &Broker, client: &TlsConnector) -> HandshakeKind {
    let tcp = within("connect", TcpStream::connect(broker.tcp)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = within("TLS handshake", client.connect(name, tcp)).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().expect("the handshake is done");
    let mut tls = BufReader::new(tls);
    tls.get_mut().write_all(b"{\"id\":1,\"method\":\"RemoteProxy.Hello\"}\n").await.unwrap();
    let mut line = String::new();
    within("the Hello response", tls.read_line(&mut line)).await.unwrap();
    assert!(line.contains("\"status\":\"success\""), "{line}");
    let _ = tls.get_mut().shutdown().await;
    kind
}

#[tokio::test]
async fn a_reconnecting_client_resumes_its_session() {
    let broker = broker(None, Duration::from_secs(3600), true).await;
    let tls_client = client();
    assert_eq!(visit(&broker, &tls_client).await, HandshakeKind::Full);
    assert_eq!(visit(&broker, &tls_client).await, HandshakeKind::Resumed);
    assert_eq!(visit(&broker, &tls_client).await, HandshakeKind::Resumed);
    let handshakes =
        |scrape: &Scrape, kind| scrape.get("remoteproxy_tls_handshakes_total", &[("kind", kind)]);
    let scrape = scrape_until(&broker, "three handshakes counted", |s| {
        handshakes(s, "full") + handshakes(s, "resumed") >= 3.0
    })
    .await;
    assert_eq!((handshakes(&scrape, "full"), handshakes(&scrape, "resumed")), (1.0, 2.0));
}

#[tokio::test]
async fn without_session_resumption_every_handshake_is_full() {
    let broker = broker(None, Duration::from_secs(3600), false).await;
    let tls_client = client();
    for _ in 0..3 {
        assert_eq!(visit(&broker, &tls_client).await, HandshakeKind::Full);
    }
}

#[tokio::test]
async fn a_ticket_from_before_a_restart_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("ticket-keys");
    let before = broker(Some(&keys), Duration::from_secs(3600), true).await;
    let tls_client = client();
    assert_eq!(visit(&before, &tls_client).await, HandshakeKind::Full);
    before.stop().await;

    let after = broker(Some(&keys), Duration::from_secs(3600), true).await;
    assert_eq!(visit(&after, &tls_client).await, HandshakeKind::Resumed);

    // The same client against a broker with other keys: the ticket means nothing there.
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = broker(Some(&other_dir.path().join("ticket-keys")), Duration::from_secs(3600), true).await;
    let fresh = client();
    assert_eq!(visit(&after, &fresh).await, HandshakeKind::Full);
    assert_eq!(visit(&stranger, &fresh).await, HandshakeKind::Full);
}

#[tokio::test]
async fn a_ticket_resumes_through_one_rotation_and_not_past_the_window() {
    const PERIOD: Duration = Duration::from_secs(3);
    let broker = broker(None, PERIOD, true).await;
    // The broker's first key was made before this clock started: it rotates at most PERIOD
    // from now, and stops opening its tickets at most 2 × PERIOD from now.
    let start = Instant::now();
    let (early, late) = (client(), client());
    assert_eq!(visit(&broker, &early).await, HandshakeKind::Full);
    assert_eq!(visit(&broker, &late).await, HandshakeKind::Full);

    // After the rotation (a new client's tickets come from a new key) the first key still opens
    // the tickets it made.
    tokio::time::sleep_until(start + PERIOD + Duration::from_millis(300)).await;
    assert_eq!(visit(&broker, &client()).await, HandshakeKind::Full);
    assert!(start.elapsed() < PERIOD * 2 - Duration::from_millis(500), "the test machine is too slow");
    assert_eq!(visit(&broker, &early).await, HandshakeKind::Resumed);

    // Two periods after the first key was made, its tickets fall back to a full handshake.
    tokio::time::sleep_until(start + PERIOD * 2 + Duration::from_millis(500)).await;
    assert_eq!(visit(&broker, &late).await, HandshakeKind::Full);
}
