//! Where the WebSocket frames in the decoder buffer begin and end, and which were binary.
//!
//! Before the tunnel, frame payloads are appended to one byte buffer so a JSON message may span
//! frames (PROTOCOL §2). But bytes still in that buffer when the tunnel starts are tunnel data,
//! and WebSocket↔WebSocket tunnels keep frame types (PROTOCOL §4), so the boundaries and types
//! are remembered until the bytes are consumed. Only frames with unconsumed bytes are kept, so
//! the log is bounded by the buffer.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Boundaries of the frames appended to a buffer, in offsets of everything ever appended.
#[derive(Debug, Default)]
pub struct FrameLog {
    frames: VecDeque<Frame>,
    appended: u64,
}

#[derive(Debug)]
struct Frame {
    start: u64,
    end: u64,
    text: bool,
}

impl FrameLog {
    /// Records a frame of `len` bytes about to be appended to a buffer that holds `buffered`
    /// unconsumed bytes now.
    pub fn record(&mut self, len: usize, text: bool, buffered: usize) {
        let consumed = self.appended - buffered as u64;
        while self.frames.front().is_some_and(|f| f.end <= consumed) {
            self.frames.pop_front();
        }
        if len > 0 {
            let start = self.appended;
            self.appended += len as u64;
            self.frames.push_back(Frame { start, end: self.appended, text });
        }
    }

    /// Splits the buffer's unconsumed tail back into messages of their original types. A text
    /// frame cut by the decoder is cut at a JSON boundary (ASCII), so it stays valid UTF-8; should
    /// it not, it goes out binary rather than corrupted.
    pub fn split(&self, remaining: Bytes) -> Vec<Message> {
        let base = self.appended - remaining.len() as u64;
        self.frames
            .iter()
            .filter(|f| f.end > base)
            .map(|f| {
                let payload = remaining.slice((f.start.max(base) - base) as usize..(f.end - base) as usize);
                if f.text {
                    match Utf8Bytes::try_from(payload.clone()) {
                        Ok(text) => Message::Text(text),
                        Err(_) => Message::Binary(payload),
                    }
                } else {
                    Message::Binary(payload)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_split_back_into_typed_frames() {
        let mut log = FrameLog::default();
        let mut buffer: Vec<u8> = Vec::new();
        for (payload, text) in [(&b"{\"id\":1}\nhead"[..], true), (b"\x00\x01", false), (b"tail", true)] {
            log.record(payload.len(), text, buffer.len());
            buffer.extend_from_slice(payload);
        }
        // The decoder consumed the JSON message and its newline.
        let remaining = Bytes::from(buffer.split_off(9));
        let frames = log.split(remaining);
        assert_eq!(
            frames,
            vec![Message::text("head"), Message::binary(&b"\x00\x01"[..]), Message::text("tail")]
        );
    }

    #[test]
    fn consumed_frames_are_forgotten() {
        let mut log = FrameLog::default();
        for _ in 0..100 {
            log.record(10, true, 0);
        }
        assert_eq!(log.frames.len(), 1);
    }
}
