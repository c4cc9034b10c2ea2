//! Rate-limited WARN lines for refusals a hostile peer can trigger at will:
//! at most one line per reason per interval, so a flood of refused
//! connections or forged ICMP errors cannot flood the log as well. Lines
//! that were held back are counted and reported with the next one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Default interval between two WARN lines of one reason.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// Decides, per reason, whether a WARN line may be written now.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    every: Duration,
    /// Per reason: when its last line was written, and lines held back since.
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl WarnLimiter {
    /// At most one line per reason every `every`.
    pub(crate) fn new(every: Duration) -> Self {
        WarnLimiter {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line for `reason` may be written now; if so, how many were
    /// held back since the previous one.
    pub(crate) fn allow(&self, reason: &'static str) -> Option<u64> {
        self.allow_at(reason, Instant::now())
    }

    fn allow_at(&self, reason: &'static str, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(reason) {
            Some((at, held)) if now.duration_since(*at) < self.every => {
                *held = held.saturating_add(1);
                None
            }
            Some((at, held)) => {
                let suppressed = *held;
                (*at, *held) = (now, 0);
                Some(suppressed)
            }
            None => {
                last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

impl Default for WarnLimiter {
    fn default() -> Self {
        WarnLimiter::new(WARN_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_interval() {
        let w = WarnLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let t = |s| t0 + Duration::from_secs(s);
        assert_eq!(w.allow_at("a", t(0)), Some(0));
        assert_eq!(w.allow_at("a", t(1)), None);
        assert_eq!(w.allow_at("a", t(9)), None);
        assert_eq!(w.allow_at("b", t(9)), Some(0), "reasons are limited apart");
        assert_eq!(
            w.allow_at("a", t(11)),
            Some(2),
            "held-back lines are reported"
        );
        assert_eq!(w.allow_at("a", t(12)), None);
    }
}
