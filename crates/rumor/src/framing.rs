//! The envelope around every datagram and stream frame: cluster label,
//! optional encryption, and replay protection of encrypted envelopes.
//!
//! ```text
//! [kind u8][label length u8][label][body]
//! kind 0xB0: body is the plaintext
//! kind 0xB2: body is nonce || XChaCha20-Poly1305 ciphertext || tag, where
//!            nonce = [sender's unix time, ms, u64 BE][message id, 16 random
//!            bytes], and every byte before the ciphertext (kind, length,
//!            label, nonce) is associated data
//! kind 0xB1: AES-256-GCM envelopes of earlier versions, refused as
//!            AuthFailed (they carry no timestamp: nothing stops a replay)
//! ```
//!
//! The label travels in the clear so a packet from a cluster with another
//! label is told apart (and counted) before any decryption; when encrypted,
//! it is also authenticated, so it cannot be rewritten in flight.
//!
//! An encrypted envelope is authenticated first, then its timestamp and
//! message id go through this node's cache of recent ids: one
//! stamped outside the [`ReplayWindow`] is refused as [`Reject::Stale`],
//! one whose id was seen inside the window as [`Reject::Replay`]. The
//! timestamp and id are the nonce, so replay protection adds no byte to
//! the 24-byte nonce XChaCha20 needs anyway: an encrypted envelope costs
//! 2 + label + 40 bytes (12 more than AES-GCM's 28). Clocks of an
//! encrypted cluster must agree within the window's skew (default 30 s).
//! Plaintext envelopes have no replay protection: an unencrypted cluster
//! trusts everyone who can reach its port.
//!
//! A node with a keyring seals and requires encrypted envelopes unless its
//! [`EncryptionMode`] says otherwise: in `Send` it also accepts plaintext
//! ones, in `Accept` it also sends plaintext (the transition mode that turns
//! encryption on or off in a running cluster, see [`crate::encryption`]).
//! The mode lives in an [`EncryptionSwitch`] shared by every clone.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::encryption::{EncryptionMode, EncryptionSwitch};
use crate::keyring::{Keyring, NONCE_LEN, SEAL_OVERHEAD};
pub use crate::replay::ReplayWindow;
use crate::replay::{Refusal, ReplayCache};
use crate::Error;

/// Kind byte of a plaintext envelope.
pub const KIND_PLAIN: u8 = 0xB0;
/// Kind byte of the AES-256-GCM envelopes of earlier versions (refused).
pub const KIND_SEALED_LEGACY: u8 = 0xB1;
/// Kind byte of an encrypted envelope.
pub const KIND_SEALED: u8 = 0xB2;
/// The longest cluster label, in bytes.
pub const MAX_LABEL_LEN: usize = 255;
/// Bytes of the timestamp at the start of an encrypted envelope's nonce.
const STAMP_LEN: usize = 8;

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
    /// authenticates it (wrong key, altered bytes, or the AES-256-GCM
    /// envelope of an earlier version).
    #[error("authentication failed")]
    AuthFailed,
    /// An authenticated envelope whose timestamp is outside the replay
    /// window: too old, too far ahead (clock skew), or older than what a
    /// full replay cache still remembers.
    #[error("stale envelope refused")]
    Stale,
    /// An authenticated envelope whose message id was already received in
    /// the window: a replay (or a duplicate the network made).
    #[error("replayed envelope refused")]
    Replay,
}

impl Reject {
    /// A short name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::LabelMismatch => "label_mismatch",
            Reject::Unencrypted => "unencrypted",
            Reject::AuthFailed => "auth_failed",
            Reject::Stale => "stale",
            Reject::Replay => "replay",
        }
    }
}

/// Wraps and unwraps envelopes for one node: its label, keyring and, when
/// encrypting, its cache of recent message ids and its encryption mode.
/// Clones share the cache and the mode.
#[derive(Clone, Debug)]
pub struct Framer {
    label: Vec<u8>,
    keyring: Option<Keyring>,
    replay: Option<Arc<Mutex<ReplayCache>>>,
    mode: EncryptionSwitch,
}

