//! Broker addresses: `tcp://`, `ssl://`, `ws://`, `wss://` and `unix://` URLs.
//!
//! `ssl://host:port` is TLS over TCP, the reference client's spelling; `tls://` is accepted as
//! its synonym. `unix:///run/remoteproxy/proxy.socket` names a local socket.

use std::fmt;
use std::path::PathBuf;

use crate::error::ClientError;

/// The default ports of the v1 listeners: (TCP, WebSocket).
pub const V1_PORTS: (u16, u16) = (1213, 1212);
/// The default ports of the v2 TunnelProxy listeners: (TCP, WebSocket).
pub const V2_PORTS: (u16, u16) = (2213, 2212);

/// Where and how to reach a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyUrl {
    /// A TCP connection, optionally with TLS; speaks the byte-stream framing.
    Tcp {
        /// Host name or IP literal.
        host: String,
        /// Port.
        port: u16,
        /// TLS on top.
        tls: bool,
    },
    /// A WebSocket, optionally over TLS.
    WebSocket {
        /// The URL to request (any path; the broker accepts all).
        url: String,
        /// Host name or IP literal.
        host: String,
        /// Port.
        port: u16,
        /// `wss`.
        tls: bool,
    },
    /// A unix socket.
    Unix(PathBuf),
}

impl ProxyUrl {
    /// Parses a URL of the v1 proxy API (a missing port is 1213, or 1212 for WebSocket); errors
    /// name what is wrong.
    pub fn parse(text: &str) -> Result<ProxyUrl, ClientError> {
        Self::parse_with_default_ports(text, V1_PORTS)
    }

    /// Parses a URL of the v2 TunnelProxy API (a missing port is 2213, or 2212 for WebSocket).
    pub fn parse_v2(text: &str) -> Result<ProxyUrl, ClientError> {
        Self::parse_with_default_ports(text, V2_PORTS)
    }

