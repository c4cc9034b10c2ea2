//! Per-node state: each member owns a small map of string keys, versioned
//! by a counter only the owner advances (Cassandra's application state,
//! Scuttlebutt's reconciliation).
//!
//! Reconciliation: a digest lists `(owner, max version known without gaps)`;
//! the answer is every entry above that version, in version order, so the
//! receiver can always advance its own max to the last version it applied.
//! Deletes are tombstones, collected after a grace period; a peer too far
//! behind a collected tombstone gets the owner's whole state instead
//! (a reset). A restarted owner that hears of its own state at a higher
//! version supersedes it: it rewrites its keys above that version and
//! tombstones the ones it no longer has.

pub(crate) mod service;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::limits::STATE_VERSION_JUMP;
use crate::time::Instant;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// One key's value (`None`: deleted) and the owner's version when written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value, or `None` for a tombstone.
    pub value: Option<String>,
    /// Owner version of the write.
    pub version: u64,
}

/// A batch of one owner's entries, as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// Whose state.
    pub owner: Arc<str>,
    /// Replace everything known of the owner (the receiver was behind a
    /// collected tombstone).
    pub reset: bool,
    /// The receiver's max version the sender started from.
    pub from: u64,
    /// After applying, the receiver knows the owner without gaps up to here
    /// (if its own max was at least `from`).
    pub through: u64,
    /// `(key, entry)` in ascending version order.
    pub entries: Vec<(String, Entry)>,
}

/// What happened to one incoming entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored.
    Applied,
    /// Not newer than what is known: ignored.
    Stale,
    /// Over a size limit or otherwise malformed: ignored.
    Invalid,
    /// The owner's key or byte quota is full ([`Quota`]): ignored.
    OverQuota,
    /// Its version is an implausible jump ahead of the owner's known
    /// version ([`crate::limits::STATE_VERSION_JUMP`]): ignored.
    Implausible,
}

/// Why a local state write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The key or value breaks a size rule.
    Invalid(crate::Rejected),
    /// This node's quota ([`Quota`]) is full.
    Quota(String),
}

impl From<WriteError> for crate::Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid(r) => crate::Error::State(r),
            WriteError::Quota(detail) => crate::Error::LimitReached {
                limit: crate::limits::Limit::State,
                detail,
            },
        }
    }
}

/// How much per-node state one owner may hold here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Keys, tombstones included.
    pub keys: usize,
    /// Bytes of keys and values.
    pub bytes: usize,
}

impl Default for Quota {
    fn default() -> Self {
        let limits = crate::limits::Limits::default();
        Quota {
            keys: limits.max_state_keys_per_owner,
            bytes: limits.max_state_bytes_per_owner,
        }
    }
}

/// A change the state feed reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Change {
    /// Whose key.
    pub owner: Arc<str>,
    /// The key.
    pub key: String,
    /// Version before (0: the key was unknown).
    pub old_version: u64,
    /// Version now.
    pub new_version: u64,
    /// The value now (`None`: deleted).
    pub value: Option<String>,
}

/// Everything known of one owner's state.
#[derive(Clone, Debug, Default)]
pub struct OwnerState {
    entries: BTreeMap<String, Entry>,
    /// Highest version known with no gap below it.
    max_version: u64,
    /// Highest version of a tombstone collected here.
    gc_floor: u64,
    /// When each tombstone was written or learned (for collection).
    deleted_at: HashMap<String, Instant>,
    /// When `max_version` last advanced here (the owner's news, as far as
    /// this node is concerned).
    changed_at: Instant,
}

impl OwnerState {
    /// Highest version known with no gap below it.
    pub fn max_version(&self) -> u64 {
        self.max_version
    }

    /// Live keys and values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.value.as_deref().map(|v| (k.as_str(), v)))
    }

    /// Every entry, tombstones included, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e))
    }

    /// A live value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key)?.value.as_deref()
    }

    /// Entries (tombstones included) with versions above `after`, in version order.
    fn entries_after(&self, after: u64) -> Vec<(&String, &Entry)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| e.version > after)
            .collect();
        v.sort_by_key(|(_, e)| e.version);
        v
    }

    /// Keys held (tombstones included) and bytes of keys and values.
    fn footprint(&self) -> (usize, usize) {
        let bytes = self.entries.iter().map(|(k, e)| entry_bytes(k, e)).sum();
        (self.entries.len(), bytes)
    }

    fn set(&mut self, now: Instant, key: String, entry: Entry) {
        if entry.value.is_none() {
            self.deleted_at.insert(key.clone(), now);
        } else {
            self.deleted_at.remove(&key);
        }
        self.entries.insert(key, entry);
    }
}

