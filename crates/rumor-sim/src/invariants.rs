//! The invariants of the design (§4, items 1–4), checked on every run:
//!
//! 1. **Completeness**: every crashed node is marked dead (or forgotten) by
//!    every live node within [`Bounds::detect`] of the crash.
//! 2. **Accuracy**: a live node that hears a suspicion (or death) of its
//!    current incarnation refutes it at once; a live, reachable node is not
//!    left marked dead, and a suspicion of it does not outlive [`Bounds::grace`].
//! 3. **Convergence**: once the last fault has healed for
//!    [`Bounds::converge`], every live node's set of live members equals
//!    the set of nodes that are up.
//! 4. **Incarnations only grow**, as each node reports them, and a member a
//!    node saw dead at incarnation `i` never comes back alive at `i`.
//! 5. **No invented member admitted**: no honest node ever holds a name the
//!    hostile actor invented ([`crate::hostile`]), even for a moment.
//! 6. **Lamport clocks stay clamped**: no node's user-event clock passes
//!    `rumor_core::limits::LAMPORT_CEILING`, whatever times it was sent.
//! 7. **No acknowledged write lost** (scenarios with clock offsets, see
//!    [`crate::clock`]; design invariant 5 of the key space): at the end,
//!    every live replica is equal and holds, for each key, the write with
//!    the greatest stamp among those a survivor held. A write refused
//!    locally is not acknowledged and not counted; a record a node refused
//!    as stamped too far ahead must have reached it by then.
//!
//! With a hostile actor, accuracy's "refutes at once" applies to plausible
//! accusations only: one more than `INCARNATION_JUMP` above the accused's
//! incarnation is refused by the core (counted, not refuted), by design.
//!
//! Checks at the end of a run look at every pair when N ≤ [`FULL_CHECK_NODES`],
//! else at that many observers chosen by the seed.

use std::time::Duration;

use rumor_core::limits::{plausible, INCARNATION_JUMP, LAMPORT_CEILING};
use rumor_core::message::Message;
use rumor_core::{Config, Event, MemberState, Node};

use crate::engine::Truth;
use crate::FastMap;
use crate::{name_index, node_addr, to_secs, Micros};

/// Up to this many nodes, end-of-run checks look at every observer.
pub const FULL_CHECK_NODES: usize = 1000;

/// Per-pair incarnation history is kept up to this many nodes.
pub(crate) const PAIR_HISTORY_NODES: usize = 2000;

/// Time bounds the invariants allow, derived from the configuration and N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Crash to dead at every live node: 2 × suspicion_max(N) + 10 probe intervals.
    pub detect: Micros,
    /// Last heal to one view: `detect` + the push-pull interval for N.
    pub converge: Micros,
    /// How long a suspicion or death mark of a live node may stand:
    /// suspicion_max(N) + 10 probe intervals.
    pub grace: Micros,
}

fn us(d: Duration) -> Micros {
    d.as_micros().min(u64::MAX as u128) as Micros
}

impl Bounds {
    /// The bounds for `config` in a cluster of `n`.
    pub fn new(config: &Config, n: usize) -> Self {
        let smax = us(config.suspicion_max(n));
        let probe = us(config.probe_interval);
        let detect = 2 * smax + 10 * probe;
        Bounds {
            detect,
            converge: detect + us(config.push_pull_interval_for(n)),
            grace: smax + 10 * probe,
        }
    }

    /// [`Bounds::converge`] in seconds.
    pub fn converge_s(&self) -> f64 {
        to_secs(self.converge)
    }
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Violation {
    /// completeness, accuracy, convergence or incarnation.
    pub invariant: &'static str,
    /// Simulated time of the check, in seconds.
    pub time_s: f64,
    /// What was wrong.
    pub detail: String,
}

/// A crash whose detection is checked at `crash + detect`.
#[derive(Clone, Debug)]
pub struct PendingCrash {
    /// The crashed node.
    pub node: usize,
    /// Its generation (restarts bump it).
    pub generation: u32,
    /// Its incarnation at the crash.
    pub incarnation: u64,
    /// When it crashed.
    pub at: Micros,
}

/// Collects violations as the run goes.
#[derive(Debug, Default)]
pub struct Checker {
    /// Violations found, at most [`Checker::KEEP`] kept.
    pub violations: Vec<Violation>,
    /// All violations found.
    pub count: usize,
    /// Completeness checks done / skipped (the run ended first or the node came back).
    pub completeness_checked: usize,
    /// Whether the end-of-run convergence check ran.
    pub convergence_checked: bool,
    /// Observer pairs the accuracy check looked at.
    pub accuracy_pairs: u64,
    /// Member events about invented names, plus invented names held at the end.
    pub invented_admitted: u64,
    /// (observer, subject) -> incarnation it was last seen dead at.
    dead_at: FastMap<(u32, u32), u64>,
    /// (observer, subject) -> last incarnation reported (small clusters only).
    last_inc: FastMap<(u32, u32), u64>,
    /// (observer, subject) -> last time it was reported suspect or dead.
    last_negative: FastMap<(u32, u32), Micros>,
    track_pairs: bool,
}

impl Checker {
    /// Violations kept in detail.
    pub const KEEP: usize = 50;

