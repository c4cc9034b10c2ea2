//! The members table: every member a node knows, this node first, found by
//! name or by position.
//!
//! A simulation of 10,000 nodes holds 10^8 of these entries, so the layout
//! is chosen byte by byte:
//! - what rarely changes about a member (name, address, protocol range,
//!   tags) is one [`Identity`] behind one pointer. Nodes hosted in one
//!   process can share identities through [`Identities`], so a member's
//!   name and address are stored once, not once per node;
//! - an [`Entry`] is then 32 bytes: the identity, the incarnation, when the
//!   state last changed, the last round trip and the state;
//! - entries sit in one vector that grows by an eighth, not by doubling;
//! - the name index holds 32-bit positions and no hashes (a hash is
//!   recomputed from the name when the index grows).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;

use crate::member::{MemberState, PackedAddr, Tags};
use crate::time::Instant;

/// What rarely changes about a member: a new address or new tags come
/// with a new incarnation, and then with a new identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    name: Arc<str>,
    addr: PackedAddr,
    protocol: (u8, u8),
    tags: Arc<Tags>,
}

/// Identities shared by the nodes of one process (a simulation, a test
/// hosting many nodes): each distinct identity is stored once however many
/// nodes know it. Cloning gives another handle on the same set. The set
/// keeps every identity it is given for as long as a handle lives, so it
/// suits runs of bounded length, not a long-lived agent (which has one node
/// and no need of it).
#[derive(Clone, Debug, Default)]
pub struct Identities(Arc<Mutex<HashSet<Arc<Identity>>>>);

impl Identities {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Distinct identities held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored identity equal to `id`, storing `id` if there is none.
    fn intern(&self, id: Identity) -> Arc<Identity> {
        let mut set = self.lock();
        if let Some(found) = set.get(&id) {
            return found.clone();
        }
        let id = Arc::new(id);
        set.insert(id.clone());
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<Identity>>> {
        // A panic elsewhere while holding the lock leaves the set whole
        // (every insert is one call), so a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a node knows of one member.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    id: Arc<Identity>,
    /// Version of the member's claims; only grows.
    pub(crate) incarnation: u64,
    /// When `state` last changed.
    pub(crate) state_change: Instant,
    /// The last direct probe round trip to this member, µs (0: none yet).
    pub(crate) rtt_micros: u32,
    /// Liveness.
    pub(crate) state: MemberState,
}

impl Entry {
    /// The address the member listens at.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.id.addr.get()
    }

    /// The protocol versions the member speaks, `(min, max)`.
    pub(crate) fn protocol(&self) -> (u8, u8) {
        self.id.protocol
    }

    /// The member's tags.
    pub(crate) fn tags(&self) -> &Arc<Tags> {
        &self.id.tags
    }
}

/// The fields of a new entry besides its identity.
pub(crate) struct Fresh {
    pub(crate) incarnation: u64,
    pub(crate) state: MemberState,
    pub(crate) state_change: Instant,
}

/// The members table (see the module comment).
#[derive(Debug)]
pub(crate) struct Members {
    entries: Vec<Entry>,
    /// Positions in `entries`, found by the hash of the entry's name.
    index: HashTable<u32>,
    hasher: RandomState,
    shared: Option<Identities>,
}

impl Members {
    /// A table holding only the local node.
    pub(crate) fn new(name: Arc<str>, addr: SocketAddr, protocol: (u8, u8), fresh: Fresh) -> Self {
        let mut table = Members {
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: RandomState::new(),
            shared: None,
        };
        table.insert(name, addr, protocol, crate::member::no_tags(), fresh);
        table
    }

    /// Share identities with the other nodes holding `shared`: the ones
    /// already in the table move there.
    pub(crate) fn share(&mut self, shared: Identities) {
        for e in &mut self.entries {
            e.id = shared.intern(Identity::clone(&e.id));
        }
        self.shared = Some(shared);
    }

    /// Members known, this node included.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries the table has room for without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// The position of `name`.
    pub(crate) fn get_index_of(&self, name: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        let entries = &self.entries;
        self.index
            .find(hash, |&i| &*entries[i as usize].id.name == name)
            .map(|&i| i as usize)
    }

    /// Whether `name` is known.
    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.get_index_of(name).is_some()
    }

