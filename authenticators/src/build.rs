//! Building the configured authenticator, wrapped in the optional cache and throttle.

use std::sync::Arc;

use crate::settings::{AuthenticationSettings, KindSettings};
use crate::{Authenticator, cache, mock, throttle};

/// A setting that cannot be used, named by section and key so the broker can report it as a
/// configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{section}] {key}: {problem}")]
pub struct BuildError {
    /// The INI section.
    pub section: &'static str,
    /// The key.
    pub key: &'static str,
    /// What is wrong (never contains a secret).
    pub problem: String,
}

impl BuildError {
    /// A new error.
    pub fn new(section: &'static str, key: &'static str, problem: impl Into<String>) -> Self {
        BuildError { section, key, problem: problem.into() }
    }
}

/// Builds the authenticator the settings describe. Files are read and checked now, so a broken
/// setup fails at start, not at the first client.
pub fn build(settings: &AuthenticationSettings) -> Result<Arc<dyn Authenticator>, BuildError> {
    let kind: Arc<dyn Authenticator> = match &settings.kind {
        KindSettings::Mock => Arc::new(mock::MockAuthenticator),
        #[cfg(feature = "aws-lambda")]
        KindSettings::AwsLambda(aws) => {
            Arc::new(crate::aws_lambda::AwsLambdaAuthenticator::new(aws, settings.request_timeout)?)
        }
        #[cfg(feature = "http")]
        KindSettings::Http(http) => {
            Arc::new(crate::http::HttpAuthenticator::new(http, settings.request_timeout)?)
        }
        #[cfg(feature = "static-tokens")]
        KindSettings::Static(file) => Arc::new(crate::static_tokens::StaticTokenAuthenticator::new(file)?),
        #[cfg(feature = "jwt")]
        KindSettings::Jwt(jwt) => Arc::new(crate::jwt::JwtAuthenticator::new(jwt)?),
        #[cfg(feature = "certificate")]
        KindSettings::Certificate(certificate) => {
            Arc::new(crate::certificate::CertificateAuthenticator::new(*certificate))
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(BuildError::new(
                "Authentication",
                "type",
                format!(
                    "'{}' is not available in this build (it was compiled without that feature)",
                    other.name()
                ),
            ));
        }
    };
    // The certificate kind does not look at the token, so a token-keyed cache would be wrong.
    let kind = match settings.cache_ttl {
        Some(ttl) if !matches!(settings.kind, KindSettings::Certificate(_)) => {
            Arc::new(cache::Cached::new(kind, ttl)) as Arc<dyn Authenticator>
        }
        _ => kind,
    };
    Ok(match settings.throttle {
        Some(throttle) => Arc::new(throttle::Throttled::new(kind, throttle)),
        None => kind,
    })
}
