//! Per-node wall clocks: offsets and jumps (forward and backward).
//!
//! Simulated nodes share one virtual time, but the key space stamps writes
//! with each node's *wall* clock ([`rumor_core::Node::set_wall_clock`]).
//! A [`ClockSpec`] gives each node a seeded offset, uniform in
//! `±max_offset` seconds, and `jumps` steps of up to `±max_jump` seconds
//! at random times and nodes between `from` and `until` (each offset stays
//! within `±max_offset`). Two nodes can then be up to `2 × max_offset`
//! apart: with `max_offset` at the key space's `max_drift` (60 s by
//! default), records from the clock furthest ahead are refused by the one
//! furthest behind until its clock is within the window of their stamps,
//! which anti-entropy then brings; invariant 5 (no acknowledged write lost,
//! every live replica equal) is checked at the end of such runs.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::{mix_seed, secs, Micros};

/// The Unix time (µs) of simulated time 0: a plausible date, so that
/// offsets below zero stay positive.
pub const BASE_UNIX_MICROS: u64 = 1_700_000_000_000_000;

/// Clock offsets and jumps of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    /// Largest offset of a node's clock from the true time, seconds.
    pub max_offset: f64,
    /// Clock jumps over the run (a random node each).
    #[serde(default)]
    pub jumps: usize,
    /// Largest jump, seconds (default: `max_offset`).
    #[serde(default)]
    pub max_jump: Option<f64>,
}

impl ClockSpec {
    /// Offsets up to `max_offset` s, and `jumps` jumps as large.
    pub fn new(max_offset: f64, jumps: usize) -> Self {
        ClockSpec {
            max_offset,
            jumps,
            max_jump: None,
        }
    }

    /// Check the numbers; the error is one line.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && (0.0..=86_400.0).contains(&v);
        if !ok(self.max_offset) {
            return Err(format!(
                "clock max_offset ({}) must be in [0, 86400] seconds",
                self.max_offset
            ));
        }
        if let Some(j) = self.max_jump.filter(|&j| !ok(j)) {
            return Err(format!(
                "clock max_jump ({j}) must be in [0, 86400] seconds"
            ));
        }
        if self.jumps > 100_000 {
            return Err(format!(
                "clock jumps ({}) must be at most 100000",
                self.jumps
            ));
        }
        Ok(())
    }

    /// The seeded plan for `n` nodes, jumps between `from` and `until`.
    pub fn plan(&self, seed: u64, n: usize, from: Micros, until: Micros) -> ClockPlan {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix_seed(seed, 0xC10C));
        let max = secs(self.max_offset) as i64;
        let draw = |rng: &mut Xoshiro256PlusPlus, m: i64| {
            if m == 0 {
                0
            } else {
                rng.random_range(-m..=m)
            }
        };
        let offsets: Vec<i64> = (0..n).map(|_| draw(&mut rng, max)).collect();
        let max_jump = secs(self.max_jump.unwrap_or(self.max_offset)) as i64;
        let mut jumps: Vec<(Micros, usize, i64)> = (0..self.jumps)
            .filter(|_| n > 0)
            .map(|_| {
                let at = if until > from {
                    rng.random_range(from..until)
                } else {
                    from
                };
                (at, rng.random_range(0..n), draw(&mut rng, max_jump))
            })
            .collect();
        jumps.sort_unstable();
        ClockPlan {
            offsets,
            jumps,
            max,
        }
    }
}

/// Each node's current clock offset and the jumps still to come.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClockPlan {
    /// Offset of each node's clock, µs (positive: ahead).
    pub offsets: Vec<i64>,
    /// (when, node, step in µs), in time order.
    pub jumps: Vec<(Micros, usize, i64)>,
    /// Bound on every offset, µs.
    pub max: i64,
}

impl ClockPlan {
    /// The wall clock origin to give node `i` (Unix µs at simulated 0).
    pub fn origin(&self, i: usize) -> u64 {
        BASE_UNIX_MICROS.saturating_add_signed(self.offsets.get(i).copied().unwrap_or(0))
    }

    /// Step node `i`'s clock by `delta` µs, keeping the offset within the
    /// bound; the new origin.
    pub fn jump(&mut self, i: usize, delta: i64) -> u64 {
        if let Some(o) = self.offsets.get_mut(i) {
            *o = o.saturating_add(delta).clamp(-self.max, self.max);
        }
        self.origin(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_bounded_and_jump_both_ways() {
        let spec = ClockSpec::new(60.0, 200);
        let p = spec.plan(7, 16, secs(5.0), secs(20.0));
        assert_eq!(p, spec.plan(7, 16, secs(5.0), secs(20.0)));
        assert_ne!(p.offsets, spec.plan(8, 16, secs(5.0), secs(20.0)).offsets);
        assert!(p.offsets.iter().all(|o| o.abs() <= 60_000_000));
        assert!(p.jumps.iter().any(|j| j.2 > 0) && p.jumps.iter().any(|j| j.2 < 0));
        assert!(p
            .jumps
            .iter()
            .all(|&(at, i, _)| (secs(5.0)..secs(20.0)).contains(&at) && i < 16));
        let mut p = p;
        let o = p.jump(3, 1_000_000_000);
        assert_eq!(o, BASE_UNIX_MICROS + 60_000_000, "clamped to the bound");
        assert!(ClockSpec::new(-1.0, 0).validate().is_err());
        assert!(ClockSpec::new(60.0, 3).validate().is_ok());
    }
}
