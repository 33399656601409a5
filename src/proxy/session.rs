//! One v1 connection from accept to tunnel: inactive → authenticating → alone → tunnel.
//!
//! The session owns its [`Connection`] and runs every phase in one task, so there is no state
//! shared between a reader and a writer and no lock. Each phase is a `select!` over the socket,
//! its timers and the broker's stop signal:
//!
//! * **handshake**: requests are answered as they arrive; `inactiveTimeout` (restarted by every
//!   chunk) and `handshakeDeadline` (never restarted) run until `Authenticate` arrives.
//! * **authenticating**: the authenticator runs in its own task bounded by
//!   `authenticationTimeout`, the call by `jsonRpcTimeout`. `Hello` and `Introspect` are still
//!   answered. Bytes that do not parse as JSON are held: they are the start of the tunnel if the
//!   client is joined at once, and "data while alone" otherwise.
//! * **alone**: parked in the registry until a partner asks for this connection; any data,
//!   `aloneTimeout` or a stop signal closes it.
//! * **tunnel**: the joining session writes both `TunnelEstablished` notifications and runs the
//!   relay for both connections; the waiting session's task ends when it hands its connection
//!   over.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use remoteproxy_authenticators::{AuthRequest, AuthenticationError, ConnectionFacts, Token, Verdict};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{Instrument, debug, info, warn};

use super::ProxyContext;
use super::api::V1_API;
use super::pairing::{
    Handover, Identity, JoinRequest, Pairing, Parked, Refusal as PairingRefusal, SlotGuard, TunnelKey,
};
use super::remote::{self, Carrier, Joined, Local, RemotePeer};
use super::tunnel::Tunnel;
use crate::cluster::Cluster;
use crate::cluster::directory::{Claim, Entry};
use crate::cluster::h2_stream::H2Stream;
use crate::protocol::api::string_param;
use crate::protocol::reasons::{self, PARTNER_GONE};
use crate::protocol::{DecodeError, Request, RpcError, message, remote_proxy};
use crate::relay::TunnelEnd;
use crate::stats::{Api, SessionOutcome};
use crate::transport::websocket::CloseKind;
use crate::transport::{Chunk, Connection, Exit, ReadError};

/// How long the joiner waits for the parked session to hand over its connection. The parked
/// session answers at once unless it is gone, so this only bounds a broken hand-over.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on writing the last handshake messages of a tunnel; they are small, so only a peer that
/// stopped reading entirely can hit it.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// A successful `Authenticate`, waiting to be paired.
struct Authenticated {
    request_id: i64,
    identity: Identity,
    key: TunnelKey,
}

/// An `Authenticate` call in flight.
struct PendingAuth {
    request_id: i64,
    uuid: String,
    name: String,
    key: TunnelKey,
    task: AbortOnDrop<Verdict>,
}

/// The authenticator's task, aborted if the session ends first.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves one v1 connection to its end.
pub async fn serve(mut conn: Connection, ctx: Arc<ProxyContext>) {
    conn.stats = Some(ctx.stats.open(conn.id, Api::V1, conn.peer, conn.transport));
    let span = conn.span.clone();
    let mut session = Session { conn, ctx, outcome: None, answered: false };
    // A task is as large as its largest phase for its whole life, and the tunnel phase, which
    // may last for days, is the small one. So every phase before it runs in a box that is freed
    // when the phase ends, and the tunnel runs in the task itself, outside the connection's log
    // span (it logs its ids itself).
    let phases = async {
        match Box::pin(session.handshake()).await {
            Ok(authenticated) => Box::pin(session.pair(authenticated)).await,
            Err(exit) => {
                Box::pin(session.finish(exit)).await;
                None
            }
        }
    };
    let tunnel = phases.instrument(span).await;
    if let Some(tunnel) = tunnel {
        tunnel.run().await;
    }
}

struct Session {
    conn: Connection,
    ctx: Arc<ProxyContext>,
    /// How the session ended, once decided; reported by `finish`. Sessions that end without a
    /// decision (the client left before authenticating, the broker stopped) are not counted.
    outcome: Option<SessionOutcome>,
    /// The client has its `Authenticate` answer (it waits for a partner): what follows is a
    /// TunnelEstablished or a close, never a second answer.
    answered: bool,
}

