//! The attackers' TLS: a client configuration that accepts the broker's self-signed certificate
//! but checks the handshake signature and never resumes a session, a connector over it, and the
//! raw ClientHello the slowloris and stalled-handshake attacks send by hand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::json_client::{Json, upgrade};
use super::sources::connect_from;
use super::support::bounded;

/// A TLS client stream to the broker.
pub(super) type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS client configuration: ring, no session resumption (every connection pays a full
/// handshake, as a flood of new clients would), any server certificate (the broker's is
/// self-signed) but a checked handshake signature.
#[derive(Clone)]
pub(super) struct Kit {
    tls: TlsConnector,
    config: Arc<ClientConfig>,
}

impl Kit {
    /// The configuration, and a connector sharing it.
    pub(super) fn new() -> Result<Kit, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(remoteproxy_client::tls::accept_anything(provider))
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        let config = Arc::new(config);
        Ok(Kit { tls: TlsConnector::from(config.clone()), config })
    }

    /// A client's first flight: a complete ClientHello record (empty if rustls made none).
    pub(super) fn client_hello(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Ok(mut conn) = rustls::ClientConnection::new(self.config.clone(), server_name()) {
            while conn.wants_write() {
                if conn.write_tls(&mut out).is_err() {
                    break;
                }
            }
        }
        out
    }

    /// TCP from `source`, then TLS.
    pub(super) async fn tls(&self, source: IpAddr, addr: SocketAddr) -> Result<Tls, String> {
        let tcp = connect_from(source, addr).await?;
        self.tls_over(tcp).await
    }

    /// TLS over a connected `tcp`.
    pub(super) async fn tls_over(&self, tcp: TcpStream) -> Result<Tls, String> {
        bounded("TLS handshake", self.tls.connect(server_name(), tcp)).await
    }

    /// A JSON connection from `source`: TLS-TCP, or a WebSocket over TLS.
    pub(super) async fn json(
        &self,
        source: IpAddr,
        addr: SocketAddr,
        websocket: bool,
    ) -> Result<Json, String> {
        let tls = self.tls(source, addr).await?;
        Ok(if websocket { Json::Ws(Box::new(upgrade(tls).await?)) } else { Json::stream(tls) })
    }
}

/// The name the broker's certificate is not checked against (an IP address: no SNI is sent).
fn server_name() -> ServerName<'static> {
    ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST))
}
