//! How to connect: trust, client identity, timeouts.

use std::path::PathBuf;
use std::time::Duration;

/// Connection options. `Default` trusts the public web PKI roots and uses moderate timeouts.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Trust the certificates in this PEM file (instead of the built-in public roots). Each is
    /// also trusted as the server's own certificate, so a self-signed server certificate (made
    /// the common way, marked as a CA) can be given here, as curl and openssl allow.
    pub ca_file: Option<PathBuf>,
    /// Trust exactly the server certificates with these SHA-256 fingerprints (of the DER), as
    /// the broker logs for its certificate, whatever else is trusted.
    pub pinned_sha256: Vec<[u8; 32]>,
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
            pinned_sha256: Vec::new(),
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

/// Reads a certificate fingerprint as `sha256:<hex>` (or bare hex), with or without the `:`
/// between bytes that `openssl x509 -fingerprint` and the broker's log print.
pub fn parse_sha256_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("SHA256:")).unwrap_or(text);
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{text}' is not a SHA-256 fingerprint (64 hex digits, e.g. sha256:3E:42:...; the broker logs its own)"
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_sha256_fingerprint;

    #[test]
    fn fingerprints_with_and_without_colons_and_prefix() {
        let colons =
            "3E:42:D8:74:68:97:E9:6F:AA:55:E8:CA:57:6C:2A:CB:2F:73:29:FC:C0:B5:18:4D:22:39:F1:5E:86:0D:25:58";
        let bare = colons.replace(':', "").to_lowercase();
        let a = parse_sha256_fingerprint(&format!("sha256:{colons}")).unwrap();
        assert_eq!(a, parse_sha256_fingerprint(&bare).unwrap());
        assert_eq!(a[0], 0x3E);
        assert_eq!(a[31], 0x58);
        assert!(parse_sha256_fingerprint("sha256:abc").is_err());
        assert!(parse_sha256_fingerprint(&"zz".repeat(32)).is_err());
    }
}
