//! The lean v1 (and v2 TunnelProxy) client that every measure uses, against the broker and the
//! baselines alike.
//!
//! Why not `remoteproxy-client`: the bench must bind each connection to a chosen source address
//! (127.0.0.2..254, or thousands of tunnels run out of ephemeral ports), share one TLS client
//! configuration between connections (the library builds a new one, and loads the web PKI roots,
//! per connection), and send WebSocket payloads without copying them (the library copies every
//! write into a new message). Each of those would add client work that is not the broker's.
//!
//! What is kept equal for the broker and the baselines: connect (with `TCP_NODELAY`), the TLS
//! handshake (one shared rustls config, ring, resumption off so every connection pays a full
//! handshake as a new device would; the `storm` measure alone gives each simulated device a
//! session store of its own, see [`Client::device_tls`], server certificate not verified but its handshake
//! signature is), the WebSocket upgrade, JSON encoding, and every byte moved afterwards. Only
//! the handshake messages differ, see [`Handshake`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use remoteproxy_client::tls::accept_anything;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Any byte stream a connection runs on (TCP or TLS over TCP).
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> IoStream for T {}

/// A boxed byte stream: the same dynamic dispatch for broker and baseline connections.
pub type Io = Box<dyn IoStream>;

type Ws = WebSocketStream<Io>;

/// The Hello request, id 0.
const HELLO: &str = r#"{"id":0,"method":"RemoteProxy.Hello","params":{}}"#;

/// Longest JSON line accepted during the handshake.
const MAX_LINE: usize = 64 << 10;

/// tungstenite's read buffer on the connections the bench holds by the thousand (registered v2
/// servers): its default of 128 KiB per connection would make the bench, not the broker, the
/// process that runs out of memory at 18,000 servers. Those connections carry a few hundred
/// bytes at a time.
pub const LEAN_WS_READ_BUFFER: usize = 4 << 10;

/// TLS 1.3 tickets a device keeps (rustls' most per server name; servers send 2 per handshake).
const DEVICE_TICKETS: usize = 8;

/// The `TunnelProxyError` of a successful v2 call.
pub const V2_NO_ERROR: &str = "TunnelProxyErrorNoError";

/// Where a server listens, parsed from `ssl://`, `tcp://`, `wss://` or `ws://` URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The resolved address.
    pub addr: SocketAddr,
    /// TLS on the connection.
    pub tls: bool,
    /// WebSocket (JSON in text frames) rather than a byte stream.
    pub websocket: bool,
    /// The host as written, for the TLS server name and the WebSocket `Host`.
    pub host: String,
    /// The WebSocket request path.
    pub path: String,
}

