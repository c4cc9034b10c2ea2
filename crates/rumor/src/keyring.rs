//! Encryption keys and XChaCha20-Poly1305 sealing.
//!
//! A [`Keyring`] holds one or more 256-bit keys. The *primary* key encrypts
//! everything this node sends; every installed key is tried when decrypting,
//! so a cluster rotates keys without downtime: install the new key on every
//! node, make it primary on every node, then remove the old one.
//!
//! Each sealed message carries a 192-bit nonce before the ciphertext and its
//! 16-byte tag. Why XChaCha20-Poly1305 and not AES-256-GCM (used before):
//! every node of a cluster seals under the same long-lived key with nonces
//! it cannot coordinate with the others, so nonces must be random, and a
//! random 96-bit GCM nonce repeats with probability about n²/2⁹⁷ after n
//! messages: the usual bound of 2³² messages per key is reached in about two
//! days at 30,000 packets/s cluster-wide, and a repeated GCM nonce leaks the
//! authentication key. With 192-bit nonces of which at least 128 bits are
//! random (the framer puts a timestamp in the other 64), the chance of any
//! repeat after 2⁴⁸ messages is below 2⁹⁶/2¹²⁹ = 2⁻³³, and after 2⁶⁰ (a
//! million years at that rate) below 2⁻⁹; ChaCha20 has no 128-bit block
//! whose birthday bound would limit a key's use as AES's does, and
//! Poly1305's forgery bound depends on the forgery attempts, not on the
//! messages sealed. It costs 12 bytes per packet more than GCM's 96-bit nonce;
//! AES-256-GCM-SIV would keep 12-byte nonces but its random-nonce margin
//! rests on a nonce-misuse argument (a repeat leaks equality of messages),
//! and keys derived per sender with counter nonces would need counter state
//! that survives restarts. The nonce is an input of the cipher, so altering
//! it fails authentication like altering the ciphertext.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::Error;

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes encryption adds to a message: nonce and tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A 256-bit key. Its `Debug` form hides the key; `Display` and
/// [`FromStr`] use 64 hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Key(bytes)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        Ok(Key(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A name for the key that reveals none of it: see [`fingerprint_of`].
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.0)
    }
}

/// The first 8 bytes of SHA-256 over a fixed label and `bytes` (a key's
/// 32 bytes), as 16 hex digits: enough to tell keys apart in logs and in the
/// API without revealing any key material.
pub fn fingerprint_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"rumor key fingerprint\0");
    h.update(bytes);
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}…)", self.fingerprint())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Key {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let bad = || Error::Key(KeyError::Malformed);
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Key(out))
    }
}

/// One installed key with its expanded cipher.
#[derive(Clone)]
struct Slot {
    key: Key,
    cipher: XChaCha20Poly1305,
}

impl Slot {
    fn new(key: Key) -> Self {
        Slot {
            cipher: XChaCha20Poly1305::new(&key.0.into()),
            key,
        }
    }
}

/// The keys of an encrypted node; the first is the primary. Cloning gives
/// another handle to the same keys, so a running node's keyring can be
/// changed through the handle returned by [`crate::Node::keyring`].
#[derive(Clone)]
pub struct Keyring {
    slots: Arc<RwLock<Vec<Slot>>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys())
            .finish()
    }
}

impl Keyring {
    /// A keyring whose primary (and only) key is `primary`.
    pub fn new(primary: Key) -> Self {
        Keyring {
            slots: Arc::new(RwLock::new(vec![Slot::new(primary)])),
        }
    }

    /// A keyring of `primary` followed by `others` (duplicates dropped).
    pub fn with_keys(primary: Key, others: impl IntoIterator<Item = Key>) -> Self {
        let ring = Keyring::new(primary);
        for k in others {
            ring.install(k);
        }
        ring
    }

    /// Add a key used to decrypt (no-op if installed).
    pub fn install(&self, key: Key) {
        let mut slots = self.write();
        if !slots.iter().any(|s| s.key == key) {
            slots.push(Slot::new(key));
        }
    }

    /// Make an installed key the primary, which encrypts from now on.
    pub fn use_key(&self, key: &Key) -> Result<(), Error> {
        let mut slots = self.write();
        let i = slots
            .iter()
            .position(|s| s.key == *key)
            .ok_or_else(|| Error::Key(KeyError::NotInstalled(key.fingerprint())))?;
        let slot = slots.remove(i);
        slots.insert(0, slot);
        Ok(())
    }

