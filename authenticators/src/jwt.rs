//! The JWT authenticator: the token is a JSON Web Token signed by one of the keys of a JWKS file.
//!
//! What is checked, in order:
//! * the header names one of the accepted algorithms, **RS256**, **ES256** or **EdDSA** (Ed25519).
//!   `none` and the HMAC algorithms are never accepted: a verifier that took `HS256` would let an
//!   attacker "sign" tokens with the public key as the HMAC secret;
//! * the verification key: the JWKS key with the token's `kid` when the token names one (and only
//!   that key), otherwise every key of the file whose algorithm fits;
//! * the signature;
//! * `exp` (required) and `nbf` (when present), with the configured leeway;
//! * `iss` and `aud` when `[JwtAuthenticator] issuer` / `audience` are configured (the claim is
//!   then required);
//! * the user name: the configured claim (default `sub`), a non-empty string.
//!
//! Everything the client got wrong (a malformed token, a bad signature, an expired token, a
//! missing claim) is `AuthenticationFailed`. The token never reaches a log line, not even in
//! part: refusals are logged with a fixed reason only.
//!
//! The JWKS file is read at start (a broken file is a configuration error) and again on
//! [`Authenticator::reload`] (SIGHUP), which keeps the old keys when the new file is unusable.
//! Keys that cannot be used (symmetric `oct` keys, other curves or algorithms, encryption keys,
//! RSA keys under 2048 bits, malformed points) are skipped with a warning; a file without any
//! usable key is an error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use crate::settings::JwtSettings;
use crate::{AuthRequest, AuthenticationError, Authenticator, BuildError, Verdict};

/// The INI section, for error messages.
const SECTION: &str = "JwtAuthenticator";

/// The only algorithms a token may use.
const ACCEPTED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// One usable key of the JWKS file.
struct VerificationKey {
    /// The key's `kid`, when it has one.
    kid: Option<String>,
    /// The one algorithm this key verifies.
    algorithm: Algorithm,
    /// The key itself.
    key: DecodingKey,
    /// Position in the file's `keys` array, for logs (the `kid` could be chosen by a client).
    index: usize,
}

/// Verifies JWTs against the keys of a JWKS file.
pub struct JwtAuthenticator {
    jwks_file: PathBuf,
    keys: RwLock<Arc<Vec<VerificationKey>>>,
    /// One validation per accepted algorithm, in the order of [`ACCEPTED`].
    validations: [Validation; 3],
    user_claim: String,
}

impl JwtAuthenticator {
    /// Reads the JWKS file and prepares the checks. A file that cannot be read or parsed, or that
    /// has no usable key, is an error naming `[JwtAuthenticator] jwks`.
    pub fn new(settings: &JwtSettings) -> Result<Self, BuildError> {
        let keys =
            load_keys(&settings.jwks_file).map_err(|problem| BuildError::new(SECTION, "jwks", problem))?;
        info!(
            file = %settings.jwks_file.display(),
            keys = keys.len(),
            "JWT authenticator: verification keys loaded"
        );
        let validations = ACCEPTED.map(|algorithm| validation(settings, algorithm));
        Ok(JwtAuthenticator {
            jwks_file: settings.jwks_file.clone(),
            keys: RwLock::new(Arc::new(keys)),
            validations,
            user_claim: settings.user_claim.clone(),
        })
    }

    fn current_keys(&self) -> Arc<Vec<VerificationKey>> {
        // A poisoned lock only means a panic while swapping an Arc: the value is still whole.
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The verdict for a raw token; `Err` carries the reason for the debug log (never any part
    /// of the token).
    fn check(&self, token: &str) -> Result<String, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| reason(error.kind()))?;
        let Some(slot) = ACCEPTED.iter().position(|accepted| *accepted == header.alg) else {
            return Err("the token's algorithm is not accepted (only RS256, ES256 and EdDSA are)");
        };
        let validation = &self.validations[slot];
        let keys = self.current_keys();
        let mut candidates = keys
            .iter()
            .filter(|key| key.algorithm == header.alg)
            .filter(|key| match &header.kid {
                Some(kid) => key.kid.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(if header.kid.is_some() {
                "no key of the JWKS file has the token's kid and algorithm"
            } else {
                "no key of the JWKS file fits the token's algorithm"
            });
        }
        let mut last = "invalid signature";
        for candidate in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &candidate.key, validation) {
                Ok(data) => {
                    debug!(key = candidate.index, "JWT signature verified");
                    return match data.claims.get(&self.user_claim) {
                        Some(Value::String(user)) if !user.is_empty() => Ok(user.clone()),
                        Some(_) => Err("the user name claim is not a non-empty string"),
                        None => Err("the user name claim is missing"),
                    };
                }
                // Another key may have signed it.
                Err(error) if matches!(error.kind(), ErrorKind::InvalidSignature) => {
                    last = reason(error.kind())
                }
                // The signature was good (claims are checked after it) or the token is broken:
                // no other key changes that.
                Err(error) => return Err(reason(error.kind())),
            }
        }
        Err(last)
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    fn kind(&self) -> &'static str {
        "jwt"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        // Verification is a few hundred microseconds at most (one RSA-2048 public operation per
        // candidate key): done inline.
        match self.check(request.token.expose_secret()) {
            Ok(user) => Verdict::accept(Some(user)),
            Err(why) => {
                debug!(reason = why, "JWT refused");
                Verdict::refuse(AuthenticationError::AuthenticationFailed)
            }
        }
    }

    fn reload(&self) -> Result<(), String> {
        match load_keys(&self.jwks_file) {
            Ok(keys) => {
                info!(
                    file = %self.jwks_file.display(),
                    keys = keys.len(),
                    "JWT authenticator: verification keys reloaded"
                );
                *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(keys);
                Ok(())
            }
            Err(problem) => {
                let message = format!("[{SECTION}] jwks: {problem}; the previous keys stay in use");
                warn!("{message}");
                Err(message)
            }
        }
    }
}

