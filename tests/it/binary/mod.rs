//! The real `remoteproxy` binary for tests: free ports, a temp INI config, TLS off, the v2
//! listeners off; with a configured authenticator or with `-m`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::{TcpStream, UnixStream};

use crate::common::{Client, ClientWire, Kind, WAIT};

pub const BIN: &str = env!("CARGO_BIN_EXE_remoteproxy");

/// The `[ProxyServer] name` of every broker started here; `ready` checks it.
const NAME: &str = "binary-test";

/// A broker process with its own temp directory, config and log files.
pub struct Proc {
    child: Child,
    pub dir: tempfile::TempDir,
    pub tcp: SocketAddr,
    pub unix: PathBuf,
    stderr: PathBuf,
}

/// Writes the config into `dir`: `[ProxyServer] name=binary-test` plus `proxy_server_keys`, TLS
/// off, v1 listeners on the given ports and unix socket, v2 listeners off, then `sections`.
pub fn write_config(
    dir: &Path,
    tcp_port: u16,
    ws_port: u16,
    unix: &Path,
    proxy_server_keys: &str,
    sections: &str,
) -> PathBuf {
    let text = format!(
        "[ProxyServer]\nname={NAME}\nmonitorSocket={}\n{proxy_server_keys}\n\
         [SSL]\nenabled=false\n\
         [WebSocketServer]\nhost=127.0.0.1\nport={ws_port}\n\
         [TcpServer]\nhost=127.0.0.1\nport={tcp_port}\n\
         [UnixSocketServer]\nunixSocketFileName={}\n\
         [WebSocketServerTunnelProxy]\nhost=\n[TcpServerTunnelProxy]\nhost=\n\
         [UnixSocketServerTunnelProxy]\nunixSocketFileName=\n\
         {sections}\n",
        dir.join("monitor.sock").display(),
        unix.display()
    );
    let path = dir.join("remoteproxy.conf");
    std::fs::write(&path, text).unwrap();
    path
}

impl Proc {
    /// Starts `remoteproxy -c <config> --verbose` with a 2 s shutdown grace period in a fresh
    /// temp directory; `sections` (the authenticator's) is built from that directory, to place
    /// token files and the like there.
    pub fn spawn(sections: impl FnOnce(&Path) -> String) -> Proc {
        Self::launch("shutdownGracePeriod=2000", sections, &["--verbose"])
    }

    /// Starts `remoteproxy -c <config> -m`; `proxy_server_keys` go into `[ProxyServer]`.
    pub fn spawn_mock(proxy_server_keys: &str) -> Proc {
        Self::launch(proxy_server_keys, |_| String::new(), &["-m"])
    }

    /// The broker binds port 0 and the test reads the real address from its log: picking a free
    /// port in the test and handing it over races with every other test binding ports.
    pub fn launch(proxy_server_keys: &str, sections: impl FnOnce(&Path) -> String, args: &[&str]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let unix = dir.path().join("proxy.socket");
        let sections = sections(dir.path());
        let config = write_config(dir.path(), 0, 0, &unix, proxy_server_keys, &sections);
        Self::launch_file(dir, &config, args)
    }

    /// Starts the binary on a config file the test wrote into `dir`, with TLS off and the v1 TCP
    /// listener on port 0 (read from the log by `ready`) and the unix socket at
    /// `dir/proxy.socket`.
    pub fn launch_file(dir: tempfile::TempDir, config: &Path, args: &[&str]) -> Proc {
        Self::launch_file_env(dir, config, args, &[])
    }

    /// [`launch_file`](Self::launch_file) with these environment variables set.
    pub fn launch_file_env(
        dir: tempfile::TempDir,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let unix = dir.path().join("proxy.socket");
        let stderr = dir.path().join("stderr.txt");
        let child = Command::new(BIN)
            .arg("-c")
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // Filled in by `ready` from the log.
        let tcp = SocketAddr::from(([127, 0, 0, 1], 0));
        Proc { child, dir, tcp, unix, stderr }
    }

    /// Everything the process wrote to stderr (its log) so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the broker logged its TCP listener's address, then checks it answers Hello;
    /// fails if the process exits first.
    pub async fn ready(&mut self) {
        self.listening().await;
        let stream = TcpStream::connect(self.tcp).await.unwrap();
        let mut client = stream_client(Kind::Tcp, Box::new(stream));
        let hello = client.hello().await;
        assert_eq!(hello["params"]["name"], NAME, "{hello}");
    }

    /// Waits until the broker logged its TCP listener's address (into `self.tcp`); fails if the
    /// process exits first.
    pub async fn listening(&mut self) {
        const LISTENER: &str = "v1 TCP listener address=";
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the broker exited early with {status}: {}", self.stderr_text());
            }
            let log = self.stderr_text();
            if let Some(at) = log.find(LISTENER) {
                let address = log[at + LISTENER.len()..].split_whitespace().next().unwrap_or_default();
                self.tcp = address.parse().unwrap_or_else(|_| panic!("cannot read the address in: {log}"));
                break;
            }
            assert!(Instant::now() < deadline, "the broker did not start listening: {log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client on the TCP or unix listener.
    pub async fn client(&self, kind: Kind) -> Client {
        match kind {
            Kind::Tcp => {
                let stream = TcpStream::connect(self.tcp).await.unwrap();
                stream.set_nodelay(true).unwrap();
                stream_client(kind, Box::new(stream))
            }
            Kind::Unix => stream_client(kind, Box::new(UnixStream::connect(&self.unix).await.unwrap())),
            Kind::WebSocket => unimplemented!("not needed here"),
        }
    }

    /// Sends a signal (`HUP`, `TERM`) with `kill`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (bounded) until the log contains `text`.
    pub async fn logged(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr_text().contains(text) {
            assert!(Instant::now() < deadline, "never logged {text:?}; log:\n{}", self.stderr_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded by `limit`) for the process to exit; kills it and fails otherwise.
    pub async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let stderr = self.stderr.clone();
        wait_child(&mut self.child, limit, &stderr).await
    }

    /// Resident set size in KiB, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// SIGTERM, then the exit (bounded); returns the whole log.
    pub async fn stop(mut self) -> String {
        self.signal("TERM");
        let status = self.exit_status(WAIT).await;
        assert!(status.success(), "{status}: {}", self.stderr_text());
        self.stderr_text()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits (bounded by `limit`) for `child` to exit; kills it and fails otherwise.
pub async fn wait_child(child: &mut Child, limit: Duration, stderr: &Path) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(stderr).unwrap_or_default();
            panic!("the broker did not exit within {limit:?}; stderr: {text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the binary with `-c config` and `args` to its exit (bounded); returns (code, stderr).
pub async fn run_to_exit(config: &Path, dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let stderr_path = dir.join("stderr.txt");
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, WAIT, &stderr_path).await;
    (status.code(), std::fs::read_to_string(&stderr_path).unwrap_or_default())
}

pub fn stream_client(kind: Kind, stream: Box<dyn crate::common::Io>) -> Client {
    Client { kind, wire: ClientWire::Stream(stream), buf: BytesMut::new() }
}

/// Asserts that none of `secrets` appears in `log` (a binary's whole log).
pub fn assert_not_in_log(log: &str, secrets: &[&str]) {
    assert!(!log.is_empty(), "the binary logged nothing; the check would prove nothing");
    for secret in secrets {
        assert!(!secret.is_empty());
        if let Some(line) = log.lines().find(|line| line.contains(secret)) {
            panic!("a secret reached the binary's log: {line}");
        }
    }
}
