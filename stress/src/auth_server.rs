//! A local HTTP authenticator for the broker's `type=http` (README: `{"token",...}` POSTed,
//! `{"valid":true,"userName":..}` back), whose behaviour a scenario switches while the broker
//! runs: answering, hanging, failing, slow. Tokens starting with `bench-` (the bench client's)
//! are valid; every other token is refused, so a flood of bad tokens is refused for real.
//! Hand-written on a raw socket: it serves one endpoint with one JSON body, and must be able to
//! misbehave in ways an HTTP library would not let it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the authenticator behaves now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers at once.
    Answer,
    /// Reads the request and never answers.
    Hang,
    /// Answers `500 Internal Server Error`.
    Fail,
    /// Answers after this many milliseconds.
    Slow(u64),
}

/// The running authenticator.
pub struct AuthServer {
    pub address: SocketAddr,
    mode: Arc<AtomicU64>,
    /// Requests received so far.
    pub requests: Arc<AtomicUsize>,
}

impl AuthServer {
    /// Listens on 127.0.0.1:0 and serves in the background.
    pub async fn start() -> std::io::Result<AuthServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mode = Arc::new(AtomicU64::new(encode(Mode::Answer)));
        let requests = Arc::new(AtomicUsize::new(0));
        let (m, n) = (mode.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, m.clone(), n.clone()));
            }
        });
        Ok(AuthServer { address, mode, requests })
    }

    /// Switches the behaviour for the requests that come next.
    pub fn set(&self, mode: Mode) {
        self.mode.store(encode(mode), Ordering::SeqCst);
    }

    /// The broker's `[Authentication]` sections pointing at this server, with
    /// `authenticationTimeout` going into `[ProxyServer]` separately.
    pub fn sections(&self) -> String {
        format!("[Authentication]\ntype=http\n[HttpAuthenticator]\nurl=http://{}/auth\n", self.address)
    }
}

fn encode(mode: Mode) -> u64 {
    match mode {
        Mode::Answer => 0,
        Mode::Hang => 1,
        Mode::Fail => 2,
        Mode::Slow(ms) => 3 + ms,
    }
}

fn decode(value: u64) -> Mode {
    match value {
        0 => Mode::Answer,
        1 => Mode::Hang,
        2 => Mode::Fail,
        ms => Mode::Slow(ms - 3),
    }
}

/// Serves requests on one connection (the broker keeps connections alive).
async fn serve(mut stream: TcpStream, mode: Arc<AtomicU64>, requests: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        let Some(body) = read_request(&mut stream, &mut buf).await else { return };
        requests.fetch_add(1, Ordering::Relaxed);
        let token = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        let (status, answer) = match decode(mode.load(Ordering::SeqCst)) {
            Mode::Hang => {
                // Hold the connection open without a word until the broker gives up on it.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
            Mode::Fail => ("500 Internal Server Error", "{}".to_string()),
            Mode::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                verdict(&token)
            }
            Mode::Answer => verdict(&token),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn verdict(token: &str) -> (&'static str, String) {
    if token.starts_with("bench-") {
        ("200 OK", "{\"valid\":true,\"userName\":\"stress\"}".to_string())
    } else {
        ("200 OK", "{\"valid\":false}".to_string())
    }
}

/// One request's body (by `content-length`); `None` when the connection ends.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = buf[end + 4..end + 4 + length].to_vec();
                buf.drain(..end + 4 + length);
                return Some(body);
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
