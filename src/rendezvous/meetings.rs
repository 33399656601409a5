//! The meeting table: meeting id → at most two seats, and the hand-over that joins them.
//!
//! Every change happens under one lock, so the order in which two peers connect or say HELLO
//! never matters:
//! * [`Meetings::sit`] takes a place when a peer connects; a third is refused while two sit.
//! * [`Meetings::hello`], once a peer's HELLO came: if the partner is waiting, the caller gets
//!   the partner's mailbox and hands itself over (it becomes part of the partner's tunnel);
//!   otherwise it gets a mailbox of its own to wait on. A peer never finds itself: it looks only
//!   at the other seat (the original proxy paired a peer with itself when the second connection
//!   sent its HELLO first).
//! * [`Seat`] dropped (or [`Seat::leave`]) frees the place at once. A leaving peer closes its
//!   mailbox first: a newcomer's hand-over into it fails and the newcomer waits in turn, so a
//!   closing peer is never joined.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// The table of one rendezvous listener; `T` is what a joining peer hands over.
pub struct Meetings<T> {
    table: Mutex<HashMap<String, Meeting<T>>>,
    ids: AtomicU64,
}

struct Meeting<T> {
    /// At most two.
    seats: Vec<Place<T>>,
    /// A hand-over was given out and neither peer has left since.
    joined: bool,
    /// Payload bytes its tunnel moved so far (both ways).
    bytes: Arc<AtomicU64>,
}

struct Place<T> {
    id: u64,
    /// Set while the peer said HELLO and waits for its partner.
    mailbox: Option<oneshot::Sender<T>>,
    /// What the monitor shows of the peer.
    info: PeerInfo,
}

/// What the monitor shows of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client certificate's O (or CN).
    pub subject: String,
    /// Where it connects from.
    pub address: String,
}

/// Why a peer gets no seat.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// A place in a meeting; dropping it frees the place.
pub struct Seat<T: Send + 'static> {
    meetings: Arc<Meetings<T>>,
    meeting: String,
    id: u64,
}

/// What [`Meetings::hello`] says to do.
pub enum Hello<T> {
    /// The partner is waiting: send yourself into its mailbox (if that fails, it left: say
    /// HELLO again).
    Join(oneshot::Sender<T>),
    /// Wait for the partner in this mailbox.
    Wait(oneshot::Receiver<T>),
}

/// One meeting as the monitor shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingView {
    /// The meeting id.
    pub id: String,
    /// The two are joined.
    pub joined: bool,
    /// Payload bytes its tunnel moved so far (both ways).
    pub bytes: u64,
    /// Who sits there, in arrival order.
    pub peers: Vec<PeerInfo>,
}

impl<T: Send + 'static> Meetings<T> {
    /// An empty table.
    pub fn new() -> Arc<Meetings<T>> {
        Arc::new(Meetings { table: Mutex::default(), ids: AtomicU64::new(1) })
    }

    /// Takes a place in `meeting` for a peer that just connected.
    pub fn sit(self: &Arc<Self>, meeting: &str, info: PeerInfo) -> Result<Seat<T>, Full> {
        let mut table = self.lock();
        let entry = table.entry(meeting.to_string()).or_insert_with(|| Meeting {
            seats: Vec::with_capacity(2),
            joined: false,
            bytes: Arc::default(),
        });
        if entry.seats.len() >= 2 {
            return Err(Full);
        }
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        entry.seats.push(Place { id, mailbox: None, info });
        Ok(Seat { meetings: self.clone(), meeting: meeting.to_string(), id })
    }

    /// The peer in `seat` said HELLO: join its waiting partner, or wait for one.
    pub fn hello(&self, seat: &Seat<T>) -> Hello<T> {
        let mut table = self.lock();
        let meeting = table.get_mut(&seat.meeting).expect("a seated peer's meeting exists");
        if let Some(partner) = meeting.seats.iter_mut().find(|p| p.id != seat.id)
            && let Some(mailbox) = partner.mailbox.take()
            && !mailbox.is_closed()
        {
            meeting.joined = true;
            return Hello::Join(mailbox);
        }
        let (tx, rx) = oneshot::channel();
        let mine = meeting.seats.iter_mut().find(|p| p.id == seat.id).expect("the seat is in its meeting");
        mine.mailbox = Some(tx);
        Hello::Wait(rx)
    }

    /// The meetings now, for the monitor: id and who sits there.
    pub fn view(&self) -> Vec<MeetingView> {
        let table = self.lock();
        let mut views: Vec<MeetingView> = table
            .iter()
            .map(|(id, m)| MeetingView {
                id: id.clone(),
                joined: m.joined,
                bytes: m.bytes.load(Ordering::Relaxed),
                peers: m.seats.iter().map(|p| p.info.clone()).collect(),
            })
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    /// Meetings not joined (a peer waits, or two still owe their HELLO), and joined ones.
    pub fn counts(&self) -> (usize, usize) {
        let table = self.lock();
        let joined = table.values().filter(|m| m.joined).count();
        (table.len() - joined, joined)
    }

    fn leave(&self, meeting: &str, id: u64) {
        let mut table = self.lock();
        if let Some(entry) = table.get_mut(meeting) {
            entry.seats.retain(|p| p.id != id);
            entry.joined = false;
            if entry.seats.is_empty() {
                table.remove(meeting);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Meeting<T>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Send + 'static> Seat<T> {
    /// The meeting id.
    pub fn meeting(&self) -> &str {
        &self.meeting
    }

    /// The counter of the bytes its meeting's tunnel moves.
    pub fn bytes(&self) -> Arc<AtomicU64> {
        let table = self.meetings.lock();
        table.get(&self.meeting).map(|m| m.bytes.clone()).unwrap_or_default()
    }

    /// Frees the place now.
    pub fn leave(self) {}
}

impl<T: Send + 'static> Drop for Seat<T> {
    fn drop(&mut self) {
        self.meetings.leave(&self.meeting, self.id);
    }
}

#[cfg(test)]
#[path = "meetings_tests.rs"]
mod tests;