    /// The entry of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.get_index_of(name).map(|i| &self.entries[i])
    }

    /// The entry of `name`, to change.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.get_index_of(name).map(|i| &mut self.entries[i])
    }

    /// The name and entry at position `i`.
    pub(crate) fn get_index(&self, i: usize) -> Option<(&Arc<str>, &Entry)> {
        self.entries.get(i).map(|e| (&e.id.name, e))
    }

    /// Every member with its entry, in position order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Entry)> {
        self.entries.iter().map(|e| (&e.id.name, e))
    }

    /// Every entry, in position order.
    pub(crate) fn values(&self) -> std::slice::Iter<'_, Entry> {
        self.entries.iter()
    }

    /// Add `name`, which must not be known yet, at the last position.
    pub(crate) fn insert(
        &mut self,
        name: Arc<str>,
        addr: SocketAddr,
        protocol: (u8, u8),
        tags: Arc<Tags>,
        fresh: Fresh,
    ) -> usize {
        debug_assert!(!self.contains_key(&name), "{name} is already a member");
        let id = self.identity(name, addr, protocol, tags);
        let hash = self.hasher.hash_one(&*id.name);
        if self.entries.len() == self.entries.capacity() {
            // Grow by an eighth: at 10^8 entries in one process, doubling
            // would leave a third of the memory idle on average.
            let more = (self.entries.len() / 8).max(4);
            self.entries.reserve_exact(more);
        }
        let i = self.entries.len();
        let pos = u32::try_from(i).expect("fewer than 2^32 members");
        self.entries.push(Entry {
            id,
            incarnation: fresh.incarnation,
            state_change: fresh.state_change,
            rtt_micros: 0,
            state: fresh.state,
        });
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, pos, |&p| {
            hasher.hash_one(&*entries[p as usize].id.name)
        });
        i
    }

    /// Give the member at `i` a new address, protocol range and tags.
    pub(crate) fn set_identity(
        &mut self,
        i: usize,
        addr: SocketAddr,
        protocol: (u8, u8),
        tags: Arc<Tags>,
    ) {
        let name = self.entries[i].id.name.clone();
        self.entries[i].id = self.identity(name, addr, protocol, tags);
    }

    /// Remove the member at `i`; the last member takes its position.
    pub(crate) fn swap_remove_index(&mut self, i: usize) -> Option<(Arc<str>, Entry)> {
        let last = self.entries.len().checked_sub(1)?;
        if i > last {
            return None;
        }
        self.unindex(i);
        if i != last {
            self.unindex(last);
        }
        let removed = self.entries.swap_remove(i);
        if i != last {
            let hash = self.hasher.hash_one(&*self.entries[i].id.name);
            let (entries, hasher) = (&self.entries, &self.hasher);
            self.index.insert_unique(hash, i as u32, |&p| {
                hasher.hash_one(&*entries[p as usize].id.name)
            });
        }
        Some((removed.id.name.clone(), removed))
    }

    /// Give back the room growth left unused.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .shrink_to_fit(|&p| hasher.hash_one(&*entries[p as usize].id.name));
    }

    /// Drop position `i` from the index (the entry stays).
    fn unindex(&mut self, i: usize) {
        let hash = self.hasher.hash_one(&*self.entries[i].id.name);
        if let Ok(found) = self.index.find_entry(hash, |&p| p as usize == i) {
            found.remove();
        }
    }

    fn identity(
        &self,
        name: Arc<str>,
        addr: SocketAddr,
        protocol: (u8, u8),
        tags: Arc<Tags>,
    ) -> Arc<Identity> {
        let id = Identity {
            name,
            addr: addr.into(),
            protocol,
            tags,
        };
        match &self.shared {
            Some(shared) => shared.intern(id),
            None => Arc::new(id),
        }
    }
}

impl std::ops::Index<usize> for Members {
    type Output = Entry;

    fn index(&self, i: usize) -> &Entry {
        &self.entries[i]
    }
}

impl std::ops::IndexMut<usize> for Members {
    fn index_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.entries[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Fresh {
        Fresh {
            incarnation: 1,
            state: MemberState::Alive,
            state_change: Instant::ZERO,
        }
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + i))
    }

    fn table(n: u16) -> Members {
        let mut t = Members::new(Arc::from("n0"), addr(0), (1, 1), fresh());
        for i in 1..n {
            let name: Arc<str> = Arc::from(format!("n{i}"));
            t.insert(name, addr(i), (1, 1), crate::member::no_tags(), fresh());
        }
        t
    }

    #[test]
    fn an_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn names_and_positions_agree_through_removals() {
        let mut t = table(200);
        // Remove from the middle, the end and the front (not the local
        // node), in an order that moves many last entries.
        for name in ["n5", "n199", "n1", "n100", "n198", "n50"] {
            let i = t.get_index_of(name).expect("known");
            let (gone, _) = t.swap_remove_index(i).expect("in range");
            assert_eq!(&*gone, name);
            assert!(!t.contains_key(name));
        }
        assert_eq!(t.len(), 194);
        for i in 0..t.len() {
            let (name, e) = t.get_index(i).expect("in range");
            assert_eq!(t.get_index_of(name), Some(i), "{name}");
            assert_eq!(e.tags(), &crate::member::no_tags());
        }
        assert!(t.swap_remove_index(194).is_none());
    }

    #[test]
    fn growth_leaves_at_most_an_eighth_idle() {
        let t = table(10_000);
        assert!(
            t.capacity() <= t.len() + t.len() / 8 + 4,
            "{}",
            t.capacity()
        );
    }

    #[test]
    fn shared_identities_are_stored_once() {
        let shared = Identities::new();
        let mut a = table(50);
        let mut b = table(50);
        a.share(shared.clone());
        b.share(shared.clone());
        assert_eq!(shared.len(), 50);
        assert!(Arc::ptr_eq(&a[7].id, &b[7].id));
        // A new address is a new identity, for that table only.
        a.set_identity(7, addr(999), (1, 1), crate::member::no_tags());
        assert_eq!(a[7].addr(), addr(999));
        assert_eq!(b[7].addr(), addr(7));
        assert_eq!(
            a.get_index(7).map(|(n, _)| n),
            b.get_index(7).map(|(n, _)| n)
        );
        assert_eq!(shared.len(), 51);
    }
}
