//! The outcome of an authentication, as the wire protocol names it.

pub use remoteproxy_wire::AuthenticationError;

/// What an authenticator decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The outcome sent to the client.
    pub error: AuthenticationError,
    /// The user the token belongs to, when the authenticator knows it (for logs and the monitor).
    pub user_name: Option<String>,
}

impl Verdict {
    /// An accepting verdict.
    pub fn accept(user_name: Option<String>) -> Self {
        Verdict { error: AuthenticationError::NoError, user_name }
    }

    /// A refusing verdict with the given outcome.
    pub fn refuse(error: AuthenticationError) -> Self {
        Verdict { error, user_name: None }
    }
}
