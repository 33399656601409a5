//! RFC 6455 frame headers as a server reads and writes them: client frames arrive masked, the
//! broker's go out unmasked.

use bytes::{BufMut, BytesMut};
use tokio_tungstenite::tungstenite::error::ProtocolError;

/// Frame types (RFC 6455 §5.2).
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Control frames carry at most this many payload bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: [u8; 4],
    /// Payload length.
    pub len: u64,
    /// Header length in bytes.
    pub size: usize,
}

impl Header {
    /// Whether this is a close, ping or pong frame.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` when more bytes are needed. Refuses what
/// a server must refuse: reserved bits (no extension is negotiated), unknown opcodes, unmasked
/// frames (unless `unmasked_peer`: the inter-node links of a cluster, where both sides write as
/// servers do; masking guards browsers' proxies, which are not there), fragmented or oversized
/// control frames.
pub fn parse_from(buf: &[u8], unmasked_peer: bool) -> Result<Option<Header>, ProtocolError> {
    let [first, second, ..] = *buf else { return Ok(None) };
    if first & 0x70 != 0 {
        return Err(ProtocolError::NonZeroReservedBits);
    }
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    match opcode {
        CONTINUATION | TEXT | BINARY => {}
        CLOSE | PING | PONG => {}
        other if other & 0x8 != 0 => return Err(ProtocolError::UnknownControlFrameType(other)),
        other => return Err(ProtocolError::UnknownDataFrameType(other)),
    }
    let masked = second & 0x80 != 0;
    if !masked && !unmasked_peer {
        return Err(ProtocolError::UnmaskedFrameFromClient);
    }
    let (len, mut size) = match second & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else { return Ok(None) };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else { return Ok(None) };
            // Any length past the message limit is refused by the reader, not here.
            (u64::from_be_bytes(bytes.try_into().expect("eight bytes")), 10)
        }
        short => (u64::from(short), 2),
    };
    let mut mask = [0; 4];
    if masked {
        let Some(bytes) = buf.get(size..size + 4) else { return Ok(None) };
        mask = bytes.try_into().expect("four bytes");
        size += 4;
    }
    let header = Header { fin, opcode, mask, len, size };
    if header.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlFrameTooBig);
        }
    }
    Ok(Some(header))
}

/// Appends an unmasked, final frame header for `len` payload bytes.
pub fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(short);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// XORs `data` with the client's masking key, eight bytes at a time (the key repeats every four,
/// so each eight-byte word takes the same pattern).
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut words = data.chunks_exact_mut(8);
    for chunk in &mut words {
        let value = u64::from_ne_bytes((&*chunk).try_into().expect("eight bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// A client's frame as it arrives: masked with `mask`, `first` holding FIN and the opcode
/// (for the tests and the WebSocket fuzz target).
pub fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_length_form_parse() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 200_000] {
            let payload = vec![7u8; len];
            let frame = client_frame(0x82, &payload, [1, 2, 3, 4]);
            let header = parse_from(&frame, false).unwrap().unwrap();
            assert_eq!((header.fin, header.opcode, header.len), (true, BINARY, len as u64));
            assert_eq!(header.size + len, frame.len());
            let mut body = frame[header.size..].to_vec();
            unmask(&mut body, header.mask);
            assert_eq!(body, payload);
            // Any shorter prefix of the header asks for more.
            for cut in 0..header.size {
                assert_eq!(parse_from(&frame[..cut], false).unwrap(), None, "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn what_a_server_must_refuse() {
        let refuse = |bytes: &[u8]| parse_from(bytes, false).unwrap_err().to_string();
        assert!(refuse(&[0xC2, 0x80, 0, 0, 0, 0]).contains("Reserved bits"));
        assert!(refuse(&[0x82, 0x00]).contains("unmasked"));
        assert!(refuse(&[0x83, 0x80, 0, 0, 0, 0]).contains("Unknown data frame type"));
        assert!(refuse(&[0x8B, 0x80, 0, 0, 0, 0]).contains("Unknown control frame type"));
        assert!(refuse(&[0x09, 0x80, 0, 0, 0, 0]).contains("Fragmented control"));
        assert!(refuse(&[0x89, 0xFE, 0, 126, 0, 0, 0, 0]).contains("Control frame too big"));
    }

    #[test]
    fn another_node_may_send_unmasked_frames_and_masked_ones_still_read() {
        let unmasked = parse_from(&[0x82, 0x03, 1, 2, 3], true).unwrap().unwrap();
        assert_eq!((unmasked.len, unmasked.size, unmasked.mask), (3, 2, [0; 4]));
        let masked = parse_from(&[0x82, 0x83, 9, 8, 7, 6, 1, 2, 3], true).unwrap().unwrap();
        assert_eq!((masked.len, masked.size, masked.mask), (3, 6, [9, 8, 7, 6]));
        // Still the server rules otherwise.
        assert!(parse_from(&[0xC2, 0x00], true).is_err());
    }

    #[test]
    fn written_headers_use_the_shortest_length_form() {
        for (len, size) in [(0usize, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = BytesMut::new();
            put_header(&mut out, TEXT, len);
            assert_eq!(out.len(), size, "len {len}");
            assert_eq!(out[0], 0x81);
        }
    }

    #[test]
    fn unmasking_matches_the_byte_by_byte_definition() {
        let mask = [0xA1, 0x02, 0xF3, 0x44];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            assert_eq!(fast, slow);
        }
    }
}
