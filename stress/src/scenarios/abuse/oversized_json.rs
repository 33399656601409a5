//! Oversized and deeply nested JSON over TLS-TCP and WebSocket, v1 and v2: a 1 MiB line, `[`
//! 100,000 deep, params that open `{"a":` 10,000 times, a complete Hello 1,000 deep. This shows
//! that the broker closes each connection with an error message or a close frame (a byte stream's
//! buffer overflow only closed), and what it says.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use super::attack::Attack;
use super::json_client::upgrade;
use super::sources::abuser;
use super::support::{joined, until_closed};
use super::tls::Kit;
use crate::Ctx;
use crate::broker::Broker;
use crate::scenarios::common::check_none;
use crate::tunnels::ms;

/// Oversized and deeply nested JSON, each on a connection of its own over TLS-TCP and WebSocket,
/// v1 and v2: a 1 MiB line without a newline, `[` 100,000 deep, a Hello whose params open
/// `{"a":` 10,000 times, and a complete Hello nested 1,000 deep (within `maxMessageSize`, past
/// serde_json's recursion limit). Each must be closed with an error message or a close frame.
pub(super) async fn oversized_json(ctx: &Ctx, broker: &Broker, attack: &Attack) {
    let r = &ctx.report;
    let prefix = r#"{"id":1,"method":"RemoteProxy.Hello","params":"#;
    let mut line = format!("{prefix}{{\"pad\":\"");
    line.push_str(&"a".repeat((1 << 20) - line.len()));
    let brackets = "[".repeat(100_000);
    let open = format!("{prefix}{}", "{\"a\":".repeat(10_000));
    let deep = format!("{prefix}{}1{}}}\n", "{\"a\":".repeat(1_000), "}".repeat(1_000));
    let payloads = [
        ("a 1 MiB line without a newline", line),
        ("[ 100,000 deep", brackets),
        ("{\"a\": 10,000 deep", open),
        ("a complete Hello 1,000 deep", deep),
    ];
    let targets = [
        ("v1 TLS-TCP", broker.tcp, false),
        ("v1 WebSocket", broker.websocket, true),
        ("v2 TLS-TCP", broker.tcp2, false),
        ("v2 WebSocket", broker.websocket2, true),
    ];
    let mut tasks = Vec::new();
    for (what, payload) in &payloads {
        for (transport, addr, websocket) in targets {
            let (kit, payload) = (attack.kit.clone(), payload.clone());
            tasks.push((
                *what,
                transport,
                attack.spawn(async move { send_oversized(&kit, addr, websocket, payload).await }),
            ));
        }
    }
    let (mut wrong, mut answers, mut longest) =
        (Vec::new(), Vec::<(&str, bool, String)>::new(), Duration::ZERO);
    for (what, transport, task) in tasks {
        let websocket = transport.ends_with("WebSocket");
        match joined(task).await {
            Ok((t, said)) => {
                longest = longest.max(t);
                // A buffer overflow is not answered, only closed (the reference's behaviour,
                // src/protocol/errors.rs): on a byte stream that is a close without a word.
                if said.is_empty() && (websocket || !what.starts_with("a 1 MiB")) {
                    wrong.push(format!("{what} on {transport}: closed after {} without a word", ms(t)));
                }
                answers.push((
                    what,
                    websocket,
                    if said.is_empty() { "closed without a word".into() } else { said },
                ));
            }
            Err(e) => wrong.push(format!("{what} on {transport}: {e}")),
        }
    }
    for (what, _) in &payloads {
        for websocket in [false, true] {
            // What the broker said, once per payload and carrier (v1 and v2 say the same).
            if let Some((_, _, said)) = answers.iter().find(|(w, ws, _)| w == what && *ws == websocket) {
                r.figure(
                    &format!("oversized JSON: {what}, {}", if websocket { "WebSocket" } else { "TLS-TCP" }),
                    said,
                );
            }
        }
    }
    r.figure("oversized JSON: closed after at most", ms(longest));
    check_none(
        r,
        &format!(
            "oversized JSON: all {} connections closed, with an error message or a close frame (a byte stream's buffer overflow only closed)",
            payloads.len() * targets.len()
        ),
        &wrong,
        "not",
    );
}

/// Sends `payload` (as one text message on a WebSocket) while reading until the broker closes
/// the connection; how long that took and the start of what the broker said.
async fn send_oversized(
    kit: &Kit,
    addr: SocketAddr,
    websocket: bool,
    payload: String,
) -> Result<(Duration, String), String> {
    let source = abuser(53);
    let limit = Duration::from_secs(10);
    if websocket {
        let ws = upgrade(kit.tls(source, addr).await?).await?;
        let start = Instant::now();
        let (mut sink, mut stream) = ws.split();
        let write = async {
            let _ = tokio::time::timeout(limit, sink.send(Message::text(payload))).await;
        };
        let read = tokio::time::timeout(limit, async {
            let mut said = String::new();
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) if said.is_empty() => said = abbreviate(&text),
                    Some(Ok(Message::Close(frame))) => {
                        let close = frame
                            .map(|f| format!("close {} {:?}", u16::from(f.code), f.reason.as_str()))
                            .unwrap_or_else(|| "close".into());
                        return if said.is_empty() { close } else { format!("{said}; {close}") };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return said,
                }
            }
        });
        let ((), said) = tokio::join!(write, read);
        said.map(|said| (start.elapsed(), said)).map_err(|_| "still open after 10 s".to_string())
    } else {
        let tls = kit.tls(source, addr).await?;
        let start = Instant::now();
        let (mut read, mut write) = tokio::io::split(tls);
        let write = async {
            let _ = tokio::time::timeout(limit, write.write_all(payload.as_bytes())).await;
            let _ = write.flush().await;
        };
        let ((), said) = tokio::join!(write, until_closed(&mut read, limit));
        let said = said.ok_or("still open after 10 s")?;
        Ok((start.elapsed(), abbreviate(&String::from_utf8_lossy(&said))))
    }
}

/// The first 100 characters of `text`, on one line.
fn abbreviate(text: &str) -> String {
    let line = text.trim().replace('\n', " ");
    match line.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}
