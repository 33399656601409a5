//! SLIP framing (RFC 1055) with the TunnelProxy socket address, as PROTOCOL §5 defines it.
//!
//! A registered TunnelProxy server multiplexes all its clients over one connection. Every frame
//! is `address (2 bytes, big endian) + payload`, escaped (`0xC0` → `0xDB 0xDC`, `0xDB` →
//! `0xDB 0xDD`) and terminated by `0xC0`. Address 0 is the JSON-RPC channel to the broker.
//!
//! The decoder is incremental (bytes may arrive in any chunking), bounded (a frame longer than
//! the configured maximum is dropped, not buffered), and an invalid escape sequence spoils only
//! the frame it is in (**fix**: the reference dropped the connection's later frames too). It is
//! pure code over byte slices, which makes it easy to fuzz.

use bytes::{BufMut, Bytes, BytesMut};

/// Frame end.
pub const END: u8 = 0xC0;
/// Escape.
pub const ESC: u8 = 0xDB;
/// Escaped END.
pub const ESC_END: u8 = 0xDC;
/// Escaped ESC.
pub const ESC_ESC: u8 = 0xDD;

/// The socket address of the JSON-RPC channel.
pub const JSON_RPC_ADDRESS: u16 = 0;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The socket address: 0 for the broker's JSON-RPC channel, 1..=0xFFFE for clients.
    pub address: u16,
    /// The unescaped payload.
    pub payload: Bytes,
}

/// Appends the encoded frame for `address` and `payload` to `out`.
pub fn encode_into(address: u16, payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + payload.len() / 16 + 6);
    escape_into(&address.to_be_bytes(), out);
    escape_into(payload, out);
    out.put_u8(END);
}

/// The encoded frame for `address` and `payload`.
pub fn encode(address: u16, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    encode_into(address, payload, &mut out);
    out.freeze()
}

fn escape_into(data: &[u8], out: &mut BytesMut) {
    let mut start = 0;
    for (i, &byte) in data.iter().enumerate() {
        let escaped = match byte {
            END => ESC_END,
            ESC => ESC_ESC,
            _ => continue,
        };
        out.put_slice(&data[start..i]);
        out.put_slice(&[ESC, escaped]);
        start = i + 1;
    }
    out.put_slice(&data[start..]);
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `0xDB` followed by something other than `0xDC` or `0xDD`.
    InvalidEscape,
    /// The frame grew past the maximum; it is skipped up to its end.
    Oversized,
    /// The frame ended before its two address bytes.
    TooShort,
}

/// Incremental SLIP decoder.
#[derive(Debug)]
pub struct Decoder {
    frame: BytesMut,
    max_frame: usize,
    escaped: bool,
    /// The current frame is already spoiled; everything up to the next END is discarded.
    spoiled: Option<FrameError>,
}

impl Decoder {
    /// A decoder that accepts frames of up to `max_payload` payload bytes.
    pub fn new(max_payload: usize) -> Self {
        Decoder { frame: BytesMut::new(), max_frame: max_payload + 2, escaped: false, spoiled: None }
    }

