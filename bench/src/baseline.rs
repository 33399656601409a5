//! The baselines: the least a tunnel broker can do, measured in the same run as the broker.
//!
//! One program, `remoteproxy-bench baseline-server`, started by the bench as a **child process**
//! (the bench re-executes itself). A separate process, like the broker, so that:
//! * it competes with the bench client for the machine's cores exactly as the broker does (its
//!   own multi-threaded tokio runtime with one worker per core, the broker's setup), and
//! * its memory, file descriptors and CPU time are read from `/proc/<pid>` the same way as the
//!   broker's.
//!
//! What it does, exactly:
//! 1. Two listeners on 127.0.0.1 port 0 (SO_REUSEADDR, backlog 1024, as the broker's): a byte
//!    stream one and a WebSocket one. With `--tls-stream` / `--tls-ws` it terminates TLS there
//!    (tokio-rustls, ring, the safe default protocol versions, rustls' default session cache and
//!    tickets, and a freshly generated ECDSA P-256 self-signed certificate: the broker's defaults;
//!    with `--tickets`, for the `storm` measure, rustls' own stateless ticketer).
//!    Two more for the v2 TunnelProxy baseline (`registry`, TLS the same way). It prints
//!    `baseline stream=ADDR ws=ADDR v2=ADDR v2-ws=ADDR` and serves until stdin closes or it is
//!    killed.
//! 2. Per connection: `TCP_NODELAY`, the TLS handshake, the WebSocket upgrade on the WebSocket
//!    listener (tokio-tungstenite, default configuration), then it reads **one line** (one
//!    message on WebSocket), parses it as JSON and takes `params.token` + `params.nonce` as the
//!    pairing key (the bench sends its `Authentication.Authenticate` request there).
//! 3. The first end of a key is parked in a mutex-guarded map. The second takes it out and both
//!    get **one line**, `{"id":0,"notification":"RemoteProxy.TunnelEstablished","params":{..}}`.
//!    No Hello, no Authenticate response, no authenticator, no timers, no statistics.
//! 4. The relay, one task per tunnel:
//!    * stream ↔ stream: `tokio::io::copy_bidirectional_with_sizes` with 64 KiB per direction
//!      (TLS or not);
//!    * WebSocket ↔ WebSocket: message by message, `StreamExt::forward` in each direction (it
//!      flushes when the source has nothing ready), control frames dropped, ends when either side
//!      ends;
//!    * stream ↔ WebSocket (the "mixed" measure): reads of up to 64 KiB become binary messages
//!      (`ReaderStream` + `forward`), each message's payload is written to the stream and flushed.

mod registry;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt, future};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::io::ReaderStream;

use crate::client::{Endpoint, Handshake, Io};
use crate::server::Server;

/// Buffer per direction of the stream relays.
pub const CHUNK: usize = 64 << 10;

/// Longest first line the baseline accepts.
pub(crate) const MAX_LINE: usize = 10240;

/// How the child is asked to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct BaselineArgs {
    /// Terminate TLS on the stream listener.
    #[arg(long)]
    pub tls_stream: bool,
    /// Terminate TLS on the WebSocket listener.
    #[arg(long)]
    pub tls_ws: bool,
    /// Issue stateless session tickets with rustls' own ticketer (`rustls::crypto::ring::Ticketer`,
    /// keys in memory). Without it the TLS listeners have rustls' defaults: TLS 1.3 resumption
    /// from a stateful cache of 256 sessions, too few for a storm of thousands of devices.
    #[arg(long)]
    pub tickets: bool,
}

/// A running baseline child process.
pub struct BaselineProcess {
    child: Child,
    /// Its listeners, as a server the measures can drive.
    pub server: Server,
}

