//! Version vectors: per-node event counters that capture causality.
//!
//! `a` *dominates* `b` when every counter of `a` is at least `b`'s (a
//! missing node counts as zero): whoever holds `a` has seen everything `b`
//! records. Two vectors neither of which dominates the other are
//! *concurrent*.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::hash::StableHasher;

/// How two version vectors relate causally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causality {
    /// Identical.
    Equal,
    /// `self` is strictly dominated by the other: it happened before.
    Before,
    /// `self` strictly dominates the other: it happened after.
    After,
    /// Neither dominates the other.
    Concurrent,
}

/// A version vector: node name to the highest event counter seen from it.
/// Zero counters are never stored, so equal vectors compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VersionVector(BTreeMap<Arc<str>, u64>);

impl VersionVector {
    /// The empty vector: has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter for `node`, zero if absent.
    pub fn get(&self, node: &str) -> u64 {
        self.0.get(node).copied().unwrap_or(0)
    }

    /// Raise `node`'s counter to at least `counter`.
    pub fn observe(&mut self, node: &Arc<str>, counter: u64) {
        if counter == 0 {
            return;
        }
        let c = self.0.entry(node.clone()).or_insert(0);
        *c = (*c).max(counter);
    }

    /// Advance `node`'s counter by one and return the new value (saturating).
    pub fn increment(&mut self, node: &Arc<str>) -> u64 {
        let c = self.0.entry(node.clone()).or_insert(0);
        *c = c.saturating_add(1);
        *c
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VersionVector) {
        for (node, &c) in &other.0 {
            self.observe(node, c);
        }
    }

    /// Whether `self` has seen everything `other` has (`self >= other`).
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(n, &c)| self.get(n) >= c)
    }

    /// Whether the event `(node, counter)` is recorded by this vector.
    pub fn contains(&self, node: &str, counter: u64) -> bool {
        self.get(node) >= counter
    }

    /// The causal relation of `self` to `other`.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        match (self.dominates(other), other.dominates(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }

    /// Number of nodes with a non-zero counter.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no node has a non-zero counter.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(node, counter)` pairs in node-name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, u64)> + '_ {
        self.0.iter().map(|(n, &c)| (n, c))
    }

    /// Mix this vector into a stable hash.
    pub fn hash_into(&self, h: &mut StableHasher) {
        h.write_u64(self.0.len() as u64);
        for (n, &c) in &self.0 {
            h.write_bytes(n.as_bytes());
            h.write_u64(c);
        }
    }
}

impl<N: Into<Arc<str>>> FromIterator<(N, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (N, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (n, c) in iter {
            vv.observe(&n.into(), c);
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        pairs.iter().map(|&(n, c)| (n, c)).collect()
    }

    #[test]
    fn compare_cases() {
        let a = vv(&[("a", 1), ("b", 2)]);
        assert_eq!(a.compare(&a.clone()), Causality::Equal);
        assert_eq!(a.compare(&vv(&[("a", 1)])), Causality::After);
        assert_eq!(vv(&[("b", 2)]).compare(&a), Causality::Before);
        assert_eq!(a.compare(&vv(&[("c", 1)])), Causality::Concurrent);
        assert_eq!(
            VersionVector::new().compare(&vv(&[("x", 0)])),
            Causality::Equal
        );
    }

    #[test]
    fn merge_and_increment() {
        let mut a = vv(&[("a", 1), ("b", 5)]);
        a.merge(&vv(&[("a", 3), ("c", 1)]));
        assert_eq!(a, vv(&[("a", 3), ("b", 5), ("c", 1)]));
        let node: Arc<str> = "a".into();
        assert_eq!(a.increment(&node), 4);
        assert!(a.contains("a", 4) && !a.contains("a", 5));
    }
}
