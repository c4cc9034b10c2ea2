//! The encryption mode of a node with a keyring, and the switch that
//! changes it while the node runs: the transition mode that turns
//! encryption on (or off) in a running cluster with no member ever unable
//! to read another's packets (memberlist's GossipVerifyIncoming and
//! GossipVerifyOutgoing).
//!
//! | mode      | sends     | accepts             |
//! |-----------|-----------|---------------------|
//! | `Enforce` | encrypted | encrypted only      |
//! | `Send`    | encrypted | encrypted and plain |
//! | `Accept`  | plain     | encrypted and plain |
//!
//! Turning encryption on: give every node the keyring in `Accept` (each
//! still sends plaintext, so the nodes without keys keep understanding it),
//! then every node to `Send` (all of them accept both by then), then every
//! node to `Enforce`. Turning it off is the reverse. While a node accepts
//! plaintext, anyone who can reach its port can talk to it as in a
//! plaintext cluster: each plaintext envelope it accepts is counted
//! ([`EncryptionSwitch::plaintext_accepted`]) so an operator sees when the
//! last plaintext sender is gone. A node without a keyring ignores the mode.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// What a node with a keyring sends and accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EncryptionMode {
    /// Send encrypted, accept only encrypted envelopes (the default).
    #[default]
    Enforce,
    /// Send encrypted, accept both encrypted and plaintext envelopes.
    Send,
    /// Send plaintext, accept both encrypted and plaintext envelopes.
    Accept,
}

impl EncryptionMode {
    /// Every mode, strictest first.
    pub const ALL: [EncryptionMode; 3] = [
        EncryptionMode::Enforce,
        EncryptionMode::Send,
        EncryptionMode::Accept,
    ];

    /// Whether outgoing envelopes are encrypted.
    pub fn encrypts_outgoing(self) -> bool {
        !matches!(self, EncryptionMode::Accept)
    }

    /// Whether incoming plaintext envelopes are refused.
    pub fn requires_incoming(self) -> bool {
        matches!(self, EncryptionMode::Enforce)
    }

    /// The mode's name: `enforce`, `send` or `accept`.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionMode::Enforce => "enforce",
            EncryptionMode::Send => "send",
            EncryptionMode::Accept => "accept",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            EncryptionMode::Enforce => 0,
            EncryptionMode::Send => 1,
            EncryptionMode::Accept => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => EncryptionMode::Send,
            2 => EncryptionMode::Accept,
            _ => EncryptionMode::Enforce,
        }
    }
}

impl fmt::Display for EncryptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not `enforce`, `send` or `accept`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown encryption mode {0:?}: use enforce, send or accept")]
pub struct UnknownMode(pub String);

impl FromStr for EncryptionMode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EncryptionMode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownMode(s.to_string()))
    }
}

#[derive(Debug, Default)]
struct Inner {
    mode: AtomicU8,
    plaintext_accepted: AtomicU64,
}

/// The encryption mode of a running node, shared by every clone of its
/// framer (datagrams and streams alike): a change applies to the next
/// envelope sent or received.
#[derive(Clone, Debug, Default)]
pub struct EncryptionSwitch(Arc<Inner>);

impl EncryptionSwitch {
    /// A switch set to `mode`.
    pub fn new(mode: EncryptionMode) -> Self {
        let s = EncryptionSwitch::default();
        s.set(mode);
        s
    }

    /// The mode in effect.
    pub fn get(&self) -> EncryptionMode {
        EncryptionMode::from_u8(self.0.mode.load(Relaxed))
    }

    /// Change the mode.
    pub fn set(&self, mode: EncryptionMode) {
        self.0.mode.store(mode.to_u8(), Relaxed);
    }

    /// Plaintext envelopes accepted because the mode allowed them.
    pub fn plaintext_accepted(&self) -> u64 {
        self.0.plaintext_accepted.load(Relaxed)
    }

    /// Count one plaintext envelope accepted.
    pub(crate) fn count_plaintext(&self) {
        self.0.plaintext_accepted.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for m in EncryptionMode::ALL {
            assert_eq!(m.as_str().parse::<EncryptionMode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!("SEND".parse(), Ok(EncryptionMode::Send));
        assert!("off".parse::<EncryptionMode>().is_err());
        assert_eq!(EncryptionMode::default(), EncryptionMode::Enforce);
    }

    #[test]
    fn the_switches_of_each_mode() {
        use EncryptionMode::*;
        let flags = |m: EncryptionMode| (m.encrypts_outgoing(), m.requires_incoming());
        assert_eq!(flags(Enforce), (true, true));
        assert_eq!(flags(Send), (true, false));
        assert_eq!(flags(Accept), (false, false));
    }

    #[test]
    fn clones_share_the_mode_and_the_count() {
        let a = EncryptionSwitch::new(EncryptionMode::Accept);
        let b = a.clone();
        assert_eq!(b.get(), EncryptionMode::Accept);
        b.set(EncryptionMode::Send);
        assert_eq!(a.get(), EncryptionMode::Send);
        a.count_plaintext();
        assert_eq!(b.plaintext_accepted(), 1);
    }
}
