//! A `redis-server` of the scenario's own, on a free loopback port, saving nothing: the registry
//! of the cluster scenario's nodes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running `redis-server`, killed when dropped.
pub struct Redis {
    _child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Redis {
    /// Starts one (trying another free port if the first was taken in between).
    pub async fn start() -> anyhow::Result<Redis> {
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let dir = tempfile::tempdir()?;
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("cannot run redis-server; install it (Debian: apt-get install redis-server)")?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && child.try_wait()?.is_none() {
                if ping(port).await {
                    return Ok(Redis { _child: child, _dir: dir, port });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        bail!("redis-server did not start on any free port")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut answer)).await, Ok(Ok(_)))
        && &answer == b"+PONG\r\n"
}