impl Session {
    async fn finish(self, exit: Exit) {
        if let Some(outcome) = self.outcome {
            self.ctx.stats.session_ended(outcome);
        }
        match exit {
            Exit::Close(kind, reason) => {
                debug!(%reason, "closing");
                self.conn.close(kind, &reason).await;
            }
            Exit::Done => debug!("disconnected"),
        }
    }

    /// Until `Authenticate` has succeeded.
    async fn handshake(&mut self) -> Result<Authenticated, Exit> {
        let timeouts = self.ctx.timeouts;
        let mut deadline = pin!(sleep_until(self.conn.accepted_at + timeouts.handshake_deadline));
        let mut inactive = pin!(sleep(timeouts.inactive));
        let mut rpc_deadline = pin!(sleep(timeouts.json_rpc));
        let mut pending: Option<PendingAuth> = None;
        // Set when bytes after an `Authenticate` are not JSON: they are held for the tunnel and
        // the socket is not read until the authenticator has answered.
        let mut holding = false;
        loop {
            while !holding {
                match self.conn.decoder.next_message() {
                    Ok(None) => break,
                    Ok(Some(message)) => {
                        if let Some(auth) = self.handle(message, pending.is_some()).await? {
                            rpc_deadline.as_mut().reset(Instant::now() + timeouts.json_rpc);
                            pending = Some(auth);
                        }
                    }
                    Err(DecodeError::Parse(_)) if pending.is_some() => holding = true,
                    Err(DecodeError::Parse(text)) => {
                        return Err(self.refuse(RpcError::InvalidJson(text)).await);
                    }
                    Err(DecodeError::Oversized) => return Err(self.refuse(RpcError::BufferOverflow).await),
                }
            }
            let authenticating = pending.is_some();
            tokio::select! {
                biased;
                _ = self.ctx.stop.cancelled() => return Err(Exit::shutdown()),
                joined = async { (&mut pending.as_mut().expect("guarded").task.0).await }, if authenticating => {
                    let auth = pending.take().expect("guarded");
                    let verdict = joined.unwrap_or_else(|_| Verdict::refuse(AuthenticationError::Aborted));
                    return self.authenticated(auth, verdict).await;
                }
                _ = &mut rpc_deadline, if authenticating => {
                    let id = pending.as_ref().expect("guarded").request_id;
                    return Err(self.refuse(RpcError::Timeout { id }).await);
                }
                _ = &mut deadline, if !authenticating => return Err(self.timed_out()),
                _ = &mut inactive, if !authenticating => return Err(self.timed_out()),
                chunk = self.conn.read_chunk(), if !holding => match chunk {
                    Ok(Chunk::Data) => inactive.as_mut().reset(Instant::now() + timeouts.inactive),
                    Ok(Chunk::Control) => {}
                    Ok(Chunk::Closed) | Err(ReadError::Io) => return Err(Exit::Done),
                    Err(ReadError::Oversized) => return Err(self.refuse(RpcError::BufferOverflow).await),
                },
            }
        }
    }

    /// Answers one request. Returns the started authentication for `Authenticate`.
    async fn handle(&mut self, message: Value, authenticating: bool) -> Result<Option<PendingAuth>, Exit> {
        let (request, method) = match V1_API.accept(message) {
            Ok(accepted) => accepted,
            Err(error) => return Err(self.refuse(error).await),
        };
        match (method.namespace, method.name) {
            ("RemoteProxy", "Hello") => {
                self.send(&message::success(request.id, remote_proxy::hello(&self.ctx.server_name))).await?;
                Ok(None)
            }
            ("RemoteProxy", "Introspect") => {
                self.send(&message::success(request.id, V1_API.introspect())).await?;
                Ok(None)
            }
            ("Authentication", "Authenticate") if authenticating => {
                self.outcome = Some(SessionOutcome::Errory);
                let _ = self.send(&message::error(request.id, "Authentication already in progress")).await;
                Err(Exit::error(reasons::AUTHENTICATION_IN_PROGRESS))
            }
            ("Authentication", "Authenticate") => Ok(Some(self.start_authentication(&request))),
            (namespace, name) => unreachable!("{namespace}.{name} is in V1_API but has no handler"),
        }
    }

