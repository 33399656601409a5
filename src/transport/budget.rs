//! A read budget under the WebSocket codec.
//!
//! tungstenite assembles a whole message before it hands it over, up to its configured maximum
//! (16 MiB, which tunnel traffic may need). Before a connection is a tunnel that would let an
//! unauthenticated client make the broker buffer megabytes. This wrapper counts the bytes read
//! from the socket since the last complete message and fails the read once they pass the
//! pre-tunnel limit, so the handshake phase stays within `maxMessageSize` plus one read. When the
//! connection becomes a tunnel the budget is lifted.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error a budget overrun surfaces as (inside tungstenite's `Error::Io`).
pub const BUDGET_EXCEEDED: &str = "pre-tunnel message size limit exceeded";

/// A stream whose reads fail after `limit` bytes until [`ReadBudget::reset`].
#[derive(Debug)]
pub struct ReadBudget<S> {
    inner: S,
    used: usize,
    limit: Option<usize>,
}

impl<S> ReadBudget<S> {
    /// Wraps `inner` with a budget of `limit` bytes.
    pub fn new(inner: S, limit: usize) -> Self {
        ReadBudget { inner, used: 0, limit: Some(limit) }
    }

    /// A complete message was delivered: start counting again.
    pub fn reset(&mut self) {
        self.used = 0;
    }

    /// The connection is a tunnel now: no limit but tungstenite's own.
    pub fn lift(&mut self) {
        self.limit = None;
    }

    /// Whether an error is this wrapper's overrun.
    pub fn is_overrun(error: &io::Error) -> bool {
        error.kind() == io::ErrorKind::InvalidData && error.to_string() == BUDGET_EXCEEDED
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBudget<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.limit.is_some_and(|limit| self.used > limit) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, BUDGET_EXCEEDED)));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.used += buf.filled().len() - before;
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBudget<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_fail_past_the_limit_until_reset_or_lifted() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut budget = ReadBudget::new(server, 10);
        let mut buf = [0u8; 64];
        client.write_all(&[1; 11]).await.unwrap();
        assert_eq!(budget.read(&mut buf).await.unwrap(), 11);
        client.write_all(&[2; 4]).await.unwrap();
        let err = budget.read(&mut buf).await.unwrap_err();
        assert!(ReadBudget::<()>::is_overrun(&err));
        budget.reset();
        assert_eq!(budget.read(&mut buf).await.unwrap(), 4);
        budget.lift();
        client.write_all(&[3; 40]).await.unwrap();
        assert_eq!(budget.read(&mut buf).await.unwrap(), 40);
    }
}
