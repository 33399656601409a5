//! Entry points for fuzzing untrusted input: each takes arbitrary bytes, runs one parser the
//! network or an operator feeds, and panics only when an invariant breaks. The cargo-fuzz targets
//! in `fuzz/` call them on nightly; on stable, `cargo test` replays every corpus file kept in
//! `fuzz/corpus/<target>/` through the same functions, and proptest checks the invariants on
//! generated input. Hidden from the documentation: a test seam, not an API.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use futures_util::{FutureExt, StreamExt};
use remoteproxy_wire as slip;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::{DecodeError, Decoder, Request};
use crate::transport::proxy_protocol::{self, Step};
use crate::transport::websocket::{WebSocket, frame};

/// The message size limit the JSON targets run with: small, so inputs reach it.
pub const MAX_MESSAGE: usize = 1024;

/// The largest SLIP payload the SLIP target accepts.
pub const MAX_FRAME: usize = 256;

/// The JSON stream decoder, fed `data[1..]` whole and in chunks of a size `data[0]` chooses.
/// It must never hold more than the limit plus one read, and chunking must not change what it
/// decodes: of the two message lists, one is a prefix of the other (chunking can only make an
/// over-long message fail earlier), and they are equal when neither failed. Every decoded
/// message also goes through the request validator.
pub fn json_stream(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else { return };
    let chunk = usize::from(seed % 64) + 1;
    let (whole, whole_error) = decode(data, data.len().max(1));
    let (split, split_error) = decode(data, chunk);
    let (shorter, longer) = if whole.len() <= split.len() { (&whole, &split) } else { (&split, &whole) };
    assert_eq!(shorter[..], longer[..shorter.len()], "chunks of {chunk} changed what was decoded");
    if whole_error.is_none() && split_error.is_none() {
        assert_eq!(whole, split, "chunks of {chunk} changed what was decoded");
    }
    for message in whole {
        let _ = Request::parse(message);
    }
}

/// Decodes `data` fed in `chunk`-byte reads: the messages, and the error that ended it.
pub(crate) fn decode(data: &[u8], chunk: usize) -> (Vec<Value>, Option<DecodeError>) {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut messages = Vec::new();
    for piece in data.chunks(chunk) {
        decoder.extend(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => return (messages, Some(error)),
            }
        }
        assert!(
            decoder.buffered() <= MAX_MESSAGE + chunk,
            "the decoder holds {} bytes, more than the limit and one read",
            decoder.buffered()
        );
    }
    (messages, None)
}

/// The request validator on whatever JSON `data` is.
pub fn request(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let _ = Request::parse(value);
    }
}

/// The SLIP decoder on `data[1..]` in chunks of a size `data[0]` chooses: it never holds more
/// than a frame, and every frame it accepts encodes and decodes back to itself.
pub fn slip(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else { return };
    let chunk = usize::from(seed % 32) + 1;
    let mut decoder = slip::Decoder::new(MAX_FRAME);
    let mut frames = Vec::new();
    for piece in data.chunks(chunk) {
        decoder.decode(piece, |frame| frames.push(frame));
        assert!(decoder.pending() <= MAX_FRAME + 2, "the SLIP decoder holds {} bytes", decoder.pending());
    }
    for frame in frames.into_iter().flatten() {
        let encoded = slip::encode(frame.address, &frame.payload);
        let mut again = Vec::new();
        slip::Decoder::new(MAX_FRAME).decode(&encoded, |f| again.push(f));
        assert_eq!(again, vec![Ok(frame)], "a frame did not survive encode and decode");
    }
}

/// The configuration reader on `data` as a file: it refuses with one line, or reads.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(error) = crate::config::parse_str(&text, Path::new("fuzz.conf")) {
        let message = error.to_string();
        assert!(!message.contains('\n'), "a configuration error of more than one line: {message:?}");
    }
}