    fn start_authentication(&self, request: &Request) -> PendingAuth {
        let param = |key| string_param(&request.params, key).unwrap_or_default();
        let token = Token::new(param("token"));
        let nonce = param("nonce");
        let uuid = normalize_uuid(&param("uuid"));
        let name = param("name");
        let key = TunnelKey::new(&token, &nonce);
        let auth_request = AuthRequest {
            token,
            facts: ConnectionFacts {
                peer: self.conn.peer,
                transport: self.conn.transport,
                uuid: uuid.clone(),
                name: name.clone(),
                nonce,
                client_certificates: self.conn.client_certificates.clone(),
            },
        };
        debug!(%uuid, %name, authenticator = self.ctx.authenticator.kind(), "authenticating");
        let authenticator = self.ctx.authenticator.clone();
        let limit = self.ctx.timeouts.authentication;
        // The authenticator's own log lines belong to this connection's span.
        let task = tokio::spawn(
            async move {
                tokio::time::timeout(limit, authenticator.authenticate(&auth_request))
                    .await
                    .unwrap_or(Verdict::refuse(AuthenticationError::Timeout))
            }
            .instrument(tracing::Span::current()),
        );
        PendingAuth { request_id: request.id, uuid, name, key, task: AbortOnDrop(task) }
    }

    /// The authenticator answered. A refusal is answered and closed here; success goes on to
    /// pairing, which sends the response.
    async fn authenticated(&mut self, auth: PendingAuth, verdict: Verdict) -> Result<Authenticated, Exit> {
        self.ctx.stats.authentication(self.ctx.authenticator.kind(), verdict.error);
        if verdict.error != AuthenticationError::NoError {
            self.outcome = Some(match verdict.error {
                AuthenticationError::Timeout => SessionOutcome::Timeout,
                _ => SessionOutcome::Errory,
            });
            info!(uuid = %auth.uuid, name = %auth.name, outcome = %verdict.error, "authentication refused");
            self.send(&auth_response(auth.request_id, verdict.error)).await?;
            return Err(Exit::error(reasons::NOT_SUCCESSFUL));
        }
        // No longer pending: `maxPendingHandshakes` counts connections not yet authenticated.
        if let Some(ticket) = &mut self.conn.ticket {
            ticket.authenticated();
        }
        // The tunnel line names both users; per client this is detail.
        debug!(uuid = %auth.uuid, name = %auth.name, user = verdict.user_name.as_deref().unwrap_or(""), "authenticated");
        if let Some(stats) = &self.conn.stats {
            stats.entry().update(|info| {
                info.name = auth.name.clone();
                info.uuid = auth.uuid.clone();
                info.user_name = verdict.user_name.clone();
                info.authenticated = true;
            });
        }
        Ok(Authenticated {
            request_id: auth.request_id,
            identity: Identity { uuid: auth.uuid, name: auth.name, user_name: verdict.user_name },
            key: auth.key,
        })
    }

    /// Parks the client or joins it with its partner. Returns the tunnel when this session is
    /// the one that joins; a parked session ends when it hands its connection over.
    async fn pair(self, auth: Authenticated) -> Option<Tunnel> {
        let registry = self.ctx.registry.clone();
        let (guard, join) = match registry.pair_or_park(auth.key, &auth.identity.uuid) {
            Pairing::Refused(refusal) => {
                self.refused(refusal, refusal.reason(), &auth).await;
                return None;
            }
            Pairing::Parked { guard, join } => (guard, join),
            Pairing::Join { guard, partner } => match ask_for_partner(partner).await {
                Some(Handover::Parked(parked)) => return self.establish(*parked, guard, auth).await,
                Some(Handover::Refused(refusal)) => {
                    drop(guard);
                    self.refused(refusal, refusal.reason(), &auth).await;
                    return None;
                }
                None => match registry.repark(&guard, &auth.identity.uuid) {
                    Some(join) => {
                        debug!("the waiting partner left before the hand-over; waiting in its place");
                        (guard, join)
                    }
                    // The partner joined a peer on another node instead: a third client.
                    None => {
                        drop(guard);
                        let refusal = PairingRefusal::TunnelExists;
                        self.refused(refusal, refusal.reason(), &auth).await;
                        return None;
                    }
                },
            },
        };
        // Waiting here: in a cluster the tunnel's entry must be this node's, or the partner is
        // on another node already.
        if let Some(cluster) = self.ctx.cluster.clone() {
            let (pair, _) = auth.key.to_hex();
            if let Claim::Elsewhere(entry) = cluster.claim("v1", &pair, guard.claim()).await {
                return self.join_remote(cluster, auth, guard, join, entry).await;
            }
        }
        self.park(guard, join, auth).await
    }

