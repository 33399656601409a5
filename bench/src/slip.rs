//! SLIP framing of the TunnelProxy server connection (PROTOCOL §5), written here again rather
//! than taken from the broker's `remoteproxy-wire`: a bench that shares the broker's codec would
//! not notice when both are wrong the same way, and the bench also drives other brokers.
//!
//! A frame is `address (2 bytes, big endian) + payload`, `0xC0` escaped as `0xDB 0xDC` and `0xDB`
//! as `0xDB 0xDD`, ended by `0xC0`. Address 0 is the JSON-RPC channel to the broker.

use bytes::{BufMut, Bytes, BytesMut};

const END: u8 = 0xC0;
const ESC: u8 = 0xDB;
const ESC_END: u8 = 0xDC;
const ESC_ESC: u8 = 0xDD;

/// Longest frame a bench connection accepts; anything longer is dropped (the bench's own
/// payloads are a few bytes, the broker's notifications a few hundred).
const MAX_FRAME: usize = 64 << 10;

/// The encoded frame for `address` and `payload`.
pub fn encode(address: u16, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + payload.len() / 16 + 4);
    for &byte in address.to_be_bytes().iter().chain(payload) {
        match byte {
            END => out.put_slice(&[ESC, ESC_END]),
            ESC => out.put_slice(&[ESC, ESC_ESC]),
            _ => out.put_u8(byte),
        }
    }
    out.put_u8(END);
    out.freeze()
}

/// An incremental decoder: feed bytes in any chunking, get whole frames. Idle, it holds no
/// allocation (an empty `BytesMut`), which matters when the bench holds 18,000 servers.
#[derive(Debug, Default)]
pub struct Decoder {
    frame: BytesMut,
    escaped: bool,
    spoiled: bool,
}

impl Decoder {
    /// Feeds `data`; calls `on_frame(address, payload)` for each complete, valid frame. Frames
    /// with a bad escape, without an address or longer than 64 KiB are skipped.
    pub fn decode(&mut self, data: &[u8], mut on_frame: impl FnMut(u16, Bytes)) {
        for &byte in data {
            if self.escaped {
                self.escaped = false;
                match byte {
                    ESC_END => self.push(END),
                    ESC_ESC => self.push(ESC),
                    END => {
                        self.reset();
                        continue;
                    }
                    _ => self.spoiled = true,
                }
                continue;
            }
            match byte {
                END => {
                    if !self.spoiled && self.frame.len() >= 2 {
                        let mut frame = self.frame.split().freeze();
                        let address = u16::from_be_bytes([frame[0], frame[1]]);
                        on_frame(address, frame.split_off(2));
                    }
                    self.reset();
                }
                ESC => self.escaped = true,
                _ => self.push(byte),
            }
        }
        if self.frame.is_empty() && self.frame.capacity() > 0 {
            // Give an idle connection's frame buffer back.
            self.frame = BytesMut::new();
        }
    }

    fn push(&mut self, byte: u8) {
        if self.frame.len() >= MAX_FRAME + 2 {
            self.spoiled = true;
        }
        if !self.spoiled {
            self.frame.put_u8(byte);
        }
    }

    fn reset(&mut self) {
        self.frame.clear();
        self.spoiled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, data: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut frames = Vec::new();
        decoder.decode(data, |address, payload| frames.push((address, payload.to_vec())));
        frames
    }

    #[test]
    fn round_trip_with_escapes_in_any_chunking() {
        let payload = [1u8, END, 2, ESC, 3, ESC_END, ESC_ESC];
        let frame = encode(0xC0DB, &payload);
        assert_eq!(&frame[..4], &[ESC, ESC_END, ESC, ESC_ESC], "the address is escaped too");
        assert_eq!(*frame.last().unwrap(), END);
        for split in 0..frame.len() {
            let mut decoder = Decoder::default();
            let mut frames = decode_all(&mut decoder, &frame[..split]);
            frames.extend(decode_all(&mut decoder, &frame[split..]));
            assert_eq!(frames, [(0xC0DB, payload.to_vec())], "split at {split}");
        }
    }

    #[test]
    fn leading_end_bad_escape_and_short_frames_are_skipped() {
        let mut decoder = Decoder::default();
        let mut data = vec![END, 0, 1, ESC, 0x00, 9, END, 0, END];
        data.extend_from_slice(&encode(7, b"ok"));
        assert_eq!(decode_all(&mut decoder, &data), [(7, b"ok".to_vec())]);
        let big = vec![0u8; MAX_FRAME + 10];
        let mut data = encode(3, &big).to_vec();
        data.extend_from_slice(&encode(4, b"after"));
        assert_eq!(decode_all(&mut decoder, &data), [(4, b"after".to_vec())]);
        assert_eq!(decoder.frame.capacity(), 0, "idle decoders hold no buffer");
    }

    #[test]
    fn json_on_address_zero() {
        let frame = encode(0, b"{\"id\":1}\n");
        assert_eq!(&frame[..2], &[0, 0]);
        let mut decoder = Decoder::default();
        assert_eq!(decode_all(&mut decoder, &frame), [(0, b"{\"id\":1}\n".to_vec())]);
    }
}
