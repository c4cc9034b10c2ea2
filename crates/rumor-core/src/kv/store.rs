//! The replicated key space of one node.
//!
//! [`KvStore`] maps UTF-8 keys to [`Entry`]s and keeps, alongside, a
//! [`MerkleTree`] of the whole space (updated on every change), an index
//! from key hash to key (for the sync protocol's buckets), an index of
//! tombstones by age (for [`KvStore::gc`]) and a feed of [`Change`]s.
//!
//! Keys are last-write-wins by default; a [`KvConfig`] may put the store, or
//! key prefixes, in [`Mode::Siblings`]. Every replica must use the same
//! configuration: entries of the wrong mode are refused.
//!
//! Time: every call that stamps or checks timestamps takes `physical`,
//! wall-clock microseconds supplied by the driver (see [`super::hlc`]).
//!
//! Remote entries: [`KvStore::apply_remote`] takes the key as raw bytes
//! (as decoded from the wire) and checks everything ([`super::limits`]),
//! plus `physical` to refuse timestamps too far in the future (which would
//! otherwise win every last-write-wins race until the clocks caught up).
//! A merge that would leave more than
//! [`MAX_SIBLINGS`] siblings is refused as well: applications that write
//! without context must resolve siblings now and then.
//!
//! Change feed: every applied change, local or remote, queues a [`Change`];
//! drain it with [`KvStore::poll_change`].
//!
//! Tombstones: a deletion is kept as a tombstone so it can win over older
//! writes on other replicas; [`KvStore::gc`] drops those older than a grace
//! period. A replica cut off for longer than the grace period can bring a
//! deleted key back; choose the grace period above the longest partition
//! you expect anti-entropy to heal.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::entry::{Change, Entry, Mode, Record};
use super::hash::hash_bytes;
use super::hlc::Hlc;
use super::limits::{
    check_entry, check_key, check_key_bytes, Invalid, MAX_CONTEXT_LEN, MAX_SIBLINGS, MAX_VALUE_LEN,
};
use super::lww::LwwEntry;
use super::merkle::{MerkleTree, DEFAULT_DEPTH};
use super::outcome::{KvError, Outcome, Stale};
use super::siblings::SiblingSet;
use super::vv::VersionVector;

/// Configuration of a key space; every replica must use the same one.
#[derive(Clone, Debug, PartialEq)]
pub struct KvConfig {
    /// Mode of keys no prefix rule matches.
    pub default_mode: Mode,
    /// `(prefix, mode)` rules; the longest matching prefix wins.
    pub prefix_modes: Vec<(String, Mode)>,
    /// Merkle tree depth (clamped to `1..=MAX_DEPTH`).
    pub merkle_depth: u8,
    /// How far ahead of the local clock a remote timestamp may be.
    pub max_drift: Duration,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            default_mode: Mode::Lww,
            prefix_modes: Vec::new(),
            merkle_depth: DEFAULT_DEPTH,
            max_drift: Hlc::DEFAULT_MAX_DRIFT,
        }
    }
}

#[derive(Clone, Debug)]
struct Slot {
    entry: Entry,
    key_hash: u64,
    digest: u64,
}

/// The key space; see the module docs.
#[derive(Clone, Debug)]
pub struct KvStore {
    hlc: Hlc,
    default_mode: Mode,
    prefix_modes: Vec<(String, Mode)>,
    entries: BTreeMap<Arc<str>, Slot>,
    by_hash: BTreeSet<(u64, Arc<str>)>,
    tombstones: BTreeSet<(u64, Arc<str>)>,
    merkle: MerkleTree,
    horizon: Option<u64>,
    changes: VecDeque<Change>,
    /// Bytes held: keys and entries ([`Entry::wire_size`]).
    bytes: usize,
    quota: SpaceQuota,
}

/// How much the key space may hold on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceQuota {
    /// Records, tombstones included.
    pub keys: usize,
    /// Bytes of keys and entries.
    pub bytes: usize,
}

impl Default for SpaceQuota {
    fn default() -> Self {
        let limits = crate::limits::Limits::default();
        SpaceQuota {
            keys: limits.max_kv_keys,
            bytes: limits.max_kv_bytes,
        }
    }
}

