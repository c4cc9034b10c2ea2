//! One unit of writes, and the merge of many into one transaction.

use super::meta::Meta;
use std::collections::BTreeMap;

/// Writes to commit together. Within a batch, `kv_remove` is applied after
/// `kv_put` (a key in both ends up removed); across batches, later ones
/// win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Key-space entries to store (the caller's encoding of the entry).
    pub kv_put: Vec<(String, Vec<u8>)>,
    /// Key-space keys to forget (garbage-collected tombstones).
    pub kv_remove: Vec<String>,
    /// This node's per-node state: key, value (`None`: deleted), version.
    pub state_put: Vec<(String, Option<String>, u64)>,
    /// New counters, replacing the stored ones.
    pub meta: Option<Meta>,
}

impl Batch {
    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.kv_put.is_empty()
            && self.kv_remove.is_empty()
            && self.state_put.is_empty()
            && self.meta.is_none()
    }
}

/// The net effect of a sequence of batches: one operation per key, the
/// last one. What a transaction applies, and what the writer keeps to
/// retry after a failed commit (bounded by the number of distinct keys, not
/// by the number of writes). Ordered: the B-tree takes keys in order
/// faster and packs its pages fuller (285 → 143 B/key on a bulk load of
/// 1,000,000 keys in batches of 10,000, measured).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// `Some(bytes)`: put; `None`: remove.
    pub kv: BTreeMap<String, Option<Vec<u8>>>,
    pub state: BTreeMap<String, (Option<String>, u64)>,
    pub meta: Option<Meta>,
}

impl Changes {
    /// Folds `batch` in, after everything already here.
    pub fn absorb(&mut self, batch: Batch) {
        for (k, v) in batch.kv_put {
            self.kv.insert(k, Some(v));
        }
        for k in batch.kv_remove {
            self.kv.insert(k, None);
        }
        for (k, v, version) in batch.state_put {
            self.state.insert(k, (v, version));
        }
        if batch.meta.is_some() {
            self.meta = batch.meta;
        }
    }

    /// Folds `later` in, after everything already here.
    pub fn absorb_changes(&mut self, later: Changes) {
        self.kv.extend(later.kv);
        self.state.extend(later.state);
        if later.meta.is_some() {
            self.meta = later.meta;
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.state.is_empty() && self.meta.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_batches_win_and_removes_follow_puts() {
        let mut c = Changes::default();
        c.absorb(Batch {
            kv_put: vec![("a".into(), b"1".to_vec()), ("b".into(), b"1".to_vec())],
            kv_remove: vec!["b".into()],
            state_put: vec![("s".into(), Some("x".into()), 1)],
            meta: None,
        });
        c.absorb(Batch {
            kv_put: vec![("a".into(), b"2".to_vec())],
            state_put: vec![("s".into(), None, 2)],
            ..Batch::default()
        });
        assert_eq!(c.kv["a"], Some(b"2".to_vec()));
        assert_eq!(c.kv["b"], None);
        assert_eq!(c.state["s"], (None, 2));
        assert!(c.meta.is_none());
    }
}
