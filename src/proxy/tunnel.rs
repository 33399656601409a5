//! The last phase of a v1 session: two joined connections, relayed until the tunnel ends, then
//! counted and logged.
//!
//! It runs in the joining session's task after every earlier phase has been freed, so an
//! established tunnel costs this struct, the relay's state and the two connections, nothing more
//! (see `session::serve`).

use std::sync::Arc;
use std::time::SystemTime;

use remoteproxy_authenticators::Transport;
use tracing::info;

use super::ProxyContext;
use super::pairing::{Identity, SlotGuard};
use crate::relay::{self, TunnelEnd};
use crate::stats::{SessionOutcome, TunnelHandle, TunnelRecord, TunnelSide};
use crate::transport::admission::Ticket;

/// An established tunnel, ready to relay.
pub struct Tunnel {
    pub ctx: Arc<ProxyContext>,
    /// The end that waited (parked) for its partner.
    pub a: TunnelEnd,
    /// The end that joined it.
    pub b: TunnelEnd,
    /// Who `a` is and how it came in.
    pub a_side: (Identity, Transport),
    /// Who `b` is and how it came in.
    pub b_side: (Identity, Transport),
    /// The connection ids of `a` and `b`: the tunnel runs outside their log spans, so its own
    /// lines carry them.
    pub ids: (u64, u64),
    /// When the tunnel was established, for the statistics log.
    pub started: SystemTime,
    /// The tunnel's entry in the live statistics, removed when dropped.
    pub record: Option<TunnelHandle>,
    /// Holds the tunnel's slot in the registry (one tunnel per token and nonce).
    pub guard: SlotGuard,
    /// What the two connections hold against `maxConnections` and `[Limits]`, given back when
    /// the tunnel ends.
    pub tickets: (Option<Ticket>, Option<Ticket>),
    /// Set when `a` is a client on another cluster node, reached through a link stream.
    pub remote: Option<Remote>,
}

/// The other node of a cross-node tunnel.
pub struct Remote {
    /// Its node id.
    pub node: String,
    /// This node held the tunnel's entry (its first peer waited here): it writes the tunnel's
    /// statistics record, so a cluster's logs count each tunnel once.
    pub owner: bool,
    /// Counts the tunnel among the relayed ones while it runs.
    pub _counted: crate::cluster::RelayedGuard,
}

impl Tunnel {
    /// Relays until either end closes, the tunnel idles out or the broker's grace period ends.
    pub async fn run(self) {
        let Tunnel { ctx, a, b, a_side, b_side, ids, started, record, guard, tickets, remote } = self;
        let report = relay::run(a, b, ctx.timeouts.tunnel_idle, ctx.hard_stop.clone()).await;
        drop(record);
        drop(guard);
        drop(tickets);
        let side = |(identity, transport): &(Identity, Transport), bytes_sent| TunnelSide {
            transport: *transport,
            user_name: identity.user_name.clone(),
            bytes_sent,
        };
        if remote.as_ref().is_none_or(|remote| remote.owner) {
            ctx.stats.tunnel_closed(&TunnelRecord {
                start: started,
                end: SystemTime::now(),
                first: side(&a_side, report.a_to_b),
                second: side(&b_side, report.b_to_a),
                reason: report.reason.as_str(),
            });
        }
        // Each node counts the sessions of its own clients.
        ctx.stats.session_ended(SessionOutcome::Happy);
        if remote.is_none() {
            ctx.stats.session_ended(SessionOutcome::Happy);
        }
        info!(
            conn = ids.1,
            partner = ids.0,
            partner_node = remote.as_ref().map_or("", |remote| remote.node.as_str()),
            bytes_to_partner = report.b_to_a,
            bytes_from_partner = report.a_to_b,
            reason = report.reason.as_str(),
            "tunnel closed"
        );
    }
}
