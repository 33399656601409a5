//! One rendezvous peer, from its upgraded WebSocket to the end of its tunnel.
//!
//! It takes a place in its meeting at once, must send a `CONN:HELLO` within `helloTimeout`, then
//! either hands itself over to its waiting partner (whose task runs the tunnel) or waits for one,
//! holding what it sends meanwhile (bounded). The joined pair runs on the v1 relay, which keeps
//! text as text and binary as binary with its flow control; a peer's HELLO reaches its partner
//! first, byte for byte, then what it sent while alone.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::hello::is_hello;
use super::meetings::{Hello, PeerInfo, Seat};
use super::{RendezvousContext, subjects};
use crate::protocol::reasons::rendezvous as reasons;
use crate::relay::{self, Farewell, TunnelEnd};
use crate::transport::Connection;
use crate::transport::admission::Ticket;
use crate::transport::connection::{EarlyData, Wire};
use crate::transport::websocket::{self, CloseKind, MAX_TUNNEL_MESSAGE, WsStream};

/// What a peer joining its waiting partner hands over.
pub struct Arrival {
    ws: Box<WsStream>,
    hello: Message,
    seat: Seat<Arrival>,
    ticket: Option<Ticket>,
}

/// Serves one peer.
pub async fn serve(mut conn: Connection, ctx: Arc<RendezvousContext>) {
    let meeting = conn.path.as_deref().and_then(|p| p.strip_prefix(ctx.prefix.as_str())).map(str::to_string);
    let names = subjects(conn.client_certificates.as_deref());
    let subject = names.first().cloned().unwrap_or_else(|| "-".to_string());
    let info = PeerInfo { subject, address: conn.peer.to_string() };
    let ticket = conn.ticket.take();
    let (wire, _) = conn.into_raw();
    let Wire::WebSocket(mut ws) = wire else { return };
    let Some(meeting) = meeting.filter(|m| !m.is_empty()) else {
        return websocket::close(&mut ws, CloseKind::Policy, reasons::NO_MEETING).await;
    };
    if let Some(policy) = ctx.files.policy()
        && !policy.allows(&names, &meeting)
    {
        debug!(meeting, subject = info.subject, "the policy refuses this certificate here");
        ctx.refused(super::Refusal::Policy);
        return websocket::close(&mut ws, CloseKind::Policy, reasons::NOT_ALLOWED).await;
    }
    let seat = match ctx.meetings.sit(&meeting, info) {
        Ok(seat) => seat,
        Err(_) => {
            debug!(meeting, "meeting full");
            ctx.refused(super::Refusal::Full);
            return websocket::close(&mut ws, CloseKind::Policy, reasons::FULL).await;
        }
    };
    let Some(hello) = first_message(&mut ws, &ctx).await else {
        drop(seat);
        ctx.refused(super::Refusal::NoHello);
        return websocket::close(&mut ws, CloseKind::Policy, reasons::NO_HELLO).await;
    };
    if !is_hello(&hello) {
        drop(seat);
        ctx.refused(super::Refusal::NotHello);
        return websocket::close(&mut ws, CloseKind::Policy, reasons::NOT_HELLO).await;
    }
    ws.set_max_message(MAX_TUNNEL_MESSAGE);
    // Proven by its certificate and its HELLO: no longer a pending handshake (maxPendingHandshakes
    // must not fill up with peers that wait for their partners).
    let mut ticket = ticket;
    if let Some(ticket) = &mut ticket {
        ticket.authenticated();
    }
    let mut arrival = Arrival { ws, hello, seat, ticket };
    loop {
        match ctx.meetings.hello(&arrival.seat) {
            Hello::Join(mailbox) => match mailbox.send(arrival) {
                // The partner's task runs the tunnel now.
                Ok(()) => return,
                // It left just now: wait in turn.
                Err(back) => arrival = back,
            },
            Hello::Wait(mailbox) => return wait(arrival, mailbox, &ctx).await,
        }
    }
}

