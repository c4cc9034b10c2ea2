//! User events: application messages broadcast to every member.
//!
//! Each node keeps a Lamport clock; an event carries the sender's clock and
//! is identified by its origin, that time and a digest of its name and
//! payload. The digest matters after a restart without data: the sender's
//! clock starts again from 0 and may reissue a time its peers still
//! remember, and a new event must not be taken for the old one. Events
//! spread as rumors (piggybacked, eagerly forwarded, retransmitted a
//! bounded number of times); a node delivers each one once and forgets it
//! after the dedup window.
//!
//! The last [`RECENT_EVENTS`] events a node heard as rumors also ride on its
//! push-pulls for half the dedup window, so a member every retransmission
//! missed still gets them (anti-entropy). Only rumors and local events are
//! passed on this way, never events repaired by a push-pull: an event then
//! travels at most half a window after it spread, and every node still
//! remembers it when it comes round again.

pub(crate) mod service;

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crate::limits::LAMPORT_CEILING;
use crate::message::UserEvent;
use crate::time::Instant;

/// Events a node keeps to pass on in its push-pulls.
pub const RECENT_EVENTS: usize = 64;

/// What tells two events apart: origin, Lamport time, digest of the name
/// and payload.
type EventKey = (Arc<str>, u64, u64);

fn key(ev: &UserEvent) -> EventKey {
    // Fixed keys: the digest only has to agree within this process.
    let mut h = DefaultHasher::new();
    ev.name.hash(&mut h);
    ev.payload.hash(&mut h);
    (ev.origin.clone(), ev.ltime, h.finish())
}

/// The Lamport clock and the events seen recently.
#[derive(Default)]
pub struct EventLog {
    clock: u64,
    seen: HashSet<EventKey>,
    order: VecDeque<(Instant, EventKey)>,
    /// The last events heard as rumors, oldest first, with when.
    recent: VecDeque<(Instant, UserEvent)>,
}

impl EventLog {
    /// Current Lamport time.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Continue from `clock`, the time this node reached in an earlier run
    /// (capped like a witnessed time), so it never reissues a time peers
    /// may still hold as seen.
    pub fn resume(&mut self, clock: u64) {
        self.clock = self.clock.max(clock.min(LAMPORT_CEILING));
    }

    /// Stamp a new local event: advance the clock and return its time.
    pub fn tick(&mut self) -> u64 {
        // The clock never passes LAMPORT_CEILING by witnessing, so this
        // saturates only after 2^62 local events.
        self.clock = self.clock.saturating_add(1);
        self.clock
    }

    /// Record `ev`, advancing the clock to its time (at most to
    /// [`LAMPORT_CEILING`]: a forged time near `u64::MAX` must not wrap or
    /// pin the clock); true if it is new.
    pub fn witness(&mut self, now: Instant, ev: &UserEvent, window: Duration) -> bool {
        self.expire(now, window);
        self.clock = self.clock.max(ev.ltime.min(LAMPORT_CEILING));
        let k = key(ev);
        if !self.seen.insert(k.clone()) {
            return false;
        }
        self.order.push_back((now, k));
        true
    }

    /// Keep `ev` (new, heard as a rumor or sent here) to pass on in push-pulls.
    pub fn keep(&mut self, now: Instant, ev: UserEvent) {
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back((now, ev));
    }

    /// The kept events younger than half of `window`, for a push-pull.
    pub fn recent(&mut self, now: Instant, window: Duration) -> Vec<UserEvent> {
        while let Some((at, _)) = self.recent.front() {
            if now.saturating_since(*at) < window / 2 {
                break;
            }
            self.recent.pop_front();
        }
        if self.recent.is_empty() && self.recent.capacity() > 0 {
            self.recent = VecDeque::new();
        }
        self.recent.iter().map(|(_, ev)| ev.clone()).collect()
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_since(*at) < window {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.seen.remove(&k);
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

    #[test]
    fn a_sender_that_lost_its_clock_is_not_silenced() {
        let mut log = EventLog::default();
        let w = Duration::from_secs(10);
        assert!(log.witness(Instant::ZERO, &ev("a", 1), w));
        // "a" restarted without its data and reissued time 1.
        let mut fresh = ev("a", 1);
        fresh.name = "rollback".into();
        assert!(
            log.witness(Instant::ZERO, &fresh, w),
            "a new event, an old time"
        );
        assert!(
            !log.witness(Instant::ZERO, &fresh, w),
            "still delivered once"
        );
        fresh.payload = b"v2".to_vec();
        assert!(
            log.witness(Instant::ZERO, &fresh, w),
            "same name, new payload"
        );
    }

    #[test]
    fn a_forged_maximum_time_neither_wraps_nor_pins_the_clock() {
        let mut log = EventLog::default();
        let w = Duration::from_secs(10);
        assert!(log.witness(Instant::ZERO, &ev("forger", u64::MAX), w));
        let first = log.tick();
        let second = log.tick();
        assert_eq!(first, LAMPORT_CEILING + 1);
        assert!(second > first, "local events keep distinct, growing times");
    }

    #[test]
    fn keeps_the_last_events_for_half_the_window() {
        let mut log = EventLog::default();
        let w = Duration::from_secs(10);
        for t in 0..RECENT_EVENTS as u64 + 3 {
            log.keep(Instant::ZERO, ev("a", t));
        }
        let kept = log.recent(Instant::ZERO, w);
        assert_eq!(kept.len(), RECENT_EVENTS);
        assert_eq!(kept[0].ltime, 3, "the oldest went first");
        log.keep(Instant::ZERO + Duration::from_secs(4), ev("b", 1));
        let later = log.recent(Instant::ZERO + Duration::from_secs(6), w);
        assert_eq!(later.len(), 1, "older than half the window: dropped");
        assert_eq!(&*later[0].origin, "b");
    }
}
