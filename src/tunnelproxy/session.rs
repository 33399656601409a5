//! A v2 connection before it is registered: requests are answered until a `RegisterServer` or
//! `RegisterClient` succeeds, bounded by `inactiveTimeout` (restarted by every chunk; **fix**:
//! 1.8.4 had no timer here) and `handshakeDeadline` (never restarted).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use remoteproxy_authenticators::PeerAddress;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::api::{TunnelProxyError, V2_API, common_answer};
use super::control::{Control, ControlReceiver, ControlSender, Join, JoinRefusal, Joined, control_channel};
use super::registry::{Guard, Refusal, ServerHandle};
use super::server;
use super::{Carrier, TunnelProxyContext};
use crate::cluster::directory::Claim;
use crate::protocol::api::string_param;
use crate::protocol::{DecodeError, Request, RpcError, message, reasons};
use crate::stats::{Api, Refusal as StatsRefusal, Role};
use crate::transport::halves;
use crate::transport::{Chunk, Connection, EarlyData, Exit, ReadError};

/// A server's actor inbox: joins are rare, so a short queue suffices and bounds memory.
const CONTROL_QUEUE: usize = 64;

/// How long a joining client waits for its server's actor to answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A successful registration.
enum Registered {
    Server {
        uuid: Uuid,
        name: String,
        guard: Guard,
        control: ControlReceiver,
    },
    Client {
        guard: Guard,
        joined: Joined,
        server: ControlSender,
    },
    /// A client whose server is on another cluster node: relayed over `stream`.
    Remote {
        stream: crate::cluster::h2_stream::H2Stream,
    },
}

/// Serves one v2 connection to its end.
pub async fn serve(conn: Connection, ctx: Arc<TunnelProxyContext>) {
    // Boxed: everything before the registration (the handshake, the connection in its JSON
    // phase) is freed when it ends, so the task of a registered server, which lives for days, is
    // only as large as the server's own state. A client, which lives briefly, is boxed too.
    let Some((ctx, carrier, registered)) = Box::pin(register(conn, ctx)).await else { return };
    match registered {
        Registered::Server { uuid, name, guard, control } => {
            server::run(ctx, carrier, uuid, name, guard, control).await;
        }
        Registered::Client { guard, joined, server } => {
            Box::pin(super::client::run(ctx, carrier, joined, server, guard)).await;
        }
        Registered::Remote { .. } => unreachable!("forwarded in `register`"),
    }
}

/// Answers requests until a registration succeeds, then splits the connection for its role;
/// `None` when the connection ended first.
async fn register(
    mut conn: Connection,
    ctx: Arc<TunnelProxyContext>,
) -> Option<(Arc<TunnelProxyContext>, Carrier, Registered)> {
    conn.stats = Some(ctx.stats.open(conn.id, Api::V2, conn.peer, conn.transport));
    let mut session = Session { conn, ctx };
    let registered = match session.handshake().await {
        Ok(registered) => registered,
        Err(Exit::Close(kind, reason)) => {
            debug!(%reason, "closing");
            session.conn.close(kind, &reason).await;
            return None;
        }
        Err(Exit::Done) => {
            debug!("disconnected");
            return None;
        }
    };
    let ctx = session.ctx;
    if let Registered::Remote { stream } = registered {
        super::remote::forward(session.conn, stream, ctx).await;
        return None;
    }
    session.conn.decoder.skip_separator();
    let stats = session.conn.stats.take();
    // Registered: no longer pending (`maxPendingHandshakes`); still a connection.
    let mut ticket = session.conn.ticket.take();
    if let Some(ticket) = &mut ticket {
        ticket.authenticated();
    }
    let (wire, early) = session.conn.into_raw();
    let early = match early {
        EarlyData::Bytes(bytes) => bytes,
        EarlyData::Frames(frames) => {
            Bytes::from(frames.into_iter().flat_map(|m| m.into_data()).collect::<Vec<u8>>())
        }
    };
    let (reader, writer) = halves::split(wire);
    let stats = stats.expect("registered in the statistics at the start of `register`");
    Some((ctx, Carrier { reader, writer, early, stats, ticket }, registered))
}

