//! The server: builds the shared state from a [`Config`], serves the listeners it is given, and
//! drains on shutdown.
//!
//! Binding is the caller's job ([`Listeners::bind`]), so tests bind `127.0.0.1:0` and read the
//! ports, and the binary reports a port that cannot be bound before anything runs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use remoteproxy_authenticators::Authenticator;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info};

use crate::cluster::Cluster;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::proxy::{self, ProxyContext, Registry};
use crate::statistics_log::StatisticsLog;
use crate::stats::{Stats, StatsSink};
use crate::transport::accept::{self, AcceptContext, Carriage, Handler, ServerTls, TlsAccept};
use crate::transport::admission::Admission;
use crate::transport::handshakes::Handshakes;
use crate::transport::websocket::KeepAlive;
use crate::transport::{Connection, Listeners, ServerListeners, tickets, tls};
use crate::tunnelproxy::{self, TunnelProxyContext};
use crate::{monitor, rendezvous, shutdown, systemd};

/// A configured broker, ready to serve.
pub struct Server {
    config: Config,
    authenticator: Arc<dyn Authenticator>,
    tls: Option<tls::TlsMaterial>,
    rendezvous_files: Option<Arc<rendezvous::RendezvousFiles>>,
    statistics_log: Option<Arc<StatisticsLog>>,
    cluster: Option<Arc<Cluster>>,
}

impl Server {
    /// Checks what the configuration names beyond the file itself (certificates and keys) without
    /// creating or changing any file: what `--check-config` runs.
    pub fn check(config: &Config) -> Result<(), ConfigError> {
        Self::load_tls(config)?;
        Self::load_rendezvous_files(config).map(drop)
    }

    /// The rendezvous listener's TLS (client certificates required) and policy file, when it
    /// is on.
    fn load_rendezvous_files(
        config: &Config,
    ) -> Result<Option<Arc<rendezvous::RendezvousFiles>>, ConfigError> {
        let Some(settings) = &config.rendezvous else { return Ok(None) };
        Ok(Some(Arc::new(rendezvous::RendezvousFiles::load(settings, config.source.as_deref())?)))
    }

    fn load_tls(config: &Config) -> Result<Option<tls::TlsMaterial>, ConfigError> {
        match config.tls.enabled {
            true => tls::load(&config.tls, config.source.as_deref()).map(Some),
            false => Ok(None),
        }
    }

    /// Checks what the configuration names beyond the file itself (certificates and keys),
    /// prepares TLS (generating a self-signed certificate when none is configured, opening or
    /// creating the session ticket keys) and opens the statistics files (creating their
    /// directories).
    pub fn new(config: Config, authenticator: Arc<dyn Authenticator>) -> Result<Server, ConfigError> {
        let mut tls = Self::load_tls(&config)?;
        let rendezvous_files = Self::load_rendezvous_files(&config)?;
        if let Some(material) = &mut tls {
            tickets::configure(Arc::make_mut(&mut material.server_config), &config.tls);
        }
        let statistics_log = match config.server.log_engine_enabled {
            true => Some(
                StatisticsLog::open(&config.server.statistics_log_file, &config.server.statistics_state_file)
                    .map_err(|error| {
                        ConfigError::bad_value(
                            config.source.as_deref(),
                            "ProxyServer",
                            "statisticsLogFile",
                            format!("cannot open the statistics files: {error}"),
                        )
                    })?,
            ),
            false => None,
        };
        let cluster = match &config.cluster {
            None => None,
            Some(settings) => Some(Cluster::new(settings).map_err(|problem| {
                ConfigError::bad_value(config.source.as_deref(), "Cluster", "redisUrl", problem)
            })?),
        };
        Ok(Server { config, authenticator, tls, rendezvous_files, statistics_log, cluster })
    }

