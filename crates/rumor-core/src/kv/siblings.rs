//! Multi-value registers: concurrent writes kept side by side as siblings.
//!
//! A [`SiblingSet`] holds the live siblings, each named by a [`Dot`] (its
//! writer and that writer's event counter for the key), and a causal
//! *context*: a [`VersionVector`] of every dot the set has seen, live or
//! superseded.
//!
//! A write carries the context its writer read. Siblings the context covers
//! were seen by the writer and are replaced; the others are concurrent with
//! the write and stay. So a write with the full context of a read replaces
//! everything it read, and a write with an empty context only adds.
//!
//! Merge keeps a sibling present on both sides, and a sibling present on one
//! side only if the other side's context has not seen it (if it has, the
//! other side superseded it). Contexts merge pointwise. This is the join of
//! a causal dot store: commutative, associative and idempotent. Two
//! siblings forged with the same dot but different contents merge to the
//! greater one, so even bad input converges.
//!
//! Dots a writer issues are numbered from the set's context, so a writer
//! must write to its own replica (as every rumor node does). A node that
//! loses its state and reuses a name may reissue dots; give a rejoining,
//! wiped node a fresh name.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::hash::StableHasher;
use super::hlc::Timestamp;
use super::vv::VersionVector;

/// One write event: its writer and the writer's counter for the key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Dot {
    /// The writer.
    pub node: Arc<str>,
    /// The writer's event counter for this key, from 1.
    pub counter: u64,
}

/// The contents of one sibling.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Sibling {
    /// When it was written (for display and tombstone collection).
    pub ts: Timestamp,
    /// The value; `None` records a deletion.
    pub value: Option<Vec<u8>>,
}

/// A multi-value register; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SiblingSet {
    #[cfg_attr(feature = "serde", serde(with = "pairs"))]
    siblings: BTreeMap<Dot, Sibling>,
    context: VersionVector,
}

impl SiblingSet {
    /// An empty register: no siblings, empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Build a set from parts (as decoded from the wire). Not checked:
    /// use [`SiblingSet::is_well_formed`] before trusting it.
    pub fn from_parts(siblings: BTreeMap<Dot, Sibling>, context: VersionVector) -> Self {
        SiblingSet { siblings, context }
    }

    /// Write `value` (`None` to delete) as `ts.node`, having read `read`.
    /// Siblings `read` covers are replaced; returns the new sibling's dot.
    pub fn write(&mut self, ts: Timestamp, read: &VersionVector, value: Option<Vec<u8>>) -> Dot {
        self.siblings
            .retain(|d, _| !read.contains(&d.node, d.counter));
        self.context.merge(read);
        let node = ts.node.clone();
        let counter = self.context.increment(&node);
        let dot = Dot { node, counter };
        self.siblings.insert(dot.clone(), Sibling { ts, value });
        dot
    }

    /// Merge `other` into `self`; true if `self` changed.
    pub fn merge(&mut self, other: &SiblingSet) -> bool {
        let mut out: BTreeMap<Dot, Sibling> = BTreeMap::new();
        for (dot, mine) in &self.siblings {
            match other.siblings.get(dot) {
                Some(theirs) => {
                    out.insert(dot.clone(), mine.max(theirs).clone());
                }
                None if !other.context.contains(&dot.node, dot.counter) => {
                    out.insert(dot.clone(), mine.clone());
                }
                None => {}
            }
        }
        for (dot, theirs) in &other.siblings {
            if !self.siblings.contains_key(dot) && !self.context.contains(&dot.node, dot.counter) {
                out.insert(dot.clone(), theirs.clone());
            }
        }
        let mut context = self.context.clone();
        context.merge(&other.context);
        let changed = out != self.siblings || context != self.context;
        self.siblings = out;
        self.context = context;
        changed
    }

