//! The simulators' event queue: items ordered by simulated time, and items
//! due at the same time in the order they were queued, so that a run
//! depends on its seed alone. Both the full simulator ([`crate::engine`])
//! and the overlay model ([`crate::overlay`]) run on it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::Micros;

/// Items due at simulated times, earliest (then first queued) first.
pub struct EventQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    /// Insertion counter: the tie-break between items due at one time.
    seq: u64,
}

struct Entry<T> {
    at: Micros,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the max-heap pops the earliest (time, sequence) first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> EventQueue<T> {
    /// Queue `item` at `at`, after everything already queued for that time.
    pub fn push(&mut self, at: Micros, item: T) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            item,
        });
    }

    /// The earliest item and its time, if it is due at or before `until`.
    pub fn pop_until(&mut self, until: Micros) -> Option<(Micros, T)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        self.heap.pop().map(|e| (e.at, e.item))
    }

    /// Every queued item, in no particular order.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_queueing_order() {
        let mut q = EventQueue::default();
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        q.push(9, "e");
        let mut out = Vec::new();
        while let Some((at, item)) = q.pop_until(5) {
            out.push((at, item));
        }
        assert_eq!(out, [(1, "a"), (1, "b"), (5, "c"), (5, "d")]);
        assert_eq!(q.items().copied().collect::<Vec<_>>(), ["e"]);
    }
}
