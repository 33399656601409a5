//! v2 clients whose server is registered on another cluster node.
//!
//! A registered server claims `v2:<uuid>` in Redis (a second registration of the uuid on any
//! node is refused, as on one node). A client whose server is not on its node looks the uuid up
//! and opens a stream to the server's node (`/v2/connect`) with a preamble naming both uuids, the
//! client's name and address and whether it is a WebSocket. That node registers and joins the
//! client exactly as a local one (`session::join_server`: the same rules, `maxClientsPerServer`
//! included) and runs the ordinary client pipe with the stream as the client's connection; the
//! client's own node passes bytes through: a byte stream as it is, a WebSocket message by message
//! with its close frame (code and reason: `Server disconnected`, `Server requested disconnect.`)
//! passed on unchanged, so the client sees what a local client would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use remoteproxy_authenticators::{PeerAddress, Transport};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tracing::{debug, info};
use uuid::Uuid;

use super::TunnelProxyContext;
use super::session::{ClientRefusal, describe, join_server};
use crate::cluster::Cluster;
use crate::cluster::h2_stream::H2Stream;
use crate::protocol::reasons::{SERVER_GONE, STOP_SERVER};
use crate::relay::{self, TunnelEnd};
use crate::stats::{Api, ConnHandle, Role};
use crate::transport::connection::Wire;
use crate::transport::websocket::{
    CLOSE_LINGER, CloseKind, MAX_TUNNEL_MESSAGE, PEER_CLOSE_LINGER, WebSocket, WsStream,
};
use crate::transport::{BoxStream, Connection, EarlyData, halves};

/// The path of a v2 connect stream.
pub const CONNECT_PATH: &str = "/v2/connect";

/// Bound on the preambles.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Statistics ids of clients on other nodes: far above this node's own connection ids.
static REMOTE_IDS: AtomicU64 = AtomicU64::new(1 << 48);

/// A client's registration, as its node passes it on.
pub struct Request {
    /// `clientUuid`.
    pub client: Uuid,
    /// `serverUuid`.
    pub server: Uuid,
    /// `clientName`.
    pub name: String,
    /// Where the client connects from (the server sees its IP).
    pub peer: PeerAddress,
    /// How (for the server node's books).
    pub transport: Transport,
    /// The client is a WebSocket: the stream carries its messages.
    pub websocket: bool,
}

/// What asking the cluster brought.
pub enum Reached {
    /// Joined to the server on `node`: relay to the stream.
    Joined(H2Stream, String),
    /// Refused (by the server's node, or nobody has the server).
    Refused(ClientRefusal),
}

/// Finds the node holding `request.server` and joins the client to it there.
pub async fn connect(cluster: &Cluster, request: &Request) -> Reached {
    let not_found = Reached::Refused(ClientRefusal::Registry(super::registry::Refusal::ServerNotFound));
    let entry = match cluster.lookup("v2", &request.server.hyphenated().to_string()).await {
        // An entry of this node is one whose server just left.
        Ok(Some(entry)) if entry.owner.node != cluster.node => entry,
        _ => return not_found,
    };
    let peer = match request.peer {
        PeerAddress::Ip(address) => address.to_string(),
        PeerAddress::Unix => String::new(),
    };
    let asked = async {
        let mut stream = cluster.open(&entry.owner, CONNECT_PATH).await?;
        let preamble = json!({
            "client": request.client.hyphenated().to_string(),
            "server": request.server.hyphenated().to_string(),
            "name": request.name,
            "peer": peer,
            "transport": request.transport.as_str(),
            "websocket": request.websocket,
        });
        stream.write_preamble(&preamble).await?;
        let answer = stream.read_preamble().await?;
        Ok::<_, std::io::Error>((answer, stream))
    };
    match tokio::time::timeout(PREAMBLE_TIMEOUT * 2, asked).await {
        Ok(Ok((answer, stream))) => match answer.get("refused").and_then(Value::as_str) {
            Some(name) => Reached::Refused(ClientRefusal::from_name(name)),
            None => Reached::Joined(stream, entry.owner.node),
        },
        Ok(Err(error)) => {
            info!(node = %entry.owner.node, %error, "cannot reach the node holding the TunnelProxy server");
            not_found
        }
        Err(_) => {
            info!(node = %entry.owner.node, "the node holding the TunnelProxy server did not answer in time");
            not_found
        }
    }
}

