//! AWS credentials for signing the Lambda calls.
//!
//! The chain, in order:
//! 1. the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`),
//!    read once when the authenticator is built; such keys never expire;
//! 2. the instance metadata service at `awsCredentialsUrl`, with the IMDSv2 flow (`PUT
//!    /latest/api/token` on the same host, then the GET with `X-aws-ec2-metadata-token`);
//! 3. when no IMDSv2 session token can be had, a plain IMDSv1 GET of `awsCredentialsUrl`.
//!
//! Fetched credentials are cached and fetched again a while before their `Expiration` (five
//! minutes, or half their lifetime when they live shorter). Callers that arrive while a fetch is
//! running wait for it and share its result, success or failure, so a burst of clients costs one
//! fetch. When a refresh fails but the cached keys have not expired yet, they keep being used.
//!
//! Nothing here prints a secret: keys and tokens are [`Secret`]s, errors name fields and HTTP
//! statuses only, and an answer body is never quoted.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_smithy_types::date_time::{DateTime, Format};
use serde_json::Value;

use crate::token::Secret;

/// Fetch again this long before `Expiration` (or after half the lifetime, when that is sooner).
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Lifetime assumed for fetched credentials without an `Expiration`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Lifetime asked for the IMDSv2 session token; it is used once, right away.
const IMDS_TOKEN_TTL_SECONDS: &str = "60";
/// Largest metadata answer read.
const MAX_IMDS_ANSWER: usize = 64 * 1024;

/// The header that asks for an IMDSv2 session token and its lifetime.
pub(crate) const IMDS_TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The header that carries the IMDSv2 session token.
pub(crate) const IMDS_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// A set of AWS keys.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    /// The access key id (an identifier, but kept out of logs anyway).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// When AWS stops accepting them; `None`: never (keys from the environment).
    pub expiration: Option<SystemTime>,
    /// When to fetch new ones; `None`: never.
    refresh_at: Option<SystemTime>,
}

impl AwsCredentials {
    /// Keys that never expire (from the environment).
    pub(crate) fn permanent(
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    ) -> Self {
        AwsCredentials { access_key_id, secret_access_key, session_token, expiration: None, refresh_at: None }
    }

    /// Keys fetched at `fetched_at` that expire at `expiration`; the refresh time follows from
    /// both.
    fn temporary(
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
        expiration: SystemTime,
        fetched_at: SystemTime,
    ) -> Self {
        AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token,
            expiration: Some(expiration),
            refresh_at: Some(refresh_time(fetched_at, expiration)),
        }
    }

    /// Whether new keys should be fetched at `now`.
    fn needs_refresh(&self, now: SystemTime) -> bool {
        self.refresh_at.is_some_and(|at| now >= at)
    }

    /// Whether AWS still accepts the keys at `now`.
    fn usable(&self, now: SystemTime) -> bool {
        self.expiration.is_none_or(|expiration| now < expiration)
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"MASKED")
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("expiration", &self.expiration.map(format_time))
            .finish()
    }
}

/// When keys fetched at `fetched_at` and expiring at `expiration` should be replaced:
/// [`REFRESH_MARGIN`] before they expire, or halfway through a shorter lifetime.
fn refresh_time(fetched_at: SystemTime, expiration: SystemTime) -> SystemTime {
    let lifetime = expiration.duration_since(fetched_at).unwrap_or_default();
    expiration - REFRESH_MARGIN.min(lifetime / 2)
}

/// An RFC 3339 rendering of a time, for logs.
pub(crate) fn format_time(time: SystemTime) -> String {
    DateTime::from(time).fmt(Format::DateTime).unwrap_or_else(|_| format!("{time:?}"))
}

/// Why no credentials could be had. The text never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialsError(String);

impl CredentialsError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        CredentialsError(message.into())
    }
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `AWS_*` environment variables at the head of the credential chain.
///
/// [`AwsEnvironment::from_process`] reads the real environment; tests build one with
/// [`AwsEnvironment::from_lookup`] (or use [`AwsEnvironment::empty`]) instead of changing the
/// process environment. `Debug` shows which variables are set, never their values.
#[derive(Clone, Default)]
pub struct AwsEnvironment {
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
}

impl AwsEnvironment {
    /// No variable set: credentials come from the instance metadata service.
    pub fn empty() -> Self {
        AwsEnvironment::default()
    }

