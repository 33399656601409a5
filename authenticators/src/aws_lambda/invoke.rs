//! One Lambda `Invoke` call: the request, signed with AWS Signature V4 by `aws-sigv4`, and the
//! reading of the function's answer.

use std::fmt;
use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::credentials::AwsCredentials;
use crate::token::Token;

/// The signing name of the Lambda service.
const SERVICE: &str = "lambda";
/// The header that makes the call synchronous.
pub(crate) const INVOCATION_TYPE_HEADER: &str = "x-amz-invocation-type";
/// Set by Lambda when the function itself failed (the HTTP status is still 200).
const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";
/// Set by the Lambda service on its own errors (`AccessDeniedException`, ...).
const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// Bytes that stay as they are in a path segment: RFC 3986 unreserved characters. Everything
/// else, notably the `:` of an ARN, is percent-encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The invocation URL: `<base>/2015-03-31/functions/<function, percent-encoded>/invocations`.
pub(crate) fn invocation_url(base: &str, function: &str) -> String {
    let function = utf8_percent_encode(function, PATH_SEGMENT);
    format!("{}/2015-03-31/functions/{function}/invocations", base.trim_end_matches('/'))
}

/// The default Lambda endpoint of a region.
pub(crate) fn regional_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://lambda.{region}.{domain}")
}

/// Builds the signed `POST` of `{"token": token}` to `url`.
pub(crate) fn signed_request(
    url: &str,
    region: &str,
    credentials: &AwsCredentials,
    token: &Token,
    time: SystemTime,
) -> Result<http::Request<Vec<u8>>, String> {
    let body = serde_json::to_vec(&serde_json::json!({ "token": token.expose_secret() }))
        .map_err(|e| format!("cannot encode the request: {e}"))?;
    let headers = [("content-type", "application/json"), (INVOCATION_TYPE_HEADER, "RequestResponse")];

    let identity = aws_credential_types::Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose_secret(),
        credentials.session_token.as_ref().map(|t| t.expose_secret().to_string()),
        credentials.expiration,
        "remoteproxy",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot set up request signing: {e}"))?
        .into();
    // The body's digest, not the body: aws-sigv4 prints a `Bytes` body in its trace lines when
    // the environment says `LOG_SIGNABLE_BODY=true`, and the body holds the token.
    let digest = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
    let signable = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Precomputed(digest))
        .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|e| format!("cannot sign the request: {e}"))?.into_parts();

    let mut builder = http::Request::builder().method(http::Method::POST).uri(url);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let mut request = builder.body(body).map_err(|e| format!("cannot build the request: {e}"))?;
    // `x-amz-date`, `authorization` and `x-amz-security-token`. The signature and the session
    // token are marked sensitive, so no Debug output shows them (aws-sigv4 marks only the token).
    for header in instructions.into_parts().0 {
        let mut value = http::HeaderValue::from_str(header.value())
            .map_err(|_| format!("the signer made an invalid {} header", header.name()))?;
        value.set_sensitive(header.sensitive() || header.name() == http::header::AUTHORIZATION);
        request.headers_mut().insert(header.name(), value);
    }
    Ok(request)
}

/// What the function decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `isValid: true`, with the user's email (or Cognito user name) when the answer has one.
    Valid(Option<String>),
    /// `isValid: false`.
    Invalid,
}

/// Why a call gave no answer. The text never quotes the answer body (it could echo the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InvokeError {
    /// The Lambda service answered with an HTTP error.
    Status {
        /// The status code.
        status: u16,
        /// Its `X-Amzn-ErrorType`, when it is a plain name.
        error_type: Option<String>,
    },
    /// The call reached the function, which failed (`X-Amz-Function-Error`).
    FunctionError(Option<String>),
    /// The function's answer is not the expected JSON.
    Unreadable(String),
}

impl InvokeError {
    /// Whether AWS refused the request itself (the credentials may be stale).
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(self, InvokeError::Status { status: 401 | 403, .. })
    }
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeError::Status { status, error_type: Some(error_type) } => {
                write!(f, "the Lambda service answered HTTP {status} ({error_type})")
            }
            InvokeError::Status { status, error_type: None } => {
                write!(f, "the Lambda service answered HTTP {status}")
            }
            InvokeError::FunctionError(Some(kind)) => write!(f, "the function failed ({kind})"),
            InvokeError::FunctionError(None) => write!(f, "the function failed"),
            InvokeError::Unreadable(why) => write!(f, "unreadable answer: {why}"),
        }
    }
}

/// Keeps a header value for a log line only when it is a short plain name (service error types
/// such as `ResourceNotFoundException` or `Unhandled`), never arbitrary text.
fn plain_name(value: Option<&http::HeaderValue>) -> Option<String> {
    // The service's error types may carry a `:<documentation URL>` suffix.
    let value = value?.to_str().ok()?.split(':').next()?;
    let plain = !value.is_empty()
        && value.len() <= 80
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    plain.then(|| value.to_string())
}