impl Endpoint {
    /// Parses and resolves a URL. Default ports are the protocol's: 1213 for TCP, 1212 for
    /// WebSocket.
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| anyhow::anyhow!("{url}: expected scheme://host:port"))?;
        let (tls, websocket) = match scheme {
            "ssl" | "tls" => (true, false),
            "tcp" => (false, false),
            "wss" => (true, true),
            "ws" => (false, true),
            other => anyhow::bail!("{url}: unknown scheme {other:?} (ssl, tcp, wss, ws)"),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].to_string()),
            None => (rest, "/".to_string()),
        };
        let default_port = if websocket { 1212 } else { 1213 };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| anyhow::anyhow!("{url}: cannot read host and port"))?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("{url}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{url}: {host} has no address"))?;
        Ok(Endpoint { addr, tls, websocket, host, path })
    }

    /// An endpoint on a known address (the baselines print theirs).
    pub fn at(addr: SocketAddr, tls: bool, websocket: bool) -> Endpoint {
        Endpoint { addr, tls, websocket, host: addr.ip().to_string(), path: "/".into() }
    }

    /// The URL again, with the resolved address.
    pub fn url(&self) -> String {
        let scheme = match (self.websocket, self.tls) {
            (false, true) => "ssl",
            (false, false) => "tcp",
            (true, true) => "wss",
            (true, false) => "ws",
        };
        let path = if self.websocket { self.path.as_str() } else { "" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The transport's name in results: `tls-tcp`, `tcp`, `wss`, `ws`.
    pub fn label(&self) -> &'static str {
        match (self.websocket, self.tls) {
            (false, true) => "tls-tcp",
            (false, false) => "tcp",
            (true, true) => "wss",
            (true, false) => "ws",
        }
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

/// The messages a client exchanges before its tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The real v1 API, as nymea clients do it, one request at a time: `RemoteProxy.Hello` and its
    /// response, `Authentication.Authenticate` and its response (`NoError` required), then the
    /// `RemoteProxy.TunnelEstablished` notification.
    V1,
    /// The baselines' minimal exchange: the same `Authentication.Authenticate` line is sent, and
    /// one line (the `TunnelEstablished` notification) comes back once the partner is there.
    Minimal,
}

/// Why a connection or a tunnel failed; counted by [`Failure::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// TCP connect (or binding the source address) failed.
    Connect(String),
    /// The TLS handshake failed.
    Tls(String),
    /// The WebSocket upgrade failed.
    Upgrade(String),
    /// The server answered something unexpected.
    Protocol(String),
    /// Authenticate did not answer `AuthenticationErrorNoError`.
    Refused(String),
    /// The server closed the connection during the handshake.
    Closed,
    /// A step took longer than the bench's timeout.
    Timeout(&'static str),
    /// Reading or writing tunnel data failed, or the data was not what was sent.
    Data(String),
}

impl Failure {
    /// The text errors are counted by: the kind and a short reason.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Tls(e) => write!(f, "tls: {e}"),
            Failure::Upgrade(e) => write!(f, "websocket upgrade: {e}"),
            Failure::Protocol(e) => write!(f, "protocol: {e}"),
            Failure::Refused(e) => write!(f, "refused: {e}"),
            Failure::Closed => write!(f, "closed by the server during the handshake"),
            Failure::Timeout(what) => write!(f, "timeout: {what}"),
            Failure::Data(e) => write!(f, "data: {e}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Shared client state: TLS configuration, source addresses, timeouts, credential counter.
pub struct Client {
    tls: TlsConnector,
    /// The configuration behind `tls`, for [`Client::device_tls`].
    tls_config: Arc<ClientConfig>,
    sources: SourcePool,
    /// Bound of each handshake step (connect, TLS, upgrade, each message).
    pub step_timeout: Duration,
    tokens: AtomicU64,
}

impl Client {
    /// A client; `spread_sources` binds connections to loopback targets to 127.0.0.2..=254 in
    /// turn.
    pub fn new(spread_sources: bool, step_timeout: Duration) -> Client {
        let tls_config = tls_config();
        Client {
            tls: TlsConnector::from(tls_config.clone()),
            tls_config,
            sources: SourcePool { next: AtomicUsize::new(0), spread: spread_sources },
            step_timeout,
            tokens: AtomicU64::new(0),
        }
    }

    /// A fresh, never used token for one tunnel (both ends present it). Tokens carry the bench's
    /// pid, so two bench runs against one broker never collide.
    pub fn fresh_credentials(&self) -> (Credentials, Credentials) {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let token = format!("bench-{pid}-{n}");
        let nonce = format!("n{n}");
        let end = |side: u64, name: &str| Credentials {
            token: token.clone(),
            nonce: nonce.clone(),
            uuid: format!("{:08x}-{:04x}-4000-8000-{:012x}", pid, side, n),
            name: name.to_string(),
        };
        (end(1, "bench-a"), end(2, "bench-b"))
    }

    /// Opens both ends of one tunnel concurrently (as a device and an app that connect at the
    /// same time) and returns them once both saw `TunnelEstablished`.
    pub async fn open_tunnel(
        &self,
        a: &Endpoint,
        b: &Endpoint,
        handshake: Handshake,
    ) -> Result<(Conn, Conn), Failure> {
        let (cred_a, cred_b) = self.fresh_credentials();
        let (end_a, end_b) =
            tokio::join!(self.open_end(a, handshake, &cred_a), self.open_end(b, handshake, &cred_b));
        Ok((end_a?, end_b?))
    }

    /// Connects, handshakes and waits for the partner.
    pub async fn open_end(
        &self,
        endpoint: &Endpoint,
        handshake: Handshake,
        credentials: &Credentials,
    ) -> Result<Conn, Failure> {
        let mut conn = self.connect(endpoint).await?;
        let limit = self.step_timeout;
        match handshake {
            Handshake::V1 => {
                conn.send_line(HELLO).await?;
                let hello = bounded(limit, "Hello response", conn.response(0)).await?;
                if hello.get("status").and_then(Value::as_str) != Some("success") {
                    return Err(Failure::Protocol(format!("Hello failed: {hello}")));
                }
                conn.send_line(&authenticate_line(1, credentials)).await?;
                let auth = bounded(limit, "Authenticate response", conn.response(1)).await?;
                let outcome = auth["params"]["authenticationError"].as_str().unwrap_or_default().to_string();
                if outcome != "AuthenticationErrorNoError" {
                    return Err(Failure::Refused(if outcome.is_empty() {
                        auth.to_string()
                    } else {
                        outcome
                    }));
                }
                bounded(limit, "TunnelEstablished", conn.tunnel_established()).await?;
            }
            Handshake::Minimal => {
                conn.send_line(&authenticate_line(1, credentials)).await?;
                bounded(limit, "TunnelEstablished", conn.tunnel_established()).await?;
            }
        }
        Ok(conn)
    }

    /// A uuid never used before in this run (the pid, `role` and a counter; the broker refuses a
    /// uuid that is registered already).
    pub fn fresh_uuid(&self, role: u16) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{:08x}-{role:04x}-4000-8000-{n:012x}", std::process::id())
    }

    /// Connects to a v2 TunnelProxy listener and registers a server (`TunnelProxy.RegisterServer`,
    /// id 1); returns the connection once the broker answered `NoError` with SLIP enabled. From
    /// then on the connection speaks SLIP; bytes already read behind the response stay in the
    /// connection's buffer. WebSocket connections use a small read buffer
    /// ([`LEAN_WS_READ_BUFFER`]), as the bench holds thousands of them.
    pub async fn register_server(
        &self,
        endpoint: &Endpoint,
        uuid: &str,
        name: &str,
    ) -> Result<Conn, Failure> {
        Ok(self.register_server_via(endpoint, uuid, name, &self.tls).await?.0)
    }

    /// [`Client::register_server`] over the TLS connector `tls` (a device's own, see
    /// [`Client::device_tls`]); also returns how the TLS handshake went (`None` without TLS).
    pub async fn register_server_via(
        &self,
        endpoint: &Endpoint,
        uuid: &str,
        name: &str,
        tls: &TlsConnector,
    ) -> Result<(Conn, Option<HandshakeKind>), Failure> {
        let lean = WebSocketConfig::default().read_buffer_size(LEAN_WS_READ_BUFFER);
        let (mut conn, kind) = self.connect_via(endpoint, Some(lean), tls).await?;
        let params = serde_json::json!({"serverName": name, "serverUuid": uuid});
        conn.send_line(&format!(r#"{{"id":1,"method":"TunnelProxy.RegisterServer","params":{params}}}"#))
            .await?;
        let response = bounded(self.step_timeout, "RegisterServer response", conn.response(1)).await?;
        let outcome = response["params"]["tunnelProxyError"].as_str().unwrap_or_default();
        if outcome != V2_NO_ERROR {
            return Err(Failure::Refused(if outcome.is_empty() {
                response.to_string()
            } else {
                outcome.into()
            }));
        }
        if response["params"]["slipEnabled"] != Value::Bool(true) {
            return Err(Failure::Protocol(format!("RegisterServer did not enable SLIP: {response}")));
        }
        Ok((conn, kind))
    }

    /// Connects to a v2 TunnelProxy listener and registers a client of `server_uuid`
    /// (`TunnelProxy.RegisterClient`, id 1); returns the connection, now a raw pipe to the
    /// server, once the broker answered `NoError`.
    pub async fn register_client(
        &self,
        endpoint: &Endpoint,
        client_uuid: &str,
        server_uuid: &str,
    ) -> Result<Conn, Failure> {
        let mut conn = self.connect(endpoint).await?;
        let params = serde_json::json!({"clientName": "bench-client", "clientUuid": client_uuid, "serverUuid": server_uuid});
        conn.send_line(&format!(r#"{{"id":1,"method":"TunnelProxy.RegisterClient","params":{params}}}"#))
            .await?;
        let response = bounded(self.step_timeout, "RegisterClient response", conn.response(1)).await?;
        let outcome = response["params"]["tunnelProxyError"].as_str().unwrap_or_default();
        if outcome != V2_NO_ERROR {
            return Err(Failure::Refused(if outcome.is_empty() {
                response.to_string()
            } else {
                outcome.into()
            }));
        }
        Ok(conn)
    }

    /// Connects and asks `RemoteProxy.Hello`; returns `server version` (e.g. `remoteproxy 0.1.0`).
    pub async fn hello(&self, endpoint: &Endpoint) -> Result<String, Failure> {
        let mut conn = self.connect(endpoint).await?;
        conn.send_line(HELLO).await?;
        let response = bounded(self.step_timeout, "Hello response", conn.response(0)).await?;
        let text = |key: &str| response["params"][key].as_str().unwrap_or("?").to_string();
        Ok(format!("{} {}", text("server"), text("version")))
    }

    /// TCP connect (from the next source address), TLS, WebSocket upgrade; each step bounded.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<Conn, Failure> {
        self.connect_with(endpoint, None).await
    }

    /// [`Client::connect`] with a WebSocket configuration (tungstenite's default without).
    pub async fn connect_with(
        &self,
        endpoint: &Endpoint,
        ws_config: Option<WebSocketConfig>,
    ) -> Result<Conn, Failure> {
        Ok(self.connect_via(endpoint, ws_config, &self.tls).await?.0)
    }

    /// A TLS connector for one simulated device: the bench's configuration with a session store
    /// of its own, so the device keeps the tickets its server sends and resumes with them on its
    /// next connection, as a real device does. One shared store would not do: rustls keeps at
    /// most 8 TLS 1.3 tickets per server name in a store, so thousands of devices sharing one
    /// configuration (all to the same server name) would share 8 tickets.
    pub fn device_tls(&self) -> TlsConnector {
        let mut config = (*self.tls_config).clone();
        config.resumption = Resumption::in_memory_sessions(DEVICE_TICKETS);
        TlsConnector::from(Arc::new(config))
    }

    /// [`Client::connect_with`] over the TLS connector `tls`; also returns how the TLS
    /// handshake went (`None` without TLS).
    pub async fn connect_via(
        &self,
        endpoint: &Endpoint,
        ws_config: Option<WebSocketConfig>,
        tls: &TlsConnector,
    ) -> Result<(Conn, Option<HandshakeKind>), Failure> {
        let limit = self.step_timeout;
        let socket = match endpoint.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| Failure::Connect(e.to_string()))?;
        if let Some(source) = self.sources.next(endpoint.addr) {
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|e| Failure::Connect(format!("bind {source}: {e}")))?;
        }
        let tcp = bounded(limit, "TCP connect", async {
            socket.connect(endpoint.addr).await.map_err(|e| Failure::Connect(e.to_string()))
        })
        .await?;
        let _ = tcp.set_nodelay(true);
        let mut kind = None;
        let io: Io = if endpoint.tls {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|e| Failure::Tls(format!("server name {}: {e}", endpoint.host)))?;
            let tls = bounded(limit, "TLS handshake", async {
                tls.connect(name, tcp).await.map_err(|e| Failure::Tls(e.to_string()))
            })
            .await?;
            kind = tls.get_ref().1.handshake_kind();
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        if endpoint.websocket {
            let url = format!(
                "{}://{}{}",
                if endpoint.tls { "wss" } else { "ws" },
                endpoint.host_port(),
                endpoint.path
            );
            let (ws, _) = bounded(limit, "WebSocket upgrade", async {
                tokio_tungstenite::client_async_with_config(url, io, ws_config)
                    .await
                    .map_err(|e| Failure::Upgrade(e.to_string()))
            })
            .await?;
            Ok((Conn::Ws(Box::new(ws)), kind))
        } else {
            Ok((Conn::Stream { io, buf: BytesMut::new() }, kind))
        }
    }
}

impl Endpoint {
    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.addr.port())
        } else {
            format!("{}:{}", self.host, self.addr.port())
        }
    }
}

