//! How a configuration key is declared (section, name, type, default, doc), and the declarations of
//! the authentication sections. The broker declares its own sections with the same types, and one
//! list of both is what its parser, its unknown-name messages and `--print-config` read. The type
//! lives here because both crates declare keys and the broker depends on this crate, not the other
//! way round.

/// What a key's value is, as an operator writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// Text that is never shown back (a credential).
    Secret,
    /// `true` or `false`.
    Flag,
    /// A file path.
    Path,
    /// A URL.
    Url,
    /// Whole milliseconds.
    Millis,
    /// Whole seconds.
    Seconds,
    /// A whole number.
    Count,
    /// A size in bytes.
    Bytes,
    /// An IP address literal.
    Host,
    /// A port number.
    Port,
    /// An octal permission mode.
    Mode,
    /// One of a fixed list of words.
    Choice(&'static [&'static str]),
}

impl Kind {
    /// The unit a number of this type counts, for messages.
    pub fn unit(self) -> Option<&'static str> {
        match self {
            Kind::Millis => Some("milliseconds"),
            Kind::Seconds => Some("seconds"),
            Kind::Bytes => Some("bytes"),
            _ => None,
        }
    }

    /// How the type reads in a comment.
    pub fn describe(self) -> String {
        match self {
            Kind::Text => "text".into(),
            Kind::Secret => "text, kept secret".into(),
            Kind::Flag => "true or false".into(),
            Kind::Path => "file path".into(),
            Kind::Url => "URL".into(),
            Kind::Millis => "milliseconds".into(),
            Kind::Seconds => "seconds".into(),
            Kind::Count => "number".into(),
            Kind::Bytes => "bytes".into(),
            Kind::Host => "IP address".into(),
            Kind::Port => "port".into(),
            Kind::Mode => "octal mode".into(),
            Kind::Choice(words) => format!("one of {}", words.join(", ")),
        }
    }
}

/// One key of one section.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The name as written in the file (case-sensitive).
    pub name: &'static str,
    /// What its value is.
    pub kind: Kind,
    /// The value used when the file does not give the key, as the file would write it; `None`
    /// when there is none (the key is required where its section is used, or its absence means
    /// something the doc says).
    pub default: Option<&'static str>,
    /// What it does, for the commented configuration file.
    pub doc: &'static str,
}

/// One `[Section]` and its keys, in the order messages and the commented file list them.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// The name as written in the file.
    pub name: &'static str,
    /// What the section is for.
    pub doc: &'static str,
    /// Its keys.
    pub keys: &'static [Key],
}

impl Section {
    /// The declaration of `name`, if the section has that key.
    pub fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|key| key.name == name)
    }
}

