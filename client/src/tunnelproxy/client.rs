//! The client role: reach one registered server through the broker.

use tracing::debug;

use crate::connection::ProxyConnection;
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::stream::TunnelStream;
use crate::tunnelproxy::TunnelProxyError;
use crate::url::ProxyUrl;

/// Who a TunnelProxy client is and which server it wants.
///
/// ```no_run
/// # async fn demo() -> Result<(), remoteproxy_client::ClientError> {
/// use remoteproxy_client::{ClientOptions, ProxyUrl, TunnelClient};
/// use tokio::io::AsyncWriteExt;
///
/// let url = ProxyUrl::parse_v2("ssl://proxy.example.com:2213")?;
/// let client = TunnelClient::new("3f2504e0-4f89-11d3-9a0c-0305e82c3301");
/// let mut stream = client.connect(&url, &ClientOptions::default()).await?;
/// stream.write_all(b"hello server").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TunnelClient {
    /// The uuid of the server to reach.
    pub server_uuid: String,
    /// This client's uuid; unique among everything registered on the broker.
    pub uuid: String,
    /// This client's name, shown to the server.
    pub name: String,
}

impl TunnelClient {
    /// A client of `server_uuid` with a random uuid and the name `remoteproxy-client`.
    pub fn new(server_uuid: impl Into<String>) -> TunnelClient {
        TunnelClient {
            server_uuid: server_uuid.into(),
            uuid: uuid::Uuid::new_v4().to_string(),
            name: "remoteproxy-client".into(),
        }
    }

    /// Connects, says Hello and registers. On success the connection is a raw byte pipe to the
    /// server (bytes that arrived behind the response are read first); a refusal is
    /// [`ClientError::TunnelProxyRefused`].
    pub async fn connect(
        &self,
        url: &ProxyUrl,
        options: &ClientOptions,
    ) -> Result<TunnelStream, ClientError> {
        let mut connection = ProxyConnection::connect(url, options).await?;
        self.register(&mut connection).await?;
        Ok(connection.into_stream())
    }

    /// Hello and RegisterClient on an open connection.
    pub(crate) async fn register(&self, connection: &mut ProxyConnection) -> Result<(), ClientError> {
        let info = connection.hello().await?;
        debug!(server = %info.server, version = %info.version, name = %info.name, "connected");
        match connection.register_client(&self.uuid, &self.name, &self.server_uuid).await? {
            TunnelProxyError::NoError => {
                debug!(server = %self.server_uuid, "registered as a client");
                Ok(())
            }
            error => Err(ClientError::TunnelProxyRefused { error }),
        }
    }
}
