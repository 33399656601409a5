//! The certificate authenticator through a real broker: a client certificate from the configured
//! CA opens a tunnel and names the user (CN or O); a certificate from another CA or an expired one
//! fails the TLS handshake; without a certificate the client is refused by the authenticator
//! (optional mode) or at the handshake (required mode). The token is not checked and never logged.

use std::path::PathBuf;
use std::sync::Arc;

use crate::common::*;
use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use remoteproxy::authenticators::certificate::CertificateAuthenticator;
use remoteproxy::authenticators::settings::{CertificateSettings, SubjectField};
use remoteproxy::authenticators::{
    AuthRequest, AuthenticationError, Authenticator, ConnectionFacts, PeerAddress, Token, Transport,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const FAILED: &str = "AuthenticationErrorAuthenticationFailed";
const NO_ERROR: &str = "AuthenticationErrorNoError";

/// A test CA that issues client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            certificate: certificate.der().clone(),
            pem: certificate.pem(),
        }
    }

    /// A client certificate with the given subject fields, valid now unless `expired`.
    fn client(&self, common_name: Option<&str>, organization: Option<&str>, expired: bool) -> ClientIdentity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Not rcgen's default subject (which has a CN).
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        if let Some(o) = organization {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap().der().clone();
        ClientIdentity { chain: vec![certificate], key: key.serialize_der() }
    }

    /// The CA certificate as a PEM file in `dir`.
    fn write_pem(&self, dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("client-ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// A client certificate chain and its PKCS#8 key.
struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl ClientIdentity {
    fn leaf(&self) -> Vec<u8> {
        self.chain[0].as_ref().to_vec()
    }
}

/// A broker whose TLS listeners verify client certificates against `ca`.
async fn broker(ca: &Ca, dir: &tempfile::TempDir, field: SubjectField, required: bool) -> Broker {
    let ca_file = ca.write_pem(dir);
    Broker::builder()
        .authenticator(Arc::new(CertificateAuthenticator::new(CertificateSettings { user_name_from: field })))
        .config(|c| {
            c.tls.client_ca = Some(ca_file);
            c.tls.client_certificate_required = required;
        })
        .start()
        .await
}

/// A TLS connector trusting the broker and presenting `identity`.
fn connector(broker: &Broker, identity: &ClientIdentity) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in &broker.certificates {
        roots.add(certificate.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.chain.clone(), key)
        .unwrap();
    TlsConnector::from(Arc::new(config))
}

/// A TLS stream to the broker's TCP (or WebSocket) listener, or the handshake error.
async fn tls_stream(
    broker: &Broker,
    connector: &TlsConnector,
    websocket: bool,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(if websocket { broker.websocket } else { broker.tcp }).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    within("TLS handshake", connector.connect(ServerName::try_from("localhost").unwrap(), tcp)).await
}

/// A protocol client presenting `identity`.
async fn connect_with(broker: &Broker, identity: &ClientIdentity, kind: Kind) -> Client {
    let connector = connector(broker, identity);
    let stream: Box<dyn Io> =
        Box::new(tls_stream(broker, &connector, kind == Kind::WebSocket).await.unwrap());
    let wire = match kind {
        Kind::WebSocket => {
            let url = format!("wss://{}/", broker.websocket);
            let (ws, _) =
                within("WebSocket upgrade", tokio_tungstenite::client_async(url, stream)).await.unwrap();
            ClientWire::WebSocket(ws)
        }
        _ => ClientWire::Stream(stream),
    };
    Client { kind, wire, buf: BytesMut::new() }
}

/// Asserts that the broker refuses the TLS session of a client presenting `identity`: the
/// handshake fails, or (TLS 1.3, where the client finishes before the server has checked its
/// certificate) the connection ends with an alert before any answer.
async fn assert_tls_refused(broker: &Broker, connector: TlsConnector) {
    match tls_stream(broker, &connector, false).await {
        Err(_) => {}
        Ok(stream) => {
            let mut client =
                Client { kind: Kind::Tcp, wire: ClientWire::Stream(Box::new(stream)), buf: BytesMut::new() };
            client.send_json(&json!({"id": 0, "method": "RemoteProxy.Hello", "params": {}})).await;
            let answer = within("the refusal", client.try_recv_json()).await;
            assert!(answer.is_none(), "the broker answered a client it should have refused: {answer:?}");
        }
    }
}

/// A fresh unique string.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The user name of the `authenticated` log line of the client with `uuid`.
fn logged_user(uuid: &str) -> Option<String> {
    let logs = capture_logs();
    let logs = logs.lock().unwrap();
    let text = String::from_utf8_lossy(&logs);
    let line = text.lines().find(|line| line.contains(" authenticated") && line.contains(uuid))?;
    let user = line.split(" user=").nth(1)?.split(' ').next()?;
    Some(user.trim_matches('"').to_string())
}

/// Two clients (TCP and WebSocket) presenting `identity` form a tunnel with `token`; the broker
/// names both `user`.
async fn assert_tunnel(broker: &Broker, identity: &ClientIdentity, token: &str, user: &str) {
    let nonce = unique("nonce");
    let (uuid_a, uuid_b) = (unique("a"), unique("b"));
    let mut first = connect_with(broker, identity, Kind::Tcp).await;
    let mut second = connect_with(broker, identity, Kind::WebSocket).await;
    assert_eq!(first.authenticate(&uuid_a, "first", token, Some(&nonce)).await, NO_ERROR);
    assert_eq!(second.authenticate(&uuid_b, "second", token, Some(&nonce)).await, NO_ERROR);
    assert_eq!(second.wait_tunnel().await, json!({"name": "first", "uuid": uuid_a}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": uuid_b}));
    first.send_bytes(b"hello").await;
    assert_eq!(second.recv_data(5).await, b"hello");
    second.send_bytes(b"world").await;
    assert_eq!(first.recv_data(5).await, b"world");
    for uuid in [&uuid_a, &uuid_b] {
        assert_eq!(logged_user(uuid).as_deref(), Some(user), "{uuid}");
    }
}

#[tokio::test]
async fn a_certificate_from_the_ca_opens_a_tunnel_named_after_its_cn() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("remoteproxy test client CA");
    let broker = broker(&ca, &dir, SubjectField::CommonName, false).await;
    let alice = ca.client(Some("alice"), Some("acme"), false);
    // The token is not checked: any token pairs the two ends.
    let token = unique("not-checked-token");
    assert_tunnel(&broker, &alice, &token, "alice").await;
    broker.stop().await;
    assert_not_logged(&[&token]);
}

#[tokio::test]
async fn the_user_name_can_be_the_organization() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("remoteproxy test client CA");
    let broker = broker(&ca, &dir, SubjectField::Organization, false).await;
    let alice = ca.client(Some("alice"), Some("acme"), false);
    let token = unique("organization-token");
    assert_tunnel(&broker, &alice, &token, "acme").await;
    // A subject without O: refused by the authenticator (the TLS layer accepted the certificate).
    let no_organization = ca.client(Some("bob"), None, false);
    let mut client = connect_with(&broker, &no_organization, Kind::Tcp).await;
    assert_eq!(client.authenticate(&unique("uuid"), "bob", &token, None).await, FAILED);
    assert_eq!(client.closed().await, Closed::Eof);
    broker.stop().await;
    assert_not_logged(&[&token]);
}

#[tokio::test]
async fn certificates_from_another_ca_or_expired_fail_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("remoteproxy test client CA");
    let broker = broker(&ca, &dir, SubjectField::CommonName, false).await;
    let other_ca = Ca::new("another CA");
    // Same subject as a good certificate, but issued by another CA.
    assert_tls_refused(&broker, connector(&broker, &other_ca.client(Some("alice"), Some("acme"), false)))
        .await;
    // Self-signed by the client.
    let own_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "alice");
    let self_signed = ClientIdentity {
        chain: vec![params.self_signed(&own_key).unwrap().der().clone()],
        key: own_key.serialize_der(),
    };
    assert_tls_refused(&broker, connector(&broker, &self_signed)).await;
    // Expired, from the right CA.
    assert_tls_refused(&broker, connector(&broker, &ca.client(Some("alice"), Some("acme"), true))).await;
    // The broker still serves good clients.
    let token = unique("after-refusals-token");
    assert_tunnel(&broker, &ca.client(Some("carol"), None, false), &token, "carol").await;
    broker.stop().await;
    assert_not_logged(&[&token]);
}