    /// The variables of this process.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The variables as `lookup` reports them (by name, e.g. `AWS_ACCESS_KEY_ID`). Empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
        AwsEnvironment {
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY").map(Secret::new),
            session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
        }
    }

    /// The keys, when both the key id and the secret key are set.
    pub(crate) fn credentials(&self) -> Option<AwsCredentials> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                Some(AwsCredentials::permanent(id.clone(), secret.clone(), self.session_token.clone()))
            }
            _ => None,
        }
    }

    /// Whether some but not all of the required variables are set (worth a warning).
    pub(crate) fn is_partial(&self) -> bool {
        self.access_key_id.is_some() != self.secret_access_key.is_some()
    }
}

impl fmt::Debug for AwsEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsEnvironment")
            .field("AWS_ACCESS_KEY_ID", &self.access_key_id.is_some())
            .field("AWS_SECRET_ACCESS_KEY", &self.secret_access_key.is_some())
            .field("AWS_SESSION_TOKEN", &self.session_token.is_some())
            .finish()
    }
}

/// Something that fetches fresh temporary credentials (the metadata service; a fake in tests).
#[async_trait]
pub(crate) trait Fetch: Send + Sync + 'static {
    /// Fetches one set of keys; `now` is the time of the fetch.
    async fn fetch(&self, now: SystemTime) -> Result<AwsCredentials, CredentialsError>;
}

/// The wall clock, replaceable in tests.
pub(crate) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The head of the chain that was chosen when the authenticator was built.
pub(crate) enum CredentialsProvider {
    /// Keys from the environment.
    Fixed(Arc<AwsCredentials>),
    /// Keys fetched (from the metadata service) and cached.
    Fetched(RefreshingCache),
}

impl CredentialsProvider {
    /// Current keys.
    pub(crate) async fn get(&self) -> Result<Arc<AwsCredentials>, CredentialsError> {
        match self {
            CredentialsProvider::Fixed(credentials) => Ok(credentials.clone()),
            CredentialsProvider::Fetched(cache) => cache.get().await,
        }
    }

    /// AWS refused `credentials`: fetch new ones at the next call (fixed keys stay).
    pub(crate) async fn invalidate(&self, credentials: &AwsCredentials) {
        if let CredentialsProvider::Fetched(cache) = self {
            cache.invalidate(credentials).await;
        }
    }
}

/// Fetched keys, refreshed before they expire; one fetch at a time, shared by all waiters.
pub(crate) struct RefreshingCache {
    fetcher: Box<dyn Fetch>,
    clock: Clock,
    /// Completed fetch attempts; a caller that sees it change while it waited for the lock
    /// takes the result of that attempt instead of starting another one.
    attempts: AtomicU64,
    state: tokio::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    current: Option<Arc<AwsCredentials>>,
    last_error: Option<CredentialsError>,
}

impl RefreshingCache {
    pub(crate) fn new(fetcher: Box<dyn Fetch>, clock: Clock) -> Self {
        RefreshingCache { fetcher, clock, attempts: AtomicU64::new(0), state: Default::default() }
    }

    async fn get(&self) -> Result<Arc<AwsCredentials>, CredentialsError> {
        let seen = self.attempts.load(Ordering::SeqCst);
        let mut state = self.state.lock().await;
        let now = (self.clock)();
        if let Some(current) = &state.current
            && !current.needs_refresh(now)
        {
            return Ok(current.clone());
        }
        if self.attempts.load(Ordering::SeqCst) != seen {
            // Another caller fetched while this one waited, and its result is no better than
            // what the state holds now: share it instead of asking the service again.
            return match &state.current {
                Some(current) if current.usable(now) => Ok(current.clone()),
                _ => Err(state.last_error.clone().unwrap_or_else(|| CredentialsError::new("no credentials"))),
            };
        }
        let result = self.fetcher.fetch(now).await;
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let now = (self.clock)();
        match result {
            Ok(fresh) => {
                tracing::debug!(
                    expiration = %fresh.expiration.map(format_time).unwrap_or_default(),
                    "fetched AWS credentials from the instance metadata service"
                );
                let fresh = Arc::new(fresh);
                state.current = Some(fresh.clone());
                state.last_error = None;
                Ok(fresh)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                match &state.current {
                    Some(current) if current.usable(now) => {
                        tracing::warn!(
                            %error,
                            expiration = %current.expiration.map(format_time).unwrap_or_default(),
                            "cannot refresh the AWS credentials; using the current ones until they expire"
                        );
                        Ok(current.clone())
                    }
                    _ => Err(error),
                }
            }
        }
    }

