//! The broker under stress: the real `remoteproxy` binary as a child process, on port 0
//! listeners read back from its log, TLS on (its generated certificate), metrics and the monitor
//! socket on, in a temporary directory of its own. Its memory, descriptors, threads and sockets
//! are read from `/proc`, its counters from `/metrics`, its tables from the monitor socket.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use remoteproxy_bench::client::Endpoint;
use remoteproxy_wire::monitor::Snapshot;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, Command};

/// How long the broker may take to start, and a settle check to come true.
pub const SETTLE: Duration = Duration::from_secs(20);

/// What a scenario configures on top of the defaults: lines added to sections.
#[derive(Default, Clone)]
pub struct Setup {
    /// Extra `[ProxyServer]` lines.
    pub proxy_server: String,
    /// Whole extra sections (`[Limits]`, `[Authentication]`, ...).
    pub sections: String,
    /// `-m` (accept every token) unless an `[Authentication]` section is given.
    pub mock: bool,
    /// A file-size limit for the process (bytes), as `ulimit -f` would set it.
    pub file_size_limit: Option<u64>,
}

/// A running broker.
pub struct Broker {
    child: Child,
    pub dir: tempfile::TempDir,
    pub pid: u32,
    pub tcp: SocketAddr,
    pub websocket: SocketAddr,
    pub tcp2: SocketAddr,
    pub websocket2: SocketAddr,
    pub metrics: SocketAddr,
    pub unix: PathBuf,
    pub unix2: PathBuf,
    pub monitor: PathBuf,
    log: PathBuf,
}

