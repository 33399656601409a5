//! The fake AWS: the EC2 instance metadata service (IMDSv2 or IMDSv1) and the Lambda Invoke API
//! in one HTTP server on 127.0.0.1, checking every signature.

use super::*;

// ---------------------------------------------------------------------------------------------
// The fake AWS.

/// How the fake plays the instance metadata service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Imds {
    /// IMDSv2: a session token is required for the credentials.
    V2,
    /// IMDSv1 only: the token PUT is answered 404, the credentials need no token.
    V1Only,
    /// No role: the credentials path is answered 404.
    NoRole,
}

/// One set of keys the fake knows.
#[derive(Clone)]
pub(super) struct Keys {
    pub(super) access_key_id: String,
    pub(super) secret: String,
    pub(super) session_token: Option<String>,
    pub(super) expiration: Option<SystemTime>,
}

/// One Lambda call the fake received.
#[derive(Debug, Clone)]
pub(super) struct LambdaCall {
    /// The key that signed it, when the signature was good.
    pub(super) signed_by: Result<String, String>,
    pub(super) token: Option<String>,
}

pub(super) struct State {
    pub(super) function: String,
    pub(super) imds: Imds,
    /// Lifetime of the credentials the metadata service hands out.
    pub(super) lifetime: Duration,
    pub(super) keys: Mutex<HashMap<String, Keys>>,
    /// Keys handed out by the metadata service, in order, with the time of the fetch.
    pub(super) issued: Mutex<Vec<(String, SystemTime)>>,
    pub(super) imds_tokens: Mutex<Vec<String>>,
    pub(super) token_puts: AtomicUsize,
    pub(super) credential_gets: AtomicUsize,
    pub(super) lambda_calls: Mutex<Vec<LambdaCall>>,
    /// Every secret the fake knows of (keys, tokens, signatures), for the log check.
    pub(super) secrets: Mutex<Vec<String>>,
}

