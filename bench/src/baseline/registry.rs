//! The v2 baseline: the least a TunnelProxy registry can do, so the broker's cost per idle
//! registered server and its reach latency have something to be compared with.
//!
//! On its own two listeners (TLS as the v1 ones; WebSocket upgrade with tokio-tungstenite and a
//! 4 KiB read buffer, the smallest that makes sense, where tungstenite's default keeps 128 KiB per
//! connection), per connection:
//! 1. read **one line** (one message on WebSocket) and parse it as JSON;
//! 2. `TunnelProxy.RegisterServer`: answer a fixed reply of the broker's shape
//!    (`tunnelProxyError` NoError, `slipEnabled` true, the request's id), put the uuid in a
//!    mutex-guarded map, and hold the connection reading: into a buffer that exists only during a
//!    poll, SLIP-decoded, frames for a client's address written to that client, everything on
//!    address 0 (pings) ignored. An idle server costs its TLS session, its task and its map entry;
//! 3. `TunnelProxy.RegisterClient`: look the server up (unknown: close), give the client the next
//!    socket address, send the server `TunnelProxy.ClientConnected` on address 0, answer the
//!    client `NoError`, then SLIP-frame whatever the client sends to the server, and tell the
//!    server `ClientDisconnected` when the client goes.
//!
//! No Hello, no params validation, no timers, no statistics, no queues: writers are shared
//! behind async mutexes, so a slow peer slows whoever writes to it.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::MAX_LINE;
use crate::client::{Io, LEAN_WS_READ_BUFFER, V2_NO_ERROR};
use crate::slip;

/// Bytes read at once, into a buffer on the stack of the poll.
const READ_CHUNK: usize = 4096;

/// Registered servers by uuid (lowercase, without braces).
pub(super) type Registry = Arc<Mutex<HashMap<String, Arc<Registered>>>>;

/// A registered server: where to write to it, and its clients.
pub(super) struct Registered {
    writer: tokio::sync::Mutex<Sink>,
    clients: Mutex<Clients>,
}

#[derive(Default)]
struct Clients {
    last: u16,
    by_address: HashMap<u16, Arc<tokio::sync::Mutex<Sink>>>,
}

impl Clients {
    /// The next free address after the last one given (1..=0xFFFE).
    fn allocate(&mut self) -> Option<u16> {
        for _ in 0..0xFFFE {
            self.last = if self.last >= 0xFFFE { 1 } else { self.last + 1 };
            if !self.by_address.contains_key(&self.last) {
                return Some(self.last);
            }
        }
        None
    }
}

enum Source {
    Stream(ReadHalf<Io>),
    Ws(SplitStream<WebSocketStream<Io>>),
}

enum Sink {
    Stream(WriteHalf<Io>),
    Ws(SplitSink<WebSocketStream<Io>, Message>),
}

impl Source {
    /// The next bytes; `None` at the end.
    async fn read(&mut self) -> Option<Bytes> {
        match self {
            Source::Stream(io) => poll_fn(|cx| {
                let mut buf = [0u8; READ_CHUNK];
                let mut read = ReadBuf::new(&mut buf);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
                Poll::Ready(io::Result::Ok(Bytes::copy_from_slice(read.filled())))
            })
            .await
            .ok()
            .filter(|bytes| !bytes.is_empty()),
            Source::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Binary(data)) => return Some(data),
                    Ok(Message::Text(text)) => return Some(Bytes::from(text)),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => continue,
                }
            },
        }
    }
}

impl Sink {
    /// Writes bytes: verbatim on a stream, one binary message on a WebSocket.
    async fn send(&mut self, data: Bytes) -> Option<()> {
        match self {
            Sink::Stream(io) => {
                io.write_all(&data).await.ok()?;
                io.flush().await.ok()
            }
            Sink::Ws(ws) => ws.send(Message::Binary(data)).await.ok(),
        }
    }

    /// Writes one JSON line: as is on a stream, one text message on a WebSocket.
    async fn send_line(&mut self, value: &Value) -> Option<()> {
        let line = format!("{value}\n");
        match self {
            Sink::Stream(_) => self.send(Bytes::from(line)).await,
            Sink::Ws(ws) => ws.send(Message::text(line)).await.ok(),
        }
    }
}

/// Serves one connection of a TunnelProxy listener to its end. The handshake and the held phase
/// are boxed, each freed when it ends: a task's allocation is the size of its future's largest
/// state, and the TLS and WebSocket handshake states are far larger than what a held server
/// needs (the broker boxes its phases for the same reason).
pub(super) async fn handle(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    websocket: bool,
    registry: Registry,
) -> Option<()> {
    let (source, sink, first, early) = Box::pin(open(tcp, tls, websocket)).await?;
    let request: Value = serde_json::from_slice(&first).ok()?;
    drop(first);
    let id = request.get("id").cloned().unwrap_or(Value::from(0));
    let params = &request["params"];
    let uuid = |key: &str| params[key].as_str().map(|u| u.trim_matches(['{', '}']).to_ascii_lowercase());
    match request["method"].as_str()? {
        "TunnelProxy.RegisterServer" => {
            let server_uuid = uuid("serverUuid")?;
            drop(request);
            Box::pin(serve_server(server_uuid, id, source, sink, early, registry)).await
        }
        "TunnelProxy.RegisterClient" => {
            let client = Client { uuid: uuid("clientUuid")?, name: params["clientName"].clone(), id };
            let server_uuid = uuid("serverUuid")?;
            drop(request);
            Box::pin(serve_client(client, server_uuid, source, sink, early, registry)).await
        }
        _ => None,
    }
}

