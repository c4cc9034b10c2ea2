//! Lifeguard dynamic suspicion timeouts.
//!
//! A suspicion starts with the maximum timeout and shrinks towards the
//! minimum as independent members confirm it:
//! `timeout = max(min, max - (max - min) * ln(c + 1) / ln(k + 1))`
//! after `c` of the `k` expected confirmations.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::time::Instant;

/// One pending suspicion of a member.
#[derive(Clone, Debug)]
pub struct Suspicion {
    started: Instant,
    min: Duration,
    max: Duration,
    expected: u32,
    confirmers: HashSet<Arc<str>>,
    /// An upper bound set by stronger evidence than confirmations.
    cap: Option<Duration>,
}

impl Suspicion {
    /// A suspicion raised by `from` at `now`, expecting `expected` confirmations.
    pub fn new(now: Instant, from: Arc<str>, min: Duration, max: Duration, expected: u32) -> Self {
        let mut confirmers = HashSet::new();
        confirmers.insert(from);
        Suspicion {
            started: now,
            min,
            max: max.max(min),
            expected,
            confirmers,
            cap: None,
        }
    }

    /// Bound the timeout by `timeout` (measured from the start), whatever
    /// the confirmations: used when the suspect is known not to listen.
    pub fn cap(&mut self, timeout: Duration) {
        self.cap = Some(self.cap.map_or(timeout, |c| c.min(timeout)));
    }

    /// Record an independent confirmation; true if `from` had not confirmed before.
    pub fn confirm(&mut self, from: Arc<str>) -> bool {
        if self.confirmations() >= self.expected {
            return false;
        }
        self.confirmers.insert(from)
    }

    /// Confirmations beyond the first accuser.
    pub fn confirmations(&self) -> u32 {
        self.confirmers.len().saturating_sub(1) as u32
    }

    /// When this node began suspecting the member.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the member should be declared dead.
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout()
    }

    /// The current timeout, measured from the start.
    pub fn timeout(&self) -> Duration {
        let lifeguard = if self.expected == 0 {
            self.min
        } else {
            let frac =
                ((self.confirmations() as f64) + 1.0).ln() / ((self.expected as f64) + 1.0).ln();
            let span = self.max.saturating_sub(self.min).mul_f64(frac.min(1.0));
            self.max.saturating_sub(span).max(self.min)
        };
        self.cap.map_or(lifeguard, |c| c.min(lifeguard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_with_confirmations_to_min() {
        let min = Duration::from_secs(4);
        let max = Duration::from_secs(24);
        let mut s = Suspicion::new(Instant::ZERO, "a".into(), min, max, 2);
        assert_eq!(s.timeout(), max);
        assert!(s.confirm("b".into()));
        assert!(!s.confirm("b".into()), "the same member confirms once");
        let one = s.timeout();
        assert!(one < max && one > min, "{one:?}");
        assert!(s.confirm("c".into()));
        assert_eq!(s.timeout(), min);
        assert!(
            !s.confirm("d".into()),
            "no confirmations beyond the expected"
        );
        assert_eq!(s.deadline(), Instant::ZERO + min);
    }

    #[test]
    fn a_cap_bounds_the_timeout_whatever_the_confirmations() {
        let min = Duration::from_secs(4);
        let mut s = Suspicion::new(Instant::ZERO, "a".into(), min, min * 6, 2);
        s.cap(Duration::from_secs(1));
        assert_eq!(s.timeout(), Duration::from_secs(1));
        s.cap(Duration::from_secs(3));
        assert_eq!(s.timeout(), Duration::from_secs(1), "a cap only tightens");
    }
}
