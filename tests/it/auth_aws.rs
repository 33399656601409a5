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

const REGION: &str = "eu-central-1";
const FUNCTION: &str = "system-services-authorizer-test-checkToken";
const ARN_FUNCTION: &str = "arn:aws:lambda:eu-central-1:123456789012:function:checkToken";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/Test-Proxy-Role";
const EMAIL: &str = "user@example.com";
const REFUSED: &str = "API call was not successfully.";

// ---------------------------------------------------------------------------------------------
// AWS Signature V4, written from the specification (the method of the AWS SigV4 test suite).

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding of everything but the unreserved characters, upper-case hex (SigV4's
/// `UriEncode`).
fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The canonical URI of a path as it travels on the wire (already percent-encoded once): every
/// segment is encoded again, as SigV4 requires for every service but S3.
fn canonical_uri(wire_path: &str) -> String {
    if wire_path.is_empty() {
        return "/".into();
    }
    wire_path.split('/').map(uri_encode).collect::<Vec<_>>().join("/")
}

/// Header value as SigV4 canonicalises it: trimmed, runs of spaces collapsed to one.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A request as the verifier sees it.
struct SignedRequest<'a> {
    method: &'a str,
    /// Path as sent (percent-encoded).
    path: &'a str,
    /// Every header (any case, repeats allowed).
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl SignedRequest<'_> {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.values(name).first().copied()
    }
}