/// The checks for tokens of `algorithm`.
fn validation(settings: &JwtSettings, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = settings.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    match &settings.issuer {
        Some(issuer) => {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        None => validation.iss = None,
    }
    match &settings.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            required.push("aud");
        }
        // Not configured: `aud` is not looked at (the library would otherwise refuse every token
        // that has one).
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// A fixed description of a refusal; the library's own messages can quote token content.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "invalid signature",
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, iss or aud) is missing",
        ErrorKind::InvalidClaimFormat(_) => "a time claim is not a number",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            "the token's algorithm is not accepted"
        }
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            "the key does not fit the token"
        }
        _ => "malformed token",
    }
}

/// Reads the usable keys of a JWKS file.
fn load_keys(path: &Path) -> Result<Vec<VerificationKey>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read \"{}\": {error}", path.display()))?;
    // serde_json's syntax errors give a position, not content.
    let document: Value = serde_json::from_str(&text)
        .map_err(|error| format!("\"{}\" is not valid JSON: {error}", path.display()))?;
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err(format!("\"{}\" is not a JWKS file (no \"keys\" array)", path.display()));
    };
    let mut keys = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.get("d").is_some() {
            warn!(
                file = %path.display(),
                key = index,
                "JWKS key contains private key material (\"d\"); only its public part is used, \
                 and a verification file should not hold private keys"
            );
        }
        match usable_key(entry) {
            Ok((kid, algorithm, key)) => keys.push(VerificationKey { kid, algorithm, key, index }),
            Err(problem) => warn!(file = %path.display(), key = index, "JWKS key skipped: {problem}"),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "\"{}\" has no usable key (RSA keys for RS256, EC P-256 keys for ES256 and OKP \
             Ed25519 keys for EdDSA are supported)",
            path.display()
        ));
    }
    Ok(keys)
}