    /// Parses a URL; a missing port is `ports.0` for `tcp`/`ssl` and `ports.1` for `ws`/`wss`.
    pub fn parse_with_default_ports(text: &str, ports: (u16, u16)) -> Result<ProxyUrl, ClientError> {
        let bad = |why: &str| ClientError::InvalidUrl { url: text.to_string(), reason: why.to_string() };
        if !text.contains("://") {
            return Err(bad(&format!(
                "it has no scheme; did you mean ssl://{text} (TLS over TCP, the usual), wss://{text} \
                 (WebSocket), or tcp:// or ws:// for a plain port?"
            )));
        }
        let parsed = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let scheme = parsed.scheme();
        if scheme == "unix" {
            let path = parsed.path();
            if path.is_empty() || path == "/" {
                return Err(bad("a unix URL needs a socket path, e.g. unix:///run/remoteproxy/proxy.socket"));
            }
            return Ok(ProxyUrl::Unix(PathBuf::from(path)));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(addr)) => addr.to_string(),
            Some(host) => host.to_string(),
            None => return Err(bad("the URL has no host")),
        };
        let default_port = match scheme {
            "tcp" | "ssl" | "tls" => ports.0,
            "ws" | "wss" => ports.1,
            other => {
                return Err(bad(&format!("unknown scheme '{other}' (use tcp, ssl, ws, wss or unix)")));
            }
        };
        // `url` forgets a port that is its scheme's own (wss://host:443): an explicit one is kept,
        // only a missing one becomes the API's default.
        let port = match parsed.port() {
            Some(port) => port,
            None if has_explicit_port(text) => parsed.port_or_known_default().unwrap_or(default_port),
            None => default_port,
        };
        Ok(match scheme {
            "tcp" | "ssl" | "tls" => ProxyUrl::Tcp { host, port, tls: scheme != "tcp" },
            _ => ProxyUrl::WebSocket { url: parsed.to_string(), host, port, tls: scheme == "wss" },
        })
    }

    /// The same broker over WebSocket (`tcp`→`ws`, `ssl`→`wss`), for the CLI's `--ws`.
    pub fn into_websocket(self) -> ProxyUrl {
        match self {
            ProxyUrl::Tcp { host, port, tls } => {
                let scheme = if tls { "wss" } else { "ws" };
                let shown = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                ProxyUrl::WebSocket { url: format!("{scheme}://{shown}:{port}/"), host, port, tls }
            }
            other => other,
        }
    }

    /// Whether the connection uses TLS.
    pub fn uses_tls(&self) -> bool {
        match self {
            ProxyUrl::Tcp { tls, .. } | ProxyUrl::WebSocket { tls, .. } => *tls,
            ProxyUrl::Unix(_) => false,
        }
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyUrl::Tcp { host, port, tls } => {
                let shown = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                write!(f, "{}://{shown}:{port}", if *tls { "ssl" } else { "tcp" })
            }
            ProxyUrl::WebSocket { url, .. } => f.write_str(url),
            ProxyUrl::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Whether the URL's authority names a port (`host:443`, `[::1]:443`), even one the `url` crate
/// drops as its scheme's default.
fn has_explicit_port(text: &str) -> bool {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let after_host = host_port.rsplit_once(']').map_or(host_port, |(_, after)| after);
    after_host.rsplit_once(':').is_some_and(|(_, port)| !port.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme() {
        assert_eq!(
            ProxyUrl::parse("ssl://127.0.0.1:1213").unwrap(),
            ProxyUrl::Tcp { host: "127.0.0.1".into(), port: 1213, tls: true }
        );
        assert_eq!(
            ProxyUrl::parse("tcp://[::1]:80").unwrap(),
            ProxyUrl::Tcp { host: "::1".into(), port: 80, tls: false }
        );
        assert!(matches!(
            ProxyUrl::parse("wss://proxy.example.com/path").unwrap(),
            ProxyUrl::WebSocket { port: 1212, tls: true, .. }
        ));
        assert_eq!(ProxyUrl::parse("unix:///run/x.sock").unwrap(), ProxyUrl::Unix("/run/x.sock".into()));
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("http://x", "unknown scheme"),
            ("not a url", "no scheme"),
            ("127.0.0.1:1213", "did you mean ssl://127.0.0.1:1213"),
            ("localhost:1213", "did you mean ssl://localhost:1213"),
            ("unix://", "socket path"),
            ("tcp://:80", "empty host"),
        ] {
            let err = ProxyUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn a_port_that_is_the_schemes_own_is_kept() {
        assert!(matches!(ProxyUrl::parse("wss://proxy:443").unwrap(), ProxyUrl::WebSocket { port: 443, .. }));
        assert!(matches!(ProxyUrl::parse("ws://[::1]:80/").unwrap(), ProxyUrl::WebSocket { port: 80, .. }));
        assert!(matches!(ProxyUrl::parse("wss://proxy").unwrap(), ProxyUrl::WebSocket { port: 1212, .. }));
        assert!(matches!(ProxyUrl::parse("wss://[::1]/x").unwrap(), ProxyUrl::WebSocket { port: 1212, .. }));
        assert!(matches!(ProxyUrl::parse("ssl://proxy:443").unwrap(), ProxyUrl::Tcp { port: 443, .. }));
    }

    #[test]
    fn v2_default_ports() {
        assert_eq!(
            ProxyUrl::parse_v2("ssl://proxy").unwrap(),
            ProxyUrl::Tcp { host: "proxy".into(), port: 2213, tls: true }
        );
        assert!(matches!(ProxyUrl::parse_v2("ws://proxy").unwrap(), ProxyUrl::WebSocket { port: 2212, .. }));
        assert!(matches!(ProxyUrl::parse_v2("tcp://proxy:9").unwrap(), ProxyUrl::Tcp { port: 9, .. }));
    }

    #[test]
    fn ws_switch() {
        let url = ProxyUrl::parse("ssl://[::1]:9").unwrap().into_websocket();
        assert_eq!(url.to_string(), "wss://[::1]:9/");
    }
}
