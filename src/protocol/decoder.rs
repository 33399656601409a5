//! The incoming stream decoder: bytes in, JSON values out.
//!
//! Clients send a stream of JSON objects. A newline after each is usual but not required, one
//! object may arrive split over many reads and many objects may arrive in one read (PROTOCOL §2).
//! The decoder keeps the unconsumed bytes in one buffer and finds object boundaries with an
//! incremental bracket scanner, so each byte is scanned once however the stream is chunked, and
//! serde_json only parses complete objects. The buffer is bounded: an object still incomplete
//! after `max_message_size` bytes is an error.
//!
//! The buffer is also where bytes wait that arrive behind the last JSON message of the handshake:
//! when the connection becomes a tunnel, [`Decoder::take_remaining`] hands them to the relay so no
//! byte is lost at the switch.

use bytes::{Buf, Bytes, BytesMut};
use serde_json::Value;

/// Why the decoder gave up on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not JSON; the text is serde_json's description.
    Parse(String),
    /// An incomplete message grew past the size limit.
    Oversized,
}

/// Incremental JSON stream decoder with a bounded buffer.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_message_size: usize,
    /// Scanner state for the object starting at `buf[0]`: how far it has looked.
    scanned: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Buffer length at which an incomplete object is next checked with serde_json for errors
    /// the scanner does not see; doubling keeps the checks linear in the message size.
    check_at: usize,
}

/// The first check of an incomplete object comes after this many bytes.
const FIRST_CHECK: usize = 64;

