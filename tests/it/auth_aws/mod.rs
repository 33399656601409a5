//! The AWS Lambda authenticator through the real broker, against a local fake of AWS.
//!
//! The fake is one HTTP server that plays the EC2 instance metadata service (IMDSv2 with its
//! session token, or IMDSv1 only) and the Lambda `Invoke` API. It checks the AWS Signature V4 of
//! every Lambda call with its own implementation of the method of the AWS SigV4 test suite
//! (canonical request, string to sign, HMAC-SHA256 key derivation), and answers 403 to a bad
//! signature, so a wrongly signed request can never pass as a valid token. That implementation is
//! itself checked against vectors of the AWS test suite first.

#![cfg(feature = "aws-lambda")]

use crate::binary;
use crate::common::*;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use remoteproxy::authenticators::aws_lambda::{AwsEnvironment, AwsLambdaAuthenticator};
use remoteproxy::authenticators::settings::AwsLambdaSettings;
use remoteproxy::authenticators::{
    AuthRequest, Authenticator, ConnectionFacts, PeerAddress, Token, Transport,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod fake;
mod sigv4;

use fake::*;
use sigv4::*;

const REGION: &str = "eu-central-1";
const FUNCTION: &str = "system-services-authorizer-test-checkToken";
const ARN_FUNCTION: &str = "arn:aws:lambda:eu-central-1:123456789012:function:checkToken";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/Test-Proxy-Role";
const EMAIL: &str = "user@example.com";
const REFUSED: &str = "API call was not successfully.";

// ---------------------------------------------------------------------------------------------
// Helpers.

fn settings(fake_base: &str, credentials_url: &str, function: &str) -> AwsLambdaSettings {
    AwsLambdaSettings {
        region: REGION.into(),
        function: function.into(),
        credentials_url: credentials_url.into(),
        lambda_endpoint: Some(fake_base.into()),
    }
}

fn aws(settings: &AwsLambdaSettings, environment: AwsEnvironment) -> Arc<dyn Authenticator> {
    Arc::new(AwsLambdaAuthenticator::with_environment(settings, Duration::from_secs(2), environment).unwrap())
}

fn environment_of(keys: &Keys) -> AwsEnvironment {
    let keys = keys.clone();
    AwsEnvironment::from_lookup(move |name| match name {
        "AWS_ACCESS_KEY_ID" => Some(keys.access_key_id.clone()),
        "AWS_SECRET_ACCESS_KEY" => Some(keys.secret.clone()),
        "AWS_SESSION_TOKEN" => keys.session_token.clone(),
        _ => None,
    })
}

fn token(kind: &str) -> String {
    format!("{kind}-{}", random_hex(16))
}

fn request(token: &str) -> AuthRequest {
    AuthRequest {
        token: Token::new(token),
        facts: ConnectionFacts {
            peer: PeerAddress::Ip("192.0.2.1:40000".parse().unwrap()),
            transport: Transport::Tcp,
            uuid: "uuid".into(),
            name: "name".into(),
            nonce: String::new(),
            client_certificates: None,
        },
    }
}

/// One client authenticates with `token` through the broker; returns the outcome.
async fn outcome_via_broker(broker: &Broker, kind: Kind, token: &str) -> String {
    let mut client = broker.connect(kind).await;
    // A fresh nonce: a client accepted earlier may still be waiting for a partner.
    let nonce = random_hex(8);
    let outcome = client.authenticate("uuid-x", "client", token, Some(&nonce)).await;
    if outcome != "AuthenticationErrorNoError" {
        expect_close(&mut client, REFUSED).await;
    }
    outcome
}

/// A local port nobody listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn a_valid_token_forms_a_tunnel_with_imdsv2_credentials() {
    let fake = FakeAws::start(Imds::V2, ARN_FUNCTION, Duration::from_secs(3600)).await;
    let aws = aws(&settings(&fake.base(), &fake.credentials_url(), ARN_FUNCTION), AwsEnvironment::empty());
    let broker = Broker::builder().authenticator(aws.clone()).start().await;
    let token = token("valid");

    let (mut first, mut second) = tunnel(&broker, Kind::Tcp, Kind::WebSocket, &token).await;
    first.send_bytes(b"ping").await;
    assert_eq!(second.recv_data(4).await, b"ping");

    // The user name is the email of the answer.
    let verdict = aws.authenticate(&request(&token)).await;
    assert_eq!(verdict.error, Outcome::NoError);
    assert_eq!(verdict.user_name.as_deref(), Some(EMAIL));

    // One credentials fetch, with the IMDSv2 session token, served the three signed calls.
    assert_eq!((fake.token_puts(), fake.credential_gets()), (1, 1));
    let key = fake.issued()[0].0.clone();
    fake.assert_all_signed_by(&[&key, &key, &key]);
    assert!(fake.lambda_calls().iter().all(|c| c.token.as_deref() == Some(token.as_str())));
    fake.assert_secrets_not_logged(&[&token]);
}

