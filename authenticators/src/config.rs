//! Each kind reads its own section of the broker's configuration file: `[Authentication]` says
//! which kind (and the cache, throttle and request timeout every kind shares), the kind's section
//! says the rest. The broker owns the file format and its one-line errors ([`SettingsSource`]);
//! what a key means, its default and its checks live here, next to the authenticator that uses it.

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::{
    AuthenticationSettings, AwsLambdaSettings, CertificateSettings, HttpSettings, JwtSettings, KindSettings,
    StaticSettings, SubjectField, ThrottleSettings,
};
use crate::token::Secret;

const AUTH: &str = "Authentication";
const AWS: &str = "AWS";
const HTTP: &str = "HttpAuthenticator";
const STATIC: &str = "StaticAuthenticator";
const JWT: &str = "JwtAuthenticator";
const CERT: &str = "CertificateAuthenticator";

/// The sections of authentication and their keys, for the broker's unknown-name checks.
pub const SECTIONS: &[(&str, &[&str])] = &[
    (AWS, &["region", "authorizerLambdaFunction", "awsCredentialsUrl", "lambdaEndpoint"]),
    (AUTH, &["type", "cacheTtl", "throttle", "throttleBaseDelay", "throttleMaxDelay", "requestTimeout"]),
    (HTTP, &["url", "authorization", "caCertificate"]),
    (STATIC, &["file", "reloadInterval"]),
    (JWT, &["jwks", "issuer", "audience", "userClaim", "leeway"]),
    (CERT, &["userName"]),
];

/// The reference broker's `[AWS]` defaults, so a 1.8.4 file works unchanged.
pub const AWS_DEFAULT_REGION: &str = "eu-west-1";
/// See [`AWS_DEFAULT_REGION`].
pub const AWS_DEFAULT_FUNCTION: &str = "system-services-authorizer-dev-checkToken";
/// See [`AWS_DEFAULT_REGION`].
pub const AWS_DEFAULT_CREDENTIALS_URL: &str =
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/EC2-Remote-Connection-Proxy-Role";

/// The broker's configuration file as the authenticators read it: values by section and key,
/// typed the file's way, and errors in the file's words (naming file, section and key; never a
/// secret value).
pub trait SettingsSource {
    /// The broker's error type.
    type Error;
    /// Whether the file has this section at all.
    fn has_section(&self, section: &str) -> bool;
    /// The value of `key` in `section`, as written.
    fn text(&self, section: &str, key: &str) -> Option<&str>;
    /// A boolean.
    fn boolean(&self, section: &str, key: &str) -> Result<Option<bool>, Self::Error>;
    /// A whole number of `unit`, at most `max`.
    fn number(
        &self,
        section: &str,
        key: &str,
        unit: Option<&str>,
        max: u64,
    ) -> Result<Option<u64>, Self::Error>;
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
    let base = src.millis(AUTH, "throttleBaseDelay")?.unwrap_or(Duration::from_millis(250));
    let max = src.millis(AUTH, "throttleMaxDelay")?.unwrap_or(Duration::from_millis(4000));
    if base > max {
        return Err(src.bad(AUTH, "throttleBaseDelay", "must not be larger than throttleMaxDelay".into()));
    }
    let throttle = src.boolean(AUTH, "throttle")?.unwrap_or(true).then_some(ThrottleSettings { base, max });
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

fn aws_lambda<S: SettingsSource>(src: &S) -> AwsLambdaSettings {
    let text = |key, default: &str| src.non_empty(AWS, key).unwrap_or(default).to_string();
    AwsLambdaSettings {
        region: text("region", AWS_DEFAULT_REGION),
        function: text("authorizerLambdaFunction", AWS_DEFAULT_FUNCTION),
        credentials_url: text("awsCredentialsUrl", AWS_DEFAULT_CREDENTIALS_URL),
        lambda_endpoint: src.non_empty(AWS, "lambdaEndpoint").map(str::to_string),
    }
}

fn static_tokens<S: SettingsSource>(src: &S) -> Result<StaticSettings, S::Error> {
    let file = src.required(STATIC, "file", "the token hash file")?;
    let reload_interval = src.millis(STATIC, "reloadInterval")?.unwrap_or(Duration::from_secs(2));
    if reload_interval.is_zero() {
        return Err(src.bad(STATIC, "reloadInterval", "must be greater than 0 milliseconds".into()));
    }
    Ok(StaticSettings { file: PathBuf::from(file), reload_interval })
}

fn jwt<S: SettingsSource>(src: &S) -> Result<JwtSettings, S::Error> {
    let leeway = src.number(JWT, "leeway", Some("seconds"), 3600)?.unwrap_or(60);
    Ok(JwtSettings {
        jwks_file: PathBuf::from(src.required(JWT, "jwks", "the JWKS file with the keys")?),
        issuer: src.non_empty(JWT, "issuer").map(str::to_string),
        audience: src.non_empty(JWT, "audience").map(str::to_string),
        user_claim: src.non_empty(JWT, "userClaim").unwrap_or("sub").to_string(),
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
    let user_name_from = match src.non_empty(CERT, "userName").unwrap_or("CN") {
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
