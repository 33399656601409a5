//! The JWT authenticator through a real broker: tokens signed with RS256, ES256 and EdDSA keys of
//! a JWKS file open tunnels; expired, not-yet-valid, foreign-key, wrong-audience, wrong-issuer,
//! `alg: none`, HS256-with-the-public-key and garbage tokens are refused; the JWKS file is
//! reloaded on demand. No token ever reaches a log line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use remoteproxy::authenticators::jwt::JwtAuthenticator;
use remoteproxy::authenticators::settings::{AuthenticationSettings, JwtSettings, KindSettings};
use remoteproxy::authenticators::{self, Authenticator};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

const FAILED: &str = "AuthenticationErrorAuthenticationFailed";
const NO_ERROR: &str = "AuthenticationErrorNoError";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

fn private_key(name: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(fixture(name)).unwrap()
}

/// A DER length.
fn der_length(length: usize) -> Vec<u8> {
    match length {
        0..0x80 => vec![length as u8],
        0x80..0x100 => vec![0x81, length as u8],
        _ => vec![0x82, (length >> 8) as u8, length as u8],
    }
}

/// A DER element.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_length(content.len()));
    out.extend_from_slice(content);
    out
}

/// Wraps a SEC1 P-256 private key (what `openssl ecparam -genkey` writes) in PKCS#8, the form
/// the signing library takes.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let algorithm = der(0x30, &[&ec_public_key[..], &prime256v1[..]].concat());
    let version = [0x02, 0x01, 0x00];
    der(0x30, &[&version[..], &algorithm, &der(0x04, sec1)].concat())
}

/// A signing key of the test fixtures, and its algorithm.
struct SigningKey {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl SigningKey {
    /// `rsa.key` (PKCS#1, RSA 2048).
    fn rsa() -> Self {
        let PrivateKeyDer::Pkcs1(der) = private_key("rsa.key") else { panic!("rsa.key is PKCS#1") };
        SigningKey { key: EncodingKey::from_rsa_der(der.secret_pkcs1_der()), algorithm: Algorithm::RS256 }
    }

    /// `ecdsa.key` (SEC1, P-256).
    fn ecdsa() -> Self {
        let PrivateKeyDer::Sec1(der) = private_key("ecdsa.key") else { panic!("ecdsa.key is SEC1") };
        SigningKey {
            key: EncodingKey::from_ec_der(&sec1_to_pkcs8(der.secret_sec1_der())),
            algorithm: Algorithm::ES256,
        }
    }

    /// `ed25519.key` (PKCS#8).
    fn ed25519() -> Self {
        let PrivateKeyDer::Pkcs8(der) = private_key("ed25519.key") else { panic!("ed25519.key is PKCS#8") };
        SigningKey { key: EncodingKey::from_ed_der(der.secret_pkcs8_der()), algorithm: Algorithm::EdDSA }
    }

    /// A fresh P-256 key that no JWKS file knows.
    fn stranger() -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        SigningKey { key: EncodingKey::from_ec_der(&pair.serialize_der()), algorithm: Algorithm::ES256 }
    }

