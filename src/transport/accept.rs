//! The accept loop: from a listening socket to a [`Connection`] in its JSON phase. One loop,
//! [`serve`], for every kind of socket (a [`Listener`]); TLS and the WebSocket upgrade are
//! layered on by the same code whatever the kind.
//!
//! Per connection: admit it (`maxConnections` and `[Limits]`, see `admission`), then, in the
//! connection's own task, the TLS handshake bounded by `tlsHandshakeTimeout` (on the
//! lower-priority handshake threads, see `handshakes`), then the WebSocket upgrade bounded by
//! `inactiveTimeout`, then hand the connection to the API's session handler. Every task is
//! spawned on the server's tracker so shutdown can wait for them, and runs in a span carrying the
//! connection id, peer and transport.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use remoteproxy_authenticators::{PeerAddress, Transport};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use super::BoxStream;
use super::admission::{Admission, Ticket};
use super::connection::{Connection, Wire};
use super::handshakes::{Handshakes, Rehome};
use super::proxy_protocol::{self, Trusted};
use super::websocket::{self, KeepAlive};
use crate::stats::{Refusal, Stats};

/// What the accept loops of one server share.
pub struct AcceptContext {
    /// TLS for TCP and WebSocket listeners; `None` when `[SSL] enabled=false`.
    pub tls: Option<TlsAccept>,
    pub tls_handshake_timeout: Duration,
    /// Bound for the WebSocket upgrade (`inactiveTimeout`).
    pub upgrade_timeout: Duration,
    pub max_message_size: usize,
    /// `maxConnections` and `[Limits]`: what a connection holds against them.
    pub admission: Arc<Admission>,
    pub ids: AtomicU64,
    /// Cancelled when the broker stops accepting.
    pub stop_accepting: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Refusals and TLS failures are counted here.
    pub stats: Arc<Stats>,
    /// `keepAliveInterval` and `keepAliveTimeout`: WebSocket pings, and TCP keepalive on
    /// accepted TCP sockets; `None` when the interval is 0.
    pub keepalive: Option<Arc<KeepAlive>>,
    /// `healthCheckPath`: a plain GET of it on a WebSocket listener is answered 200.
    pub health_path: Option<String>,
    /// `[ProxyProtocol] trusted` when the PROXY protocol is on.
    pub proxy_protocol: Option<Trusted>,
    /// The rendezvous listener's `pathPrefix`: WebSocket paths outside it get 404.
    pub path_prefix: Option<String>,
}

impl AcceptContext {
    /// The context of another kind of listener (the rendezvous one): its own TLS and path
    /// prefix, the same limits, timeouts, keepalive, stop signal and books; ids from its own
    /// range, so logs never show one id twice.
    pub fn sibling(&self, tls: TlsAccept, path_prefix: String) -> AcceptContext {
        AcceptContext {
            tls: Some(tls),
            tls_handshake_timeout: self.tls_handshake_timeout,
            upgrade_timeout: self.upgrade_timeout,
            max_message_size: self.max_message_size,
            admission: self.admission.clone(),
            ids: AtomicU64::new(1 << 48),
            stop_accepting: self.stop_accepting.clone(),
            tracker: self.tracker.clone(),
            stats: self.stats.clone(),
            keepalive: self.keepalive.clone(),
            health_path: None,
            proxy_protocol: self.proxy_protocol.clone(),
            path_prefix: Some(path_prefix),
        }
    }
}

/// The TLS side of accepting: the configuration, and the threads the handshakes run on.
pub struct TlsAccept {
    pub config: ServerTls,
    pub handshakes: Handshakes,
}

/// The rustls configuration a listener accepts with, replaceable while it runs: the rendezvous
/// listener's client CA is part of it, so a reload swaps the whole configuration (the main
/// listeners' certificate is swapped inside theirs, see `transport::certificate`). Each
/// handshake takes the one current when it starts.
#[derive(Clone)]
pub struct ServerTls(Arc<RwLock<Arc<rustls::ServerConfig>>>);

impl ServerTls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        ServerTls(Arc::new(RwLock::new(config)))
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// New handshakes use `config`; those under way finish with the one they started with.
    pub fn replace(&self, config: Arc<rustls::ServerConfig>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = config;
    }
}

/// The session a connection is handed to once established (v1 proxy, later v2).
pub type Handler = Arc<dyn Fn(Connection) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How long the loop waits after a failed accept (e.g. out of file descriptors) before trying
/// again, doubling up to [`MAX_ACCEPT_BACKOFF`], so an exhausted process does not spin.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How a listener's connections are carried once accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriage {
    /// A byte stream (TCP, TLS or unix).
    Stream,
    WebSocket {
        /// Grant half-close to clients that ask (v1 only: the v2 API has no half-close towards
        /// its clients).
        half_close: bool,
    },
}