/// The first message, within `helloTimeout` (pings and pongs do not count); `None` when none
/// came, or the peer left or the broker stops first.
async fn first_message(ws: &mut WsStream, ctx: &RendezvousContext) -> Option<Message> {
    ws.set_max_message(ctx.max_hello);
    let read = async {
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Text(_) | Message::Binary(_) => return Some(message),
                Message::Close(_) => return None,
                _ => {}
            }
        }
        None
    };
    tokio::select! {
        _ = ctx.stop.cancelled() => None,
        result = tokio::time::timeout(ctx.hello_timeout, read) => result.ok().flatten(),
    }
}

/// Waits alone for the partner, holding what the peer sends meanwhile.
async fn wait(
    mut me: Arrival,
    mut mailbox: tokio::sync::oneshot::Receiver<Arrival>,
    ctx: &RendezvousContext,
) {
    let mut held = Vec::new();
    let mut held_bytes = 0;
    let alone = tokio::time::sleep(ctx.alone_timeout.unwrap_or(Duration::from_secs(u32::MAX.into())));
    tokio::pin!(alone);
    let (kind, reason) = loop {
        tokio::select! {
            partner = &mut mailbox => match partner {
                Ok(partner) => return join(me, held, partner, ctx).await,
                Err(_) => break (CloseKind::Error, reasons::PARTNER_GONE),
            },
            message = me.ws.next() => match message {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    held_bytes += message.len();
                    held.push(message);
                    if held.len() > ctx.max_held_messages || held_bytes > ctx.max_held_bytes {
                        ctx.refused(super::Refusal::Held);
                        break (CloseKind::Policy, reasons::TOO_MUCH_HELD);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break (CloseKind::GoingAway, reasons::LEFT),
                Some(Ok(_)) => {}
            },
            _ = &mut alone => break (CloseKind::GoingAway, reasons::ALONE),
            _ = ctx.stop.cancelled() => break (CloseKind::Shutdown, crate::protocol::reasons::STOP_SERVER),
        }
    };
    // Close the mailbox before freeing the place: a partner that arrives now is not joined to
    // a peer on its way out; one that arrived a moment ago is told its partner left.
    mailbox.close();
    if let Ok(late) = mailbox.try_recv() {
        let Arrival { mut ws, seat, .. } = late;
        drop(seat);
        websocket::close(&mut ws, CloseKind::GoingAway, reasons::PARTNER_LEFT).await;
    }
    drop(me.seat);
    websocket::close(&mut me.ws, kind, reason).await;
}

/// The pair is complete: each gets the other's HELLO first, the waiter's held messages follow
/// its HELLO, then the relay moves everything until one leaves.
async fn join(me: Arrival, held: Vec<Message>, partner: Arrival, ctx: &RendezvousContext) {
    let Arrival { ws: my_ws, hello: my_hello, seat: my_seat, ticket: my_ticket } = me;
    let Arrival { ws: their_ws, hello: their_hello, seat: their_seat, ticket: their_ticket } = partner;
    debug!(meeting = my_seat.meeting(), "joined");
    let mut mine = Vec::with_capacity(held.len() + 1);
    mine.push(my_hello);
    mine.extend(held);
    let a = TunnelEnd {
        wire: Wire::WebSocket(my_ws),
        early_data: EarlyData::Frames(mine),
        half_close: false,
        stats: None,
    };
    let b = TunnelEnd {
        wire: Wire::WebSocket(their_ws),
        early_data: EarlyData::Frames(vec![their_hello]),
        half_close: false,
        stats: None,
    };
    let farewell = Farewell {
        closed: (CloseKind::GoingAway, reasons::PARTNER_LEFT),
        failed: (CloseKind::Error, reasons::PARTNER_FAILED),
        live_bytes: Some(my_seat.bytes()),
        on_end: Some(Box::new(move || drop((my_seat, their_seat)))),
    };
    let report = relay::run_with(a, b, None, ctx.hard_stop.clone(), farewell).await;
    ctx.relayed.fetch_add(report.a_to_b + report.b_to_a, std::sync::atomic::Ordering::Relaxed);
    debug!(a_to_b = report.a_to_b, b_to_a = report.b_to_a, reason = report.reason.as_str(), "meeting ended");
    drop((my_ticket, their_ticket));
}