    /// The public JWK (n/e, x/y or x, derived from the private key) with `kid`.
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&self.key, self.algorithm).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// base64url without padding.
fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let bits =
            chunk.iter().enumerate().fold(0u32, |acc, (i, byte)| acc | (u32::from(*byte) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((bits >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWKS file in a temporary directory.
struct Jwks {
    dir: tempfile::TempDir,
}

impl Jwks {
    fn new(keys: &[Value]) -> Self {
        let jwks = Jwks { dir: tempfile::tempdir().unwrap() };
        jwks.write(keys);
        jwks
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    fn write(&self, keys: &[Value]) {
        std::fs::write(self.path(), serde_json::to_string_pretty(&json!({"keys": keys})).unwrap()).unwrap();
    }

    fn settings(&self) -> JwtSettings {
        JwtSettings {
            jwks_file: self.path(),
            issuer: None,
            audience: None,
            user_claim: "sub".to_string(),
            leeway: Duration::from_secs(5),
        }
    }
}

async fn broker_with(authenticator: Arc<dyn Authenticator>) -> Broker {
    Broker::builder().authenticator(authenticator).start().await
}

/// A fresh unique string for user names, uuids and nonces.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Two clients authenticate with `token` and are joined; the broker logged `user` for both.
async fn assert_tunnel(broker: &Broker, token: &str, user: &str) {
    let nonce = unique("nonce");
    let (uuid_a, uuid_b) = (unique("a"), unique("b"));
    let mut first = broker.connect(Kind::Tcp).await;
    let mut second = broker.connect(Kind::WebSocket).await;
    assert_eq!(first.authenticate(&uuid_a, "first", token, Some(&nonce)).await, NO_ERROR);
    assert_eq!(second.authenticate(&uuid_b, "second", token, Some(&nonce)).await, NO_ERROR);
    assert_eq!(second.wait_tunnel().await, json!({"name": "first", "uuid": uuid_a}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": uuid_b}));
    first.send_bytes(b"ping").await;
    assert_eq!(second.recv_data(4).await, b"ping");
    for uuid in [&uuid_a, &uuid_b] {
        assert_eq!(logged_user(uuid).as_deref(), Some(user), "{uuid}");
    }
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

/// One client authenticates with `token`; returns the outcome, after checking a refusal closes.
async fn attempt(broker: &Broker, token: &str) -> String {
    let mut client = broker.connect(Kind::Tcp).await;
    let outcome = client.authenticate(&unique("uuid"), "device", token, Some(&unique("nonce"))).await;
    if outcome != NO_ERROR {
        assert_eq!(client.closed().await, Closed::Eof);
    }
    outcome
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 300, "iat": now()})
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_open_tunnels() {
    let (rsa, ecdsa, ed25519) = (SigningKey::rsa(), SigningKey::ecdsa(), SigningKey::ed25519());
    let jwks = Jwks::new(&[rsa.jwk("rsa-1"), ecdsa.jwk("ec-1"), ed25519.jwk("ed-1")]);
    let broker = broker_with(Arc::new(JwtAuthenticator::new(&jwks.settings()).unwrap())).await;
    let mut tokens = Vec::new();
    for (key, kid) in [(&rsa, "rsa-1"), (&ecdsa, "ec-1"), (&ed25519, "ed-1")] {
        // With the key's kid, and without a kid (every key of the algorithm is tried).
        for kid in [Some(kid), None] {
            let user = unique("alice");
            let token = key.sign(kid, &claims(&user));
            assert_tunnel(&broker, &token, &user).await;
            tokens.push(token);
        }
    }
    // A kid naming a key of another algorithm does not help a token.
    let token = rsa.sign(Some("ec-1"), &claims("mallory"));
    assert_eq!(attempt(&broker, &token).await, FAILED);
    tokens.push(token);
    broker.stop().await;
    assert_not_logged(&tokens.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn user_name_comes_from_the_configured_claim() {
    let ecdsa = SigningKey::ecdsa();
    let jwks = Jwks::new(&[ecdsa.jwk("ec-1")]);
    let settings = JwtSettings { user_claim: "preferred_username".to_string(), ..jwks.settings() };
    let broker = broker_with(Arc::new(JwtAuthenticator::new(&settings).unwrap())).await;
    let user = unique("bob");
    let good = ecdsa.sign(None, &json!({"sub": "ignored", "preferred_username": user, "exp": now() + 300}));
    assert_tunnel(&broker, &good, &user).await;
    // The claim missing, or not a string.
    let missing = ecdsa.sign(None, &claims("carol"));
    assert_eq!(attempt(&broker, &missing).await, FAILED);
    let number = ecdsa.sign(None, &json!({"preferred_username": 42, "exp": now() + 300}));
    assert_eq!(attempt(&broker, &number).await, FAILED);
    broker.stop().await;
    assert_not_logged(&[&good, &missing, &number]);
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let ed25519 = SigningKey::ed25519();
    let jwks = Jwks::new(&[ed25519.jwk("ed-1")]);
    let broker = broker_with(Arc::new(JwtAuthenticator::new(&jwks.settings()).unwrap())).await;
    let now = now();
    let expired = ed25519.sign(None, &json!({"sub": "a", "exp": now - 60}));
    let no_exp = ed25519.sign(None, &json!({"sub": "a"}));
    let not_yet = ed25519.sign(None, &json!({"sub": "a", "exp": now + 600, "nbf": now + 300}));
    for token in [&expired, &no_exp, &not_yet] {
        assert_eq!(attempt(&broker, token).await, FAILED);
    }
    // Within the 5 s leeway both ways.
    let just_expired = ed25519.sign(None, &json!({"sub": "a", "exp": now - 2}));
    assert_eq!(attempt(&broker, &just_expired).await, NO_ERROR);
    let almost_valid = ed25519.sign(None, &json!({"sub": "a", "exp": now + 600, "nbf": now + 2}));
    assert_eq!(attempt(&broker, &almost_valid).await, NO_ERROR);
    broker.stop().await;
    assert_not_logged(&[&expired, &no_exp, &not_yet, &just_expired, &almost_valid]);
}

#[tokio::test]
async fn tokens_signed_by_another_key_are_refused() {
    let (rsa, ecdsa) = (SigningKey::rsa(), SigningKey::ecdsa());
    let jwks = Jwks::new(&[rsa.jwk("rsa-1"), ecdsa.jwk("ec-1")]);
    let broker = broker_with(Arc::new(JwtAuthenticator::new(&jwks.settings()).unwrap())).await;
    let stranger = SigningKey::stranger();
    let tokens = [
        stranger.sign(None, &claims("mallory")),
        // Claiming the kid of a JWKS key.
        stranger.sign(Some("ec-1"), &claims("mallory")),
        stranger.sign(Some("unknown"), &claims("mallory")),
        // A good token with its signature swapped for another token's.
        {
            let good = ecdsa.sign(None, &claims("mallory"));
            let other = stranger.sign(None, &claims("mallory"));
            let signature = other.rsplit('.').next().unwrap();
            format!("{}.{signature}", good.rsplit_once('.').unwrap().0)
        },
    ];
    for token in &tokens {
        assert_eq!(attempt(&broker, token).await, FAILED);
    }
    // A good token still passes on the same broker.
    let good = ecdsa.sign(None, &claims("alice"));
    assert_eq!(attempt(&broker, &good).await, NO_ERROR);
    broker.stop().await;
    let mut secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    secrets.push(&good);
    assert_not_logged(&secrets);
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let rsa = SigningKey::rsa();
    let jwks = Jwks::new(&[rsa.jwk("rsa-1")]);
    let settings = JwtSettings {
        issuer: Some("https://id.example.org".to_string()),
        audience: Some("remoteproxy".to_string()),
        ..jwks.settings()
    };
    let broker = broker_with(Arc::new(JwtAuthenticator::new(&settings).unwrap())).await;
    let exp = now() + 300;
    let user = unique("alice");
    let good = rsa
        .sign(None, &json!({"sub": user, "exp": exp, "iss": "https://id.example.org", "aud": "remoteproxy"}));
    assert_tunnel(&broker, &good, &user).await;
    let refused = [
        json!({"sub": "a", "exp": exp, "iss": "https://id.example.org", "aud": "other-service"}),
        json!({"sub": "a", "exp": exp, "iss": "https://id.example.org", "aud": ["other", "more"]}),
        json!({"sub": "a", "exp": exp, "iss": "https://id.example.org"}),
        json!({"sub": "a", "exp": exp, "iss": "https://evil.example.org", "aud": "remoteproxy"}),
        json!({"sub": "a", "exp": exp, "aud": "remoteproxy"}),
    ]
    .map(|claims| rsa.sign(Some("rsa-1"), &claims));
    for token in &refused {
        assert_eq!(attempt(&broker, token).await, FAILED);
    }
    broker.stop().await;
    let mut secrets: Vec<&str> = refused.iter().map(String::as_str).collect();
    secrets.push(&good);
    assert_not_logged(&secrets);
}

#[tokio::test]
async fn alg_none_hmac_with_the_public_key_and_garbage_are_refused() {
    let (rsa, ed25519) = (SigningKey::rsa(), SigningKey::ed25519());
    let rsa_jwk = rsa.jwk("rsa-1");
    let ed_jwk = ed25519.jwk("ed-1");
    let jwks = Jwks::new(&[rsa_jwk.clone(), ed_jwk.clone()]);
    let broker = broker_with(Arc::new(JwtAuthenticator::new(&jwks.settings()).unwrap())).await;
    let body = b64url(claims("mallory").to_string().as_bytes());
    let mut tokens = Vec::new();
    // `alg: none`, with and without a kid, with an empty and with a made-up signature.
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "rsa-1"}),
        json!({"alg": "None"}),
        json!({"alg": "NONE", "kid": "ed-1"}),
    ] {
        let unsigned = format!("{}.{body}", b64url(header.to_string().as_bytes()));
        tokens.push(format!("{unsigned}."));
        tokens.push(format!("{unsigned}.{}", b64url(b"signature")));
    }
    // HS256 "signed" with what an attacker knows of the public keys: the JWKS entries, the raw
    // modulus, the public key file contents.
    let public_secrets: Vec<Vec<u8>> = vec![
        jwks_text(&jwks).into_bytes(),
        rsa_jwk.to_string().into_bytes(),
        rsa_jwk["n"].as_str().unwrap().as_bytes().to_vec(),
        ed_jwk["x"].as_str().unwrap().as_bytes().to_vec(),
        std::fs::read(fixture("rsa.crt")).unwrap(),
    ];
    for secret in &public_secrets {
        for (alg, kid) in
            [(Algorithm::HS256, Some("rsa-1")), (Algorithm::HS256, None), (Algorithm::HS512, Some("ed-1"))]
        {
            let mut header = Header::new(alg);
            header.kid = kid.map(str::to_string);
            tokens.push(
                jsonwebtoken::encode(&header, &claims("mallory"), &EncodingKey::from_secret(secret)).unwrap(),
            );
        }
    }
    // Not JWTs at all.
    for garbage in ["", "garbage", "a.b.c", "..", "eyJhbGciOiJSUzI1NiJ9..", "eyJhbGciOiJSUzI1NiJ9.e30.AAAA"] {
        tokens.push(garbage.to_string());
    }
    // A good token with a tampered body.
    let good = rsa.sign(None, &claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    tokens.push(format!("{}.{}.{}", parts[0], b64url(claims("root").to_string().as_bytes()), parts[2]));
    for token in &tokens {
        assert_eq!(attempt(&broker, token).await, FAILED, "{token}");
    }
    broker.stop().await;
    assert_not_logged(&tokens.iter().map(String::as_str).filter(|token| token.len() > 8).collect::<Vec<_>>());
}

fn jwks_text(jwks: &Jwks) -> String {
    std::fs::read_to_string(jwks.path()).unwrap()
}

#[tokio::test]
async fn reload_reads_the_jwks_file_again_and_keeps_the_keys_on_failure() {
    let (rsa, ecdsa) = (SigningKey::rsa(), SigningKey::ecdsa());
    let jwks = Jwks::new(&[rsa.jwk("key-1")]);
    let authenticator = Arc::new(JwtAuthenticator::new(&jwks.settings()).unwrap());
    let broker = broker_with(authenticator.clone()).await;
    let old = rsa.sign(Some("key-1"), &claims("old"));
    let new = ecdsa.sign(Some("key-2"), &claims("new"));
    assert_eq!(attempt(&broker, &old).await, NO_ERROR);
    assert_eq!(attempt(&broker, &new).await, FAILED);

    // Key rotation: the file now has only the new key.
    jwks.write(&[ecdsa.jwk("key-2")]);
    authenticator.reload().unwrap();
    let user = unique("rotated");
    let rotated = ecdsa.sign(Some("key-2"), &claims(&user));
    assert_tunnel(&broker, &rotated, &user).await;
    assert_eq!(attempt(&broker, &old).await, FAILED);

    // A broken file: reload reports it and the keys stay.
    std::fs::write(jwks.path(), "{\"keys\": [").unwrap();
    let message = authenticator.reload().unwrap_err();
    assert!(message.contains("[JwtAuthenticator] jwks"), "{message}");
    assert_eq!(attempt(&broker, &new).await, NO_ERROR);
    std::fs::remove_file(jwks.path()).unwrap();
    assert!(authenticator.reload().is_err());
    assert_eq!(attempt(&broker, &new).await, NO_ERROR);
    broker.stop().await;
    assert_not_logged(&[&old, &new, &rotated]);
}

#[tokio::test]
async fn the_factory_builds_it_and_reports_a_bad_jwks_file() {
    let ed25519 = SigningKey::ed25519();
    let jwks = Jwks::new(&[ed25519.jwk("ed-1")]);
    let settings = |jwt: JwtSettings| AuthenticationSettings {
        kind: KindSettings::Jwt(jwt),
        cache_ttl: None,
        throttle: None,
        request_timeout: Duration::from_secs(5),
    };
    let authenticator = authenticators::build(&settings(jwks.settings())).unwrap();
    assert_eq!(authenticator.kind(), "jwt");
    let broker = broker_with(authenticator).await;
    let user = unique("built");
    let token = ed25519.sign(None, &claims(&user));
    assert_tunnel(&broker, &token, &user).await;
    broker.stop().await;

    for contents in [None, Some("not json"), Some("{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}")] {
        match contents {
            Some(contents) => std::fs::write(jwks.path(), contents).unwrap(),
            None => std::fs::remove_file(jwks.path()).unwrap(),
        }
        let Err(error) = authenticators::build(&settings(jwks.settings())) else {
            panic!("{contents:?} was accepted")
        };
        assert_eq!((error.section, error.key), ("JwtAuthenticator", "jwks"), "{error}");
        assert!(error.to_string().contains(&jwks.path().display().to_string()), "{error}");
    }
    assert_not_logged(&[&token]);
}