impl KvStore {
    /// An empty key space for the node named `node`.
    pub fn new(node: impl Into<Arc<str>>, config: KvConfig) -> Self {
        KvStore {
            hlc: Hlc::new(node).with_max_drift(config.max_drift),
            default_mode: config.default_mode,
            prefix_modes: config.prefix_modes,
            entries: BTreeMap::new(),
            by_hash: BTreeSet::new(),
            tombstones: BTreeSet::new(),
            merkle: MerkleTree::new(config.merkle_depth),
            horizon: None,
            changes: VecDeque::new(),
            bytes: 0,
            quota: SpaceQuota::default(),
        }
    }

    /// The same, holding at most `quota`.
    pub fn with_quota(mut self, quota: SpaceQuota) -> Self {
        self.quota = quota;
        self
    }

    /// Change the quota. Keys over a lowered quota are kept; only new
    /// writes are checked against it.
    pub fn set_quota(&mut self, quota: SpaceQuota) {
        self.quota = quota;
    }

    /// Bytes held (keys and entries, as [`Entry::wire_size`] counts them).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The mode configured for `key`.
    pub fn mode_for(&self, key: &str) -> Mode {
        self.prefix_modes
            .iter()
            .filter(|(p, _)| key.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map_or(self.default_mode, |&(_, m)| m)
    }

    /// Write `value` under a last-write-wins `key`; returns the stored entry
    /// (to disseminate). Siblings-mode keys answer
    /// [`KvError::ContextRequired`].
    pub fn put(&mut self, physical: u64, key: &str, value: Vec<u8>) -> Result<Entry, KvError> {
        self.write_lww(physical, key, Some(value))
    }

    /// Delete a last-write-wins `key` (store a tombstone, even if the key is
    /// unknown here: it must win over older writes elsewhere).
    pub fn delete(&mut self, physical: u64, key: &str) -> Result<Entry, KvError> {
        self.write_lww(physical, key, None)
    }

    /// Write `value` having read the context `read` (see
    /// [`KvStore::context`]): siblings `read` covers are replaced, the rest
    /// kept. On a last-write-wins key the context is ignored.
    pub fn put_in_context(
        &mut self,
        physical: u64,
        key: &str,
        value: Vec<u8>,
        read: &VersionVector,
    ) -> Result<Entry, KvError> {
        self.write_siblings(physical, key, Some(value), read)
    }

    /// Delete the siblings `read` covers (a deletion sibling takes their
    /// place). On a last-write-wins key the context is ignored.
    pub fn delete_in_context(
        &mut self,
        physical: u64,
        key: &str,
        read: &VersionVector,
    ) -> Result<Entry, KvError> {
        self.write_siblings(physical, key, None, read)
    }

    fn write_lww(
        &mut self,
        physical: u64,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Entry, KvError> {
        check_key(key)?;
        if self.mode_for(key) == Mode::Siblings {
            return Err(KvError::ContextRequired { key: key.into() });
        }
        check_value_len(&value)?;
        if let Some(Entry::Siblings(_)) = self.entry(key) {
            return Err(Invalid::ModeMismatch {
                expected: Mode::Lww,
            }
            .into());
        }
        let entry = Entry::Lww(LwwEntry {
            value,
            ts: self.hlc.now(physical),
        });
        check_entry(&entry)?;
        self.commit(key, entry.clone())?;
        Ok(entry)
    }

    fn write_siblings(
        &mut self,
        physical: u64,
        key: &str,
        value: Option<Vec<u8>>,
        read: &VersionVector,
    ) -> Result<Entry, KvError> {
        check_key(key)?;
        if self.mode_for(key) == Mode::Lww {
            return self.write_lww(physical, key, value);
        }
        check_value_len(&value)?;
        let mut set = match self.entry(key) {
            None => SiblingSet::new(),
            Some(Entry::Siblings(s)) => s.clone(),
            Some(Entry::Lww(_)) => {
                return Err(Invalid::ModeMismatch {
                    expected: Mode::Siblings,
                }
                .into())
            }
        };
        set.write(self.hlc.now(physical), read, value);
        let entry = Entry::Siblings(set);
        check_entry(&entry)?;
        self.commit(key, entry.clone())?;
        Ok(entry)
    }

    /// Merge an entry received from a peer. Invalid or stale entries change
    /// nothing; the outcome says why. Valid timestamps advance the clock.
    pub fn apply_remote(&mut self, physical: u64, key: &[u8], entry: Entry) -> Outcome {
        match self.merge_remote(physical, key, entry) {
            Ok((key, merged)) => match self.commit(&key, merged) {
                Ok(()) => Outcome::Applied,
                Err(invalid) => Outcome::Invalid(invalid),
            },
            Err(outcome) => outcome,
        }
    }

    fn merge_remote(
        &mut self,
        physical: u64,
        key: &[u8],
        entry: Entry,
    ) -> Result<(String, Entry), Outcome> {
        let key = check_key_bytes(key).map_err(Outcome::Invalid)?;
        check_entry(&entry).map_err(Outcome::Invalid)?;
        let expected = self.mode_for(key);
        if entry.mode() != expected {
            return Err(Outcome::Invalid(Invalid::ModeMismatch { expected }));
        }
        if let Some(ts) = entry.latest() {
            self.hlc.update(physical, ts).map_err(|d| {
                Outcome::Invalid(Invalid::FromTheFuture {
                    ahead_micros: d.ahead_micros,
                })
            })?;
        }
        let merged = match (self.entries.get(key).map(|s| &s.entry), entry) {
            (None, entry) => {
                if tombstone_wall(&entry).is_some_and(|w| self.horizon.is_some_and(|h| w <= h)) {
                    return Err(Outcome::Stale(Stale::Expired));
                }
                entry
            }
            (Some(Entry::Lww(have)), Entry::Lww(new)) => match new.precedence(have) {
                std::cmp::Ordering::Greater => Entry::Lww(new),
                std::cmp::Ordering::Equal => return Err(Outcome::Stale(Stale::Duplicate)),
                std::cmp::Ordering::Less if new.is_tombstone() && !have.is_tombstone() => {
                    return Err(Outcome::Stale(Stale::TombstoneBehindWrite))
                }
                std::cmp::Ordering::Less => return Err(Outcome::Stale(Stale::Older)),
            },
            (Some(Entry::Siblings(have)), Entry::Siblings(new)) => {
                if *have == new {
                    return Err(Outcome::Stale(Stale::Duplicate));
                }
                let mut m = have.clone();
                if !m.merge(&new) {
                    return Err(Outcome::Stale(Stale::Covered));
                }
                if m.len() > MAX_SIBLINGS {
                    return Err(Outcome::Invalid(Invalid::TooManySiblings(m.len())));
                }
                if m.context().len() > MAX_CONTEXT_LEN {
                    return Err(Outcome::Invalid(Invalid::ContextTooLarge(
                        m.context().len(),
                    )));
                }
                Entry::Siblings(m)
            }
            (Some(_), _) => return Err(Outcome::Invalid(Invalid::ModeMismatch { expected })),
        };
        Ok((key.to_owned(), merged))
    }

    /// Store `entry` under `key`, keeping the indexes, the Merkle tree and
    /// the change feed in step; refused when it would take the key space
    /// past its quota.
    fn commit(&mut self, key: &str, entry: Entry) -> Result<(), Invalid> {
        let old_size = self
            .entries
            .get(key)
            .map(|s| key.len() + s.entry.wire_size());
        let bytes = self.bytes - old_size.unwrap_or(0) + key.len() + entry.wire_size();
        let keys = self.entries.len() + usize::from(old_size.is_none());
        if keys > self.quota.keys || bytes > self.quota.bytes {
            return Err(Invalid::SpaceFull {
                keys: self.quota.keys,
                bytes: self.quota.bytes,
            });
        }
        self.bytes = bytes;
        let digest = entry.digest();
        let new_tomb = tombstone_wall(&entry);
        let (arc, old) = match self.entries.get_key_value(key) {
            Some((arc, slot)) => (arc.clone(), Some(slot.clone())),
            None => (Arc::<str>::from(key), None),
        };
        let key_hash = match &old {
            Some(slot) => {
                self.merkle.replace(slot.key_hash, slot.digest, digest);
                if let Some(w) = tombstone_wall(&slot.entry) {
                    self.tombstones.remove(&(w, arc.clone()));
                }
                slot.key_hash
            }
            None => {
                let key_hash = hash_bytes(key.as_bytes());
                self.merkle.insert(key_hash, digest);
                self.by_hash.insert((key_hash, arc.clone()));
                key_hash
            }
        };
        if let Some(w) = new_tomb {
            self.tombstones.insert((w, arc.clone()));
        }
        let slot = Slot {
            entry: entry.clone(),
            key_hash,
            digest,
        };
        self.entries.insert(arc, slot);
        self.changes.push_back(Change {
            key: key.to_owned(),
            old: old.map(|s| s.entry),
            new: entry,
        });
        Ok(())
    }

    /// Drop tombstones written at or before `now - grace` (wall-clock
    /// micros, like `physical`). Remote tombstones that old, for keys not
    /// held, are refused as [`Stale::Expired`] from then on. Collection
    /// queues no change. Returns the keys dropped.
    pub fn gc(&mut self, now: u64, grace: Duration) -> Vec<Arc<str>> {
        let grace = grace.as_micros().min(u128::from(u64::MAX)) as u64;
        let horizon = now.saturating_sub(grace).max(self.horizon.unwrap_or(0));
        self.horizon = Some(horizon);
        let expired: Vec<(u64, Arc<str>)> = self
            .tombstones
            .iter()
            .take_while(|(w, _)| *w <= horizon)
            .cloned()
            .collect();
        for (w, key) in &expired {
            self.tombstones.remove(&(*w, key.clone()));
            if let Some(slot) = self.entries.remove(key) {
                self.bytes -= key.len() + slot.entry.wire_size();
                self.merkle.remove(slot.key_hash, slot.digest);
                self.by_hash.remove(&(slot.key_hash, key.clone()));
            }
        }
        expired.into_iter().map(|(_, key)| key).collect()
    }

    /// Load an entry kept from an earlier run (a data dir), before the node
    /// starts: checked like a remote entry, except that its timestamp is
    /// never refused as too far ahead (it was this node's own clock, or
    /// accepted by it). The clock advances past it, so new local writes
    /// outrank it. Queues no change. A key already held is replaced.
    pub fn restore(&mut self, key: &[u8], entry: Entry) -> Result<(), Invalid> {
        let key = check_key_bytes(key)?.to_owned();
        check_entry(&entry)?;
        let expected = self.mode_for(&key);
        if entry.mode() != expected {
            return Err(Invalid::ModeMismatch { expected });
        }
        if let Some(ts) = entry.latest() {
            // Checked against its own wall time, the stamp is never ahead.
            let _ = self.hlc.update(ts.wall, ts);
        }
        let queued = self.changes.len();
        let stored = self.commit(&key, entry);
        self.changes.truncate(queued);
        stored
    }

    /// [`KvStore::restore`] for a whole data dir at once, into an empty
    /// store: the map and its indexes are built in bulk (sorted), which at
    /// a million keys is several times faster than one insert at a time.
    /// Entries are checked as `restore` checks them; those refused, or past
    /// the quota, are counted in the answer `(loaded, refused)`. A store
    /// that already holds keys takes them one at a time.
    pub fn restore_all(&mut self, entries: Vec<(String, Entry)>) -> (usize, usize) {
        if !self.entries.is_empty() {
            let mut loaded = 0;
            let n = entries.len();
            for (key, entry) in entries {
                loaded += usize::from(self.restore(key.as_bytes(), entry).is_ok());
            }
            return (loaded, n - loaded);
        }
        let total = entries.len();
        let mut slots: Vec<(Arc<str>, Slot)> = Vec::with_capacity(total);
        let (mut keys, mut bytes) = (0usize, 0usize);
        for (key, entry) in entries {
            let valid = check_key_bytes(key.as_bytes()).is_ok()
                && check_entry(&entry).is_ok()
                && entry.mode() == self.mode_for(&key);
            let size = key.len() + entry.wire_size();
            if !valid || keys + 1 > self.quota.keys || bytes + size > self.quota.bytes {
                continue;
            }
            if let Some(ts) = entry.latest() {
                let _ = self.hlc.update(ts.wall, ts);
            }
            keys += 1;
            bytes += size;
            let key_hash = hash_bytes(key.as_bytes());
            let digest = entry.digest();
            slots.push((
                Arc::from(key),
                Slot {
                    entry,
                    key_hash,
                    digest,
                },
            ));
        }
        // A data dir holds each key once; should one repeat, the last wins
        // and is the only one counted.
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        slots.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        let mut by_hash = Vec::with_capacity(slots.len());
        let mut tombstones = Vec::new();
        self.bytes = 0;
        for (key, slot) in &slots {
            self.merkle.insert(slot.key_hash, slot.digest);
            by_hash.push((slot.key_hash, key.clone()));
            if let Some(w) = tombstone_wall(&slot.entry) {
                tombstones.push((w, key.clone()));
            }
            self.bytes += key.len() + slot.entry.wire_size();
        }
        let loaded = slots.len();
        self.by_hash = by_hash.into_iter().collect();
        self.tombstones = tombstones.into_iter().collect();
        self.entries = slots.into_iter().collect();
        (loaded, total - loaded)
    }

    /// The next queued change, oldest first. Drain regularly: the queue
    /// grows with every applied change.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// Number of queued changes.
    pub fn pending_changes(&self) -> usize {
        self.changes.len()
    }

    /// The live entry under `key`: `None` if absent or deleted.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entry(key).filter(|e| !e.is_tombstone())
    }

    /// The entry under `key`, tombstones included.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key).map(|s| &s.entry)
    }

