//! Replay protection for encrypted envelopes: a time window and a bounded
//! cache of the message ids seen inside it.
//!
//! Every sealed envelope carries its sender's wall-clock time (unix ms) and
//! a random 128-bit message id, both authenticated (see [`crate::framing`]).
//! A receiver accepts an envelope once, and only while its timestamp lies in
//! `[now - max_skew - max_age, now + max_skew]`: older or far-future
//! envelopes are [`Stale`](crate::framing::Reject::Stale), an id already seen
//! in the window is a [`Replay`](crate::framing::Reject::Replay). Ids are
//! kept in one-second buckets of the *sender's* timestamp, so a bucket is
//! forgotten as soon as every timestamp in it would be refused as stale
//! anyway.
//!
//! Memory is bounded under any load by [`ReplayWindow::max_ids`]. When the
//! cache is full the oldest bucket is dropped and the window's lower edge
//! rises past it: envelopes stamped that early are refused as stale from
//! then on. So the cap never lets a replay through and never refuses fresh
//! traffic; under extreme load the window for *delayed* envelopes narrows.
//! (Accepting unrecorded ids when full would let a flood of genuine traffic
//! open a replay hole; refusing everything would turn load into an outage.)
//! The edge never moves back, even if the wall clock does.
//!
//! This module is pure data: time comes in as a parameter.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

/// The acceptance window of encrypted envelopes and the size of the cache
/// of recent message ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayWindow {
    /// How far a sender's clock may be ahead of or behind ours (default 30 s).
    pub max_skew: Duration,
    /// How long an envelope may take to arrive, beyond the skew (default 30 s).
    pub max_age: Duration,
    /// The most message ids remembered (default 262,144, a few MiB).
    pub max_ids: usize,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            max_skew: Duration::from_secs(30),
            max_age: Duration::from_secs(30),
            max_ids: 1 << 18,
        }
    }
}

impl ReplayWindow {
    /// A window of `max_skew` either way plus `max_age`, remembering at most
    /// `max_ids` ids (at least one).
    pub fn new(max_skew: Duration, max_age: Duration, max_ids: usize) -> Self {
        ReplayWindow {
            max_skew,
            max_age,
            max_ids: max_ids.max(1),
        }
    }
}

/// Why the cache refused an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The timestamp is outside the window.
    Stale,
    /// The id was already seen inside the window.
    Replay,
}

/// The ids seen recently, by second of their sender's timestamp.
pub(crate) struct ReplayCache {
    window: ReplayWindow,
    buckets: BTreeMap<u64, HashSet<u64>>,
    len: usize,
    /// Envelopes stamped before this (unix ms) are refused: their bucket was
    /// dropped, so a replay of them could no longer be recognised.
    floor_ms: u64,
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("window", &self.window)
            .field("ids", &self.len())
            .finish_non_exhaustive()
    }
}

