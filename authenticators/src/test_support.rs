//! Small fakes for the unit tests of the decorators.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use crate::{
    AuthRequest, AuthenticationError, Authenticator, ConnectionFacts, PeerAddress, Token, Transport, Verdict,
};

/// Answers with a fixed outcome and counts the calls.
pub struct Counting {
    outcome: AuthenticationError,
    calls: AtomicUsize,
}

impl Counting {
    pub fn new(outcome: AuthenticationError) -> Self {
        Counting { outcome, calls: AtomicUsize::new(0) }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Authenticator for Counting {
    fn kind(&self) -> &'static str {
        "counting"
    }

    async fn authenticate(&self, _request: &AuthRequest) -> Verdict {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Verdict { error: self.outcome, user_name: None }
    }
}

/// A request from 192.0.2.1 over TCP.
pub fn request(token: &str, nonce: &str) -> AuthRequest {
    let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    AuthRequest {
        token: Token::new(token),
        facts: ConnectionFacts {
            peer: PeerAddress::Ip(peer),
            transport: Transport::Tcp,
            uuid: "uuid".into(),
            name: "name".into(),
            nonce: nonce.into(),
            client_certificates: None,
        },
    }
}
