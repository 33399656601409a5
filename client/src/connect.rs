//! Reaching the broker: TCP or unix connect, TLS handshake, WebSocket upgrade, all bounded by
//! [`ClientOptions::connect_timeout`].

use std::io;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;

use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::tls;
use crate::url::ProxyUrl;

/// Any byte stream the client runs on.
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> IoStream for T {}

/// A boxed byte stream.
pub type BoxStream = Box<dyn IoStream>;

/// The carrier of a connection in its JSON phase.
pub enum Carrier {
    /// TCP, TLS or unix.
    Stream(BoxStream),
    /// WebSocket; `half_close` when the broker granted half-close at the upgrade.
    WebSocket {
        /// The connection.
        ws: Box<WebSocketStream<BoxStream>>,
        /// An empty binary message ends a direction (see [`HALF_CLOSE_HEADER`]).
        half_close: bool,
    },
}

/// The upgrade header by which the client asks for half-close over WebSocket; a broker that
/// grants it answers with the same header. A header, not a subprotocol: asking for a subprotocol
/// fails the upgrade against brokers that know none (the reference broker), an unknown header
/// is ignored.
pub const HALF_CLOSE_HEADER: &str = "remoteproxy-half-close";

/// Opens the carrier to the broker at `url`.
pub async fn open(url: &ProxyUrl, options: &ClientOptions) -> Result<Carrier, ClientError> {
    tokio::time::timeout(options.connect_timeout, open_unbounded(url, options))
        .await
        .map_err(|_| ClientError::Timeout("the connection to the broker"))?
}

async fn open_unbounded(url: &ProxyUrl, options: &ClientOptions) -> Result<Carrier, ClientError> {
    let (host, port, tls) = match url {
        ProxyUrl::Unix(path) => {
            let stream = UnixStream::connect(path).await.map_err(|e| connect_error(&url.to_string(), e))?;
            return Ok(Carrier::Stream(Box::new(stream)));
        }
        ProxyUrl::Tcp { host, port, tls } | ProxyUrl::WebSocket { host, port, tls, .. } => {
            (host, *port, *tls)
        }
    };
    let address = url.to_string();
    // Configuration mistakes (an unreadable CA file) are reported as such, whatever the network.
    let config = if tls { Some(tls::client_config(options)?) } else { None };
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| connect_error(&address, e))?;
    let _ = tcp.set_nodelay(true);
    let stream: BoxStream = if let Some(config) = config {
        let name = options.server_name.clone().unwrap_or_else(|| host.clone());
        let name = ServerName::try_from(name)
            .map_err(|e| ClientError::InvalidUrl { url: address.clone(), reason: e.to_string() })?;
        let stream =
            TlsConnector::from(config).connect(name, tcp).await.map_err(|e| tls_error(e, options))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    match url {
        ProxyUrl::WebSocket { url, .. } => {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = url
                .as_str()
                .into_client_request()
                .map_err(|e| ClientError::InvalidUrl { url: address.clone(), reason: e.to_string() })?;
            request.headers_mut().insert(HALF_CLOSE_HEADER, "1".parse().expect("a valid header value"));
            let (ws, response) =
                tokio_tungstenite::client_async(request, stream).await.map_err(upgrade_error)?;
            let half_close = response.headers().get(HALF_CLOSE_HEADER).is_some_and(|v| v.as_bytes() == b"1");
            Ok(Carrier::WebSocket { ws: Box::new(ws), half_close })
        }
        _ => Ok(Carrier::Stream(stream)),
    }
}

fn connect_error(address: &str, error: io::Error) -> ClientError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ClientError::ConnectionRefused { address: address.to_string() },
        _ => ClientError::Unreachable { address: address.to_string(), reason: error.to_string() },
    }
}

/// Separates certificate rejections (the user must fix trust) from other handshake failures,
/// each in one plain line (rustls's own texts are debug prints and links into its docs).
fn tls_error(error: io::Error, options: &ClientOptions) -> ClientError {
    use rustls::CertificateError as Cert;
    let Some(inner) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return ClientError::Tls(format!(
            "{} (is this a TLS port? use tcp:// or ws:// for a plain one)",
            error.kind()
        ));
    };
    match inner {
        rustls::Error::InvalidCertificate(reason) => {
            let reason = match reason {
                Cert::UnknownIssuer => "it is not signed by a trusted CA",
                Cert::NotValidForName | Cert::NotValidForNameContext { .. } => {
                    "it is not valid for this host name"
                }
                Cert::Expired | Cert::ExpiredContext { .. } => "it has expired",
                Cert::NotValidYet | Cert::NotValidYetContext { .. } => "it is not valid yet",
                Cert::Revoked => "it was revoked",
                Cert::BadSignature => "its signature is invalid",
                Cert::BadEncoding => "it cannot be read",
                // webpki's reason arrives wrapped as an "other" error.
                other if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                    "it is a CA certificate, not a server certificate"
                }
                _ => "it was rejected",
            };
            let hint = if options.ca_file.is_some() || !options.pinned_sha256.is_empty() {
                "check that --ca names the broker's certificate or its CA, or trust it with --pin \
                 sha256:FINGERPRINT as the broker logs it"
            } else {
                "trust a private broker with --ca FILE or --pin sha256:FINGERPRINT as the broker logs it"
            };
            ClientError::TlsVerification { reason: reason.to_string(), hint }
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => ClientError::Tls(
            "the server does not speak TLS on this port (use tcp:// or ws:// for a plain port)".to_string(),
        ),
        rustls::Error::AlertReceived(alert) => ClientError::Tls(format!(
            "the server refused the handshake ({alert:?} alert); a client certificate may be needed (--cert, --key)"
        )),
        other => ClientError::Tls(plain_rustls_text(other)),
    }
}

/// rustls's display text without the link into its documentation some texts carry.
fn plain_rustls_text(error: &rustls::Error) -> String {
    let text = error.to_string();
    match text.find(": https://") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// A failed upgrade whose answer was no HTTP at all came from a port that does not speak
/// WebSocket (the TCP port, most likely).
fn upgrade_error(error: tokio_tungstenite::tungstenite::Error) -> ClientError {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::HttpFormat(_) | Error::Protocol(_) | Error::ConnectionClosed => ClientError::WebSocket(
            "the server does not speak WebSocket on this port (drop --ws and ws:// or wss://, or use \
                 the WebSocket port: 1212 for v1, 2212 for v2)"
                .to_string(),
        ),
        other => ClientError::WebSocket(other.to_string()),
    }
}