    async fn invalidate(&self, used: &AwsCredentials) {
        let mut state = self.state.lock().await;
        if let Some(current) = &state.current
            && current.access_key_id == used.access_key_id
            && current.refresh_at.is_none_or(|at| at > (self.clock)())
        {
            let mut stale = AwsCredentials::clone(current);
            stale.refresh_at = Some((self.clock)());
            state.current = Some(Arc::new(stale));
            tracing::debug!("AWS refused the current credentials; they are fetched again at the next call");
        }
    }
}

/// The instance metadata service.
pub(crate) struct Imds {
    client: reqwest::Client,
    /// `<origin of credentials_url>/latest/api/token`.
    token_url: String,
    /// `awsCredentialsUrl`.
    credentials_url: String,
    /// Bound of each metadata request (short: the service is on the local link).
    timeout: Duration,
}

impl Imds {
    /// `credentials_url` must have been checked (an http(s) URL with a host).
    pub(crate) fn new(client: reqwest::Client, credentials_url: &reqwest::Url, timeout: Duration) -> Self {
        let origin = credentials_url.origin().ascii_serialization();
        Imds {
            client,
            token_url: format!("{origin}/latest/api/token"),
            credentials_url: credentials_url.as_str().to_string(),
            timeout,
        }
    }

    /// An IMDSv2 session token, or why there is none.
    async fn session_token(&self) -> Result<Secret, String> {
        let response = self
            .client
            .put(&self.token_url)
            .header(IMDS_TOKEN_TTL_HEADER, IMDS_TOKEN_TTL_SECONDS)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let body = read_limited(response, MAX_IMDS_ANSWER).await?;
        let token = String::from_utf8(body).map_err(|_| "the token is not text".to_string())?;
        let token = token.trim();
        if token.is_empty() {
            return Err("the token is empty".into());
        }
        Ok(Secret::new(token))
    }
}

#[async_trait]
impl Fetch for Imds {
    async fn fetch(&self, now: SystemTime) -> Result<AwsCredentials, CredentialsError> {
        let mut request = self.client.get(&self.credentials_url).timeout(self.timeout);
        match self.session_token().await {
            Ok(token) => {
                let mut value =
                    reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                        CredentialsError::new("the IMDSv2 session token is not a valid header value")
                    })?;
                value.set_sensitive(true);
                request = request.header(IMDS_TOKEN_HEADER, value);
            }
            Err(why) => {
                tracing::debug!(
                    url = %self.token_url,
                    "no IMDSv2 session token ({why}); trying a plain IMDSv1 request"
                );
            }
        }
        let response = request.send().await.map_err(|e| {
            CredentialsError::new(format!(
                "the instance metadata service at {} cannot be reached: {}",
                self.credentials_url,
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(CredentialsError::new(format!(
                "the instance metadata service answered HTTP {status} for {}",
                self.credentials_url
            )));
        }
        let body = read_limited(response, MAX_IMDS_ANSWER).await.map_err(|why| {
            CredentialsError::new(format!(
                "cannot read the answer of the instance metadata service at {}: {why}",
                self.credentials_url
            ))
        })?;
        parse_imds_credentials(&body, now)
    }
}

/// Reads a response body of at most `limit` bytes.
pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its sources, `a: b: c` (reqwest's own text names the URL, never a header).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads the metadata service's credentials document:
/// `{"Code":"Success","AccessKeyId":..,"SecretAccessKey":..,"Token":..,"Expiration":"<RFC 3339>"}`.
pub(crate) fn parse_imds_credentials(
    body: &[u8],
    now: SystemTime,
) -> Result<AwsCredentials, CredentialsError> {
    // Parsing into a `Value` can only fail on syntax, and serde_json's syntax errors name a
    // position, never the text, so the message is safe to show.
    let document: Value = serde_json::from_slice(body)
        .map_err(|e| CredentialsError::new(format!("the instance metadata answer is not JSON ({e})")))?;
    let field = |name: &str| match document.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => {
            Err(CredentialsError::new(format!("the instance metadata answer's {name} is not a string")))
        }
    };
    if let Some(code) = field("Code")?
        && code != "Success"
    {
        let shown: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).take(40).collect();
        return Err(CredentialsError::new(format!("the instance metadata answer's Code is {shown:?}")));
    }
    let required = |name: &str| match field(name)? {
        Some(text) if !text.is_empty() => Ok(text.to_string()),
        _ => Err(CredentialsError::new(format!("the instance metadata answer has no {name}"))),
    };
    let access_key_id = required("AccessKeyId")?;
    let secret_access_key = Secret::new(required("SecretAccessKey")?);
    let session_token = field("Token")?.filter(|t| !t.is_empty()).map(Secret::new);
    let expiration = match field("Expiration")? {
        Some(text) => parse_expiration(text)?,
        None => now + DEFAULT_LIFETIME,
    };
    Ok(AwsCredentials::temporary(access_key_id, secret_access_key, session_token, expiration, now))
}