impl BaselineProcess {
    /// Starts `<this executable> baseline-server` and waits (bounded) for its addresses.
    pub async fn start(args: BaselineArgs) -> anyhow::Result<BaselineProcess> {
        let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
        let mut command = Command::new(exe);
        command.arg("baseline-server");
        if args.tls_stream {
            command.arg("--tls-stream");
        }
        if args.tls_ws {
            command.arg("--tls-ws");
        }
        if args.tickets {
            command.arg("--tickets");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the baseline server")?;
        let pid = child.id().context("the baseline server exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line))
            .await
            .context("the baseline server did not start within 10 s")??;
        let ready = parse_ready_line(&line)
            .with_context(|| format!("unexpected first line from the baseline server: {line:?}"))?;
        let server = Server {
            role: "baseline",
            stream: Endpoint::at(ready.stream, args.tls_stream, false),
            ws: Some(Endpoint::at(ready.ws, args.tls_ws, true)),
            v2: ready.v2.map(|addr| Endpoint::at(addr, args.tls_stream, false)),
            v2_ws: ready.v2_ws.map(|addr| Endpoint::at(addr, args.tls_ws, true)),
            pid: Some(pid),
            handshake: Handshake::Minimal,
            peer: None,
        };
        Ok(BaselineProcess { child, server })
    }

    /// Stops the child and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The listeners a baseline process announces.
#[derive(Debug, PartialEq, Eq)]
struct Ready {
    stream: SocketAddr,
    ws: SocketAddr,
    v2: Option<SocketAddr>,
    v2_ws: Option<SocketAddr>,
}

fn parse_ready_line(line: &str) -> Option<Ready> {
    let mut stream = None;
    let mut ws = None;
    let mut v2 = None;
    let mut v2_ws = None;
    for word in line.split_whitespace() {
        let Some((key, addr)) = word.split_once('=') else { continue };
        let slot = match key {
            "stream" => &mut stream,
            "ws" => &mut ws,
            "v2" => &mut v2,
            "v2-ws" => &mut v2_ws,
            _ => continue,
        };
        *slot = addr.parse().ok();
    }
    Some(Ready { stream: stream?, ws: ws?, v2, v2_ws })
}

/// The child's main: serves until stdin reaches its end (the bench went away) or it is killed.
pub async fn serve(args: BaselineArgs) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let acceptor = if args.tls_stream || args.tls_ws { Some(tls_acceptor(args.tickets)?) } else { None };
    let stream_listener = bind()?;
    let ws_listener = bind()?;
    let v2_listener = bind()?;
    let v2_ws_listener = bind()?;
    let mut stdout = tokio::io::stdout();
    let ready = format!(
        "baseline stream={} ws={} v2={} v2-ws={}\n",
        stream_listener.local_addr()?,
        ws_listener.local_addr()?,
        v2_listener.local_addr()?,
        v2_ws_listener.local_addr()?
    );
    stdout.write_all(ready.as_bytes()).await?;
    stdout.flush().await?;
    let table: Table = Arc::new(Mutex::new(HashMap::new()));
    let registry: registry::Registry = Arc::default();
    let stream_tls = if args.tls_stream { acceptor.clone() } else { None };
    let ws_tls = if args.tls_ws { acceptor } else { None };
    tokio::spawn(accept_loop(stream_listener, stream_tls.clone(), false, Api::V1(table.clone())));
    tokio::spawn(accept_loop(ws_listener, ws_tls.clone(), true, Api::V1(table)));
    tokio::spawn(accept_loop(v2_listener, stream_tls, false, Api::V2(registry.clone())));
    tokio::spawn(accept_loop(v2_ws_listener, ws_tls, true, Api::V2(registry)));
    // The bench holds our stdin open; its end (the bench exited) ends us too.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await.unwrap_or(0) > 0 {}
    Ok(())
}

fn bind() -> anyhow::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(socket.listen(1024)?)
}

fn tls_acceptor(tickets: bool) -> anyhow::Result<TlsAcceptor> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).context("cannot generate a certificate")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    if tickets {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

type Table = Arc<Mutex<HashMap<(String, String), Parked>>>;

/// A connection waiting for its partner.
struct Parked {
    end: End,
    name: String,
    uuid: String,
}

/// One end after its first line.
enum End {
    Stream { io: Io, early: Bytes },
    Ws(Box<WebSocketStream<Io>>),
}

/// What a listener serves: v1 pairing or the v2 registry.
#[derive(Clone)]
enum Api {
    V1(Table),
    V2(registry::Registry),
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, websocket: bool, api: Api) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of file descriptors and the like: back off briefly, as any server would.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match &api {
            Api::V1(table) => tokio::spawn(handle(tcp, tls.clone(), websocket, table.clone())),
            Api::V2(registry) => {
                tokio::spawn(registry::handle(tcp, tls.clone(), websocket, registry.clone()))
            }
        };
    }
}