    /// The pairing rules refused this client: answer ProxyError and close with `reason`.
    async fn refused(mut self, refusal: PairingRefusal, reason: &'static str, auth: &Authenticated) {
        if refusal == PairingRefusal::TooManyTunnels {
            // A limit: counted, and not a line per refusal (a token holder could flood).
            self.ctx.stats.connection_refused(crate::stats::Refusal::MaxTunnelsPerToken);
            debug!(uuid = %auth.identity.uuid, reason, "refused");
        } else {
            info!(uuid = %auth.identity.uuid, reason, "refused");
        }
        self.outcome = Some(SessionOutcome::Redundant);
        let exit = match self.answered {
            // Waited through a Redis outage and then refused by the other node: just closed.
            true => Exit::error(reason),
            false => {
                match self.send(&auth_response(auth.request_id, AuthenticationError::ProxyError)).await {
                    Ok(()) => Exit::error(reason),
                    Err(exit) => exit,
                }
            }
        };
        self.finish(exit).await;
    }

    /// Nobody is here yet: answer the client and wait alone. In a cluster the slot's entry is
    /// this node's now (or waits for Redis to come back), and the peer is told if another node
    /// takes the key while Redis is away (see [`Cluster::watch_lost`]).
    async fn park(
        mut self,
        guard: SlotGuard,
        join: oneshot::Receiver<JoinRequest>,
        auth: Authenticated,
    ) -> Option<Tunnel> {
        let lost = self
            .ctx
            .cluster
            .as_ref()
            .map(|cluster| cluster.watch_lost("v1", &auth.key.to_hex().0, guard.claim()));
        if !self.answered {
            if let Err(exit) = self.send(&auth_response(auth.request_id, AuthenticationError::NoError)).await
            {
                self.finish(exit).await;
                return None;
            }
            self.answered = true;
        }
        if self.conn.decoder.has_data() {
            self.finish(Exit::error(reasons::DATA_WHILE_ALONE)).await;
            return None;
        }
        self.wait_alone(guard, join, auth, lost).await
    }

    /// The partner waits on another node: ask that node to join them, and relay to it.
    async fn join_remote(
        self,
        cluster: Arc<Cluster>,
        auth: Authenticated,
        guard: SlotGuard,
        mut join: oneshot::Receiver<JoinRequest>,
        mut entry: Entry,
    ) -> Option<Tunnel> {
        let carrier = Carrier::of(&self.conn);
        let (pair, _) = auth.key.to_hex();
        // A stale entry (its slot gone) is removed and the key claimed again; a few rounds at
        // most, as each removes one entry.
        for _ in 0..3 {
            match remote::join(&cluster, &entry, auth.key, &auth.identity, carrier).await {
                Joined::Partner(peer, stream) => {
                    // From now on a local client for this key is a third one.
                    self.ctx.registry.occupy(&guard);
                    if let Ok(JoinRequest { reply }) = join.try_recv() {
                        let _ = reply.send(Handover::Refused(PairingRefusal::TunnelExists));
                    }
                    return self.establish_remote(peer, stream, guard, auth, cluster).await;
                }
                Joined::Refused(PairingRefusal::Stale) => {
                    cluster.forget_stale("v1", &pair, &entry).await;
                    if !self.ctx.registry.owns(&guard) {
                        // A local client took the slot meanwhile (and gave up on it): this one
                        // cannot claim what it no longer holds.
                        break;
                    }
                    match cluster.claim("v1", &pair, guard.claim()).await {
                        Claim::Elsewhere(found) => entry = found,
                        Claim::Ours | Claim::Unavailable => {
                            return Box::pin(self.park(guard, join, auth)).await;
                        }
                    }
                }
                Joined::Refused(refusal) => {
                    drop(guard);
                    self.refused(refusal, refusal.reason(), &auth).await;
                    return None;
                }
                Joined::Unreachable => break,
            }
        }
        drop(guard);
        self.refused(PairingRefusal::Stale, reasons::PARTNER_NODE_UNREACHABLE, &auth).await;
        None
    }

