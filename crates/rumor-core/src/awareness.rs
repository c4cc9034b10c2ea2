//! Lifeguard local health awareness.
//!
//! A node that misses nacks or has to refute suspicions of itself is probably
//! the slow one: it raises its score and stretches its probe interval and
//! timeout by `score + 1`, so it accuses others less while it is unhealthy.

use std::time::Duration;

/// The local health score, `0..max` (0 is healthy).
#[derive(Clone, Debug)]
pub struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// A healthy node with scores in `0..max`.
    pub fn new(max: u32) -> Self {
        Awareness { score: 0, max }
    }

    /// Move the score by `delta`, clamped to `0..max`.
    pub fn apply(&mut self, delta: i32) {
        let next = (self.score as i64 + delta as i64).clamp(0, self.max as i64 - 1);
        self.score = next as u32;
    }

    /// Current score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// `base` scaled by the score.
    pub fn scale(&self, base: Duration) -> Duration {
        base * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_and_scales() {
        let mut a = Awareness::new(8);
        a.apply(-3);
        assert_eq!(a.score(), 0);
        a.apply(20);
        assert_eq!(a.score(), 7);
        assert_eq!(a.scale(Duration::from_secs(1)), Duration::from_secs(8));
        a.apply(-1);
        assert_eq!(a.score(), 6);
    }
}