    /// Remove a key; the primary cannot be removed.
    pub fn remove(&self, key: &Key) -> Result<(), Error> {
        let mut slots = self.write();
        match slots.iter().position(|s| s.key == *key) {
            Some(0) => Err(Error::Key(KeyError::Primary(key.fingerprint()))),
            Some(i) => {
                slots.remove(i);
                Ok(())
            }
            None => Err(Error::Key(KeyError::NotInstalled(key.fingerprint()))),
        }
    }

    /// The installed keys, primary first.
    pub fn keys(&self) -> Vec<Key> {
        self.read().iter().map(|s| s.key).collect()
    }

    /// The primary key.
    pub fn primary(&self) -> Key {
        self.read()[0].key
    }

    /// Append `nonce || XChaCha20-Poly1305(plaintext) || tag` to `out` with
    /// a random nonce, authenticating `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Random(e.to_string()))?;
        self.seal_with_nonce(&nonce, aad, plaintext, out)
    }

    /// [`Keyring::seal`] with a nonce of the caller's choice, which must
    /// never repeat under the primary key (at least 128 random bits do).
    pub fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let cipher = self.read()[0].cipher.clone();
        out.extend_from_slice(nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = cipher
            .encrypt_inout_detached(&XNonce::from(*nonce), aad, (&mut out[start..]).into())
            .map_err(|_| Error::Key(KeyError::MessageTooLong))?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypt `nonce || ciphertext || tag` with each installed key in turn;
    /// `None` if none authenticates it (wrong key, altered bytes, wrong `aad`).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = <&XNonce>::try_from(nonce).ok()?;
        let tag = <&Tag>::try_from(tag).ok()?;
        let slots = self.read();
        let mut buf = ciphertext.to_vec();
        for slot in slots.iter() {
            if slot
                .cipher
                .decrypt_inout_detached(nonce, aad, (&mut buf[..]).into(), tag)
                .is_ok()
            {
                return Some(buf);
            }
            // A failed attempt leaves `buf` untouched only in some versions:
            // start the next try from the ciphertext again.
            buf.copy_from_slice(ciphertext);
        }
        None
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Slot>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Slot>> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why the keyring refused a key, or a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 bytes written as 64 hexadecimal digits.
    #[error("expected 64 hexadecimal digits")]
    Malformed,
    /// The keyring does not hold the key with this fingerprint.
    #[error("key {0} is not installed")]
    NotInstalled(String),
    /// The key with this fingerprint is the primary, which cannot be removed.
    #[error("key {0} is the primary: use another key first")]
    Primary(String),
    /// A message too long for the cipher.
    #[error("message too long to encrypt")]
    MessageTooLong,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    #[test]
    fn seal_open_round_trip_and_rotation() {
        let a = Keyring::new(key(1));
        let mut sealed = Vec::new();
        a.seal(b"label", b"hello", &mut sealed).unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(a.open(b"label", &sealed).as_deref(), Some(&b"hello"[..]));
        assert!(a.open(b"other", &sealed).is_none());
        let b = Keyring::with_keys(key(2), [key(1)]);
        assert_eq!(b.open(b"label", &sealed).as_deref(), Some(&b"hello"[..]));
        b.remove(&key(1)).unwrap();
        assert!(b.open(b"label", &sealed).is_none());
        assert!(b.remove(&key(2)).is_err());
        b.install(key(3));
        b.use_key(&key(3)).unwrap();
        assert_eq!(b.keys(), vec![key(3), key(2)]);
    }

    #[test]
    fn flipped_bytes_are_rejected() {
        let a = Keyring::new(key(7));
        let mut sealed = Vec::new();
        a.seal(b"", b"some payload", &mut sealed).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(a.open(b"", &bad).is_none(), "flip at {i} accepted");
        }
    }

    #[test]
    fn key_hex_round_trip() {
        let k = Key::generate().unwrap();
        assert_eq!(k.to_string().parse::<Key>().unwrap(), k);
        assert!("zz".parse::<Key>().is_err());
        assert!(!format!("{k:?}").contains(&k.to_string()));
    }
}
