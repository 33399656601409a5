//! TLS material for the TCP and WebSocket listeners: the `[SSL]` files turned into a rustls server
//! configuration, or a self-signed certificate when none is configured.
//!
//! Everything is checked here, once, at start: unreadable files, files without a certificate or
//! key, key types the crypto provider cannot sign with, and a key that does not belong to the
//! certificate. A broker that starts therefore never fails its first handshake for a reason that
//! was knowable at start. Errors are [`ConfigError::BadValue`]s naming the `[SSL]` key and the path;
//! the contents of a key file never appear in a message.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

use super::certificate::{CertificateFiles, ServedCertificate};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, RendezvousSettings, TlsSettings};

/// What the listeners need to terminate TLS.
pub struct TlsMaterial {
    /// The rustls configuration the listeners accept with (`tls_stream::accept`): TLS 1.2 and 1.3, no
    /// client authentication, no ALPN.
    pub server_config: Arc<ServerConfig>,
    /// The chain served to clients, leaf first. Kept so that a self-signed certificate can be
    /// shown or pinned (and trusted by tests).
    pub certificate_chain: Vec<CertificateDer<'static>>,
    /// SHA-256 of the leaf certificate's DER, as uppercase hex pairs joined by `:` (the format of
    /// `openssl x509 -noout -fingerprint -sha256`), for the start-up log.
    pub fingerprint_sha256: String,
    /// True when no certificate was configured and one was generated at start.
    pub self_signed: bool,
    /// What new handshakes are served: swapped by a reload.
    pub served: Arc<ServedCertificate>,
    /// The configured files behind it, to reload; `None` for a generated certificate.
    pub files: Option<Arc<CertificateFiles>>,
}

impl fmt::Debug for TlsMaterial {
    // By hand, so that no debug print can ever reach the signing key inside `server_config`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("chain_length", &self.certificate_chain.len())
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .field("self_signed", &self.self_signed)
            .finish_non_exhaustive()
    }
}

/// The names a generated certificate is valid for: the loopback listeners of the default
/// configuration.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The section all errors here belong to.
const SECTION: &str = "SSL";

/// Loads the `[SSL]` certificate, chain and key, or generates a self-signed certificate when
/// neither `certificate` nor `certificateKey` is set. `source` is the configuration file, only
/// used in error messages (`None`: built-in defaults).
///
/// Only call this when `settings.enabled` is true; the flag itself is not looked at.
pub fn load(settings: &TlsSettings, source: Option<&Path>) -> Result<TlsMaterial, ConfigError> {
    let bad = |key: &str, problem: String| ConfigError::bad_value(source, SECTION, key, problem);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = CertificateFiles::stamp(settings);

    let (certified, self_signed) = match (&settings.certificate, &settings.certificate_key) {
        (None, None) => {
            if settings.certificate_chain.is_some() {
                return Err(bad(
                    "certificateChain",
                    "is set but certificate is not (a chain is served after a configured \
                         certificate)"
                        .to_string(),
                ));
            }
            let (chain, key) = generate_self_signed().map_err(|error| {
                bad(
                    "certificate",
                    format!("not set, and generating a self-signed certificate failed: {error}"),
                )
            })?;
            let signing_key = provider.key_provider.load_private_key(key).map_err(|error| {
                bad("certificate", format!("not set, and the generated key cannot be used: {error}"))
            })?;
            (CertifiedKey::new(chain, signing_key), true)
        }
        (Some(_), None) => {
            return Err(bad(
                "certificateKey",
                "is not set but certificate is (give the certificate's private key file)".to_string(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "certificate",
                "is not set but certificateKey is (give the certificate file)".to_string(),
            ));
        }
        (Some(certificate), Some(key_path)) => (
            load_files(certificate, key_path, settings.certificate_chain.as_deref(), source, &provider)?,
            false,
        ),
    };

    let certificate_chain = certified.cert.clone();
    let fingerprint_sha256 = fingerprint(&certificate_chain[0]);
    let served = Arc::new(ServedCertificate::new(certified));
    let files = CertificateFiles::new(settings, source, served.clone(), seen).map(Arc::new);
    let client_verifier = client_verifier(settings, source, &provider)?;
    let server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| bad("enabled", format!("TLS setup failed: {error}")))?
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(served.clone());

    Ok(TlsMaterial {
        server_config: Arc::new(server_config),
        certificate_chain,
        fingerprint_sha256,
        self_signed,
        served,
        files,
    })
}

