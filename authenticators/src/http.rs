//! The `http` authenticator: asks an HTTP(S) endpoint of the operator's own.
//!
//! Every authentication POSTs one JSON object to the configured URL:
//!
//! ```json
//! {"token":"...","uuid":"...","name":"...","nonce":"...","peerAddress":"192.0.2.1","transport":"TCP"}
//! ```
//!
//! `peerAddress` is the client's IP address without the port (empty for the unix socket),
//! `transport` one of `TCP`, `WebSocket`, `unix`. When `[HttpAuthenticator] authorization` is set,
//! its value is sent as the `Authorization` header.
//!
//! The answer decides:
//! * 2xx with `{"valid":true,"userName":"..."}` (`userName` optional): accepted;
//! * 2xx with `{"valid":false}`, or status 401 or 403: `AuthenticationFailed`;
//! * anything else (another status, a body that is not that JSON, an unreachable endpoint, no
//!   answer within the request timeout): `ProxyError`.
//!
//! The client comes from [`crate::http_client`]: pooled keep-alive connections, a per-request
//! timeout below the broker's `authenticationTimeout` (so a hung endpoint is a `ProxyError`, not a
//! `Timeout`), system roots or the configured CA bundle.
//!
//! Neither the token nor the `Authorization` value is ever logged: the header is marked sensitive,
//! log lines name the endpoint without user info or query, and the endpoint's answer is not echoed
//! (it could repeat the token).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::settings::HttpSettings;
use crate::{AuthRequest, AuthenticationError, Authenticator, BuildError, PeerAddress, Verdict};

const SECTION: &str = "HttpAuthenticator";

/// The largest answer body read; a longer one is a `ProxyError` (the expected JSON is tiny).
const MAX_BODY: usize = 64 * 1024;

/// Asks an HTTP endpoint whether a token is valid.
pub struct HttpAuthenticator {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The endpoint for log lines: scheme, host, port and path only.
    shown_url: String,
    /// Marked sensitive, so it never shows in `Debug` output of the HTTP stack.
    authorization: Option<HeaderValue>,
}

/// The JSON body POSTed for every authentication.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    token: &'a str,
    uuid: &'a str,
    name: &'a str,
    nonce: &'a str,
    peer_address: String,
    transport: &'static str,
}

/// The expected 2xx answer. Unknown fields are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    valid: bool,
    #[serde(default)]
    user_name: Option<String>,
}

impl HttpAuthenticator {
    /// Checks the settings and builds the pooled client. `request_timeout` bounds each request
    /// (connect, send, the whole answer).
    pub fn new(settings: &HttpSettings, request_timeout: Duration) -> Result<Self, BuildError> {
        let url = reqwest::Url::parse(settings.url.trim())
            .map_err(|e| BuildError::new(SECTION, "url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BuildError::new(
                SECTION,
                "url",
                format!("the scheme must be http or https, not \"{}\"", url.scheme()),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(BuildError::new(SECTION, "url", "the URL has no host"));
        }
        let authorization = match &settings.authorization {
            Some(secret) => {
                let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
                    BuildError::new(
                        SECTION,
                        "authorization",
                        "not a valid HTTP header value (control characters?)",
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let client = crate::http_client::client(
            settings.ca_file.as_deref(),
            request_timeout,
            crate::http_client::Proxy::FromEnvironment,
            SECTION,
            "caCertificate",
        )?;
        let shown_url = shown_url(&url);
        Ok(HttpAuthenticator { client, url, shown_url, authorization })
    }

    /// Asks the endpoint; `Err` carries a log text (without secrets) for a `ProxyError`.
    async fn ask(&self, request: &AuthRequest) -> Result<Verdict, String> {
        let facts = &request.facts;
        let body = Request {
            token: request.token.expose_secret(),
            uuid: &facts.uuid,
            name: &facts.name,
            nonce: &facts.nonce,
            peer_address: match facts.peer {
                PeerAddress::Ip(addr) => addr.ip().to_canonical().to_string(),
                PeerAddress::Unix => String::new(),
            },
            transport: facts.transport.as_str(),
        };
        let mut post = self.client.post(self.url.clone()).json(&body);
        if let Some(value) = &self.authorization {
            post = post.header(AUTHORIZATION, value.clone());
        }
        let mut response = post.send().await.map_err(describe)?;
        let status = response.status();
        // Read the (bounded) body in every case, so the connection can go back to the pool.
        let mut body = Vec::new();
        let mut too_long = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        too_long = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) if status.is_success() => return Err(describe(error)),
                // The status alone decides; a broken body of a refusal changes nothing.
                Err(_) => break,
            }
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Ok(Verdict::refuse(AuthenticationError::AuthenticationFailed));
        }
        if !status.is_success() {
            return Err(format!("the endpoint answered with status {status}"));
        }
        if too_long {
            return Err(format!("the endpoint answered {status} with a body over {MAX_BODY} bytes"));
        }
        // serde's message could quote the body (which could repeat the token): only say where.
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "the endpoint answered {status} without the expected JSON {{\"valid\":bool,\"userName\":string}} \
                 ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        Ok(match answer.valid {
            true => Verdict::accept(answer.user_name),
            false => Verdict::refuse(AuthenticationError::AuthenticationFailed),
        })
    }
}

