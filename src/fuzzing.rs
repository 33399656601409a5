//! Entry points for fuzzing untrusted input: each takes arbitrary bytes, runs one parser the
//! network or an operator feeds, and panics only when an invariant breaks. The cargo-fuzz targets
//! in `fuzz/` call them on nightly; on stable, `cargo test` replays every corpus file kept in
//! `fuzz/corpus/<target>/` through the same functions, and proptest checks the invariants on
//! generated input. Hidden from the documentation: a test seam, not an API.

use std::path::Path;

use remoteproxy_wire as slip;
use serde_json::Value;

use crate::protocol::{DecodeError, Decoder, Request};

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

/// A fuzz target: bytes in, a panic only when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: [(&str, Target); 4] =
    [("json_stream", json_stream), ("request", request), ("slip", slip), ("config", config)];

#[cfg(test)]
#[path = "fuzzing_tests.rs"]
mod tests;
