//! The PROXY protocol (v1 text and v2 binary, HAProxy's specification): behind a load balancer
//! every connection comes from the balancer, and the header it sends first says who the client
//! is. That client address then stands for the connection everywhere: logs, `[Limits]`, the
//! authenticator's facts, the monitor and the statistics log.
//!
//! `[ProxyProtocol] trusted` lists the senders. A connection from a trusted address must start
//! with a valid header within `tlsHandshakeTimeout`, or it is closed. A connection from any other
//! address is served as a direct client under its own address, unless its first byte is the
//! start of a header (`P` of `PROXY `, `\r` of the v2 signature: neither a TLS ClientHello nor an
//! HTTP request starts with them, `POST`/`PUT` excepted, which are told apart by the second
//! byte), in which case it is closed: nobody but a trusted balancer may say who a client is.
//!
//! The header is parsed by the `ppp` crate. Reading it is ours: exactly the header's bytes are
//! read, never one more, because what follows belongs to TLS or the WebSocket upgrade ([`step`]
//! says how many to read next, and is what the fuzz target drives).

use std::io;
use std::net::SocketAddr;

use ppp::v2::PROTOCOL_PREFIX as V2_SIGNATURE;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

pub use crate::config::Trusted;

/// How a v1 header starts.
const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 header is at most 107 bytes, CRLF included.
pub const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The shortest v1 header, `PROXY UNKNOWN\r\n`: read at once, whatever the version.
const FIRST_READ: usize = 15;

/// Why a header was not accepted (logged at debug; the refusal is counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first bytes are not a header's.
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    /// They start like one, but `ppp` does not accept it.
    #[error("the PROXY protocol header is malformed")]
    Malformed,
    /// A v1 line without its CRLF within 107 bytes.
    #[error("the PROXY protocol v1 header is longer than 107 bytes")]
    TooLong,
    /// The connection ended first.
    #[error("the connection closed before the PROXY protocol header was complete")]
    Closed,
}

/// What [`step`] decided about the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read exactly this many more bytes (never past the header's end).
    Read(usize),
    /// The header is complete: the client's address, or `None` when the header names none
    /// (v2 `LOCAL`, a balancer's own health check; v1 `UNKNOWN`; a family other than IP), in
    /// which case the connection's own address stands.
    Done(Result<Option<SocketAddr>, HeaderError>),
}

/// Given the first bytes of a connection, how many more to read, or the header's outcome.
/// `buf` holds exactly the bytes read so far, as this function asked for them.
pub fn step(buf: &[u8]) -> Step {
    let starts = |prefix: &[u8]| {
        let n = buf.len().min(prefix.len());
        buf[..n] == prefix[..n]
    };
    if !starts(V2_SIGNATURE) && !starts(V1_PREFIX) {
        return Step::Done(Err(HeaderError::Missing));
    }
    if buf.len() < FIRST_READ {
        return Step::Read(FIRST_READ - buf.len());
    }
    if buf.starts_with(V2_SIGNATURE) {
        if buf.len() < V2_FIXED {
            return Step::Read(V2_FIXED - buf.len());
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if buf.len() < total {
            return Step::Read(total - buf.len());
        }
        return Step::Done(v2_address(buf));
    }
    // v1: one line; read a byte at a time so nothing after its CRLF is taken.
    if !buf.ends_with(b"\r\n") {
        return if buf.len() >= V1_MAX { Step::Done(Err(HeaderError::TooLong)) } else { Step::Read(1) };
    }
    Step::Done(v1_address(buf))
}

fn v1_address(buf: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v1::{Addresses, Header};
    let header = Header::try_from(buf).map_err(|_| HeaderError::Malformed)?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unknown => None,
    })
}

fn v2_address(buf: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(buf).map_err(|_| HeaderError::Malformed)?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

/// Reads the header at the start of `stream`, exactly its bytes.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match step(&buf) {
            Step::Done(result) => return result,
            Step::Read(n) => {
                let start = buf.len();
                buf.resize(start + n, 0);
                stream.read_exact(&mut buf[start..]).await.map_err(|_| HeaderError::Closed)?;
            }
        }
    }
}

/// Whether a connection from an untrusted address starts like a PROXY protocol header. Only
/// peeks, so the bytes stay for TLS or the upgrade. `POST` and `PUT` share the `P`; the second
/// byte tells them from `PROXY`, and is waited for only when the first is a `P`.
pub async fn starts_like_header(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 2];
    loop {
        let n = stream.peek(&mut first).await?;
        match (n, first[0]) {
            (0, _) => return Ok(false),
            (_, b'\r') => return Ok(true),
            (_, b'P') if n >= 2 => return Ok(first[1] == b'R'),
            (_, b'P') => {
                // Only the `P` has come: peeking again at once would see the same byte, so
                // wait a moment for the next (rare: clients send their first line at once).
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            _ => return Ok(false),
        }
    }
}

#[cfg(test)]
#[path = "proxy_protocol_tests.rs"]
mod tests;