/// The PROXY protocol header reader on `data` as a connection's first bytes: it reads exactly
/// what it asks for and never past the header (whatever follows does not change the outcome),
/// and never asks for more than a header can hold.
pub fn proxy_header(data: &[u8]) {
    let (consumed, outcome) = read_proxy_header(data);
    assert!(consumed <= 16 + usize::from(u16::MAX), "read {consumed} bytes for one header");
    if let Some(Ok(_)) = &outcome {
        let mut followed = data[..consumed].to_vec();
        followed.extend_from_slice(b"\x16\x03\x01 what follows the header");
        assert_eq!(read_proxy_header(&followed), (consumed, outcome), "bytes after the header changed it");
    }
}

type HeaderOutcome = Option<Result<Option<std::net::SocketAddr>, proxy_protocol::HeaderError>>;

/// Feeds `data` to [`proxy_protocol::step`] as it asks: the bytes it took and its outcome
/// (`None`: the input ended first).
fn read_proxy_header(data: &[u8]) -> (usize, HeaderOutcome) {
    let mut taken = 0;
    loop {
        match proxy_protocol::step(&data[..taken]) {
            Step::Done(result) => return (taken, Some(result)),
            Step::Read(n) if taken + n > data.len() => return (taken, None),
            Step::Read(n) => {
                assert!(n > 0, "asked to read nothing");
                taken += n;
            }
        }
    }
}

/// The WebSocket layer of a tunnel: `data[1..]` is what a client sends after the upgrade, read
/// in chunks of a size `data[0]` chooses. Chunking changes nothing (the same messages, the
/// same bytes for the tunnel, the same end); no message is larger than the limit; and the data
/// messages, framed again, decode to themselves.
pub fn websocket(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else { return };
    let chunk = usize::from(seed % 64) + 1;
    let whole = websocket_messages(data, data.len().max(1));
    let split = websocket_messages(data, chunk);
    assert_eq!(whole, split, "chunks of {chunk} changed what the WebSocket layer read");
    let (messages, _) = whole;
    let mut again = Vec::new();
    for message in &messages {
        assert!(message.len() <= MAX_MESSAGE, "a message of {} bytes passed the limit", message.len());
        let first = match message {
            Message::Binary(_) => 0x82,
            Message::Text(_) => 0x81,
            _ => continue,
        };
        again.extend(frame::client_frame(first, &message.clone().into_data(), [0x37, 0xfa, 0x21, 0x3d]));
    }
    let data_only: Vec<Message> =
        messages.into_iter().filter(|m| matches!(m, Message::Binary(_) | Message::Text(_))).collect();
    let (reread, _) = websocket_messages(&again, again.len().max(1));
    assert_eq!(reread, data_only, "data messages framed again did not read back the same");
}

/// What the broker's WebSocket layer reads from `data` fed in `chunk`-byte reads: the messages,
/// and how the stream ended (the error's text, or `None` for a clean close).
fn websocket_messages(data: &[u8], chunk: usize) -> (Vec<Message>, Option<String>) {
    let replay = Replay { data: bytes::Bytes::copy_from_slice(data), chunk };
    let mut socket = WebSocket::new(replay, bytes::BytesMut::new(), MAX_MESSAGE, None);
    let mut messages = Vec::new();
    loop {
        let next = socket.next().now_or_never().expect("the WebSocket layer waited on input that was ready");
        match next {
            None => return (messages, None),
            Some(Ok(message)) => messages.push(message),
            Some(Err(error)) => return (messages, Some(error.to_string())),
        }
    }
}

/// A client's bytes, handed out `chunk` at a time; whatever the broker writes is dropped.
/// (Owned: the WebSocket layer takes `'static` streams, as it may hand frames to a link.)
struct Replay {
    data: bytes::Bytes,
    chunk: usize,
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A fuzz target: bytes in, a panic only when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: [(&str, Target); 6] = [
    ("json_stream", json_stream),
    ("request", request),
    ("slip", slip),
    ("config", config),
    ("proxy_header", proxy_header),
    ("websocket", websocket),
];

#[cfg(test)]
#[path = "fuzzing_tests.rs"]
mod tests;
