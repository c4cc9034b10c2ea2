//! A fixed-shape Merkle tree over the key space, updated incrementally.
//!
//! Every key is hashed with the stable [`hash_bytes`](super::hash::hash_bytes);
//! the top `4 * depth` bits of that hash pick its leaf *bucket*. The tree is
//! complete with fanout [`FANOUT`] (16): level 0 is the root, level `depth`
//! holds `16^depth` leaves. With the default depth 4 there are 65,536
//! buckets: about 15 keys each at a million keys, and 0.5 MiB of hashes.
//!
//! - A leaf is the wrapping sum of `item_hash(key_hash, entry_digest)` over
//!   its keys, so adding, removing or changing a key updates it in O(1)
//!   without looking at its other keys.
//! - An inner node is the stable hash of its 16 children in order, or 0 when
//!   all are 0 (an empty subtree hashes to 0).
//!
//! An update therefore costs O(depth * fanout) hashing, never a rebuild.
//! Replicas must use the same depth; the sync protocol checks it.

use super::hash::{fmix64, StableHasher};

/// Children per inner node.
pub const FANOUT: usize = 16;
/// Bits of the key hash consumed per level.
const BITS: u32 = 4;
/// Default depth: 65,536 leaf buckets.
pub const DEFAULT_DEPTH: u8 = 4;
/// Greatest supported depth: 16^5 = 1,048,576 buckets (8 MiB of leaves).
pub const MAX_DEPTH: u8 = 5;

/// The hash a key contributes to its leaf.
pub fn item_hash(key_hash: u64, digest: u64) -> u64 {
    let mut h = StableHasher::new();
    h.write_u64(key_hash);
    h.write_u64(digest);
    h.finish()
}

/// A Merkle tree of fixed depth; see the module docs. Its hashes are
/// allocated on the first insert: an empty key space (most nodes of a
/// cluster that does not use it) costs nothing.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    depth: u8,
    /// `levels[l]` holds the `16^l` node hashes of level `l`; empty until
    /// the first insert (all hashes 0).
    levels: Vec<Vec<u64>>,
}

/// The children of any node of a tree not yet allocated.
static ZEROS: [u64; FANOUT] = [0; FANOUT];

impl PartialEq for MerkleTree {
    fn eq(&self, other: &Self) -> bool {
        let all_zero = |t: &MerkleTree| t.levels.iter().flatten().all(|&h| h == 0);
        self.depth == other.depth
            && match (self.levels.is_empty(), other.levels.is_empty()) {
                (false, false) => self.levels == other.levels,
                (true, true) => true,
                (true, false) => all_zero(other),
                (false, true) => all_zero(self),
            }
    }
}

impl Eq for MerkleTree {}

impl Default for MerkleTree {
    fn default() -> Self {
        Self::new(DEFAULT_DEPTH)
    }
}

impl MerkleTree {
    /// An empty tree; `depth` is clamped to `1..=MAX_DEPTH`.
    pub fn new(depth: u8) -> Self {
        MerkleTree {
            depth: depth.clamp(1, MAX_DEPTH),
            levels: Vec::new(),
        }
    }

    /// Number of levels below the root.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The root hash; 0 for an empty key space.
    pub fn root(&self) -> u64 {
        self.levels.first().map_or(0, |l| l[0])
    }

    /// Number of leaf buckets.
    pub fn buckets(&self) -> u32 {
        self.level_len(self.depth())
    }

    /// Number of nodes at `level` (0 beyond the leaves).
    pub fn level_len(&self, level: u8) -> u32 {
        if level > self.depth {
            0
        } else {
            FANOUT.pow(u32::from(level)) as u32
        }
    }

    /// The leaf bucket of a key hash.
    pub fn bucket_of(&self, key_hash: u64) -> u32 {
        (key_hash >> (64 - BITS * u32::from(self.depth))) as u32
    }

    /// The range of key hashes that fall in `bucket`, as `(first, last)`.
    pub fn bucket_range(&self, bucket: u32) -> (u64, u64) {
        let shift = 64 - BITS * u32::from(self.depth());
        let first = u64::from(bucket) << shift;
        (first, first | ((1u64 << shift) - 1))
    }