/// The wall clock in unix milliseconds (0 before 1970).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Framer {
    /// A framer for `label` (empty for none), encrypting when `keyring` is
    /// set, with the default [`ReplayWindow`].
    pub fn new(label: &str, keyring: Option<Keyring>) -> Result<Self, Error> {
        Framer::with_replay_window(label, keyring, ReplayWindow::default())
    }

    /// [`Framer::new`] with another replay window (used only when encrypting).
    pub fn with_replay_window(
        label: &str,
        keyring: Option<Keyring>,
        window: ReplayWindow,
    ) -> Result<Self, Error> {
        if label.len() > MAX_LABEL_LEN {
            return Err(Error::InvalidLabel(format!(
                "label is {} bytes, the limit is {MAX_LABEL_LEN}",
                label.len()
            )));
        }
        let replay = keyring
            .as_ref()
            .map(|_| Arc::new(Mutex::new(ReplayCache::new(window))));
        Ok(Framer {
            label: label.as_bytes().to_vec(),
            keyring,
            replay,
            mode: EncryptionSwitch::default(),
        })
    }

    /// The encryption mode, shared by every clone of this framer (it
    /// matters only with a keyring; [`EncryptionMode::Enforce`] at first).
    pub fn encryption(&self) -> &EncryptionSwitch {
        &self.mode
    }

    /// The keyring to seal with: `None` without one, or when the mode
    /// sends plaintext.
    fn sealing_ring(&self) -> Option<&Keyring> {
        self.keyring
            .as_ref()
            .filter(|_| self.mode.get().encrypts_outgoing())
    }

    /// Bytes an envelope adds to its body (at most: with a keyring, as if
    /// sealed whatever the mode, so sizes need not change with it).
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

    /// Wrap `body` in an envelope stamped with the wall clock.
    pub fn seal(&self, body: &[u8]) -> Result<Vec<u8>, Error> {
        self.seal_at(body, unix_ms())
    }

    /// Wrap `body` in an envelope stamped `now_ms` (unix milliseconds).
    pub fn seal_at(&self, body: &[u8], now_ms: u64) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(body.len() + self.overhead());
        let ring = self.sealing_ring();
        let kind = if ring.is_some() {
            KIND_SEALED
        } else {
            KIND_PLAIN
        };
        out.push(kind);
        out.push(self.label.len() as u8);
        out.extend_from_slice(&self.label);
        match ring {
            Some(ring) => {
                let mut nonce = [0u8; NONCE_LEN];
                nonce[..STAMP_LEN].copy_from_slice(&now_ms.to_be_bytes());
                getrandom::fill(&mut nonce[STAMP_LEN..])
                    .map_err(|e| Error::Random(e.to_string()))?;
                let mut aad = Vec::with_capacity(out.len() + NONCE_LEN);
                aad.extend_from_slice(&out);
                aad.extend_from_slice(&nonce);
                ring.seal_with_nonce(&nonce, &aad, body, &mut out)?;
            }
            None => out.extend_from_slice(body),
        }
        Ok(out)
    }

    /// Unwrap an envelope, checking its label, authenticity and freshness
    /// against the wall clock.
    pub fn open<'a>(&self, packet: &'a [u8]) -> Result<Cow<'a, [u8]>, Reject> {
        self.open_at(packet, unix_ms())
    }

    /// [`Framer::open`] at local time `now_ms` (unix milliseconds).
    pub fn open_at<'a>(&self, packet: &'a [u8], now_ms: u64) -> Result<Cow<'a, [u8]>, Reject> {
        let [kind, len, rest @ ..] = packet else {
            return Err(Reject::Malformed);
        };
        if !matches!(*kind, KIND_PLAIN | KIND_SEALED | KIND_SEALED_LEGACY) {
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
            (KIND_PLAIN, Some(_)) if self.mode.get().requires_incoming() => {
                Err(Reject::Unencrypted)
            }
            (KIND_PLAIN, Some(_)) => {
                self.mode.count_plaintext();
                Ok(Cow::Borrowed(body))
            }
            (KIND_SEALED, Some(ring)) if body.len() >= SEAL_OVERHEAD => {
                let header = 2 + len;
                let plain = ring
                    .open(&packet[..header + NONCE_LEN], body)
                    .ok_or(Reject::AuthFailed)?;
                self.check_fresh(body, now_ms)?;
                Ok(Cow::Owned(plain))
            }
            _ => Err(Reject::AuthFailed),
        }
    }

    /// Refuse an authenticated envelope that is stale or already seen;
    /// `body` starts with its nonce: timestamp, then message id.
    fn check_fresh(&self, body: &[u8], now_ms: u64) -> Result<(), Reject> {
        let Some(cache) = &self.replay else {
            return Ok(());
        };
        let word = |at: usize| {
            body.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(Reject::Malformed)
        };
        let (stamp, id) = (word(0)?, word(STAMP_LEN)?);
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.check(now_ms, stamp, id).map_err(|r| match r {
            Refusal::Stale => Reject::Stale,
            Refusal::Replay => Reject::Replay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{Key, TAG_LEN};
    use std::time::Duration;

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

    const NOW: u64 = 1_800_000_000_000;

    fn sealed(k: u8) -> Framer {
        Framer::new("prod", Some(Keyring::new(Key::from_bytes([k; 32])))).unwrap()
    }

    #[test]
    fn an_envelope_opens_once_and_its_replay_is_refused() {
        let a = sealed(4);
        let b = sealed(4);
        let p = a.seal_at(b"event", NOW).unwrap();
        assert_eq!(p[0], KIND_SEALED);
        assert_eq!(&p[6..14], &NOW.to_be_bytes(), "the stamp opens the nonce");
        assert_eq!(&*b.open_at(&p, NOW + 5).unwrap(), b"event");
        assert_eq!(b.open_at(&p, NOW + 10), Err(Reject::Replay));
        // Clones share the cache (the driver and its stream tasks).
        assert_eq!(b.clone().open_at(&p, NOW + 20_000), Err(Reject::Replay));
        // Much later the same bytes are stale, not accepted.
        assert_eq!(b.open_at(&p, NOW + 3_600_000), Err(Reject::Stale));
        // Another receiver has its own cache.
        assert_eq!(&*sealed(4).open_at(&p, NOW).unwrap(), b"event");
    }

    #[test]
    fn stamps_outside_the_window_are_refused() {
        let a = sealed(4);
        let old = a.seal_at(b"x", NOW - 61_000).unwrap();
        let ahead = a.seal_at(b"x", NOW + 31_000).unwrap();
        let late = a.seal_at(b"x", NOW - 59_000).unwrap();
        let b = sealed(4);
        assert_eq!(b.open_at(&old, NOW), Err(Reject::Stale));
        assert_eq!(b.open_at(&ahead, NOW), Err(Reject::Stale));
        assert!(b.open_at(&late, NOW).is_ok());
        let narrow = Framer::with_replay_window(
            "prod",
            Some(Keyring::new(Key::from_bytes([4; 32]))),
            ReplayWindow::new(Duration::from_secs(1), Duration::from_secs(1), 10),
        )
        .unwrap();
        let p = a.seal_at(b"x", NOW - 3_000).unwrap();
        assert_eq!(narrow.open_at(&p, NOW), Err(Reject::Stale));
    }

    #[test]
    fn a_rewritten_stamp_or_id_fails_authentication() {
        let a = sealed(4);
        let p = a.seal_at(b"x", NOW - 100_000).unwrap();
        // Moving the stamp into the window does not make it fresh.
        let mut moved = p.clone();
        moved[6..14].copy_from_slice(&NOW.to_be_bytes());
        assert_eq!(sealed(4).open_at(&moved, NOW), Err(Reject::AuthFailed));
        // Changing the id to dodge the cache fails too.
        let fresh = a.seal_at(b"x", NOW).unwrap();
        let b = sealed(4);
        assert!(b.open_at(&fresh, NOW).is_ok());
        let mut other_id = fresh.clone();
        other_id[20] ^= 1;
        assert_eq!(b.open_at(&other_id, NOW), Err(Reject::AuthFailed));
    }

    #[test]
    fn wrong_key_short_body_and_legacy_envelopes_fail_authentication() {
        let p = sealed(4).seal_at(b"x", NOW).unwrap();
        assert_eq!(sealed(5).open_at(&p, NOW), Err(Reject::AuthFailed));
        let rotated = Framer::new(
            "prod",
            Some(Keyring::with_keys(
                Key::from_bytes([5; 32]),
                [Key::from_bytes([4; 32])],
            )),
        )
        .unwrap();
        assert!(
            rotated.open_at(&p, NOW).is_ok(),
            "every installed key is tried"
        );
        assert_eq!(
            sealed(4).open_at(&p[..p.len() - 1 - TAG_LEN], NOW),
            Err(Reject::AuthFailed)
        );
        let mut legacy = p.clone();
        legacy[0] = KIND_SEALED_LEGACY;
        assert_eq!(sealed(4).open_at(&legacy, NOW), Err(Reject::AuthFailed));
    }

    #[test]
    fn plaintext_envelopes_have_no_replay_protection() {
        let plain = Framer::new("prod", None).unwrap();
        let p = plain.seal_at(b"x", NOW).unwrap();
        assert!(plain.open_at(&p, NOW).is_ok());
        assert!(plain.open_at(&p, NOW + 3_600_000).is_ok());
    }

    /// A sealing framer with key 4 in `mode`.
    fn in_mode(mode: EncryptionMode) -> Framer {
        let f = sealed(4);
        f.encryption().set(mode);
        f
    }

    #[test]
    fn each_mode_sends_and_accepts_what_it_says() {
        use EncryptionMode::*;
        let plain = Framer::new("prod", None).unwrap();
        for (mode, sends_sealed, takes_plain) in [
            (Enforce, true, false),
            (Send, true, true),
            (Accept, false, true),
        ] {
            let f = in_mode(mode);
            let out = f.seal_at(b"m", NOW).unwrap();
            assert_eq!(out[0] == KIND_SEALED, sends_sealed, "{mode} sends");
            assert!(out.len() - 1 <= f.overhead(), "overhead is an upper bound");
            // What it sends is read by a node in any mode with the key...
            for other in EncryptionMode::ALL {
                let opened = in_mode(other).open_at(&out, NOW);
                assert_eq!(
                    opened.is_ok(),
                    sends_sealed || other != Enforce,
                    "{mode} -> {other}"
                );
            }
            // ...and by a node without keys only when plaintext.
            assert_eq!(
                plain.open_at(&out, NOW).is_ok(),
                !sends_sealed,
                "{mode} -> plain"
            );
            // Incoming plaintext: accepted and counted, or refused.
            let p = plain.seal_at(b"p", NOW).unwrap();
            let got = f.open_at(&p, NOW);
            if takes_plain {
                assert_eq!(got.as_deref(), Ok(&b"p"[..]), "{mode} takes plaintext");
                assert_eq!(f.encryption().plaintext_accepted(), 1);
            } else {
                assert_eq!(got, Err(Reject::Unencrypted), "{mode} refuses plaintext");
                assert_eq!(f.encryption().plaintext_accepted(), 0);
            }
            // Sealed envelopes are always accepted, once.
            let s = sealed(4).seal_at(b"s", NOW).unwrap();
            assert_eq!(f.open_at(&s, NOW).as_deref(), Ok(&b"s"[..]));
            assert_eq!(
                f.open_at(&s, NOW),
                Err(Reject::Replay),
                "{mode} keeps replay protection"
            );
            // A wrong key or label still fails whatever the mode.
            assert_eq!(
                f.open_at(&sealed(5).seal_at(b"x", NOW).unwrap(), NOW),
                Err(Reject::AuthFailed)
            );
            let other_label = Framer::new("test", None)
                .unwrap()
                .seal_at(b"x", NOW)
                .unwrap();
            assert_eq!(f.open_at(&other_label, NOW), Err(Reject::LabelMismatch));
        }
    }

    #[test]
    fn a_mode_change_reaches_every_clone_at_once() {
        let f = sealed(4);
        let stream_side = f.clone();
        let p = Framer::new("prod", None)
            .unwrap()
            .seal_at(b"p", NOW)
            .unwrap();
        assert_eq!(stream_side.open_at(&p, NOW), Err(Reject::Unencrypted));
        f.encryption().set(EncryptionMode::Accept);
        assert!(stream_side.open_at(&p, NOW).is_ok());
        assert_eq!(stream_side.seal_at(b"x", NOW).unwrap()[0], KIND_PLAIN);
        f.encryption().set(EncryptionMode::Enforce);
        assert_eq!(stream_side.open_at(&p, NOW), Err(Reject::Unencrypted));
        assert_eq!(stream_side.seal_at(b"x", NOW).unwrap()[0], KIND_SEALED);
        assert_eq!(f.encryption().plaintext_accepted(), 1);
    }

    #[test]
    fn a_node_without_keys_ignores_the_mode() {
        let plain = Framer::new("prod", None).unwrap();
        plain.encryption().set(EncryptionMode::Send);
        assert_eq!(plain.seal_at(b"x", NOW).unwrap()[0], KIND_PLAIN);
        let s = sealed(4).seal_at(b"s", NOW).unwrap();
        assert_eq!(plain.open_at(&s, NOW), Err(Reject::AuthFailed));
        assert!(plain
            .open_at(&plain.seal_at(b"x", NOW).unwrap(), NOW)
            .is_ok());
        assert_eq!(
            plain.encryption().plaintext_accepted(),
            0,
            "only a keyed node counts"
        );
    }
}