#[tokio::test]
async fn without_a_certificate_the_authenticator_refuses_in_optional_mode() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("remoteproxy test client CA");
    let broker = broker(&ca, &dir, SubjectField::CommonName, false).await;
    let token = unique("no-certificate-token");
    for kind in [Kind::Tcp, Kind::WebSocket, Kind::Unix] {
        // The harness's own client presents no certificate.
        let mut client = broker.connect(kind).await;
        assert_eq!(client.hello().await["status"], "success", "{kind:?}");
        assert_eq!(client.authenticate(&unique("uuid"), "nobody", &token, None).await, FAILED, "{kind:?}");
        expect_close(&mut client, "API call was not successfully.").await;
    }
    broker.stop().await;
    assert_not_logged(&[&token]);
}

#[tokio::test]
async fn required_mode_refuses_clients_without_a_certificate_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("remoteproxy test client CA");
    let broker = broker(&ca, &dir, SubjectField::CommonName, true).await;
    assert_tls_refused(&broker, broker.client_tls()).await;
    let token = unique("required-mode-token");
    assert_tunnel(&broker, &ca.client(Some("dave"), Some("acme"), false), &token, "dave").await;
    broker.stop().await;
    assert_not_logged(&[&token]);
}

/// A request as the broker builds it, with `certificates` from the handshake.
fn request(certificates: Option<Vec<Vec<u8>>>, token: &str) -> AuthRequest {
    AuthRequest {
        token: Token::new(token),
        facts: ConnectionFacts {
            peer: PeerAddress::Ip("192.0.2.7:50000".parse().unwrap()),
            transport: Transport::Tcp,
            uuid: "uuid".into(),
            name: "name".into(),
            nonce: String::new(),
            client_certificates: certificates,
        },
    }
}