/// One JWKS entry as a verification key, or why it cannot be one.
fn usable_key(entry: &Value) -> Result<(Option<String>, Algorithm, DecodingKey), String> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|_| "not a valid JWK".to_string())?;
    if let Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)) = &jwk.common.public_key_use {
        return Err("its \"use\" is not \"sig\"".to_string());
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::EllipticCurve(_) => {
            return Err("only the EC curve P-256 is supported".to_string());
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        AlgorithmParameters::OctetKeyPair(_) => {
            return Err("only the OKP curve Ed25519 is supported".to_string());
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (\"kty\":\"oct\") keys are never accepted".to_string());
        }
        _ => return Err("unsupported key type".to_string()),
    };
    match jwk.common.key_algorithm {
        None => {}
        Some(declared) if declared == KeyAlgorithm::from(algorithm) => {}
        Some(declared) => {
            return Err(format!(
                "its \"alg\" {declared} is not supported for this key type (only {algorithm:?} is)"
            ));
        }
    }
    let key =
        DecodingKey::from_jwk(&jwk).map_err(|_| "its key parameters are not valid base64url".to_string())?;
    // The library checks lengths only when verifying (and would panic on a short Ed25519 key):
    // check here, once.
    match (algorithm, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            let significant = n.iter().skip_while(|byte| **byte == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!("RSA key of {} bits; at least 2048 are required", significant * 8));
            }
            if e.iter().all(|byte| *byte == 0) {
                return Err("RSA exponent is zero".to_string());
            }
        }
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) if point.len() == 65 => {}
        (Algorithm::ES256, _) => return Err("P-256 coordinates must be 32 bytes each".to_string()),
        (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(x)) if x.len() == 32 => {}
        (Algorithm::EdDSA, _) => return Err("an Ed25519 public key must be 32 bytes".to_string()),
        _ => return Err("unsupported key type".to_string()),
    }
    if algorithm != Algorithm::RS256 {
        // Building a verifier parses the point: a point that is not on the curve is caught now.
        jsonwebtoken::crypto::verify("AA", b"", &key, algorithm)
            .map_err(|_| "its public key is not a valid point of the curve".to_string())?;
    }
    Ok((jwk.common.key_id, algorithm, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::request;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// A fixed Ed25519 key (PKCS#8 DER of the 32-byte seed 1, 2, ..., 32).
    fn ed25519_pkcs8(seed: u8) -> Vec<u8> {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        der.extend((0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(seed)));
        der
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    struct Setup {
        dir: tempfile_lite::Dir,
        settings: JwtSettings,
        signing: EncodingKey,
    }

    /// Minimal temporary directory (the crate has no tempfile dependency).
    mod tempfile_lite {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(tag: &str) -> Self {
                let unique = format!(
                    "remoteproxy-jwt-{tag}-{}-{:?}",
                    std::process::id(),
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                );
                let path = std::env::temp_dir().join(unique);
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn public_jwk(signing: &EncodingKey, kid: &str) -> Value {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(signing, Algorithm::EdDSA).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk
    }

    fn setup(tag: &str) -> Setup {
        let dir = tempfile_lite::Dir::new(tag);
        let signing = EncodingKey::from_ed_der(&ed25519_pkcs8(1));
        let jwks = dir.0.join("jwks.json");
        std::fs::write(&jwks, json!({"keys": [public_jwk(&signing, "k1")]}).to_string()).unwrap();
        let settings = JwtSettings {
            jwks_file: jwks,
            issuer: None,
            audience: None,
            user_claim: "sub".into(),
            leeway: Duration::from_secs(5),
        };
        Setup { dir, settings, signing }
    }

    fn token(signing: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_string);
        encode(&header, &claims, signing).unwrap()
    }

    async fn outcome(authenticator: &JwtAuthenticator, token: &str) -> Verdict {
        authenticator.authenticate(&request(token, "")).await
    }

    #[tokio::test]
    async fn accepts_a_good_token_and_names_the_user() {
        let setup = setup("good");
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        for kid in [Some("k1"), None] {
            let good = token(&setup.signing, kid, json!({"sub": "alice", "exp": now() + 60}));
            assert_eq!(outcome(&authenticator, &good).await, Verdict::accept(Some("alice".into())));
        }
        assert!(!authenticator.verdict_depends_on_facts());
    }

    #[tokio::test]
    async fn user_claim_is_configurable_and_must_be_a_string() {
        let mut setup = setup("claim");
        setup.settings.user_claim = "email".into();
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        let exp = now() + 60;
        let good = token(&setup.signing, None, json!({"sub": "a", "email": "a@example.org", "exp": exp}));
        assert_eq!(outcome(&authenticator, &good).await.user_name.as_deref(), Some("a@example.org"));
        for claims in [
            json!({"sub": "a", "exp": exp}),
            json!({"email": 5, "exp": exp}),
            json!({"email": "", "exp": exp}),
        ] {
            let refused = token(&setup.signing, None, claims);
            assert_eq!(
                outcome(&authenticator, &refused).await,
                Verdict::refuse(AuthenticationError::AuthenticationFailed)
            );
        }
    }

    #[tokio::test]
    async fn exp_is_required_and_leeway_applies() {
        let setup = setup("exp");
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        let failed = Verdict::refuse(AuthenticationError::AuthenticationFailed);
        let no_exp = token(&setup.signing, None, json!({"sub": "a"}));
        assert_eq!(outcome(&authenticator, &no_exp).await, failed);
        let within_leeway = token(&setup.signing, None, json!({"sub": "a", "exp": now() - 2}));
        assert_eq!(outcome(&authenticator, &within_leeway).await.error, AuthenticationError::NoError);
        let expired = token(&setup.signing, None, json!({"sub": "a", "exp": now() - 30}));
        assert_eq!(outcome(&authenticator, &expired).await, failed);
        let early = token(&setup.signing, None, json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}));
        assert_eq!(outcome(&authenticator, &early).await, failed);
    }

    #[tokio::test]
    async fn issuer_and_audience_are_required_when_configured() {
        let mut setup = setup("iss");
        let exp = now() + 60;
        let failed = Verdict::refuse(AuthenticationError::AuthenticationFailed);
        // Not configured: any (or no) aud and iss pass.
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        let with_both = token(&setup.signing, None, json!({"sub": "a", "exp": exp, "iss": "x", "aud": "y"}));
        assert_eq!(outcome(&authenticator, &with_both).await.error, AuthenticationError::NoError);

        setup.settings.issuer = Some("https://issuer".into());
        setup.settings.audience = Some("broker".into());
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        let good = token(
            &setup.signing,
            None,
            json!({"sub": "a", "exp": exp, "iss": "https://issuer", "aud": ["other", "broker"]}),
        );
        assert_eq!(outcome(&authenticator, &good).await.error, AuthenticationError::NoError);
        for claims in [
            json!({"sub": "a", "exp": exp, "aud": "broker"}),
            json!({"sub": "a", "exp": exp, "iss": "https://issuer"}),
            json!({"sub": "a", "exp": exp, "iss": "https://evil", "aud": "broker"}),
            json!({"sub": "a", "exp": exp, "iss": "https://issuer", "aud": "other"}),
        ] {
            assert_eq!(outcome(&authenticator, &token(&setup.signing, None, claims)).await, failed);
        }
    }

    #[tokio::test]
    async fn unknown_kid_wrong_key_and_garbage_fail() {
        let setup = setup("kid");
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        let failed = Verdict::refuse(AuthenticationError::AuthenticationFailed);
        let claims = json!({"sub": "a", "exp": now() + 60});
        let unknown_kid = token(&setup.signing, Some("k2"), claims.clone());
        assert_eq!(outcome(&authenticator, &unknown_kid).await, failed);
        let other = EncodingKey::from_ed_der(&ed25519_pkcs8(2));
        assert_eq!(outcome(&authenticator, &token(&other, Some("k1"), claims.clone())).await, failed);
        assert_eq!(outcome(&authenticator, &token(&other, None, claims)).await, failed);
        for garbage in ["", "a", "a.b", "a.b.c", "....", "eyJhbGciOiJub25lIn0.e30.", "\u{0}"] {
            assert_eq!(outcome(&authenticator, garbage).await, failed, "{garbage:?}");
        }
    }

    #[test]
    fn jwks_problems_are_build_errors_naming_the_key() {
        let setup = setup("jwks");
        let path = setup.dir.0.join("jwks.json");
        let error = |text: Option<&str>| {
            match text {
                Some(text) => std::fs::write(&path, text).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            match JwtAuthenticator::new(&setup.settings) {
                Ok(_) => panic!("should fail: {text:?}"),
                Err(error) => {
                    assert_eq!((error.section, error.key), (SECTION, "jwks"));
                    error.to_string()
                }
            }
        };
        assert!(error(None).contains("cannot read"));
        assert!(error(Some("{")).contains("is not valid JSON"));
        assert!(error(Some("{\"foo\": 1}")).contains("no \"keys\" array"));
        assert!(error(Some("{\"keys\": []}")).contains("has no usable key"));
        // Only unusable keys: an HMAC secret, a short RSA key, a P-384 key, a short Ed25519 key,
        // an Ed25519 key declared for HS256, an encryption key.
        let signing_jwk = public_jwk(&setup.signing, "k");
        let mut hs = signing_jwk.clone();
        hs["alg"] = json!("HS256");
        let mut enc = signing_jwk.clone();
        enc["use"] = json!("enc");
        let unusable = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            hs,
            enc,
            "not an object",
        ]});
        assert!(error(Some(&unusable.to_string())).contains("has no usable key"));
        // With one good key among them, it loads.
        let mut with_good = unusable.clone();
        with_good["keys"].as_array_mut().unwrap().push(signing_jwk);
        std::fs::write(&path, with_good.to_string()).unwrap();
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        assert_eq!(authenticator.current_keys().len(), 1);
    }

    #[tokio::test]
    async fn reload_replaces_the_keys_and_keeps_them_on_failure() {
        let setup = setup("reload");
        let authenticator = JwtAuthenticator::new(&setup.settings).unwrap();
        let claims = json!({"sub": "a", "exp": now() + 60});
        let old_token = token(&setup.signing, None, claims.clone());
        let new_signing = EncodingKey::from_ed_der(&ed25519_pkcs8(3));
        let new_token = token(&new_signing, None, claims);
        assert_eq!(
            outcome(&authenticator, &new_token).await.error,
            AuthenticationError::AuthenticationFailed
        );

        std::fs::write(
            &setup.settings.jwks_file,
            json!({"keys": [public_jwk(&new_signing, "k2")]}).to_string(),
        )
        .unwrap();
        authenticator.reload().unwrap();
        assert_eq!(outcome(&authenticator, &new_token).await.error, AuthenticationError::NoError);
        assert_eq!(
            outcome(&authenticator, &old_token).await.error,
            AuthenticationError::AuthenticationFailed
        );

        std::fs::write(&setup.settings.jwks_file, "garbage").unwrap();
        let message = authenticator.reload().unwrap_err();
        assert!(message.starts_with("[JwtAuthenticator] jwks: "), "{message}");
        assert_eq!(outcome(&authenticator, &new_token).await.error, AuthenticationError::NoError);
    }
}
