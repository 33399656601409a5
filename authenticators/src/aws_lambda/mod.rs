//! The reference broker's authenticator: an AWS Lambda function checks the token.
//!
//! Each `Authenticate` is one synchronous `Invoke` (`POST /2015-03-31/functions/<fn>/invocations`,
//! `X-Amz-Invocation-Type: RequestResponse`, body `{"token":"<token>"}`), signed with AWS
//! Signature V4. The function answers
//! `{"isValid":bool, "verifiedData":{"verifiedParsedToken":{"email":..,"cognito:username":..}}}`:
//!
//! * `isValid: true` → `NoError`, the user being the email (else the Cognito user name);
//! * `isValid: false` → `AuthenticationFailed`;
//! * anything else (no credentials, unreachable service, HTTP error, function error, unreadable
//!   answer, no answer within the request timeout) → `ProxyError` at once. The reference left
//!   network errors to the broker's `authenticationTimeout`.
//!
//! Credentials come from the environment or the instance metadata service (`credentials.rs`);
//! the request and the answer are in `invoke.rs`. Only the token is sent, so the verdict does not
//! depend on the connection facts.

mod credentials;
mod invoke;

pub use credentials::AwsEnvironment;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::http_client::Proxy;
use crate::settings::AwsLambdaSettings;
use crate::{AuthRequest, AuthenticationError, Authenticator, BuildError, Token, Verdict};
use credentials::{CredentialsProvider, Imds, RefreshingCache, error_chain, read_limited};
use invoke::Answer;

/// The INI section of the settings, for errors.
const SECTION: &str = "AWS";
/// Longest a metadata request may take (the service is on the local link; 1 s, as in the AWS
/// SDKs), so a missing IMDSv2 and the IMDSv1 attempt after it leave time for the Lambda call.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest Lambda answer read (the service's own limit is 6 MB; ours is a small JSON object).
const MAX_ANSWER: usize = 1024 * 1024;

/// Asks an AWS Lambda function whether a token is valid.
pub struct AwsLambdaAuthenticator {
    client: reqwest::Client,
    region: String,
    function: String,
    /// The invocation URL.
    url: String,
    credentials: CredentialsProvider,
    /// Bound of one whole check (credentials and the call).
    deadline: Duration,
}

impl AwsLambdaAuthenticator {
    /// Checks the settings and sets up the client; credentials come from this process's
    /// environment, else from the instance metadata service. Nothing is fetched yet.
    pub fn new(settings: &AwsLambdaSettings, request_timeout: Duration) -> Result<Self, BuildError> {
        Self::with_environment(settings, request_timeout, AwsEnvironment::from_process())
    }

    /// Like [`AwsLambdaAuthenticator::new`], with the `AWS_*` variables given instead of read from
    /// the process environment (tests).
    pub fn with_environment(
        settings: &AwsLambdaSettings,
        request_timeout: Duration,
        environment: AwsEnvironment,
    ) -> Result<Self, BuildError> {
        let region = settings.region.trim();
        if region.is_empty()
            || !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(BuildError::new(
                SECTION,
                "region",
                format!("\"{region}\" is not an AWS region name (like eu-west-1)"),
            ));
        }
        let function = settings.function.trim();
        if function.is_empty() {
            return Err(BuildError::new(SECTION, "authorizerLambdaFunction", "the function name is empty"));
        }
        let base = match settings.lambda_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            Some(endpoint) => {
                http_url(endpoint, "lambdaEndpoint")?;
                endpoint.to_string()
            }
            None => invoke::regional_endpoint(region),
        };
        let url = invoke::invocation_url(&base, function);
        http::Uri::try_from(url.as_str()).map_err(|e| {
            BuildError::new(SECTION, "authorizerLambdaFunction", format!("no valid URL results: {e}"))
        })?;
        let client = crate::http_client::client(
            None,
            request_timeout,
            Proxy::FromEnvironment,
            SECTION,
            "lambdaEndpoint",
        )?;

        let credentials = match environment.credentials() {
            Some(fixed) => {
                tracing::info!(
                    function,
                    region,
                    "AWS Lambda authenticator: credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                );
                CredentialsProvider::Fixed(Arc::new(fixed))
            }
            None => {
                if environment.is_partial() {
                    tracing::warn!(
                        "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; \
                         using the instance metadata service instead"
                    );
                }
                let credentials_url = http_url(settings.credentials_url.trim(), "awsCredentialsUrl")?;
                tracing::info!(
                    function,
                    region,
                    credentials_url = %credentials_url,
                    "AWS Lambda authenticator: credentials from the instance metadata service"
                );
                // The metadata service is link-local: a proxy from the environment must not see it.
                let imds_client = crate::http_client::client(
                    None,
                    request_timeout,
                    Proxy::Never,
                    SECTION,
                    "awsCredentialsUrl",
                )?;
                let imds = Imds::new(imds_client, &credentials_url, IMDS_TIMEOUT.min(request_timeout));
                CredentialsProvider::Fetched(RefreshingCache::new(Box::new(imds), Arc::new(SystemTime::now)))
            }
        };
        Ok(AwsLambdaAuthenticator {
            client,
            region: region.to_string(),
            function: function.to_string(),
            url,
            credentials,
            deadline: request_timeout,
        })
    }

    /// The whole check, unbounded (the caller bounds it).
    async fn check(&self, token: &Token) -> Verdict {
        let credentials = match self.credentials.get().await {
            Ok(credentials) => credentials,
            Err(error) => {
                tracing::warn!(%error, "AWS Lambda authenticator: no AWS credentials");
                return Verdict::refuse(AuthenticationError::ProxyError);
            }
        };
        let request =
            match invoke::signed_request(&self.url, &self.region, &credentials, token, SystemTime::now()) {
                Ok(request) => request,
                Err(error) => {
                    tracing::warn!(%error, "AWS Lambda authenticator: cannot build the request");
                    return Verdict::refuse(AuthenticationError::ProxyError);
                }
            };
        let request = match reqwest::Request::try_from(request) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "AWS Lambda authenticator: cannot build the request");
                return Verdict::refuse(AuthenticationError::ProxyError);
            }
        };
        tracing::debug!(function = %self.function, "invoking the AWS Lambda authorizer");
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(
                    function = %self.function,
                    error = %error_chain(&error),
                    "AWS Lambda authenticator: the Lambda service cannot be reached"
                );
                return Verdict::refuse(AuthenticationError::ProxyError);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match read_limited(response, MAX_ANSWER).await {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "AWS Lambda authenticator: cannot read the answer");
                return Verdict::refuse(AuthenticationError::ProxyError);
            }
        };
        match invoke::read_answer(status, &headers, &body) {
            Ok(Answer::Valid(user)) => {
                tracing::debug!(
                    user = user.as_deref().unwrap_or("-"),
                    "the AWS Lambda authorizer accepted the token"
                );
                Verdict::accept(user)
            }
            Ok(Answer::Invalid) => {
                tracing::debug!("the AWS Lambda authorizer refused the token");
                Verdict::refuse(AuthenticationError::AuthenticationFailed)
            }
            Err(error) => {
                if error.is_refusal() {
                    self.credentials.invalidate(&credentials).await;
                }
                tracing::warn!(function = %self.function, %error, "AWS Lambda authenticator: no verdict");
                Verdict::refuse(AuthenticationError::ProxyError)
            }
        }
    }
}

