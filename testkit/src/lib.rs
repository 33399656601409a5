//! Test harness: a real broker on 127.0.0.1:0 with real TLS, and clients for every transport.
//!
//! Every wait is bounded by [`WAIT`] so a broken broker fails a test instead of hanging it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use remoteproxy::authenticators::{AuthRequest, AuthenticationError, Authenticator, Verdict};
use remoteproxy::config::Config;
use remoteproxy::transport::listeners::{bind_monitor, bind_tcp};
use remoteproxy::transport::{Listeners, ServerListeners, UnixSocketListener};
use remoteproxy::{Server, authenticators};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Upper bound of any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// Bounds a future by [`WAIT`], failing the test with `what` when it takes longer.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// An authenticator whose answer and delay the test chooses; it records the tokens it saw.
pub struct TestAuthenticator {
    pub outcome: AuthenticationError,
    pub delay: Duration,
    pub seen: std::sync::Mutex<Vec<String>>,
    pub panics: bool,
}

impl TestAuthenticator {
    pub fn new(outcome: AuthenticationError, delay: Duration) -> Arc<Self> {
        Arc::new(TestAuthenticator { outcome, delay, seen: Default::default(), panics: false })
    }

    pub fn accepting() -> Arc<Self> {
        Self::new(AuthenticationError::NoError, Duration::ZERO)
    }
}

#[async_trait]
impl Authenticator for TestAuthenticator {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn authenticate(&self, request: &AuthRequest) -> Verdict {
        self.seen.lock().unwrap().push(request.token.expose_secret().to_string());
        tokio::time::sleep(self.delay).await;
        if self.panics {
            panic!("test authenticator panics on purpose");
        }
        Verdict { error: self.outcome, user_name: Some(format!("user-of-{}", request.facts.name)) }
    }
}

/// A file of the TLS test fixtures (`tests/fixtures/tls/`, see its README).
pub fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls").join(name)
}