#[tokio::test]
async fn a_refused_token_is_authentication_failed() {
    let fake = FakeAws::start(Imds::V2, FUNCTION, Duration::from_secs(3600)).await;
    let aws = aws(&settings(&fake.base(), &fake.credentials_url(), FUNCTION), AwsEnvironment::empty());
    let broker = Broker::builder().authenticator(aws).start().await;
    let token = token("invalid");
    for kind in [Kind::Tcp, Kind::WebSocket] {
        assert_eq!(
            outcome_via_broker(&broker, kind, &token).await,
            "AuthenticationErrorAuthenticationFailed"
        );
    }
    let key = fake.issued()[0].0.clone();
    fake.assert_all_signed_by(&[&key, &key]);
    fake.assert_secrets_not_logged(&[&token]);
}

#[tokio::test]
async fn service_failures_are_proxy_errors() {
    let fake = FakeAws::start(Imds::V2, FUNCTION, Duration::from_secs(3600)).await;
    let aws = aws(&settings(&fake.base(), &fake.credentials_url(), FUNCTION), AwsEnvironment::empty());
    let broker = Broker::builder().authenticator(aws).start().await;
    let tokens = [token("malformed"), token("error500"), token("function-error")];
    for token in &tokens {
        let outcome = outcome_via_broker(&broker, Kind::WebSocket, token).await;
        assert_eq!(outcome, "AuthenticationErrorProxyError", "{token}");
    }
    // The calls were correctly signed: the failures are the service's answers.
    let key = fake.issued()[0].0.clone();
    fake.assert_all_signed_by(&[&key, &key, &key]);
    fake.assert_secrets_not_logged(&tokens.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_unreachable_lambda_is_a_proxy_error_not_a_timeout() {
    let fake = FakeAws::start(Imds::V2, FUNCTION, Duration::from_secs(3600)).await;
    // Nothing listens here: the connection is refused.
    let refused = format!("http://{}", closed_port().await);
    // This one accepts connections and never answers: the request timeout (2 s) ends the call,
    // well before the broker's authenticationTimeout (8 s).
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let token = token("valid");
    for endpoint in [refused, silent_url] {
        let aws = aws(&settings(&endpoint, &fake.credentials_url(), FUNCTION), AwsEnvironment::empty());
        let broker = Broker::builder().authenticator(aws).start().await;
        let started = Instant::now();
        let outcome = outcome_via_broker(&broker, Kind::Tcp, &token).await;
        assert_ne!(outcome, "AuthenticationErrorTimeout", "{endpoint}: left to the broker's timeout");
        assert_eq!(outcome, "AuthenticationErrorProxyError", "{endpoint}");
        assert!(started.elapsed() < broker_authentication_timeout(), "{endpoint}");
    }
    hold.abort();
    assert!(fake.lambda_calls().is_empty());
    fake.assert_secrets_not_logged(&[&token]);
}

fn broker_authentication_timeout() -> Duration {
    remoteproxy::config::Config::default().timeouts.authentication
}

#[tokio::test]
async fn expiring_credentials_are_refreshed_before_they_expire() {
    // Keys valid for 8 s (whole seconds, so 7 to 8 s as the authenticator sees them) are fetched
    // again halfway through, i.e. after at most 4 s.
    let fake = FakeAws::start(Imds::V2, FUNCTION, Duration::from_secs(8)).await;
    let aws = aws(&settings(&fake.base(), &fake.credentials_url(), FUNCTION), AwsEnvironment::empty());
    let broker = Broker::builder().authenticator(aws).start().await;
    let token = token("valid");

    assert_eq!(outcome_via_broker(&broker, Kind::Tcp, &token).await, "AuthenticationErrorNoError");
    assert_eq!(fake.credential_gets(), 1);
    tokio::time::sleep(Duration::from_millis(4200)).await;
    assert_eq!(outcome_via_broker(&broker, Kind::Tcp, &token).await, "AuthenticationErrorNoError");
    assert_eq!(outcome_via_broker(&broker, Kind::Unix, &token).await, "AuthenticationErrorNoError");

    let issued = fake.issued();
    assert_eq!(issued.len(), 2, "one refresh, then the new keys are cached");
    assert_eq!(fake.credential_gets(), 2);
    let (first, second) = (&issued[0].0, &issued[1].0);
    assert_ne!(first, second);
    assert!(issued[1].1 < fake.expiration_of(first), "the refresh came before the old keys expired");
    // The new keys signed the later calls.
    fake.assert_all_signed_by(&[first, second, second]);
    fake.assert_secrets_not_logged(&[&token]);
}

#[tokio::test]
async fn imdsv1_is_the_fallback_when_there_is_no_session_token() {
    let fake = FakeAws::start(Imds::V1Only, FUNCTION, Duration::from_secs(3600)).await;
    let aws = aws(&settings(&fake.base(), &fake.credentials_url(), FUNCTION), AwsEnvironment::empty());
    let broker = Broker::builder().authenticator(aws).start().await;
    let token = token("valid");
    let (_first, _second) = tunnel(&broker, Kind::Unix, Kind::Tcp, &token).await;
    assert_eq!(fake.token_puts(), 1, "IMDSv2 was tried first");
    assert_eq!(fake.credential_gets(), 1);
    let key = fake.issued()[0].0.clone();
    fake.assert_all_signed_by(&[&key, &key]);
    fake.assert_secrets_not_logged(&[&token]);
}

#[tokio::test]
async fn environment_keys_come_first() {
    let fake = FakeAws::start(Imds::V2, FUNCTION, Duration::from_secs(3600)).await;
    for with_session_token in [true, false] {
        let keys = fake.static_keys(with_session_token);
        let aws = aws(&settings(&fake.base(), &fake.credentials_url(), FUNCTION), environment_of(&keys));
        let broker = Broker::builder().authenticator(aws).start().await;
        let token = token("valid");
        let (_first, _second) = tunnel(&broker, Kind::Tcp, Kind::Tcp, &token).await;
        fake.assert_secrets_not_logged(&[&token]);
    }
    assert_eq!((fake.token_puts(), fake.credential_gets()), (0, 0), "the metadata service was not asked");
    let calls = fake.lambda_calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.signed_by.is_ok()), "{calls:?}");
}

