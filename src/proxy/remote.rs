//! v1 tunnels across cluster nodes (`[Cluster]`).
//!
//! The node where a tunnel's first peer waits owns its entry in Redis (`cluster::directory`). A
//! second peer that authenticates on another node finds the entry and opens a stream to the
//! owner (`/v1/join`) with a preamble naming the key, the owner's slot (its claim), and who the
//! peer is and how it is connected. The owner applies the pairing rules to its slot exactly as
//! for a local client ([`Registry::join_claimed`]: a duplicate uuid, a third client, a slot that
//! is no longer the one the entry named) and answers with a preamble: joined (who its waiting
//! peer is and how that one is connected) or refused.
//!
//! Once joined, each node runs the ordinary relay between its own client and the stream, and the
//! stream takes the shape of the *joining* client, on both nodes with that client's half-close
//! setting: a byte stream when that client is one (FIN is END_STREAM), a WebSocket carrying that
//! client's own messages otherwise (unmasked frames, as [`WebSocket::peer`]). On the joiner's node
//! the relay between its client and a stream of the same shape passes everything through
//! unchanged; so on the owner's node the relay sees, in the stream, exactly the joining client and
//! applies the same rules as on one node: text stays text, a close ends the tunnel, a FIN
//! half-closes. The relay knows a link end: a close on it is always a normal end (a cut resets the
//! stream instead, and the relay drops a cut link end, WebSocket or not), it sends no marker into
//! a link when the whole tunnel ends (the close frame says it, and the other node's relay gives its
//! client marker and close as on one node), and it keeps reading a link after its marker, for the
//! close or reset that ends the tunnel on the other node.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use remoteproxy_authenticators::Transport;
use serde_json::{Value, json};
use tracing::{debug, info};

use super::ProxyContext;
use super::pairing::{Handover, Identity, JoinRequest, Pairing, Parked, Refusal, SlotGuard, TunnelKey};
use crate::cluster::Cluster;
use crate::cluster::directory::Entry;
use crate::cluster::h2_stream::H2Stream;
use crate::relay::TunnelEnd;
use crate::transport::websocket::{CloseKind, MAX_TUNNEL_MESSAGE, WebSocket};
use crate::transport::{BoxStream, Connection, EarlyData, connection::Wire};

/// The path of a v1 join stream.
pub const JOIN_PATH: &str = "/v1/join";

/// Bound on the preambles: small JSON values on a link that is already open.
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a tunnel's client is connected, as the relay needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carrier {
    pub transport: Transport,
    pub websocket: bool,
    pub half_close: bool,
}

impl Carrier {
    pub fn of(conn: &Connection) -> Carrier {
        Carrier { transport: conn.transport, websocket: conn.is_websocket(), half_close: conn.half_close }
    }
}

/// A peer on another node, as its node describes it.
pub struct RemotePeer {
    pub identity: Identity,
    pub carrier: Carrier,
    pub node: String,
}

fn describe(identity: &Identity, carrier: Carrier) -> Value {
    json!({
        "uuid": identity.uuid,
        "name": identity.name,
        "user": identity.user_name,
        "transport": carrier.transport.as_str(),
        "websocket": carrier.websocket,
        "halfClose": carrier.half_close,
    })
}

fn read_peer(value: &Value, node: &str) -> Option<RemotePeer> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let transport = text("transport")?;
    let transport = Transport::ALL.into_iter().find(|t| t.as_str() == transport)?;
    Some(RemotePeer {
        identity: Identity {
            uuid: text("uuid")?,
            name: text("name").unwrap_or_default(),
            user_name: text("user"),
        },
        carrier: Carrier {
            transport,
            websocket: value.get("websocket")?.as_bool()?,
            half_close: value.get("halfClose")?.as_bool()?,
        },
        node: node.to_string(),
    })
}

