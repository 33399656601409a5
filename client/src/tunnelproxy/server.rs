//! The server role: stay registered at the broker and accept its clients.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::connection::ProxyConnection;
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::tunnelproxy::backoff::{Backoff, Delays, jittered};
use crate::tunnelproxy::incoming::IncomingClient;
use crate::tunnelproxy::{TunnelProxyError, mux};
use crate::url::ProxyUrl;

/// Clients connected by the broker but not yet accepted by the application. When it is full,
/// the connection stops reading until the application accepts.
const ACCEPT_QUEUE: usize = 16;

/// Who a TunnelProxy server is.
#[derive(Debug, Clone)]
pub struct ServerRegistration {
    /// The server's uuid; clients name it to reach this server.
    pub uuid: String,
    /// The server's name.
    pub name: String,
}

/// How a [`TunnelServer`] keeps its registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Delays between connection attempts.
    pub backoff: Backoff,
    /// How often to ping the broker. The broker closes a registered server that sent nothing
    /// for a while (60 s by default, `tunnelProxyServerTimeout`); ping well within that. A
    /// broker that has not answered anything for a whole interval after a ping is taken for
    /// dead and the server reconnects.
    pub ping_interval: Duration,
}

impl Default for ServerSettings {
    /// The default backoff, a ping every 30 s.
    fn default() -> Self {
        ServerSettings { backoff: Backoff::default(), ping_interval: mux::PING_INTERVAL }
    }
}

/// Where a [`TunnelServer`] stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStatus {
    /// Registered at the broker right now.
    pub registered: bool,
    /// Successful registrations so far (reconnections count again).
    pub registrations: u64,
    /// Why the last connection or attempt ended, until the next registration.
    pub last_error: Option<String>,
}

/// A TunnelProxy server that keeps itself registered at a broker.
///
/// A background task connects, says Hello and registers; it pings the broker every 30 s and,
/// when the connection is lost or registration fails for a reason that may pass (the broker is
/// down, the uuid is still registered by a previous connection that has not timed out yet), it
/// reconnects with [`Backoff`]. Fatal failures (an invalid uuid, a broker that does not speak
/// the TunnelProxy API, an untrusted certificate, an unusable configuration file) stop it; the
/// next [`accept`](TunnelServer::accept) returns the error. Dropping the `TunnelServer` stops
/// it and disconnects its clients.
///
/// ```no_run
/// # async fn demo() -> Result<(), remoteproxy_client::ClientError> {
/// use remoteproxy_client::{ClientOptions, ProxyUrl, ServerRegistration, TunnelServer};
/// use tokio::io::AsyncWriteExt;
///
/// let url = ProxyUrl::parse_v2("ssl://proxy.example.com:2213")?;
/// let me = ServerRegistration { uuid: "3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(), name: "device".into() };
/// let mut server = TunnelServer::spawn(url, ClientOptions::default(), me);
/// loop {
///     let mut client = server.accept().await?;
///     tokio::spawn(async move { client.stream.write_all(b"hello client").await });
/// }
/// # }
/// ```
pub struct TunnelServer {
    incoming: mpsc::Receiver<IncomingClient>,
    status: watch::Receiver<ServerStatus>,
    /// Returns the fatal error; taken once it was reported.
    task: Option<JoinHandle<ClientError>>,
}

impl TunnelServer {
    /// Starts the server's background task with the default [`ServerSettings`]. Must be called
    /// within a tokio runtime.
    pub fn spawn(url: ProxyUrl, options: ClientOptions, registration: ServerRegistration) -> TunnelServer {
        Self::spawn_with(url, options, registration, ServerSettings::default())
    }

    /// Like [`spawn`](TunnelServer::spawn) with chosen settings.
    pub fn spawn_with(
        url: ProxyUrl,
        options: ClientOptions,
        registration: ServerRegistration,
        settings: ServerSettings,
    ) -> TunnelServer {
        let target = url.to_string();
        let connect = move || {
            let (url, options) = (url.clone(), options.clone());
            async move { ProxyConnection::connect(&url, &options).await }
        };
        Self::spawn_connector(connect, target, registration, settings)
    }

    /// The general form: `connect` opens a fresh connection for every attempt; `target` names
    /// the broker in log lines.
    pub(crate) fn spawn_connector<C, F>(
        connect: C,
        target: String,
        registration: ServerRegistration,
        settings: ServerSettings,
    ) -> TunnelServer
    where
        C: FnMut() -> F + Send + 'static,
        F: Future<Output = Result<ProxyConnection, ClientError>> + Send + 'static,
    {
        let (accept, incoming) = mpsc::channel(ACCEPT_QUEUE);
        let (status_tx, status) = watch::channel(ServerStatus::default());
        let supervisor = Supervisor { target, registration, settings, accept, status: status_tx };
        let task = tokio::spawn(supervisor.run(connect));
        TunnelServer { incoming, status, task: Some(task) }
    }

