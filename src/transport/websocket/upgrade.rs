//! The server side of the HTTP/1.1 upgrade to WebSocket (RFC 6455 §4.2).
//!
//! Read by hand with `httparse` rather than through tungstenite's handshake so that the bytes a
//! client sends right behind its request (its first frames) stay with the broker's own frame
//! reader, and so a request that is not an upgrade (a browser, curl, a health check) gets a short
//! HTTP answer instead of a silent close.

use std::fmt;
use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::HALF_CLOSE_HEADER;

/// The longest request head accepted; browsers send well under 2 KiB.
const MAX_HEAD: usize = 16 << 10;

/// The most header lines accepted.
const MAX_HEADERS: usize = 64;

/// What the upgrade agreed.
#[derive(Debug)]
pub struct Upgraded {
    /// Bytes the client sent after its request: the start of its first frames.
    pub tail: BytesMut,
    /// The client asked for half-close and was granted it.
    pub half_close: bool,
    /// The request's path (the rendezvous listener's meeting id is in it).
    pub path: String,
}

/// Why an upgrade failed (logged at debug level: scanners are routine).
#[derive(Debug)]
pub enum UpgradeError {
    Io(io::Error),
    /// The request was not an acceptable upgrade; the client got this HTTP status.
    Refused(u16, &'static str),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Io(error) => write!(f, "{error}"),
            UpgradeError::Refused(status, why) => write!(f, "answered {status}: {why}"),
        }
    }
}

impl From<io::Error> for UpgradeError {
    fn from(error: io::Error) -> Self {
        UpgradeError::Io(error)
    }
}

/// The request's parts the upgrade needs.
struct Request {
    key: String,
    half_close: bool,
    path: String,
}

/// Reads the request, answers `101 Switching Protocols` or an error status. `offer_half_close`:
/// a client that asks for half-close gets it.
/// With `path_prefix`, a path outside it is answered `404 Not Found` (the rendezvous listener:
/// nothing but meetings lives there).
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    offer_half_close: bool,
    health_path: Option<&str>,
    path_prefix: Option<&str>,
) -> Result<Upgraded, UpgradeError> {
    let mut buf = BytesMut::with_capacity(1024);
    let (request, head_len) = loop {
        if buf.len() >= MAX_HEAD {
            return Err(refuse(stream, 431, "request head too large").await);
        }
        buf.reserve(1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(UpgradeError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        match parse(&buf) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => continue,
            Err((426, _)) if health_path.is_some() && plain_get_of(&buf) == health_path => {
                return Err(healthy(stream).await);
            }
            Err((status, why)) => return Err(refuse(stream, status, why).await),
        }
    };
    if let Some(prefix) = path_prefix
        && !request.path.starts_with(prefix)
    {
        return Err(refuse(stream, 404, "no meeting at this path").await);
    }
    let half_close = offer_half_close && request.half_close;
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(request.key.as_bytes())
    );
    if half_close {
        response.push_str(HALF_CLOSE_HEADER);
        response.push_str(": 1\r\n");
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    let tail = buf.split_off(head_len);
    Ok(Upgraded { tail, half_close, path: request.path })
}

/// Parses a complete request head: `Ok(None)` while incomplete, or the status to refuse with.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, (u16, &'static str)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err((431, "too many header lines")),
        Err(_) => return Err((400, "not an HTTP request")),
    };
    if request.method != Some("GET") {
        return Err((405, "not a GET request"));
    }
    if request.version != Some(1) {
        return Err((400, "not HTTP/1.1"));
    }
    let header =
        |name: &str| request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let has_token = |name: &str, token: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|value| value.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Err((426, "not a WebSocket upgrade"));
    }
    if header("Sec-WebSocket-Version") != Some(b"13") {
        return Err((426, "unsupported WebSocket version"));
    }
    let key = match header("Sec-WebSocket-Key").map(std::str::from_utf8) {
        Some(Ok(key)) if !key.trim().is_empty() => key.trim().to_string(),
        _ => return Err((400, "no Sec-WebSocket-Key")),
    };
    let half_close = header(HALF_CLOSE_HEADER) == Some(b"1");
    let path = request.path.unwrap_or("/").to_string();
    Ok(Some((Request { key, half_close, path }, head_len)))
}

/// The path of a complete plain `GET` request head (no query string), if that is what `buf` is.
fn plain_get_of(buf: &[u8]) -> Option<&str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) if request.method == Some("GET") => {
            request.path.map(|path| path.split('?').next().unwrap_or(path))
        }
        _ => None,
    }
}

