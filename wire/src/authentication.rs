//! The outcome of `Authentication.Authenticate`, as the wire protocol names it.

use std::fmt;

/// The `AuthenticationError` enum of the nymea remote proxy protocol.
///
/// The order is the wire order (it appears in `Introspect` output) and must not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthenticationError {
    /// The token was accepted.
    NoError,
    /// Something unexpected went wrong.
    Unknown,
    /// The authenticator did not answer in time.
    Timeout,
    /// The authentication was aborted before it finished.
    Aborted,
    /// The token was checked and refused.
    AuthenticationFailed,
    /// The broker (or the service behind the authenticator) failed, or the broker refused the
    /// client for a reason of its own (pairing rules).
    ProxyError,
}

impl AuthenticationError {
    /// All values in wire order.
    pub const ALL: [AuthenticationError; 6] = [
        AuthenticationError::NoError,
        AuthenticationError::Unknown,
        AuthenticationError::Timeout,
        AuthenticationError::Aborted,
        AuthenticationError::AuthenticationFailed,
        AuthenticationError::ProxyError,
    ];

    /// The exact string sent on the wire, e.g. `AuthenticationErrorNoError`.
    pub const fn wire_name(self) -> &'static str {
        match self {
            AuthenticationError::NoError => "AuthenticationErrorNoError",
            AuthenticationError::Unknown => "AuthenticationErrorUnknown",
            AuthenticationError::Timeout => "AuthenticationErrorTimeout",
            AuthenticationError::Aborted => "AuthenticationErrorAborted",
            AuthenticationError::AuthenticationFailed => "AuthenticationErrorAuthenticationFailed",
            AuthenticationError::ProxyError => "AuthenticationErrorProxyError",
        }
    }
}

impl fmt::Display for AuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}
