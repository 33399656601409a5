//! Accept loops: from a listening socket to a [`Connection`] in its JSON phase.
//!
//! Per connection: enforce `maxConnections`, then (in the connection's own task) the TLS
//! handshake bounded by `tlsHandshakeTimeout`, then the WebSocket upgrade bounded by
//! `inactiveTimeout`, then hand the connection to the API's session handler. Every task is
//! spawned on the server's tracker so shutdown can wait for them, and runs in a span carrying the
//! connection id, peer and transport.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use remoteproxy_authenticators::{PeerAddress, Transport};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use super::BoxStream;
use super::connection::{Connection, Wire};
use super::websocket;
use crate::stats::{Refusal, Stats};

/// What the accept loops of one server share.
pub struct AcceptContext {
    /// TLS for TCP and WebSocket listeners; `None` when `[SSL] enabled=false`.
    pub tls: Option<TlsAcceptor>,
    /// `tlsHandshakeTimeout`.
    pub tls_handshake_timeout: Duration,
    /// Bound for the WebSocket upgrade (`inactiveTimeout`).
    pub upgrade_timeout: Duration,
    /// `maxMessageSize`.
    pub max_message_size: usize,
    /// One permit per open connection (`maxConnections`).
    pub limiter: Arc<Semaphore>,
    /// Connection ids.
    pub ids: AtomicU64,
    /// Cancelled when the broker stops accepting.
    pub stop_accepting: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Refusals and TLS failures are counted here.
    pub stats: Arc<Stats>,
}

/// The session a connection is handed to once established (v1 proxy, later v2).
pub type Handler = Arc<dyn Fn(Connection) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How long the loop waits after a failed accept (e.g. out of file descriptors) before trying
/// again, doubling up to [`MAX_ACCEPT_BACKOFF`], so an exhausted process does not spin.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How a TCP listener's connections are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriage {
    /// A byte stream (TCP or TLS).
    Stream,
    /// WebSocket.
    WebSocket {
        /// Grant half-close to clients that ask (v1 only: the v2 API has no half-close towards
        /// its clients).
        half_close: bool,
    },
}

/// Serves a TCP listener until accepting stops.
pub async fn serve_tcp(listener: TcpListener, carriage: Carriage, ctx: Arc<AcceptContext>, handler: Handler) {
    let websocket = carriage != Carriage::Stream;
    let transport = if websocket { Transport::WebSocket } else { Transport::Tcp };
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = ctx.stop_accepting.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => {
                backoff = MIN_ACCEPT_BACKOFF;
                pair
            }
            Err(e) => {
                backoff = accept_failed(e, backoff).await;
                continue;
            }
        };
        let Some(permit) = admit(&ctx, &addr.to_string()) else { continue };
        let id = ctx.ids.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("conn", id, peer = %addr, transport = transport.as_str());
        let (ctx2, handler) = (ctx.clone(), handler.clone());
        ctx.tracker.spawn(async move {
            // Boxed so the TLS handshake's large state is freed once it is done, instead of
            // sizing this task for the connection's whole life.
            let establish = Box::pin(establish_tcp(&ctx2, stream, addr, carriage, id, permit));
            if let Some(mut conn) = establish.instrument(span.clone()).await {
                // The session runs in the span as long as it needs it.
                conn.span = span;
                handler(conn).await;
            }
        });
    }
}

/// Serves a unix listener (always a plain byte stream) until accepting stops.
pub async fn serve_unix(listener: &UnixListener, ctx: Arc<AcceptContext>, handler: Handler) {
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = ctx.stop_accepting.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = MIN_ACCEPT_BACKOFF;
                stream
            }
            Err(e) => {
                backoff = accept_failed(e, backoff).await;
                continue;
            }
        };
        let Some(permit) = admit(&ctx, "unix") else { continue };
        let id = ctx.ids.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("conn", id, peer = "unix", transport = Transport::Unix.as_str());
        let wire = Wire::Stream(Box::new(stream));
        let conn = Connection::new(
            id,
            PeerAddress::Unix,
            Transport::Unix,
            Instant::now(),
            wire,
            ctx.max_message_size,
            Some(permit),
        );
        debug!(parent: &span, "connected");
        let mut conn = conn;
        conn.span = span;
        ctx.tracker.spawn(handler(conn));
    }
}

/// Takes a `maxConnections` permit, or refuses the connection (dropping it closes it).
fn admit(ctx: &AcceptContext, peer: &str) -> Option<OwnedSemaphorePermit> {
    match ctx.limiter.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => {
            warn!(%peer, "connection refused: maxConnections reached");
            ctx.stats.connection_refused(Refusal::MaxConnections);
            None
        }
    }
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

/// TLS handshake and WebSocket upgrade, each bounded. `None` when the client failed or was too
/// slow (logged at debug: scanners and plain-text clients on TLS ports are routine).
async fn establish_tcp(
    ctx: &AcceptContext,
    stream: TcpStream,
    addr: SocketAddr,
    carriage: Carriage,
    id: u64,
    permit: OwnedSemaphorePermit,
) -> Option<Connection> {
    let accepted_at = Instant::now();
    let _ = stream.set_nodelay(true);
    let mut client_certificates = None;
    let stream: BoxStream = match &ctx.tls {
        None => Box::new(stream),
        Some(acceptor) => {
            let handshake = acceptor.accept(stream);
            let step = bounded(&ctx.stop_accepting, ctx.tls_handshake_timeout, "TLS handshake", handshake);
            let Some(tls) = step.await else {
                if !ctx.stop_accepting.is_cancelled() {
                    ctx.stats.tls_handshake_failed();
                }
                return None;
            };
            client_certificates = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect());
            Box::new(tls)
        }
    };
    let mut half_close = false;
    let wire = if let Carriage::WebSocket { half_close: offer } = carriage {
        let budget = ctx.max_message_size + 64 * 1024;
        let upgrade = websocket::accept(stream, budget, offer);
        let (ws, granted) =
            bounded(&ctx.stop_accepting, ctx.upgrade_timeout, "WebSocket upgrade", upgrade).await?;
        half_close = granted;
        Wire::WebSocket(Box::new(ws))
    } else {
        Wire::Stream(stream)
    };
    let transport = if carriage == Carriage::Stream { Transport::Tcp } else { Transport::WebSocket };
    debug!("connected");
    let mut conn = Connection::new(
        id,
        PeerAddress::Ip(addr),
        transport,
        accepted_at,
        wire,
        ctx.max_message_size,
        Some(permit),
    );
    conn.client_certificates = client_certificates;
    conn.half_close = half_close;
    Some(conn)
}