async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, future).await.map_err(|_| Failure::Timeout(what))?
}

fn authenticate_line(id: u64, c: &Credentials) -> String {
    let params = serde_json::json!({"uuid": c.uuid, "name": c.name, "token": c.token, "nonce": c.nonce});
    format!(r#"{{"id":{id},"method":"Authentication.Authenticate","params":{params}}}"#)
}

/// The identity one end presents.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Shared by both ends of the tunnel.
    pub token: String,
    /// Shared by both ends of the tunnel.
    pub nonce: String,
    /// Different per end (the broker refuses a duplicate uuid).
    pub uuid: String,
    /// Different per end.
    pub name: String,
}

/// Source addresses for connections to loopback: 127.0.0.2..=127.0.0.254 in turn, so 2×9000
/// connections (and the TIME_WAIT they leave) never exhaust one address's ephemeral ports.
struct SourcePool {
    next: AtomicUsize,
    spread: bool,
}

impl SourcePool {
    fn next(&self, target: SocketAddr) -> Option<IpAddr> {
        if !self.spread || !matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n % 253) as u8)))
    }
}

/// A connection in its handshake phase.
pub enum Conn {
    /// TCP or TLS; `buf` holds bytes read but not consumed (tunnel bytes that came with the last
    /// JSON line are read first later).
    Stream {
        /// The stream.
        io: Io,
        /// Unconsumed bytes.
        buf: BytesMut,
    },
    /// WebSocket.
    Ws(Box<Ws>),
}

