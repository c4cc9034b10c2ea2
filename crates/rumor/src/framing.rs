//! The envelope around every datagram and stream frame: cluster label and
//! optional encryption.
//!
//! ```text
//! [kind u8][label length u8][label][body]
//! kind 0xB0: body is the plaintext
//! kind 0xB1: body is nonce || AES-256-GCM ciphertext || tag, with the
//!            header (kind, length, label) as associated data
//! ```
//!
//! The label travels in the clear so a packet from a cluster with another
//! label is told apart (and counted) before any decryption; when encrypted,
//! it is also authenticated, so it cannot be rewritten in flight.

use std::borrow::Cow;

use crate::keyring::{Keyring, SEAL_OVERHEAD};
use crate::Error;

/// Kind byte of a plaintext envelope.
pub const KIND_PLAIN: u8 = 0xB0;
/// Kind byte of an encrypted envelope.
pub const KIND_SEALED: u8 = 0xB1;
/// The longest cluster label, in bytes.
pub const MAX_LABEL_LEN: usize = 255;

/// Why an incoming envelope was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Too short, or an unknown kind byte.
    #[error("malformed envelope")]
    Malformed,
    /// The packet carries another cluster's label.
    #[error("cluster label mismatch")]
    LabelMismatch,
    /// A plaintext packet reached a node that requires encryption.
    #[error("unencrypted packet refused")]
    Unencrypted,
    /// An encrypted packet reached a node without keys, or no installed key
    /// authenticates it (wrong key, altered bytes).
    #[error("authentication failed")]
    AuthFailed,
}

/// Wraps and unwraps envelopes for one node: its label and keyring.
#[derive(Clone, Debug)]
pub struct Framer {
    label: Vec<u8>,
    keyring: Option<Keyring>,
}

impl Framer {
    /// A framer for `label` (empty for none), encrypting when `keyring` is set.
    pub fn new(label: &str, keyring: Option<Keyring>) -> Result<Self, Error> {
        if label.len() > MAX_LABEL_LEN {
            return Err(Error::InvalidLabel(format!(
                "label is {} bytes, the limit is {MAX_LABEL_LEN}",
                label.len()
            )));
        }
        Ok(Framer {
            label: label.as_bytes().to_vec(),
            keyring,
        })
    }

    /// Bytes an envelope adds to its body.
    pub fn overhead(&self) -> usize {
        2 + self.label.len()
            + if self.keyring.is_some() {
                SEAL_OVERHEAD
            } else {
                0
            }
    }

    /// The keyring, if this node encrypts.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// Wrap `body` in an envelope.
    pub fn seal(&self, body: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(body.len() + self.overhead());
        let kind = if self.keyring.is_some() {
            KIND_SEALED
        } else {
            KIND_PLAIN
        };
        out.push(kind);
        out.push(self.label.len() as u8);
        out.extend_from_slice(&self.label);
        match &self.keyring {
            Some(ring) => {
                let header_len = out.len();
                let header = out.clone();
                ring.seal(&header[..header_len], body, &mut out)?;
            }
            None => out.extend_from_slice(body),
        }
        Ok(out)
    }

    /// Unwrap an envelope, checking its label and authenticity.
    pub fn open<'a>(&self, packet: &'a [u8]) -> Result<Cow<'a, [u8]>, Reject> {
        let [kind, len, rest @ ..] = packet else {
            return Err(Reject::Malformed);
        };
        if *kind != KIND_PLAIN && *kind != KIND_SEALED {
            return Err(Reject::Malformed);
        }
        let len = usize::from(*len);
        if rest.len() < len {
            return Err(Reject::Malformed);
        }
        let (label, body) = rest.split_at(len);
        if label != self.label.as_slice() {
            return Err(Reject::LabelMismatch);
        }
        match (*kind, &self.keyring) {
            (KIND_PLAIN, None) => Ok(Cow::Borrowed(body)),
            (KIND_PLAIN, Some(_)) => Err(Reject::Unencrypted),
            (_, None) => Err(Reject::AuthFailed),
            (_, Some(ring)) => ring
                .open(&packet[..2 + len], body)
                .map(Cow::Owned)
                .ok_or(Reject::AuthFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::Key;

    #[test]
    fn plain_and_sealed_round_trip() {
        let plain = Framer::new("prod", None).unwrap();
        let p = plain.seal(b"abc").unwrap();
        assert_eq!(p.len(), 3 + plain.overhead());
        assert_eq!(&*plain.open(&p).unwrap(), b"abc");

        let ring = Keyring::new(Key::from_bytes([9; 32]));
        let sealed = Framer::new("prod", Some(ring)).unwrap();
        let s = sealed.seal(b"abc").unwrap();
        assert_eq!(s.len(), 3 + sealed.overhead());
        assert_eq!(&*sealed.open(&s).unwrap(), b"abc");
        assert_eq!(sealed.open(&p), Err(Reject::Unencrypted));
        assert_eq!(plain.open(&s), Err(Reject::AuthFailed));
    }

    #[test]
    fn labels_must_match() {
        let a = Framer::new("a", None).unwrap();
        let b = Framer::new("b", None).unwrap();
        let none = Framer::new("", None).unwrap();
        assert_eq!(b.open(&a.seal(b"x").unwrap()), Err(Reject::LabelMismatch));
        assert_eq!(
            none.open(&a.seal(b"x").unwrap()),
            Err(Reject::LabelMismatch)
        );
        assert_eq!(a.open(&[]), Err(Reject::Malformed));
        assert_eq!(a.open(&[KIND_PLAIN, 9, b'a']), Err(Reject::Malformed));
        assert!(Framer::new(&"x".repeat(256), None).is_err());
    }

    #[test]
    fn rewritten_label_fails_authentication() {
        let ring = Keyring::new(Key::from_bytes([3; 32]));
        let a = Framer::new("aa", Some(ring.clone())).unwrap();
        let b = Framer::new("ab", Some(ring)).unwrap();
        let mut s = a.seal(b"x").unwrap();
        s[3] = b'b';
        assert_eq!(b.open(&s), Err(Reject::AuthFailed));
    }
}