/// A TLS client configuration (with its own session store) trusting `certificates`.
pub fn connector_trusting(certificates: &[CertificateDer<'static>]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates {
        let _ = roots.add(cert.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// How a test client reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    WebSocket,
    Unix,
}

pub const ALL_KINDS: [Kind; 3] = [Kind::Tcp, Kind::WebSocket, Kind::Unix];

/// A running broker.
pub struct Broker {
    pub tcp: SocketAddr,
    pub websocket: SocketAddr,
    pub unix: PathBuf,
    /// The v2 TunnelProxy listeners.
    pub tcp2: SocketAddr,
    pub websocket2: SocketAddr,
    pub unix2: PathBuf,
    /// The monitor socket.
    pub monitor: PathBuf,
    /// The metrics endpoint, when the config enables it.
    pub metrics: Option<SocketAddr>,
    /// The rendezvous listener, when the config has `[RendezvousServer]`.
    pub rendezvous: Option<SocketAddr>,
    pub tls: bool,
    pub certificates: Vec<CertificateDer<'static>>,
    /// What SIGHUP would run on this broker (`reload_all`).
    pub reloader: remoteproxy::reload::Reloader,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Builds a broker; defaults: TLS on with a generated certificate, accepting authenticator,
/// protocol default timeouts.
pub struct BrokerBuilder {
    pub config: Config,
    pub authenticator: Arc<dyn Authenticator>,
    /// Where the TCP and WebSocket listeners bind (port 0).
    pub host: std::net::IpAddr,
}

impl BrokerBuilder {
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = authenticator;
        self
    }

    /// Binds the TCP and WebSocket listeners on `host` instead of 127.0.0.1.
    pub fn bind_host(mut self, host: std::net::IpAddr) -> Self {
        self.host = host;
        self
    }

    pub fn tls(mut self, enabled: bool) -> Self {
        self.config.tls.enabled = enabled;
        self
    }

    pub fn config(mut self, edit: impl FnOnce(&mut Config)) -> Self {
        edit(&mut self.config);
        self
    }

    /// Serves the fixed test certificate (`tests/fixtures/tls/ecdsa.crt`, for `localhost`), so
    /// that one client trusts every broker of a test.
    pub fn fixture_certificate(mut self) -> Self {
        self.config.tls.certificate = Some(tls_fixture("ecdsa.crt"));
        self.config.tls.certificate_key = Some(tls_fixture("ecdsa.key"));
        self
    }

    pub async fn start(self) -> Broker {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let unix = dir.path().join("proxy.socket");
        let unix2 = dir.path().join("tunnelproxy.socket");
        let monitor = dir.path().join("monitor.sock");
        let tls = self.config.tls.enabled;
        let metrics_enabled = self.config.metrics.enabled;
        let rendezvous_on = self.config.rendezvous.is_some();
        let server = Server::new(self.config, self.authenticator).expect("test configuration is valid");
        let certificates = server.certificate_chain().map(|c| c.to_vec()).unwrap_or_default();
        let reloader = server.reloader();
        let bind = |path: PathBuf| async move {
            Listeners {
                websocket: Some(bind_tcp(SocketAddr::new(self.host, 0)).unwrap()),
                tcp: Some(bind_tcp(SocketAddr::new(self.host, 0)).unwrap()),
                unix: Some(UnixSocketListener::bind(&path).await.unwrap()),
            }
        };
        let listeners = ServerListeners {
            proxy: bind(unix.clone()).await,
            tunnel_proxy: bind(unix2.clone()).await,
            monitor: Some(bind_monitor(&monitor, 0o660, None).await.unwrap()),
            metrics: metrics_enabled.then(|| bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap()),
            rendezvous: rendezvous_on.then(|| bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap()),
            cluster: None,
        };
        let rendezvous = listeners.rendezvous.as_ref().map(|l| l.local_addr().unwrap());
        let metrics = listeners.metrics.as_ref().map(|l| l.local_addr().unwrap());
        let addr = |l: &Option<tokio::net::TcpListener>| l.as_ref().unwrap().local_addr().unwrap();
        let (tcp, websocket) = (addr(&listeners.proxy.tcp), addr(&listeners.proxy.websocket));
        let (tcp2, websocket2) = (addr(&listeners.tunnel_proxy.tcp), addr(&listeners.tunnel_proxy.websocket));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listeners, async move {
            let _ = stopped.await;
        }));
        Broker {
            tcp,
            websocket,
            unix,
            tcp2,
            websocket2,
            unix2,
            monitor,
            metrics,
            rendezvous,
            tls,
            certificates,
            reloader,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }
}

impl Broker {
    /// Defaults, except a 2 s shutdown grace period so `stop` with a tunnel open stays quick.
    pub fn builder() -> BrokerBuilder {
        let mut config = Config::default();
        config.server.shutdown_grace_period = Duration::from_secs(2);
        // Ticket keys in memory: a test that restarts a broker names its own file.
        config.tls.ticket_key_file = None;
        BrokerBuilder { config, authenticator: TestAuthenticator::accepting(), host: [127, 0, 0, 1].into() }
    }

    /// A broker with defaults and an accepting authenticator.
    pub async fn start() -> Broker {
        Self::builder().start().await
    }

    /// Sends the stop signal without waiting for the drain.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Sends the stop signal and waits (bounded) for `run` to return.
    pub async fn stop(mut self) {
        self.signal_stop();
        let task = self.task.take().unwrap();
        within("broker drain", task).await.unwrap();
    }

    /// Waits (bounded by `limit`) for `run` to return after a stop signal.
    pub async fn stopped_within(&mut self, limit: Duration) -> bool {
        let task = self.task.as_mut().unwrap();
        tokio::time::timeout(limit, task).await.is_ok()
    }

    /// A TLS client configuration that trusts this broker's certificate.
    pub fn client_tls(&self) -> TlsConnector {
        connector_trusting(&self.certificates)
    }

    /// A raw byte stream to a v1 listener: TLS when the broker uses it, except for unix.
    pub async fn raw_stream(&self, kind: Kind) -> Box<dyn Io> {
        self.raw_stream_to(kind, false).await
    }

    /// A raw byte stream to a v1 or (`v2`) TunnelProxy listener.
    pub async fn raw_stream_to(&self, kind: Kind, v2: bool) -> Box<dyn Io> {
        match kind {
            Kind::Unix => {
                let path = if v2 { &self.unix2 } else { &self.unix };
                Box::new(UnixStream::connect(path).await.unwrap())
            }
            Kind::Tcp | Kind::WebSocket => {
                let addr = match (kind, v2) {
                    (Kind::Tcp, false) => self.tcp,
                    (Kind::Tcp, true) => self.tcp2,
                    (_, false) => self.websocket,
                    (_, true) => self.websocket2,
                };
                let tcp = TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                if !self.tls {
                    return Box::new(tcp);
                }
                let name = ServerName::try_from("localhost").unwrap();
                let tls = within("TLS handshake", self.client_tls().connect(name, tcp)).await.unwrap();
                Box::new(tls)
            }
        }
    }

    /// A connected client on a v1 listener.
    pub async fn connect(&self, kind: Kind) -> Client {
        self.connect_to(kind, false).await
    }

    /// Waits (bounded by [`WAIT`]) until the broker's own books, read from its monitor socket,
    /// count `n` v1 clients: the way to know it noticed a connect or a disconnect, instead of a
    /// sleep that hopes it did.
    pub async fn v1_clients_settle_at(&self, n: u64) {
        use tokio::io::AsyncBufReadExt;
        let stream = within("connect to the monitor", UnixStream::connect(&self.monitor)).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let mut last = Value::Null;
        let settled = tokio::time::timeout(WAIT, async {
            loop {
                write.write_all(b"{\"method\":\"refresh\"}\n").await.unwrap();
                let line = lines.next_line().await.unwrap().expect("the monitor closed");
                last = serde_json::from_str(&line).expect("a snapshot");
                if last["proxyStatistic"]["clientCount"] == json!(n) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(settled.is_ok(), "the broker never counted {n} v1 clients; last snapshot: {last}");
    }

    /// A connected client on a v2 TunnelProxy listener.
    pub async fn connect_v2(&self, kind: Kind) -> Client {
        self.connect_to(kind, true).await
    }

    /// A WebSocket client that asks for half-close in its upgrade (as `remoteproxy-client`
    /// does); the second value says whether the broker granted it.
    pub async fn connect_half_close(&self, v2: bool) -> (Client, bool) {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let stream = self.raw_stream_to(Kind::WebSocket, v2).await;
        let scheme = if self.tls { "wss" } else { "ws" };
        let url = format!("{scheme}://{}/", if v2 { self.websocket2 } else { self.websocket });
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("remoteproxy-half-close", "1".parse().unwrap());
        let (ws, response) =
            within("WebSocket upgrade", tokio_tungstenite::client_async(request, stream)).await.unwrap();
        let granted = response.headers().get("remoteproxy-half-close").is_some_and(|v| v == "1");
        (Client { kind: Kind::WebSocket, wire: ClientWire::WebSocket(ws), buf: BytesMut::new() }, granted)
    }

    async fn connect_to(&self, kind: Kind, v2: bool) -> Client {
        let stream = self.raw_stream_to(kind, v2).await;
        let wire = match kind {
            Kind::WebSocket => {
                let scheme = if self.tls { "wss" } else { "ws" };
                let url =
                    format!("{scheme}://{}/any/path", if v2 { self.websocket2 } else { self.websocket });
                let (ws, _) =
                    within("WebSocket upgrade", tokio_tungstenite::client_async(url, stream)).await.unwrap();
                ClientWire::WebSocket(ws)
            }
            _ => ClientWire::Stream(stream),
        };
        Client { kind, wire, buf: BytesMut::new() }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[allow(clippy::large_enum_variant)] // test code: one client at a time, no need to box
pub enum ClientWire {
    Stream(Box<dyn Io>),
    WebSocket(WebSocketStream<Box<dyn Io>>),
}

/// What a client saw when the broker ended the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A byte stream reached EOF (or was reset).
    Eof,
    /// A WebSocket close frame with this code and reason.
    WebSocket(u16, String),
    /// A WebSocket ended without a close frame.
    WebSocketNoFrame,
}

/// A protocol client for tests.
pub struct Client {
    pub kind: Kind,
    pub wire: ClientWire,
    /// Bytes read from a stream but not consumed yet.
    pub buf: BytesMut,
}

impl Client {
    /// Sends a JSON value (one line on a stream, one text frame on a WebSocket).
    pub async fn send_json(&mut self, value: &Value) {
        let mut text = serde_json::to_string(value).unwrap();
        text.push('\n');
        self.send_text(&text).await;
    }

    /// Sends text: raw bytes on a stream, one text frame on a WebSocket.
    pub async fn send_text(&mut self, text: &str) {
        match &mut self.wire {
            ClientWire::Stream(s) => {
                within("write", async {
                    s.write_all(text.as_bytes()).await.unwrap();
                    s.flush().await.unwrap();
                })
                .await
            }
            ClientWire::WebSocket(ws) => within("ws send", ws.send(Message::text(text))).await.unwrap(),
        }
    }

    /// Sends bytes: raw on a stream, one binary frame on a WebSocket.
    pub async fn send_bytes(&mut self, data: &[u8]) {
        match &mut self.wire {
            ClientWire::Stream(s) => {
                within("write", async {
                    s.write_all(data).await.unwrap();
                    s.flush().await.unwrap();
                })
                .await
            }
            ClientWire::WebSocket(ws) => {
                within("ws send", ws.send(Message::binary(data.to_vec()))).await.unwrap()
            }
        }
    }

    /// Receives one JSON message.
    pub async fn recv_json(&mut self) -> Value {
        within("a JSON message", self.try_recv_json())
            .await
            .expect("connection closed before a message arrived")
    }

    /// Receives one JSON message, or `None` when the connection ended first.
    pub async fn try_recv_json(&mut self) -> Option<Value> {
        match &mut self.wire {
            ClientWire::Stream(s) => loop {
                if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                    let line = self.buf.split_to(pos + 1);
                    return Some(serde_json::from_slice(&line).expect("broker sent a JSON line"));
                }
                self.buf.reserve(4096);
                match s.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            },
            ClientWire::WebSocket(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        assert!(
                            text.ends_with('\n'),
                            "each message is one text frame ending in \\n: {text:?}"
                        );
                        return Some(serde_json::from_str(&text).unwrap());
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(other)) => {
                        if let Message::Close(_) = other {
                            return None;
                        }
                        panic!("expected a text frame with JSON, got {other:?}");
                    }
                    _ => return None,
                }
            },
        }
    }

    /// Sends a request and returns the response.
    pub async fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send_json(&json!({"id": id, "method": method, "params": params})).await;
        self.recv_json().await
    }

    pub async fn hello(&mut self) -> Value {
        self.call(0, "RemoteProxy.Hello", json!({})).await
    }

    /// Sends `Authenticate` and returns the outcome string.
    pub async fn authenticate(&mut self, uuid: &str, name: &str, token: &str, nonce: Option<&str>) -> String {
        let mut params = json!({"uuid": uuid, "name": name, "token": token});
        if let Some(nonce) = nonce {
            params["nonce"] = json!(nonce);
        }
        let response = self.call(1, "Authentication.Authenticate", params).await;
        assert_eq!(response["status"], "success", "{response}");
        response["params"]["authenticationError"].as_str().unwrap().to_string()
    }

    /// Waits for `TunnelEstablished` and returns its params.
    pub async fn wait_tunnel(&mut self) -> Value {
        let notification = self.recv_json().await;
        assert_eq!(notification["notification"], "RemoteProxy.TunnelEstablished", "{notification}");
        notification["params"].clone()
    }

    /// Reads exactly `n` tunnel bytes from a stream client (buffered bytes first).
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let ClientWire::Stream(s) = &mut self.wire else { panic!("read_exact is for stream clients") };
        within("tunnel bytes", async {
            while self.buf.len() < n {
                self.buf.reserve(n - self.buf.len());
                let read = s.read_buf(&mut self.buf).await.unwrap();
                assert!(read > 0, "EOF after {} of {n} bytes", self.buf.len());
            }
        })
        .await;
        self.buf.split_to(n).to_vec()
    }

    /// Next data frame of a WebSocket client: (is_text, payload).
    pub async fn recv_frame(&mut self) -> (bool, Vec<u8>) {
        let ClientWire::WebSocket(ws) = &mut self.wire else { panic!("recv_frame is for WebSocket clients") };
        within("a WebSocket frame", async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => return (true, t.as_bytes().to_vec()),
                    Some(Ok(Message::Binary(b))) => return (false, b.to_vec()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected a data frame, got {other:?}"),
                }
            }
        })
        .await
    }

    /// Reads tunnel data until `n` payload bytes arrived, whatever the transport.
    pub async fn recv_data(&mut self, n: usize) -> Vec<u8> {
        match self.wire {
            ClientWire::Stream(_) => self.read_exact(n).await,
            ClientWire::WebSocket(_) => {
                let mut out = Vec::with_capacity(n);
                while out.len() < n {
                    out.extend(self.recv_frame().await.1);
                }
                assert_eq!(out.len(), n, "more data than expected");
                out
            }
        }
    }

    /// Waits until the broker closes the connection and reports how.
    pub async fn closed(&mut self) -> Closed {
        within("the broker to close the connection", async {
            match &mut self.wire {
                ClientWire::Stream(s) => {
                    let mut sink = [0u8; 4096];
                    loop {
                        match s.read(&mut sink).await {
                            Ok(0) | Err(_) => return Closed::Eof,
                            Ok(_) => {}
                        }
                    }
                }
                ClientWire::WebSocket(ws) => loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                            return Closed::WebSocket(code.into(), reason.to_string());
                        }
                        Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                            return Closed::WebSocketNoFrame;
                        }
                        Some(Ok(_)) => {}
                    }
                },
            }
        })
        .await
    }

    /// The next WebSocket message, whatever it is but a ping or pong; `None` when the
    /// connection ended without a close frame.
    pub async fn next_ws(&mut self) -> Option<Message> {
        let ClientWire::WebSocket(ws) = &mut self.wire else { panic!("next_ws is for WebSocket clients") };
        within("a WebSocket message", async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(message)) => return Some(message),
                    None | Some(Err(_)) => return None,
                }
            }
        })
        .await
    }

    /// Sends a WebSocket message as it is (an empty binary one is the half-close marker).
    pub async fn send_ws(&mut self, message: Message) {
        let ClientWire::WebSocket(ws) = &mut self.wire else { panic!("send_ws is for WebSocket clients") };
        ws.send(message).await.unwrap();
    }

    /// Shuts down the write side of a stream client (half-close).
    pub async fn shutdown_write(&mut self) {
        let ClientWire::Stream(s) = &mut self.wire else { panic!("half-close is for stream clients") };
        s.shutdown().await.unwrap();
    }
}