/// Reads the result of an `Invoke` call from its status, headers and body.
pub(crate) fn read_answer(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Answer, InvokeError> {
    if !status.is_success() {
        let error_type = plain_name(headers.get(ERROR_TYPE_HEADER));
        return Err(InvokeError::Status { status: status.as_u16(), error_type });
    }
    if headers.contains_key(FUNCTION_ERROR_HEADER) {
        return Err(InvokeError::FunctionError(plain_name(headers.get(FUNCTION_ERROR_HEADER))));
    }
    parse_answer(body)
}

/// Reads `{"isValid":bool, "verifiedData":{"verifiedParsedToken":{"email":..,"cognito:username":..}}}`.
/// `isValid` must be a boolean; the user fields are optional.
pub(crate) fn parse_answer(body: &[u8]) -> Result<Answer, InvokeError> {
    // A `Value` fails only on syntax, and serde_json's syntax errors name a position, not text.
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| InvokeError::Unreadable(format!("not JSON ({e})")))?;
    let Some(answer) = answer.as_object() else {
        return Err(InvokeError::Unreadable("not a JSON object".into()));
    };
    match answer.get("isValid") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Answer::Invalid),
        Some(_) => return Err(InvokeError::Unreadable("isValid is not a boolean".into())),
        None => return Err(InvokeError::Unreadable("no isValid".into())),
    }
    let parsed = answer.get("verifiedData").and_then(|data| data.get("verifiedParsedToken"));
    let text = |key: &str| {
        parsed.and_then(|p| p.get(key)).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
    };
    Ok(Answer::Valid(text("email").or_else(|| text("cognito:username"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Secret;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn urls() {
        assert_eq!(
            invocation_url(&regional_endpoint("eu-west-1"), "system-services-authorizer-dev-checkToken"),
            "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/system-services-authorizer-dev-checkToken/invocations"
        );
        assert_eq!(
            invocation_url("http://127.0.0.1:9000/", "arn:aws:lambda:eu-west-1:123456789012:function:check"),
            "http://127.0.0.1:9000/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Acheck/invocations"
        );
        assert_eq!(regional_endpoint("cn-north-1"), "https://lambda.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn the_request_is_signed_with_the_session_token() {
        let credentials = AwsCredentials::permanent(
            "AKIDEXAMPLE".into(),
            Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            Some(Secret::new("session-token-value")),
        );
        let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160); // 2015-08-30T12:36:00Z
        let url = invocation_url("https://lambda.us-east-1.amazonaws.com", "fn");
        let request =
            signed_request(&url, "us-east-1", &credentials, &Token::new("the-token"), time).unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.body(), br#"{"token":"the-token"}"#);
        let headers = request.headers();
        assert_eq!(headers[INVOCATION_TYPE_HEADER], "RequestResponse");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-amz-date"], "20150830T123600Z");
        assert_eq!(headers["x-amz-security-token"], "session-token-value");
        let authorization = headers["authorization"].to_str().unwrap();
        assert!(
            authorization.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/lambda/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type;x-amz-security-token, \
                 Signature="
            ),
            "{authorization}"
        );
        assert!(headers["authorization"].is_sensitive());
        assert!(headers["x-amz-security-token"].is_sensitive());
        let printed = format!("{request:?}");
        for secret in ["session-token-value", "wJalrXUtnFEMI", &authorization[authorization.len() - 64..]] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn answers() {
        let valid = br#"{"isValid":true,"verifiedData":{"verifiedParsedToken":{"email":"a@example.com","cognito:username":"abc"}}}"#;
        assert_eq!(parse_answer(valid), Ok(Answer::Valid(Some("a@example.com".into()))));
        let cognito_only =
            br#"{"isValid":true,"verifiedData":{"verifiedParsedToken":{"cognito:username":"abc"}}}"#;
        assert_eq!(parse_answer(cognito_only), Ok(Answer::Valid(Some("abc".into()))));
        assert_eq!(parse_answer(br#"{"isValid":true}"#), Ok(Answer::Valid(None)));
        assert_eq!(parse_answer(br#"{"isValid":false}"#), Ok(Answer::Invalid));
        for unreadable in [
            &b"{"[..],
            b"",
            b"[]",
            b"null",
            br#"{}"#,
            br#"{"isValid":"true"}"#,
            br#"{"errorMessage":"boom","errorType":"Error"}"#,
        ] {
            assert!(matches!(parse_answer(unreadable), Err(InvokeError::Unreadable(_))), "{unreadable:?}");
        }
    }

    #[test]
    fn service_and_function_errors() {
        let mut headers = http::HeaderMap::new();
        headers
            .insert(ERROR_TYPE_HEADER, "AccessDeniedException:http://internal.amazon.com/".parse().unwrap());
        let error = read_answer(http::StatusCode::FORBIDDEN, &headers, b"{}").unwrap_err();
        assert_eq!(
            error,
            InvokeError::Status { status: 403, error_type: Some("AccessDeniedException".into()) }
        );
        assert!(error.is_refusal());
        let error =
            read_answer(http::StatusCode::INTERNAL_SERVER_ERROR, &http::HeaderMap::new(), b"").unwrap_err();
        assert_eq!(error.to_string(), "the Lambda service answered HTTP 500");
        assert!(!error.is_refusal());

        let mut headers = http::HeaderMap::new();
        headers.insert(FUNCTION_ERROR_HEADER, "Unhandled".parse().unwrap());
        let body = br#"{"isValid":true}"#;
        assert_eq!(
            read_answer(http::StatusCode::OK, &headers, body),
            Err(InvokeError::FunctionError(Some("Unhandled".into())))
        );
        headers.insert(FUNCTION_ERROR_HEADER, "free text with the-token".parse().unwrap());
        assert_eq!(read_answer(http::StatusCode::OK, &headers, body), Err(InvokeError::FunctionError(None)));
        assert_eq!(read_answer(http::StatusCode::OK, &http::HeaderMap::new(), body), Ok(Answer::Valid(None)));
    }
}
