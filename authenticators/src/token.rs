//! The secret token, in a newtype that cannot leak through `Debug` or `Display`.

use std::fmt;

/// A client's authentication token.
///
/// Tokens must never reach a log line, a monitor snapshot or an error message; wrapping them here
/// makes `{:?}` print `MASKED` and gives the raw value only through an explicitly named method.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a raw token.
    pub fn new(raw: impl Into<String>) -> Self {
        Token(raw.into())
    }

    /// The raw token, for the code that must check it. The name makes every use easy to audit.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the token is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A configured secret (an `Authorization` header value, a key): like [`Token`], it prints as
/// `MASKED` and is only read through [`Secret::expose_secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(raw: impl Into<String>) -> Self {
        Secret(raw.into())
    }

    /// The raw secret, for the one place that must send it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(MASKED)")
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(MASKED)")
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn debug_output_hides_the_token() {
        let token = Token::new("super-secret");
        let printed = format!("{token:?}");
        assert!(!printed.contains("super-secret"), "{printed}");
        assert_eq!(token.expose_secret(), "super-secret");
    }
}
