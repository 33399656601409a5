//! The certificate the TLS listeners serve, swappable while the broker runs. Each new handshake
//! takes the current one (rustls asks [`ServedCertificate`] per handshake); connections already
//! up keep theirs, so a renewal disturbs no tunnel. [`CertificateFiles`] reloads the `[SSL]` files
//! on SIGHUP and when they change on disk (certbot's symlink swap included: the watch follows
//! links). A reload that fails keeps the served certificate and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::gauge::Gauge;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::tls;
use crate::config::{ConfigError, TlsSettings};

/// The certificate new handshakes get, and its expiry for the metrics.
#[derive(Debug)]
pub struct ServedCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    /// Unix time (seconds) when the served leaf expires; `remoteproxy_tls_certificate_expiry_seconds`.
    expiry: Gauge,
}

impl ServedCertificate {
    pub(crate) fn new(certified: CertifiedKey) -> ServedCertificate {
        let expiry = Gauge::default();
        expiry.set(not_after(&certified).unwrap_or_default());
        ServedCertificate { current: RwLock::new(Arc::new(certified)), expiry }
    }

    fn replace(&self, certified: CertifiedKey) {
        self.expiry.set(not_after(&certified).unwrap_or_default());
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
    }

    /// The gauge the metrics endpoint exports.
    pub(crate) fn expiry_gauge(&self) -> Gauge {
        self.expiry.clone()
    }

    /// The leaf's expiry as Unix time, when it can be read.
    pub fn expiry(&self) -> Option<i64> {
        Some(self.expiry.get()).filter(|at| *at != 0)
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// The leaf's notAfter as Unix time.
fn not_after(certified: &CertifiedKey) -> Option<i64> {
    let leaf = certified.cert.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// What the files looked like when last read: a change to any of them (content swapped in place,
/// a new inode behind a symlink) is a reason to read them again.
pub(crate) type Stamps = Vec<Option<(SystemTime, u64, u64)>>;

fn stamps(paths: &[PathBuf]) -> Stamps {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().unwrap_or(UNIX_EPOCH), meta.ino(), meta.len()))
        })
        .collect()
}

/// The configured `[SSL]` files behind a [`ServedCertificate`].
pub struct CertificateFiles {
    certificate: PathBuf,
    key: PathBuf,
    chain: Option<PathBuf>,
    source: Option<PathBuf>,
    served: Arc<ServedCertificate>,
    seen: Mutex<Stamps>,
}

impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles").field("certificate", &self.certificate).finish_non_exhaustive()
    }
}

impl CertificateFiles {
    /// How the configured files look now: taken before they are first read, so a change during
    /// that read is still seen as one.
    pub(crate) fn stamp(settings: &TlsSettings) -> Stamps {
        let paths = [&settings.certificate, &settings.certificate_key, &settings.certificate_chain];
        stamps(&paths.into_iter().flatten().cloned().collect::<Vec<_>>())
    }

    /// `None` when no files are configured (a generated certificate has nothing to reload).
    /// `seen` is [`stamp`](Self::stamp) from before the files were read.
    pub(crate) fn new(
        settings: &TlsSettings,
        source: Option<&Path>,
        served: Arc<ServedCertificate>,
        seen: Stamps,
    ) -> Option<CertificateFiles> {
        let (Some(certificate), Some(key)) = (&settings.certificate, &settings.certificate_key) else {
            return None;
        };
        let files = CertificateFiles {
            certificate: certificate.clone(),
            key: key.clone(),
            chain: settings.certificate_chain.clone(),
            source: source.map(Path::to_path_buf),
            served,
            seen: Mutex::new(seen),
        };
        Some(files)
    }

    fn paths(&self) -> Vec<PathBuf> {
        [Some(self.certificate.clone()), Some(self.key.clone()), self.chain.clone()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Whether a file changed since it was last read.
    pub fn changed(&self) -> bool {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) != stamps(&self.paths())
    }

    /// Reads the files again and serves them to new handshakes; on any error the served
    /// certificate stays. Returns the new leaf's SHA-256 fingerprint.
    pub fn reload(&self) -> Result<String, ConfigError> {
        // One reload at a time (SIGHUP and the watch), so an older read never replaces a newer
        // one. Stamped before reading, so a write during the read is seen as a change next time.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        *seen = stamps(&self.paths());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = tls::load_files(
            &self.certificate,
            &self.key,
            self.chain.as_deref(),
            self.source.as_deref(),
            &provider,
        )?;
        let fingerprint = tls::fingerprint(&certified.cert[0]);
        self.served.replace(certified);
        drop(seen);
        Ok(fingerprint)
    }

    /// The served certificate's expiry as Unix time.
    pub fn expiry(&self) -> Option<i64> {
        self.served.expiry()
    }
}

/// Seconds from now until `at` (Unix time), negative once past.
pub fn seconds_until(at: i64) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    at - now
}