    /// Feeds bytes; calls `on_frame` for each complete frame, in order, with `Ok(frame)` or the
    /// reason a frame was dropped. Empty frames (back-to-back ENDs, a leading END) are skipped.
    pub fn decode(&mut self, data: &[u8], mut on_frame: impl FnMut(Result<Frame, FrameError>)) {
        let mut i = 0;
        while i < data.len() {
            if self.escaped {
                // The byte after an ESC, possibly the first of a new chunk.
                self.escaped = false;
                match data[i] {
                    ESC_END => self.push(&[END]),
                    ESC_ESC => self.push(&[ESC]),
                    // Not consumed: the END still ends the (now spoiled) frame.
                    END => {
                        self.spoil(FrameError::InvalidEscape);
                        continue;
                    }
                    _ => self.spoil(FrameError::InvalidEscape),
                }
                i += 1;
                continue;
            }
            // Copy a run of ordinary bytes in one go.
            let rest = &data[i..];
            let run = rest.iter().position(|b| *b == END || *b == ESC).unwrap_or(rest.len());
            if run > 0 {
                self.push(&rest[..run]);
                i += run;
                continue;
            }
            if rest[0] == END {
                if let Some(frame) = self.finish() {
                    on_frame(frame);
                }
            } else {
                self.escaped = true;
            }
            i += 1;
        }
        // Between frames nothing is kept: a finished frame's payload may still share the
        // buffer's allocation, and an idle connection should not hold it.
        if self.frame.is_empty() {
            self.frame = BytesMut::new();
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.spoiled.is_some() {
            return;
        }
        if self.frame.len() + bytes.len() > self.max_frame {
            self.spoil(FrameError::Oversized);
            return;
        }
        self.frame.extend_from_slice(bytes);
    }

    fn spoil(&mut self, reason: FrameError) {
        if self.spoiled.is_none() {
            self.spoiled = Some(reason);
        }
        self.frame.clear();
    }

    fn finish(&mut self) -> Option<Result<Frame, FrameError>> {
        if let Some(reason) = self.spoiled.take() {
            self.frame.clear();
            return Some(Err(reason));
        }
        if self.frame.is_empty() {
            return None;
        }
        if self.frame.len() < 2 {
            self.frame.clear();
            return Some(Err(FrameError::TooShort));
        }
        let mut frame = self.frame.split().freeze();
        let address = u16::from_be_bytes([frame[0], frame[1]]);
        let payload = frame.split_off(2);
        Some(Ok(Frame { address, payload }))
    }

    /// Bytes of the frame in progress (bounded by the maximum).
    pub fn pending(&self) -> usize {
        self.frame.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore};

    #[test]
    fn between_frames_the_decoder_holds_no_memory() {
        let mut decoder = Decoder::new(1 << 20);
        let frames = decode_all(&mut decoder, &encode(7, &[1u8; 5000]));
        assert_eq!(frames.len(), 1);
        // The payload may live on (it is on its way to a client); the decoder keeps nothing.
        assert_eq!(decoder.frame.as_ptr(), BytesMut::new().as_ptr());
        // Mid-frame it keeps what it has.
        decoder.decode(&[END, 0, 1, 2], |_| {});
        assert_eq!(decoder.pending(), 3);
    }

    fn decode_all(decoder: &mut Decoder, data: &[u8]) -> Vec<Result<Frame, FrameError>> {
        let mut out = Vec::new();
        decoder.decode(data, |f| out.push(f));
        out
    }

    fn frame(address: u16, payload: &[u8]) -> Result<Frame, FrameError> {
        Ok(Frame { address, payload: Bytes::copy_from_slice(payload) })
    }

    #[test]
    fn escapes_both_special_bytes() {
        let encoded = encode(0x0102, &[1, END, 2, ESC, 3]);
        assert_eq!(&encoded[..], &[1, 2, 1, ESC, ESC_END, 2, ESC, ESC_ESC, 3, END]);
        assert_eq!(decode_all(&mut Decoder::new(100), &encoded), vec![frame(0x0102, &[1, END, 2, ESC, 3])]);
    }

    #[test]
    fn address_bytes_are_escaped_too() {
        let encoded = encode(0xC0DB, b"x");
        assert_eq!(&encoded[..], &[ESC, ESC_END, ESC, ESC_ESC, b'x', END]);
        assert_eq!(decode_all(&mut Decoder::new(100), &encoded), vec![frame(0xC0DB, b"x")]);
    }

    #[test]
    fn leading_and_repeated_ends_are_ignored() {
        let mut data = vec![END, END, END];
        data.extend_from_slice(&encode(1, b"a"));
        data.extend_from_slice(&[END, END]);
        data.extend_from_slice(&encode(2, b"b"));
        assert_eq!(decode_all(&mut Decoder::new(100), &data), vec![frame(1, b"a"), frame(2, b"b")]);
    }

    #[test]
    fn payload_full_of_specials_roundtrips_in_any_chunking() {
        let payload: Vec<u8> = (0..1000).map(|i| if i % 2 == 0 { END } else { ESC }).collect();
        let encoded = encode(7, &payload);
        for chunk in [1, 2, 3, 7, 64] {
            let mut decoder = Decoder::new(4096);
            let mut out = Vec::new();
            for piece in encoded.chunks(chunk) {
                decoder.decode(piece, |f| out.push(f));
            }
            assert_eq!(out, vec![frame(7, &payload)], "chunk {chunk}");
        }
    }

    #[test]
    fn escape_split_across_chunks() {
        let mut decoder = Decoder::new(100);
        let mut out = Vec::new();
        decoder.decode(&[0, 1, b'a', ESC], |f| out.push(f));
        decoder.decode(&[ESC_END, END], |f| out.push(f));
        assert_eq!(out, vec![frame(1, &[b'a', END])]);
    }

    #[test]
    fn invalid_escape_drops_only_that_frame() {
        let mut data = encode(1, b"good").to_vec();
        data.extend_from_slice(&[0, 2, b'b', ESC, b'x', b'a', b'd', END]);
        data.extend_from_slice(&[0, 3, ESC, END]);
        data.extend_from_slice(&encode(4, b"fine"));
        let got = decode_all(&mut Decoder::new(100), &data);
        assert_eq!(
            got,
            vec![
                frame(1, b"good"),
                Err(FrameError::InvalidEscape),
                Err(FrameError::InvalidEscape),
                frame(4, b"fine")
            ]
        );
    }

    #[test]
    fn oversized_frame_is_skipped_without_buffering_it() {
        let mut decoder = Decoder::new(10);
        let mut out = Vec::new();
        decoder.decode(&[0, 1], |f| out.push(f));
        for _ in 0..1000 {
            decoder.decode(&[b'x'; 100], |f| out.push(f));
            assert!(decoder.pending() <= 12);
        }
        decoder.decode(&[END], |f| out.push(f));
        decoder.decode(&encode(2, b"after"), |f| out.push(f));
        assert_eq!(out, vec![Err(FrameError::Oversized), frame(2, b"after")]);
    }

    #[test]
    fn frame_without_address_is_too_short() {
        assert_eq!(decode_all(&mut Decoder::new(10), &[7, END]), vec![Err(FrameError::TooShort)]);
    }

    /// Random frames with random payloads and random chunking always come back unchanged, and
    /// random garbage never panics and never grows the buffer past the limit.
    #[test]
    fn random_roundtrips_and_garbage() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let frames: Vec<(u16, Vec<u8>)> = (0..rng.random_range(1..10))
                .map(|_| {
                    let mut payload = vec![0u8; rng.random_range(0..300)];
                    rng.fill_bytes(&mut payload);
                    (rng.random(), payload)
                })
                .collect();
            let mut wire = BytesMut::new();
            for (address, payload) in &frames {
                encode_into(*address, payload, &mut wire);
            }
            let mut decoder = Decoder::new(300);
            let mut out = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len());
                decoder.decode(&rest[..n], |f| out.push(f));
                rest = &rest[n..];
            }
            let expected: Vec<_> = frames.iter().map(|(a, p)| frame(*a, p)).collect();
            assert_eq!(out, expected);

            let mut garbage = vec![0u8; 2000];
            rng.fill_bytes(&mut garbage);
            decoder.decode(&garbage, |_| {});
            assert!(decoder.pending() <= 302);
        }
    }
}