    /// The next client. Fails only when the server has stopped: first with the error that
    /// stopped it, then with [`ClientError::Stopped`].
    pub async fn accept(&mut self) -> Result<IncomingClient, ClientError> {
        match self.incoming.recv().await {
            Some(client) => Ok(client),
            None => Err(self.failure().await),
        }
    }

    /// Waits until the server is registered (now or after the current attempt). Fails when the
    /// server stopped instead, like [`accept`](TunnelServer::accept).
    pub async fn registered(&mut self) -> Result<(), ClientError> {
        let stopped = self.status.wait_for(|status| status.registered).await.is_err();
        if stopped { Err(self.failure().await) } else { Ok(()) }
    }

    /// The server's status, to watch it change.
    pub fn status(&self) -> watch::Receiver<ServerStatus> {
        self.status.clone()
    }

    async fn failure(&mut self) -> ClientError {
        match self.task.take() {
            Some(task) => task.await.unwrap_or(ClientError::Stopped),
            None => ClientError::Stopped,
        }
    }
}

impl Drop for TunnelServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The background task.
struct Supervisor {
    /// The broker, for log lines.
    target: String,
    registration: ServerRegistration,
    settings: ServerSettings,
    accept: mpsc::Sender<IncomingClient>,
    status: watch::Sender<ServerStatus>,
}

impl Supervisor {
    /// Registers, serves, and starts over until something fatal happens.
    async fn run<C, F>(self, mut connect: C) -> ClientError
    where
        C: FnMut() -> F + Send,
        F: Future<Output = Result<ProxyConnection, ClientError>> + Send + 'static,
    {
        let mut delays = Delays::new(self.settings.backoff);
        loop {
            let attempt = async {
                let mut connection = connect().await?;
                self.register(&mut connection).await?;
                Ok::<_, ClientError>(connection.into_stream())
            };
            let why = match attempt.await {
                Ok(stream) => {
                    delays.reset();
                    self.status.send_modify(|status| {
                        status.registered = true;
                        status.registrations += 1;
                        status.last_error = None;
                    });
                    info!(broker = %self.target, uuid = %self.registration.uuid, "registered as a server");
                    let end = mux::run(stream, self.accept.clone(), self.settings.ping_interval).await;
                    self.status.send_modify(|status| {
                        status.registered = false;
                        status.last_error = Some(end.to_string());
                    });
                    if matches!(end, ClientError::Stopped) {
                        return end;
                    }
                    format!("lost the connection to {}: {end}", self.target)
                }
                Err(error) if is_fatal(&error) => {
                    self.status.send_modify(|status| status.last_error = Some(error.to_string()));
                    return error;
                }
                Err(error) => {
                    let why = format!("cannot register at {}: {error}", self.target);
                    self.status.send_modify(|status| status.last_error = Some(error.to_string()));
                    why
                }
            };
            let delay = jittered(delays.next_delay());
            warn!("{why}; retrying in {:.1} s", delay.as_secs_f64());
            tokio::time::sleep(delay).await;
        }
    }

    async fn register(&self, connection: &mut ProxyConnection) -> Result<(), ClientError> {
        let info = connection.hello().await?;
        debug!(server = %info.server, version = %info.version, name = %info.name, "connected");
        let (outcome, slip) =
            connection.register_server(&self.registration.uuid, &self.registration.name).await?;
        match outcome {
            TunnelProxyError::NoError if slip => Ok(()),
            TunnelProxyError::NoError => {
                Err(ClientError::Protocol("the broker registered the server without SLIP".into()))
            }
            error => Err(ClientError::TunnelProxyRefused { error }),
        }
    }
}

/// Failures that retrying cannot cure: they need a change by the user.
fn is_fatal(error: &ClientError) -> bool {
    match error {
        ClientError::InvalidUrl { .. }
        | ClientError::BadFile { .. }
        | ClientError::TlsVerification { .. } => true,
        ClientError::TunnelProxyRefused { error } => {
            matches!(error, TunnelProxyError::InvalidUuid | TunnelProxyError::ForbiddenCall)
        }
        // An error response means the broker does not understand the call (e.g. a v1 port),
        // except when it merely did not answer in time.
        ClientError::Rejected(reason) => reason != "Command timed out",
        _ => false,
    }
}