    /// What SIGHUP rereads ([`crate::reload::on_hangup`]): the authenticator's files, the
    /// certificate and the rendezvous listener's files.
    pub fn reloader(&self) -> crate::reload::Reloader {
        crate::reload::Reloader::new(
            self.authenticator.clone(),
            self.tls.as_ref().and_then(|tls| tls.files.clone()),
            self.rendezvous_files.clone(),
        )
    }

    /// The SHA-256 fingerprint of the served certificate, when TLS is on.
    pub fn certificate_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.fingerprint_sha256.as_str())
    }

    /// The served certificate chain (leaf first), when TLS is on: what a client pins or trusts,
    /// e.g. for a generated self-signed certificate.
    pub fn certificate_chain(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.tls.as_ref().map(|t| t.certificate_chain.as_slice())
    }

    /// The certificate chain the TLS listeners serve, as PEM (`None` with TLS off), so that the
    /// certificate a broker generated can be handed to clients (`remoteproxy-client --ca`).
    pub fn certificate_pem(&self) -> Option<String> {
        let blocks: Vec<pem::Pem> = self
            .certificate_chain()?
            .iter()
            .map(|cert| pem::Pem::new("CERTIFICATE", cert.to_vec()))
            .collect();
        Some(pem::encode_many(&blocks))
    }

    /// Serves until `shutdown` resolves, then drains (see [`crate::shutdown`]).
    pub async fn run(self, listeners: ServerListeners, shutdown: impl Future<Output = ()>) {
        let Server { config, authenticator, tls, rendezvous_files, statistics_log, cluster } = self;
        if let Some(material) = &tls {
            if material.self_signed {
                info!(fingerprint = %material.fingerprint_sha256, "TLS: serving a generated self-signed certificate");
            } else {
                info!(fingerprint = %material.fingerprint_sha256, "TLS: certificate loaded");
            }
        }
        let stop = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        // `{"method":"drain"}` on the monitor socket (`remoteproxy drain`): a stop like SIGTERM's.
        let drain_requested = CancellationToken::new();
        // The monitor, metrics and statistics keep running through the drain and end last.
        let ended = CancellationToken::new();
        let tracker = TaskTracker::new();
        let certificate_expiry = tls.as_ref().map(|tls| tls.served.expiry_gauge());
        let metrics = listeners
            .metrics
            .is_some()
            .then(|| Metrics::new(certificate_expiry, config.rendezvous.is_some(), config.cluster.is_some()));
        let mut sinks: Vec<Arc<dyn StatsSink>> = Vec::new();
        if let Some(metrics) = &metrics {
            sinks.push(metrics.clone());
        }
        if let Some(log) = &statistics_log {
            sinks.push(log.clone());
        }
        let stats = Stats::new(&config.server.name, sinks);
        if let Some(tls) = &tls {
            stats.watch_certificate_expiry(tls.served.expiry_gauge());
        }
        let mut services = JoinSet::new();
        if let (Some(files), Some(interval)) =
            (tls.as_ref().and_then(|tls| tls.files.clone()), config.tls.certificate_check_interval)
        {
            services.spawn(crate::reload::watch_certificate(files, interval, ended.clone()));
        }
        if let Some(log) = statistics_log {
            stats.restore_totals(log.saved_totals());
            services.spawn(log.persist(stats.clone(), ended.clone()));
        }
        services.spawn(tick(stats.clone(), ended.clone()));
        if let Some(listener) = listeners.monitor {
            info!(path = %listener.path().display(), "monitor socket");
            services.spawn(monitor::serve(listener, stats.clone(), drain_requested.clone(), ended.clone()));
        }
        if let (Some(listener), Some(metrics)) = (listeners.metrics, metrics) {
            info!(address = %display_addr(&listener), "metrics endpoint (/metrics, /healthz)");
            services.spawn(crate::metrics::serve(
                listener,
                metrics,
                stats.clone(),
                stop.clone(),
                ended.clone(),
            ));
        }
        let accept_ctx = Arc::new(AcceptContext {
            tls: match tls {
                None => None,
                Some(material) => Some(TlsAccept {
                    config: ServerTls::new(material.server_config),
                    handshakes: Handshakes::new(),
                }),
            },
            tls_handshake_timeout: config.timeouts.tls_handshake,
            upgrade_timeout: config.timeouts.inactive,
            max_message_size: config.server.max_message_size,
            health_path: config.server.health_check_path.clone(),
            proxy_protocol: config.proxy_protocol.clone(),
            path_prefix: None,
            admission: Arc::new(Admission::new(config.server.max_connections, &config.limits, stats.clone())),
            ids: AtomicU64::new(1),
            stop_accepting: stop.clone(),
            tracker: tracker.clone(),
            stats: stats.clone(),
            keepalive: config.timeouts.keep_alive_interval.map(|interval| {
                Arc::new(KeepAlive {
                    interval,
                    timeout: config.timeouts.keep_alive_timeout,
                    stats: stats.clone(),
                })
            }),
        });
        let proxy_ctx = Arc::new(ProxyContext {
            server_name: config.server.name.clone(),
            timeouts: config.timeouts,
            authenticator,
            registry: Arc::new(match &cluster {
                None => Registry::new(config.limits.max_tunnels_per_token),
                Some(cluster) => {
                    let cluster = cluster.clone();
                    Registry::with_on_free(
                        config.limits.max_tunnels_per_token,
                        Box::new(move |key, claim| cluster.release("v1", &key.to_hex().0, claim)),
                    )
                }
            }),
            notification_ids: AtomicU64::new(0),
            stop: stop.clone(),
            hard_stop: hard_stop.clone(),
            stats: stats.clone(),
            cluster: cluster.clone(),
        });
        let tunnel_proxy_ctx = Arc::new(TunnelProxyContext {
            server_name: config.server.name.clone(),
            timeouts: config.timeouts,
            max_message_size: config.server.max_message_size,
            max_clients_per_server: config.server.max_clients_per_server,
            registry: Arc::new(match &cluster {
                None => tunnelproxy::Registry::default(),
                Some(cluster) => {
                    let cluster = cluster.clone();
                    tunnelproxy::Registry::with_on_server_gone(Box::new(move |uuid, epoch| {
                        cluster.release("v2", &uuid.hyphenated().to_string(), epoch)
                    }))
                }
            }),
            notification_ids: AtomicU64::new(0),
            stop: stop.clone(),
            hard_stop: hard_stop.clone(),
            stats: stats.clone(),
            cluster: cluster.clone(),
        });
        let v1_ctx = proxy_ctx.clone();
        let v1: Handler = Arc::new(move |conn| Box::pin(proxy::session::serve(conn, v1_ctx.clone())));
        let v2_ctx = tunnel_proxy_ctx.clone();
        let v2: Handler = Arc::new(move |conn: Connection| {
            let span = conn.span.clone();
            Box::pin(tunnelproxy::session::serve(conn, v2_ctx.clone()).instrument(span))
        });

        if let (Some(cluster), Some(listener)) = (&cluster, listeners.cluster) {
            stats.watch_cluster(cluster.clone());
            let handle = cluster_streams(cluster, proxy_ctx, tunnel_proxy_ctx, tracker.clone());
            for task in cluster.start(listener, handle, ended.clone()) {
                services.spawn(async move {
                    let _ = task.await;
                });
            }
        }
        let mut loops = JoinSet::new();
        serve_listeners(&mut loops, listeners.proxy, "v1", &accept_ctx, &v1);
        serve_listeners(&mut loops, listeners.tunnel_proxy, "v2", &accept_ctx, &v2);
        if let (Some(listener), Some(settings), Some(files)) =
            (listeners.rendezvous, &config.rendezvous, rendezvous_files)
        {
            let tls = TlsAccept { config: files.tls(), handshakes: Handshakes::new() };
            let ctx = Arc::new(accept_ctx.sibling(tls, settings.path_prefix.clone()));
            let sessions = Arc::new(rendezvous::RendezvousContext::new(
                settings,
                files,
                stop.clone(),
                hard_stop.clone(),
            ));
            stats.watch_rendezvous(sessions.clone());
            let handler: Handler =
                Arc::new(move |conn| Box::pin(rendezvous::session::serve(conn, sessions.clone())));
            info!(address = %display_addr(&listener), prefix = %settings.path_prefix, "rendezvous WebSocket listener");
            let carriage = Carriage::WebSocket { half_close: false };
            loops.spawn(async move { accept::serve(&listener, carriage, ctx, handler).await });
        }
        info!(name = %config.server.name, version = env!("CARGO_PKG_VERSION"), "remoteproxy running");
        systemd::ready();
        services.spawn(systemd::watchdog(ended.clone()));

        tokio::select! {
            _ = shutdown => {}
            _ = drain_requested.cancelled() => {}
        }
        systemd::stopping();
        info!("stopping: no new connections; closing connections that are not tunnels");
        stop.cancel();
        if let Some(cluster) = &cluster {
            // The other nodes stop sending partners here at once.
            cluster.drain().await;
        }
        while loops.join_next().await.is_some() {}
        shutdown::drain(&tracker, &hard_stop, config.server.shutdown_grace_period).await;
        ended.cancel();
        while services.join_next().await.is_some() {}
        info!("stopped");
    }
}

