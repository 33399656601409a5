//! The certificate authenticator: the TLS client certificate is the credential.
//!
//! The broker asks for client certificates on its TLS listeners when `[SSL] clientCaCertificate`
//! is set and lets rustls verify the chain against that CA bundle (signature, validity period,
//! client-auth usage) during the handshake; a certificate that fails there never gets a
//! connection. This authenticator therefore only names the user: it takes the leaf certificate
//! (the first of [`ConnectionFacts::client_certificates`](crate::ConnectionFacts)), reads its
//! subject, and answers `NoError` with the configured field (CN or O) as the user name.
//!
//! The token of the `Authenticate` call is not looked at (it still pairs the two ends of a
//! tunnel). No certificate (a client without one on a listener where it is optional, or a unix
//! socket client), a subject without the chosen field, or a certificate that has expired since
//! the handshake is `AuthenticationFailed`.

use async_trait::async_trait;
use tracing::debug;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::settings::{CertificateSettings, SubjectField};
use crate::{AuthRequest, AuthenticationError, Authenticator, Verdict};

/// Names the user after the subject of the verified TLS client certificate.
#[derive(Debug, Clone)]
pub struct CertificateAuthenticator {
    user_name_from: SubjectField,
}

impl CertificateAuthenticator {
    /// An authenticator taking the user name from `settings.user_name_from`.
    pub fn new(settings: CertificateSettings) -> Self {
        CertificateAuthenticator { user_name_from: settings.user_name_from }
    }

    /// The user name the leaf certificate `der` gives, or why it gives none.
    fn user_name(&self, der: &[u8]) -> Result<String, &'static str> {
        let (_, certificate) =
            X509Certificate::from_der(der).map_err(|_| "the client certificate cannot be parsed")?;
        let subject = certificate.subject();
        // Certificates are not secret; Debug formatting escapes control characters.
        debug!(subject = ?subject.to_string(), "client certificate");
        // The TLS layer checked the validity period at the handshake; a connection that sat
        // between handshake and Authenticate must not outlive its certificate either.
        if !certificate.validity().is_valid() {
            return Err("the client certificate is not valid at this time");
        }
        // The first one when the subject has several.
        let first = match self.user_name_from {
            SubjectField::CommonName => subject.iter_common_name().next(),
            SubjectField::Organization => subject.iter_organization().next(),
        };
        let Some(attribute) = first else {
            return Err("the certificate subject has no such field");
        };
        match attribute.as_str() {
            Ok(value) if !value.trim().is_empty() => Ok(value.to_string()),
            Ok(_) => Err("the subject field is empty"),
            Err(_) => Err("the subject field is not a readable string"),
        }
    }

    fn field_name(&self) -> &'static str {
        match self.user_name_from {
            SubjectField::CommonName => "CN",
            SubjectField::Organization => "O",
        }
    }
}

#[async_trait]
impl Authenticator for CertificateAuthenticator {
    fn kind(&self) -> &'static str {
        "certificate"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        let Some(leaf) = request.facts.client_certificates.as_ref().and_then(|chain| chain.first()) else {
            debug!(transport = %request.facts.transport, "refused: the client presented no certificate");
            return Verdict::refuse(AuthenticationError::AuthenticationFailed);
        };
        match self.user_name(leaf) {
            Ok(user) => Verdict::accept(Some(user)),
            Err(why) => {
                debug!(field = self.field_name(), reason = why, "client certificate refused");
                Verdict::refuse(AuthenticationError::AuthenticationFailed)
            }
        }
    }

    fn verdict_depends_on_facts(&self) -> bool {
        true
    }
}