/// Asserts the error response and close of a refused request, on any transport.
pub async fn expect_error_and_close(client: &mut Client, error: &str, id: i64, close_reason: &str) {
    let response = client.recv_json().await;
    assert_eq!(response, json!({"error": error, "id": id, "status": "error"}));
    expect_close(client, close_reason).await;
}

/// Asserts the broker closed the connection with `reason` (checked on WebSocket, code 1011).
pub async fn expect_close(client: &mut Client, reason: &str) {
    let closed = client.closed().await;
    match client.kind {
        Kind::WebSocket => assert_eq!(closed, Closed::WebSocket(1011, reason.to_string())),
        _ => assert_eq!(closed, Closed::Eof),
    }
}

/// Two clients joined into a tunnel with `token` (and a fresh nonce).
pub async fn tunnel(broker: &Broker, a: Kind, b: Kind, token: &str) -> (Client, Client) {
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut first = broker.connect(a).await;
    let mut second = broker.connect(b).await;
    assert_eq!(
        first.authenticate("uuid-a", "first", token, Some(&nonce)).await,
        "AuthenticationErrorNoError"
    );
    assert_eq!(
        second.authenticate("uuid-b", "second", token, Some(&nonce)).await,
        "AuthenticationErrorNoError"
    );
    assert_eq!(second.wait_tunnel().await, json!({"name": "first", "uuid": "uuid-a"}));
    assert_eq!(first.wait_tunnel().await, json!({"name": "second", "uuid": "uuid-b"}));
    (first, second)
}