impl Broker {
    /// Starts `binary` with `setup` and waits until every listener is up.
    pub async fn start(binary: &Path, setup: &Setup) -> anyhow::Result<Broker> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let config = format!(
            "[ProxyServer]\nname=stress\nmonitorSocket={monitor}\nlogLevel=warn\n\
             statisticsLogFile={d}/statistics.log\nstatisticsStateFile={d}/statistics.json\n{extra}\n\
             [WebSocketServer]\nhost=127.0.0.1\nport=0\n[TcpServer]\nhost=127.0.0.1\nport=0\n\
             [UnixSocketServer]\nunixSocketFileName={d}/proxy.socket\n\
             [WebSocketServerTunnelProxy]\nhost=127.0.0.1\nport=0\n\
             [TcpServerTunnelProxy]\nhost=127.0.0.1\nport=0\n\
             [UnixSocketServerTunnelProxy]\nunixSocketFileName={d}/proxy2.socket\n\
             [Metrics]\nenabled=true\nport=0\n{sections}\n",
            monitor = d.join("monitor.sock").display(),
            d = d.display(),
            extra = setup.proxy_server,
            sections = setup.sections,
        );
        let config_path = d.join("remoteproxy.conf");
        std::fs::write(&config_path, config)?;
        let log = d.join("broker.log");
        let mut command = Command::new(binary);
        command.arg("-c").arg(&config_path);
        if setup.mock {
            command.arg("-m");
        }
        // The listeners' addresses are logged at info; everything else the broker says at warn.
        command.env("RUST_LOG", "warn,remoteproxy::server=info");
        command.env_remove("NOTIFY_SOCKET");
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
        command.kill_on_drop(true);
        if let Some(limit) = setup.file_size_limit {
            // `prlimit` after the spawn would race the first write; the limit must hold from the
            // start, as a unit's LimitFSIZE= would set it.
            let mut wrapped = Command::new("prlimit");
            wrapped.arg(format!("--fsize={limit}")).arg("--").arg(binary).arg("-c").arg(&config_path);
            if setup.mock {
                wrapped.arg("-m");
            }
            wrapped.env("RUST_LOG", "warn,remoteproxy::server=info").env_remove("NOTIFY_SOCKET");
            wrapped.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
            wrapped.kill_on_drop(true);
            command = wrapped;
        }
        let child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("the broker exited at once")?;
        let mut broker = Broker {
            child,
            pid,
            tcp: unbound(),
            websocket: unbound(),
            tcp2: unbound(),
            websocket2: unbound(),
            metrics: unbound(),
            unix: d.join("proxy.socket"),
            unix2: d.join("proxy2.socket"),
            monitor: d.join("monitor.sock"),
            log,
            dir,
        };
        broker.read_addresses().await?;
        Ok(broker)
    }

    async fn read_addresses(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the broker exited at start ({status}): {}", self.log_text());
            }
            let log = self.log_text();
            if log.contains("remoteproxy running") {
                let find = |what: &str| -> anyhow::Result<SocketAddr> {
                    let at = log.find(what).with_context(|| format!("no {what:?} in the log"))?;
                    let rest = &log[at + what.len()..];
                    let addr = rest.split("address=").nth(1).and_then(|r| r.split_whitespace().next());
                    addr.context("no address")?.parse().context("bad address")
                };
                self.tcp = find("v1 TCP listener")?;
                self.websocket = find("v1 WebSocket listener")?;
                self.tcp2 = find("v2 TCP listener")?;
                self.websocket2 = find("v2 WebSocket listener")?;
                self.metrics = find("metrics endpoint")?;
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the broker did not start: {log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The v1 endpoints: TLS over TCP, and WebSocket over TLS.
    pub fn v1_tcp(&self) -> Endpoint {
        Endpoint::at(self.tcp, true, false)
    }

    pub fn v1_ws(&self) -> Endpoint {
        Endpoint::at(self.websocket, true, true)
    }

    /// Everything the broker logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The broker's process (not `prlimit`'s, which execs into it).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        remoteproxy_bench::procfs::rss_kib(self.pid).unwrap_or(0)
    }

    /// Open descriptors.
    pub fn fds(&self) -> u64 {
        remoteproxy_bench::procfs::fd_count(self.pid).unwrap_or(0)
    }

    /// Threads of the process.
    pub fn threads(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The broker's TCP sockets in CLOSE_WAIT (the peer closed, the broker never did), found as
    /// `ss` finds them: the sockets of `/proc/net/tcp{,6}` in state 08 whose inode is one of the
    /// process's descriptors.
    pub fn close_wait(&self) -> usize {
        self.sockets(|state, _| state == "08")
    }

    /// The broker's TCP sockets (IPv4 and IPv6) for which `wanted(state, remote port)` holds,
    /// from `/proc/net/tcp{,6}` (state as hex: 01 established, 08 CLOSE_WAIT) matched against
    /// the socket inodes among the process's descriptors.
    pub fn sockets(&self, wanted: impl Fn(&str, Option<u16>) -> bool) -> usize {
        let mut inodes = HashSet::new();
        if let Ok(entries) = std::fs::read_dir(format!("/proc/{}/fd", self.pid)) {
            for entry in entries.flatten() {
                if let Ok(target) = std::fs::read_link(entry.path()) {
                    let target = target.to_string_lossy().to_string();
                    if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                        inodes.insert(inode.to_string());
                    }
                }
            }
        }
        let mut count = 0;
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() <= 9 || !inodes.contains(fields[9]) {
                    continue;
                }
                let remote_port =
                    fields[2].rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                if wanted(fields[3], remote_port) {
                    count += 1;
                }
            }
        }
        count
    }

    /// One value of `/metrics` (`name{labels}` as printed), 0 when absent.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.scrape().await?;
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }

    /// The `/metrics` page.
    pub async fn scrape(&self) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(self.metrics).await?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: stress\r\nConnection: close\r\n\r\n").await?;
        let mut body = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut body)).await??;
        Ok(body)
    }

    /// A snapshot from the monitor socket.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let stream = UnixStream::connect(&self.monitor).await?;
        let (read, mut write) = stream.into_split();
        write.write_all(b"{\"method\":\"refresh\",\"params\":{\"printAll\":true}}\n").await?;
        let mut lines = BufReader::new(read).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await??
            .context("the monitor closed")?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Waits (bounded by [`SETTLE`]) until the broker has no v1 client, no tunnel and no v2
    /// server or client left, and its descriptors are back to `fds`; what is left otherwise.
    pub async fn settles_at(&self, fds: u64) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let left = match self.snapshot().await {
                Ok(s) => {
                    let v2 = &s.tunnel_proxy_statistic;
                    let (clients, tunnels) = (s.proxy_statistic.client_count, s.proxy_statistic.tunnel_count);
                    let (servers, v2_clients) =
                        (v2.server_connections_count, v2.client_connections_count.max(v2.total_client_count));
                    // The monitor connection asking is one descriptor of its own until it closes.
                    if clients + tunnels + servers + v2_clients == 0 && self.fds() <= fds {
                        return Ok(start.elapsed());
                    }
                    format!(
                        "{clients} v1 clients, {tunnels} tunnels, {servers} v2 servers, {v2_clients} v2 clients, \
                         {} descriptors (started with {fds})",
                        self.fds()
                    )
                }
                Err(e) => format!("no snapshot: {e}"),
            };
            if start.elapsed() > SETTLE {
                return Err(left);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `signal` (a `kill` name: `TERM`, `KILL`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.pid);
        }
        Ok(())
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(limit, self.child.wait()).await.context("the broker did not exit")??)
    }
}

fn unbound() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