pub(super) struct FakeAws {
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<State>,
    pub(super) task: JoinHandle<()>,
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn random_hex(bytes: usize) -> String {
    hex(&random_bytes(bytes))
}

pub(super) type HttpResponse = Response<Full<Bytes>>;

pub(super) fn respond(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

impl FakeAws {
    pub(super) async fn start(imds: Imds, function: &str, lifetime: Duration) -> FakeAws {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            function: function.to_string(),
            imds,
            lifetime,
            keys: Default::default(),
            issued: Default::default(),
            imds_tokens: Default::default(),
            token_puts: AtomicUsize::new(0),
            credential_gets: AtomicUsize::new(0),
            lambda_calls: Default::default(),
            secrets: Default::default(),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeAws { addr, state, task }
    }

    pub(super) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(super) fn credentials_url(&self) -> String {
        format!("{}{CREDENTIALS_PATH}", self.base())
    }

    /// Registers keys (as if from the environment) and returns them.
    pub(super) fn static_keys(&self, with_session_token: bool) -> Keys {
        let keys = Keys {
            access_key_id: format!("AKIAENV{}", random_hex(6).to_uppercase()),
            secret: format!("env-secret-{}", random_hex(16)),
            session_token: with_session_token.then(|| format!("env-session-{}", random_hex(16))),
            expiration: None,
        };
        self.state.remember(&keys);
        keys
    }

    pub(super) fn lambda_calls(&self) -> Vec<LambdaCall> {
        self.state.lambda_calls.lock().unwrap().clone()
    }

    pub(super) fn issued(&self) -> Vec<(String, SystemTime)> {
        self.state.issued.lock().unwrap().clone()
    }

    pub(super) fn expiration_of(&self, access_key_id: &str) -> SystemTime {
        self.state.keys.lock().unwrap()[access_key_id].expiration.unwrap()
    }

    pub(super) fn token_puts(&self) -> usize {
        self.state.token_puts.load(Ordering::SeqCst)
    }

    pub(super) fn credential_gets(&self) -> usize {
        self.state.credential_gets.load(Ordering::SeqCst)
    }

    /// Every Lambda call was correctly signed, by the keys named.
    pub(super) fn assert_all_signed_by(&self, keys: &[&str]) {
        let calls = self.lambda_calls();
        assert_eq!(calls.len(), keys.len(), "{calls:?}");
        for (call, key) in calls.iter().zip(keys) {
            assert_eq!(call.signed_by.as_deref(), Ok(*key), "{calls:?}");
        }
    }

    /// No key, token or signature the fake saw, and none of `tokens`, is in any log line.
    pub(super) fn assert_secrets_not_logged(&self, tokens: &[&str]) {
        let mut secrets: Vec<String> = self.state.secrets.lock().unwrap().clone();
        secrets.extend(tokens.iter().map(|t| t.to_string()));
        assert!(!secrets.is_empty());
        assert_not_logged(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

impl State {
    pub(super) fn remember(&self, keys: &Keys) {
        let mut secrets = self.secrets.lock().unwrap();
        secrets.push(keys.secret.clone());
        secrets.extend(keys.session_token.clone());
        self.keys.lock().unwrap().insert(keys.access_key_id.clone(), keys.clone());
    }

    pub(super) async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        let (parts, body) = request.into_parts();
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return respond(StatusCode::BAD_REQUEST, "unreadable body");
        };
        let path = parts.uri.path().to_string();
        match (&parts.method, path.as_str()) {
            (&Method::PUT, "/latest/api/token") => self.imds_token(&parts.headers),
            (&Method::GET, CREDENTIALS_PATH) => self.imds_credentials(&parts.headers),
            (&Method::POST, _) if path.starts_with("/2015-03-31/functions/") => {
                self.lambda(&parts.method, &path, parts.uri.query(), &parts.headers, &body)
            }
            _ => respond(StatusCode::NOT_FOUND, "no such resource"),
        }
    }

    pub(super) fn imds_token(&self, headers: &HeaderMap) -> HttpResponse {
        self.token_puts.fetch_add(1, Ordering::SeqCst);
        if self.imds != Imds::V2 {
            return respond(StatusCode::NOT_FOUND, "");
        }
        let ttl = headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        if !matches!(ttl, Some(1..=21600)) {
            return respond(StatusCode::BAD_REQUEST, "missing or invalid token TTL");
        }
        let token = format!("imds-token-{}", random_hex(16));
        self.imds_tokens.lock().unwrap().push(token.clone());
        self.secrets.lock().unwrap().push(token.clone());
        respond(StatusCode::OK, token)
    }

    pub(super) fn imds_credentials(&self, headers: &HeaderMap) -> HttpResponse {
        self.credential_gets.fetch_add(1, Ordering::SeqCst);
        match self.imds {
            Imds::NoRole => return respond(StatusCode::NOT_FOUND, "no role"),
            Imds::V2 => {
                let token = headers.get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok());
                let known = token.is_some_and(|t| self.imds_tokens.lock().unwrap().iter().any(|k| k == t));
                if !known {
                    return respond(StatusCode::UNAUTHORIZED, "IMDSv2 session token required");
                }
            }
            Imds::V1Only => {}
        }
        let now = SystemTime::now();
        let n = self.issued.lock().unwrap().len() + 1;
        let keys = Keys {
            access_key_id: format!("ASIAFAKE{n}{}", random_hex(4).to_uppercase()),
            secret: format!("imds-secret-{n}-{}", random_hex(16)),
            session_token: Some(format!("imds-session-{n}-{}", random_hex(24))),
            expiration: Some(now + self.lifetime),
        };
        self.remember(&keys);
        self.issued.lock().unwrap().push((keys.access_key_id.clone(), now));
        // Whole seconds, rounded down, as the real service writes it.
        let expiration = rfc3339(keys.expiration.unwrap());
        let expiration_secs = keys.expiration.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs();
        self.keys.lock().unwrap().get_mut(&keys.access_key_id).unwrap().expiration =
            Some(UNIX_EPOCH + Duration::from_secs(expiration_secs));
        let document = json!({
            "Code": "Success",
            "LastUpdated": rfc3339(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": keys.access_key_id,
            "SecretAccessKey": keys.secret,
            "Token": keys.session_token,
            "Expiration": expiration,
        });
        respond(StatusCode::OK, document.to_string())
    }

    pub(super) fn lambda(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> HttpResponse {
        let expected_path = format!("/2015-03-31/functions/{}/invocations", uri_encode(&self.function));
        if path != expected_path || query.is_some() {
            return respond(StatusCode::NOT_FOUND, "Function not found");
        }
        let request = SignedRequest {
            method: method.as_str(),
            path,
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
            body,
        };
        if let Some(signature) = request.header("authorization").and_then(|a| a.rsplit("Signature=").next()) {
            self.secrets.lock().unwrap().push(signature.to_string());
        }
        let token = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_object().filter(|o| o.len() == 1)?.get("token")?.as_str().map(String::from));
        let secrets: HashMap<String, String> =
            self.keys.lock().unwrap().iter().map(|(id, k)| (id.clone(), k.secret.clone())).collect();
        let mut signed_by = verify_signature(&request, &secrets, REGION, "lambda", SystemTime::now());
        // The session token must be the one of the key, and the key must not have expired.
        if let Ok(key) = &signed_by {
            let keys = self.keys.lock().unwrap()[key].clone();
            if request.header("x-amz-security-token") != keys.session_token.as_deref() {
                signed_by = Err("wrong or missing x-amz-security-token".into());
            } else if keys.expiration.is_some_and(|e| SystemTime::now() >= e) {
                signed_by = Err("the security token included in the request is expired".into());
            }
        }
        self.lambda_calls
            .lock()
            .unwrap()
            .push(LambdaCall { signed_by: signed_by.clone(), token: token.clone() });
        if let Err(why) = signed_by {
            let mut response = respond(StatusCode::FORBIDDEN, json!({ "message": why }).to_string());
            response.headers_mut().insert("x-amzn-errortype", "InvalidSignatureException".parse().unwrap());
            return response;
        }
        if request.header("x-amz-invocation-type") != Some("RequestResponse")
            || request.header("content-type") != Some("application/json")
        {
            return respond(StatusCode::BAD_REQUEST, "wrong invocation type or content type");
        }
        let Some(token) = token else {
            return respond(StatusCode::BAD_REQUEST, "the payload is not {\"token\": ...}");
        };
        // The answer depends on how the token starts.
        if token.starts_with("valid") {
            let answer = json!({
                "isValid": true,
                "verifiedData": {
                    "vendorId": "vendor",
                    "userPoolId": "pool",
                    "verifiedParsedToken": {"email": EMAIL, "cognito:username": "user-1"},
                },
            });
            respond(StatusCode::OK, answer.to_string())
        } else if token.starts_with("invalid") {
            respond(StatusCode::OK, json!({"isValid": false}).to_string())
        } else if token.starts_with("malformed") {
            respond(StatusCode::OK, format!("{{\"isValid\": tru {token}"))
        } else if token.starts_with("error500") {
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{{\"message\":\"internal error for {token}\"}}"),
            )
        } else if token.starts_with("function-error") {
            let mut response = respond(
                StatusCode::OK,
                json!({"errorMessage": format!("cannot check {token}"), "errorType": "Error"}).to_string(),
            );
            response.headers_mut().insert("x-amz-function-error", "Unhandled".parse().unwrap());
            response
        } else {
            respond(StatusCode::OK, json!({"isValid": false}).to_string())
        }
    }
}