const BUCKET_MS: u64 = 1000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ReplayCache {
    /// An empty cache for `window`.
    pub fn new(window: ReplayWindow) -> Self {
        ReplayCache {
            window,
            buckets: BTreeMap::new(),
            len: 0,
            floor_ms: 0,
        }
    }

    /// The number of ids remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Accept (and remember) or refuse the envelope stamped `ts_ms` with
    /// message id `id`, at local time `now_ms`.
    pub fn check(&mut self, now_ms: u64, ts_ms: u64, id: u64) -> Result<(), Refusal> {
        let skew = millis(self.window.max_skew);
        let age = millis(self.window.max_age);
        let lower = now_ms.saturating_sub(skew.saturating_add(age));
        self.forget_before(lower);
        if ts_ms < self.floor_ms.max(lower) || ts_ms > now_ms.saturating_add(skew) {
            return Err(Refusal::Stale);
        }
        let second = ts_ms / BUCKET_MS;
        if self.buckets.get(&second).is_some_and(|b| b.contains(&id)) {
            return Err(Refusal::Replay);
        }
        while self.len >= self.window.max_ids {
            self.drop_oldest();
        }
        if ts_ms < self.floor_ms {
            // The cap dropped this envelope's own bucket (one second holds
            // more envelopes than the cap): it cannot be told from a replay.
            return Err(Refusal::Stale);
        }
        self.buckets.entry(second).or_default().insert(id);
        self.len += 1;
        Ok(())
    }

    /// Drop every bucket whose timestamps are all before `lower`.
    fn forget_before(&mut self, lower: u64) {
        while let Some((&second, _)) = self.buckets.first_key_value() {
            if second.saturating_add(1).saturating_mul(BUCKET_MS) > lower {
                break;
            }
            self.drop_oldest();
        }
    }

    /// Drop the oldest bucket and raise the floor past it.
    fn drop_oldest(&mut self) {
        if let Some((second, ids)) = self.buckets.pop_first() {
            self.len -= ids.len();
            let end = second.saturating_add(1).saturating_mul(BUCKET_MS);
            self.floor_ms = self.floor_ms.max(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn cache(max_ids: usize) -> ReplayCache {
        ReplayCache::new(ReplayWindow::new(
            Duration::from_secs(30),
            Duration::from_secs(30),
            max_ids,
        ))
    }

    #[test]
    fn fresh_ids_pass_once() {
        let mut c = cache(100);
        assert_eq!(c.check(NOW, NOW, 1), Ok(()));
        assert_eq!(c.check(NOW, NOW, 2), Ok(()));
        assert_eq!(c.check(NOW + 5, NOW, 1), Err(Refusal::Replay));
        // Same id, another second: another envelope.
        assert_eq!(c.check(NOW, NOW - 2000, 1), Ok(()));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn the_window_is_skew_plus_age_back_and_skew_ahead() {
        let mut c = cache(100);
        assert_eq!(c.check(NOW, NOW - 60_000, 1), Ok(()));
        assert_eq!(c.check(NOW, NOW - 60_001, 2), Err(Refusal::Stale));
        assert_eq!(c.check(NOW, NOW + 30_000, 3), Ok(()));
        assert_eq!(c.check(NOW, NOW + 30_001, 4), Err(Refusal::Stale));
        assert_eq!(c.check(NOW, 0, 5), Err(Refusal::Stale));
        assert_eq!(c.check(NOW, u64::MAX, 6), Err(Refusal::Stale));
    }

    #[test]
    fn a_replay_stays_refused_until_it_is_stale() {
        let mut c = cache(100);
        assert_eq!(c.check(NOW, NOW, 7), Ok(()));
        for later in [1, 10_000, 59_000, 60_000] {
            assert_eq!(
                c.check(NOW + later, NOW, 7),
                Err(Refusal::Replay),
                "{later}"
            );
        }
        assert_eq!(c.check(NOW + 61_000, NOW, 7), Err(Refusal::Stale));
        assert_eq!(c.len(), 0, "the expired bucket is forgotten");
    }

    #[test]
    fn a_clock_stepping_back_does_not_reopen_the_window() {
        let mut c = cache(100);
        assert_eq!(c.check(NOW, NOW, 7), Ok(()));
        assert_eq!(c.check(NOW + 120_000, NOW + 120_000, 8), Ok(()));
        assert_eq!(c.check(NOW, NOW, 7), Err(Refusal::Stale));
    }

    #[test]
    fn the_cache_is_bounded_and_never_lets_a_replay_through() {
        let mut c = cache(1000);
        // 100 ids in each of 30 seconds: 3,000 envelopes, 1,000 remembered.
        let mut accepted = Vec::new();
        for s in 0..30u64 {
            let now = NOW + s * 1000;
            for i in 0..100u64 {
                let id = s * 1000 + i;
                assert_eq!(c.check(now, now, id), Ok(()), "fresh traffic passes");
                accepted.push((now, id));
                assert!(c.len() <= 1000);
            }
        }
        assert!(c.len() <= 1000 && c.len() >= 900, "{}", c.len());
        // Every accepted envelope replayed now: none passes.
        let now = NOW + 30_000;
        for (ts, id) in accepted {
            assert!(c.check(now, ts, id).is_err(), "replay of {id} at {ts}");
        }
    }

    #[test]
    fn one_second_over_the_cap_refuses_the_excess_as_stale() {
        let mut c = cache(10);
        for id in 0..10 {
            assert_eq!(c.check(NOW, NOW, id), Ok(()));
        }
        assert_eq!(c.check(NOW, NOW, 10), Err(Refusal::Stale));
        assert!(c.len() <= 10);
        // The next second is served again.
        assert_eq!(c.check(NOW + 1000, NOW + 1000, 11), Ok(()));
    }
}