/// An http(s) URL with a host, or an error naming `key`.
fn http_url(text: &str, key: &'static str) -> Result<reqwest::Url, BuildError> {
    let url =
        reqwest::Url::parse(text).map_err(|e| BuildError::new(SECTION, key, format!("\"{text}\": {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(BuildError::new(SECTION, key, format!("\"{text}\" is not an http:// or https:// URL")));
    }
    Ok(url)
}

#[async_trait]
impl Authenticator for AwsLambdaAuthenticator {
    fn kind(&self) -> &'static str {
        "aws-lambda"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        match tokio::time::timeout(self.deadline, self.check(&request.token)).await {
            Ok(verdict) => verdict,
            Err(_) => {
                tracing::warn!(
                    function = %self.function,
                    "AWS Lambda authenticator: no verdict within {:?}",
                    self.deadline
                );
                Verdict::refuse(AuthenticationError::ProxyError)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AwsLambdaSettings {
        AwsLambdaSettings {
            region: "eu-west-1".into(),
            function: "system-services-authorizer-dev-checkToken".into(),
            credentials_url: "http://169.254.169.254/latest/meta-data/iam/security-credentials/Role".into(),
            lambda_endpoint: None,
        }
    }

    fn build(settings: &AwsLambdaSettings) -> Result<AwsLambdaAuthenticator, BuildError> {
        AwsLambdaAuthenticator::with_environment(settings, Duration::from_secs(1), AwsEnvironment::empty())
    }

    #[test]
    fn settings_are_checked() {
        let aws = build(&settings()).unwrap();
        assert_eq!(
            aws.url,
            "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/system-services-authorizer-dev-checkToken/invocations"
        );
        assert!(!aws.verdict_depends_on_facts());
        assert_eq!(aws.kind(), "aws-lambda");

        let with_endpoint =
            build(&AwsLambdaSettings { lambda_endpoint: Some("http://127.0.0.1:9/".into()), ..settings() })
                .unwrap();
        assert!(with_endpoint.url.starts_with("http://127.0.0.1:9/2015-03-31/functions/"));

        let error = |settings: AwsLambdaSettings| build(&settings).err().unwrap();
        assert_eq!(error(AwsLambdaSettings { region: "".into(), ..settings() }).key, "region");
        assert_eq!(error(AwsLambdaSettings { region: "eu west".into(), ..settings() }).key, "region");
        assert_eq!(
            error(AwsLambdaSettings { function: " ".into(), ..settings() }).key,
            "authorizerLambdaFunction"
        );
        assert_eq!(
            error(AwsLambdaSettings { lambda_endpoint: Some("ftp://x".into()), ..settings() }).key,
            "lambdaEndpoint"
        );
        assert_eq!(
            error(AwsLambdaSettings { credentials_url: "169.254.169.254/x".into(), ..settings() }).key,
            "awsCredentialsUrl"
        );
    }

    #[test]
    fn environment_keys_make_the_metadata_url_irrelevant() {
        let environment = AwsEnvironment::from_lookup(|name| match name {
            "AWS_ACCESS_KEY_ID" => Some("AKID".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
            _ => None,
        });
        let aws = AwsLambdaAuthenticator::with_environment(
            &AwsLambdaSettings { credentials_url: "not a url".into(), ..settings() },
            Duration::from_secs(1),
            environment,
        )
        .unwrap();
        assert!(matches!(aws.credentials, CredentialsProvider::Fixed(_)));
    }

    #[tokio::test]
    async fn without_credentials_the_verdict_is_a_proxy_error_at_once() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let aws = build(&AwsLambdaSettings {
            credentials_url: "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/Role".into(),
            ..settings()
        })
        .unwrap();
        let verdict = aws.authenticate(&crate::test_support::request("t", "")).await;
        assert_eq!(verdict, Verdict::refuse(AuthenticationError::ProxyError));
    }
}
