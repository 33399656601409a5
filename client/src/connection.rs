//! The JSON phase of a connection: `Hello`, `Authenticate`, waiting for `TunnelEstablished`.
//!
//! The broker sends compact JSON, one message per line on byte streams and one per text frame on
//! WebSockets. Bytes that arrive behind `TunnelEstablished` in the same read belong to the tunnel
//! and are handed to the [`TunnelStream`] to be read first.

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use remoteproxy_wire::AuthenticationError;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, trace};

use crate::connect::{self, Carrier};
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::stream::TunnelStream;
use crate::url::ProxyUrl;

/// Longest JSON line accepted from a broker; a broker sending more is broken, and the client's
/// memory stays bounded.
const MAX_LINE: usize = 1 << 20;

/// What `RemoteProxy.Hello` says about the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `[ProxyServer] name`.
    pub name: String,
    /// The implementation, e.g. `remoteproxy` or `nymea-remoteproxy`.
    pub server: String,
    /// The implementation's version.
    pub version: String,
    /// The API version.
    pub api_version: String,
}

/// An established tunnel.
pub struct Tunnel {
    /// The partner's `name`.
    pub partner_name: String,
    /// The partner's `uuid`.
    pub partner_uuid: String,
    /// The byte stream to the partner.
    pub stream: TunnelStream,
}

/// The identity and secret a client presents.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The shared token. Never logged.
    pub token: String,
    /// The nonce that, with the token, names the tunnel; `None` sends none.
    pub nonce: Option<String>,
    /// This client's uuid.
    pub uuid: String,
    /// This client's name.
    pub name: String,
}

/// A connection to a broker, before its tunnel.
pub struct ProxyConnection {
    carrier: Carrier,
    /// Unconsumed bytes of a byte-stream carrier.
    buf: BytesMut,
    next_id: i64,
    options: ClientOptions,
    /// Plain TCP or WebSocket without TLS: a broker that closes at once probably expected TLS.
    plain: bool,
}

/// Connects to the broker at `url` (`tcp://`, `ssl://`, `ws://`, `wss://`, `unix://`).
pub async fn connect(url: &str, options: &ClientOptions) -> Result<ProxyConnection, ClientError> {
    ProxyConnection::connect(&ProxyUrl::parse(url)?, options).await
}

/// Connects, says Hello, authenticates and waits for the partner: the whole way to a tunnel.
/// A refused token is [`ClientError::AuthenticationRefused`].
pub async fn open_tunnel(
    url: &ProxyUrl,
    options: &ClientOptions,
    credentials: &Credentials,
) -> Result<Tunnel, ClientError> {
    let mut connection = ProxyConnection::connect(url, options).await?;
    let info = connection.hello().await?;
    debug!(server = %info.server, version = %info.version, name = %info.name, "connected");
    let outcome = connection
        .authenticate(&credentials.token, credentials.nonce.as_deref(), &credentials.uuid, &credentials.name)
        .await?;
    if outcome != AuthenticationError::NoError {
        return Err(ClientError::AuthenticationRefused { outcome });
    }
    debug!("authenticated; waiting for the tunnel partner");
    connection.wait_for_tunnel().await
}

impl ProxyConnection {
    /// Connects to a parsed URL.
    pub async fn connect(url: &ProxyUrl, options: &ClientOptions) -> Result<ProxyConnection, ClientError> {
        let carrier = connect::open(url, options).await?;
        let mut connection = ProxyConnection::from_carrier(carrier, options);
        connection.plain = !url.uses_tls() && !matches!(url, ProxyUrl::Unix(_));
        Ok(connection)
    }

    /// `RemoteProxy.Hello`.
    pub async fn hello(&mut self) -> Result<ServerInfo, ClientError> {
        let params = self.call("RemoteProxy.Hello", json!({})).await?;
        let field = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        Ok(ServerInfo {
            name: field("name"),
            server: field("server"),
            version: field("version"),
            api_version: field("apiVersion"),
        })
    }

    /// `Authentication.Authenticate`; returns the broker's outcome. Anything but `NoError` means
    /// the broker is closing the connection.
    pub async fn authenticate(
        &mut self,
        token: &str,
        nonce: Option<&str>,
        uuid: &str,
        name: &str,
    ) -> Result<AuthenticationError, ClientError> {
        let mut params = json!({"uuid": uuid, "name": name, "token": token});
        if let Some(nonce) = nonce {
            params["nonce"] = json!(nonce);
        }
        let result = self.call("Authentication.Authenticate", params).await?;
        let wire = result.get("authenticationError").and_then(Value::as_str).unwrap_or_default();
        AuthenticationError::ALL
            .into_iter()
            .find(|outcome| outcome.wire_name() == wire)
            .ok_or_else(|| ClientError::Protocol(format!("unknown authenticationError '{wire}'")))
    }

    /// Waits for `TunnelEstablished` and turns the connection into the tunnel.
    pub async fn wait_for_tunnel(mut self) -> Result<Tunnel, ClientError> {
        let limit = self.options.tunnel_timeout;
        let wait = async {
            loop {
                let message = match self.next_message().await {
                    Ok(message) => message,
                    Err(ClientError::ServerClosed { reason }) => {
                        return Err(partner_missing_or_closed(reason));
                    }
                    Err(other) => return Err(other),
                };
                if message.get("notification").and_then(Value::as_str)
                    == Some("RemoteProxy.TunnelEstablished")
                {
                    let params = &message["params"];
                    let field =
                        |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
                    return Ok((field("name"), field("uuid")));
                }
                debug!(%message, "ignoring a message while waiting for the tunnel");
            }
        };
        let (partner_name, partner_uuid) = match limit {
            Some(limit) => {
                tokio::time::timeout(limit, wait).await.map_err(|_| ClientError::PartnerDidNotShowUp)??
            }
            None => wait.await?,
        };
        Ok(Tunnel { partner_name, partner_uuid, stream: self.into_stream() })
    }