/// A kind of listening socket: all the one accept loop needs from it. A new kind (a PROXY
/// protocol front, a rendezvous port) is an implementation of this and a line in the wiring.
pub trait Listener: Send + Sync {
    /// The accepted stream.
    type Stream: AsyncRead + AsyncWrite + Rehome + Unpin + Send + 'static;
    /// What the connections of this kind are called in logs, statistics and authenticators.
    const TRANSPORT: Transport;
    /// Whether TLS (when configured) terminates on this kind.
    const TLS: bool;
    /// The next connection and who it is from.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, PeerAddress)>> + Send;
    /// Sets up the kind's own keepalive on an accepted stream, where it has one.
    fn keep_alive(_stream: &Self::Stream, _settings: &KeepAlive) {}
    /// With the PROXY protocol on: who the client really is (see `proxy_protocol`), or why the
    /// connection is refused (`None`: it went away first). Kinds without it keep `peer`.
    fn proxied(
        _stream: &mut Self::Stream,
        peer: PeerAddress,
        _trusted: &Trusted,
    ) -> impl Future<Output = Result<PeerAddress, Option<Refusal>>> + Send {
        std::future::ready(Ok(peer))
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    const TRANSPORT: Transport = Transport::Tcp;
    const TLS: bool = true;

    async fn accept(&self) -> io::Result<(TcpStream, PeerAddress)> {
        let (stream, addr) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, PeerAddress::Ip(addr)))
    }

    /// TCP keepalive from the same settings as the WebSocket pings: the first probe after the
    /// interval of silence, then three probes spread over the timeout, so a peer that vanished
    /// (power lost, a NAT that forgot the flow) is found even on a raw TCP tunnel.
    fn keep_alive(stream: &TcpStream, settings: &KeepAlive) {
        let probe = (settings.timeout / 3).max(std::time::Duration::from_secs(1));
        let params = socket2::TcpKeepalive::new()
            .with_time(settings.interval.max(std::time::Duration::from_secs(1)))
            .with_interval(probe)
            .with_retries(3);
        if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&params) {
            debug!(%error, "cannot set TCP keepalive");
        }
    }

    async fn proxied(
        stream: &mut TcpStream,
        peer: PeerAddress,
        trusted: &Trusted,
    ) -> Result<PeerAddress, Option<Refusal>> {
        let PeerAddress::Ip(sender) = peer else { return Ok(peer) };
        if !trusted.contains(sender.ip()) {
            return match proxy_protocol::starts_like_header(stream).await {
                Ok(false) => Ok(peer),
                Ok(true) => Err(Some(Refusal::ProxyProtocolTrusted)),
                Err(_) => Err(None),
            };
        }
        match proxy_protocol::read_header(stream).await {
            Ok(Some(client)) => Ok(PeerAddress::Ip(client)),
            Ok(None) => Ok(peer),
            Err(error) => {
                debug!(%error, %peer, "PROXY protocol header refused");
                Err(Some(Refusal::ProxyProtocolHeader))
            }
        }
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    const TRANSPORT: Transport = Transport::Unix;
    const TLS: bool = false;

    async fn accept(&self) -> io::Result<(UnixStream, PeerAddress)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, PeerAddress::Unix))
    }
}

/// Serves `listener` until accepting stops: per connection the `maxConnections` permit, then in
/// the connection's own task TLS (where the kind has it and it is configured), the WebSocket
/// upgrade (with `carriage`), and the API's session.
pub async fn serve<L: Listener>(listener: &L, carriage: Carriage, ctx: Arc<AcceptContext>, handler: Handler) {
    let transport = if carriage == Carriage::Stream { L::TRANSPORT } else { Transport::WebSocket };
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = ctx.stop_accepting.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = MIN_ACCEPT_BACKOFF;
                pair
            }
            Err(e) => {
                backoff = accept_failed(e, backoff).await;
                continue;
            }
        };
        // Behind a PROXY protocol sender the client is known only after its header: the
        // per-source limits wait for it.
        let admitted = match ctx.proxy_protocol {
            None => ctx.admission.admit(&peer),
            Some(_) => ctx.admission.admit_globally(&peer),
        };
        let Some(ticket) = admitted else { continue };
        if let Some(settings) = &ctx.keepalive {
            L::keep_alive(&stream, settings);
        }
        let id = ctx.ids.fetch_add(1, Ordering::Relaxed);
        let (ctx2, handler) = (ctx.clone(), handler.clone());
        // `handshakeDeadline` and the TLS handshake's bound count from here, the PROXY protocol
        // header included: waiting for it must not add a second `tlsHandshakeTimeout`.
        let at = tokio::time::Instant::now();
        ctx.tracker.spawn(async move {
            let Some((stream, peer, ticket)) = proxied::<L>(&ctx2, stream, peer, ticket).await else {
                return;
            };
            let span = info_span!("conn", id, peer = %peer, transport = transport.as_str());
            let accepted = Accepted { stream, peer, transport, id, ticket, at };
            // Boxed so the TLS handshake's large state is freed once it is done, instead of
            // sizing this task for the connection's whole life.
            let establish = Box::pin(establish(&ctx2, accepted, L::TLS, carriage));
            if let Some(mut conn) = establish.instrument(span.clone()).await {
                // The session runs in the span as long as it needs it.
                conn.span = span;
                handler(conn).await;
            }
        });
    }
}

