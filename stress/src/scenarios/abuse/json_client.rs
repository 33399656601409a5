//! The attackers' JSON connections: lines over TLS-TCP or text messages over a WebSocket, a
//! bounded request and answer, and `RemoteProxy.Hello`; what the attacks that speak the protocol
//! (bad tokens, the silent flood, the PROXY protocol's balancer) use to talk to the broker.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::STEP;
use super::support::{bounded, until_closed};
use super::tls::Tls;

/// A WebSocket over a TLS client stream.
type Ws = WebSocketStream<Tls>;

/// One of our own JSON connections: lines over TLS, or text messages over a WebSocket.
pub(super) enum Json {
    Stream { io: Box<Tls>, buf: Vec<u8> },
    Ws(Box<Ws>),
}

impl Json {
    /// Lines over `tls`.
    pub(super) fn stream(tls: Tls) -> Json {
        Json::Stream { io: Box::new(tls), buf: Vec::new() }
    }

    /// Sends request `id` and waits (bounded) for its response; notifications are skipped.
    pub(super) async fn call(&mut self, id: i64, method: &str, params: Value) -> Result<Value, String> {
        let line = json!({"id": id, "method": method, "params": params}).to_string() + "\n";
        match self {
            Json::Stream { io, .. } => {
                bounded("write", io.write_all(line.as_bytes())).await?;
                bounded("flush", io.flush()).await?;
            }
            Json::Ws(ws) => bounded("send", ws.send(Message::text(line))).await?,
        }
        tokio::time::timeout(STEP, async {
            loop {
                let message = self.next().await?;
                if message.get("notification").is_none()
                    && message.get("id").and_then(Value::as_i64) == Some(id)
                {
                    return Ok(message);
                }
            }
        })
        .await
        .map_err(|_| format!("no answer to {method} within {STEP:?}"))?
    }

    /// The next JSON message.
    async fn next(&mut self) -> Result<Value, String> {
        let bytes = match self {
            Json::Stream { io, buf } => loop {
                if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    break line;
                }
                let mut chunk = [0u8; 4096];
                match io.read(&mut chunk).await {
                    Ok(0) => return Err("closed by the broker".into()),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("read: {e}")),
                }
            },
            Json::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => break text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(data))) => break data.to_vec(),
                    Some(Ok(Message::Close(_))) | None => return Err("closed by the broker".into()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("read: {e}")),
                }
            },
        };
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON from the broker: {e}"))
    }

    /// Waits until the broker closes the connection; whether it did within `limit`. Anything it
    /// says meanwhile is read and dropped.
    pub(super) async fn closed(&mut self, limit: Duration) -> bool {
        match self {
            Json::Stream { io, .. } => until_closed(io, limit).await.is_some(),
            Json::Ws(ws) => tokio::time::timeout(limit, async { while let Some(Ok(_)) = ws.next().await {} })
                .await
                .is_ok(),
        }
    }
}

/// `RemoteProxy.Hello` on `json`; how long the answer took.
pub(super) async fn hello_on(json: &mut Json) -> Result<Duration, String> {
    let start = Instant::now();
    let answer = json.call(0, "RemoteProxy.Hello", json!({})).await?;
    if answer.get("status").and_then(Value::as_str) != Some("success") {
        return Err(format!("Hello failed: {answer}"));
    }
    Ok(start.elapsed())
}

/// The WebSocket upgrade over `tls`, with a small read buffer (thousands are held at once).
pub(super) async fn upgrade(tls: Tls) -> Result<Ws, String> {
    let config = WebSocketConfig::default().read_buffer_size(4 << 10);
    let upgrade = tokio_tungstenite::client_async_with_config("wss://127.0.0.1/", tls, Some(config));
    bounded("WebSocket upgrade", async { upgrade.await.map(|(ws, _)| ws) }).await
}