    /// The causal context: pass it back with the next write to replace
    /// what was read.
    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    /// All siblings, deletions included, in dot order.
    pub fn siblings(&self) -> impl Iterator<Item = (&Dot, &Sibling)> + '_ {
        self.siblings.iter()
    }

    /// Number of siblings, deletions included.
    pub fn len(&self) -> usize {
        self.siblings.len()
    }

    /// Whether there are no siblings at all.
    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// The live values, in dot order.
    pub fn values(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.siblings.values().filter_map(|s| s.value.as_deref())
    }

    /// Whether no sibling holds a value (the key reads as deleted).
    pub fn is_tombstone(&self) -> bool {
        self.values().next().is_none()
    }

    /// The greatest sibling timestamp, if any.
    pub fn max_ts(&self) -> Option<&Timestamp> {
        self.siblings.values().map(|s| &s.ts).max()
    }

    /// Every sibling's dot is in the context (and counters start at 1).
    pub fn is_well_formed(&self) -> bool {
        self.siblings
            .keys()
            .all(|d| d.counter > 0 && self.context.contains(&d.node, d.counter))
    }

    /// Collapse the live values with `merge` (see [`super::resolve`]);
    /// `None` if there are none. Write the result back with
    /// [`SiblingSet::context`] to replace the siblings it combined.
    pub fn resolve<F>(&self, merge: F) -> Option<Vec<u8>>
    where
        F: FnOnce(&[&[u8]]) -> Vec<u8>,
    {
        let live: Vec<&[u8]> = self.values().collect();
        if live.is_empty() {
            None
        } else {
            Some(merge(&live))
        }
    }

    /// Mix this set into a stable hash.
    pub fn hash_into(&self, h: &mut StableHasher) {
        self.context.hash_into(h);
        h.write_u64(self.siblings.len() as u64);
        for (dot, s) in &self.siblings {
            h.write_bytes(dot.node.as_bytes());
            h.write_u64(dot.counter);
            h.write_u64(s.ts.wall);
            h.write_u64(u64::from(s.ts.logical));
            h.write_bytes(s.ts.node.as_bytes());
            match &s.value {
                None => h.write_u64(0),
                Some(v) => {
                    h.write_u64(1);
                    h.write_bytes(v);
                }
            }
        }
    }
}

/// Siblings as a list of `(dot, sibling)` pairs for serde: a map keyed by
/// a struct has no form in JSON and most text formats. Deserializing does
/// not check the set (see [`SiblingSet::is_well_formed`]).
#[cfg(feature = "serde")]
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Dot, Sibling};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<Dot, Sibling>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Dot, Sibling>, D::Error> {
        Ok(Vec::<(Dot, Sibling)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(wall: u64, node: &str) -> Timestamp {
        Timestamp::new(wall, 0, node)
    }

    #[test]
    fn concurrent_writes_are_siblings_and_a_covering_write_replaces_them() {
        let empty = VersionVector::new();
        let mut a = SiblingSet::new();
        a.write(ts(1, "a"), &empty, Some(b"x".to_vec()));
        let mut b = SiblingSet::new();
        b.write(ts(1, "b"), &empty, Some(b"y".to_vec()));
        assert!(a.merge(&b));
        assert_eq!(a.values().collect::<Vec<_>>(), vec![&b"x"[..], &b"y"[..]]);

        let read = a.context().clone();
        a.write(ts(2, "a"), &read, Some(b"z".to_vec()));
        assert_eq!(a.values().collect::<Vec<_>>(), vec![&b"z"[..]]);

        // b, merging a's state, drops y: a's context saw it.
        assert!(b.merge(&a));
        assert_eq!(b, a);
        assert!(!b.merge(&a));
    }

    #[test]
    fn delete_with_context_leaves_concurrent_value() {
        let empty = VersionVector::new();
        let mut a = SiblingSet::new();
        a.write(ts(1, "a"), &empty, Some(b"x".to_vec()));
        let read = a.context().clone();
        let mut b = a.clone();
        a.write(ts(2, "a"), &read, None);
        assert!(a.is_tombstone());
        b.write(ts(2, "b"), &empty, Some(b"y".to_vec()));
        a.merge(&b);
        assert!(!a.is_tombstone());
        assert_eq!(a.values().collect::<Vec<_>>(), vec![&b"y"[..]]);
    }

    /// Arbitrary well-formed sets over a small universe of dots, so that
    /// overlaps, coverage and same-dot conflicts all happen.
    pub(crate) fn sibling_set() -> impl Strategy<Value = SiblingSet> {
        let node = prop::sample::select(vec!["a", "b", "c"]);
        let sib = (node.clone(), 1u64..4, 0u64..3, prop::option::of(0u8..3));
        (
            prop::collection::vec(sib, 0..4),
            prop::collection::vec((node, 0u64..4), 0..3),
        )
            .prop_map(|(sibs, ctx)| {
                let mut siblings = BTreeMap::new();
                let mut context: VersionVector = ctx.into_iter().collect();
                for (n, counter, wall, v) in sibs {
                    let node: Arc<str> = n.into();
                    context.observe(&node, counter);
                    siblings.insert(
                        Dot { node, counter },
                        Sibling {
                            ts: ts(wall, n),
                            value: v.map(|b| vec![b]),
                        },
                    );
                }
                SiblingSet::from_parts(siblings, context)
            })
    }

    fn merged(a: &SiblingSet, b: &SiblingSet) -> SiblingSet {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in sibling_set(), b in sibling_set()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in sibling_set(), b in sibling_set(), c in sibling_set()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent_and_well_formed(a in sibling_set(), b in sibling_set()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let ab = merged(&a, &b);
            prop_assert!(ab.is_well_formed());
            prop_assert_eq!(merged(&ab, &b), ab.clone());
        }
    }
}