/// A transport error as a log text: no URL (it could carry user info), but the causes (refused,
/// timed out, certificate problems).
fn describe(error: reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "no answer within the request timeout"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let error = error.without_url();
    let mut text = format!("{what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `scheme://host:port/path`, without user info, query or fragment.
fn shown_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

#[async_trait]
impl Authenticator for HttpAuthenticator {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        match self.ask(request).await {
            Ok(verdict) => {
                tracing::debug!(
                    endpoint = %self.shown_url,
                    outcome = %verdict.error,
                    user = verdict.user_name.as_deref().unwrap_or(""),
                    "http authenticator answered"
                );
                verdict
            }
            Err(problem) => {
                tracing::warn!(endpoint = %self.shown_url, %problem, "http authenticator: endpoint failed");
                Verdict::refuse(AuthenticationError::ProxyError)
            }
        }
    }

    /// The endpoint sees uuid, name, nonce, peer and transport, so its verdict may depend on them.
    fn verdict_depends_on_facts(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    fn settings(url: &str) -> HttpSettings {
        HttpSettings { url: url.to_string(), authorization: None, ca_file: None }
    }

    fn build_error(settings: &HttpSettings) -> BuildError {
        match HttpAuthenticator::new(settings, Duration::from_secs(1)) {
            Ok(_) => panic!("expected a build error"),
            Err(error) => error,
        }
    }

    #[tokio::test]
    async fn urls_must_be_http_or_https_with_a_host() {
        for bad in ["ftp://example.com/x", "not a url", "example.com/auth", "file:///etc/passwd"] {
            let error = build_error(&settings(bad));
            assert_eq!((error.section, error.key), ("HttpAuthenticator", "url"), "{bad}: {error}");
        }
        assert!(HttpAuthenticator::new(&settings("http://127.0.0.1:1/auth"), Duration::from_secs(1)).is_ok());
        assert!(
            HttpAuthenticator::new(&settings("https://auth.example.com/check"), Duration::from_secs(1))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_bad_authorization_value_is_named_but_not_shown() {
        let mut s = settings("http://127.0.0.1:1/auth");
        s.authorization = Some(Secret::new("Bearer sec\nret-value"));
        let error = build_error(&s);
        assert_eq!((error.section, error.key), ("HttpAuthenticator", "authorization"));
        assert!(!error.to_string().contains("ret-value"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_ca_file_is_a_build_error() {
        let mut s = settings("https://127.0.0.1:1/auth");
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let error = build_error(&s);
        assert_eq!((error.section, error.key), ("HttpAuthenticator", "caCertificate"), "{error}");
    }

    #[test]
    fn logged_urls_drop_user_info_and_query() {
        let url = reqwest::Url::parse("https://user:pw@auth.example.com:8443/check?key=abc#x").unwrap();
        assert_eq!(shown_url(&url), "https://auth.example.com:8443/check");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_proxy_error_and_the_verdict_depends_on_facts() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let auth =
            HttpAuthenticator::new(&settings("http://127.0.0.1:1/auth"), Duration::from_secs(2)).unwrap();
        assert!(auth.verdict_depends_on_facts());
        let verdict = auth.authenticate(&crate::test_support::request("t", "n")).await;
        assert_eq!(verdict, Verdict::refuse(AuthenticationError::ProxyError));
    }
}
