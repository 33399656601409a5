//! Path rendezvous, the Micronets way (`[RendezvousServer]`): two peers open
//! `wss://host:port/<pathPrefix><meeting id>` with client certificates from one root CA, and the
//! broker joins the two that share a meeting id. Everything after the prefix, slashes included, is
//! the meeting id; a path outside the prefix is answered 404 before the upgrade.
//!
//! * `meetings`: the table (at most two peers per meeting) and the race-free hand-over.
//! * `session`: one peer: its place, its HELLO within `helloTimeout`, waiting (holding what it
//!   sends) or joining, then the relay.
//! * `hello`: what a `CONN:HELLO` is.
//! * `policy`: which certificate subjects may meet where (`policyFile`).
//! * `files`: the section's certificate, CA and policy, read again on SIGHUP.
//!
//! TLS with required client certificates is set up by `transport::tls` from the section's
//! files; the accept loop, the upgrade and the keepalive pings are the other listeners'.

pub mod files;
pub mod hello;
pub mod meetings;
pub mod policy;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use files::RendezvousFiles;
pub use meetings::{MeetingView, Meetings, PeerInfo};
pub use policy::Policy;

use remoteproxy_wire::monitor::{Meeting, MeetingPeer, RendezvousStatistic};

use crate::config::RendezvousSettings;
use crate::stats::RendezvousSource;

/// The largest first message: a HELLO is a few hundred bytes.
const MAX_HELLO: usize = 64 << 10;
pub use session::Arrival;

/// What the rendezvous sessions of one listener share.
pub struct RendezvousContext {
    /// `pathPrefix`: the meeting id is what follows it.
    pub prefix: String,
    /// `helloTimeout`: a peer's first message must come within this.
    pub hello_timeout: Duration,
    /// `aloneTimeout` (`None`: off, as in Micronets).
    pub alone_timeout: Option<Duration>,
    /// The largest first message.
    pub max_hello: usize,
    /// `maxHeldMessages`, `maxHeldBytes`: what a peer may send while alone.
    pub max_held_messages: usize,
    #[allow(missing_docs)]
    pub max_held_bytes: usize,
    /// The table of this listener.
    pub meetings: Arc<Meetings<Arrival>>,
    /// Waiting peers are closed when the broker stops; joined pairs at the end of the grace
    /// period.
    pub stop: CancellationToken,
    #[allow(missing_docs)]
    pub hard_stop: CancellationToken,
    /// The certificate, CA and `policyFile` (who may join which meetings), as last read.
    pub files: Arc<RendezvousFiles>,
    /// Refusals by reason, in [`Refusal`] order.
    pub refusals: [AtomicU64; 5],
    /// Payload bytes relayed by meetings that ended.
    pub relayed: AtomicU64,
}

/// Why a peer was closed before it was joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A third peer on a full meeting.
    Full,
    /// No first message within `helloTimeout`.
    NoHello,
    /// A first message that is not a `CONN:HELLO`.
    NotHello,
    /// Too much sent while alone.
    Held,
    /// The policy file does not let its certificate into this meeting.
    Policy,
}

impl RendezvousContext {
    /// The context of the listener `settings` describe.
    pub fn new(
        settings: &RendezvousSettings,
        files: Arc<RendezvousFiles>,
        stop: CancellationToken,
        hard_stop: CancellationToken,
    ) -> Self {
        RendezvousContext {
            prefix: settings.path_prefix.clone(),
            hello_timeout: settings.hello_timeout,
            alone_timeout: settings.alone_timeout,
            max_hello: MAX_HELLO,
            max_held_messages: settings.max_held_messages,
            max_held_bytes: settings.max_held_bytes,
            meetings: Meetings::new(),
            stop,
            hard_stop,
            files,
            refusals: Default::default(),
            relayed: AtomicU64::new(0),
        }
    }

    /// Counts a refusal.
    pub fn refused(&self, refusal: Refusal) {
        self.refusals[refusal as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl Refusal {
    /// Every reason, in counter order.
    pub const ALL: [Refusal; 5] =
        [Refusal::Full, Refusal::NoHello, Refusal::NotHello, Refusal::Held, Refusal::Policy];

    /// The name in the monitor and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::NoHello => "noHello",
            Refusal::NotHello => "notHello",
            Refusal::Held => "held",
            Refusal::Policy => "policy",
        }
    }
}

impl RendezvousSource for RendezvousContext {
    fn statistic(&self) -> RendezvousStatistic {
        let (waiting, joined) = self.meetings.counts();
        let meetings = self
            .meetings
            .view()
            .into_iter()
            .map(|m| Meeting {
                id: m.id,
                joined: m.joined,
                bytes: m.bytes,
                peers: m
                    .peers
                    .into_iter()
                    .map(|p| MeetingPeer { subject: p.subject, address: p.address })
                    .collect(),
            })
            .collect();
        RendezvousStatistic {
            waiting: waiting as u64,
            joined: joined as u64,
            relayed: self.relayed.load(Ordering::Relaxed),
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), self.refusals[*r as usize].load(Ordering::Relaxed)))
                .collect(),
            meetings,
        }
    }
}

/// The client certificate's names: its O, then its CN (those it has).
pub fn subjects(chain: Option<&[Vec<u8>]>) -> Vec<String> {
    let Some(leaf) = chain.and_then(<[Vec<u8>]>::first) else { return Vec::new() };
    let Ok((_, certificate)) = X509Certificate::from_der(leaf) else { return Vec::new() };
    let subject = certificate.subject();
    let org = subject.iter_organization().next().and_then(|a| a.as_str().ok());
    let cn = subject.iter_common_name().next().and_then(|a| a.as_str().ok());
    org.into_iter().chain(cn).map(str::to_string).collect()
}