    /// Joined with a peer on another node: answer this client, greet it, relay to the stream.
    async fn establish_remote(
        mut self,
        peer: RemotePeer,
        stream: H2Stream,
        guard: SlotGuard,
        auth: Authenticated,
        cluster: Arc<Cluster>,
    ) -> Option<Tunnel> {
        let ids = &self.ctx.notification_ids;
        let to_self = tunnel_established(ids.fetch_add(1, Ordering::Relaxed), &peer.identity);
        let response = auth_response(auth.request_id, AuthenticationError::NoError);
        let answered = self.answered;
        let greeted = tokio::time::timeout(ESTABLISH_TIMEOUT, async {
            if !answered {
                self.conn.send(&response).await?;
            }
            self.conn.send(&to_self).await
        })
        .await;
        if !matches!(greeted, Ok(Ok(()))) {
            debug!("a tunnel client left while the tunnel was being established");
            // Dropping the stream resets it: the other node cuts its client.
            drop(stream);
            self.conn.close(CloseKind::Error, PARTNER_GONE).await;
            return None;
        }
        let shape = Carrier::of(&self.conn);
        let local = Local { conn: self.conn, identity: auth.identity };
        Some(local.into_tunnel(stream, peer, shape, guard, self.ctx, cluster, false))
    }

    /// Alone: wait for a partner's join request (or, after a Redis outage, for the other node's
    /// entry of this key: then this peer joins the partner there).
    async fn wait_alone(
        mut self,
        guard: SlotGuard,
        mut join: oneshot::Receiver<JoinRequest>,
        auth: Authenticated,
        lost: Option<oneshot::Receiver<Entry>>,
    ) -> Option<Tunnel> {
        debug!("waiting for the tunnel partner");
        let mut alone = pin!(sleep(self.ctx.timeouts.alone));
        let mut watching = lost.is_some();
        let mut lost = pin!(async move {
            match lost {
                Some(lost) => lost.await.ok(),
                None => None,
            }
        });
        let exit = loop {
            tokio::select! {
                biased;
                _ = self.ctx.stop.cancelled() => break Exit::shutdown(),
                entry = &mut lost, if watching => match (entry, self.ctx.cluster.clone()) {
                    (Some(entry), Some(cluster)) => {
                        debug!(node = %entry.owner.node, "the partner waited on another node through the outage");
                        return Box::pin(self.join_remote(cluster, auth, guard, join, entry)).await;
                    }
                    // Redis is back and the entry is this node's: wait on as before.
                    _ => watching = false,
                },
                request = &mut join => {
                    let Ok(JoinRequest { reply }) = request else {
                        // The joiner vanished between claiming the slot and asking.
                        break Exit::error(PARTNER_GONE);
                    };
                    drop(guard);
                    let identity = auth.identity;
                    if let Err(Handover::Parked(parked)) =
                        reply.send(Handover::Parked(Box::new(Parked { conn: self.conn, identity })))
                    {
                        parked.conn.close(CloseKind::Error, PARTNER_GONE).await;
                    }
                    return None;
                }
                _ = &mut alone => {
                    self.outcome = Some(SessionOutcome::Lonely);
                    break Exit::error(reasons::ALONE);
                }
                chunk = self.conn.read_chunk() => match chunk {
                    Ok(Chunk::Data) => {
                        self.outcome = Some(SessionOutcome::Impatient);
                        break Exit::error(reasons::DATA_WHILE_ALONE);
                    }
                    Ok(Chunk::Control) => {}
                    // It gave up waiting: its partner never came.
                    Ok(Chunk::Closed) | Err(_) => {
                        self.outcome = Some(SessionOutcome::Lonely);
                        break Exit::Done;
                    }
                },
            }
        };
        drop(guard);
        self.finish(exit).await;
        None
    }