async fn handle(tcp: TcpStream, tls: Option<TlsAcceptor>, websocket: bool, table: Table) -> Option<()> {
    let _ = tcp.set_nodelay(true);
    let io: Io = match tls {
        Some(acceptor) => Box::new(acceptor.accept(tcp).await.ok()?),
        None => Box::new(tcp),
    };
    let (end, first) = if websocket {
        let mut ws = tokio_tungstenite::accept_async(io).await.ok()?;
        let first = loop {
            match ws.next().await? {
                Ok(Message::Text(text)) => break Bytes::from(text),
                Ok(Message::Binary(data)) => break data,
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        };
        (End::Ws(Box::new(ws)), first)
    } else {
        let mut io = io;
        let mut buf = BytesMut::with_capacity(1024);
        let line = loop {
            if let Some(at) = buf.iter().position(|b| *b == b'\n') {
                break buf.split_to(at + 1).freeze();
            }
            if buf.len() > MAX_LINE || io.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        };
        (End::Stream { io, early: buf.freeze() }, line)
    };
    let request: Value = serde_json::from_slice(&first).ok()?;
    let params = &request["params"];
    let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let key = (text("token"), text("nonce"));
    let (name, uuid) = (text("name"), text("uuid"));
    let first = {
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        match table.remove(&key) {
            Some(parked) => parked,
            None => {
                table.insert(key, Parked { end, name, uuid });
                return Some(());
            }
        }
    };
    let mut a = first.end;
    let mut b = end;
    a.send_line(&established(&name, &uuid)).await?;
    b.send_line(&established(&first.name, &first.uuid)).await?;
    relay(a, b).await;
    Some(())
}

fn established(name: &str, uuid: &str) -> String {
    let message = serde_json::json!({
        "id": 0,
        "notification": "RemoteProxy.TunnelEstablished",
        "params": {"name": name, "uuid": uuid},
    });
    format!("{message}\n")
}

impl End {
    async fn send_line(&mut self, line: &str) -> Option<()> {
        match self {
            End::Stream { io, .. } => {
                io.write_all(line.as_bytes()).await.ok()?;
                io.flush().await.ok()
            }
            End::Ws(ws) => ws.send(Message::text(line.to_string())).await.ok(),
        }
    }
}

async fn relay(a: End, b: End) {
    match (a, b) {
        (End::Stream { io: mut a, early: early_a }, End::Stream { io: mut b, early: early_b }) => {
            if (b.write_all(&early_a).await.is_err()) || a.write_all(&early_b).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, CHUNK, CHUNK).await;
        }
        (End::Ws(a), End::Ws(b)) => {
            let (a_tx, a_rx) = a.split();
            let (b_tx, b_rx) = b.split();
            let a_to_b = data_messages(a_rx).forward(b_tx);
            let b_to_a = data_messages(b_rx).forward(a_tx);
            tokio::select! {
                _ = a_to_b => {}
                _ = b_to_a => {}
            }
        }
        (End::Stream { io, early }, End::Ws(ws)) | (End::Ws(ws), End::Stream { io, early }) => {
            let (reader, mut writer) = tokio::io::split(io);
            let (mut ws_tx, mut ws_rx) = ws.split();
            let to_ws = async move {
                if !early.is_empty() {
                    ws_tx.feed(Message::binary(early)).await?;
                }
                ReaderStream::with_capacity(reader, CHUNK)
                    .map(|chunk| chunk.map(Message::Binary).map_err(tungstenite::Error::Io))
                    .forward(ws_tx)
                    .await
            };
            let to_stream = async move {
                while let Some(Ok(message)) = ws_rx.next().await {
                    let payload = match message {
                        Message::Binary(data) => data,
                        Message::Text(text) => Bytes::from(text),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    writer.write_all(&payload).await?;
                    writer.flush().await?;
                }
                std::io::Result::Ok(())
            };
            tokio::select! {
                _ = to_ws => {}
                _ = to_stream => {}
            }
        }
    }
}

/// Data messages only, until a close frame or an error.
fn data_messages(
    stream: impl futures_util::Stream<Item = Result<Message, tungstenite::Error>>,
) -> impl futures_util::Stream<Item = Result<Message, tungstenite::Error>> {
    stream
        .take_while(|m| future::ready(matches!(m, Ok(m) if !m.is_close())))
        .filter(|m| future::ready(matches!(m, Ok(m) if m.is_binary() || m.is_text())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_parses() {
        let ready = parse_ready_line("baseline stream=127.0.0.1:4000 ws=127.0.0.1:4001\n").unwrap();
        assert_eq!((ready.stream.port(), ready.ws.port(), ready.v2, ready.v2_ws), (4000, 4001, None, None));
        let ready =
            parse_ready_line("baseline stream=127.0.0.1:1 ws=127.0.0.1:2 v2=127.0.0.1:3 v2-ws=127.0.0.1:4\n")
                .unwrap();
        assert_eq!(ready.v2.map(|a| a.port()), Some(3));
        assert_eq!(ready.v2_ws.map(|a| a.port()), Some(4));
        assert!(parse_ready_line("baseline stream=127.0.0.1:4000\n").is_none());
    }

    #[test]
    fn notification_is_one_json_line() {
        let line = established("a\"b", "u");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["notification"], "RemoteProxy.TunnelEstablished");
        assert_eq!(v["params"]["name"], "a\"b");
    }
}
