//! Authenticators decide whether a token may open a tunnel on the broker.
//!
//! The broker hands every `Authentication.Authenticate` call to one [`Authenticator`]. The trait is
//! async because real authenticators ask a remote service (a Lambda function, an HTTP endpoint) and
//! the broker must keep serving other connections meanwhile; the broker bounds every call with its
//! `authenticationTimeout`, so an implementation does not need its own deadline.
//!
//! The outcome is one of the six `AuthenticationError` values of the nymea wire protocol
//! ([`AuthenticationError`]) plus an optional user name for logs and the monitor.
//!
//! Modules, one per kind of authenticator (each but `mock` behind a default Cargo feature):
//! * [`mock`]: accepts every token (for tests and local trials; never for production).
//! * `aws_lambda`: asks an AWS Lambda function (the reference broker's authenticator).
//! * `http`: asks an HTTP endpoint.
//! * `static_tokens`: a file of token hashes, reloaded when it changes.
//! * `jwt`: the token is a JWT signed by a key of a JWKS file.
//! * `certificate`: the TLS client certificate is the credential.
//!
//! Around the chosen kind, [`build()`] puts the optional [`cache`] and the per-address failure
//! [`throttle`]. [`settings`] holds what an operator configures.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod build;
pub mod cache;
pub mod config;
pub mod mock;
pub mod settings;
pub mod throttle;

#[cfg(feature = "aws-lambda")]
pub mod aws_lambda;
#[cfg(feature = "certificate")]
pub mod certificate;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod http_client;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "static-tokens")]
pub mod static_tokens;

#[cfg(test)]
mod test_support;

mod facts;
mod outcome;
mod token;

pub use build::{BuildError, build};
pub use facts::{ConnectionFacts, PeerAddress, Transport};
pub use outcome::{AuthenticationError, Verdict};
pub use settings::AuthenticationSettings;
pub use token::{Secret, Token};

use async_trait::async_trait;

/// One authentication request: the secret token and everything the broker knows about the
/// connection that presented it.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The token from the `Authenticate` call. Its `Debug` output is masked.
    pub token: Token,
    /// Facts about the connection and the identity the client claimed.
    pub facts: ConnectionFacts,
}

/// Decides whether a token may use the broker.
///
/// Implementations must be cheap to share (`Send + Sync`), because one instance serves every
/// connection. They must never log the token.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// A short name of the kind (`mock`, `aws-lambda`, ...), used in logs and metrics labels.
    fn kind(&self) -> &'static str;

    /// Checks one request. Errors of the authenticator itself (service unreachable, bad answer)
    /// are reported as [`AuthenticationError::ProxyError`], not as a Rust error, because the
    /// client gets exactly one of the six outcomes either way.
    async fn authenticate(&self, request: &AuthRequest) -> Verdict;

    /// Re-reads whatever the authenticator loaded from disk (on SIGHUP). Established connections
    /// are not affected. The default has nothing to reload.
    fn reload(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether the verdict may depend on more than the token (uuid, name, nonce, peer,
    /// transport); the cache keys on those too when it does.
    fn verdict_depends_on_facts(&self) -> bool {
        false
    }
}