/// Where the streams other cluster nodes open go: v1 joins and v2 connects, each in its own task
/// (tracked, so a drain waits for the tunnels they become).
fn cluster_streams(
    cluster: &Arc<Cluster>,
    proxy_ctx: Arc<ProxyContext>,
    tunnel_proxy_ctx: Arc<TunnelProxyContext>,
    tracker: TaskTracker,
) -> Arc<dyn Fn(crate::cluster::link::Incoming) + Send + Sync> {
    let cluster = cluster.clone();
    Arc::new(move |incoming| {
        let crate::cluster::link::Incoming { path, from, stream } = incoming;
        match path.as_str() {
            proxy::remote::JOIN_PATH => {
                tracker.spawn(proxy::remote::serve_join(stream, from, proxy_ctx.clone(), cluster.clone()));
            }
            tunnelproxy::remote::CONNECT_PATH => {
                tracker.spawn(tunnelproxy::remote::serve_connect(stream, from, tunnel_proxy_ctx.clone()));
            }
            _ => debug!(%path, node = %from, "a stream for an unknown path"),
        }
    })
}

/// Measures throughput once a second.
async fn tick(stats: Arc<Stats>, ended: CancellationToken) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ended.cancelled() => return,
            _ = interval.tick() => stats.tick(),
        }
    }
}

