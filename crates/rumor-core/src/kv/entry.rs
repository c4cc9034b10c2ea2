//! What the key space stores per key: an [`Entry`], in one of two [`Mode`]s.

use super::hash::StableHasher;
use super::hlc::Timestamp;
use super::lww::LwwEntry;
use super::siblings::SiblingSet;

/// How a key resolves concurrent writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Mode {
    /// Last write wins, by hybrid logical clock timestamp (the default).
    #[default]
    Lww,
    /// Concurrent writes are kept as siblings; writes need a causal context.
    Siblings,
}

/// The replicated state of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Entry {
    /// A last-write-wins register.
    Lww(LwwEntry),
    /// A multi-value register.
    Siblings(SiblingSet),
}

impl Entry {
    /// The mode this entry belongs to.
    pub fn mode(&self) -> Mode {
        match self {
            Entry::Lww(_) => Mode::Lww,
            Entry::Siblings(_) => Mode::Siblings,
        }
    }

    /// Whether the key reads as deleted.
    pub fn is_tombstone(&self) -> bool {
        match self {
            Entry::Lww(e) => e.is_tombstone(),
            Entry::Siblings(s) => s.is_tombstone(),
        }
    }

    /// The greatest write timestamp in the entry.
    pub fn latest(&self) -> Option<&Timestamp> {
        match self {
            Entry::Lww(e) => Some(&e.ts),
            Entry::Siblings(s) => s.max_ts(),
        }
    }

    /// The value of a last-write-wins entry; `None` for tombstones and
    /// sibling sets.
    pub fn lww_value(&self) -> Option<&[u8]> {
        match self {
            Entry::Lww(e) => e.value.as_deref(),
            Entry::Siblings(_) => None,
        }
    }

    /// A stable 64-bit digest of the whole entry, for the Merkle tree: equal
    /// entries have equal digests on every platform and version.
    pub fn digest(&self) -> u64 {
        let mut h = StableHasher::new();
        match self {
            Entry::Lww(e) => {
                h.write_u64(1);
                e.hash_into(&mut h);
            }
            Entry::Siblings(s) => {
                h.write_u64(2);
                s.hash_into(&mut h);
            }
        }
        h.finish()
    }

    /// Approximate encoded size in bytes (fixed-width integers,
    /// length-prefixed strings), for budgeting messages and benchmarks.
    pub fn wire_size(&self) -> usize {
        fn ts(t: &Timestamp) -> usize {
            8 + 4 + 1 + t.node.len()
        }
        fn val(v: &Option<Vec<u8>>) -> usize {
            1 + v.as_ref().map_or(0, |v| 4 + v.len())
        }
        1 + match self {
            Entry::Lww(e) => ts(&e.ts) + val(&e.value),
            Entry::Siblings(s) => {
                let ctx: usize = s.context().iter().map(|(n, _)| 1 + n.len() + 8).sum();
                let sibs: usize = s
                    .siblings()
                    .map(|(d, sib)| 1 + d.node.len() + 8 + ts(&sib.ts) + val(&sib.value))
                    .sum();
                2 + ctx + 1 + sibs
            }
        }
    }
}

/// A key and its entry: the unit sent between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// The key (valid UTF-8 by construction; the receiver re-checks limits).
    pub key: String,
    /// Its state.
    pub entry: Entry,
}

impl Record {
    /// Approximate encoded size in bytes (see [`Entry::wire_size`]).
    pub fn wire_size(&self) -> usize {
        2 + self.key.len() + self.entry.wire_size()
    }
}

/// A change the store applied, local or remote, for the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Change {
    /// The key that changed.
    pub key: String,
    /// Its entry before, if any.
    pub old: Option<Entry>,
    /// Its entry after (possibly a tombstone).
    pub new: Entry,
}
