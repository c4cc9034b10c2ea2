//! User events: application messages broadcast to every member.
//!
//! Each node keeps a Lamport clock; an event carries the sender's clock and
//! is identified by `(origin, ltime)`. Events spread as rumors (piggybacked,
//! eagerly forwarded, retransmitted a bounded number of times); a node
//! delivers each one once and forgets it after the dedup window.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::message::UserEvent;
use crate::time::Instant;

/// The Lamport clock and the events seen recently.
#[derive(Default)]
pub struct EventLog {
    clock: u64,
    seen: HashSet<(Arc<str>, u64)>,
    order: VecDeque<(Instant, Arc<str>, u64)>,
}

impl EventLog {
    /// Current Lamport time.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Stamp a new local event: advance the clock and return its time.
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Record `ev`, advancing the clock past it; true if it is new.
    pub fn witness(&mut self, now: Instant, ev: &UserEvent, window: Duration) -> bool {
        self.expire(now, window);
        self.clock = self.clock.max(ev.ltime);
        if !self.seen.insert((ev.origin.clone(), ev.ltime)) {
            return false;
        }
        self.order.push_back((now, ev.origin.clone(), ev.ltime));
        true
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_since(*at) < window {
                break;
            }
            if let Some((_, origin, ltime)) = self.order.pop_front() {
                self.seen.remove(&(origin, ltime));
            }
        }
    }

    /// Events remembered for deduplication.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(origin: &str, ltime: u64) -> UserEvent {
        UserEvent {
            ltime,
            origin: origin.into(),
            name: "deploy".into(),
            payload: vec![],
        }
    }

    #[test]
    fn dedups_within_window_and_clock_follows() {
        let mut log = EventLog::default();
        let w = Duration::from_secs(10);
        assert!(log.witness(Instant::ZERO, &ev("a", 5), w));
        assert!(!log.witness(Instant::ZERO, &ev("a", 5), w));
        assert!(
            log.witness(Instant::ZERO, &ev("b", 5), w),
            "same time, other origin"
        );
        assert_eq!(log.tick(), 6);
        let later = Instant::ZERO + Duration::from_secs(11);
        assert!(log.witness(later, &ev("c", 1), w));
        assert_eq!(log.remembered(), 1, "old entries expired");
    }
}