/// Random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut data = vec![0u8; n];
    rand::rng().fill_bytes(&mut data);
    data
}

#[allow(unused_imports)]
pub use authenticators::AuthenticationError as Outcome;

/// What the broker did next on a connection in its JSON phase.
#[derive(Debug)]
pub enum Event {
    /// One message as raw bytes: a line with its `\n` on a stream, a text frame's payload on a
    /// WebSocket.
    Raw(Vec<u8>),
    /// The connection ended.
    Closed(Closed),
}

/// The next message or the close, without a time bound (callers bound it).
pub async fn next_event_unbounded(c: &mut Client) -> Event {
    match &mut c.wire {
        ClientWire::Stream(s) => loop {
            if let Some(pos) = c.buf.iter().position(|b| *b == b'\n') {
                return Event::Raw(c.buf.split_to(pos + 1).to_vec());
            }
            c.buf.reserve(4096);
            match s.read_buf(&mut c.buf).await {
                Ok(0) | Err(_) => {
                    assert!(
                        c.buf.is_empty(),
                        "the broker sent an unterminated line before closing: {:?}",
                        String::from_utf8_lossy(&c.buf)
                    );
                    return Event::Closed(Closed::Eof);
                }
                Ok(_) => {}
            }
        },
        ClientWire::WebSocket(ws) => loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Event::Raw(t.as_bytes().to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Event::Closed(Closed::WebSocket(frame.code.into(), frame.reason.to_string()));
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return Event::Closed(Closed::WebSocketNoFrame);
                }
                Some(Ok(other)) => panic!("expected a text frame or a close, got {other:?}"),
            }
        },
    }
}

