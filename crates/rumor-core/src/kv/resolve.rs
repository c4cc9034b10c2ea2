//! Example merge functions for [`SiblingSet::resolve`](super::SiblingSet::resolve).
//!
//! A resolver turns the live sibling values into one value; the application
//! writes it back with the set's context, which replaces the siblings it
//! combined. Both examples are commutative, associative and idempotent in
//! the sense that matters: the order in which siblings arrive does not
//! change the result.

/// Grow-only counter: each sibling is a little-endian `u64` *increment*;
/// the result is their (saturating) sum, encoded the same way.
///
/// Usage: increment by writing the delta with an **empty** context (it adds
/// a sibling and replaces nothing, so concurrent increments all survive);
/// compact by writing `resolve(sum_u64)` with the full context read. Values
/// that are not 8 bytes long are ignored.
pub fn sum_u64(values: &[&[u8]]) -> Vec<u8> {
    let sum = values
        .iter()
        .filter_map(|v| <[u8; 8]>::try_from(*v).ok())
        .map(u64::from_le_bytes)
        .fold(0u64, u64::saturating_add);
    sum.to_le_bytes().to_vec()
}

/// Set union: each sibling is a set of elements separated by `\n`; the
/// result holds every element of every sibling once, sorted, `\n`-separated.
/// Empty elements are dropped.
pub fn set_union(values: &[&[u8]]) -> Vec<u8> {
    let mut elements: Vec<&[u8]> = values
        .iter()
        .flat_map(|v| v.split(|&b| b == b'\n'))
        .filter(|e| !e.is_empty())
        .collect();
    elements.sort_unstable();
    elements.dedup();
    elements.join(&b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{SiblingSet, Timestamp, VersionVector};

    #[test]
    fn counter_increments_survive_concurrency_and_compact() {
        let empty = VersionVector::new();
        let mut a = SiblingSet::new();
        a.write(
            Timestamp::new(1, 0, "a"),
            &empty,
            Some(3u64.to_le_bytes().to_vec()),
        );
        let mut b = SiblingSet::new();
        b.write(
            Timestamp::new(1, 0, "b"),
            &empty,
            Some(4u64.to_le_bytes().to_vec()),
        );
        a.merge(&b);
        let total = a.resolve(sum_u64).unwrap();
        assert_eq!(total, 7u64.to_le_bytes());
        let read = a.context().clone();
        a.write(Timestamp::new(2, 0, "a"), &read, Some(total));
        assert_eq!(a.len(), 1);
        // A concurrent increment made before the compaction still counts.
        b.write(
            Timestamp::new(2, 0, "b"),
            &empty,
            Some(1u64.to_le_bytes().to_vec()),
        );
        a.merge(&b);
        assert_eq!(a.resolve(sum_u64).unwrap(), 8u64.to_le_bytes());
    }

    #[test]
    fn union_sorts_and_dedups() {
        let out = set_union(&[b"b\na", b"c\n\na", b""]);
        assert_eq!(out, b"a\nb\nc");
        assert_eq!(SiblingSet::new().resolve(set_union), None);
    }
}
