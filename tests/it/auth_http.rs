//! The `http` authenticator through the broker, against a fake endpoint on a real socket.
//!
//! The fake answers according to the token's first `-`-separated word (`valid`, `refused`,
//! `unauthorized`, ...), records every request (headers and JSON body) and counts the TCP
//! connections it accepted, so pooling is visible.

use crate::binary;
use crate::common::*;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use remoteproxy::authenticators::settings::{
    AuthenticationSettings, HttpSettings, KindSettings, ThrottleSettings,
};
use remoteproxy::authenticators::{self, Secret};
use serde_json::{Value, json};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// Secrets: every token ends in TOKEN_MARK, so no token may ever be logged.

const TOKEN_MARK: &str = "tok-5f2b8c31d7e4";
const AUTHORIZATION: &str = "Bearer authz-9d3e1f0b7a6c";

/// A token the fake answers as `behaviour` (`valid`, `nouser`, `refused`, `unauthorized`,
/// `forbidden`, `servererror`, `garbage`, `wrongtype`, `slow`).
fn token(behaviour: &str) -> String {
    format!("{behaviour}-{TOKEN_MARK}")
}

const BEHAVIOURS: [&str; 9] = [
    "valid",
    "nouser",
    "refused",
    "unauthorized",
    "forbidden",
    "servererror",
    "garbage",
    "wrongtype",
    "slow",
];

/// Fails if any token or the Authorization value reached a log line of this test process.
fn assert_no_secret_logged() {
    let tokens: Vec<String> = BEHAVIOURS.iter().map(|b| token(b)).collect();
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.extend([TOKEN_MARK, AUTHORIZATION, "authz-9d3e1f0b7a6c"]);
    assert_not_logged(&secrets);
}

// ---------------------------------------------------------------------------------------------
// The fake endpoint.

/// One request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Value,
}

struct Fake {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    /// A plain HTTP fake.
    async fn start() -> Fake {
        Self::start_with(None).await
    }