impl Conn {
    async fn send_line(&mut self, line: &str) -> Result<(), Failure> {
        let text = format!("{line}\n");
        let io_failure = |e: io::Error| Failure::Protocol(format!("write: {e}"));
        match self {
            Conn::Stream { io, .. } => {
                io.write_all(text.as_bytes()).await.map_err(io_failure)?;
                io.flush().await.map_err(io_failure)
            }
            Conn::Ws(ws) => {
                ws.send(Message::text(text)).await.map_err(|e| Failure::Protocol(format!("write: {e}")))
            }
        }
    }

    /// The next JSON message from the server.
    async fn next_json(&mut self) -> Result<Value, Failure> {
        let bytes: Bytes = match self {
            Conn::Stream { io, buf } => loop {
                if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    break buf.split_to(end + 1).freeze();
                }
                if buf.len() > MAX_LINE {
                    return Err(Failure::Protocol("a line longer than 64 KiB".into()));
                }
                buf.reserve(4096);
                match io.read_buf(buf).await {
                    Ok(0) => return Err(Failure::Closed),
                    Ok(_) => {}
                    Err(e) => return Err(Failure::Protocol(format!("read: {e}"))),
                }
            },
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => break Bytes::from(text),
                    Some(Ok(Message::Binary(data))) => break data,
                    Some(Ok(Message::Close(_))) | None => return Err(Failure::Closed),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(Failure::Protocol(format!("read: {e}"))),
                }
            },
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Protocol(format!("invalid JSON from the server: {e}")))
    }

    /// The response to request `id` (notifications and other ids are skipped).
    async fn response(&mut self, id: i64) -> Result<Value, Failure> {
        loop {
            let message = self.next_json().await?;
            if message.get("notification").is_none() && message.get("id").and_then(Value::as_i64) == Some(id)
            {
                return Ok(message);
            }
        }
    }

    async fn tunnel_established(&mut self) -> Result<(), Failure> {
        loop {
            let message = self.next_json().await?;
            if message.get("notification").and_then(Value::as_str) == Some("RemoteProxy.TunnelEstablished") {
                return Ok(());
            }
            if message.get("status").and_then(Value::as_str) == Some("error") {
                return Err(Failure::Protocol(format!("error while waiting for the tunnel: {message}")));
            }
        }
    }

    /// The tunnel's two directions, to use concurrently.
    pub fn split(self) -> (Reader, Writer) {
        match self {
            Conn::Stream { io, buf } => {
                let (read, write) = tokio::io::split(io);
                (Reader::Stream { early: buf.freeze(), io: read }, Writer::Stream(write))
            }
            Conn::Ws(ws) => {
                let (sink, stream) = (*ws).split();
                (Reader::Ws(stream), Writer::Ws(sink))
            }
        }
    }
}