struct Session {
    conn: Connection,
    ctx: Arc<TunnelProxyContext>,
}

impl Session {
    async fn handshake(&mut self) -> Result<Registered, Exit> {
        let timeouts = self.ctx.timeouts;
        let mut deadline = pin!(sleep_until(self.conn.accepted_at + timeouts.handshake_deadline));
        let mut inactive = pin!(sleep(timeouts.inactive));
        loop {
            loop {
                match self.conn.decoder.next_message() {
                    Ok(None) => break,
                    Ok(Some(message)) => {
                        if let Some(registered) = self.handle(message).await? {
                            return Ok(registered);
                        }
                    }
                    Err(DecodeError::Parse(text)) => {
                        return Err(self.refuse(RpcError::InvalidJson(text)).await);
                    }
                    Err(DecodeError::Oversized) => return Err(self.refuse(RpcError::BufferOverflow).await),
                }
            }
            tokio::select! {
                biased;
                _ = self.ctx.stop.cancelled() => return Err(Exit::shutdown()),
                _ = &mut deadline => return Err(Exit::error(reasons::INACTIVE)),
                _ = &mut inactive => return Err(Exit::error(reasons::INACTIVE)),
                chunk = self.conn.read_chunk() => match chunk {
                    Ok(Chunk::Data) => inactive.as_mut().reset(Instant::now() + timeouts.inactive),
                    Ok(Chunk::Control) => {}
                    Ok(Chunk::Closed) | Err(ReadError::Io) => return Err(Exit::Done),
                    Err(ReadError::Oversized) => return Err(self.refuse(RpcError::BufferOverflow).await),
                },
            }
        }
    }

    /// Answers one request; a successful registration ends the phase.
    async fn handle(&mut self, message: Value) -> Result<Option<Registered>, Exit> {
        let (request, method) = match V2_API.accept(message) {
            Ok(accepted) => accepted,
            Err(error) => return Err(self.refuse(error).await),
        };
        let id = request.id;
        if let Some(result) = common_answer(method, &request, &self.ctx.server_name) {
            self.reply(id, result).await?;
            return Ok(None);
        }
        match (method.namespace, method.name) {
            ("TunnelProxy", "DisconnectClient") => {
                self.reply(id, json!({"tunnelProxyError": TunnelProxyError::NotRegistered.wire_name()}))
                    .await?;
            }
            ("TunnelProxy", "RegisterServer") => return self.register_server(&request).await,
            ("TunnelProxy", "RegisterClient") => return self.register_client(&request).await,
            (namespace, name) => unreachable!("{namespace}.{name} is in V2_API but has no handler"),
        }
        Ok(None)
    }

    async fn register_server(&mut self, request: &Request) -> Result<Option<Registered>, Exit> {
        let answer = |error: TunnelProxyError| json!({"slipEnabled": error == TunnelProxyError::NoError, "tunnelProxyError": error.wire_name()});
        let Some(uuid) = parse_uuid(request.params.get("serverUuid")) else {
            self.reply(request.id, answer(TunnelProxyError::InvalidUuid)).await?;
            return Ok(None);
        };
        let name = string_param(&request.params, "serverName").unwrap_or_default();
        let (control_tx, control) = control_channel(CONTROL_QUEUE);
        match self.ctx.registry.register_server(uuid, ServerHandle { control: control_tx }) {
            Ok(guard) => {
                if let Some(cluster) = &self.ctx.cluster
                    && let Claim::Elsewhere(entry) =
                        cluster.claim("v2", &uuid.hyphenated().to_string(), guard.epoch()).await
                {
                    drop(guard);
                    let reason = Refusal::AlreadyRegistered.reason();
                    info!(server = %uuid, node = %entry.owner.node, reason, "server registration refused: registered on another node");
                    self.reply(request.id, answer(TunnelProxyError::AlreadyRegistered)).await?;
                    return Err(Exit::error(reason));
                }
                self.describe(&name, uuid, Role::Server);
                self.reply(request.id, answer(TunnelProxyError::NoError)).await?;
                Ok(Some(Registered::Server { uuid, name, guard, control }))
            }
            Err(refusal) => {
                info!(server = %uuid, reason = refusal.reason(), "server registration refused");
                self.reply(request.id, answer(TunnelProxyError::AlreadyRegistered)).await?;
                Err(Exit::error(refusal.reason()))
            }
        }
    }

