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
    Server { uuid: Uuid, name: String, guard: Guard, control: ControlReceiver },
    Client { guard: Guard, joined: Joined, server: ControlSender },
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
        let (guard, mut server) = match self.ctx.registry.register_client(client_uuid, server_uuid) {
            Ok(pair) => pair,
            Err(refusal) => {
                let error = match refusal {
                    Refusal::ServerNotFound => TunnelProxyError::ServerNotFound,
                    _ => TunnelProxyError::AlreadyRegistered,
                };
                info!(client = %client_uuid, server = %server_uuid, reason = refusal.reason(), "client registration refused");
                self.reply(request.id, answer(error)).await?;
                return Err(Exit::error(refusal.reason()));
            }
        };
        let name = string_param(&request.params, "clientName").unwrap_or_default();
        let peer = match self.conn.peer {
            PeerAddress::Ip(addr) => addr.ip().to_string(),
            PeerAddress::Unix => String::new(),
        };
        let (reply, answered) = oneshot::channel();
        let join = Control::Join(Box::new(Join { uuid: client_uuid, name, peer, reply }));
        let joined = async {
            server.control.send(join).await.ok()?;
            answered.await.ok()
        };
        match tokio::time::timeout(JOIN_TIMEOUT, joined).await {
            Ok(Some(Ok(joined))) => {
                info!(client = %client_uuid, server = %server_uuid, address = joined.address, "client registered");
                let client_name = string_param(&request.params, "clientName").unwrap_or_default();
                self.describe(&client_name, client_uuid, Role::Client { server: joined.server_stats.id });
                self.reply(request.id, answer(TunnelProxyError::NoError)).await?;
                Ok(Some(Registered::Client { guard, joined, server: server.control }))
            }
            Ok(Some(Err(JoinRefusal::Full))) => {
                warn!(server = %server_uuid, "server has maxClientsPerServer clients; refusing another");
                self.ctx.stats.connection_refused(StatsRefusal::MaxClientsPerServer);
                self.reply(request.id, answer(TunnelProxyError::InternalServerError)).await?;
                Err(Exit::error(reasons::SERVER_FULL))
            }
            // The server went away between the registry lookup and the join.
            Ok(None) | Err(_) => {
                self.reply(request.id, answer(TunnelProxyError::ServerNotFound)).await?;
                Err(Exit::error(Refusal::ServerNotFound.reason()))
            }
        }
    }

    /// Fills in the monitor's view of a registered connection.
    fn describe(&self, name: &str, uuid: Uuid, role: Role) {
        if let Some(stats) = &self.conn.stats {
            stats.entry().update(|info| {
                info.name = name.to_string();
                info.uuid = format!("{{{}}}", uuid.hyphenated());
                info.role = role;
                info.authenticated = true;
                info.tunnel_connected = matches!(role, Role::Client { .. });
            });
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
