//! Each kind reads its own section of the broker's configuration file: `[Authentication]` says
//! which kind (and the cache, throttle and request timeout every kind shares), the kind's section
//! says the rest. The broker owns the file format and its one-line errors ([`SettingsSource`]);
//! what a key means, its default (declared once in `keys.rs`) and its checks live here, next to
//! the authenticator that uses it.

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::{
    AuthenticationSettings, AwsLambdaSettings, CertificateSettings, HttpSettings, JwtSettings, KindSettings,
    StaticSettings, SubjectField, ThrottleSettings,
};
use crate::token::Secret;

mod keys;

use keys::{AUTH, AWS, CERT, HTTP, JWT, STATIC, default_of};
pub use keys::{AWS_DEFAULT_CREDENTIALS_URL, Key, Kind, SECTIONS, Section, key, optional};

/// The broker's configuration file as the authenticators read it: values by section and key,
/// typed the file's way, and errors in the file's words (naming file, section and key; never a
/// secret value).
pub trait SettingsSource {
    /// The broker's error type.
    type Error;
    /// Whether the file has this section at all.
    fn has_section(&self, section: &str) -> bool;
    /// The value of `key` in `section` as written or, when the file does not give it, the key's
    /// declared default.
    fn text(&self, section: &str, key: &str) -> Option<&str>;
    /// A boolean.
    fn boolean(&self, section: &str, key: &str) -> Result<Option<bool>, Self::Error>;
    /// A whole number, at most `max`.
    fn number(&self, section: &str, key: &str, max: u64) -> Result<Option<u64>, Self::Error>;
    /// A duration in whole milliseconds.
    fn millis(&self, section: &str, key: &str) -> Result<Option<Duration>, Self::Error>;
    /// An unusable value: `problem` must not contain a secret; build it with [`Self::shown`].
    fn bad(&self, section: &str, key: &str, problem: String) -> Self::Error;
    /// How a value may appear in a problem.
    fn shown(&self, key: &str, value: &str) -> String;

    /// A value that is there and not empty.
    fn non_empty(&self, section: &str, key: &str) -> Option<&str> {
        self.text(section, key).filter(|value| !value.is_empty())
    }

    /// A value that must be there; `what` says what it is for.
    fn required(&self, section: &str, key: &str, what: &str) -> Result<&str, Self::Error> {
        self.non_empty(section, key).ok_or_else(|| self.bad(section, key, format!("missing: set {what}")))
    }
}

/// What of the broker's own settings the authentication settings are checked against.
#[derive(Debug, Clone, Copy)]
pub struct BrokerFacts {
    /// TLS is on with a `clientCaCertificate` (the certificate authenticator needs one).
    pub client_ca_configured: bool,
    /// `[ProxyServer] authenticationTimeout`: a remote service's request timeout stays below it.
    pub authentication_timeout: Duration,
}

/// The authentication settings, `None` when no kind is configured. A file with an `[AWS]`
/// section and no `[Authentication] type` (nymea-remoteproxy 1.8.4's) means aws-lambda, as the
/// reference does.
pub fn read<S: SettingsSource>(
    src: &S,
    facts: BrokerFacts,
) -> Result<Option<AuthenticationSettings>, S::Error> {
    let kind = match src.non_empty(AUTH, "type") {
        Some(kind) => kind,
        None if src.has_section(AWS) => "aws-lambda",
        None => return Ok(None),
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "mock" => KindSettings::Mock,
        "aws-lambda" => KindSettings::AwsLambda(aws_lambda(src)),
        "http" => KindSettings::Http(HttpSettings {
            url: src.required(HTTP, "url", "the URL the token is POSTed to")?.to_string(),
            authorization: src.non_empty(HTTP, "authorization").map(Secret::new),
            ca_file: src.non_empty(HTTP, "caCertificate").map(PathBuf::from),
        }),
        "static" => KindSettings::Static(static_tokens(src)?),
        "jwt" => KindSettings::Jwt(jwt(src)?),
        "certificate" => KindSettings::Certificate(certificate(src, facts)?),
        _ => {
            let problem = format!(
                "{} is not an authenticator type (available: {})",
                src.shown("type", kind),
                KindSettings::NAMES.join(", ")
            );
            return Err(src.bad(AUTH, "type", problem));
        }
    };
    let cache_ttl = src.millis(AUTH, "cacheTtl")?.filter(|ttl| !ttl.is_zero());
    let base = given(src, AUTH, "throttleBaseDelay", src.millis(AUTH, "throttleBaseDelay")?)?;
    let max = given(src, AUTH, "throttleMaxDelay", src.millis(AUTH, "throttleMaxDelay")?)?;
    if base > max {
        return Err(src.bad(AUTH, "throttleBaseDelay", "must not be larger than throttleMaxDelay".into()));
    }
    let throttle = given(src, AUTH, "throttle", src.boolean(AUTH, "throttle")?)?
        .then_some(ThrottleSettings { base, max });
    let limit = facts.authentication_timeout;
    let request_timeout = src.millis(AUTH, "requestTimeout")?.unwrap_or(limit * 3 / 4);
    if request_timeout.is_zero() || request_timeout >= limit {
        return Err(src.bad(
            AUTH,
            "requestTimeout",
            "must be greater than 0 and below [ProxyServer] authenticationTimeout".into(),
        ));
    }
    Ok(Some(AuthenticationSettings { kind, cache_ttl, throttle, request_timeout }))
}

