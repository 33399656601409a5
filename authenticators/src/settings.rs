//! What an operator configures for authentication: plain data, read by [`crate::config`] from the
//! `[Authentication]` section and the section of the chosen kind.
//!
//! Keeping these types here (not in the broker) lets each authenticator own the meaning of its
//! settings while the broker owns the file format.

use std::path::PathBuf;
use std::time::Duration;

use crate::token::Secret;

/// The whole authentication setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationSettings {
    /// Which authenticator, with its own settings.
    pub kind: KindSettings,
    /// `[Authentication] cacheTtl`: remember accepted and refused tokens this long. `None` (0 in
    /// the file, the default) means no cache.
    pub cache_ttl: Option<Duration>,
    /// `[Authentication] throttle...`: slow down repeated failures from one IP address.
    /// `None` turns it off.
    pub throttle: Option<ThrottleSettings>,
    /// Bound for one call to a remote service (below the broker's `authenticationTimeout`, so a
    /// hung service is reported as `ProxyError`, not as a timeout).
    pub request_timeout: Duration,
}

/// One kind and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindSettings {
    /// Accept every token.
    Mock,
    /// `[AWS]`: ask an AWS Lambda function.
    AwsLambda(AwsLambdaSettings),
    /// `[HttpAuthenticator]`: ask an HTTP endpoint.
    Http(HttpSettings),
    /// `[StaticAuthenticator]`: a file of token hashes.
    Static(StaticSettings),
    /// `[JwtAuthenticator]`: the token is a signed JWT.
    Jwt(JwtSettings),
    /// `[CertificateAuthenticator]`: the TLS client certificate is the credential.
    Certificate(CertificateSettings),
}

impl KindSettings {
    /// Every kind's name, as written in `[Authentication] type`, in the order messages list them.
    pub const NAMES: [&'static str; 6] = ["mock", "aws-lambda", "http", "static", "jwt", "certificate"];

    /// The name used in `[Authentication] type` and in logs.
    pub fn name(&self) -> &'static str {
        match self {
            KindSettings::Mock => "mock",
            KindSettings::AwsLambda(_) => "aws-lambda",
            KindSettings::Http(_) => "http",
            KindSettings::Static(_) => "static",
            KindSettings::Jwt(_) => "jwt",
            KindSettings::Certificate(_) => "certificate",
        }
    }
}

/// Failure throttling: after `n` consecutive failures from one IP address its next attempt waits
/// `base * 2^(n-1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// `throttleBaseDelay`.
    pub base: Duration,
    /// `throttleMaxDelay`.
    pub max: Duration,
}

/// `[AWS]`, compatible with the reference's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLambdaSettings {
    /// `region`, e.g. `eu-west-1`.
    pub region: String,
    /// `authorizerLambdaFunction`: the function name (or ARN).
    pub function: String,
    /// `awsCredentialsUrl`: the instance metadata URL of the role's credentials. The IMDSv2
    /// session token is asked from the same host (`/latest/api/token`).
    pub credentials_url: String,
    /// `lambdaEndpoint` (ours): overrides `https://lambda.<region>.amazonaws.com` (VPC endpoints,
    /// LocalStack, tests).
    pub lambda_endpoint: Option<String>,
}

/// `[HttpAuthenticator]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `url`: where the JSON request is POSTed.
    pub url: String,
    /// `authorization`: the `Authorization` header value, when the endpoint wants one.
    pub authorization: Option<Secret>,
    /// `caCertificate`: trust this PEM bundle instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

/// `[StaticAuthenticator]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSettings {
    /// `file`: lines of `<sha256-hex-of-token> <user name>`.
    pub file: PathBuf,
    /// `reloadInterval` (ms): how often the file is checked for changes.
    pub reload_interval: Duration,
}

/// `[JwtAuthenticator]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// `jwks`: a JWKS file with the verification keys.
    pub jwks_file: PathBuf,
    /// `issuer`: required `iss`, when set.
    pub issuer: Option<String>,
    /// `audience`: required `aud`, when set.
    pub audience: Option<String>,
    /// `userClaim`: the claim that names the user (default `sub`).
    pub user_claim: String,
    /// `leeway` (seconds): tolerance for `exp` and `nbf`.
    pub leeway: Duration,
}

/// Which part of the certificate subject names the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectField {
    /// Common name.
    CommonName,
    /// Organization.
    Organization,
}

/// `[CertificateAuthenticator]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateSettings {
    /// `userName`: `CN` or `O`.
    pub user_name_from: SubjectField,
}
