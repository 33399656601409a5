//! Binding the listening sockets.
//!
//! Binding is separate from serving so that a port that cannot be bound fails startup with a
//! message naming the address (not a log line while the broker limps on), and so tests can bind
//! `127.0.0.1:0` themselves and hand the listeners to [`Server::run`](crate::Server::run).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpSocket, UnixListener, UnixStream};

use crate::config::ListenerSettings;

/// Pending connections the kernel queues per listener.
const BACKLOG: u32 = 1024;

/// Everything the broker listens on.
#[derive(Debug, Default)]
pub struct ServerListeners {
    /// The v1 proxy API.
    pub proxy: Listeners,
    /// The v2 TunnelProxy API.
    pub tunnel_proxy: Listeners,
    /// The monitor socket.
    pub monitor: Option<UnixSocketListener>,
    /// The Prometheus endpoint.
    pub metrics: Option<TcpListener>,
    /// The rendezvous listener (`[RendezvousServer]`).
    pub rendezvous: Option<TcpListener>,
    /// The inter-node relay listener (`[Cluster]`).
    pub cluster: Option<TcpListener>,
}

impl ServerListeners {
    /// Binds every listener the configuration enables, v1 first.
    pub async fn bind(config: &crate::config::Config) -> Result<ServerListeners, BindError> {
        let monitor = match &config.server.monitor_socket {
            Some(path) => Some(
                bind_monitor(
                    path,
                    config.server.monitor_socket_mode,
                    config.server.monitor_socket_group.as_deref(),
                )
                .await?,
            ),
            None => None,
        };
        let metrics = match config.metrics.enabled {
            true => Some(
                bind_tcp(config.metrics.address)
                    .map_err(|source| bind_error(config.metrics.address, "metrics endpoint", source))?,
            ),
            false => None,
        };
        let rendezvous = match &config.rendezvous {
            Some(settings) => Some(
                bind_tcp(settings.address)
                    .map_err(|source| bind_error(settings.address, "rendezvous listener", source))?,
            ),
            None => None,
        };
        let cluster = match &config.cluster {
            Some(settings) => Some(
                bind_tcp(settings.relay_address)
                    .map_err(|source| bind_error(settings.relay_address, "cluster relay listener", source))?,
            ),
            None => None,
        };
        Ok(ServerListeners {
            cluster,
            proxy: Listeners::bind(&config.listeners, "v1").await?,
            tunnel_proxy: Listeners::bind(&config.tunnel_proxy_listeners, "v2").await?,
            monitor,
            metrics,
            rendezvous,
        })
    }
}