/// The configured certificate (and chain) with its key, checked to belong together: what a start
/// serves and what a reload swaps in.
pub(crate) fn load_files(
    certificate: &Path,
    key_path: &Path,
    chain_file: Option<&Path>,
    source: Option<&Path>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<CertifiedKey, ConfigError> {
    let bad = |key: &str, problem: String| ConfigError::bad_value(source, SECTION, key, problem);
    let mut chain = read_certificates((SECTION, "certificate"), certificate, source)?;
    if let Some(extra) = chain_file {
        chain.extend(read_certificates((SECTION, "certificateChain"), extra, source)?);
    }
    let key = read_private_key((SECTION, "certificateKey"), key_path, source)?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|_| {
        bad(
            "certificateKey",
            format!(
                "the private key in \"{}\" cannot be used (unsupported key type or \
                     size; RSA of 2048 bits or more, ECDSA P-256 or P-384, and Ed25519 \
                     are supported)",
                key_path.display()
            ),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // The provider cannot tell the key's public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(bad(
                "certificateKey",
                format!(
                    "the private key in \"{}\" does not match the certificate in \"{}\"",
                    key_path.display(),
                    certificate.display()
                ),
            ));
        }
        Err(error) => {
            return Err(bad(
                "certificate",
                format!("the first certificate in \"{}\" cannot be parsed: {error}", certificate.display()),
            ));
        }
    }
    Ok(certified)
}