/// The next message or the close.
pub async fn next_event(c: &mut Client) -> Event {
    within("the next message or close", next_event_unbounded(c)).await
}

/// The next message as raw text (with its `\n`); fails when the connection closed instead.
pub async fn next_raw(c: &mut Client) -> String {
    match next_event(c).await {
        Event::Raw(raw) => {
            let text = String::from_utf8(raw).expect("messages are UTF-8");
            assert!(text.ends_with('\n'), "every message ends with \\n: {text:?}");
            text
        }
        Event::Closed(how) => panic!("{:?}: expected a message, the connection closed: {how:?}", c.kind),
    }
}

/// The next message, parsed.
pub async fn next_msg(c: &mut Client) -> Value {
    serde_json::from_str(&next_raw(c).await).expect("a JSON message")
}

/// Asserts that nothing at all (no message, no close) happens for `dur`.
pub async fn assert_quiet(c: &mut Client, dur: Duration, what: &str) {
    if let Ok(event) = tokio::time::timeout(dur, next_event_unbounded(c)).await {
        panic!("{what} ({:?}): expected nothing for {dur:?}, got {event:?}", c.kind);
    }
}

/// Asserts that no tunnel data (and no close) arrives for `dur`.
pub async fn assert_no_data(c: &mut Client, dur: Duration, what: &str) {
    assert!(c.buf.is_empty(), "{what}: unexpected bytes {:?}", c.buf);
    let got = match &mut c.wire {
        ClientWire::Stream(s) => {
            tokio::time::timeout(dur, s.read_buf(&mut c.buf)).await.map(|r| format!("{r:?}"))
        }
        ClientWire::WebSocket(ws) => tokio::time::timeout(dur, ws.next()).await.map(|m| format!("{m:?}")),
    };
    if let Ok(got) = got {
        panic!("{what}: expected no data for {dur:?}, got {got} (buffer {:?})", c.buf);
    }
}

