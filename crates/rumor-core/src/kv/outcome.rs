//! What the store reports back: outcomes of remote entries, errors of local
//! writes.

use super::limits::Invalid;

/// What [`KvStore::apply_remote`](super::KvStore::apply_remote) did with an
/// entry. Only `Applied` changes the store; the others say why not, so the
/// caller can count them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The entry changed the store (and a [`Change`](super::Change) was queued).
    Applied,
    /// The entry was well-formed but brought nothing new.
    Stale(Stale),
    /// The entry broke a limit or a rule and was ignored.
    Invalid(Invalid),
}

/// Why a well-formed remote entry changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// The store already holds exactly this entry.
    Duplicate,
    /// The store holds a newer last-write-wins entry.
    Older,
    /// A tombstone older than the value the store holds.
    TombstoneBehindWrite,
    /// Every sibling in it was already known or already superseded.
    Covered,
    /// A tombstone for an absent key, older than the garbage-collection
    /// horizon: it would be collected at once.
    Expired,
}

/// Errors of local writes. Nothing is stored when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The write breaks a limit or a rule.
    #[error("invalid write: {0}")]
    Invalid(Invalid),
    /// The key is in siblings mode: writes must carry the causal context
    /// their writer read (use `put_in_context` / `delete_in_context`).
    #[error("key {key:?} keeps siblings: the write needs the causal context it read")]
    ContextRequired {
        /// The key.
        key: String,
    },
}

impl From<Invalid> for KvError {
    fn from(i: Invalid) -> Self {
        KvError::Invalid(i)
    }
}