    /// The context to pass to `put_in_context` after reading `key` (empty if
    /// absent or last-write-wins).
    pub fn context(&self, key: &str) -> VersionVector {
        match self.entry(key) {
            Some(Entry::Siblings(s)) => s.context().clone(),
            _ => VersionVector::new(),
        }
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub fn scan<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter(|(_, s)| !s.entry.is_tombstone())
            .map(|(k, s)| (&**k, &s.entry))
    }

    /// Every entry, tombstones included, in key order (a full-state dump).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> + '_ {
        self.entries.iter().map(|(k, s)| (&**k, &s.entry))
    }

    /// Entries after `after` (all when `None`), tombstones included, in
    /// key order: a full dump, read in pages.
    pub fn iter_after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let start = match after {
            Some(k) => std::ops::Bound::Excluded(k),
            None => std::ops::Bound::Unbounded,
        };
        self.entries
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .map(|(k, s)| (&**k, &s.entry))
    }

    /// The record under `key`, tombstones included.
    pub fn record(&self, key: &str) -> Option<Record> {
        self.entry(key).map(|entry| Record {
            key: key.to_owned(),
            entry: entry.clone(),
        })
    }

    /// Number of keys stored, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is stored, not even a tombstone.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The Merkle tree of the key space.
    pub fn merkle(&self) -> &MerkleTree {
        &self.merkle
    }

    /// The Merkle root: equal roots mean equal key spaces (tombstones
    /// included), up to hash collisions.
    pub fn root(&self) -> u64 {
        self.merkle.root()
    }

    /// The keys of a Merkle leaf bucket as `(key hash, key, entry digest)`,
    /// in key-hash order (empty for an unknown bucket).
    pub fn bucket(&self, bucket: u32) -> impl Iterator<Item = (u64, &str, u64)> + '_ {
        let valid = bucket < self.merkle.buckets();
        let (first, last) = self.merkle.bucket_range(bucket);
        let start: Arc<str> = Arc::from("");
        self.by_hash
            .range((first, start)..)
            .take_while(move |(h, _)| valid && *h <= last)
            .filter_map(|(h, k)| self.entries.get(k).map(|s| (*h, &**k, s.digest)))
    }

    /// The node this store stamps writes for.
    pub fn node(&self) -> &Arc<str> {
        self.hlc.node()
    }
}

fn check_value_len(value: &Option<Vec<u8>>) -> Result<(), Invalid> {
    match value {
        Some(v) if v.len() > MAX_VALUE_LEN => Err(Invalid::ValueTooLarge(v.len())),
        _ => Ok(()),
    }
}

/// The wall time of a tombstone's deletion; `None` for live entries.
fn tombstone_wall(entry: &Entry) -> Option<u64> {
    if entry.is_tombstone() {
        entry.latest().map(|t| t.wall)
    } else {
        None
    }
}