    async fn register_client(&mut self, request: &Request) -> Result<Option<Registered>, Exit> {
        let answer = |error: TunnelProxyError| json!({"tunnelProxyError": error.wire_name()});
        let (Some(server_uuid), Some(client_uuid)) =
            (parse_uuid(request.params.get("serverUuid")), parse_uuid(request.params.get("clientUuid")))
        else {
            self.reply(request.id, answer(TunnelProxyError::InvalidUuid)).await?;
            return Ok(None);
        };
        let name = string_param(&request.params, "clientName").unwrap_or_default();
        let peer = match self.conn.peer {
            PeerAddress::Ip(addr) => addr.ip().to_string(),
            PeerAddress::Unix => String::new(),
        };
        let refusal = match join_server(&self.ctx, client_uuid, server_uuid, &name, &peer).await {
            Ok((guard, joined, server)) => {
                info!(client = %client_uuid, server = %server_uuid, address = joined.address, "client registered");
                self.describe(&name, client_uuid, Role::Client { server: joined.server_stats.id });
                self.reply(request.id, answer(TunnelProxyError::NoError)).await?;
                return Ok(Some(Registered::Client { guard, joined, server }));
            }
            Err(refusal) => refusal,
        };
        // Not registered here: in a cluster, perhaps on another node.
        let refusal = match (&self.ctx.cluster, refusal) {
            (Some(cluster), ClientRefusal::Registry(Refusal::ServerNotFound)) => {
                let cluster = cluster.clone();
                let asked = super::remote::Request {
                    client: client_uuid,
                    server: server_uuid,
                    name: name.clone(),
                    peer: self.conn.peer,
                    transport: self.conn.transport,
                    websocket: self.conn.is_websocket(),
                };
                match super::remote::connect(&cluster, &asked).await {
                    super::remote::Reached::Joined(stream, node) => {
                        info!(client = %client_uuid, server = %server_uuid, %node, "client registered for a server on another node");
                        self.describe(&name, client_uuid, Role::Client { server: 0 });
                        self.reply(request.id, answer(TunnelProxyError::NoError)).await?;
                        return Ok(Some(Registered::Remote { stream }));
                    }
                    super::remote::Reached::Refused(refusal) => refusal,
                }
            }
            (_, refusal) => refusal,
        };
        let (error, reason) = refusal.answer();
        if refusal == ClientRefusal::Full {
            warn!(server = %server_uuid, "server has maxClientsPerServer clients; refusing another");
            self.ctx.stats.connection_refused(StatsRefusal::MaxClientsPerServer);
        } else {
            info!(client = %client_uuid, server = %server_uuid, reason, "client registration refused");
        }
        self.reply(request.id, answer(error)).await?;
        Err(Exit::error(reason))
    }

    fn describe(&self, name: &str, uuid: Uuid, role: Role) {
        if let Some(stats) = &self.conn.stats {
            describe(stats, name, uuid, role);
        }
    }

    async fn reply(&mut self, id: i64, params: Value) -> Result<(), Exit> {
        self.conn.send(&message::success(id, params)).await.map_err(|_| Exit::Done)
    }

    async fn refuse(&mut self, error: RpcError) -> Exit {
        warn!(reason = error.close_reason(), "protocol error");
        if let Some(text) = error.response_text()
            && self.conn.send(&message::error(error.id(), &text)).await.is_err()
        {
            return Exit::Done;
        }
        Exit::error(error.close_reason())
    }
}

/// A uuid param: braced or not; the null uuid and unparsable text are invalid. (A non-string
/// value never gets here: params validation refuses it.)
/// Why a client could not join its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRefusal {
    /// The registration rules (the uuid taken, no such server).
    Registry(Refusal),
    /// The server has `maxClientsPerServer` clients.
    Full,
    /// The server went away while the client joined.
    Gone,
}

