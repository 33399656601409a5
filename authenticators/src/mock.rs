//! The mock authenticator: every token is valid.
//!
//! It exists so the broker can be tried locally (`remoteproxy --mock-authenticator`) and tested
//! without a real identity service, like the reference broker's `-m` flag. It must never guard a
//! public broker, which is why the broker only uses it when asked explicitly.

use async_trait::async_trait;

use crate::{AuthRequest, Authenticator, Verdict};

/// Accepts every token; the user name is the client's `name`.
#[derive(Debug, Default, Clone)]
pub struct MockAuthenticator;

#[async_trait]
impl Authenticator for MockAuthenticator {
    fn kind(&self) -> &'static str {
        "mock"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        Verdict::accept(Some(request.facts.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthenticationError, ConnectionFacts, PeerAddress, Token, Transport};

    #[tokio::test]
    async fn accepts_any_token() {
        let request = AuthRequest {
            token: Token::new("anything"),
            facts: ConnectionFacts {
                peer: PeerAddress::Unix,
                transport: Transport::Unix,
                uuid: "u".into(),
                name: "device".into(),
                nonce: String::new(),
                client_certificates: None,
            },
        };
        let verdict = MockAuthenticator.authenticate(&request).await;
        assert_eq!(verdict.error, AuthenticationError::NoError);
        assert_eq!(verdict.user_name.as_deref(), Some("device"));
    }
}