impl Decoder {
    /// A decoder that accepts incomplete messages of up to `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            max_message_size,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            check_at: FIRST_CHECK,
        }
    }

    /// The buffer to read new bytes into (`read_buf`). Bytes appended here are seen by the next
    /// call of [`Decoder::next_message`].
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends bytes (from a WebSocket frame).
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// How many unconsumed bytes are buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer holds anything but whitespace.
    pub fn has_data(&self) -> bool {
        self.buf.iter().any(|b| !is_whitespace(*b))
    }

    /// Drops the one line ending (`\n` or `\r\n`) that ends the last JSON message, so it is not
    /// taken for raw data after a switch; anything after it is data and stays byte-exact.
    pub fn skip_separator(&mut self) {
        if self.scanned != 0 {
            return;
        }
        if self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
        } else if self.buf.starts_with(b"\n") {
            self.buf.advance(1);
        }
    }

    /// Removes and returns every buffered byte, for the relay, and gives the buffer back: the
    /// bytes are copied out (they are few), so a long-lived connection does not keep its whole
    /// handshake buffer alive through them.
    pub fn take_remaining(&mut self) -> Bytes {
        self.reset_scanner();
        let rest = Bytes::copy_from_slice(&self.buf);
        self.buf = BytesMut::new();
        rest
    }

    /// The next complete JSON value, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Value>, DecodeError> {
        let skip = self.buf.iter().take_while(|b| is_whitespace(**b)).count();
        if skip == self.buf.len() {
            // Only separators: nothing to keep, not even the allocation (a registered TunnelProxy
            // server's JSON channel is idle nearly all its life).
            self.buf = BytesMut::new();
            return Ok(None);
        }
        let first = self.buf[skip];
        let result = if first == b'{' || first == b'[' {
            debug_assert!(skip == 0 || self.scanned == 0, "whitespace is only skipped before a message");
            self.buf.advance(skip);
            self.next_bracketed()
        } else {
            // Probably not JSON at all (bytes pipelined behind the last message): the whitespace
            // stays with them unless they do turn out to be a value.
            self.next_scalar(skip)
        };
        if let Ok(None) = result
            && self.buf.len() > self.max_message_size
        {
            return Err(DecodeError::Oversized);
        }
        result
    }

    /// Scans an object or array for its closing bracket, then parses exactly that slice.
    fn next_bracketed(&mut self) -> Result<Option<Value>, DecodeError> {
        let mut end = None;
        for (offset, &byte) in self.buf[self.scanned..].iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                } else if byte < 0x20 {
                    // JSON forbids raw control characters (a newline, say) inside strings.
                    return Err(self.parse_error(self.scanned + offset + 1));
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        end = Some(self.scanned + offset + 1);
                        break;
                    }
                }
                _ if may_stand_outside_strings(byte) => {}
                _ => return Err(self.parse_error(self.scanned + offset + 1)),
            }
        }
        let Some(end) = end else {
            self.scanned = self.buf.len();
            // Structure the scanner does not follow (`{"id" 42`): serde_json on what is there,
            // once per doubling of the buffer.
            if self.buf.len() >= self.check_at {
                self.check_at = self.buf.len().saturating_mul(2);
                let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
                if let Some(Err(e)) = stream.next()
                    && !e.is_eof()
                {
                    return Err(DecodeError::Parse(e.to_string()));
                }
            }
            return Ok(None);
        };
        let message = self.buf.split_to(end);
        self.reset_scanner();
        serde_json::from_slice(&message).map(Some).map_err(|e| DecodeError::Parse(e.to_string()))
    }

    /// Anything not starting with a bracket is rare (a client error or a bare scalar); let
    /// serde_json's stream parser decide whether it is complete, incomplete or garbage.
    fn next_scalar(&mut self, skip: usize) -> Result<Option<Value>, DecodeError> {
        let mut stream = serde_json::Deserializer::from_slice(&self.buf[skip..]).into_iter::<Value>();
        match stream.next() {
            None => Ok(None),
            Some(Ok(value)) => {
                let consumed = stream.byte_offset();
                // A number that ends where the bytes end may go on in the next read ("12" then
                // "34"); found by fuzzing (fuzz/corpus/json_stream/crash-split-changes-decode).
                if value.is_number() && skip + consumed == self.buf.len() {
                    return Ok(None);
                }
                self.buf.advance(skip + consumed);
                Ok(Some(value))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(DecodeError::Parse(e.to_string())),
        }
    }

    fn reset_scanner(&mut self) {
        self.scanned = 0;
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
        self.check_at = FIRST_CHECK;
    }

    /// serde_json's description of the error the scanner found in the first `len` bytes (its
    /// words, as for every other parse error), or a plain one should serde see none.
    fn parse_error(&self, len: usize) -> DecodeError {
        let mut stream = serde_json::Deserializer::from_slice(&self.buf[..len]).into_iter::<Value>();
        match stream.next() {
            Some(Err(e)) if !e.is_eof() => DecodeError::Parse(e.to_string()),
            _ => DecodeError::Parse(format!("invalid character at byte {len}")),
        }
    }
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes that may appear in JSON outside a string: structure, whitespace, numbers and the
/// letters of `true`, `false` and `null`.
fn may_stand_outside_strings(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'0'
            ..=b'9'
                | b'-'
                | b'+'
                | b'.'
                | b'e'
                | b'E'
                | b't'
                | b'r'
                | b'u'
                | b'f'
                | b'a'
                | b'l'
                | b's'
                | b'n'
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_idle_decoder_holds_no_memory() {
        let mut decoder = Decoder::new(10240);
        let request = br#"{"id":1,"method":"TunnelProxy.Ping","params":{"timestamp":1}}"#;
        assert_eq!(feed_all(&mut decoder, &[&request[..], b"\n"].concat()).len(), 1);
        assert_eq!(decoder.next_message().unwrap(), None);
        assert_eq!(decoder.buf.as_ptr(), BytesMut::new().as_ptr());
    }

    fn feed_all(decoder: &mut Decoder, input: &[u8]) -> Vec<Value> {
        decoder.extend(input);
        let mut out = Vec::new();
        while let Some(v) = decoder.next_message().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn a_raw_newline_inside_a_string_is_an_error_at_once() {
        let mut d = Decoder::new(10240);
        d.extend(b"{\"id\":42, \"method\":\"RemoteProx}\n");
        let Err(DecodeError::Parse(text)) = d.next_message() else { panic!("an error at once") };
        assert!(text.contains("control character"), "{text}");
    }

    #[test]
    fn a_byte_that_cannot_stand_outside_a_string_is_an_error_at_once() {
        let mut d = Decoder::new(10240);
        d.extend(b"{\"id\": 42, method");
        assert!(matches!(d.next_message(), Err(DecodeError::Parse(_))));
        let mut d = Decoder::new(10240);
        d.extend(b"hello world}\n");
        assert!(matches!(d.next_message(), Err(DecodeError::Parse(_))));
    }

    #[test]
    fn broken_structure_is_found_by_the_doubling_check() {
        let mut d = Decoder::new(1 << 20);
        // Only bytes the scanner allows, in an order no JSON has; still incomplete by brackets.
        let mut input = b"{\"id\" 42 ".to_vec();
        input.extend(std::iter::repeat_n(b' ', 100));
        d.extend(&input);
        assert!(matches!(d.next_message(), Err(DecodeError::Parse(_))));
    }

    #[test]
    fn an_incomplete_valid_object_still_waits() {
        let mut d = Decoder::new(1 << 20);
        let text = format!(
            "{{\"id\":1,\"method\":\"RemoteProxy.Hello\",\"params\":{{\"pad\":\"{}",
            "x".repeat(5000)
        );
        for chunk in text.as_bytes().chunks(7) {
            d.extend(chunk);
            assert_eq!(d.next_message(), Ok(None));
        }
        d.extend(b"\"}}\n");
        assert!(matches!(d.next_message(), Ok(Some(_))));
    }

    #[test]
    fn one_object_with_newline() {
        let mut d = Decoder::new(10240);
        assert_eq!(feed_all(&mut d, b"{\"id\":1}\n"), vec![json!({"id":1})]);
        assert!(!d.has_data());
    }

    #[test]
    fn several_objects_in_one_read_without_separators() {
        let mut d = Decoder::new(10240);
        let got = feed_all(&mut d, b"{\"a\":1}{\"b\":2} \r\n\t{\"c\":[1,{\"d\":3}]}");
        assert_eq!(got, vec![json!({"a":1}), json!({"b":2}), json!({"c":[1,{"d":3}]})]);
    }

    #[test]
    fn object_split_byte_by_byte() {
        let input = br#"{"id":0,"method":"RemoteProxy.Hello","params":{"s":"}{\"\\"}}"#;
        let mut d = Decoder::new(10240);
        let mut got = Vec::new();
        for byte in input.iter() {
            got.extend(feed_all(&mut d, &[*byte]));
        }
        assert_eq!(got, vec![serde_json::from_slice::<Value>(input).unwrap()]);
    }

    #[test]
    fn braces_inside_strings_do_not_count() {
        let mut d = Decoder::new(10240);
        let got = feed_all(&mut d, br#"{"x":"{{{[[["}{"y":"\"}"}"#);
        assert_eq!(got, vec![json!({"x":"{{{[[["}), json!({"y":"\"}"})]);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let mut d = Decoder::new(10240);
        d.extend(b"hello\n");
        assert!(matches!(d.next_message(), Err(DecodeError::Parse(_))));
    }

    #[test]
    fn invalid_object_is_a_parse_error() {
        let mut d = Decoder::new(10240);
        d.extend(b"{\"a\" 1}");
        assert!(matches!(d.next_message(), Err(DecodeError::Parse(_))));
    }

    #[test]
    fn incomplete_message_over_the_limit_is_oversized() {
        let mut d = Decoder::new(100);
        d.extend(b"{\"a\":\"");
        d.extend(&[b'x'; 90]);
        assert_eq!(d.next_message(), Ok(None));
        d.extend(&[b'x'; 20]);
        assert_eq!(d.next_message(), Err(DecodeError::Oversized));
    }

    #[test]
    fn complete_message_larger_than_the_limit_in_one_read_is_fine() {
        let mut d = Decoder::new(16);
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(100));
        assert_eq!(feed_all(&mut d, big.as_bytes()).len(), 1);
    }

    #[test]
    fn remaining_bytes_after_a_message_are_kept() {
        let mut d = Decoder::new(10240);
        d.extend(b"{\"id\":1}\n\x00\x01binary");
        assert_eq!(d.next_message().unwrap(), Some(json!({"id":1})));
        // The session asks again and finds bytes that are not JSON; they keep their whitespace
        // until the switch drops the one separator.
        assert!(matches!(d.next_message(), Err(DecodeError::Parse(_))));
        assert!(d.has_data());
        d.skip_separator();
        assert_eq!(&d.take_remaining()[..], b"\x00\x01binary");
    }

    #[test]
    fn data_behind_the_separator_keeps_its_whitespace() {
        let mut d = Decoder::new(10240);
        d.extend(b"{\"id\":1}\r\n \thello");
        assert_eq!(d.next_message().unwrap(), Some(json!({"id":1})));
        assert!(matches!(d.next_message(), Err(DecodeError::Parse(_))));
        d.skip_separator();
        assert_eq!(&d.take_remaining()[..], b" \thello");
    }

    #[test]
    fn bare_scalar_is_decoded() {
        let mut d = Decoder::new(10240);
        assert_eq!(feed_all(&mut d, b"42 \"s\" "), vec![json!(42), json!("s")]);
    }
}
