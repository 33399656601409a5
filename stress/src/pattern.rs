//! The bytes a tunnel carries in the stress suite: a pseudo-random stream per tunnel and
//! direction, so the receiver regenerates what must arrive and compares every byte in order (a
//! checksum that also says where the first difference is). Not a power-of-two period, not
//! UTF-8, not compressible.

/// One direction's stream: fills buffers with its next bytes.
pub struct Pattern {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    /// The stream of tunnel `tunnel`, direction `direction` (0 or 1) of run `seed`.
    pub fn new(seed: u64, tunnel: u64, direction: u64) -> Pattern {
        let state = seed
            ^ tunnel.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (direction + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        Pattern { state: state | 1, word: [0; 8], used: 8 }
    }

    /// Fills `out` with the next bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            if self.used == 8 {
                // xorshift64*
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.used = 0;
            }
            *byte = self.word[self.used];
            self.used += 1;
        }
    }

    /// The next `n` bytes.
    pub fn next(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.fill(&mut out);
        out
    }
}

/// Checks received bytes against a [`Pattern`] as they come.
pub struct Verifier {
    pattern: Pattern,
    scratch: Vec<u8>,
    /// Bytes that matched so far.
    pub verified: u64,
}

impl Verifier {
    pub fn new(pattern: Pattern) -> Verifier {
        Verifier { pattern, scratch: Vec::new(), verified: 0 }
    }

    /// Checks the next received bytes; the offset of the first wrong byte otherwise.
    pub fn check(&mut self, received: &[u8]) -> Result<(), u64> {
        self.scratch.resize(received.len(), 0);
        self.pattern.fill(&mut self.scratch);
        match received.iter().zip(&self.scratch).position(|(a, b)| a != b) {
            None => {
                self.verified += received.len() as u64;
                Ok(())
            }
            Some(at) => Err(self.verified + at as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_verifies_and_a_changed_byte_is_found() {
        let sent = Pattern::new(7, 3, 0).next(10_000);
        let mut verifier = Verifier::new(Pattern::new(7, 3, 0));
        for chunk in sent.chunks(333) {
            verifier.check(chunk).unwrap();
        }
        assert_eq!(verifier.verified, 10_000);
        let mut wrong = Pattern::new(7, 3, 0).next(100);
        wrong[42] ^= 1;
        assert_eq!(Verifier::new(Pattern::new(7, 3, 0)).check(&wrong), Err(42));
        assert_ne!(Pattern::new(7, 3, 0).next(16), Pattern::new(7, 3, 1).next(16), "directions differ");
    }
}