/// The server's node: a client on node `from` registers for a server here.
pub async fn serve_connect(mut stream: H2Stream, from: String, ctx: Arc<TunnelProxyContext>) {
    let Ok(Ok(request)) = tokio::time::timeout(PREAMBLE_TIMEOUT, stream.read_preamble()).await else {
        debug!(node = %from, "a connect stream without its preamble");
        return;
    };
    let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let (Ok(client), Ok(server)) = (Uuid::parse_str(&text("client")), Uuid::parse_str(&text("server")))
    else {
        debug!(node = %from, "a connect stream with a malformed preamble");
        return;
    };
    let websocket = request.get("websocket").and_then(Value::as_bool).unwrap_or(false);
    let transport =
        Transport::ALL.into_iter().find(|t| t.as_str() == text("transport")).unwrap_or(Transport::Tcp);
    let peer = text("peer").parse().map(PeerAddress::Ip).unwrap_or(PeerAddress::Unix);
    let peer_ip = match peer {
        PeerAddress::Ip(address) => address.ip().to_string(),
        PeerAddress::Unix => String::new(),
    };
    let name = text("name");
    let (guard, joined, server_control) = match join_server(&ctx, client, server, &name, &peer_ip).await {
        Ok(joined) => joined,
        Err(refusal) => {
            info!(%client, %server, node = %from, reason = refusal.answer().1, "client on another node refused");
            let _ = stream.write_preamble(&json!({"refused": refusal.name()})).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return;
        }
    };
    if stream.write_preamble(&json!({"joined": true})).await.is_err() {
        return;
    }
    info!(%client, %server, node = %from, address = joined.address, "client on another node registered");
    let stats = ctx.stats.open(REMOTE_IDS.fetch_add(1, Ordering::Relaxed), Api::V2, peer, transport);
    describe(&stats, &name, client, Role::Client { server: joined.server_stats.id });
    let (reader, writer) = halves::split(link_wire(stream, websocket));
    let carrier = super::Carrier { reader, writer, early: Bytes::new(), stats, ticket: None };
    super::client::run(ctx, carrier, joined, server_control, guard).await;
}

/// The link stream shaped after the client: its bytes, or its WebSocket messages.
fn link_wire(stream: H2Stream, websocket: bool) -> Wire {
    let boxed: BoxStream = Box::new(stream);
    match websocket {
        true => Wire::WebSocket(Box::new(WebSocket::peer(boxed, MAX_TUNNEL_MESSAGE))),
        false => Wire::Stream(boxed),
    }
}

/// The client's node: passes the client's bytes or messages to the server's node and back until
/// either ends.
pub async fn forward(mut conn: Connection, stream: H2Stream, ctx: Arc<TunnelProxyContext>) {
    conn.decoder.skip_separator();
    let stats = conn.stats.take();
    let mut ticket = conn.ticket.take();
    if let Some(ticket) = &mut ticket {
        ticket.authenticated();
    }
    let websocket = conn.is_websocket();
    let (wire, early_data) = conn.into_raw();
    match (wire, early_data) {
        (Wire::WebSocket(ws), EarlyData::Frames(early)) => {
            let link = WebSocket::peer(Box::new(stream) as BoxStream, MAX_TUNNEL_MESSAGE);
            forward_messages(*ws, early, link, stats, &ctx).await;
        }
        (wire, early_data) => {
            debug_assert!(!websocket);
            let client = TunnelEnd { wire, early_data, half_close: false, stats };
            let link = TunnelEnd {
                wire: link_wire(stream, false),
                early_data: EarlyData::Bytes(Bytes::new()),
                half_close: false,
                stats: None,
            };
            relay::run(client, link, None, ctx.hard_stop.clone()).await;
        }
    }
    drop(ticket);
}

/// A WebSocket client and its link, message by message; a close frame crosses as it is.
async fn forward_messages(
    client: WsStream,
    early: Vec<Message>,
    link: WsStream,
    stats: Option<ConnHandle>,
    ctx: &TunnelProxyContext,
) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut link_tx, mut link_rx) = link.split();
    let count = |len: usize, sent: bool| {
        if let Some(stats) = &stats {
            if sent { stats.sent(len as u64) } else { stats.received(len as u64) }
        }
    };
    // Whether the client closed normally (its close went on the link) rather than failing.
    let up = async {
        for message in early {
            if link_tx.send(message).await.is_err() {
                return false;
            }
        }
        while let Some(Ok(message)) = client_rx.next().await {
            match message {
                Message::Text(_) | Message::Binary(_) => {
                    let len = message.len();
                    if link_tx.send(message).await.is_err() {
                        return false;
                    }
                    count(len, true);
                }
                Message::Close(frame) => return link_tx.send(Message::Close(frame)).await.is_ok(),
                _ => {}
            }
        }
        false
    };
    let down = async {
        while let Some(Ok(message)) = link_rx.next().await {
            match message {
                Message::Text(_) | Message::Binary(_) => {
                    let len = message.len();
                    if client_tx.send(message).await.is_err() {
                        return None;
                    }
                    count(len, false);
                }
                Message::Close(frame) => return Some(frame),
                _ => {}
            }
        }
        // The server's node cut the link: as if the server's connection failed.
        Some(Some(CloseFrame { code: CloseKind::Error.code(), reason: SERVER_GONE.into() }))
    };
    let (last, clean) = tokio::select! {
        clean = up => (None, clean),
        frame = down => (frame, true),
        _ = ctx.hard_stop.cancelled() => {
            (Some(Some(CloseFrame { code: CloseKind::Shutdown.code(), reason: STOP_SERVER.into() })), true)
        }
    };
    if let (true, Ok(mut link)) = (clean, link_tx.reunite(link_rx)) {
        // END_STREAM behind what was sent: the server's node gets every message and the close
        // even if it answers late; only a failed client's link is left to reset (a cut).
        let _ = tokio::time::timeout(PEER_CLOSE_LINGER, async {
            let _ = tokio::io::AsyncWriteExt::shutdown(link.get_mut()).await;
            while let Some(Ok(_)) = link.next().await {}
        })
        .await;
    }
    if let Some(frame) = last {
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            let _ = client_tx.send(Message::Close(frame)).await;
            let _ = client_tx.close().await;
        })
        .await;
    }
}