#[tokio::test]
async fn the_authenticator_reads_cn_or_o_of_the_leaf_and_ignores_the_token() {
    capture_logs();
    let ca = Ca::new("remoteproxy test client CA");
    let by_cn =
        CertificateAuthenticator::new(CertificateSettings { user_name_from: SubjectField::CommonName });
    let by_o =
        CertificateAuthenticator::new(CertificateSettings { user_name_from: SubjectField::Organization });
    assert_eq!(by_cn.kind(), "certificate");
    assert!(by_cn.verdict_depends_on_facts());
    let alice = ca.client(Some("alice"), Some("acme"), false);
    // Leaf first, then the CA: only the leaf counts.
    let chain = vec![alice.leaf(), ca.certificate.as_ref().to_vec()];
    let token = unique("direct-token");
    for any_token in [token.as_str(), ""] {
        let verdict = by_cn.authenticate(&request(Some(chain.clone()), any_token)).await;
        assert_eq!(
            (verdict.error, verdict.user_name.as_deref()),
            (AuthenticationError::NoError, Some("alice"))
        );
        let verdict = by_o.authenticate(&request(Some(chain.clone()), any_token)).await;
        assert_eq!(
            (verdict.error, verdict.user_name.as_deref()),
            (AuthenticationError::NoError, Some("acme"))
        );
    }
    let failed = |verdict: remoteproxy::authenticators::Verdict| {
        assert_eq!(verdict.error, AuthenticationError::AuthenticationFailed);
        assert_eq!(verdict.user_name, None);
    };
    // No certificate, an empty chain, garbage DER.
    failed(by_cn.authenticate(&request(None, &token)).await);
    failed(by_cn.authenticate(&request(Some(vec![]), &token)).await);
    failed(by_cn.authenticate(&request(Some(vec![b"not a certificate".to_vec()]), &token)).await);
    // A subject without the chosen field.
    failed(
        by_cn.authenticate(&request(Some(vec![ca.client(None, Some("acme"), false).leaf()]), &token)).await,
    );
    failed(
        by_o.authenticate(&request(Some(vec![ca.client(Some("alice"), None, false).leaf()]), &token)).await,
    );
    // Expired since the handshake.
    failed(
        by_cn.authenticate(&request(Some(vec![ca.client(Some("alice"), None, true).leaf()]), &token)).await,
    );
    assert_not_logged(&[&token]);
}
