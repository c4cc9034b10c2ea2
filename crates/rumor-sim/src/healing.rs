//! When the views healed: the last moment some running node held another
//! running node as suspect, dead or left.
//!
//! The figure for partitions, pauses and restarts: how long after the
//! last fault healed it took until every member saw every other alive
//! again. It keeps one entry per (observer, subject) pair whose observer's
//! last word on the subject was negative, so it runs only for clusters of
//! at most [`Healing::MAX_NODES`] nodes.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use rumor_core::MemberEventKind;

use crate::engine::Truth;
use crate::{FastHasher, Micros};

/// Negative views of running members, and the last time there was one.
#[derive(Debug, Default)]
pub struct Healing {
    /// (observer, subject) pairs whose last event was suspect, failed or left.
    negative: HashSet<(u32, u32), BuildHasherDefault<FastHasher>>,
    /// How many of them are between two running, not leaving nodes.
    open: usize,
    /// The last member event after which `open` was not zero.
    last_open: Option<Micros>,
}

impl Healing {
    /// The largest cluster tracked (the same bound as the invariant
    /// checker's per-pair history).
    pub const MAX_NODES: usize = crate::invariants::PAIR_HISTORY_NODES;

    /// A tracker for `n` nodes, if that is few enough.
    pub fn new(n: usize) -> Option<Self> {
        (n <= Self::MAX_NODES).then(Self::default)
    }

    /// `observer` reported `kind` about `subject` at `now`.
    pub fn on_event(
        &mut self,
        now: Micros,
        observer: usize,
        subject: usize,
        kind: MemberEventKind,
        truth: &Truth,
    ) {
        let key = (observer as u32, subject as u32);
        let counts = running(truth, observer) && running(truth, subject);
        let negative = match kind {
            MemberEventKind::Suspect | MemberEventKind::Failed | MemberEventKind::Left => {
                Some(true)
            }
            MemberEventKind::Joined | MemberEventKind::Alive | MemberEventKind::Updated => {
                Some(false)
            }
            _ => None,
        };
        match negative {
            Some(true) if self.negative.insert(key) && counts => self.open += 1,
            Some(false) if self.negative.remove(&key) && counts => self.open -= 1,
            _ => {}
        }
        if self.open > 0 {
            self.last_open = Some(now);
        }
    }

    /// A node started a new life: what it held before is gone.
    pub fn forget_observer(&mut self, observer: usize, truth: &Truth) {
        let o = observer as u32;
        self.negative.retain(|&(u, _)| u != o);
        self.recount(truth);
    }

    /// A node went down, came up or began to leave.
    pub fn recount(&mut self, truth: &Truth) {
        self.open = self
            .negative
            .iter()
            .filter(|&&(o, s)| running(truth, o as usize) && running(truth, s as usize))
            .count();
    }

    /// Seconds from `last_heal` until the views last healed: `Some(0)` if
    /// they never broke after it, `None` if they are still broken.
    pub fn healed_after(&self, last_heal: Micros) -> Option<f64> {
        if self.open > 0 {
            return None;
        }
        let last = self.last_open.unwrap_or(0);
        Some(crate::to_secs(last.saturating_sub(last_heal)))
    }
}

fn running(truth: &Truth, i: usize) -> bool {
    truth.up.get(i).copied().unwrap_or(false) && !truth.leaving.get(i).copied().unwrap_or(true)
}