/// The receiving direction of a tunnel end.
pub enum Reader {
    /// Byte stream; `early` bytes came with the handshake and are read first.
    Stream {
        /// Tunnel bytes read during the handshake.
        early: Bytes,
        /// The stream.
        io: ReadHalf<Io>,
    },
    /// WebSocket data messages.
    Ws(SplitStream<Ws>),
}

impl Reader {
    /// Receives some tunnel payload and returns its length (0 at the end of the tunnel). Stream
    /// bytes land in `scratch`; WebSocket payloads are only counted, not copied.
    pub async fn read_some(&mut self, scratch: &mut [u8]) -> Result<usize, Failure> {
        match self {
            Reader::Stream { early, io } => {
                if !early.is_empty() {
                    let n = early.len().min(scratch.len());
                    scratch[..n].copy_from_slice(&early[..n]);
                    early.advance(n);
                    return Ok(n);
                }
                io.read(scratch).await.map_err(|e| Failure::Data(format!("read: {e}")))
            }
            Reader::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(data))) => return Ok(data.len()),
                    Some(Ok(Message::Text(text))) => return Ok(text.len()),
                    Some(Ok(Message::Close(_))) | None => return Ok(0),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(Failure::Data(format!("read: {e}"))),
                }
            },
        }
    }

    /// Receives some tunnel payload and appends it to `out` (what [`Reader::read_some`] only
    /// counts, for callers that check content); its length, 0 at the end of the tunnel.
    pub async fn read_into(&mut self, out: &mut Vec<u8>, scratch: &mut [u8]) -> Result<usize, Failure> {
        match self {
            Reader::Stream { .. } => {
                let n = self.read_some(scratch).await?;
                out.extend_from_slice(&scratch[..n]);
                Ok(n)
            }
            Reader::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(data))) => {
                        out.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    Some(Ok(Message::Text(text))) => {
                        out.extend_from_slice(text.as_bytes());
                        return Ok(text.len());
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(0),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(Failure::Data(format!("read: {e}"))),
                }
            },
        }
    }

    /// Receives exactly `total` payload bytes; an early end or a surplus is a failure.
    pub async fn read_exactly(&mut self, total: u64, scratch: &mut [u8]) -> Result<(), Failure> {
        let mut got = 0u64;
        while got < total {
            // Never read past `total` on a stream: what follows belongs to the next exchange.
            let want = (total - got).min(scratch.len() as u64) as usize;
            let n = self.read_some(&mut scratch[..want]).await?;
            if n == 0 {
                return Err(Failure::Data(format!("the tunnel ended after {got} of {total} bytes")));
            }
            got += n as u64;
        }
        if got > total {
            return Err(Failure::Data(format!("received {got} bytes, {total} were sent")));
        }
        Ok(())
    }
}