#[tokio::test]
async fn the_fake_rejects_a_wrong_signature() {
    // Keys the fake knows, but the authenticator is given a different secret: if the fake did not
    // really check signatures, this would pass.
    let fake = FakeAws::start(Imds::V2, FUNCTION, Duration::from_secs(3600)).await;
    let mut keys = fake.static_keys(true);
    keys.secret = format!("wrong-secret-{}", random_hex(8));
    let aws = aws(&settings(&fake.base(), &fake.credentials_url(), FUNCTION), environment_of(&keys));
    let broker = Broker::builder().authenticator(aws).start().await;
    let token = token("valid");
    assert_eq!(outcome_via_broker(&broker, Kind::Tcp, &token).await, "AuthenticationErrorProxyError");
    let calls = fake.lambda_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].signed_by, Err("signature mismatch".to_string()));
    assert_not_logged(&[&keys.secret]);
    fake.assert_secrets_not_logged(&[&token]);
}

#[tokio::test]
async fn no_credentials_anywhere_is_a_proxy_error() {
    let token = token("valid");
    // The metadata service has no role for this instance.
    let fake = FakeAws::start(Imds::NoRole, FUNCTION, Duration::from_secs(3600)).await;
    let aws_no_role =
        aws(&settings(&fake.base(), &fake.credentials_url(), FUNCTION), AwsEnvironment::empty());
    // There is no metadata service at all.
    let nowhere = format!("http://{}{CREDENTIALS_PATH}", closed_port().await);
    let aws_nowhere = aws(&settings(&fake.base(), &nowhere, FUNCTION), AwsEnvironment::empty());
    for aws in [aws_no_role, aws_nowhere] {
        let broker = Broker::builder().authenticator(aws).start().await;
        assert_eq!(outcome_via_broker(&broker, Kind::Tcp, &token).await, "AuthenticationErrorProxyError");
    }
    assert_eq!(fake.credential_gets(), 1);
    assert!(fake.lambda_calls().is_empty(), "nothing was sent unsigned");
    fake.assert_secrets_not_logged(&[&token]);
}