/// How a `kind` client sees the broker closing with `reason`.
pub fn expected_close(kind: Kind, reason: &str) -> Closed {
    match kind {
        Kind::WebSocket => Closed::WebSocket(1011, reason.to_string()),
        _ => Closed::Eof,
    }
}

/// The very next event is the close with `reason` (no message before it).
pub async fn expect_closed_now(c: &mut Client, reason: &str) {
    match next_event(c).await {
        Event::Closed(how) => assert_eq!(how, expected_close(c.kind, reason), "{:?}", c.kind),
        Event::Raw(raw) => {
            panic!("{:?}: expected the close ({reason}), got {:?}", c.kind, String::from_utf8_lossy(&raw))
        }
    }
}

/// Every log line of this test process, at the levels `--verbose` shows and more (trace for our
/// own crates), so tests can check that no secret ever reaches a log line.
pub fn capture_logs() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let filter = "info,remoteproxy=trace,remoteproxy_authenticators=trace,remoteproxy_client=trace";
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init();
        logs
    })
    .clone()
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails when any of `secrets` appears in any captured log line (or when nothing was logged,
/// which would make the check meaningless).
pub fn assert_not_logged(secrets: &[&str]) {
    let logs = capture_logs();
    let logs = logs.lock().unwrap();
    assert!(!logs.is_empty(), "no log line was captured; the check would prove nothing");
    let text = String::from_utf8_lossy(&logs);
    for secret in secrets {
        assert!(!secret.is_empty());
        if let Some(line) = text.lines().find(|line| line.contains(secret)) {
            panic!("a secret reached the log: {line}");
        }
    }
}
