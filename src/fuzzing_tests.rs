//! The fuzz corpora replayed on stable, and the invariants as proptest properties.

use std::path::Path;

use proptest::prelude::*;
use remoteproxy_wire as slip;
use serde_json::json;

use super::{MAX_FRAME, MAX_MESSAGE, TARGETS, decode};

/// Every file in `fuzz/corpus/<target>/` through its target: what the fuzzer once found (and
/// the seeds) stays checked by every `cargo test`, without libFuzzer.
#[test]
fn every_corpus_file_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} broke an invariant", path.display());
            replayed += 1;
        }
        assert!(replayed > 0, "{name}: the corpus is empty");
    }
}

/// A request as a client might send it.
fn request() -> impl Strategy<Value = serde_json::Value> {
    (0i64..1000, "[A-Za-z]{1,12}\\.[A-Za-z]{1,16}", "[ -~]{0,40}", any::<bool>()).prop_map(|(id, method, text, flag)| {
        json!({"id": id, "method": method, "params": {"token": text, "nonce": text, "flag": flag, "n": [id, -id]}})
    })
}

proptest! {
    /// Any split of a valid request stream into chunks decodes to the same messages.
    #[test]
    fn any_split_of_a_request_stream_decodes_the_same(
        requests in proptest::collection::vec(request(), 1..8),
        separator in prop::sample::select(vec!["\n", "", " ", "\r\n", "\n\n"]),
        chunk in 1usize..200,
    ) {
        let mut stream = Vec::new();
        for request in &requests {
            stream.extend_from_slice(serde_json::to_string(request).unwrap().as_bytes());
            stream.extend_from_slice(separator.as_bytes());
        }
        let (messages, error) = decode(&stream, chunk);
        prop_assert_eq!(error, None);
        prop_assert_eq!(messages, requests);
    }

    /// The decoder never holds more than `maxMessageSize` plus one read, whatever it is fed.
    #[test]
    fn the_decoder_holds_at_most_the_limit_and_one_read(
        data in proptest::collection::vec(any::<u8>(), 0..4 * MAX_MESSAGE),
        chunk in 1usize..512,
    ) {
        // `decode` asserts the bound after every read.
        let _ = decode(&data, chunk);
        let mut text = b"{\"id\":1,\"params\":\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 * MAX_MESSAGE));
        let (_, error) = decode(&text, chunk);
        prop_assert!(error.is_some(), "an over-long message must be refused");
    }

    /// SLIP frames round-trip through encode and decode, whatever the chunking.
    #[test]
    fn slip_frames_round_trip(
        frames in proptest::collection::vec(
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..MAX_FRAME)), 1..10),
        chunk in 1usize..64,
    ) {
        let mut wire = Vec::new();
        for (address, payload) in &frames {
            wire.extend_from_slice(&slip::encode(*address, payload));
        }
        let mut decoder = slip::Decoder::new(MAX_FRAME);
        let mut decoded = Vec::new();
        for piece in wire.chunks(chunk) {
            decoder.decode(piece, |frame| decoded.push(frame.map(|f| (f.address, f.payload.to_vec()))));
        }
        prop_assert_eq!(decoded, frames.into_iter().map(Ok).collect::<Vec<_>>());
    }
}
