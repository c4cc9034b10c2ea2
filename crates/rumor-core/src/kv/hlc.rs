//! Hybrid logical clocks (Kulkarni et al., 2014) and their timestamps.
//!
//! A [`Timestamp`] is `(wall, logical, node)`: `wall` follows the physical
//! clock the driver passes in (microseconds), `logical` orders events that
//! share a `wall`, and the writer's `node` name breaks the remaining ties, so
//! timestamps are totally ordered and last-write-wins picks the same winner
//! on every replica.
//!
//! The core never reads a clock: every call takes `physical`, microseconds
//! on a clock all nodes share approximately (Unix time, typically). The
//! driver's [`Instant`](crate::Instant) has a per-process origin, so it
//! only suits a single process (tests, the simulator with one origin).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A hybrid logical clock timestamp; ordered by `wall`, then `logical`,
/// then `node`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Timestamp {
    /// Physical component, microseconds.
    pub wall: u64,
    /// Logical counter among events with the same `wall`.
    pub logical: u32,
    /// Name of the node that issued the timestamp.
    pub node: Arc<str>,
}

impl Timestamp {
    /// A timestamp with the given parts.
    pub fn new(wall: u64, logical: u32, node: impl Into<Arc<str>>) -> Self {
        Timestamp {
            wall,
            logical,
            node: node.into(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall, self.logical, self.node)
    }
}

/// A remote timestamp was further ahead of the local physical clock than
/// the clock accepts; the clock is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("remote timestamp {remote_wall} is {ahead_micros} us ahead of the local clock")]
pub struct ClockDrift {
    /// The remote wall time.
    pub remote_wall: u64,
    /// How far ahead of `physical` it was.
    pub ahead_micros: u64,
}

/// A hybrid logical clock owned by one node.
#[derive(Clone, Debug)]
pub struct Hlc {
    node: Arc<str>,
    wall: u64,
    logical: u32,
    max_drift: u64,
}

impl Hlc {
    /// Default bound on how far ahead of the local clock a remote timestamp
    /// may be: one minute.
    pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(60);

    /// A clock for `node`, at zero, accepting remote timestamps up to
    /// [`Hlc::DEFAULT_MAX_DRIFT`] ahead.
    pub fn new(node: impl Into<Arc<str>>) -> Self {
        Hlc {
            node: node.into(),
            wall: 0,
            logical: 0,
            max_drift: micros(Self::DEFAULT_MAX_DRIFT),
        }
    }

    /// Set the bound on how far ahead of `physical` a remote timestamp may be.
    pub fn with_max_drift(mut self, max_drift: Duration) -> Self {
        self.max_drift = micros(max_drift);
        self
    }

    /// The node this clock stamps for.
    pub fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// The latest timestamp issued or witnessed, without advancing.
    pub fn peek(&self) -> Timestamp {
        Timestamp::new(self.wall, self.logical, self.node.clone())
    }

    /// Stamp a local event: a timestamp greater than every one this clock
    /// issued or witnessed, and with `wall >= physical`.
    pub fn now(&mut self, physical: u64) -> Timestamp {
        if physical > self.wall {
            self.wall = physical;
            self.logical = 0;
        } else {
            self.tick();
        }
        self.peek()
    }

    /// Witness a remote timestamp, so that later local stamps order after
    /// it. Rejected, leaving the clock unchanged, if `remote.wall` is more
    /// than the drift bound ahead of `physical`.
    pub fn update(&mut self, physical: u64, remote: &Timestamp) -> Result<(), ClockDrift> {
        self.check(physical, remote.wall)?;
        let wall = self.wall.max(remote.wall).max(physical);
        if wall == self.wall && wall == remote.wall {
            self.logical = self.logical.max(remote.logical);
            self.tick();
        } else if wall == self.wall {
            self.tick();
        } else if wall == remote.wall {
            self.wall = wall;
            self.logical = remote.logical;
            self.tick();
        } else {
            self.wall = wall;
            self.logical = 0;
        }
        Ok(())
    }