/// The relay's end for a link stream shaped after the joining client, `joiner` (see the module
/// doc).
pub fn remote_end(stream: H2Stream, joiner: Carrier) -> TunnelEnd {
    let boxed: BoxStream = Box::new(stream);
    let wire = match joiner.websocket {
        true => Wire::WebSocket(Box::new(WebSocket::peer(boxed, MAX_TUNNEL_MESSAGE))),
        false => Wire::Stream(boxed),
    };
    TunnelEnd { wire, early_data: EarlyData::Bytes(Bytes::new()), half_close: joiner.half_close, stats: None }
}

/// What asking the owner node brought.
pub enum Joined {
    /// The tunnel is on: the owner's peer, and the stream to relay to.
    Partner(RemotePeer, H2Stream),
    /// The owner applied a pairing rule.
    Refused(Refusal),
    /// The owner could not be reached or answered nonsense.
    Unreachable,
}

/// Asks the node holding `entry` to join this client to its waiting peer.
pub async fn join(
    cluster: &Cluster,
    entry: &Entry,
    key: TunnelKey,
    identity: &Identity,
    carrier: Carrier,
) -> Joined {
    let (pair, token) = key.to_hex();
    let asked = async {
        let mut stream = cluster.open(&entry.owner, JOIN_PATH).await?;
        let mut request = describe(identity, carrier);
        request["pair"] = json!(pair);
        request["token"] = json!(token);
        request["claim"] = json!(entry.claim);
        stream.write_preamble(&request).await?;
        let answer = stream.read_preamble().await?;
        Ok::<_, std::io::Error>((answer, stream))
    };
    match tokio::time::timeout(PREAMBLE_TIMEOUT * 2, asked).await {
        Ok(Ok((answer, stream))) => {
            if let Some(refusal) = answer.get("refused").and_then(Value::as_str).and_then(Refusal::from_name)
            {
                return Joined::Refused(refusal);
            }
            match answer.get("joined").and_then(|peer| read_peer(peer, &entry.owner.node)) {
                Some(peer) => Joined::Partner(peer, stream),
                None => Joined::Unreachable,
            }
        }
        Ok(Err(error)) => {
            info!(node = %entry.owner.node, %error, "cannot reach the node holding the tunnel partner");
            Joined::Unreachable
        }
        Err(_) => {
            info!(node = %entry.owner.node, "the node holding the tunnel partner did not answer in time");
            Joined::Unreachable
        }
    }
}

/// The owner's side: a client on node `from` wants to join a peer waiting here.
pub async fn serve_join(mut stream: H2Stream, from: String, ctx: Arc<ProxyContext>, cluster: Arc<Cluster>) {
    let Ok(Ok(request)) = tokio::time::timeout(PREAMBLE_TIMEOUT, stream.read_preamble()).await else {
        debug!(node = %from, "a join stream without its preamble");
        return;
    };
    let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or_default();
    let (Some(key), Some(claim), Some(joiner)) = (
        TunnelKey::from_hex(text("pair"), text("token")),
        request.get("claim").and_then(Value::as_u64),
        read_peer(&request, &from),
    ) else {
        debug!(node = %from, "a join stream with a malformed preamble");
        return;
    };
    let (guard, partner) = match ctx.registry.join_claimed(key, claim, &joiner.identity.uuid) {
        Pairing::Join { guard, partner } => (guard, partner),
        Pairing::Refused(refusal) => return refuse(stream, refusal).await,
        Pairing::Parked { .. } => unreachable!("join_claimed never parks"),
    };
    let parked = match ask(partner).await {
        Some(Handover::Parked(parked)) => *parked,
        Some(Handover::Refused(refusal)) => return refuse(stream, refusal).await,
        // It left just now: its entry goes with its slot, the joiner's node claims anew.
        None => return refuse(stream, Refusal::Stale).await,
    };
    establish_for_remote(stream, parked, guard, joiner, ctx, cluster).await;
}

async fn refuse(mut stream: H2Stream, refusal: Refusal) {
    let _ = stream.write_preamble(&json!({"refused": refusal.name()})).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
}

