//! The Prometheus endpoint (`[Metrics]`): `/metrics` in the OpenMetrics text format and a
//! `/healthz` for load balancers and orchestrators.
//!
//! [`Metrics`] is a [`StatsSink`]: the broker's events bump counters that are created up front
//! for every label value from a fixed set, so a scrape shows zeros for what has not happened yet
//! and the hot path (every relayed chunk) is one atomic add. Labels never carry a token, a uuid
//! or an address: only the API, the transport, the authenticator kind and outcome, the session
//! outcome and the refusal reason. The README lists every metric.
//!
//! The HTTP server is deliberately small: HTTP/1.1 only, one request per connection, at most
//! [`MAX_CONNECTIONS`] at once, the request head within [`HEADER_TIMEOUT`] and the whole
//! exchange within [`CONNECTION_LIFETIME`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use remoteproxy_authenticators::{AuthenticationError, Transport};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::rendezvous::Refusal as RendezvousRefusal;
use crate::stats::{Api, Refusal, SessionOutcome, Stats, StatsSink};

/// Connections the endpoint serves at once; more are closed right after accept.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection (one request and its response) may take in all.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Upper bounds of the tunnel setup latency buckets, in seconds (+Inf is implicit).
pub const SETUP_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

const APIS: [Api; 2] = [Api::V1, Api::V2];
const TRANSPORTS: [Transport; 3] = [Transport::Tcp, Transport::WebSocket, Transport::Unix];
const REFUSALS: [Refusal; Refusal::ALL.len()] = Refusal::ALL;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// The `result` label of an authentication: the wire name without its `AuthenticationError`
/// prefix (`NoError`, `AuthenticationFailed`, ...).
pub fn authentication_result(outcome: AuthenticationError) -> &'static str {
    let wire = outcome.wire_name();
    wire.strip_prefix("AuthenticationError").unwrap_or(wire)
}

fn api_index(api: Api) -> usize {
    match api {
        Api::V1 => 0,
        Api::V2 => 1,
    }
}

fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Tcp => 0,
        Transport::WebSocket => 1,
        Transport::Unix => 2,
    }
}

fn outcome_index(outcome: SessionOutcome) -> usize {
    SessionOutcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0)
}