/// TLS, the WebSocket upgrade, and the first line or message.
async fn open(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    websocket: bool,
) -> Option<(Source, Sink, Bytes, Bytes)> {
    let _ = tcp.set_nodelay(true);
    let io: Io = match tls {
        Some(acceptor) => Box::new(acceptor.accept(tcp).await.ok()?),
        None => Box::new(tcp),
    };
    let (source, sink, first, early) = if websocket {
        let config = WebSocketConfig::default().read_buffer_size(LEAN_WS_READ_BUFFER);
        let mut ws = tokio_tungstenite::accept_async_with_config(io, Some(config)).await.ok()?;
        let first = loop {
            match ws.next().await? {
                Ok(Message::Text(text)) => break Bytes::from(text),
                Ok(Message::Binary(data)) => break data,
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        };
        let (sink, source) = ws.split();
        (Source::Ws(source), Sink::Ws(sink), first, Bytes::new())
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
        // Copied out, so the 1 KiB line buffer is not kept for the life of the connection.
        let early = Bytes::copy_from_slice(&buf);
        let (read, write) = tokio::io::split(io);
        (Source::Stream(read), Sink::Stream(write), line, early)
    };
    Some((source, sink, first, early))
}

async fn serve_server(
    uuid: String,
    id: Value,
    mut source: Source,
    mut sink: Sink,
    early: Bytes,
    registry: Registry,
) -> Option<()> {
    let reply = json!({
        "id": id,
        "params": {"slipEnabled": true, "tunnelProxyError": V2_NO_ERROR},
        "status": "success",
    });
    sink.send_line(&reply).await?;
    let server = Arc::new(Registered { writer: tokio::sync::Mutex::new(sink), clients: Mutex::default() });
    registry.lock().unwrap_or_else(|e| e.into_inner()).insert(uuid.clone(), server.clone());
    let mut decoder = slip::Decoder::default();
    let mut data = early;
    loop {
        let mut frames = Vec::new();
        decoder.decode(&data, |address, payload| frames.push((address, payload)));
        for (address, payload) in frames {
            if address == 0 {
                continue;
            }
            let client =
                server.clients.lock().unwrap_or_else(|e| e.into_inner()).by_address.get(&address).cloned();
            if let Some(client) = client {
                let _ = client.lock().await.send(payload).await;
            }
        }
        match source.read().await {
            Some(bytes) => data = bytes,
            None => break,
        }
    }
    registry.lock().unwrap_or_else(|e| e.into_inner()).remove(&uuid);
    Some(())
}

/// Who registers as a client, and the id of its request.
struct Client {
    uuid: String,
    name: Value,
    id: Value,
}

async fn serve_client(
    client: Client,
    server_uuid: String,
    mut source: Source,
    sink: Sink,
    early: Bytes,
    registry: Registry,
) -> Option<()> {
    let server = registry.lock().unwrap_or_else(|e| e.into_inner()).get(&server_uuid).cloned()?;
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    let address = {
        let mut clients = server.clients.lock().unwrap_or_else(|e| e.into_inner());
        let address = clients.allocate()?;
        clients.by_address.insert(address, sink.clone());
        address
    };
    let connected = json!({
        "id": 0,
        "notification": "TunnelProxy.ClientConnected",
        "params": {
            "clientName": client.name,
            "clientPeerAddress": "127.0.0.1",
            "clientUuid": format!("{{{}}}", client.uuid),
            "socketAddress": address,
        },
    });
    let to_server = |value: &Value| slip::encode(0, format!("{value}\n").as_bytes());
    let told = server.writer.lock().await.send(to_server(&connected)).await;
    let reply = json!({"id": client.id, "params": {"tunnelProxyError": V2_NO_ERROR}, "status": "success"});
    if told.is_some() && sink.lock().await.send_line(&reply).await.is_some() {
        let mut data = early;
        loop {
            if !data.is_empty()
                && server.writer.lock().await.send(slip::encode(address, &data)).await.is_none()
            {
                break;
            }
            match source.read().await {
                Some(bytes) => data = bytes,
                None => break,
            }
        }
    }
    server.clients.lock().unwrap_or_else(|e| e.into_inner()).by_address.remove(&address);
    let gone = json!({
        "id": 0,
        "notification": "TunnelProxy.ClientDisconnected",
        "params": {"socketAddress": address},
    });
    let _ = server.writer.lock().await.send(to_server(&gone)).await;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_those_in_use_and_wrap() {
        let mut clients = Clients::default();
        assert_eq!(clients.allocate(), Some(1));
        let (io, _peer) = tokio::io::duplex(64);
        let (_, write) = tokio::io::split(Box::new(io) as Io);
        clients.by_address.insert(2, Arc::new(tokio::sync::Mutex::new(Sink::Stream(write))));
        assert_eq!(clients.allocate(), Some(3), "2 is in use");
        clients.last = 0xFFFD;
        assert_eq!(clients.allocate(), Some(0xFFFE));
        assert_eq!(clients.allocate(), Some(1), "0 and 0xFFFF are never given");
    }
}