/// The sending direction of a tunnel end.
pub enum Writer {
    /// Byte stream.
    Stream(WriteHalf<Io>),
    /// WebSocket: one binary message per write.
    Ws(SplitSink<Ws, Message>),
}

impl Writer {
    /// Sends `data`: the bytes on a stream (buffered until [`Writer::flush`] where TLS buffers),
    /// one binary message on a WebSocket (sent at once; `Bytes` is not copied).
    pub async fn write(&mut self, data: &Bytes) -> Result<(), Failure> {
        let failure = |e: String| Failure::Data(format!("write: {e}"));
        match self {
            Writer::Stream(io) => io.write_all(data).await.map_err(|e| failure(e.to_string())),
            Writer::Ws(ws) => {
                ws.send(Message::Binary(data.clone())).await.map_err(|e| failure(e.to_string()))
            }
        }
    }

    /// Pushes out anything buffered.
    pub async fn flush(&mut self) -> Result<(), Failure> {
        let failure = |e: String| Failure::Data(format!("flush: {e}"));
        match self {
            Writer::Stream(io) => io.flush().await.map_err(|e| failure(e.to_string())),
            Writer::Ws(ws) => ws.flush().await.map_err(|e| failure(e.to_string())),
        }
    }

    /// Sends `total` bytes as repeated `chunk`s (the last one cut to size), then flushes.
    pub async fn write_total(&mut self, total: u64, chunk: &Bytes) -> Result<(), Failure> {
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            self.write(&chunk.slice(..n)).await?;
            left -= n as u64;
        }
        self.flush().await
    }
}