/// Binds the monitor socket with `mode` and `group`, so only whom the operator chose can read
/// statistics.
pub async fn bind_monitor(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> Result<UnixSocketListener, BindError> {
    bind_unix(path, mode, group, "monitor socket").await
}

/// Binds a unix socket, then gives it `group` (when named) and `mode`: connecting needs write
/// permission, so with the usual 0660 exactly the broker's user and that group may connect.
/// Until the mode is set the socket has the umask's, which never grants others write access
/// under the service's `UMask=0027` (nor the common 0022).
async fn bind_unix(
    path: &Path,
    mode: u32,
    group: Option<&str>,
    what: &'static str,
) -> Result<UnixSocketListener, BindError> {
    use std::os::unix::fs::PermissionsExt;
    let error = |source| BindError { address: path.display().to_string(), what, source };
    let listener = UnixSocketListener::bind(path).await.map_err(error)?;
    if let Some(group) = group {
        std::os::unix::fs::chown(path, None, Some(group_id(group, what)?)).map_err(error)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(error)?;
    Ok(listener)
}

/// The id of the group named `name` (through NSS, as `chgrp` does).
fn group_id(name: &str, what: &'static str) -> Result<u32, BindError> {
    let problem = match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => return Ok(group.gid.as_raw()),
        Ok(None) => io::Error::new(io::ErrorKind::NotFound, format!("there is no group {name:?}")),
        Err(errno) => io::Error::from(errno),
    };
    Err(BindError { address: format!("group {name:?}"), what, source: problem })
}

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({what}): {source}; {}", where_to_change(what))]
pub struct BindError {
    /// The address or socket path.
    pub address: String,
    /// Which listener, e.g. "v1 TCP".
    pub what: &'static str,
    /// The operating system's reason.
    #[source]
    pub source: io::Error,
}

/// Which configuration key moves (or turns off) a listener, for the bind error.
fn where_to_change(what: &str) -> &'static str {
    match what {
        "v1 WebSocket" => "change [WebSocketServer] host and port (empty host turns it off)",
        "v1 TCP" => "change [TcpServer] host and port (empty host turns it off)",
        "v1 unix socket" => {
            "change [UnixSocketServer] unixSocketFileName (empty turns it off) or unixSocketGroup"
        }
        "v2 WebSocket" => "change [WebSocketServerTunnelProxy] host and port (empty host turns it off)",
        "v2 TCP" => "change [TcpServerTunnelProxy] host and port (empty host turns it off)",
        "v2 unix socket" => {
            "change [UnixSocketServerTunnelProxy] unixSocketFileName (empty turns it off) or unixSocketGroup"
        }
        "monitor socket" => "change [ProxyServer] monitorSocket (empty turns it off) or monitorSocketGroup",
        "metrics endpoint" => "change [Metrics] host and port",
        "cluster relay listener" => "change [Cluster] relayHost and relayPort",
        _ => "change its address in the configuration file",
    }
}

/// The listening sockets of one API.
#[derive(Debug, Default)]
pub struct Listeners {
    /// WebSocket listener.
    pub websocket: Option<TcpListener>,
    /// TCP listener.
    pub tcp: Option<TcpListener>,
    /// Unix socket listener.
    pub unix: Option<UnixSocketListener>,
}

impl Listeners {
    /// Binds every listener `settings` enables; `api` names them in errors ("v1", "v2").
    pub async fn bind(settings: &ListenerSettings, api: &'static str) -> Result<Listeners, BindError> {
        let (ws_name, tcp_name, unix_name) = match api {
            "v1" => ("v1 WebSocket", "v1 TCP", "v1 unix socket"),
            _ => ("v2 WebSocket", "v2 TCP", "v2 unix socket"),
        };
        let websocket = match settings.websocket {
            Some(addr) => Some(bind_tcp(addr).map_err(|source| bind_error(addr, ws_name, source))?),
            None => None,
        };
        let tcp = match settings.tcp {
            Some(addr) => Some(bind_tcp(addr).map_err(|source| bind_error(addr, tcp_name, source))?),
            None => None,
        };
        let unix = match &settings.unix {
            Some(path) => {
                Some(bind_unix(path, settings.unix_mode, settings.unix_group.as_deref(), unix_name).await?)
            }
            None => None,
        };
        Ok(Listeners { websocket, tcp, unix })
    }
}

fn bind_error(addr: SocketAddr, what: &'static str, source: io::Error) -> BindError {
    BindError { address: addr.to_string(), what, source }
}

/// Binds with SO_REUSEADDR so a restarted broker does not wait for old connections' TIME_WAIT.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A unix listener that removes its socket file when dropped.
#[derive(Debug)]
pub struct UnixSocketListener {
    /// The listener.
    pub listener: UnixListener,
    path: PathBuf,
}

impl UnixSocketListener {
    /// Binds `path`, creating its directory when missing and replacing a stale socket file left
    /// by a broker that died. A socket another process still listens on is an error, not taken
    /// over.
    pub async fn bind(path: &Path) -> io::Result<UnixSocketListener> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "the path exists and is not a socket",
                    ));
                }
                if UnixStream::connect(path).await.is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process is listening on this socket",
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        Ok(UnixSocketListener { listener, path: path.to_path_buf() })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