    /// Joined: answer this client, notify both, and hand both connections to the tunnel.
    async fn establish(mut self, parked: Parked, guard: SlotGuard, auth: Authenticated) -> Option<Tunnel> {
        let mut partner = parked.conn;
        let ids = &self.ctx.notification_ids;
        let to_self = tunnel_established(ids.fetch_add(1, Ordering::Relaxed), &parked.identity);
        let to_partner = tunnel_established(ids.fetch_add(1, Ordering::Relaxed), &auth.identity);
        let response = auth_response(auth.request_id, AuthenticationError::NoError);
        let greeted = tokio::time::timeout(ESTABLISH_TIMEOUT, async {
            self.conn.send(&response).await?;
            self.conn.send(&to_self).await?;
            partner.send(&to_partner).await
        })
        .await;
        if !matches!(greeted, Ok(Ok(()))) {
            debug!("a tunnel client left while the tunnel was being established");
            tokio::join!(
                self.conn.close(CloseKind::Error, PARTNER_GONE),
                partner.close(CloseKind::Error, PARTNER_GONE)
            );
            return None;
        }
        let setup = self.conn.accepted_at.elapsed();
        let (a_stats, b_stats) = (partner.stats.take(), self.conn.stats.take());
        let record = match (&a_stats, &b_stats) {
            (Some(a), Some(b)) => Some(self.ctx.stats.tunnel_opened(a, b)),
            _ => None,
        };
        self.ctx.stats.tunnel_established(setup);
        info!(
            partner = partner.id,
            partner_transport = %partner.transport,
            uuid = %auth.identity.uuid,
            user = auth.identity.user_name.as_deref().unwrap_or(""),
            partner_uuid = %parked.identity.uuid,
            partner_user = parked.identity.user_name.as_deref().unwrap_or(""),
            "tunnel established"
        );
        partner.decoder.skip_separator();
        self.conn.decoder.skip_separator();
        let ids = (partner.id, self.conn.id);
        let (a_transport, b_transport) = (partner.transport, self.conn.transport);
        let (a_half_close, b_half_close) = (partner.half_close, self.conn.half_close);
        let tickets = (partner.ticket.take(), self.conn.ticket.take());
        let (a_wire, a_early) = partner.into_raw();
        let (b_wire, b_early) = self.conn.into_raw();
        Some(Tunnel {
            ctx: self.ctx,
            a: TunnelEnd { wire: a_wire, early_data: a_early, half_close: a_half_close, stats: a_stats },
            b: TunnelEnd { wire: b_wire, early_data: b_early, half_close: b_half_close, stats: b_stats },
            a_side: (parked.identity, a_transport),
            b_side: (auth.identity, b_transport),
            ids,
            started: std::time::SystemTime::now(),
            record,
            guard,
            tickets,
            remote: None,
        })
    }

    async fn send(&mut self, value: &Value) -> Result<(), Exit> {
        self.conn.send(value).await.map_err(|error| {
            debug!(%error, "write failed");
            Exit::Done
        })
    }

    /// `inactiveTimeout` or `handshakeDeadline` expired.
    fn timed_out(&mut self) -> Exit {
        self.outcome = Some(SessionOutcome::Timeout);
        Exit::error(reasons::INACTIVE)
    }

    /// Answers a refused request (when it has an answer) and gives the close reason.
    async fn refuse(&mut self, error: RpcError) -> Exit {
        self.outcome = Some(match error {
            RpcError::Timeout { .. } => SessionOutcome::Timeout,
            _ => SessionOutcome::Errory,
        });
        warn!(reason = error.close_reason(), "protocol error");
        if let Some(text) = error.response_text()
            && self.send(&message::error(error.id(), &text)).await.is_err()
        {
            return Exit::Done;
        }
        Exit::error(error.close_reason())
    }
}

/// Sends the join request and waits for the parked session's connection.
async fn ask_for_partner(partner: oneshot::Sender<JoinRequest>) -> Option<Handover> {
    let (reply, answer) = oneshot::channel();
    partner.send(JoinRequest { reply }).ok()?;
    tokio::time::timeout(HANDOVER_TIMEOUT, answer).await.ok()?.ok()
}

fn auth_response(id: i64, outcome: AuthenticationError) -> Value {
    message::success(id, json!({"authenticationError": outcome.wire_name()}))
}

pub(super) fn tunnel_established(id: u64, partner: &Identity) -> Value {
    message::notification(
        id,
        "RemoteProxy.TunnelEstablished",
        json!({"name": partner.name, "uuid": partner.uuid}),
    )
}

/// Uuids are passed on without braces; a valid uuid in any spelling becomes its canonical
/// lowercase hyphenated form, anything else is kept as given.
pub fn normalize_uuid(raw: &str) -> String {
    let trimmed = raw.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or(raw);
    match uuid::Uuid::parse_str(trimmed) {
        Ok(parsed) => parsed.hyphenated().to_string(),
        Err(_) => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_uuid;

    #[test]
    fn uuids_lose_their_braces() {
        let plain = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        assert_eq!(normalize_uuid("{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"), plain);
        assert_eq!(normalize_uuid(plain), plain);
        assert_eq!(normalize_uuid("not-a-uuid"), "not-a-uuid");
    }
}
