//! The piggyback queue: updates waiting to be gossiped.
//!
//! Each update is an encoded message with a key (the member it is about).
//! A newer update with the same key replaces the older one. Packets are
//! filled fewest-sent first, newest first among equals, and an update is
//! dropped once it has been sent the retransmit limit's number of times.
//! The queue holds at most its capacity: past it, the update sent most
//! often (the oldest among those) makes room, as it is the one closest to
//! retiring anyway; anti-entropy still carries what it said. Each update
//! remembers when it was queued, so the first transmission reports how long
//! it waited here: the local share of a gossip hop.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::time::Instant;

/// How many queued updates too big for the room left in a datagram
/// [`BroadcastQueue::fill`] looks past before it sends what it has.
pub const MISFITS: usize = 16;

struct Queued {
    key: Arc<str>,
    bytes: Vec<u8>,
    transmits: u32,
    /// This update is sent `boost` times the usual retransmit limit.
    boost: u32,
    /// When it was queued.
    queued_at: Instant,
}

/// Updates waiting to be piggybacked, with their transmit counts.
#[derive(Default)]
pub struct BroadcastQueue {
    order: BTreeSet<(u32, Reverse<u64>)>,
    items: HashMap<u64, Queued>,
    by_key: HashMap<Arc<str>, u64>,
    next_id: u64,
    /// Most updates held (0: no limit).
    capacity: usize,
}