/// Starts the accept loops of one API's listeners.
fn serve_listeners(
    loops: &mut JoinSet<()>,
    listeners: Listeners,
    api: &'static str,
    ctx: &Arc<AcceptContext>,
    handler: &Handler,
) {
    let Listeners { websocket, tcp, unix } = listeners;
    let security = if ctx.tls.is_some() { "TLS" } else { "plain" };
    if let Some(listener) = websocket {
        info!(address = %display_addr(&listener), security, "{api} WebSocket listener");
        let carriage = Carriage::WebSocket { half_close: api == "v1" };
        let (ctx, handler) = (ctx.clone(), handler.clone());
        loops.spawn(async move { accept::serve(&listener, carriage, ctx, handler).await });
    }
    if let Some(listener) = tcp {
        info!(address = %display_addr(&listener), security, "{api} TCP listener");
        let (ctx, handler) = (ctx.clone(), handler.clone());
        loops.spawn(async move { accept::serve(&listener, Carriage::Stream, ctx, handler).await });
    }
    if let Some(unix) = unix {
        info!(path = %unix.path().display(), "{api} unix socket listener");
        let (ctx, handler) = (ctx.clone(), handler.clone());
        loops.spawn(async move { accept::serve(&unix.listener, Carriage::Stream, ctx, handler).await });
    }
}

fn display_addr(listener: &tokio::net::TcpListener) -> String {
    listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("unknown ({e})"))
}