impl ClientRefusal {
    /// The error the client gets and the close reason.
    pub fn answer(self) -> (TunnelProxyError, &'static str) {
        match self {
            ClientRefusal::Registry(Refusal::ServerNotFound) | ClientRefusal::Gone => {
                (TunnelProxyError::ServerNotFound, Refusal::ServerNotFound.reason())
            }
            ClientRefusal::Registry(refusal) => (TunnelProxyError::AlreadyRegistered, refusal.reason()),
            ClientRefusal::Full => (TunnelProxyError::InternalServerError, reasons::SERVER_FULL),
        }
    }

    /// The name on an inter-node link.
    pub fn name(self) -> &'static str {
        match self {
            ClientRefusal::Registry(Refusal::AlreadyRegistered) => "alreadyRegistered",
            ClientRefusal::Registry(Refusal::CrossRegistration) => "crossRegistration",
            ClientRefusal::Registry(Refusal::ServerNotFound) => "serverNotFound",
            ClientRefusal::Full => "full",
            ClientRefusal::Gone => "gone",
        }
    }

    /// The refusal an inter-node link names (an unknown name: the server is not found).
    pub fn from_name(name: &str) -> ClientRefusal {
        [
            ClientRefusal::Registry(Refusal::AlreadyRegistered),
            ClientRefusal::Registry(Refusal::CrossRegistration),
            ClientRefusal::Full,
            ClientRefusal::Gone,
        ]
        .into_iter()
        .find(|refusal| refusal.name() == name)
        .unwrap_or(ClientRefusal::Registry(Refusal::ServerNotFound))
    }
}

/// Registers client `client` for server `server` (on this node) and joins it to the server's
/// actor: what a local client's `RegisterClient` does, and a node does for a client on another.
pub async fn join_server(
    ctx: &TunnelProxyContext,
    client: Uuid,
    server: Uuid,
    name: &str,
    peer: &str,
) -> Result<(Guard, Joined, ControlSender), ClientRefusal> {
    let (guard, mut handle) =
        ctx.registry.register_client(client, server).map_err(ClientRefusal::Registry)?;
    let (reply, answered) = oneshot::channel();
    let join =
        Control::Join(Box::new(Join { uuid: client, name: name.to_string(), peer: peer.to_string(), reply }));
    let joined = async {
        handle.control.send(join).await.ok()?;
        answered.await.ok()
    };
    match tokio::time::timeout(JOIN_TIMEOUT, joined).await {
        Ok(Some(Ok(joined))) => Ok((guard, joined, handle.control)),
        Ok(Some(Err(JoinRefusal::Full))) => Err(ClientRefusal::Full),
        Ok(None) | Err(_) => Err(ClientRefusal::Gone),
    }
}

/// Fills a registered connection's statistics entry.
pub fn describe(stats: &crate::stats::ConnHandle, name: &str, uuid: Uuid, role: Role) {
    stats.entry().update(|info| {
        info.name = name.to_string();
        info.uuid = format!("{{{}}}", uuid.hyphenated());
        info.role = role;
        info.authenticated = true;
        info.tunnel_connected = matches!(role, Role::Client { .. });
    });
}

fn parse_uuid(value: Option<&Value>) -> Option<Uuid> {
    Uuid::parse_str(value?.as_str()?.trim()).ok().filter(|uuid| !uuid.is_nil())
}

#[cfg(test)]
mod tests {
    use super::parse_uuid;
    use serde_json::json;

    #[test]
    fn uuids_with_or_without_braces_compare_equal() {
        let plain = parse_uuid(Some(&json!("3f2504e0-4f89-11d3-9a0c-0305e82c3301")));
        assert!(plain.is_some());
        assert_eq!(parse_uuid(Some(&json!("{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"))), plain);
        assert_eq!(parse_uuid(Some(&json!("00000000-0000-0000-0000-000000000000"))), None);
        assert_eq!(parse_uuid(Some(&json!("{00000000-0000-0000-0000-000000000000}"))), None);
        assert_eq!(parse_uuid(Some(&json!("not a uuid"))), None);
    }
}