    /// A connection over an already open carrier (tests use in-memory pipes).
    pub(crate) fn from_carrier(carrier: Carrier, options: &ClientOptions) -> ProxyConnection {
        ProxyConnection { carrier, buf: BytesMut::new(), next_id: 0, options: options.clone(), plain: false }
    }

    /// Ends the JSON phase: the rest of the connection is a byte stream, starting with the bytes
    /// already read behind the last message.
    pub(crate) fn into_stream(self) -> TunnelStream {
        match self.carrier {
            Carrier::Stream(stream) => TunnelStream::stream(stream, self.buf.freeze()),
            Carrier::WebSocket { ws, half_close } => TunnelStream::websocket(*ws, half_close),
        }
    }

    /// Sends a request and returns the `params` of its success response.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        debug!(id, method, "request");
        let request = json!({"id": id, "method": method, "params": params});
        let limit = self.options.request_timeout;
        let exchange = async {
            self.send(&request).await?;
            loop {
                let message = self.next_message().await?;
                if message.get("id").and_then(Value::as_i64) != Some(id)
                    || message.get("notification").is_some()
                {
                    debug!(%message, "ignoring an unrelated message");
                    continue;
                }
                return match message.get("status").and_then(Value::as_str) {
                    Some("success") => Ok(message.get("params").cloned().unwrap_or(json!({}))),
                    _ => Err(ClientError::Rejected(
                        message.get("error").and_then(Value::as_str).unwrap_or("no reason given").to_string(),
                    )),
                };
            }
        };
        let result = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| ClientError::Timeout("the server's response"))?;
        result.map_err(|error| self.explain(id, method, error))
    }

    /// Points a user at the probable fix when the broker's answer shows the wrong port or
    /// scheme was used.
    fn explain(&self, id: i64, method: &str, error: ClientError) -> ClientError {
        match error {
            ClientError::ServerClosed { reason: None } if id == 0 && self.plain => ClientError::Protocol(
                "the server closed the connection without answering; is this a TLS port? use ssl:// or wss://"
                    .to_string(),
            ),
            ClientError::Rejected(reason) if reason == "No such namespace" => {
                let hint = if method.starts_with("TunnelProxy.") {
                    "is this the broker's v2 TunnelProxy port? its default is 2213, or 2212 for WebSocket"
                } else {
                    "is this the broker's v1 port? its default is 1213, or 1212 for WebSocket; \
                     the v2 ports take the tunnel-server and tunnel-client subcommands"
                };
                ClientError::Rejected(format!("{reason} ({hint})"))
            }
            other => other,
        }
    }

    async fn send(&mut self, message: &Value) -> Result<(), ClientError> {
        let mut text = message.to_string();
        text.push('\n');
        match &mut self.carrier {
            Carrier::Stream(stream) => {
                stream.write_all(text.as_bytes()).await?;
                stream.flush().await?;
            }
            Carrier::WebSocket { ws, .. } => ws.send(Message::text(text)).await.map_err(ws_error)?,
        }
        Ok(())
    }

    /// The next message from the broker.
    async fn next_message(&mut self) -> Result<Value, ClientError> {
        let bytes = match &mut self.carrier {
            Carrier::Stream(stream) => loop {
                if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                    break self.buf.split_to(end + 1).freeze();
                }
                if self.buf.len() > MAX_LINE {
                    return Err(ClientError::Protocol("a message from the server is too long".into()));
                }
                self.buf.reserve(8192);
                if stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(ClientError::ServerClosed { reason: None });
                }
            },
            Carrier::WebSocket { ws, .. } => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => break text.into(),
                    Some(Ok(Message::Binary(data))) => break data,
                    Some(Ok(Message::Close(frame))) => {
                        return Err(ClientError::ServerClosed {
                            reason: frame.map(|f| f.reason.to_string()),
                        });
                    }
                    Some(Ok(_)) => continue,
                    None => return Err(ClientError::ServerClosed { reason: None }),
                    Some(Err(e)) => return Err(ws_error(e)),
                }
            },
        };
        trace!(message = %String::from_utf8_lossy(&bytes).trim_end(), "received");
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("the server sent invalid JSON: {e}")))
    }
}

/// A broker closes a waiting client only when its partner did not come (or on shutdown, which a
/// byte stream cannot tell apart).
fn partner_missing_or_closed(reason: Option<String>) -> ClientError {
    match reason {
        None => ClientError::PartnerDidNotShowUp,
        Some(reason) if reason.contains("did not show up") => ClientError::PartnerDidNotShowUp,
        Some(reason) => ClientError::ServerClosed { reason: Some(reason) },
    }
}

fn ws_error(error: tokio_tungstenite::tungstenite::Error) -> ClientError {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Io(e) => ClientError::Io(e),
        Error::ConnectionClosed | Error::AlreadyClosed => ClientError::ServerClosed { reason: None },
        other => ClientError::WebSocket(other.to_string()),
    }
}
