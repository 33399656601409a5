//! The rustls client configuration built from [`ClientOptions`].

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::ClientError;
use crate::options::ClientOptions;

/// Builds the TLS configuration: trusted roots (a CA file, or the public web PKI), an optional
/// client certificate, or no verification at all when explicitly asked.
pub fn client_config(options: &ClientOptions) -> Result<Arc<ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let builder = if options.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(accept_anything(provider))
    } else {
        let (roots, mut pins) = roots(options)?;
        pins.extend(options.pinned_sha256.iter().copied());
        // No usable root at all (a CA file whose certificates cannot be anchors): only the pins.
        let roots = match roots.is_empty() {
            true => None,
            false => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| ClientError::Tls(e.to_string()))?,
            ),
        };
        let trust = Trust::PinsThenRoots { pins, roots };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(Verifier { trust, provider }))
    };
    let config = match (&options.client_certificate, &options.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ClientError::BadFile {
                what: "client key",
                path: key.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| ClientError::BadFile {
                what: "client certificate",
                path: cert.clone(),
                reason: e.to_string(),
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), None) | (None, Some(cert)) => {
            return Err(ClientError::BadFile {
                what: "client certificate",
                path: cert.clone(),
                reason: "a client certificate needs its key and the key its certificate".into(),
            });
        }
    };
    Ok(Arc::new(config))
}

/// The roots to verify against, and the fingerprints of the CA file's certificates: each is
/// also accepted as the server's own certificate.
fn roots(options: &ClientOptions) -> Result<(RootCertStore, Vec<[u8; 32]>), ClientError> {
    let mut roots = RootCertStore::empty();
    let mut pins = Vec::new();
    match &options.ca_file {
        Some(path) => {
            for cert in read_certificates(path, "CA file")? {
                pins.push(sha256(&cert));
                // A server certificate that is no CA (a leaf given as its own trust anchor) cannot
                // be a root; its fingerprint above is what trusts it.
                let _ = roots.add(cert);
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok((roots, pins))
}

fn sha256(cert: &CertificateDer<'_>) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(cert.as_ref()).into()
}

fn read_certificates(
    path: &std::path::Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bad = |reason: String| ClientError::BadFile { what, path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The verifier behind `insecure_skip_verify`: signatures are still checked (so the handshake is
/// real TLS), but the certificate itself is not. Public for tools that must talk to brokers with
/// self-signed certificates (the benchmark).
pub fn accept_anything(provider: Arc<rustls::crypto::CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(Verifier { trust: Trust::Anything, provider })
}

/// Which server certificates are trusted.
#[derive(Debug)]
enum Trust {
    /// Any (`insecure_skip_verify`).
    Anything,
    /// Certificates pinned by fingerprint first (the `--ca` file's own certificates and `--pin`),
    /// then the usual web PKI verification against the roots. A pinned certificate is trusted as
    /// it is, like an SSH host key: it is exactly the one the user named, so neither a CA chain nor
    /// the name in it matters (a self-signed certificate made with `openssl req -x509` is marked as
    /// a CA, which the web PKI rules refuse as a server certificate; curl and openssl accept it).
    PinsThenRoots { pins: Vec<[u8; 32]>, roots: Option<Arc<WebPkiServerVerifier>> },
}

/// Whatever the certificate policy, the handshake signature is checked: the peer must prove it
/// holds the key.
#[derive(Debug)]
struct Verifier {
    trust: Trust,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Trust::PinsThenRoots { pins, roots } = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        if pins.contains(&sha256(end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        match roots {
            Some(roots) => {
                roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