    /// A fake on 127.0.0.1:0, with TLS when an acceptor is given.
    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (connections, requests) = (connections.clone(), requests.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else { return };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let requests = requests.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| answer(request, requests.clone()));
                        let http = hyper::server::conn::http1::Builder::new();
                        match tls {
                            Some(acceptor) => {
                                // A client that does not trust the certificate aborts here.
                                let Ok(stream) = acceptor.accept(tcp).await else { return };
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                            None => {
                                let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                            }
                        }
                    });
                }
            })
        };
        Fake { addr, connections, requests, task }
    }

    fn url(&self) -> String {
        format!("http://{}/auth/check", self.addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Records the request and answers according to the token's first word.
async fn answer(
    request: Request<Incoming>,
    requests: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body: body.clone(),
    };
    requests.lock().unwrap().push(seen);
    let token = body["token"].as_str().unwrap_or_default().to_string();
    let behaviour = token.split('-').next().unwrap_or_default();
    let (status, text) = match behaviour {
        "valid" => (StatusCode::OK, json!({"valid": true, "userName": "alice"}).to_string()),
        "nouser" => (StatusCode::OK, json!({"valid": true, "extra": [1, 2]}).to_string()),
        "refused" => (StatusCode::OK, json!({"valid": false}).to_string()),
        "unauthorized" => (StatusCode::UNAUTHORIZED, "no".to_string()),
        "forbidden" => (StatusCode::FORBIDDEN, String::new()),
        "servererror" => (StatusCode::INTERNAL_SERVER_ERROR, json!({"valid": true}).to_string()),
        "garbage" => (StatusCode::OK, format!("<html>{token}</html>")),
        // The answer echoes the token where a bool belongs: it must not reach the log.
        "wrongtype" => (StatusCode::CREATED, json!({"valid": token, "userName": "x"}).to_string()),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, json!({"valid": true, "userName": "late"}).to_string())
        }
        _ => (StatusCode::BAD_REQUEST, String::new()),
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap();
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

fn settings(url: String, authorization: Option<&str>, ca_file: Option<PathBuf>) -> AuthenticationSettings {
    AuthenticationSettings {
        kind: KindSettings::Http(HttpSettings {
            url,
            authorization: authorization.map(Secret::new),
            ca_file,
        }),
        cache_ttl: None,
        throttle: None,
        request_timeout: REQUEST_TIMEOUT,
    }
}

/// A broker (TLS on, 4 s authentication timeout) using the http authenticator of `settings`.
async fn start_broker(settings: &AuthenticationSettings) -> Broker {
    let authenticator = authenticators::build(settings).expect("valid http settings");
    Broker::builder()
        .authenticator(authenticator)
        .config(|c| c.timeouts.authentication = Duration::from_secs(4))
        .start()
        .await
}

/// One client that connects and authenticates with `token`; returns the outcome and how long
/// both took.
async fn authenticate_once(broker: &Broker, kind: Kind, token: &str) -> (String, Duration) {
    let start = Instant::now();
    let mut client = broker.connect(kind).await;
    let outcome = client.authenticate("uuid-x", "x", token, Some("nonce-x")).await;
    (outcome, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn a_valid_token_forms_a_tunnel_and_the_endpoint_sees_every_field() {
    let fake = Fake::start().await;
    let broker = start_broker(&settings(fake.url(), Some(AUTHORIZATION), None)).await;

    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, &token("valid")).await;
    a.send_bytes(b"ping").await;
    assert_eq!(b.recv_data(4).await, b"ping");
    b.send_bytes(b"pong").await;
    assert_eq!(a.recv_data(4).await, b"pong");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let nonce = requests[0].body["nonce"].as_str().unwrap().to_string();
    assert!(!nonce.is_empty());
    for (seen, uuid, name, transport) in
        [(&requests[0], "uuid-a", "first", "TCP"), (&requests[1], "uuid-b", "second", "WebSocket")]
    {
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/auth/check");
        assert_eq!(seen.content_type.as_deref(), Some("application/json"));
        assert_eq!(seen.authorization.as_deref(), Some(AUTHORIZATION));
        assert_eq!(
            seen.body,
            json!({
                "token": token("valid"),
                "uuid": uuid,
                "name": name,
                "nonce": nonce,
                "peerAddress": "127.0.0.1",
                "transport": transport,
            })
        );
    }

    // The unix socket has no address; no `authorization` configured means no header.
    let fake2 = Fake::start().await;
    let broker2 = broker_without_throttle(&fake2).await;
    let mut client = broker2.connect(Kind::Unix).await;
    assert_eq!(
        client.authenticate("uuid-u", "unix client", &token("nouser"), None).await,
        "AuthenticationErrorNoError"
    );
    let seen = &fake2.requests()[0];
    assert_eq!(seen.authorization, None);
    assert_eq!(
        seen.body,
        json!({"token": token("nouser"), "uuid": "uuid-u", "name": "unix client", "nonce": "",
               "peerAddress": "", "transport": "unix"})
    );
    broker2.stop().await;
    broker.stop().await;
    assert_no_secret_logged();
}

async fn broker_without_throttle(fake: &Fake) -> Broker {
    start_broker(&settings(fake.url(), None, None)).await
}

#[tokio::test]
async fn refusals_are_authentication_failed_and_close_the_connection() {
    let fake = Fake::start().await;
    let broker = start_broker(&settings(fake.url(), Some(AUTHORIZATION), None)).await;
    for behaviour in ["refused", "unauthorized", "forbidden"] {
        for kind in [Kind::Tcp, Kind::WebSocket] {
            let mut client = broker.connect(kind).await;
            let outcome = client.authenticate("uuid-r", "r", &token(behaviour), None).await;
            assert_eq!(outcome, "AuthenticationErrorAuthenticationFailed", "{behaviour} over {kind:?}");
            expect_close(&mut client, "API call was not successfully.").await;
        }
    }
    assert_eq!(fake.requests().len(), 6);
    broker.stop().await;
    assert_no_secret_logged();
}

#[tokio::test]
async fn endpoint_failures_are_proxy_errors() {
    let fake = Fake::start().await;
    let broker = start_broker(&settings(fake.url(), None, None)).await;
    for behaviour in ["servererror", "garbage", "wrongtype"] {
        let (outcome, _) = authenticate_once(&broker, Kind::Tcp, &token(behaviour)).await;
        assert_eq!(outcome, "AuthenticationErrorProxyError", "{behaviour}");
    }
    broker.stop().await;

    // Nothing listens: refused at once, a ProxyError well before any timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/auth", closed.local_addr().unwrap());
    drop(closed);
    let broker = start_broker(&settings(url, Some(AUTHORIZATION), None)).await;
    let (outcome, took) = authenticate_once(&broker, Kind::Tcp, &token("valid")).await;
    assert_eq!(outcome, "AuthenticationErrorProxyError");
    assert!(took < REQUEST_TIMEOUT, "an unreachable endpoint answered after {took:?}");
    broker.stop().await;
    assert_no_secret_logged();
}

#[tokio::test]
async fn a_slow_endpoint_is_a_proxy_error_after_the_request_timeout_not_a_timeout() {
    let fake = Fake::start().await;
    let broker = start_broker(&settings(fake.url(), None, None)).await;
    let (outcome, took) = authenticate_once(&broker, Kind::Tcp, &token("slow")).await;
    assert_eq!(outcome, "AuthenticationErrorProxyError");
    assert!(took >= REQUEST_TIMEOUT, "answered after {took:?}, before the request timeout");
    assert!(
        took < Duration::from_secs(4),
        "answered after {took:?}: the broker's timeout, not the request's"
    );
    broker.stop().await;
    assert_no_secret_logged();
}

#[tokio::test]
async fn authentications_reuse_one_pooled_connection() {
    let fake = Fake::start().await;
    let broker = start_broker(&settings(fake.url(), Some(AUTHORIZATION), None)).await;
    let _tunnel1 = tunnel(&broker, Kind::Tcp, Kind::Tcp, &token("valid")).await;
    let _tunnel2 = tunnel(&broker, Kind::WebSocket, Kind::Unix, &token("valid")).await;
    for behaviour in ["refused", "unauthorized", "forbidden", "valid"] {
        authenticate_once(&broker, Kind::Tcp, &token(behaviour)).await;
    }
    assert_eq!(fake.requests().len(), 8);
    assert_eq!(fake.connections(), 1, "every request after the first reuses the pooled connection");
    broker.stop().await;
    assert_no_secret_logged();
}

/// A CA and a server certificate for 127.0.0.1 signed by it; returns the server's TLS acceptor
/// and the CA's PEM.
fn tls_fake_material() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "auth_http test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "auth endpoint");
    let server_cert = params.signed_by(&server_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

#[tokio::test]
async fn https_with_the_configured_ca_works_and_fails_without_it() {
    let (acceptor, ca_pem) = tls_fake_material();
    let fake = Fake::start_with(Some(acceptor)).await;
    let url = format!("https://{}/auth/check", fake.addr);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();

    let broker = start_broker(&settings(url.clone(), Some(AUTHORIZATION), Some(ca_file))).await;
    let (mut a, mut b) = tunnel(&broker, Kind::Tcp, Kind::Tcp, &token("valid")).await;
    a.send_bytes(b"over https").await;
    assert_eq!(b.recv_data(10).await, b"over https");
    let (outcome, _) = authenticate_once(&broker, Kind::Tcp, &token("refused")).await;
    assert_eq!(outcome, "AuthenticationErrorAuthenticationFailed");
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.requests()[0].authorization.as_deref(), Some(AUTHORIZATION));
    assert_eq!(fake.connections(), 1, "the TLS connection is pooled too");
    broker.stop().await;

    // The system roots do not know the test CA: the handshake fails, the endpoint never sees a
    // request.
    let broker = start_broker(&settings(url, Some(AUTHORIZATION), None)).await;
    let (outcome, _) = authenticate_once(&broker, Kind::Tcp, &token("valid")).await;
    assert_eq!(outcome, "AuthenticationErrorProxyError");
    assert_eq!(fake.requests().len(), 3);
    broker.stop().await;
    assert_no_secret_logged();
}

#[tokio::test]
async fn the_cache_answers_a_repeated_request_without_asking_the_endpoint() {
    let fake = Fake::start().await;
    let mut with_cache = settings(fake.url(), None, None);
    with_cache.cache_ttl = Some(Duration::from_secs(60));
    let broker = start_broker(&with_cache).await;
    // Unix clients have the same peer every time, so the facts (and the cache key) repeat.
    for _ in 0..3 {
        let (outcome, _) = authenticate_once(&broker, Kind::Unix, &token("refused")).await;
        assert_eq!(outcome, "AuthenticationErrorAuthenticationFailed");
    }
    assert_eq!(fake.requests().len(), 1, "the refusal was cached");
    // The endpoint sees the facts, so other facts are asked again.
    let mut client = broker.connect(Kind::Unix).await;
    assert_eq!(
        client.authenticate("uuid-x", "x", &token("refused"), Some("another nonce")).await,
        "AuthenticationErrorAuthenticationFailed"
    );
    assert_eq!(fake.requests().len(), 2);
    broker.stop().await;
    assert_no_secret_logged();
}

/// The same over TCP, where every connection has its own source port.
#[tokio::test]
async fn the_cache_also_serves_tcp_clients_from_one_address() {
    let fake = Fake::start().await;
    let mut with_cache = settings(fake.url(), None, None);
    with_cache.cache_ttl = Some(Duration::from_secs(60));
    let broker = start_broker(&with_cache).await;
    for _ in 0..3 {
        let (outcome, _) = authenticate_once(&broker, Kind::Tcp, &token("refused")).await;
        assert_eq!(outcome, "AuthenticationErrorAuthenticationFailed");
    }
    assert_eq!(fake.requests().len(), 1, "the refusal was cached");
    broker.stop().await;
    assert_no_secret_logged();
}

#[tokio::test]
async fn the_throttle_slows_repeated_failures() {
    const BASE: Duration = Duration::from_millis(200);
    let fake = Fake::start().await;
    let mut throttled = settings(fake.url(), None, None);
    throttled.throttle = Some(ThrottleSettings { base: BASE, max: Duration::from_secs(1) });
    let broker = start_broker(&throttled).await;
    let mut took = Vec::new();
    for _ in 0..3 {
        let (outcome, elapsed) = authenticate_once(&broker, Kind::Tcp, &token("unauthorized")).await;
        assert_eq!(outcome, "AuthenticationErrorAuthenticationFailed");
        took.push(elapsed);
    }
    // The 3rd attempt is held until 2 × BASE after the 2nd failure, which was recorded before
    // the 2nd answer (and so before the 3rd client started): at least BASE, with room to spare.
    assert!(took[2] >= BASE, "the 3rd failure was not slowed: {took:?}");
    assert_eq!(fake.requests().len(), 3, "a throttled attempt is still checked");
    broker.stop().await;
    assert_no_secret_logged();
}

/// The INI keys of `[HttpAuthenticator]` reach the authenticator in the real binary, and its
/// verbose log shows neither the token nor the Authorization value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_uses_the_configured_endpoint_ca_and_authorization() {
    let (acceptor, ca_pem) = tls_fake_material();
    let fake = Fake::start_with(Some(acceptor)).await;
    let port = fake.addr.port();
    let mut proc = binary::Proc::spawn(|dir| {
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        format!(
            "[Authentication]\ntype=http\nthrottle=false\n\
             [HttpAuthenticator]\nurl=https://127.0.0.1:{port}/auth/check\nauthorization={AUTHORIZATION}\n\
             caCertificate={}\n",
            dir.join("ca.pem").display()
        )
    });
    proc.ready().await;
    let mut first = proc.client(Kind::Tcp).await;
    let mut second = proc.client(Kind::Unix).await;
    assert_eq!(
        first.authenticate("uuid-a", "a", &token("valid"), Some("n")).await,
        "AuthenticationErrorNoError"
    );
    assert_eq!(
        second.authenticate("uuid-b", "b", &token("valid"), Some("n")).await,
        "AuthenticationErrorNoError"
    );
    second.wait_tunnel().await;
    first.wait_tunnel().await;
    let mut refused = proc.client(Kind::Tcp).await;
    assert_eq!(
        refused.authenticate("uuid-c", "c", &token("garbage"), None).await,
        "AuthenticationErrorProxyError"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.authorization.as_deref() == Some(AUTHORIZATION)), "{requests:?}");
    assert_eq!(requests[1].body["transport"], "unix");
    drop((first, second, refused));
    let log = proc.stop().await;
    binary::assert_not_in_log(&log, &[TOKEN_MARK, AUTHORIZATION, "authz-9d3e1f0b7a6c"]);
    assert!(log.contains("http authenticator"), "the verbose log shows the authenticator at work:\n{log}");
}