/// Shorthand for the tables: a key with a default.
pub const fn key(name: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> Key {
    Key { name, kind, default: Some(default), doc }
}

/// Shorthand for the tables: a key without a default.
pub const fn optional(name: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key { name, kind, default: None, doc }
}

use crate::settings::KindSettings;

pub(super) const AUTH: &str = "Authentication";
pub(super) const AWS: &str = "AWS";
pub(super) const HTTP: &str = "HttpAuthenticator";
pub(super) const STATIC: &str = "StaticAuthenticator";
pub(super) const JWT: &str = "JwtAuthenticator";
pub(super) const CERT: &str = "CertificateAuthenticator";

/// The reference broker's `[AWS]` defaults, so a 1.8.4 file works unchanged.
pub const AWS_DEFAULT_CREDENTIALS_URL: &str =
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/EC2-Remote-Connection-Proxy-Role";

/// The sections of authentication, after the broker's own.
pub const SECTIONS: &[Section] = &[
    Section {
        name: AWS,
        doc: "The AWS Lambda authorizer of nymea-remoteproxy 1.8.4. A file with this section and no \
              [Authentication] type uses it.",
        keys: &[
            key("region", Kind::Text, "eu-west-1", "AWS region of the Lambda function."),
            key(
                "authorizerLambdaFunction",
                Kind::Text,
                "system-services-authorizer-dev-checkToken",
                "Name of the Lambda function that checks a token.",
            ),
            key(
                "awsCredentialsUrl",
                Kind::Url,
                AWS_DEFAULT_CREDENTIALS_URL,
                "Where the instance's AWS credentials are fetched (the EC2 metadata service).",
            ),
            optional(
                "lambdaEndpoint",
                Kind::Url,
                "Lambda endpoint to call instead of the region's public one (a VPC endpoint, a test server).",
            ),
        ],
    },
    Section {
        name: AUTH,
        doc: "Which authenticator checks the tokens of Authenticate, and what every kind shares.",
        keys: &[
            optional(
                "type",
                Kind::Choice(&KindSettings::NAMES),
                "The authenticator. Without it (and without [AWS]) the broker refuses to start unless run with --mock-authenticator.",
            ),
            key(
                "cacheTtl",
                Kind::Millis,
                "0",
                "How long a verdict is remembered per token; 0 turns the cache off.",
            ),
            key(
                "throttle",
                Kind::Flag,
                "true",
                "Slow down repeated failed authentications from one address.",
            ),
            key("throttleBaseDelay", Kind::Millis, "250", "First delay after a failed authentication."),
            key(
                "throttleMaxDelay",
                Kind::Millis,
                "4000",
                "Largest delay; each further failure doubles it up to this.",
            ),
            optional(
                "requestTimeout",
                Kind::Millis,
                "How long a remote authenticator may take; below [ProxyServer] authenticationTimeout, three quarters of it when not given.",
            ),
        ],
    },
    Section {
        name: HTTP,
        doc: "type=http: the token is POSTed to a service of yours, which answers yes or no.",
        keys: &[
            optional("url", Kind::Url, "Where the token is POSTed. Required."),
            optional("authorization", Kind::Secret, "Sent as the Authorization header."),
            optional(
                "caCertificate",
                Kind::Path,
                "CA certificates (PEM) to verify the service with, instead of the system's.",
            ),
        ],
    },
    Section {
        name: STATIC,
        doc: "type=static: a file of token hashes, reread when it changes.",
        keys: &[
            optional("file", Kind::Path, "The token hash file. Required."),
            key("reloadInterval", Kind::Millis, "2000", "How often the file is checked for changes."),
        ],
    },
    Section {
        name: JWT,
        doc: "type=jwt: tokens are JSON Web Tokens signed by keys of a JWKS file.",
        keys: &[
            optional("jwks", Kind::Path, "The JWKS file with the public keys. Required."),
            optional("issuer", Kind::Text, "The iss claim a token must have."),
            optional("audience", Kind::Text, "The aud claim a token must have."),
            key("userClaim", Kind::Text, "sub", "The claim that names the user."),
            key("leeway", Kind::Seconds, "60", "Clock skew allowed on exp and nbf, at most 3600."),
        ],
    },
    Section {
        name: CERT,
        doc: "type=certificate: the TLS client certificate is the credential (needs [SSL] clientCaCertificate).",
        keys: &[key("userName", Kind::Choice(&["CN", "O"]), "CN", "The subject field that names the user.")],
    },
];

/// The declared default of a key of the authentication sections. Every key asked for has one:
/// a test reads them all.
pub(super) fn default_of(section: &str, name: &str) -> &'static str {
    SECTIONS
        .iter()
        .find(|s| s.name == section)
        .and_then(|s| s.key(name))
        .and_then(|key| key.default)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys read with `text_or_default` fall back to a declared, non-empty default.
    #[test]
    fn text_keys_read_with_a_fallback_have_one() {
        for (section, key) in [
            (AWS, "region"),
            (AWS, "authorizerLambdaFunction"),
            (AWS, "awsCredentialsUrl"),
            (JWT, "userClaim"),
            (CERT, "userName"),
        ] {
            assert!(!default_of(section, key).is_empty(), "[{section}] {key}");
        }
    }

    /// Names are unique within a section, and so are sections.
    #[test]
    fn names_are_unique() {
        for (index, section) in SECTIONS.iter().enumerate() {
            assert!(SECTIONS[..index].iter().all(|other| other.name != section.name), "{}", section.name);
            for (at, key) in section.keys.iter().enumerate() {
                assert!(section.keys[..at].iter().all(|other| other.name != key.name), "{}", key.name);
            }
        }
    }
}