    /// The hash of node `index` at `level`, if it exists.
    pub fn node(&self, level: u8, index: u32) -> Option<u64> {
        if index >= self.level_len(level) {
            return None;
        }
        Some(
            self.levels
                .get(usize::from(level))
                .map_or(0, |l| l[index as usize]),
        )
    }

    /// The hashes of the children of node `index` at `level`, if that node
    /// exists and is not a leaf.
    pub fn children(&self, level: u8, index: u32) -> Option<&[u64]> {
        if level >= self.depth || index >= self.level_len(level) {
            return None;
        }
        let Some(below) = self.levels.get(usize::from(level) + 1) else {
            return Some(&ZEROS);
        };
        let start = (index as usize).checked_mul(FANOUT)?;
        below.get(start..start.checked_add(FANOUT)?)
    }

    /// Add a key with this entry digest.
    pub fn insert(&mut self, key_hash: u64, digest: u64) {
        self.adjust(key_hash, item_hash(key_hash, digest), 0);
    }

    /// Remove a key that had this entry digest.
    pub fn remove(&mut self, key_hash: u64, digest: u64) {
        self.adjust(key_hash, 0, item_hash(key_hash, digest));
    }

    /// Change a key's entry digest from `old` to `new`.
    pub fn replace(&mut self, key_hash: u64, old: u64, new: u64) {
        if old != new {
            self.adjust(key_hash, item_hash(key_hash, new), item_hash(key_hash, old));
        }
    }

    fn adjust(&mut self, key_hash: u64, add: u64, sub: u64) {
        let depth = self.depth;
        if self.levels.is_empty() {
            self.levels = (0..=u32::from(depth))
                .map(|l| vec![0u64; FANOUT.pow(l)])
                .collect();
        }
        let mut index = self.bucket_of(key_hash) as usize;
        let leaf = &mut self.levels[usize::from(depth)][index];
        *leaf = leaf.wrapping_add(add).wrapping_sub(sub);
        for level in (0..usize::from(depth)).rev() {
            index /= FANOUT;
            let start = index * FANOUT;
            let children = &self.levels[level + 1][start..start + FANOUT];
            let hash = if children.iter().all(|&c| c == 0) {
                0
            } else {
                let mut h = StableHasher::new();
                for &c in children {
                    h.write_u64(c);
                }
                // Never 0 for a non-empty subtree, so 0 means "empty".
                fmix64(h.finish()) | 1
            };
            self.levels[level][index] = hash;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_updates_match_insertion_order_and_undo() {
        let items: Vec<(u64, u64)> = (0..200u64)
            .map(|i| (super::super::hash::hash_bytes(&i.to_le_bytes()), i))
            .collect();
        let mut a = MerkleTree::new(2);
        let mut b = MerkleTree::new(2);
        for &(k, d) in &items {
            a.insert(k, d);
        }
        for &(k, d) in items.iter().rev() {
            b.insert(k, d);
        }
        assert_eq!(a, b);
        assert_ne!(a.root(), 0);
        a.replace(items[3].0, items[3].1, 999);
        assert_ne!(a.root(), b.root());
        a.replace(items[3].0, 999, items[3].1);
        assert_eq!(a, b);
        for &(k, d) in &items {
            a.remove(k, d);
        }
        assert_eq!(a, MerkleTree::new(2));
        assert_eq!(a.root(), 0);
    }

    #[test]
    fn geometry() {
        let t = MerkleTree::new(4);
        assert_eq!(t.buckets(), 65_536);
        assert_eq!(t.bucket_of(u64::MAX), 65_535);
        assert_eq!(t.bucket_range(1), (1 << 48, (2 << 48) - 1));
        assert_eq!(t.children(0, 0).map(<[u64]>::len), Some(16));
        assert_eq!(t.children(3, 4095).map(<[u64]>::len), Some(16));
        assert!(t.children(3, 4096).is_none());
        assert!(t.children(4, 0).is_none());
        assert!(t.children(200, u32::MAX).is_none());
        assert_eq!(MerkleTree::new(0).depth(), 1);
        assert_eq!(MerkleTree::new(9).depth(), MAX_DEPTH);
    }
}