/// A value that has a declared default, so the source always gives it; a key declared without one
/// would show up here as "missing" rather than as a silent zero.
fn given<S: SettingsSource, T>(src: &S, section: &str, key: &str, value: Option<T>) -> Result<T, S::Error> {
    value.ok_or_else(|| src.bad(section, key, "missing".into()))
}

/// A text key where an empty value, like an absent one, means the declared default (as the
/// reference reads its `[AWS]` keys).
fn text_or_default<S: SettingsSource>(src: &S, section: &str, key: &str) -> String {
    src.non_empty(section, key).unwrap_or(default_of(section, key)).to_string()
}

fn aws_lambda<S: SettingsSource>(src: &S) -> AwsLambdaSettings {
    let text = |key| text_or_default(src, AWS, key);
    AwsLambdaSettings {
        region: text("region"),
        function: text("authorizerLambdaFunction"),
        credentials_url: text("awsCredentialsUrl"),
        lambda_endpoint: src.non_empty(AWS, "lambdaEndpoint").map(str::to_string),
    }
}

fn static_tokens<S: SettingsSource>(src: &S) -> Result<StaticSettings, S::Error> {
    let file = src.required(STATIC, "file", "the token hash file")?;
    let reload_interval = given(src, STATIC, "reloadInterval", src.millis(STATIC, "reloadInterval")?)?;
    if reload_interval.is_zero() {
        return Err(src.bad(STATIC, "reloadInterval", "must be greater than 0 milliseconds".into()));
    }
    Ok(StaticSettings { file: PathBuf::from(file), reload_interval })
}

fn jwt<S: SettingsSource>(src: &S) -> Result<JwtSettings, S::Error> {
    let leeway = given(src, JWT, "leeway", src.number(JWT, "leeway", 3600)?)?;
    Ok(JwtSettings {
        jwks_file: PathBuf::from(src.required(JWT, "jwks", "the JWKS file with the keys")?),
        issuer: src.non_empty(JWT, "issuer").map(str::to_string),
        audience: src.non_empty(JWT, "audience").map(str::to_string),
        user_claim: text_or_default(src, JWT, "userClaim"),
        leeway: Duration::from_secs(leeway),
    })
}

fn certificate<S: SettingsSource>(src: &S, facts: BrokerFacts) -> Result<CertificateSettings, S::Error> {
    if !facts.client_ca_configured {
        return Err(src.bad(
            AUTH,
            "type",
            "the certificate authenticator needs [SSL] enabled=true and clientCaCertificate".into(),
        ));
    }
    let user_name_from = match text_or_default(src, CERT, "userName").as_str() {
        "CN" => SubjectField::CommonName,
        "O" => SubjectField::Organization,
        other => {
            return Err(src.bad(
                CERT,
                "userName",
                format!("{} is not CN or O", src.shown("userName", other)),
            ));
        }
    };
    Ok(CertificateSettings { user_name_from })
}
