//! What can go wrong, in words a user can act on.

use std::path::PathBuf;

use remoteproxy_wire::AuthenticationError;

use crate::tunnelproxy::TunnelProxyError;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate, key or CA file cannot be used.
    #[error("cannot use {what} {path}: {reason}")]
    BadFile {
        /// Which file ("CA file", "client certificate", "client key").
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Nothing listens at the address.
    #[error("connection refused by {address}")]
    ConnectionRefused {
        /// The broker address.
        address: String,
    },
    /// The broker could not be reached (name resolution, network, timeout).
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The broker address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The broker's certificate was not accepted.
    #[error("the broker's certificate is not trusted: {reason} ({hint})")]
    TlsVerification {
        /// Why, in words.
        reason: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The WebSocket upgrade was refused.
    #[error("WebSocket upgrade failed: {0}")]
    WebSocket(String),
    /// The broker refused the token.
    #[error("authentication refused: {outcome}")]
    AuthenticationRefused {
        /// The outcome the broker sent.
        outcome: AuthenticationError,
    },
    /// The broker refused a TunnelProxy registration (v2).
    #[error("the broker refused the registration: {error} ({})", .error.meaning())]
    TunnelProxyRefused {
        /// The `tunnelProxyError` the broker answered.
        error: TunnelProxyError,
    },
    /// The [`TunnelServer`](crate::TunnelServer) has stopped; the error that stopped it was
    /// returned before.
    #[error("the tunnel server has stopped")]
    Stopped,
    /// The broker closed the connection while the client waited for its partner.
    #[error("the tunnel partner did not show up")]
    PartnerDidNotShowUp,
    /// The broker closed the connection.
    #[error("the server closed the connection{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    ServerClosed {
        /// The WebSocket close reason, when there is one.
        reason: Option<String>,
    },
    /// The broker answered a request with an error.
    #[error("the server refused the request: {0}")]
    Rejected(String),
    /// The broker sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A flag's value cannot be used (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Any other I/O failure.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
}
