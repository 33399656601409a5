//! The connection to the broker's monitor socket, in request mode: each refresh sends
//! `{"method":"refresh","params":{"printAll":…}}` and reads one snapshot, so the monitor never
//! depends on when the broker pushes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::snapshot::Snapshot;

/// How long connecting or one answer may take.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest snapshot accepted.
pub const MAX_SNAPSHOT: usize = 64 << 20;

/// Why there is no snapshot; each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to the monitor socket {}: {}", .path.display(), connect_reason(.source))]
    Connect { path: PathBuf, source: io::Error },
    #[error("the broker did not answer within {} s", ANSWER_TIMEOUT.as_secs())]
    Timeout,
    #[error("the broker closed the monitor connection")]
    Closed,
    #[error("monitor connection: {0}")]
    Io(#[from] io::Error),
    #[error("the broker sent something that is not a snapshot: {0}")]
    Invalid(String),
    #[error("the broker sent a snapshot larger than {} MiB", MAX_SNAPSHOT >> 20)]
    TooLarge,
}

fn connect_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => {
            "no such socket (is the broker running? is this its monitorSocket?)".into()
        }
        io::ErrorKind::ConnectionRefused => "connection refused (the broker is not running)".into(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (see the broker's monitorSocketMode and the socket's group)".into()
        }
        io::ErrorKind::TimedOut => "timed out".into(),
        _ => error.to_string(),
    }
}

/// One snapshot as the broker sent it, and parsed.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The JSON text (without the line end).
    pub raw: String,
    pub snapshot: Snapshot,
}

/// A monitor connection.
pub struct Connection {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Connection {
    /// Connects to the monitor socket at `path`.
    pub async fn connect(path: &Path) -> Result<Connection, Error> {
        let connect = tokio::time::timeout(ANSWER_TIMEOUT, UnixStream::connect(path))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        match connect {
            Ok(stream) => Ok(Connection { stream, buf: Vec::new() }),
            Err(source) => Err(Error::Connect { path: path.to_path_buf(), source }),
        }
    }

    /// Asks for a snapshot and waits (bounded) for it.
    pub async fn refresh(&mut self, print_all: bool) -> Result<Reply, Error> {
        self.discard_stale()?;
        let request = format!("{{\"method\":\"refresh\",\"params\":{{\"printAll\":{print_all}}}}}\n");
        tokio::time::timeout(ANSWER_TIMEOUT, async {
            self.stream.write_all(request.as_bytes()).await?;
            self.read_reply().await
        })
        .await
        .map_err(|_| Error::Timeout)?
    }

    /// Drops complete snapshots that arrived unasked (one the broker pushed before it read the
    /// first request, or the pushes of a 1.x broker), so the answer read next is a fresh one. An
    /// incomplete one is kept: it is fresh when it completes.
    fn discard_stale(&mut self) -> Result<(), Error> {
        let mut chunk = [0u8; 16384];
        while self.buf.len() <= MAX_SNAPSHOT {
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<IgnoredAny>();
        let mut end = 0;
        loop {
            match values.next() {
                Some(Ok(_)) => end = values.byte_offset(),
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(Error::Invalid(e.to_string())),
                None => {
                    end = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..end);
        Ok(())
    }

    /// Reads one JSON value: a line from this broker, or an indented object from a 1.x one.
    async fn read_reply(&mut self) -> Result<Reply, Error> {
        loop {
            let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let end = values.byte_offset();
                    let raw = String::from_utf8_lossy(&self.buf[..end]).trim().to_string();
                    self.buf.drain(..end);
                    let snapshot =
                        serde_json::from_value(value).map_err(|e| Error::Invalid(e.to_string()))?;
                    return Ok(Reply { raw, snapshot });
                }
                Some(Err(e)) if !e.is_eof() => return Err(Error::Invalid(e.to_string())),
                _ => {}
            }
            if self.buf.len() > MAX_SNAPSHOT {
                return Err(Error::TooLarge);
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk).await? {
                0 => return Err(Error::Closed),
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn a_missing_socket_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.sock");
        let error = Connection::connect(&path).await.err().unwrap().to_string();
        assert!(error.contains(&path.display().to_string()) && error.contains("no such socket"), "{error}");
        assert!(!error.contains('\n'));

        // A socket file nobody listens on (a broker that died).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let error = Connection::connect(&path).await.err().unwrap().to_string();
        assert!(error.contains("the broker is not running"), "{error}");
    }

    #[tokio::test]
    async fn requests_carry_print_all_and_unasked_snapshots_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let broker = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            // A push the client did not ask for, then one answer per request; the second is
            // indented over several lines and split over writes, as a 1.x broker might send.
            write.write_all(b"{\"serverName\":\"pushed\"}\n").await.unwrap();
            let mut lines = BufReader::new(read).lines();
            let mut requests = Vec::new();
            for answer in
                ["{\"serverName\":\"one\"}\n", "{\n  \"serverName\": \"two\",\n  \"uptime\": 3\n}\n"]
            {
                requests.push(lines.next_line().await.unwrap().unwrap());
                let (a, b) = answer.split_at(5);
                write.write_all(a.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                write.write_all(b.as_bytes()).await.unwrap();
            }
            requests.push(lines.next_line().await.unwrap().unwrap());
            write.write_all(b"not json\n").await.unwrap();
            requests
        });
        let mut connection = Connection::connect(&path).await.unwrap();
        // Let the unasked push arrive first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let one = connection.refresh(true).await.unwrap();
        assert_eq!(
            (one.raw.as_str(), one.snapshot.server_name.as_str()),
            ("{\"serverName\":\"one\"}", "one")
        );
        let two = connection.refresh(false).await.unwrap();
        assert_eq!((two.snapshot.server_name.as_str(), two.snapshot.uptime), ("two", Some(3)));
        assert!(matches!(connection.refresh(false).await, Err(Error::Invalid(_))));
        assert_eq!(
            broker.await.unwrap(),
            [
                r#"{"method":"refresh","params":{"printAll":true}}"#,
                r#"{"method":"refresh","params":{"printAll":false}}"#,
                r#"{"method":"refresh","params":{"printAll":false}}"#,
            ]
        );
    }
}