/// A 64 KiB (or `size`) block of pseudo-random bytes: not valid UTF-8, not compressible, so a
/// broker relaying to a WebSocket sends binary frames as it would for encrypted payloads.
pub fn payload_chunk(size: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(size);
    Bytes::from(data)
}

/// The bench's TLS client configuration: ring, the safe default protocol versions (TLS 1.3 with
/// these servers), no session resumption, and a verifier that checks the server's handshake
/// signature but not its (self-signed) certificate.
fn tls_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(accept_anything(provider))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let e = Endpoint::parse("ssl://127.0.0.1:4433").unwrap();
        assert_eq!((e.tls, e.websocket, e.addr.port(), e.label()), (true, false, 4433, "tls-tcp"));
        assert_eq!(e.url(), "ssl://127.0.0.1:4433");
        let e = Endpoint::parse("ws://127.0.0.1:80/some/path").unwrap();
        assert_eq!((e.tls, e.websocket, e.path.as_str(), e.label()), (false, true, "/some/path", "ws"));
        let e = Endpoint::parse("wss://localhost").unwrap();
        assert_eq!((e.addr.port(), e.host.as_str(), e.path.as_str()), (1212, "localhost", "/"));
        let e = Endpoint::parse("tcp://[::1]:9").unwrap();
        assert_eq!((e.addr.port(), e.host.as_str(), e.label()), (9, "::1", "tcp"));
        assert_eq!(e.host_port(), "[::1]:9");
        assert!(Endpoint::parse("http://x:1").is_err());
        assert!(Endpoint::parse("127.0.0.1:1").is_err());
        assert!(Endpoint::parse("tcp://127.0.0.1:notaport").is_err());
    }

    #[test]
    fn sources_spread_over_loopback_only() {
        let pool = SourcePool { next: AtomicUsize::new(0), spread: true };
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let seen: Vec<IpAddr> = (0..254).map(|_| pool.next(lo).unwrap()).collect();
        assert_eq!(seen[0], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(seen[252], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 254)));
        assert_eq!(seen[253], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), "wraps around");
        assert_eq!(pool.next("10.1.2.3:1".parse().unwrap()), None);
        let off = SourcePool { next: AtomicUsize::new(0), spread: false };
        assert_eq!(off.next(lo), None);
    }

    #[test]
    fn credentials_pair_up_and_never_repeat() {
        let client = Client::new(false, Duration::from_secs(1));
        let (a, b) = client.fresh_credentials();
        let (c, _) = client.fresh_credentials();
        assert_eq!((&a.token, &a.nonce), (&b.token, &b.nonce));
        assert_ne!(a.uuid, b.uuid);
        assert_ne!(a.token, c.token);
        let line = authenticate_line(1, &a);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["params"]["token"], a.token.as_str());
        assert_eq!(parsed["method"], "Authentication.Authenticate");
    }

    #[test]
    fn payload_is_binary_and_sized() {
        let chunk = payload_chunk(65536);
        assert_eq!(chunk.len(), 65536);
        assert!(std::str::from_utf8(&chunk).is_err());
        assert_eq!(payload_chunk(5).len(), 5);
    }
}