/// An RFC 3339 time such as `2024-05-01T12:00:00Z`.
fn parse_expiration(text: &str) -> Result<SystemTime, CredentialsError> {
    DateTime::from_str(text, Format::DateTimeWithOffset)
        .ok()
        .and_then(|time| SystemTime::try_from(time).ok())
        .ok_or_else(|| {
            CredentialsError::new("the instance metadata answer's Expiration is not an RFC 3339 time")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const T0: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    #[test]
    fn a_metadata_answer_is_parsed() {
        let body = br#"{"Code":"Success","LastUpdated":"2023-11-14T22:00:00Z","Type":"AWS-HMAC",
            "AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"secret/key+1","Token":"session-token",
            "Expiration":"2023-11-15T04:13:20Z"}"#;
        let credentials = parse_imds_credentials(body, at(T0)).unwrap();
        assert_eq!(credentials.access_key_id, "ASIAEXAMPLE");
        assert_eq!(credentials.secret_access_key.expose_secret(), "secret/key+1");
        assert_eq!(credentials.session_token.as_ref().unwrap().expose_secret(), "session-token");
        assert_eq!(credentials.expiration, Some(at(T0 + 6 * 3600)));
        assert_eq!(credentials.refresh_at, Some(at(T0 + 6 * 3600 - 300)), "five minutes before");
    }

    #[test]
    fn broken_metadata_answers_are_errors_that_quote_no_secret() {
        let cases: &[&[u8]] = &[
            b"not json secret-value",
            br#"{"Code":"Failure","AccessKeyId":"a","SecretAccessKey":"secret-value"}"#,
            br#"{"Code":"Success","SecretAccessKey":"secret-value"}"#,
            br#"{"AccessKeyId":"a","SecretAccessKey":""}"#,
            br#"{"AccessKeyId":"a","SecretAccessKey":5}"#,
            br#"{"AccessKeyId":"a","SecretAccessKey":"secret-value","Expiration":"tomorrow secret-value"}"#,
            br#"{"AccessKeyId":"a","SecretAccessKey":"secret-value","Token":["secret-value"]}"#,
        ];
        for body in cases {
            let error = parse_imds_credentials(body, at(T0)).unwrap_err().to_string();
            assert!(!error.contains("secret-value"), "{error}");
        }
    }

    #[test]
    fn missing_expiration_and_token_have_defaults() {
        let body = br#"{"AccessKeyId":"a","SecretAccessKey":"s","Token":""}"#;
        let credentials = parse_imds_credentials(body, at(T0)).unwrap();
        assert!(credentials.session_token.is_none());
        assert_eq!(credentials.expiration, Some(at(T0) + DEFAULT_LIFETIME));
    }

    #[test]
    fn refresh_comes_before_expiration() {
        // Long-lived: five minutes before.
        assert_eq!(refresh_time(at(T0), at(T0 + 3600)), at(T0 + 3300));
        // Short-lived: halfway.
        assert_eq!(refresh_time(at(T0), at(T0 + 120)), at(T0 + 60));
        // Already expired: now.
        assert_eq!(refresh_time(at(T0), at(T0 - 10)), at(T0 - 10));
        let credentials =
            AwsCredentials::temporary("a".into(), Secret::new("s"), None, at(T0 + 3600), at(T0));
        assert!(!credentials.needs_refresh(at(T0 + 3299)));
        assert!(credentials.needs_refresh(at(T0 + 3300)));
        assert!(credentials.usable(at(T0 + 3599)));
        assert!(!credentials.usable(at(T0 + 3600)));
        let permanent = AwsCredentials::permanent("a".into(), Secret::new("s"), None);
        assert!(!permanent.needs_refresh(at(u32::MAX as u64)));
        assert!(permanent.usable(at(u32::MAX as u64)));
    }

    #[test]
    fn the_environment_needs_both_keys() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            AwsEnvironment::from_lookup(move |name| {
                vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
            })
        };
        let full = env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-session"),
        ]);
        let credentials = full.credentials().unwrap();
        assert_eq!(credentials.access_key_id, "AKID");
        assert_eq!(credentials.secret_access_key.expose_secret(), "env-secret");
        assert_eq!(credentials.session_token.unwrap().expose_secret(), "env-session");
        assert_eq!(credentials.expiration, None);
        assert!(!full.is_partial());

        let no_session =
            env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_SESSION_TOKEN", "")]);
        assert!(no_session.credentials().unwrap().session_token.is_none(), "empty counts as unset");

        let partial = env(&[("AWS_ACCESS_KEY_ID", "AKID")]);
        assert!(partial.credentials().is_none());
        assert!(partial.is_partial());
        assert!(AwsEnvironment::empty().credentials().is_none());
        assert!(!AwsEnvironment::empty().is_partial());

        let printed = format!("{full:?} {:?}", full.credentials().unwrap());
        for secret in ["env-secret", "env-session", "AKID"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    /// Hands out numbered keys valid for `lifetime`, or fails, and counts the fetches.
    struct FakeFetch {
        fetches: Arc<AtomicUsize>,
        lifetime: Duration,
        fail: Arc<std::sync::atomic::AtomicBool>,
        delay: Duration,
    }

    #[async_trait]
    impl Fetch for FakeFetch {
        async fn fetch(&self, now: SystemTime) -> Result<AwsCredentials, CredentialsError> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(CredentialsError::new("fake failure"));
            }
            Ok(AwsCredentials::temporary(
                format!("key-{n}"),
                Secret::new(format!("secret-{n}")),
                None,
                now + self.lifetime,
                now,
            ))
        }
    }

    struct Fixture {
        cache: Arc<RefreshingCache>,
        fetches: Arc<AtomicUsize>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        now: Arc<Mutex<SystemTime>>,
    }

    impl Fixture {
        fn new(lifetime: Duration, delay: Duration) -> Self {
            let fetches = Arc::new(AtomicUsize::new(0));
            let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let now = Arc::new(Mutex::new(at(T0)));
            let clock_now = now.clone();
            let fetcher = FakeFetch { fetches: fetches.clone(), lifetime, fail: fail.clone(), delay };
            let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
            Fixture { cache: Arc::new(RefreshingCache::new(Box::new(fetcher), clock)), fetches, fail, now }
        }

        fn advance(&self, by: Duration) {
            *self.now.lock().unwrap() += by;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn credentials_are_cached_and_refreshed_before_they_expire() {
        let f = Fixture::new(Duration::from_secs(3600), Duration::ZERO);
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-1");
        f.advance(Duration::from_secs(3000));
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-1", "still fresh");
        assert_eq!(f.fetches(), 1);
        f.advance(Duration::from_secs(301)); // 5 min before the 1 h expiration is 3300 s
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-2", "refreshed before expiring");
        assert_eq!(f.fetches(), 2);
    }

    /// Ten tasks asking the cache at once, each yielding the key id it got.
    fn ten_concurrent_callers(f: &Fixture) -> Vec<tokio::task::JoinHandle<Result<String, CredentialsError>>> {
        (0..10)
            .map(|_| {
                let cache = f.cache.clone();
                tokio::spawn(async move { cache.get().await.map(|c| c.access_key_id.clone()) })
            })
            .collect()
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let f = Fixture::new(Duration::from_secs(3600), Duration::from_millis(50));
        let callers = ten_concurrent_callers(&f);
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), "key-1");
        }
        assert_eq!(f.fetches(), 1);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_failure() {
        let f = Fixture::new(Duration::from_secs(3600), Duration::from_millis(50));
        f.fail.store(true, Ordering::SeqCst);
        let callers = ten_concurrent_callers(&f);
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap_err().to_string(), "fake failure");
        }
        assert_eq!(f.fetches(), 1, "waiters took the failure of the running fetch");
        // A later caller tries again.
        f.fail.store(false, Ordering::SeqCst);
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-2");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_unexpired_keys_but_not_expired_ones() {
        let f = Fixture::new(Duration::from_secs(3600), Duration::ZERO);
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-1");
        f.fail.store(true, Ordering::SeqCst);
        f.advance(Duration::from_secs(3400)); // refresh due, still valid
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-1");
        f.advance(Duration::from_secs(200)); // expired
        assert!(f.cache.get().await.is_err());
        f.fail.store(false, Ordering::SeqCst);
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-4");
    }

    #[tokio::test]
    async fn refused_keys_are_fetched_again() {
        let f = Fixture::new(Duration::from_secs(3600), Duration::ZERO);
        let first = f.cache.get().await.unwrap();
        f.cache.invalidate(&first).await;
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-2");
        // Invalidating keys that are no longer current changes nothing.
        f.cache.invalidate(&first).await;
        assert_eq!(f.cache.get().await.unwrap().access_key_id, "key-2");
        assert_eq!(f.fetches(), 2);
    }
}