/// Bytes a key and its entry count against an owner's quota.
fn entry_bytes(key: &str, e: &Entry) -> usize {
    key.len() + e.value.as_ref().map_or(0, String::len)
}

/// Check a key and value against the limits.
pub fn validate(key: &str, value: Option<&str>) -> Result<(), crate::Rejected> {
    use crate::Rejected;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Rejected::Invalid(format!(
            "key must be 1 to {MAX_KEY_LEN} bytes, got {}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Rejected::Invalid(format!(
            "key {key:?} contains a control character"
        )));
    }
    if let Some(v) = value.filter(|v| v.len() > MAX_VALUE_LEN) {
        return Err(Rejected::TooLarge(format!(
            "value must be at most {MAX_VALUE_LEN} bytes, got {}",
            v.len()
        )));
    }
    Ok(())
}

/// The state of every owner this node knows.
#[derive(Debug)]
pub struct ClusterState {
    me: Arc<str>,
    owners: HashMap<Arc<str>, OwnerState>,
    changes: Vec<Change>,
    quota: Quota,
}

impl ClusterState {
    /// An empty state for the node `me`.
    pub fn new(me: Arc<str>) -> Self {
        let mut owners = HashMap::new();
        owners.insert(me.clone(), OwnerState::default());
        ClusterState {
            me,
            owners,
            changes: Vec::new(),
            quota: Quota::default(),
        }
    }

    /// A store of nobody, holding nothing (allocates nothing): a stand-in.
    pub(crate) fn stand_in() -> Self {
        ClusterState {
            me: Arc::default(),
            owners: HashMap::new(),
            changes: Vec::new(),
            quota: Quota::default(),
        }
    }

    /// The same, holding at most `quota` per owner (this node included).
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    /// Change the quota of every owner. State over a lowered quota is kept;
    /// only new writes are checked against it.
    pub fn set_quota(&mut self, quota: Quota) {
        self.quota = quota;
    }

    /// One owner's state.
    pub fn owner(&self, name: &str) -> Option<&OwnerState> {
        self.owners.get(name)
    }

    /// Owners known, this node included.
    pub fn owners(&self) -> impl Iterator<Item = (&Arc<str>, &OwnerState)> {
        self.owners.iter()
    }

    /// Forget an owner (its member was reclaimed).
    pub fn remove_owner(&mut self, name: &str) {
        if name != &*self.me {
            self.owners.remove(name);
        }
    }

    /// Whether any owner has any state.
    pub fn is_empty(&self) -> bool {
        self.owners.values().all(|o| o.max_version == 0)
    }

