//! How to connect: trust, client identity, timeouts.

use std::path::PathBuf;
use std::time::Duration;

/// Connection options. `Default` trusts the public web PKI roots and uses moderate timeouts.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Trust the certificates in this PEM file (instead of the built-in public roots).
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Dangerous: anyone on the path can read the tunnel. Exists
    /// for tests against self-signed brokers; the CLI warns loudly when it is set.
    pub insecure_skip_verify: bool,
    /// Client certificate chain (PEM) for brokers that authenticate by certificate.
    pub client_certificate: Option<PathBuf>,
    /// The private key (PEM) of `client_certificate`.
    pub client_key: Option<PathBuf>,
    /// TLS server name to verify; defaults to the URL's host.
    pub server_name: Option<String>,
    /// Bound on TCP connect, TLS handshake and WebSocket upgrade together.
    pub connect_timeout: Duration,
    /// Bound on each request's response (Authenticate includes the broker's authenticator).
    pub request_timeout: Duration,
    /// Bound on waiting for the partner after authenticating; `None` leaves it to the broker's
    /// `aloneTimeout`.
    pub tunnel_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_file: None,
            insecure_skip_verify: false,
            client_certificate: None,
            client_key: None,
            server_name: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            tunnel_timeout: None,
        }
    }
}