/// Client certificates: none asked for, or verified against `clientCaCertificate` (optional
/// unless `clientCertificateRequired`). An optional certificate lets clients without one still
/// connect; the certificate authenticator then refuses them with a proper answer.
fn client_verifier(
    settings: &TlsSettings,
    source: Option<&Path>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigError> {
    let Some(path) = &settings.client_ca else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let key = (SECTION, "clientCaCertificate");
    ca_verifier(key, path, settings.client_certificate_required, source, provider)
}

/// Verifies client certificates against the CA certificates in `path` (the setting `key`);
/// without `required`, a client may also present none.
fn ca_verifier(
    (section, key): (&str, &str),
    path: &Path,
    required: bool,
    source: Option<&Path>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigError> {
    let bad = |problem: String| ConfigError::bad_value(source, section, key, problem);
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates((section, key), path, source)? {
        roots.add(certificate).map_err(|error| {
            bad(format!("a certificate in \"{}\" cannot be used: {error}", path.display()))
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if required { builder } else { builder.allow_unauthenticated() };
    builder.build().map_err(|error| bad(format!("cannot verify client certificates: {error}")))
}

/// All certificates of a PEM file, in file order; at least one.
fn read_certificates(
    (section, key): (&str, &str),
    path: &Path,
    source: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bad = |problem: String| ConfigError::bad_value(source, section, key, problem);
    let bytes =
        std::fs::read(path).map_err(|error| bad(format!("cannot read \"{}\": {error}", path.display())))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        // Certificates are public, so the PEM parser's detail may be shown.
        .map_err(|error| bad(format!("\"{}\" is not a valid PEM file: {error}", path.display())))?;
    if chain.is_empty() {
        return Err(bad(format!(
            "no certificate found in \"{}\" (a PEM file with \"BEGIN CERTIFICATE\" sections \
             is expected)",
            path.display()
        )));
    }
    Ok(chain)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
fn read_private_key(
    (section, key): (&str, &str),
    path: &Path,
    source: Option<&Path>,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bad = |problem: String| ConfigError::bad_value(source, section, key, problem);
    let bytes =
        std::fs::read(path).map_err(|error| bad(format!("cannot read \"{}\": {error}", path.display())))?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let encrypted = bytes
                .windows(b"ENCRYPTED PRIVATE KEY".len())
                .any(|window| window == b"ENCRYPTED PRIVATE KEY");
            let hint = if encrypted {
                "the key is encrypted; give an unencrypted key"
            } else {
                "a PEM file with a PKCS#8, PKCS#1 RSA or SEC1 EC key is expected"
            };
            Err(bad(format!("no private key found in \"{}\" ({hint})", path.display())))
        }
        // The parser's detail could quote part of the key: not shown.
        Err(_) => Err(bad(format!("\"{}\" is not a valid PEM file", path.display()))),
    }
}

/// The rendezvous listener's TLS: its own certificate (peers verify the broker against their
/// root), the key from `certificateKey` or from the certificate file itself (a Micronets
/// `pkeycert.pem`), and client certificates **required**, verified against `caCertificate`
/// (webpki: EC P-256 and RSA; a leaf without extended key usage is valid for any use, and no
/// name is checked on a client certificate).
pub fn load_rendezvous(
    settings: &RendezvousSettings,
    source: Option<&Path>,
) -> Result<Arc<ServerConfig>, ConfigError> {
    const RENDEZVOUS: &str = "RendezvousServer";
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates((RENDEZVOUS, "certificate"), &settings.certificate, source)?;
    let (key_name, key_path) = match &settings.certificate_key {
        Some(path) => ("certificateKey", path.as_path()),
        None => ("certificate", settings.certificate.as_path()),
    };
    let key = read_private_key((RENDEZVOUS, key_name), key_path, source)?;
    let bad = |key: &str, problem: String| ConfigError::bad_value(source, RENDEZVOUS, key, problem);
    let verifier =
        ca_verifier((RENDEZVOUS, "caCertificate"), &settings.ca_certificate, true, source, &provider)?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| bad("certificate", format!("TLS setup failed: {error}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| {
            bad(
                key_name,
                format!("the key in \"{}\" does not fit the certificate: {error}", key_path.display()),
            )
        })?;
    Ok(Arc::new(config))
}

/// A fresh ECDSA P-256 certificate for [`SELF_SIGNED_NAMES`] and its PKCS#8 key.
fn generate_self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), rcgen::Error> {
    let names = SELF_SIGNED_NAMES.map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "remoteproxy self-signed certificate");
    let key_pair = rcgen::KeyPair::generate()?;
    let certificate = params.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    Ok((vec![certificate.der().clone()], key))
}

/// SHA-256 of `certificate` as `AB:CD:...`.
pub(crate) fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    Sha256::digest(certificate.as_ref())
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;

    const CONF: &str = "/etc/remoteproxy.conf";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    fn settings(certificate: &str, key: &str, chain: Option<&str>) -> TlsSettings {
        TlsSettings {
            enabled: true,
            certificate: Some(fixture(certificate)),
            certificate_key: Some(fixture(key)),
            certificate_chain: chain.map(fixture),
            certificate_check_interval: None,
            client_ca: None,
            client_certificate_required: false,
            session_resumption: false,
            ticket_key_rotation: Duration::from_secs(3600),
            ticket_key_file: None,
        }
    }

    fn load_fixture(certificate: &str, key: &str, chain: Option<&str>) -> TlsMaterial {
        load(&settings(certificate, key, chain), Some(Path::new(CONF))).unwrap()
    }

    fn error(settings: &TlsSettings) -> String {
        let message = load(settings, Some(Path::new(CONF))).expect_err("should fail").to_string();
        assert!(!message.contains('\n'), "not one line: {message}");
        assert!(!message.contains("PRIVATE KEY"), "{message}");
        message
    }

    fn read_pem(name: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(fixture(name)).unwrap()
    }

    fn client(roots: &[CertificateDer<'static>], tls12_only: bool) -> TlsConnector {
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root.clone()).unwrap();
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()));
        let builder = if tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            builder.with_safe_default_protocol_versions()
        };
        let config = builder.unwrap().with_root_certificates(store).with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// Completes a handshake between `material` and a client trusting `roots`, sends a few bytes
    /// through, and returns (number of certificates the server presented, negotiated version).
    async fn handshake(
        material: &TlsMaterial,
        roots: &[CertificateDer<'static>],
        server_name: &str,
        tls12_only: bool,
    ) -> (usize, ProtocolVersion) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connector = client(roots, tls12_only);
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        let accept = super::super::tls_stream::accept(server_io, material.server_config.clone());
        let (server, client) = tokio::join!(accept, connector.connect(name, client_io));
        let mut server = server.expect("server handshake");
        let mut client = client.expect("client handshake");
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut buffer = [0u8; 4];
        server.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"ping");
        let (_, connection) = client.get_ref();
        (connection.peer_certificates().unwrap().len(), connection.protocol_version().unwrap())
    }

    #[tokio::test]
    async fn self_signed_certificate_is_generated_and_works() {
        let settings =
            TlsSettings { certificate: None, certificate_key: None, ..settings("rsa.crt", "rsa.key", None) };
        let material = load(&settings, None).unwrap();
        assert!(material.self_signed);
        assert_eq!(material.certificate_chain.len(), 1);
        assert_eq!(material.fingerprint_sha256, fingerprint(&material.certificate_chain[0]));
        let roots = material.certificate_chain.clone();
        for name in SELF_SIGNED_NAMES {
            let (count, _) = handshake(&material, &roots, name, false).await;
            assert_eq!(count, 1);
        }
        // A second load makes a different certificate.
        let again = load(&settings, None).unwrap();
        assert_ne!(again.fingerprint_sha256, material.fingerprint_sha256);
    }

    #[tokio::test]
    async fn rsa_ecdsa_and_ed25519_fixtures_load_and_handshake() {
        for (certificate, key) in [
            ("rsa.crt", "rsa.key"),
            ("rsa.crt", "rsa-pkcs8.key"),
            ("ecdsa.crt", "ecdsa.key"),
            ("ed25519.crt", "ed25519.key"),
        ] {
            let material = load_fixture(certificate, key, None);
            assert!(!material.self_signed);
            let root = read_pem(certificate);
            let (count, version) =
                handshake(&material, std::slice::from_ref(&root), "localhost", false).await;
            assert_eq!(count, 1, "{certificate}");
            assert_eq!(version, ProtocolVersion::TLSv1_3, "{certificate}");
            let (_, version) = handshake(&material, &[root], "127.0.0.1", true).await;
            assert_eq!(version, ProtocolVersion::TLSv1_2, "{certificate}");
        }
    }

    #[test]
    fn fingerprint_matches_openssl() {
        // `openssl x509 -in ecdsa.crt -noout -fingerprint -sha256`
        assert_eq!(
            load_fixture("ecdsa.crt", "ecdsa.key", None).fingerprint_sha256,
            "6D:99:88:BA:B7:2C:B1:83:99:CC:B7:B9:F0:DD:F2:FD:3A:1C:10:5E:E2:73:45:C0:DF:0A:69:D8:75:2F:2C:D4"
        );
    }

    #[tokio::test]
    async fn certificate_chain_is_served() {
        let ca = read_pem("ca.crt");
        // Leaf in `certificate`, CA in `certificateChain`.
        let material = load_fixture("leaf-signed.crt", "leaf-signed.key", Some("ca.crt"));
        assert_eq!(material.certificate_chain.len(), 2);
        assert_eq!(material.certificate_chain[1], ca);
        let (count, _) = handshake(&material, std::slice::from_ref(&ca), "localhost", false).await;
        assert_eq!(count, 2);
        // Both in the `certificate` file.
        let material = load_fixture("leaf-signed-fullchain.crt", "leaf-signed.key", None);
        let (count, _) = handshake(&material, &[ca], "localhost", false).await;
        assert_eq!(count, 2);
        // The fingerprint is the leaf's.
        assert_eq!(material.fingerprint_sha256, fingerprint(&read_pem("leaf-signed.crt")));
    }

    #[test]
    fn missing_files() {
        let mut settings = settings("ecdsa.crt", "ecdsa.key", None);
        settings.certificate = Some(PathBuf::from("/nonexistent/server.crt"));
        assert_eq!(
            error(&settings),
            "/etc/remoteproxy.conf: [SSL] certificate: cannot read \"/nonexistent/server.crt\": \
             No such file or directory (os error 2)"
        );
        let mut settings = self::settings("ecdsa.crt", "ecdsa.key", None);
        settings.certificate_key = Some(PathBuf::from("/nonexistent/server.key"));
        assert_eq!(
            error(&settings),
            "/etc/remoteproxy.conf: [SSL] certificateKey: cannot read \"/nonexistent/server.key\": \
             No such file or directory (os error 2)"
        );
        let mut settings = self::settings("ecdsa.crt", "ecdsa.key", None);
        settings.certificate_chain = Some(PathBuf::from("/nonexistent/chain.crt"));
        assert_eq!(
            error(&settings),
            "/etc/remoteproxy.conf: [SSL] certificateChain: cannot read \"/nonexistent/chain.crt\": \
             No such file or directory (os error 2)"
        );
    }

    #[test]
    fn garbage_files() {
        let garbage = fixture("README.md");
        let message = error(&settings("README.md", "ecdsa.key", None));
        assert_eq!(
            message,
            format!(
                "/etc/remoteproxy.conf: [SSL] certificate: no certificate found in \"{}\" (a PEM \
                 file with \"BEGIN CERTIFICATE\" sections is expected)",
                garbage.display()
            )
        );
        let message = error(&settings("ecdsa.crt", "README.md", None));
        assert_eq!(
            message,
            format!(
                "/etc/remoteproxy.conf: [SSL] certificateKey: no private key found in \"{}\" (a \
                 PEM file with a PKCS#8, PKCS#1 RSA or SEC1 EC key is expected)",
                garbage.display()
            )
        );
        // A key file given as certificate and the other way round.
        assert!(
            error(&settings("ecdsa.key", "ecdsa.key", None))
                .contains("[SSL] certificate: no certificate found in")
        );
        assert!(
            error(&settings("ecdsa.crt", "ecdsa.crt", None))
                .contains("[SSL] certificateKey: no private key found in")
        );
        let message = error(&settings("ecdsa.crt", "ecdsa.key", Some("README.md")));
        assert!(message.contains("[SSL] certificateChain: no certificate found in"), "{message}");
    }

    #[test]
    fn mismatched_key() {
        assert_eq!(
            error(&settings("rsa.crt", "ecdsa.key", None)),
            format!(
                "/etc/remoteproxy.conf: [SSL] certificateKey: the private key in \"{}\" does not \
                 match the certificate in \"{}\"",
                fixture("ecdsa.key").display(),
                fixture("rsa.crt").display()
            )
        );
        // Same type, different key.
        assert!(error(&settings("leaf-signed.crt", "ca.key", None)).contains("does not match"));
    }

    #[test]
    fn unsupported_key_type() {
        let message = error(&settings("ecdsa.crt", "p521.key", None));
        assert_eq!(
            message,
            format!(
                "/etc/remoteproxy.conf: [SSL] certificateKey: the private key in \"{}\" cannot be \
                 used (unsupported key type or size; RSA of 2048 bits or more, ECDSA P-256 or \
                 P-384, and Ed25519 are supported)",
                fixture("p521.key").display()
            )
        );
    }

    #[test]
    fn certificate_and_key_come_together() {
        let mut only_certificate = settings("ecdsa.crt", "ecdsa.key", None);
        only_certificate.certificate_key = None;
        assert_eq!(
            error(&only_certificate),
            "/etc/remoteproxy.conf: [SSL] certificateKey: is not set but certificate is (give the \
             certificate's private key file)"
        );
        let mut only_key = settings("ecdsa.crt", "ecdsa.key", None);
        only_key.certificate = None;
        assert_eq!(
            error(&only_key),
            "/etc/remoteproxy.conf: [SSL] certificate: is not set but certificateKey is (give the \
             certificate file)"
        );
        let only_chain = TlsSettings {
            certificate: None,
            certificate_key: None,
            ..settings("rsa.crt", "rsa.key", Some("ca.crt"))
        };
        assert_eq!(
            load(&only_chain, None).unwrap_err().to_string(),
            "built-in defaults: [SSL] certificateChain: is set but certificate is not (a chain is \
             served after a configured certificate)"
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let material = load_fixture("ecdsa.crt", "ecdsa.key", None);
        let debug = format!("{material:?}");
        assert!(debug.contains("fingerprint_sha256"), "{debug}");
        assert!(!debug.contains("server_config"), "{debug}");
    }
}
