//! The HTTP client the remote-service authenticators share: pooled connections, a per-request
//! timeout, TLS with the system roots or a configured CA bundle.

use std::path::Path;
use std::time::Duration;

use crate::BuildError;

/// Idle pooled connections are kept this long, so bursts of authentications reuse them.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Whether requests may go through the proxy the environment names (`HTTPS_PROXY`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// Honour the environment: remote services behind a corporate proxy stay reachable.
    FromEnvironment,
    /// Never: link-local services (the instance metadata service) must be asked directly.
    Never,
}

/// Builds a client. `timeout` bounds each whole request (connect, send, answer); `ca_file`
/// replaces the system roots; `section`/`key` name the CA setting in errors.
pub fn client(
    ca_file: Option<&Path>,
    timeout: Duration,
    proxy: Proxy,
    section: &'static str,
    key: &'static str,
) -> Result<reqwest::Client, BuildError> {
    // reqwest is built without a bundled crypto provider; the broker uses ring everywhere.
    // Installing it twice is harmless (the second call only reports that one is set).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        // A redirect would send the token to wherever it points: treat it as a failed answer.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("remoteproxy/", env!("CARGO_PKG_VERSION")));
    if proxy == Proxy::Never {
        builder = builder.no_proxy();
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| BuildError::new(section, key, format!("cannot read \"{}\": {e}", path.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            BuildError::new(section, key, format!("\"{}\" is not a PEM bundle: {e}", path.display()))
        })?;
        if certificates.is_empty() {
            return Err(BuildError::new(section, key, format!("no certificate in \"{}\"", path.display())));
        }
        builder = builder.tls_certs_only(certificates);
    }
    builder.build().map_err(|e| BuildError::new(section, key, format!("cannot set up HTTPS: {e}")))
}