/// Answers a load balancer's health check: the broker is up and accepting.
async fn healthy<S: AsyncWrite + Unpin>(stream: &mut S) -> UpgradeError {
    let response = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Content-Length: 3\r\n\r\nOK\n";
    match answer(stream, response).await {
        Ok(()) => UpgradeError::Refused(200, "health check"),
        Err(error) => UpgradeError::Io(error),
    }
}

/// Answers a refused request with a short plain-text response and reports why.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, why: &'static str) -> UpgradeError {
    let reason = match status {
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = "This is a remoteproxy WebSocket endpoint: connect with a WebSocket client.\n";
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match answer(stream, &response).await {
        Ok(()) => UpgradeError::Refused(status, why),
        Err(error) => UpgradeError::Io(error),
    }
}

/// Writes a whole HTTP answer and ends the connection's sending side.
async fn answer<S: AsyncWrite + Unpin>(stream: &mut S, response: &str) -> io::Result<()> {
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /any/path HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
                           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    async fn run(request: &[u8], offer_half_close: bool) -> (Result<Upgraded, UpgradeError>, String) {
        let (mut client, mut server) = tokio::io::duplex(64 << 10);
        client.write_all(request).await.unwrap();
        let result = upgrade(&mut server, offer_half_close, Some("/healthz"), None).await;
        drop(server);
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        (result, answer)
    }

    #[tokio::test]
    async fn an_upgrade_is_answered_with_the_rfc_accept_key_and_keeps_the_tail() {
        let request = [format!("{UPGRADE}\r\n").as_bytes(), b"\x81\x85"].concat();
        let (result, answer) = run(&request, true).await;
        let upgraded = result.unwrap();
        assert!(answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{answer}");
        // The example of RFC 6455 §1.3.
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{answer}");
        assert!(!answer.contains(HALF_CLOSE_HEADER));
        assert_eq!(&upgraded.tail[..], b"\x81\x85");
        assert!(!upgraded.half_close);
    }

    #[tokio::test]
    async fn half_close_is_granted_only_when_offered() {
        let request = format!("{UPGRADE}{HALF_CLOSE_HEADER}: 1\r\n\r\n");
        let (result, answer) = run(request.as_bytes(), true).await;
        assert!(result.unwrap().half_close);
        assert!(answer.contains(&format!("{HALF_CLOSE_HEADER}: 1\r\n")));
        let (result, answer) = run(request.as_bytes(), false).await;
        assert!(!result.unwrap().half_close);
        assert!(!answer.contains(HALF_CLOSE_HEADER));
    }

    #[tokio::test]
    async fn the_health_path_gets_200_and_nothing_else_does() {
        let (result, answer) = run(b"GET /healthz?probe=1 HTTP/1.1\r\nHost: lb\r\n\r\n", false).await;
        assert!(matches!(result, Err(UpgradeError::Refused(200, _))));
        assert_eq!(
            answer,
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\r\nOK\n"
        );
        for other in [
            &b"GET /healthzz HTTP/1.1\r\nHost: lb\r\n\r\n"[..],
            b"POST /healthz HTTP/1.1\r\nHost: lb\r\n\r\n",
        ] {
            let (result, answer) = run(other, false).await;
            assert!(!matches!(result, Err(UpgradeError::Refused(200, _))), "{answer}");
        }
        // An upgrade on the health path is still an upgrade.
        let request = format!("{}\r\n", UPGRADE.replacen("/any/path", "/healthz", 1));
        let (result, answer) = run(request.as_bytes(), false).await;
        assert!(result.is_ok() && answer.starts_with("HTTP/1.1 101"), "{answer}");
    }

    #[tokio::test]
    async fn plain_http_gets_426_and_nonsense_400() {
        let (result, answer) = run(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
        assert!(matches!(result, Err(UpgradeError::Refused(426, _))));
        assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{answer}");
        assert!(answer.ends_with("connect with a WebSocket client.\n"));
        let (result, _) = run(b"\x16\x03\x01 not http\r\n\r\n", false).await;
        assert!(matches!(result, Err(UpgradeError::Refused(400, _))));
        let (result, _) = run(b"POST / HTTP/1.1\r\n\r\n", false).await;
        assert!(matches!(result, Err(UpgradeError::Refused(405, _))));
        let old = UPGRADE.replace("Version: 13", "Version: 8") + "\r\n";
        let (result, answer) = run(old.as_bytes(), false).await;
        assert!(matches!(result, Err(UpgradeError::Refused(426, _))));
        assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[tokio::test]
    async fn an_endless_head_is_refused_at_the_limit() {
        let mut request = b"GET / HTTP/1.1\r\n".to_vec();
        while request.len() < MAX_HEAD + 100 {
            request.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let (result, _) = run(&request, false).await;
        assert!(matches!(result, Err(UpgradeError::Refused(431, _))));
    }
}