async fn ask(partner: tokio::sync::oneshot::Sender<JoinRequest>) -> Option<Handover> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    partner.send(JoinRequest { reply }).ok()?;
    tokio::time::timeout(PREAMBLE_TIMEOUT, answer).await.ok()?.ok()
}

/// The owner joined its waiting client with a remote one: greet its client, answer the other
/// node, relay.
async fn establish_for_remote(
    mut stream: H2Stream,
    parked: Parked,
    guard: SlotGuard,
    joiner: RemotePeer,
    ctx: Arc<ProxyContext>,
    cluster: Arc<Cluster>,
) {
    let Parked { conn: mut partner, identity } = parked;
    // The other node first: if it is gone, the waiting client was never told of a tunnel.
    let answer = json!({"joined": describe(&identity, Carrier::of(&partner))});
    let answered = tokio::time::timeout(PREAMBLE_TIMEOUT, stream.write_preamble(&answer)).await;
    if !matches!(answered, Ok(Ok(()))) {
        debug!(node = %joiner.node, "the joining node went away while a tunnel was being established");
        partner.close(CloseKind::Error, crate::protocol::reasons::PARTNER_GONE).await;
        return;
    }
    let ids = &ctx.notification_ids;
    let greeting = super::session::tunnel_established(
        ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        &joiner.identity,
    );
    let greeted = tokio::time::timeout(PREAMBLE_TIMEOUT, partner.send(&greeting)).await;
    if !matches!(greeted, Ok(Ok(()))) {
        // Dropping the stream unfinished resets it: the other node cuts its client.
        debug!("the waiting client left while a remote tunnel was being established");
        partner.close(CloseKind::Error, crate::protocol::reasons::PARTNER_GONE).await;
        return;
    }
    let local = Local { conn: partner, identity };
    let shape = joiner.carrier;
    let tunnel = local.into_tunnel(stream, joiner, shape, guard, ctx, cluster, true);
    tunnel.run().await;
}

/// This node's client of a cross-node tunnel, ready to become one.
pub struct Local {
    pub conn: Connection,
    pub identity: Identity,
}

impl Local {
    /// The tunnel between this node's client and the other node's, over a stream shaped after
    /// `joiner` (`owner`: this node holds the tunnel's entry, and writes its statistics record;
    /// otherwise its client is the joiner).
    #[allow(clippy::too_many_arguments)]
    pub fn into_tunnel(
        self,
        stream: H2Stream,
        peer: RemotePeer,
        joiner: Carrier,
        guard: SlotGuard,
        ctx: Arc<ProxyContext>,
        cluster: Arc<Cluster>,
        owner: bool,
    ) -> super::tunnel::Tunnel {
        let Local { mut conn, identity } = self;
        ctx.stats.tunnel_established(conn.accepted_at.elapsed());
        let stats = conn.stats.take();
        if let Some(stats) = &stats {
            stats.entry().update(|info| info.tunnel_connected = true);
        }
        info!(
            conn = conn.id,
            uuid = %identity.uuid,
            user = identity.user_name.as_deref().unwrap_or(""),
            partner_uuid = %peer.identity.uuid,
            partner_user = peer.identity.user_name.as_deref().unwrap_or(""),
            partner_node = %peer.node,
            "tunnel established across nodes"
        );
        conn.decoder.skip_separator();
        let transport = conn.transport;
        let half_close = conn.half_close;
        let ticket = conn.ticket.take();
        let id = conn.id;
        let (wire, early_data) = conn.into_raw();
        let relayed = cluster.relayed(&peer.node);
        super::tunnel::Tunnel {
            ctx,
            a: remote_end(stream, joiner),
            b: TunnelEnd { wire, early_data, half_close, stats },
            a_side: (peer.identity, peer.carrier.transport),
            b_side: (identity, transport),
            ids: (0, id),
            started: std::time::SystemTime::now(),
            record: None,
            guard,
            tickets: (None, ticket),
            remote: Some(super::tunnel::Remote { node: peer.node, owner, _counted: relayed }),
        }
    }
}
