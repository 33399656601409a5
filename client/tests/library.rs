//! The client library against a real broker.

use remoteproxy_testkit as common;
mod support;

use std::time::Duration;

use common::{Broker, Kind, Outcome, TestAuthenticator, random_bytes, within};
use remoteproxy_client::{
    AuthenticationError, ClientError, ClientOptions, Credentials, ProxyUrl, open_tunnel,
};
use support::{ca_file, url_text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn url(broker: &Broker, kind: Kind) -> ProxyUrl {
    ProxyUrl::parse(&url_text(broker, kind)).unwrap()
}

/// Options that trust the broker's generated certificate through a CA file, as a user would.
fn trusting(broker: &Broker, dir: &tempfile::TempDir) -> ClientOptions {
    ClientOptions { ca_file: Some(ca_file(broker, dir)), ..ClientOptions::default() }
}

fn credentials(token: &str, nonce: &str, name: &str) -> Credentials {
    Credentials {
        token: token.into(),
        nonce: Some(nonce.into()),
        uuid: format!("uuid-{name}"),
        name: name.into(),
    }
}

#[tokio::test]
async fn tunnels_over_every_scheme_carry_bytes_both_ways() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = trusting(&broker, &dir);
    for (a, b) in [(Kind::Tcp, Kind::Tcp), (Kind::WebSocket, Kind::WebSocket), (Kind::Unix, Kind::WebSocket)]
    {
        let nonce = format!("{a:?}-{b:?}");
        let (url_a, url_b) = (url(&broker, a), url(&broker, b));
        let (cred_a, cred_b) = (credentials("t", &nonce, "one"), credentials("t", &nonce, "two"));
        let (first, second) = tokio::join!(open_tunnel(&url_a, &options, &cred_a), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            open_tunnel(&url_b, &options, &cred_b).await
        });
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!((first.partner_name.as_str(), first.partner_uuid.as_str()), ("two", "uuid-two"));
        assert_eq!(second.partner_name, "one");
        let (to_second, to_first) = (random_bytes(300_000), random_bytes(200_000));
        let mut got_second = vec![0u8; to_second.len()];
        let mut got_first = vec![0u8; to_first.len()];
        let (mut first_in, mut first_out) = tokio::io::split(first.stream);
        let (mut second_in, mut second_out) = tokio::io::split(second.stream);
        within("bytes both ways", async {
            tokio::try_join!(
                first_out.write_all(&to_second),
                second_out.write_all(&to_first),
                second_in.read_exact(&mut got_second),
                first_in.read_exact(&mut got_first),
            )
        })
        .await
        .unwrap();
        assert!(got_second == to_second && got_first == to_first, "{a:?}-{b:?}");
    }
}

#[tokio::test]
async fn bytes_sent_with_the_notification_are_read_first() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = trusting(&broker, &dir);
    // The raw test client sends its data the instant it reads TunnelEstablished, so the bytes
    // often arrive in the same read as the notification on the library side.
    for _ in 0..5 {
        let mut raw = broker.connect(Kind::Tcp).await;
        assert_eq!(
            raw.authenticate("uuid-raw", "raw", "early", Some("n")).await,
            "AuthenticationErrorNoError"
        );
        let opened = tokio::spawn({
            let (url, options) = (url(&broker, Kind::Tcp), options.clone());
            async move { open_tunnel(&url, &options, &credentials("early", "n", "lib")).await }
        });
        raw.wait_tunnel().await;
        raw.send_bytes(b"first bytes").await;
        let mut tunnel = within("tunnel", opened).await.unwrap().unwrap();
        let mut got = [0u8; 11];
        within("early bytes", tunnel.stream.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"first bytes");
    }
}

#[tokio::test]
async fn hello_reports_the_server() {
    let broker = Broker::builder().config(|c| c.server.name = "lib-test".into()).start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut connection =
        remoteproxy_client::connect(&url(&broker, Kind::WebSocket).to_string(), &trusting(&broker, &dir))
            .await
            .unwrap();
    let info = connection.hello().await.unwrap();
    assert_eq!(
        (info.name.as_str(), info.server.as_str(), info.api_version.as_str()),
        ("lib-test", "remoteproxy", "0.5")
    );
}

#[tokio::test]
async fn typed_errors_say_what_happened() {
    // Nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = open_tunnel(
        &ProxyUrl::parse(&format!("tcp://{closed}")).unwrap(),
        &ClientOptions::default(),
        &credentials("t", "n", "x"),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, ClientError::ConnectionRefused { .. }), "{err}");

    // A self-signed broker is not trusted by default, and the error says why and what to do.
    let broker = Broker::start().await;
    let err = open_tunnel(&url(&broker, Kind::Tcp), &ClientOptions::default(), &credentials("t", "n", "x"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::TlsVerification { .. }), "{err}");
    assert!(err.to_string().contains("--ca"), "{err}");

    // Explicitly skipping verification connects (to a partner that never comes: the broker closes).
    let broker = Broker::builder().config(|c| c.timeouts.alone = Duration::from_millis(200)).start().await;
    let insecure = ClientOptions { insecure_skip_verify: true, ..ClientOptions::default() };
    for kind in [Kind::Tcp, Kind::WebSocket] {
        let err = open_tunnel(&url(&broker, kind), &insecure, &credentials("t", &format!("{kind:?}"), "x"))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ClientError::PartnerDidNotShowUp), "{kind:?}: {err}");
    }

    // A refused token.
    let broker = Broker::builder()
        .authenticator(TestAuthenticator::new(Outcome::AuthenticationFailed, Duration::ZERO))
        .start()
        .await;
    let err =
        open_tunnel(&url(&broker, Kind::Unix), &insecure, &credentials("bad", "n", "x")).await.err().unwrap();
    assert!(
        matches!(
            err,
            ClientError::AuthenticationRefused { outcome: AuthenticationError::AuthenticationFailed }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("AuthenticationErrorAuthenticationFailed"));
}

#[tokio::test]
async fn server_closing_a_waiting_client_reports_its_reason() {
    let mut broker = Broker::start().await;
    let insecure = ClientOptions { insecure_skip_verify: true, ..ClientOptions::default() };
    let waiting = tokio::spawn({
        let url = url(&broker, Kind::WebSocket);
        async move { open_tunnel(&url, &insecure, &credentials("t", "n", "waiting")).await }
    });
    // The broker has the waiting client in its books before it stops.
    broker.v1_clients_settle_at(1).await;
    broker.signal_stop();
    let err = within("the broker's stop", waiting).await.unwrap().err().unwrap();
    match err {
        ClientError::ServerClosed { reason } => assert_eq!(reason.as_deref(), Some("Stop server")),
        other => panic!("expected ServerClosed, got {other}"),
    }
}

#[test]
fn bad_urls_are_refused_before_connecting() {
    assert!(matches!(ProxyUrl::parse("ftp://x"), Err(ClientError::InvalidUrl { .. })));
}