    /// Whether a remote wall time is within the drift bound of `physical`.
    pub fn check(&self, physical: u64, remote_wall: u64) -> Result<(), ClockDrift> {
        let ahead = remote_wall.saturating_sub(physical);
        if ahead > self.max_drift {
            return Err(ClockDrift {
                remote_wall,
                ahead_micros: ahead,
            });
        }
        Ok(())
    }

    /// Advance the logical counter; on overflow, borrow a microsecond.
    fn tick(&mut self) {
        match self.logical.checked_add(1) {
            Some(l) => self.logical = l,
            None => {
                self.wall = self.wall.saturating_add(1);
                self.logical = 0;
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_monotonic_when_physical_stalls_or_goes_back() {
        let mut c = Hlc::new("a");
        let t1 = c.now(100);
        let t2 = c.now(100);
        let t3 = c.now(50);
        let t4 = c.now(200);
        assert!(t1 < t2 && t2 < t3 && t3 < t4);
        assert_eq!((t1.wall, t1.logical), (100, 0));
        assert_eq!((t3.wall, t3.logical), (100, 2));
        assert_eq!((t4.wall, t4.logical), (200, 0));
    }

    #[test]
    fn update_orders_later_stamps_after_remote() {
        let mut c = Hlc::new("a");
        let remote = Timestamp::new(1_000, 7, "b");
        c.update(900, &remote).unwrap();
        let t = c.now(900);
        assert!(t > remote);
        assert_eq!((t.wall, t.logical), (1_000, 9));
    }

    #[test]
    fn update_rejects_far_future() {
        let mut c = Hlc::new("a").with_max_drift(Duration::from_micros(10));
        let before = c.peek();
        let err = c.update(100, &Timestamp::new(111, 0, "b")).unwrap_err();
        assert_eq!(err.ahead_micros, 11);
        assert_eq!(c.peek(), before);
        assert!(c.update(100, &Timestamp::new(110, 0, "b")).is_ok());
    }

    #[test]
    fn node_name_breaks_ties() {
        let a = Timestamp::new(5, 1, "a");
        let b = Timestamp::new(5, 1, "b");
        assert!(a < b);
        assert!(Timestamp::new(5, 2, "a") > b);
    }

    #[test]
    fn stamps_keep_increasing_across_a_backwards_jump_of_a_second() {
        let mut c = Hlc::new("a");
        let base = 1_700_000_000_000_000u64;
        let before: Vec<Timestamp> = (0..3).map(|i| c.now(base + i)).collect();
        // The system clock steps back by 1 s: stamps keep the last wall
        // and count up, until the physical clock passes it again.
        let back: Vec<Timestamp> = (0..3).map(|i| c.now(base - 1_000_000 + i)).collect();
        let after = c.now(base + 10);
        let all: Vec<&Timestamp> = before.iter().chain(&back).chain([&after]).collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        assert!(back.iter().all(|t| t.wall == base + 2));
        assert_eq!((after.wall, after.logical), (base + 10, 0));
    }

    #[test]
    fn logical_overflow_of_local_stamps_carries_into_wall() {
        let mut c = Hlc::new("a");
        c.update(0, &Timestamp::new(10, u32::MAX - 1, "a")).unwrap();
        let t1 = c.now(5);
        assert_eq!((t1.wall, t1.logical), (11, 0), "the counter carried");
        let t2 = c.now(5);
        assert!(t2 > t1);
        assert_eq!((t2.wall, t2.logical), (11, 1));
    }

    #[test]
    fn logical_overflow_borrows_a_microsecond() {
        let mut c = Hlc::new("a");
        c.update(0, &Timestamp::new(10, u32::MAX, "b")).unwrap();
        let t = c.now(0);
        assert!(t > Timestamp::new(10, u32::MAX, "b"));
        assert_eq!(t.wall, 11);
    }
}
