//! Last-write-wins registers.
//!
//! An [`LwwEntry`] is a value (or a tombstone) stamped with the hybrid
//! logical clock [`Timestamp`] of its write; the timestamp names the writer.
//! Merging keeps the greater entry under a total order (timestamp first,
//! then the value bytes, so even two entries forged with the same timestamp
//! merge the same way everywhere): merge is commutative, associative and
//! idempotent.

use std::cmp::Ordering;

use super::hash::StableHasher;
use super::hlc::Timestamp;

/// A last-write-wins register: the latest value and when it was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LwwEntry {
    /// The value; `None` is a tombstone (the key was deleted).
    pub value: Option<Vec<u8>>,
    /// When, and by whom, the value was written.
    pub ts: Timestamp,
}

impl LwwEntry {
    /// A write of `value` at `ts`.
    pub fn put(value: Vec<u8>, ts: Timestamp) -> Self {
        LwwEntry {
            value: Some(value),
            ts,
        }
    }

    /// A deletion at `ts`.
    pub fn tombstone(ts: Timestamp) -> Self {
        LwwEntry { value: None, ts }
    }

    /// Whether this entry records a deletion.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// The name of the node that wrote this entry.
    pub fn writer(&self) -> &str {
        &self.ts.node
    }

    /// The total order merge uses: by timestamp, then by value
    /// (tombstone lowest, then bytes lexicographically).
    pub fn precedence(&self, other: &LwwEntry) -> Ordering {
        self.ts
            .cmp(&other.ts)
            .then_with(|| self.value.cmp(&other.value))
    }

    /// Merge `other` into `self`, keeping the winner; true if `self` changed.
    pub fn merge(&mut self, other: &LwwEntry) -> bool {
        if other.precedence(self) == Ordering::Greater {
            *self = other.clone();
            true
        } else {
            false
        }
    }

    /// Mix this entry into a stable hash (used for Merkle digests).
    pub fn hash_into(&self, h: &mut StableHasher) {
        h.write_u64(self.ts.wall);
        h.write_u64(u64::from(self.ts.logical));
        h.write_bytes(self.ts.node.as_bytes());
        match &self.value {
            None => h.write_u64(0),
            Some(v) => {
                h.write_u64(1);
                h.write_bytes(v);
            }
        }
    }
}

/// The merge of two entries, as a value.
pub fn merged(a: &LwwEntry, b: &LwwEntry) -> LwwEntry {
    let mut out = a.clone();
    out.merge(b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = LwwEntry> {
        (
            0u64..4,
            0u32..3,
            prop::sample::select(vec!["a", "b"]),
            prop::option::of(prop::collection::vec(0u8..3, 0..3)),
        )
            .prop_map(|(wall, logical, node, value)| LwwEntry {
                value,
                ts: Timestamp::new(wall, logical, node),
            })
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in entry(), b in entry()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in entry(), b in entry(), c in entry()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in entry(), b in entry()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
        }
    }

    #[test]
    fn later_write_wins_and_tombstone_can_win() {
        let mut e = LwwEntry::put(b"x".to_vec(), Timestamp::new(1, 0, "a"));
        assert!(!e.merge(&LwwEntry::put(b"old".to_vec(), Timestamp::new(0, 5, "z"))));
        assert!(e.merge(&LwwEntry::tombstone(Timestamp::new(2, 0, "b"))));
        assert!(e.is_tombstone());
        assert_eq!(e.writer(), "b");
    }
}