/// A connection just accepted, before TLS and the upgrade. The stream keeps its own type until
/// then, so TLS wraps it directly and the connection is boxed once.
struct Accepted<S> {
    stream: S,
    peer: PeerAddress,
    transport: Transport,
    id: u64,
    ticket: Ticket,
    /// When it was accepted.
    at: tokio::time::Instant,
}

/// The PROXY protocol step (when it is on), bounded by `tlsHandshakeTimeout`: the client's
/// address, admitted against the per-source limits; `None` when the connection is refused.
async fn proxied<L: Listener>(
    ctx: &AcceptContext,
    mut stream: L::Stream,
    peer: PeerAddress,
    mut ticket: Ticket,
) -> Option<(L::Stream, PeerAddress, Ticket)> {
    let Some(trusted) = &ctx.proxy_protocol else { return Some((stream, peer, ticket)) };
    let step = tokio::time::timeout(ctx.tls_handshake_timeout, L::proxied(&mut stream, peer, trusted));
    let client = tokio::select! {
        _ = ctx.stop_accepting.cancelled() => return None,
        result = step => match result {
            Ok(Ok(client)) => client,
            Ok(Err(refusal)) => {
                if let Some(refusal) = refusal {
                    ctx.admission.refused(refusal, &peer);
                }
                return None;
            }
            Err(_) => {
                // Silence from a balancer is a missing header; from anyone else, a silent client.
                let from_sender = matches!(&peer, PeerAddress::Ip(a) if trusted.contains(a.ip()));
                if from_sender {
                    ctx.admission.refused(Refusal::ProxyProtocolHeader, &peer);
                }
                debug!(%peer, "no PROXY protocol header or first bytes in time");
                return None;
            }
        },
    };
    ctx.admission.admit_source(&mut ticket, &client).then_some((stream, client, ticket))
}

async fn accept_failed(error: io::Error, backoff: Duration) -> Duration {
    warn!(%error, "accept failed; retrying in {backoff:?}");
    tokio::time::sleep(backoff).await;
    (backoff * 2).min(MAX_ACCEPT_BACKOFF)
}

/// Runs one set-up step within `limit`, giving up when the broker stops. Failures are logged at
/// debug level: scanners and plain-text clients on TLS ports are routine, not news.
async fn bounded<T, E: std::fmt::Display>(
    stop: &CancellationToken,
    limit: Duration,
    step: &str,
    future: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    tokio::select! {
        _ = stop.cancelled() => None,
        result = tokio::time::timeout(limit, future) => match result {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                debug!(%error, "{step} failed");
                None
            }
            Err(_) => {
                debug!("{step} timed out");
                None
            }
        },
    }
}

/// TLS handshake (when `tls` and configured) and WebSocket upgrade, each bounded. `None` when
/// the client failed or was too slow (logged at debug: scanners and plain-text clients on TLS
/// ports are routine).
async fn establish<S: AsyncRead + AsyncWrite + Rehome + Unpin + Send + 'static>(
    ctx: &AcceptContext,
    accepted: Accepted<S>,
    tls: bool,
    carriage: Carriage,
) -> Option<Connection> {
    let Accepted { stream, peer, transport, id, ticket, at: accepted_at } = accepted;
    let mut client_certificates = None;
    let stream: BoxStream = match ctx.tls.as_ref().filter(|_| tls) {
        None => Box::new(stream),
        Some(tls) => {
            // On the handshake threads, so a storm of them waits behind established tunnels.
            let handshake = tls.handshakes.accept(stream, tls.config.current());
            let limit = ctx.tls_handshake_timeout.saturating_sub(accepted_at.elapsed());
            let step = bounded(&ctx.stop_accepting, limit, "TLS handshake", handshake);
            let Some(tls) = step.await else {
                if !ctx.stop_accepting.is_cancelled() {
                    ctx.stats.tls_handshake_failed();
                }
                return None;
            };
            let resumed = tls.connection().handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            ctx.stats.tls_handshake_done(resumed);
            client_certificates = tls
                .connection()
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect());
            Box::new(tls)
        }
    };
    let mut half_close = false;
    let mut path = None;
    let wire = if let Carriage::WebSocket { half_close: offer } = carriage {
        // A message before the tunnel is a JSON request, perhaps with the first tunnel bytes.
        let limit = ctx.max_message_size + 64 * 1024;
        let (health, prefix) = (ctx.health_path.as_deref(), ctx.path_prefix.as_deref());
        let upgrade = websocket::accept(stream, limit, offer, ctx.keepalive.clone(), health, prefix);
        let (ws, granted, requested) =
            bounded(&ctx.stop_accepting, ctx.upgrade_timeout, "WebSocket upgrade", upgrade).await?;
        half_close = granted;
        // Only the rendezvous listener reads it; other connections need not carry it.
        path = prefix.is_some().then_some(requested);
        Wire::WebSocket(Box::new(ws))
    } else {
        Wire::Stream(stream)
    };
    debug!("connected");
    let mut conn =
        Connection::new(id, peer, transport, accepted_at, wire, ctx.max_message_size, Some(ticket));
    conn.client_certificates = client_certificates;
    conn.half_close = half_close;
    conn.path = path;
    Some(conn)
}