    /// A checker for `n` nodes.
    pub fn new(n: usize) -> Self {
        Checker {
            track_pairs: n <= PAIR_HISTORY_NODES,
            ..Checker::default()
        }
    }

    fn fail(&mut self, invariant: &'static str, now: Micros, detail: String) {
        self.count += 1;
        if self.violations.len() < Self::KEEP {
            self.violations.push(Violation {
                invariant,
                time_s: to_secs(now),
                detail,
            });
        }
    }

    /// Invariant 7, from the writes workload's end-of-run report.
    pub fn check_writes(&mut self, now: Micros, lost: usize, replicas_equal: bool) {
        if lost > 0 || !replicas_equal {
            self.fail(
                "writes",
                now,
                format!(
                    "{lost} key(s) whose last acknowledged write does not win everywhere; \
                     replicas equal: {replicas_equal}"
                ),
            );
        }
    }

    /// Invariant 4, on each event.
    pub fn on_event(&mut self, now: Micros, observer: usize, event: &Event) {
        let Event::Member { member, kind } = event else {
            return;
        };
        if crate::hostile::is_invented(&member.name) {
            self.invented_admitted += 1;
            self.fail(
                "admission",
                now,
                format!(
                    "n{observer} admitted invented member {} at {} ({kind:?})",
                    member.name, member.addr
                ),
            );
            return;
        }
        let Some(subject) = name_index(&member.name) else {
            return;
        };
        if subject == observer {
            return;
        }
        let key = (observer as u32, subject as u32);
        let inc = member.incarnation;
        if self.track_pairs {
            if let Some(&last) = self.last_inc.get(&key) {
                if inc < last {
                    self.fail(
                        "incarnation",
                        now,
                        format!(
                            "n{observer} saw n{subject}'s incarnation go from {last} down to {inc}"
                        ),
                    );
                }
            }
            self.last_inc.insert(key, inc);
        }
        match member.state {
            MemberState::Dead | MemberState::Left => {
                self.dead_at.insert(key, inc);
                self.last_negative.insert(key, now);
            }
            MemberState::Suspect => {
                self.last_negative.insert(key, now);
            }
            MemberState::Alive => {
                if let Some(&d) = self.dead_at.get(&key) {
                    if inc <= d {
                        self.fail(
                            "incarnation",
                            now,
                            format!(
                                "n{observer} saw n{subject} alive at incarnation {inc} after seeing it dead at {d}"
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Invariant 2 at the accused: node `node`, at incarnation `before`
    /// and now at `own`, processed `payload`, which held a suspicion or
    /// death of some member. Any plausible accusation of `node` itself (at
    /// most `INCARNATION_JUMP` above `before`) at `own` or above went
    /// unrefuted; an implausible one is refused by design.
    pub fn check_refutation(
        &mut self,
        now: Micros,
        node: usize,
        before: u64,
        own: u64,
        payload: &[u8],
    ) {
        let Ok(decoded) = rumor_core::codec::decode(payload) else {
            return;
        };
        let me = crate::node_name(node);
        for msg in decoded.messages {
            let (what, name, incarnation, from) = match msg {
                Message::Suspect {
                    name,
                    incarnation,
                    from,
                } => ("suspicion", name, incarnation, from),
                Message::Dead {
                    name,
                    incarnation,
                    from,
                } if from != name => ("death", name, incarnation, from),
                _ => continue,
            };
            if *name == *me
                && incarnation >= own
                && plausible(before, incarnation, INCARNATION_JUMP)
            {
                self.fail(
                    "accuracy",
                    now,
                    format!(
                        "n{node} heard a {what} of itself from {from} at incarnation {incarnation} and did not refute it (still at {own})"
                    ),
                );
            }
        }
    }

    /// A node was replaced by a fresh one (restart): forget its history as an observer.
    pub fn on_observer_reset(&mut self, observer: usize) {
        let o = observer as u32;
        self.dead_at.retain(|&(u, _), _| u != o);
        self.last_inc.retain(|&(u, _), _| u != o);
        self.last_negative.retain(|&(u, _), _| u != o);
    }

    /// Invariant 1 for one crash, at `now` = crash + detect.
    pub fn check_completeness(
        &mut self,
        now: Micros,
        crash: &PendingCrash,
        nodes: &[Option<Node>],
        truth: &Truth,
    ) {
        if truth.up[crash.node] || truth.generation[crash.node] != crash.generation {
            return; // it came back: nothing to detect
        }
        self.completeness_checked += 1;
        let name = crate::node_name(crash.node);
        let addr = node_addr(crash.node);
        let mut missing = Vec::new();
        for (u, node) in nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            if !truth.up[u] || truth.paused[u] || truth.disturbed_at[u] > crash.at {
                continue;
            }
            if let Some(m) = node.member(&name) {
                if !m.state.is_gone() && m.addr == addr && m.incarnation <= crash.incarnation {
                    missing.push(u);
                }
            }
        }
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().take(5).map(|u| format!("n{u}")).collect();
            self.fail(
                "completeness",
                now,
                format!(
                    "n{} crashed at {:.3}s but {} live node(s) still hold it live after {:.1}s: {}",
                    crash.node,
                    to_secs(crash.at),
                    missing.len(),
                    to_secs(now - crash.at),
                    list.join(", ")
                ),
            );
        }
    }

    /// Invariants 2 and 3 at the end of the run. `observers` are the nodes to look from.
    pub fn check_end(
        &mut self,
        now: Micros,
        nodes: &[Option<Node>],
        truth: &Truth,
        bounds: &Bounds,
        last_heal: Micros,
        observers: &[usize],
    ) {
        let n = nodes.len();
        let settled = |i: usize| {
            truth.up[i]
                && !truth.paused[i]
                && now.saturating_sub(truth.disturbed_at[i]) >= bounds.grace
        };
        // Accuracy: live, reachable, settled pairs.
        let mut accuracy = Vec::new();
        for &u in observers {
            let Some(node) = &nodes[u] else { continue };
            if !settled(u) {
                continue;
            }
            for v in 0..n {
                if v == u || !settled(v) || truth.leaving[v] || !truth.reachable(u, v) {
                    continue;
                }
                self.accuracy_pairs += 1;
                let Some(m) = node.member(&crate::node_name(v)) else {
                    continue;
                };
                let since = self
                    .last_negative
                    .get(&(u as u32, v as u32))
                    .map_or(0, |&t| now.saturating_sub(t));
                let stale = since >= bounds.grace;
                match m.state {
                    MemberState::Dead | MemberState::Left if stale => accuracy.push(format!(
                        "n{u} holds live n{v} {} (incarnation {}) for {:.1}s",
                        m.state.as_str(),
                        m.incarnation,
                        to_secs(since)
                    )),
                    MemberState::Suspect if stale => accuracy.push(format!(
                        "n{u} suspects live n{v} for {:.1}s without refutation",
                        to_secs(since)
                    )),
                    _ => {}
                }
            }
        }
        // No invented member held; Lamport clocks clamped.
        let mut invented = Vec::new();
        for &u in observers {
            let Some(node) = &nodes[u] else { continue };
            if node.event_clock() > LAMPORT_CEILING {
                self.fail(
                    "lamport",
                    now,
                    format!(
                        "n{u}'s event clock is {} (past the ceiling {LAMPORT_CEILING})",
                        node.event_clock()
                    ),
                );
            }
            invented.extend(
                node.members()
                    .filter(|m| crate::hostile::is_invented(&m.name))
                    .take(3)
                    .map(|m| format!("n{u} holds {} ({})", m.name, m.state.as_str())),
            );
        }
        if !invented.is_empty() {
            self.invented_admitted += invented.len() as u64;
            invented.truncate(5);
            self.fail(
                "admission",
                now,
                format!("invented members held: {}", invented.join("; ")),
            );
        }
        if !accuracy.is_empty() {
            let total = accuracy.len();
            accuracy.truncate(5);
            self.fail(
                "accuracy",
                now,
                format!(
                    "{total} wrong mark(s) of live nodes: {}",
                    accuracy.join("; ")
                ),
            );
        }
        // Convergence: only when the last fault healed long enough ago.
        if now < last_heal.saturating_add(bounds.converge) {
            return;
        }
        self.convergence_checked = true;
        let truth_live: Vec<usize> = (0..n)
            .filter(|&i| truth.up[i] && !truth.leaving[i])
            .collect();
        let mut wrong = Vec::new();
        for &u in observers {
            let Some(node) = &nodes[u] else { continue };
            if !truth.up[u] || truth.paused[u] || truth.leaving[u] {
                continue;
            }
            let mut view: Vec<usize> = node
                .members()
                .filter(|m| !m.state.is_gone())
                .filter_map(|m| name_index(&m.name))
                .collect();
            view.sort_unstable();
            if view != truth_live {
                let extra: Vec<String> = view
                    .iter()
                    .filter(|i| truth_live.binary_search(i).is_err())
                    .take(3)
                    .map(|i| format!("n{i}"))
                    .collect();
                let missing: Vec<String> = truth_live
                    .iter()
                    .filter(|i| view.binary_search(i).is_err())
                    .take(3)
                    .map(|i| format!("n{i}"))
                    .collect();
                wrong.push(format!(
                    "n{u} sees {} live (extra [{}], missing [{}])",
                    view.len(),
                    extra.join(" "),
                    missing.join(" ")
                ));
            }
        }
        if !wrong.is_empty() {
            let total = wrong.len();
            wrong.truncate(5);
            self.fail(
                "convergence",
                now,
                format!(
                    "{total} node(s) disagree with the {} up nodes {:.1}s after the last heal: {}",
                    truth_live.len(),
                    to_secs(now - last_heal),
                    wrong.join("; ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_with_n() {
        let c = Config::lan();
        let a = Bounds::new(&c, 32);
        let b = Bounds::new(&c, 10_000);
        assert!(b.detect > a.detect && b.converge > a.converge);
        assert!(a.grace < a.detect);
    }
}