impl BroadcastQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Change the capacity; a lowered one takes effect as updates are pushed.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// An empty queue holding at most `capacity` updates.
    pub fn with_capacity(capacity: usize) -> Self {
        BroadcastQueue {
            capacity,
            ..Self::default()
        }
    }

    /// Queue an encoded message about `key` at `now`, replacing any older
    /// one about it.
    pub fn push(&mut self, key: Arc<str>, bytes: Vec<u8>, now: Instant) -> bool {
        self.push_boosted(key, bytes, 1, now)
    }

    /// Like [`BroadcastQueue::push`], for an update to be sent `boost` times
    /// the usual retransmit limit (one that must reach everyone, such as a
    /// refutation). Returns whether an update was dropped to make room.
    pub fn push_boosted(
        &mut self,
        key: Arc<str>,
        bytes: Vec<u8>,
        boost: u32,
        now: Instant,
    ) -> bool {
        self.remove(&key);
        let full = self.capacity > 0 && self.items.len() >= self.capacity;
        if full {
            if let Some(&(transmits, Reverse(id))) = self.order.last() {
                self.order.remove(&(transmits, Reverse(id)));
                if let Some(item) = self.items.remove(&id) {
                    self.by_key.remove(&item.key);
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert((0, Reverse(id)));
        self.by_key.insert(key.clone(), id);
        self.items.insert(
            id,
            Queued {
                key,
                bytes,
                transmits: 0,
                boost: boost.max(1),
                queued_at: now,
            },
        );
        full
    }

    /// Drop the update about `key`, if queued.
    pub fn remove(&mut self, key: &str) {
        if let Some(id) = self.by_key.remove(key) {
            if let Some(item) = self.items.remove(&id) {
                self.order.remove(&(item.transmits, Reverse(id)));
            }
        }
    }

    /// Whether an update about `key` is still being sent.
    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// Updates queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Encoded bytes of the updates queued.
    pub fn bytes(&self) -> usize {
        self.items.values().map(|q| q.bytes.len()).sum()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Append updates to `out` while it stays within `budget` bytes, counting
    /// each as one transmission and retiring those sent `limit` times.
    /// `sent` is called with the wire type code of each message appended
    /// and, on an update's first transmission, how long it waited since it
    /// was queued (at `now`). The search for updates that fit the room left
    /// gives up after [`MISFITS`] that do not: with thousands queued (a join
    /// storm) a full scan for every datagram took more CPU than the rest of
    /// the protocol together.
    pub fn fill(
        &mut self,
        out: &mut Vec<u8>,
        budget: usize,
        limit: u32,
        now: Instant,
        mut sent: impl FnMut(u8, Option<Duration>),
    ) {
        const SMALLEST_MESSAGE: usize = 4;
        let mut chosen = Vec::new();
        let mut room = budget.saturating_sub(out.len());
        let mut misfits = 0;
        for &(transmits, Reverse(id)) in &self.order {
            if room < SMALLEST_MESSAGE || misfits == MISFITS {
                break;
            }
            let Some(item) = self.items.get(&id) else {
                continue;
            };
            if item.bytes.len() <= room {
                room -= item.bytes.len();
                chosen.push((transmits, id));
            } else {
                misfits += 1;
            }
        }
        for (transmits, id) in chosen {
            self.order.remove(&(transmits, Reverse(id)));
            let Some(item) = self.items.get_mut(&id) else {
                continue;
            };
            out.extend_from_slice(&item.bytes);
            let waited = (item.transmits == 0).then(|| now.saturating_since(item.queued_at));
            sent(item.bytes[0], waited);
            item.transmits += 1;
            if item.transmits >= limit.saturating_mul(item.boost) {
                let key = item.key.clone();
                self.items.remove(&id);
                self.by_key.remove(&key);
            } else {
                self.order.insert((item.transmits, Reverse(id)));
            }
        }
        if self.items.is_empty() && self.items.capacity() > 64 {
            // A burst has drained: give its memory back.
            self.items.shrink_to(16);
            self.by_key.shrink_to(16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;

    fn msg(tag: u8, len: usize) -> Vec<u8> {
        let mut v = vec![tag; len];
        v[0] = 5;
        v
    }

    /// A small update queued behind more than [`MISFITS`] big ones is not
    /// searched for when the room left fits only it; behind fewer it is.
    #[test]
    fn the_search_for_a_fitting_update_is_bounded() {
        for (big, found) in [(MISFITS - 1, true), (MISFITS + 4, false)] {
            let mut q = BroadcastQueue::new();
            q.push("small".into(), msg(1, 10), T0);
            // Pushed later: newer, so ahead of the small one.
            for i in 0..big {
                q.push(format!("big{i}").into(), msg(2, 60), T0);
            }
            let mut out = Vec::new();
            q.fill(&mut out, 50, 4, T0, |_, _| {});
            assert_eq!(out.len() == 10, found, "{big} big updates ahead");
        }
    }

    #[test]
    fn newer_update_replaces_older_and_limit_retires() {
        let mut q = BroadcastQueue::new();
        q.push("a".into(), msg(1, 10), T0);
        q.push("a".into(), msg(2, 10), T0);
        assert_eq!(q.len(), 1);
        let mut out = Vec::new();
        q.fill(&mut out, 100, 2, T0, |_, _| {});
        assert_eq!(out[1], 2);
        out.clear();
        q.fill(&mut out, 100, 2, T0, |_, _| {});
        assert_eq!(out.len(), 10);
        assert!(q.is_empty(), "retired after 2 transmits");
    }

    #[test]
    fn fewest_sent_first_then_newest_and_budget_respected() {
        let mut q = BroadcastQueue::new();
        q.push("old".into(), msg(1, 40), T0);
        let mut out = Vec::new();
        q.fill(&mut out, 100, 10, T0, |_, _| {});
        q.push("new1".into(), msg(2, 40), T0);
        q.push("new2".into(), msg(3, 40), T0);
        out.clear();
        q.fill(&mut out, 100, 10, T0, |_, _| {});
        // Two fit: the unsent ones, newest first; the old one waits.
        assert_eq!(out.len(), 80);
        assert_eq!((out[1], out[41]), (3, 2));
        out.clear();
        q.fill(&mut out, 100, 10, T0, |_, _| {});
        assert_eq!((out[1], out[41]), (3, 2), "newest first among equals");
        out.clear();
        q.fill(&mut out, 100, 10, T0, |_, _| {});
        assert_eq!(out[1], 1, "the least-sent goes first");
    }

    #[test]
    fn a_full_queue_drops_the_most_sent_update() {
        let mut q = BroadcastQueue::with_capacity(2);
        assert!(!q.push("sent".into(), msg(1, 10), T0));
        let mut out = Vec::new();
        q.fill(&mut out, 100, 10, T0, |_, _| {});
        assert!(!q.push("fresh".into(), msg(2, 10), T0));
        assert!(q.push("fresher".into(), msg(3, 10), T0), "room was made");
        assert_eq!(q.len(), 2);
        assert!(!q.contains("sent"), "the one sent already went");
        assert!(q.contains("fresh") && q.contains("fresher"));
        assert!(
            !q.push("fresher".into(), msg(4, 10), T0),
            "a replacement needs no room"
        );
    }

    #[test]
    fn the_first_transmission_reports_the_wait() {
        let mut q = BroadcastQueue::new();
        q.push("a".into(), msg(1, 10), Instant::from_micros(1_000));
        let mut waits = Vec::new();
        let at = Instant::from_micros(51_000);
        q.fill(&mut Vec::new(), 100, 3, at, |_, w| waits.push(w));
        q.fill(&mut Vec::new(), 100, 3, at, |_, w| waits.push(w));
        assert_eq!(waits, [Some(Duration::from_millis(50)), None]);
    }
}