fn canonical_request(request: &SignedRequest, signed_headers: &[&str]) -> String {
    let mut text = format!("{}\n{}\n\n", request.method, canonical_uri(request.path));
    for name in signed_headers {
        let values: Vec<String> = request.values(name).iter().map(|v| canonical_value(v)).collect();
        text.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    text.push_str(&format!("\n{}\n{}", signed_headers.join(";"), sha256_hex(request.body)));
    text
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

fn signature(secret: &str, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()))
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..`.
struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not AWS4-HMAC-SHA256")?;
    let mut parts = HashMap::new();
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or("malformed Authorization")?;
        parts.insert(key, value);
    }
    let credential: Vec<&str> = parts.get("Credential").ok_or("no Credential")?.split('/').collect();
    let [access_key_id, date, region, service, terminator] = credential[..] else {
        return Err("malformed Credential".into());
    };
    if terminator != "aws4_request" {
        return Err("the scope does not end in aws4_request".into());
    }
    Ok(Authorization {
        access_key_id: access_key_id.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
        signed_headers: parts
            .get("SignedHeaders")
            .ok_or("no SignedHeaders")?
            .split(';')
            .map(String::from)
            .collect(),
        signature: parts.get("Signature").ok_or("no Signature")?.to_string(),
    })
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day count (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
}

/// `20150830T123600Z` as Unix seconds.
fn parse_amz_date(text: &str) -> Option<i64> {
    if text.len() != 16 || &text[8..9] != "T" || !text.ends_with('Z') {
        return None;
    }
    let n = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    Some(days * 86400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?)
}

/// A time as RFC 3339 in whole seconds (the metadata service's `Expiration` format).
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Checks the signature of `request` with the secret of the key it names; returns that key id.
fn verify_signature(
    request: &SignedRequest,
    secrets: &HashMap<String, String>,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<String, String> {
    let authorization = parse_authorization(request.header("authorization").ok_or("no Authorization")?)?;
    let secret = secrets.get(&authorization.access_key_id).ok_or("unknown access key")?;
    if authorization.region != region || authorization.service != service {
        return Err(format!(
            "scope {}/{} instead of {region}/{service}",
            authorization.region, authorization.service
        ));
    }
    let amz_date = request.header("x-amz-date").ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(&authorization.date) {
        return Err("the scope date is not the X-Amz-Date".into());
    }
    let signed_at = parse_amz_date(amz_date).ok_or("malformed X-Amz-Date")?;
    let now = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - signed_at).abs() > 300 {
        return Err("X-Amz-Date is more than 5 minutes off".into());
    }
    let signed: Vec<&str> = authorization.signed_headers.iter().map(String::as_str).collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != signed || signed.iter().any(|h| h.to_ascii_lowercase() != *h) {
        return Err("SignedHeaders are not sorted lower-case names".into());
    }
    let mut required = vec!["content-type", "host", "x-amz-date", "x-amz-invocation-type"];
    if request.header("x-amz-security-token").is_some() {
        required.push("x-amz-security-token");
    }
    for name in required {
        if !signed.contains(&name) {
            return Err(format!("{name} is not signed"));
        }
    }
    let creq = canonical_request(request, &signed);
    let scope = format!("{}/{region}/{service}/aws4_request", authorization.date);
    let sts = string_to_sign(amz_date, &scope, &creq);
    let expected = signature(secret, &authorization.date, region, service, &sts);
    if expected != authorization.signature {
        return Err("signature mismatch".into());
    }
    Ok(authorization.access_key_id)
}

// ---------------------------------------------------------------------------------------------
// The verifier against AWS SigV4 test-suite vectors (aws-signing-test-suite/v4, copied as is).

const TEST_SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn check_vector(request: SignedRequest, signed: &[&str], creq: &str, sts: &str, expected_signature: &str) {
    assert_eq!(canonical_request(&request, signed), creq);
    let computed_sts = string_to_sign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", creq);
    assert_eq!(computed_sts, sts);
    assert_eq!(signature(TEST_SUITE_SECRET, "20150830", "us-east-1", "service", sts), expected_signature);
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

#[test]
fn verifier_matches_vector_get_vanilla_with_session_token() {
    let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    let request = SignedRequest {
        method: "GET",
        path: "/",
        headers: headers(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Security-Token", token),
            ("X-Amz-Date", "20150830T123600Z"),
        ]),
        body: b"",
    };
    check_vector(
        request,
        &["host", "x-amz-date", "x-amz-security-token"],
        &format!(
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{token}\n\n\
             host;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
        "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
    );
}

#[test]
fn verifier_matches_vector_get_header_value_trim() {
    let request = SignedRequest {
        method: "GET",
        path: "/",
        headers: headers(&[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", " value1"),
            ("My-Header2", " \"a   b   c\""),
            ("X-Amz-Date", "20150830T123600Z"),
        ]),
        body: b"",
    };
    check_vector(
        request,
        &["host", "my-header1", "my-header2", "x-amz-date"],
        "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n\
         host;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    );
}

#[test]
fn verifier_matches_vector_post_x_www_form_urlencoded() {
    let sha = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
    let request = SignedRequest {
        method: "POST",
        path: "/",
        headers: headers(&[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.amazonaws.com"),
            ("Content-Length", "13"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("x-amz-content-sha256", sha),
        ]),
        body: b"Param1=value1",
    };
    check_vector(
        request,
        &["content-length", "content-type", "host", "x-amz-content-sha256", "x-amz-date"],
        &format!(
            "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n\
             x-amz-content-sha256:{sha}\nx-amz-date:20150830T123600Z\n\n\
             content-length;content-type;host;x-amz-content-sha256;x-amz-date\n{sha}"
        ),
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
         b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
        "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
    );
}

#[test]
fn verifier_matches_vectors_for_paths_and_dates() {
    // double-encode-path: the wire path is encoded again.
    assert_eq!(
        canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"),
        "/test/%40connections/JBDvjfGEIAMCERw%253D"
    );
    // get-unreserved.
    let unreserved = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    assert_eq!(canonical_uri(unreserved), unreserved);
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_440_938_160)), "2015-08-30T12:36:00Z");
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
}

// ---------------------------------------------------------------------------------------------
// The fake AWS.

/// How the fake plays the instance metadata service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Imds {
    /// IMDSv2: a session token is required for the credentials.
    V2,
    /// IMDSv1 only: the token PUT is answered 404, the credentials need no token.
    V1Only,
    /// No role: the credentials path is answered 404.
    NoRole,
}

/// One set of keys the fake knows.
#[derive(Clone)]
struct Keys {
    access_key_id: String,
    secret: String,
    session_token: Option<String>,
    expiration: Option<SystemTime>,
}

/// One Lambda call the fake received.
#[derive(Debug, Clone)]
struct LambdaCall {
    /// The key that signed it, when the signature was good.
    signed_by: Result<String, String>,
    token: Option<String>,
}

struct State {
    function: String,
    imds: Imds,
    /// Lifetime of the credentials the metadata service hands out.
    lifetime: Duration,
    keys: Mutex<HashMap<String, Keys>>,
    /// Keys handed out by the metadata service, in order, with the time of the fetch.
    issued: Mutex<Vec<(String, SystemTime)>>,
    imds_tokens: Mutex<Vec<String>>,
    token_puts: AtomicUsize,
    credential_gets: AtomicUsize,
    lambda_calls: Mutex<Vec<LambdaCall>>,
    /// Every secret the fake knows of (keys, tokens, signatures), for the log check.
    secrets: Mutex<Vec<String>>,
}

struct FakeAws {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_hex(bytes: usize) -> String {
    hex(&random_bytes(bytes))
}

type HttpResponse = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

impl FakeAws {
    async fn start(imds: Imds, function: &str, lifetime: Duration) -> FakeAws {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            function: function.to_string(),
            imds,
            lifetime,
            keys: Default::default(),
            issued: Default::default(),
            imds_tokens: Default::default(),
            token_puts: AtomicUsize::new(0),
            credential_gets: AtomicUsize::new(0),
            lambda_calls: Default::default(),
            secrets: Default::default(),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeAws { addr, state, task }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn credentials_url(&self) -> String {
        format!("{}{CREDENTIALS_PATH}", self.base())
    }

    /// Registers keys (as if from the environment) and returns them.
    fn static_keys(&self, with_session_token: bool) -> Keys {
        let keys = Keys {
            access_key_id: format!("AKIAENV{}", random_hex(6).to_uppercase()),
            secret: format!("env-secret-{}", random_hex(16)),
            session_token: with_session_token.then(|| format!("env-session-{}", random_hex(16))),
            expiration: None,
        };
        self.state.remember(&keys);
        keys
    }

    fn lambda_calls(&self) -> Vec<LambdaCall> {
        self.state.lambda_calls.lock().unwrap().clone()
    }

    fn issued(&self) -> Vec<(String, SystemTime)> {
        self.state.issued.lock().unwrap().clone()
    }

    fn expiration_of(&self, access_key_id: &str) -> SystemTime {
        self.state.keys.lock().unwrap()[access_key_id].expiration.unwrap()
    }

    fn token_puts(&self) -> usize {
        self.state.token_puts.load(Ordering::SeqCst)
    }

    fn credential_gets(&self) -> usize {
        self.state.credential_gets.load(Ordering::SeqCst)
    }

    /// Every Lambda call was correctly signed, by the keys named.
    fn assert_all_signed_by(&self, keys: &[&str]) {
        let calls = self.lambda_calls();
        assert_eq!(calls.len(), keys.len(), "{calls:?}");
        for (call, key) in calls.iter().zip(keys) {
            assert_eq!(call.signed_by.as_deref(), Ok(*key), "{calls:?}");
        }
    }

    /// No key, token or signature the fake saw, and none of `tokens`, is in any log line.
    fn assert_secrets_not_logged(&self, tokens: &[&str]) {
        let mut secrets: Vec<String> = self.state.secrets.lock().unwrap().clone();
        secrets.extend(tokens.iter().map(|t| t.to_string()));
        assert!(!secrets.is_empty());
        assert_not_logged(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

impl State {
    fn remember(&self, keys: &Keys) {
        let mut secrets = self.secrets.lock().unwrap();
        secrets.push(keys.secret.clone());
        secrets.extend(keys.session_token.clone());
        self.keys.lock().unwrap().insert(keys.access_key_id.clone(), keys.clone());
    }

    async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return respond(StatusCode::BAD_REQUEST, "unreadable body");
        };
        let path = parts.uri.path().to_string();
        match (&parts.method, path.as_str()) {
            (&Method::PUT, "/latest/api/token") => self.imds_token(&parts.headers),
            (&Method::GET, CREDENTIALS_PATH) => self.imds_credentials(&parts.headers),
            (&Method::POST, _) if path.starts_with("/2015-03-31/functions/") => {
                self.lambda(&parts.method, &path, parts.uri.query(), &parts.headers, &body)
            }
            _ => respond(StatusCode::NOT_FOUND, "no such resource"),
        }
    }

    fn imds_token(&self, headers: &HeaderMap) -> HttpResponse {
        self.token_puts.fetch_add(1, Ordering::SeqCst);
        if self.imds != Imds::V2 {
            return respond(StatusCode::NOT_FOUND, "");
        }
        let ttl = headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        if !matches!(ttl, Some(1..=21600)) {
            return respond(StatusCode::BAD_REQUEST, "missing or invalid token TTL");
        }
        let token = format!("imds-token-{}", random_hex(16));
        self.imds_tokens.lock().unwrap().push(token.clone());
        self.secrets.lock().unwrap().push(token.clone());
        respond(StatusCode::OK, token)
    }

    fn imds_credentials(&self, headers: &HeaderMap) -> HttpResponse {
        self.credential_gets.fetch_add(1, Ordering::SeqCst);
        match self.imds {
            Imds::NoRole => return respond(StatusCode::NOT_FOUND, "no role"),
            Imds::V2 => {
                let token = headers.get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok());
                let known = token.is_some_and(|t| self.imds_tokens.lock().unwrap().iter().any(|k| k == t));
                if !known {
                    return respond(StatusCode::UNAUTHORIZED, "IMDSv2 session token required");
                }
            }
            Imds::V1Only => {}
        }
        let now = SystemTime::now();
        let n = self.issued.lock().unwrap().len() + 1;
        let keys = Keys {
            access_key_id: format!("ASIAFAKE{n}{}", random_hex(4).to_uppercase()),
            secret: format!("imds-secret-{n}-{}", random_hex(16)),
            session_token: Some(format!("imds-session-{n}-{}", random_hex(24))),
            expiration: Some(now + self.lifetime),
        };
        self.remember(&keys);
        self.issued.lock().unwrap().push((keys.access_key_id.clone(), now));
        // Whole seconds, rounded down, as the real service writes it.
        let expiration = rfc3339(keys.expiration.unwrap());
        let expiration_secs = keys.expiration.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
        self.keys.lock().unwrap().get_mut(&keys.access_key_id).unwrap().expiration =
            Some(UNIX_EPOCH + Duration::from_secs(expiration_secs));
        let document = json!({
            "Code": "Success",
            "LastUpdated": rfc3339(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": keys.access_key_id,
            "SecretAccessKey": keys.secret,
            "Token": keys.session_token,
            "Expiration": expiration,
        });
        respond(StatusCode::OK, document.to_string())
    }

    fn lambda(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> HttpResponse {
        let expected_path = format!("/2015-03-31/functions/{}/invocations", uri_encode(&self.function));
        if path != expected_path || query.is_some() {
            return respond(StatusCode::NOT_FOUND, "Function not found");
        }
        let request = SignedRequest {
            method: method.as_str(),
            path,
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
            body,
        };
        if let Some(signature) = request.header("authorization").and_then(|a| a.rsplit("Signature=").next()) {
            self.secrets.lock().unwrap().push(signature.to_string());
        }
        let token = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_object().filter(|o| o.len() == 1)?.get("token")?.as_str().map(String::from));
        let secrets: HashMap<String, String> =
            self.keys.lock().unwrap().iter().map(|(id, k)| (id.clone(), k.secret.clone())).collect();
        let mut signed_by = verify_signature(&request, &secrets, REGION, "lambda", SystemTime::now());
        // The session token must be the one of the key, and the key must not have expired.
        if let Ok(key) = &signed_by {
            let keys = self.keys.lock().unwrap()[key].clone();
            if request.header("x-amz-security-token") != keys.session_token.as_deref() {
                signed_by = Err("wrong or missing x-amz-security-token".into());
            } else if keys.expiration.is_some_and(|e| SystemTime::now() >= e) {
                signed_by = Err("the security token included in the request is expired".into());
            }
        }
        self.lambda_calls
            .lock()
            .unwrap()
            .push(LambdaCall { signed_by: signed_by.clone(), token: token.clone() });
        if let Err(why) = signed_by {
            let mut response = respond(StatusCode::FORBIDDEN, json!({ "message": why }).to_string());
            response.headers_mut().insert("x-amzn-errortype", "InvalidSignatureException".parse().unwrap());
            return response;
        }
        if request.header("x-amz-invocation-type") != Some("RequestResponse")
            || request.header("content-type") != Some("application/json")
        {
            return respond(StatusCode::BAD_REQUEST, "wrong invocation type or content type");
        }
        let Some(token) = token else {
            return respond(StatusCode::BAD_REQUEST, "the payload is not {\"token\": ...}");
        };
        // The answer depends on how the token starts.
        if token.starts_with("valid") {
            let answer = json!({
                "isValid": true,
                "verifiedData": {
                    "vendorId": "vendor",
                    "userPoolId": "pool",
                    "verifiedParsedToken": {"email": EMAIL, "cognito:username": "user-1"},
                },
            });
            respond(StatusCode::OK, answer.to_string())
        } else if token.starts_with("invalid") {
            respond(StatusCode::OK, json!({"isValid": false}).to_string())
        } else if token.starts_with("malformed") {
            respond(StatusCode::OK, format!("{{\"isValid\": tru {token}"))
        } else if token.starts_with("error500") {
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{{\"message\":\"internal error for {token}\"}}"),
            )
        } else if token.starts_with("function-error") {
            let mut response = respond(
                StatusCode::OK,
                json!({"errorMessage": format!("cannot check {token}"), "errorType": "Error"}).to_string(),
            );
            response.headers_mut().insert("x-amz-function-error", "Unhandled".parse().unwrap());
            response
        } else {
            respond(StatusCode::OK, json!({"isValid": false}).to_string())
        }
    }
}

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
