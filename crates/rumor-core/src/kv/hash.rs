//! A small, stable, non-cryptographic 64-bit hash for the Merkle tree.
//!
//! Replicas compare hashes computed on different machines and by different
//! builds, so the function must never change with the platform, the Rust
//! version or the process: `std`'s `DefaultHasher` promises none of that.
//! This one consumes explicit little-endian 64-bit words (a multiply-rotate
//! round per word) and ends with a 64-bit avalanche finalizer. It resists
//! accidental collisions, not adversaries: a peer that lies about hashes can
//! only make anti-entropy with itself less effective.
//!
//! The output for a given sequence of `write_*` calls is part of the wire
//! contract; the test vectors below pin it.

const K1: u64 = 0x87c3_7b91_1142_53d5;
const K2: u64 = 0x4cf5_ad43_2745_937f;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Streaming state of the stable hash; see the module docs.
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
    words: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    /// A fresh hasher.
    pub const fn new() -> Self {
        StableHasher {
            state: SEED,
            words: 0,
        }
    }

    /// Mix one 64-bit word.
    pub fn write_u64(&mut self, word: u64) {
        let k = word.wrapping_mul(K1).rotate_left(31).wrapping_mul(K2);
        self.state = (self.state ^ k)
            .rotate_left(27)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        self.words = self.words.wrapping_add(1);
    }

    /// Mix a byte string: its length, then its bytes in little-endian
    /// 8-byte words, the last one zero-padded.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.write_u64(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    /// The hash of everything written so far.
    pub fn finish(&self) -> u64 {
        fmix64(self.state ^ self.words)
    }
}

/// The 64-bit avalanche finalizer: every input bit flips each output bit
/// with probability close to one half.
pub const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The stable hash of one byte string (a key, say).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::new();
    h.write_bytes(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_EMPTY: u64 = 0x04dd_3b29_8b8a_2602;
    const PINNED_RUMOR: u64 = 0xcbe3_8c4d_4318_0e50;
    const PINNED_LONG: u64 = 0xe709_2459_0b9c_7ae4;

    #[test]
    fn pinned_vectors() {
        // These values are part of the wire contract: a change here breaks
        // anti-entropy between versions.
        assert_eq!(hash_bytes(b""), PINNED_EMPTY);
        assert_eq!(hash_bytes(b"rumor"), PINNED_RUMOR);
        assert_eq!(hash_bytes(b"0123456789abcdef!"), PINNED_LONG);
    }

    #[test]
    fn length_and_padding_matter() {
        assert_ne!(hash_bytes(b"abcdefgh"), hash_bytes(b"abcdefgh\0"));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
    }
}
