//! Cluster mode with real processes: a `redis-server` of its own per test (on a free loopback
//! port, no persistence) and broker binaries as nodes, each with its v1 listeners and relay on
//! port 0 (read from its log).

mod redis_tls;
mod v1;
mod v2;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::binary::{Proc, write_config};
use crate::common::{Client, ClientWire, Kind, WAIT};

const SECRET: &str = "a cluster secret for the tests";

/// A `redis-server` process on 127.0.0.1 that saves nothing.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// TLS only, with these `redis-server` arguments (certificate, key, the CA clients need).
    tls: Option<Vec<String>>,
}

impl Redis {
    pub async fn start() -> Redis {
        Self::start_on(None).await
    }

    /// A Redis that speaks TLS only (`rediss://`), with `args` naming its files.
    pub async fn start_tls(args: Vec<String>) -> Redis {
        Self::start_on(Some(args)).await
    }

    async fn start_on(tls: Option<Vec<String>>) -> Redis {
        // redis-server cannot pick a port itself: take a free one and try another if someone
        // else took it in between.
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut redis = Redis { child: None, port, dir: tempfile::tempdir().unwrap(), tls: tls.clone() };
            if redis.launch().await {
                return redis;
            }
        }
        panic!("redis-server did not start on any free port");
    }

    /// Starts (again) on `self.port`; whether it answers PING (with TLS: accepts connections).
    async fn launch(&mut self) -> bool {
        let port = self.port.to_string();
        let listen: Vec<String> = match &self.tls {
            None => vec!["--port".into(), port],
            Some(files) => ["--port", "0", "--tls-port", &port]
                .map(String::from)
                .into_iter()
                .chain(files.clone())
                .collect(),
        };
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run redis-server ({error}); install it (Debian: apt-get install redis-server)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            if self.ping().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        if self.tls.is_some() {
            // It listens once it has read its certificates; the nodes' connection is the test.
            return true;
        }
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut answer = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer)).await,
            Ok(Ok(_))
        ) && &answer == b"+PONG\r\n"
    }

    /// How many keys match `pattern` (KEYS: fine on a test's own Redis).
    pub async fn count_keys(&self, pattern: &str) -> usize {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else { return 0 };
        let command = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
        stream.write_all(command.as_bytes()).await.unwrap();
        let mut header = Vec::new();
        let mut byte = [0u8; 1];
        while crate::common::within("a Redis answer", stream.read(&mut byte)).await.unwrap() == 1 {
            if byte[0] == b'\n' {
                break;
            }
            header.push(byte[0]);
        }
        let header = String::from_utf8_lossy(&header);
        header.trim().trim_start_matches('*').parse().unwrap_or_else(|_| panic!("not an array: {header}"))
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: as an outage looks to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: it saved nothing).
    pub async fn restart(&mut self) {
        assert!(self.launch().await, "redis-server did not start again on port {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A broker process that is a cluster node.
pub struct Node {
    pub proc: Proc,
    pub id: String,
    pub websocket: SocketAddr,
    /// The Prometheus endpoint.
    pub metrics: SocketAddr,
    /// The v2 TunnelProxy listeners.
    pub tcp2: SocketAddr,
    pub websocket2: SocketAddr,
}

impl Node {
    /// Starts node `id` on `redis` with the mock authenticator; waits until it serves and Redis
    /// knows it.
    pub async fn start(redis: &Redis, id: &str) -> Node {
        Self::start_with(redis, id, "").await
    }

    /// [`Node::start`] with more `[Cluster]` keys.
    pub async fn start_with(redis: &Redis, id: &str, cluster_keys: &str) -> Node {
        let node = Self::launch(redis, id, cluster_keys).await;
        node.proc.logged("connected to Redis").await;
        node
    }

    /// [`Node::start_with`] without waiting for Redis to answer it.
    pub async fn launch(redis: &Redis, id: &str, cluster_keys: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let unix = dir.path().join("proxy.socket");
        let sections = format!(
            "[Metrics]\nenabled=true\nhost=127.0.0.1\nport=0\n\
             [TcpServerTunnelProxy]\nhost=127.0.0.1\nport=0\n[WebSocketServerTunnelProxy]\nhost=127.0.0.1\nport=0\n\
             [Cluster]\nenabled=true\nredisUrl={}\nnodeId={id}\nrelayHost=127.0.0.1\nrelayPort=0\n\
             secret={SECRET}\nheartbeatInterval=200\n{cluster_keys}\n",
            redis.url()
        );
        let config = write_config(dir.path(), 0, 0, &unix, "shutdownGracePeriod=2000", &sections);
        let mut proc = Proc::launch_file(dir, &config, &["-m", "--verbose"]);
        proc.ready().await;
        let websocket = address_in_log(&proc, "v1 WebSocket listener address=").await;
        let tcp2 = address_in_log(&proc, "v2 TCP listener address=").await;
        let websocket2 = address_in_log(&proc, "v2 WebSocket listener address=").await;
        let metrics = address_in_log(&proc, "metrics endpoint (/metrics, /healthz) address=").await;
        Node { proc, id: id.to_string(), websocket, tcp2, websocket2, metrics }
    }

    /// A client on this node's TCP or WebSocket listener.
    pub async fn client(&self, kind: Kind) -> Client {
        match kind {
            Kind::WebSocket => {
                let stream = TcpStream::connect(self.websocket).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let stream: Box<dyn crate::common::Io> = Box::new(stream);
                let url = format!("ws://{}/", self.websocket);
                let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
                Client { kind, wire: ClientWire::WebSocket(ws), buf: BytesMut::new() }
            }
            kind => self.proc.client(kind).await,
        }
    }

    /// A WebSocket client that asks for half-close in its upgrade (the broker grants it).
    pub async fn client_half_close(&self) -> Client {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let stream = TcpStream::connect(self.websocket).await.unwrap();
        let stream: Box<dyn crate::common::Io> = Box::new(stream);
        let mut request = format!("ws://{}/", self.websocket).into_client_request().unwrap();
        request.headers_mut().insert("remoteproxy-half-close", "1".parse().unwrap());
        let (ws, response) = tokio_tungstenite::client_async(request, stream).await.unwrap();
        assert!(response.headers().contains_key("remoteproxy-half-close"), "half-close granted");
        Client { kind: Kind::WebSocket, wire: ClientWire::WebSocket(ws), buf: BytesMut::new() }
    }

    /// The value of a metric without labels, from a scrape of `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let mut stream = TcpStream::connect(self.metrics).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
        let mut text = String::new();
        crate::common::within("a scrape", stream.read_to_string(&mut text)).await.unwrap();
        let line = text
            .lines()
            .find(|line| line.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in the scrape: {text}"));
        line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// A client on this node's v2 TCP or WebSocket listener.
    pub async fn client_v2(&self, kind: Kind) -> Client {
        let address = match kind {
            Kind::WebSocket => self.websocket2,
            _ => self.tcp2,
        };
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let stream: Box<dyn crate::common::Io> = Box::new(stream);
        match kind {
            Kind::WebSocket => {
                let (ws, _) =
                    tokio_tungstenite::client_async(format!("ws://{address}/"), stream).await.unwrap();
                Client { kind, wire: ClientWire::WebSocket(ws), buf: BytesMut::new() }
            }
            _ => crate::binary::stream_client(Kind::Tcp, stream),
        }
    }
}

async fn address_in_log(proc: &Proc, marker: &str) -> SocketAddr {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = proc.stderr_text();
        if let Some(at) = log.find(marker) {
            return log[at + marker.len()..].split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "{marker} never logged: {log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three nodes on one Redis, all alive in it.
pub async fn three_nodes(redis: &Redis) -> [Node; 3] {
    let (a, b, c) = tokio::join!(
        Node::start(redis, "node-a"),
        Node::start(redis, "node-b"),
        Node::start(redis, "node-c")
    );
    [a, b, c]
}