    /// Write (or with `None`, delete) a local key; returns the delta to gossip.
    pub fn write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<String>,
    ) -> Result<Delta, WriteError> {
        validate(key, value.as_deref()).map_err(WriteError::Invalid)?;
        let me = self.me.clone();
        let quota = self.quota;
        let own = self.owners.entry(me.clone()).or_default();
        let old = own.entries.get(key);
        let old_version = old.map_or(0, |e| e.version);
        let (keys, bytes) = own.footprint();
        let keys = keys + usize::from(old.is_none());
        let bytes = bytes - old.map_or(0, |e| entry_bytes(key, e))
            + key.len()
            + value.as_ref().map_or(0, String::len);
        if keys > quota.keys || bytes > quota.bytes {
            return Err(WriteError::Quota(format!(
                "per-node state quota: at most {} keys and {} bytes per node (limits.max_state_keys_per_owner, limits.max_state_bytes_per_owner)",
                quota.keys, quota.bytes
            )));
        }
        own.max_version = own.max_version.checked_add(1).ok_or_else(|| {
            WriteError::Invalid(crate::Rejected::Invalid(
                "this node's state version space is exhausted".into(),
            ))
        })?;
        own.changed_at = now;
        let entry = Entry {
            value,
            version: own.max_version,
        };
        own.set(now, key.to_owned(), entry.clone());
        self.changes.push(Change {
            owner: me.clone(),
            key: key.to_owned(),
            old_version,
            new_version: entry.version,
            value: entry.value.clone(),
        });
        Ok(Delta {
            owner: me,
            reset: false,
            from: 0,
            through: 0,
            entries: vec![(key.to_owned(), entry)],
        })
    }

    /// Load this node's own entries kept from an earlier run, before it
    /// starts: writes then resume above `max_version` (and above every
    /// restored entry's version), never reusing a version the cluster may
    /// have seen. Invalid entries are skipped; returns how many were.
    pub fn restore_own(
        &mut self,
        now: Instant,
        entries: impl IntoIterator<Item = (String, Entry)>,
        max_version: u64,
    ) -> usize {
        let own = self.owners.entry(self.me.clone()).or_default();
        let mut skipped = 0;
        let mut top = max_version;
        for (key, entry) in entries {
            if validate(&key, entry.value.as_deref()).is_err() || entry.version == 0 {
                skipped += 1;
                continue;
            }
            top = top.max(entry.version);
            own.set(now, key, entry);
        }
        own.max_version = own.max_version.max(top);
        own.changed_at = now;
        skipped
    }

    /// Digest: `(owner, max version)` for every owner with state.
    pub fn digest(&self) -> Vec<(Arc<str>, u64)> {
        let mut d: Vec<_> = self
            .owners
            .iter()
            .filter(|(_, o)| o.max_version > 0)
            .map(|(n, o)| (n.clone(), o.max_version))
            .collect();
        d.sort();
        d
    }

    /// Owners with state whose version advanced here at or after `since`,
    /// most recent first: the news a digest should lead with.
    pub fn changed_since(&self, since: Instant) -> Vec<(Arc<str>, u64)> {
        let mut v: Vec<_> = self
            .owners
            .iter()
            .filter(|(_, o)| o.max_version > 0 && o.changed_at >= since)
            .collect();
        v.sort_by(|a, b| b.1.changed_at.cmp(&a.1.changed_at).then(a.0.cmp(b.0)));
        v.into_iter()
            .map(|(n, o)| (n.clone(), o.max_version))
            .collect()
    }

    /// A stable 64-bit hash of the full digest (FNV-1a): equal hashes mean
    /// (with overwhelming probability) equal states.
    pub fn digest_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, v) in self.digest() {
            for b in name
                .as_bytes()
                .iter()
                .chain(&[0xff])
                .chain(&v.to_le_bytes())
            {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
        h
    }

    /// Deltas the holder of `digest`, the node `peer`, lacks. With
    /// `complete`, owners missing from the digest are sent whole; otherwise
    /// only those listed are considered. A peer behind on its own state has
    /// restarted: it gets all of it, so that it can supersede every old key.
    /// Stops adding entries past `budget` bytes (estimated).
    pub fn deltas_for(
        &self,
        peer: &str,
        digest: &[(Arc<str>, u64)],
        complete: bool,
        budget: usize,
    ) -> Vec<Delta> {
        let theirs: HashMap<&str, u64> = digest.iter().map(|(n, v)| (&**n, *v)).collect();
        let mut owners: Vec<(&Arc<str>, &OwnerState, u64)> = self
            .owners
            .iter()
            .filter_map(|(n, o)| match theirs.get(&**n) {
                Some(&v) => Some((n, o, v)),
                None if complete => Some((n, o, 0)),
                None => None,
            })
            .filter(|(_, o, v)| o.max_version > *v)
            .collect();
        // Most-behind first, so that budget goes where it helps most.
        owners.sort_by_key(|(n, o, v)| (std::cmp::Reverse(o.max_version - v), (*n).clone()));
        let mut room = budget;
        let mut out = Vec::new();
        for (name, o, their_max) in owners {
            let reset = their_max < o.gc_floor;
            let from = if reset || **name == *peer {
                0
            } else {
                their_max
            };
            let mut d = Delta {
                owner: name.clone(),
                reset,
                from,
                through: from,
                entries: Vec::new(),
            };
            for (k, e) in o.entries_after(from) {
                if reset && e.value.is_none() {
                    continue;
                }
                let cost = k.len() + e.value.as_ref().map_or(0, String::len) + 6;
                if cost > room && !(reset && d.entries.is_empty()) {
                    break;
                }
                room = room.saturating_sub(cost);
                d.through = e.version.min(o.max_version);
                d.entries.push((k.clone(), e.clone()));
            }
            let full = d
                .entries
                .last()
                .is_none_or(|(_, e)| e.version >= o.max_version);
            if full {
                d.through = o.max_version;
            }
            if !d.entries.is_empty() || d.through > from {
                out.push(d);
            }
            if room < 16 {
                break;
            }
        }
        out
    }

    /// Apply a delta from a peer. Returns per-entry outcomes; a delta about
    /// this node at a version above ours makes it supersede that state
    /// (see the module docs), and the returned delta must then be gossiped.
    pub fn apply(&mut self, now: Instant, d: &Delta) -> (Vec<Outcome>, Option<Delta>) {
        if d.owner == self.me {
            return (
                vec![Outcome::Stale; d.entries.len()],
                self.supersede(now, d),
            );
        }
        let quota = self.quota;
        let owner = self.owners.entry(d.owner.clone()).or_default();
        let before = owner.max_version;
        let ceiling = before.saturating_add(STATE_VERSION_JUMP);
        if d.reset {
            // Drop what the sender no longer has: it was deleted and collected.
            let keep: std::collections::HashSet<&str> =
                d.entries.iter().map(|(k, _)| k.as_str()).collect();
            let gone: Vec<String> = owner
                .entries
                .keys()
                .filter(|k| !keep.contains(k.as_str()))
                .cloned()
                .collect();
            for k in gone {
                owner.entries.remove(&k);
                owner.deleted_at.remove(&k);
            }
            owner.max_version = 0;
        }
        let mut outcomes = Vec::with_capacity(d.entries.len());
        for (key, e) in &d.entries {
            if validate(key, e.value.as_deref()).is_err() || e.version == 0 {
                outcomes.push(Outcome::Invalid);
                continue;
            }
            if e.version > ceiling {
                outcomes.push(Outcome::Implausible);
                continue;
            }
            let old = owner.entries.get(key);
            let old_version = old.map_or(0, |x| x.version);
            if e.version <= old_version {
                outcomes.push(Outcome::Stale);
                continue;
            }
            let (keys, bytes) = owner.footprint();
            let keys = keys + usize::from(old.is_none());
            let bytes = bytes - old.map_or(0, |x| entry_bytes(key, x)) + entry_bytes(key, e);
            if keys > quota.keys || bytes > quota.bytes {
                outcomes.push(Outcome::OverQuota);
                continue;
            }
            owner.set(now, key.clone(), e.clone());
            self.changes.push(Change {
                owner: d.owner.clone(),
                key: key.clone(),
                old_version,
                new_version: e.version,
                value: e.value.clone(),
            });
            outcomes.push(Outcome::Applied);
            if e.version == owner.max_version + 1 {
                owner.max_version = e.version;
            }
        }
        if (d.reset || d.from <= owner.max_version)
            && d.through > owner.max_version
            && d.through <= ceiling
        {
            owner.max_version = d.through;
        }
        if owner.max_version > before {
            owner.changed_at = now;
        }
        (outcomes, None)
    }

    /// Our own state was seen at a higher version than we hold (we
    /// restarted): rewrite our keys above it and tombstone the rest.
    fn supersede(&mut self, now: Instant, d: &Delta) -> Option<Delta> {
        let own = self.owners.entry(self.me.clone()).or_default();
        let seen = d
            .entries
            .iter()
            .map(|(_, e)| e.version)
            .max()
            .unwrap_or(0)
            .max(d.through);
        if seen <= own.max_version || seen > own.max_version.saturating_add(STATE_VERSION_JUMP) {
            return None;
        }
        own.max_version = seen;
        own.changed_at = now;
        let mut keys: Vec<String> = own.entries.keys().cloned().collect();
        for (k, e) in &d.entries {
            if e.value.is_some() && !own.entries.contains_key(k) && validate(k, None).is_ok() {
                keys.push(k.clone());
            }
        }
        keys.sort();
        keys.dedup();
        let mut out = Delta {
            owner: self.me.clone(),
            reset: false,
            from: 0,
            through: 0,
            entries: Vec::new(),
        };
        for k in keys {
            own.max_version = own.max_version.saturating_add(1);
            let value = own.entries.get(&k).and_then(|e| e.value.clone());
            let entry = Entry {
                value,
                version: own.max_version,
            };
            own.set(now, k.clone(), entry.clone());
            out.entries.push((k, entry));
        }
        Some(out)
    }

    /// Collect tombstones older than `grace`.
    pub fn gc(&mut self, now: Instant, grace: Duration) {
        for o in self.owners.values_mut() {
            let expired: Vec<String> = o
                .deleted_at
                .iter()
                .filter(|(_, at)| now.saturating_since(**at) >= grace)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                o.deleted_at.remove(&k);
                if let Some(e) = o.entries.remove(&k) {
                    o.gc_floor = o.gc_floor.max(e.version);
                }
            }
        }
    }

    /// Take the changes applied since the last call.
    pub fn drain_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Instant {
        Instant::from_micros(s * 1_000_000)
    }

    #[test]
    fn digest_and_deltas_bring_a_peer_up_to_date_in_version_order() {
        let mut a = ClusterState::new("a".into());
        let mut b = ClusterState::new("b".into());
        for i in 0..10 {
            a.write(t(0), &format!("k{i}"), Some(format!("v{i}")))
                .unwrap();
        }
        a.write(t(0), "k3", None).unwrap();
        // A small budget: b catches up over several rounds, never with a gap.
        let mut rounds = 0;
        while b.owner("a").map_or(0, |o| o.max_version()) < 11 {
            let deltas = a.deltas_for("b", &b.digest(), true, 40);
            assert!(!deltas.is_empty());
            for d in &deltas {
                b.apply(t(1), d);
            }
            rounds += 1;
            assert!(rounds < 20);
        }
        assert!(rounds > 1, "the budget should have split the transfer");
        let ob = b.owner("a").unwrap();
        assert_eq!(ob.get("k3"), None);
        assert_eq!(ob.get("k9"), Some("v9"));
        assert_eq!(a.digest_hash(), {
            let mut x = ClusterState::new("x".into());
            for d in a.deltas_for("x", &[], true, usize::MAX) {
                x.apply(t(1), &d);
            }
            x.digest_hash()
        });
    }

    #[test]
    fn stale_and_invalid_entries_are_ignored() {
        let mut b = ClusterState::new("b".into());
        let d = |v: u64, val: &str| Delta {
            owner: "a".into(),
            reset: false,
            from: 0,
            through: 0,
            entries: vec![(
                "k".into(),
                Entry {
                    value: Some(val.into()),
                    version: v,
                },
            )],
        };
        assert_eq!(b.apply(t(0), &d(5, "new")).0, vec![Outcome::Applied]);
        assert_eq!(b.apply(t(0), &d(3, "old")).0, vec![Outcome::Stale]);
        assert_eq!(
            b.apply(t(0), &d(6, &"x".repeat(2000))).0,
            vec![Outcome::Invalid]
        );
        assert_eq!(b.owner("a").unwrap().get("k"), Some("new"));
        assert!(b.write(t(0), "", Some("x".into())).is_err());
    }

    #[test]
    fn restarted_owner_supersedes_its_old_state() {
        let mut old = ClusterState::new("a".into());
        old.write(t(0), "gone", Some("1".into())).unwrap();
        old.write(t(0), "kept", Some("1".into())).unwrap();
        let mut fresh = ClusterState::new("a".into());
        fresh.write(t(5), "kept", Some("2".into())).unwrap();
        let d = old.deltas_for("p", &[], true, usize::MAX);
        let (_, sup) = fresh.apply(t(5), &d[0]);
        let sup = sup.expect("supersedes");
        assert!(sup.entries.iter().all(|(_, e)| e.version > 2));
        let mut peer = ClusterState::new("p".into());
        peer.apply(t(5), &d[0]);
        peer.apply(t(5), &sup);
        let o = peer.owner("a").unwrap();
        assert_eq!(o.get("kept"), Some("2"));
        assert_eq!(o.get("gone"), None);
    }

    #[test]
    fn peer_behind_a_collected_tombstone_gets_a_reset() {
        let mut a = ClusterState::new("a".into());
        let mut b = ClusterState::new("b".into());
        a.write(t(0), "x", Some("1".into())).unwrap();
        for d in a.deltas_for("b", &b.digest(), true, usize::MAX) {
            b.apply(t(0), &d);
        }
        a.write(t(1), "x", None).unwrap();
        a.write(t(1), "y", Some("2".into())).unwrap();
        a.gc(t(100), Duration::from_secs(10));
        let deltas = a.deltas_for("b", &b.digest(), true, usize::MAX);
        assert!(deltas[0].reset);
        for d in &deltas {
            b.apply(t(100), d);
        }
        let o = b.owner("a").unwrap();
        assert_eq!(o.get("x"), None, "the deleted key must not survive");
        assert_eq!(o.get("y"), Some("2"));
        assert_eq!(o.max_version(), 3);
    }
}