/// The broker's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    /// `[api][transport]`.
    connections: [[Counter; 3]; 2],
    connections_active: [[Gauge; 3]; 2],
    refused: [Counter; Refusal::ALL.len()],
    tls_failures: Counter,
    /// Completed handshakes: [full, resumed].
    tls_handshakes: [Counter; 2],
    keepalive_timeouts: Counter,
    authentications: Family<Labels2, Counter>,
    /// Authenticator kinds seen so far (their results are all exported from then on).
    authenticator_kinds: std::sync::Mutex<Vec<&'static str>>,
    sessions: [Counter; 6],
    tunnels: Counter,
    tunnels_active: Gauge,
    setup: Histogram,
    relayed: [Counter; 2],
    /// With a rendezvous listener: meetings [waiting, joined], refusals by reason; read from
    /// its table at each scrape.
    rendezvous: Option<([Gauge; 2], [Counter; RendezvousRefusal::ALL.len()])>,
    /// In a cluster: Redis up, live nodes, relayed tunnels now, relayed tunnels in total.
    cluster: Option<([Gauge; 3], Counter)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every metric, all at zero, and the served certificate's expiry when TLS
    /// is on (a gauge the certificate reload keeps current); the rendezvous series only with a
    /// rendezvous listener, the cluster series only in a cluster.
    pub fn new(certificate_expiry: Option<Gauge>, rendezvous: bool, cluster: bool) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("remoteproxy");

        registry.register(
            "build",
            "The broker's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );

        let family = Family::<Labels2, Counter>::default();
        let connections = APIS.map(|api| {
            TRANSPORTS
                .map(|t| family.get_or_create_owned(&[("api", api.as_str()), ("transport", t.as_str())]))
        });
        registry.register("connections", "Connections served (after TLS and the WebSocket upgrade)", family);

        let family = Family::<Labels2, Gauge>::default();
        let connections_active = APIS.map(|api| {
            TRANSPORTS
                .map(|t| family.get_or_create_owned(&[("api", api.as_str()), ("transport", t.as_str())]))
        });
        registry.register("connections_active", "Connections being served now", family);

        let family = Family::<Labels1, Counter>::default();
        let refused = REFUSALS.map(|r| family.get_or_create_owned(&[("reason", r.as_str())]));
        registry.register("connections_refused", "Connections refused by a limit", family);

        let tls_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_failures.clone(),
        );

        let family = Family::<Labels1, Counter>::default();
        let tls_handshakes = ["full", "resumed"].map(|kind| family.get_or_create_owned(&[("kind", kind)]));
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed: full, or a resumed session (a session ticket)",
            family,
        );

        let keepalive_timeouts = Counter::default();
        registry.register(
            "keepalive_timeouts",
            "WebSocket connections closed because no pong came within keepAliveTimeout",
            keepalive_timeouts.clone(),
        );

        let authentications = Family::<Labels2, Counter>::default();
        registry.register(
            "authentications",
            "Authenticator answers by authenticator kind and result",
            authentications.clone(),
        );

        let family = Family::<Labels1, Counter>::default();
        let sessions = SessionOutcome::ALL.map(|o| family.get_or_create_owned(&[("outcome", o.as_str())]));
        registry.register(
            "sessions",
            "Ended v1 sessions by outcome: happy (its tunnel ran), lonely (its partner never came), \
             redundant (refused duplicate), impatient (data before the tunnel), errory (protocol \
             error), timeout",
            family,
        );

        let tunnels = Counter::default();
        registry.register("tunnels", "v1 tunnels established", tunnels.clone());

        if let Some(expiry) = certificate_expiry {
            registry.register(
                "tls_certificate_expiry_seconds",
                "When the served TLS certificate expires, as Unix time",
                expiry,
            );
        }

        let tunnels_active = Gauge::default();
        registry.register("tunnels_active", "v1 tunnels open now", tunnels_active.clone());

        let setup = Histogram::new(SETUP_BUCKETS);
        registry.register_with_unit(
            "tunnel_setup",
            "Time from the joining client's connection to its tunnel",
            Unit::Seconds,
            setup.clone(),
        );

        let family = Family::<Labels1, Counter>::default();
        let relayed = APIS.map(|api| family.get_or_create_owned(&[("api", api.as_str())]));
        registry.register_with_unit("relayed", "Payload bytes relayed through tunnels", Unit::Bytes, family);

        let rendezvous = rendezvous.then(|| {
            let family = Family::<Labels1, Gauge>::default();
            let meetings = ["waiting", "joined"].map(|state| family.get_or_create_owned(&[("state", state)]));
            registry.register(
                "rendezvous_meetings",
                "Rendezvous meetings now, waiting for a peer or joined",
                family,
            );
            let family = Family::<Labels1, Counter>::default();
            let refused =
                RendezvousRefusal::ALL.map(|r| family.get_or_create_owned(&[("reason", r.as_str())]));
            registry.register(
                "rendezvous_refused",
                "Rendezvous peers closed before joining: full (a third peer), noHello (none in time), \
                 notHello (another first message), held (too much sent while alone)",
                family,
            );
            (meetings, refused)
        });

        let cluster = cluster.then(|| {
            let gauge = |registry: &mut Registry, name: &str, help: &str| {
                let gauge = Gauge::default();
                registry.register(name, help, gauge.clone());
                gauge
            };
            let gauges = [
                gauge(
                    &mut registry,
                    "cluster_redis_up",
                    "1 when Redis answered this node's last call, 0 otherwise",
                ),
                gauge(
                    &mut registry,
                    "cluster_nodes",
                    "Live cluster nodes (this one included) in the registry",
                ),
                gauge(
                    &mut registry,
                    "cluster_relayed_tunnels_active",
                    "Tunnels running now whose other peer is on another node",
                ),
            ];
            let relayed = Counter::default();
            registry.register(
                "cluster_relayed_tunnels",
                "Tunnels whose other peer was on another node, since the start",
                relayed.clone(),
            );
            (gauges, relayed)
        });

        Arc::new(Metrics {
            registry,
            rendezvous,
            cluster,
            connections,
            connections_active,
            refused,
            tls_failures,
            tls_handshakes,
            keepalive_timeouts,
            authentications,
            authenticator_kinds: Default::default(),
            sessions,
            tunnels,
            tunnels_active,
            setup,
            relayed,
        })
    }

    /// The OpenMetrics text exposition, with the live values read from `stats`.
    pub fn render(&self, stats: &Stats) -> String {
        self.tunnels_active.set(i64::try_from(stats.live_tunnels().len()).unwrap_or(i64::MAX));
        if let (Some((meetings, refused)), Some(now)) = (&self.rendezvous, stats.rendezvous()) {
            meetings[0].set(i64::try_from(now.waiting).unwrap_or(i64::MAX));
            meetings[1].set(i64::try_from(now.joined).unwrap_or(i64::MAX));
            for (counter, reason) in refused.iter().zip(RendezvousRefusal::ALL) {
                let total = now.refused.get(reason.as_str()).copied().unwrap_or(0);
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        if let (Some(([redis_up, nodes, relayed_now], relayed)), Some(now)) = (&self.cluster, stats.cluster())
        {
            redis_up.set(i64::from(now.redis == "up"));
            nodes.set(i64::try_from(now.nodes.len()).unwrap_or(i64::MAX));
            relayed_now.set(i64::try_from(now.relayed_tunnels.values().sum::<u64>()).unwrap_or(i64::MAX));
            relayed.inc_by(now.relayed_total.saturating_sub(relayed.get()));
        }
        let mut text = String::with_capacity(8 * 1024);
        if let Err(error) = encode(&mut text, &self.registry) {
            // Only a formatter error, which writing to a String never gives.
            warn!(%error, "cannot encode the metrics");
        }
        text
    }
}

impl StatsSink for Metrics {
    fn connection_opened(&self, api: Api, transport: Transport) {
        let (a, t) = (api_index(api), transport_index(transport));
        self.connections[a][t].inc();
        self.connections_active[a][t].inc();
    }

    fn connection_closed(&self, api: Api, transport: Transport) {
        self.connections_active[api_index(api)][transport_index(transport)].dec();
    }

    fn connection_refused(&self, refusal: Refusal) {
        self.refused[refusal.index()].inc();
    }

    fn tls_handshake_failed(&self) {
        self.tls_failures.inc();
    }

    fn tls_handshake_done(&self, resumed: bool) {
        self.tls_handshakes[usize::from(resumed)].inc();
    }

    fn keepalive_timed_out(&self) {
        self.keepalive_timeouts.inc();
    }

    fn authentication(&self, authenticator: &'static str, outcome: AuthenticationError) {
        {
            let mut kinds = self.authenticator_kinds.lock().unwrap_or_else(|e| e.into_inner());
            if !kinds.contains(&authenticator) {
                kinds.push(authenticator);
                for result in AuthenticationError::ALL {
                    let _ = self.authentications.get_or_create(&[
                        ("authenticator", authenticator),
                        ("result", authentication_result(result)),
                    ]);
                }
            }
        }
        self.authentications
            .get_or_create(&[("authenticator", authenticator), ("result", authentication_result(outcome))])
            .inc();
    }

    fn session_ended(&self, outcome: SessionOutcome) {
        self.sessions[outcome_index(outcome)].inc();
    }

    fn tunnel_established(&self, setup: Duration) {
        self.tunnels.inc();
        self.setup.observe(setup.as_secs_f64());
    }

    fn bytes_relayed(&self, api: Api, bytes: u64) {
        self.relayed[api_index(api)].inc_by(bytes);
    }
}

struct Endpoint {
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    draining: CancellationToken,
}

type Body = Full<Bytes>;

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

impl Endpoint {
    fn respond(&self, request: &Request<Incoming>) -> Response<Body> {
        const PLAIN: &str = "text/plain; charset=utf-8";
        let path = request.uri().path();
        if path != "/metrics" && path != "/healthz" {
            return text(StatusCode::NOT_FOUND, PLAIN, "not found\n");
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "method not allowed\n");
            response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path {
            "/metrics" => text(StatusCode::OK, CONTENT_TYPE, self.metrics.render(&self.stats)),
            _ if self.draining.is_cancelled() => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "draining\n"),
            _ => text(StatusCode::OK, PLAIN, "ok\n"),
        }
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop`; `/healthz` answers 503 once
/// `draining` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stats: Arc<Stats>,
    draining: CancellationToken,
    stop: CancellationToken,
) {
    let endpoint = Arc::new(Endpoint { metrics, stats, draining });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                debug!(%error, "metrics endpoint: accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("metrics endpoint: too many connections; closing one");
            continue;
        };
        let endpoint = endpoint.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let response = endpoint.respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => debug!(%error, "metrics endpoint: connection failed"),
                Err(_) => debug!("metrics endpoint: connection took too long; closed"),
            }
        });
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_label_value_is_exported_at_zero() {
        let metrics = Metrics::new(None, false, false);
        let stats = Stats::new("test", vec![]);
        let text = metrics.render(&stats);
        assert!(text.ends_with("# EOF\n"), "{text}");
        for outcome in SessionOutcome::ALL {
            let line = format!("remoteproxy_sessions_total{{outcome=\"{}\"}} 0\n", outcome.as_str());
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        for api in APIS {
            for t in TRANSPORTS {
                let labels = format!("{{api=\"{}\",transport=\"{}\"}} 0\n", api.as_str(), t.as_str());
                assert!(text.contains(&format!("remoteproxy_connections_total{labels}")), "{text}");
                assert!(text.contains(&format!("remoteproxy_connections_active{labels}")), "{text}");
            }
            let line = format!("remoteproxy_relayed_bytes_total{{api=\"{}\"}} 0\n", api.as_str());
            assert!(text.contains(&line), "{text}");
        }
        for r in REFUSALS {
            let line = format!("remoteproxy_connections_refused_total{{reason=\"{}\"}} 0\n", r.as_str());
            assert!(text.contains(&line), "{text}");
        }
        for line in [
            "remoteproxy_tls_handshake_failures_total 0\n",
            "remoteproxy_tunnels_total 0\n",
            "remoteproxy_tunnels_active 0\n",
            "remoteproxy_tunnel_setup_seconds_count 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn events_move_the_right_series() {
        let metrics = Metrics::new(None, false, false);
        let stats = Stats::new("test", vec![]);
        metrics.connection_opened(Api::V1, Transport::WebSocket);
        metrics.connection_opened(Api::V1, Transport::WebSocket);
        metrics.connection_closed(Api::V1, Transport::WebSocket);
        metrics.connection_opened(Api::V2, Transport::Unix);
        metrics.connection_refused(Refusal::MaxClientsPerServer);
        metrics.tls_handshake_failed();
        metrics.authentication("static", AuthenticationError::NoError);
        metrics.authentication("static", AuthenticationError::AuthenticationFailed);
        metrics.authentication("static", AuthenticationError::AuthenticationFailed);
        metrics.session_ended(SessionOutcome::Impatient);
        metrics.tunnel_established(Duration::from_millis(3));
        metrics.bytes_relayed(Api::V1, 1000);
        metrics.bytes_relayed(Api::V1, 24);
        metrics.bytes_relayed(Api::V2, 7);
        let text = metrics.render(&stats);
        for line in [
            "remoteproxy_connections_total{api=\"v1\",transport=\"WebSocket\"} 2\n",
            "remoteproxy_connections_active{api=\"v1\",transport=\"WebSocket\"} 1\n",
            "remoteproxy_connections_total{api=\"v2\",transport=\"unix\"} 1\n",
            "remoteproxy_connections_refused_total{reason=\"maxClientsPerServer\"} 1\n",
            "remoteproxy_connections_refused_total{reason=\"maxConnections\"} 0\n",
            "remoteproxy_tls_handshake_failures_total 1\n",
            "remoteproxy_authentications_total{authenticator=\"static\",result=\"NoError\"} 1\n",
            "remoteproxy_authentications_total{authenticator=\"static\",result=\"AuthenticationFailed\"} 2\n",
            "remoteproxy_authentications_total{authenticator=\"static\",result=\"Timeout\"} 0\n",
            "remoteproxy_sessions_total{outcome=\"impatient\"} 1\n",
            "remoteproxy_tunnels_total 1\n",
            "remoteproxy_tunnel_setup_seconds_bucket{le=\"0.0025\"} 0\n",
            "remoteproxy_tunnel_setup_seconds_bucket{le=\"0.005\"} 1\n",
            "remoteproxy_tunnel_setup_seconds_count 1\n",
            "remoteproxy_relayed_bytes_total{api=\"v1\"} 1024\n",
            "remoteproxy_relayed_bytes_total{api=\"v2\"} 7\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn results_are_short_wire_names() {
        let results: Vec<&str> = AuthenticationError::ALL.iter().map(|o| authentication_result(*o)).collect();
        assert_eq!(
            results,
            ["NoError", "Unknown", "Timeout", "Aborted", "AuthenticationFailed", "ProxyError"]
        );
    }
}