/// A log sink for [`no_secret_is_logged_by_any_crate_at_trace_level`].
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The harness captures trace lines of our own crates; this also takes every other crate on the
/// path (aws-sigv4, reqwest, hyper) at trace level. The runtime has one thread and the subscriber
/// is its default, so the lines of every task (the HTTP client's connections included) land here.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_is_logged_by_any_crate_at_trace_level() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let fake = FakeAws::start(Imds::V2, ARN_FUNCTION, Duration::from_secs(3600)).await;
    let from_imds =
        aws(&settings(&fake.base(), &fake.credentials_url(), ARN_FUNCTION), AwsEnvironment::empty());
    let env_keys = fake.static_keys(true);
    let from_env =
        aws(&settings(&fake.base(), &fake.credentials_url(), ARN_FUNCTION), environment_of(&env_keys));
    let mut wrong_keys = fake.static_keys(true);
    wrong_keys.secret = format!("wrong-secret-{}", random_hex(8));
    let badly_signed =
        aws(&settings(&fake.base(), &fake.credentials_url(), ARN_FUNCTION), environment_of(&wrong_keys));
    let unreachable = format!("http://{}", closed_port().await);
    let unreachable =
        aws(&settings(&unreachable, &fake.credentials_url(), ARN_FUNCTION), AwsEnvironment::empty());

    let mut tokens = Vec::new();
    for (aws, kind, expected) in [
        (&from_imds, "valid", Outcome::NoError),
        (&from_imds, "invalid", Outcome::AuthenticationFailed),
        (&from_imds, "malformed", Outcome::ProxyError),
        (&from_imds, "error500", Outcome::ProxyError),
        (&from_imds, "function-error", Outcome::ProxyError),
        (&from_env, "valid", Outcome::NoError),
        (&badly_signed, "valid", Outcome::ProxyError),
        (&unreachable, "valid", Outcome::ProxyError),
    ] {
        let token = token(kind);
        assert_eq!(within("a verdict", aws.authenticate(&request(&token))).await.error, expected, "{kind}");
        tokens.push(token);
    }
    drop(_default);

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("aws_sigv4"), "trace lines of aws-sigv4 were captured");
    assert!(logs.contains("AWS Lambda authenticator"), "our lines were captured");
    let mut secrets: Vec<String> = fake.state.secrets.lock().unwrap().clone();
    secrets.extend(tokens);
    secrets.push(wrong_keys.secret.clone());
    for secret in &secrets {
        if let Some(line) = logs.lines().find(|line| line.contains(secret.as_str())) {
            panic!("a secret reached the log: {line}");
        }
    }
}

/// A nymea-remoteproxy 1.8.4 file: an `[AWS]` section and no `[Authentication]`. The real
/// binary, started without `-m`, authenticates with AWS Lambda and says so in its start log.
#[tokio::test]
async fn a_nymea_1_8_4_file_starts_with_aws_lambda() {
    let fake = FakeAws::start(Imds::V2, FUNCTION, Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let reference = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nymea-remoteproxy-1.8.4.conf"),
    )
    .unwrap();
    assert!(!reference.contains("[Authentication]"));
    // The reference file's shape; the values point at this machine (ports 0, TLS off, the fake).
    let text = reference
        .replace("name=nymea-remoteproxy", "name=binary-test")
        .replace("monitorSocket=/tmp/nymea-remoteproxy-monitor.sock", &format!("monitorSocket={}", dir.path().join("monitor.sock").display()))
        .replace("region=eu-west-1", &format!("region={REGION}\nlambdaEndpoint={}", fake.base()))
        .replace("authorizerLambdaFunction=system-services-authorizer-dev-checkToken", &format!("authorizerLambdaFunction={FUNCTION}"))
        .replace(
            "awsCredentialsUrl=http://169.254.169.254/latest/meta-data/iam/security-credentials/EC2-Remote-Connection-Proxy-Role",
            &format!("awsCredentialsUrl={}", fake.credentials_url()),
        )
        .replace("[SSL]\nenabled=true", "[SSL]\nenabled=false")
        .replace("port=443", "port=0")
        .replace("port=80", "port=0")
        .replace("[WebSocketServerTunnelProxy]\nhost=127.0.0.1\nport=2212", "[WebSocketServerTunnelProxy]\nhost=")
        .replace("[TcpServerTunnelProxy]\nhost=127.0.0.1\nport=2213", "[TcpServerTunnelProxy]\nhost=")
        + &format!("\n[UnixSocketServer]\nunixSocketFileName={}\n", dir.path().join("proxy.socket").display());
    assert!(text.contains(&fake.base()) && text.contains("enabled=false"), "{text}");
    let config = dir.path().join("nymea-remoteproxy.conf");
    std::fs::write(&config, text).unwrap();
    let mut broker = binary::Proc::launch_file(dir, &config, &[]);
    broker.ready().await;
    broker.logged("authenticator: aws-lambda, because the file has an [AWS] section").await;
    let valid = token("valid");
    let mut client = broker.client(Kind::Tcp).await;
    assert_eq!(client.authenticate("uuid-a", "a", &valid, None).await, "AuthenticationErrorNoError");
    let mut client = broker.client(Kind::Tcp).await;
    assert_eq!(
        client.authenticate("uuid-b", "b", &token("invalid"), None).await,
        "AuthenticationErrorAuthenticationFailed"
    );
    broker.stop().await;
}
