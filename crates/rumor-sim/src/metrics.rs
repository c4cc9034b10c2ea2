//! What a run measures: how fast each update (join, tag change, death,
//! leave) reaches the live nodes, how fast crashes are detected, false
//! positives, and cost.
//!
//! Everything is fed from the nodes' own events ([`rumor_core::Event`]) as
//! the engine drains them, so measuring costs O(events), not O(N) per tick.

use rumor_core::{Event, MemberEventKind, MemberState};

use crate::engine::Truth;
use crate::FastMap;
use crate::{to_secs, Micros};

/// A fixed-size set of node indices.
#[derive(Clone, Debug, Default)]
pub struct BitSet(Vec<u64>);

impl BitSet {
    /// An empty set for indices below `n`.
    pub fn new(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }
    /// Add `i`; whether it was new.
    pub fn insert(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let new = self.0[w] & b == 0;
        self.0[w] |= b;
        new
    }
    /// Remove `i`; whether it was there.
    pub fn remove(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let had = self.0[w] & b != 0;
        self.0[w] &= !b;
        had
    }
    /// Whether `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    /// Members.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// No members.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}

/// What kind of news an update is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    /// A node joined (or came back after a restart).
    Join,
    /// A node changed a tag to this value.
    Tags(String, String),
    /// A node crashed: the news is its death.
    Death,
    /// A node left gracefully.
    Leave,
}

impl UpdateKind {
    /// A short label.
    pub fn label(&self) -> &'static str {
        match self {
            UpdateKind::Join => "join",
            UpdateKind::Tags(..) => "tags",
            UpdateKind::Death => "death",
            UpdateKind::Leave => "leave",
        }
    }
}

/// One tracked update and who learnt it when.
#[derive(Clone, Debug)]
pub struct Update {
    /// What it is.
    pub kind: UpdateKind,
    /// The node it is about.
    pub subject: usize,
    /// When it happened.
    pub start: Micros,
    /// Nodes that should learn it: up at the start (and, for a death,
    /// holding the subject live then).
    pub eligible: BitSet,
    /// Who learnt it, first time only.
    pub seen: BitSet,
    /// (time, observer) of each first learning.
    pub arrivals: Vec<(Micros, u32)>,
    /// First suspicion of the subject after the start (deaths).
    pub first_suspect: Option<Micros>,
    /// Restarted (or rejoined) after the start: later news about it belongs elsewhere.
    pub closed: bool,
}

/// Time for an update to reach a fraction of the nodes, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// 50 %.
    pub t50_s: Option<f64>,
    /// 90 %.
    pub t90_s: Option<f64>,
    /// 99 %.
    pub t99_s: Option<f64>,
    /// All.
    pub t100_s: Option<f64>,
}

impl Update {
    /// Arrival delays (seconds, sorted) at the nodes that should have
    /// learnt it and are still up, unrestarted, at the end; and how many those are.
    pub fn delays(&self, truth: &Truth) -> (Vec<f64>, usize) {
        arrival_delays(&self.eligible, &self.arrivals, self.start, truth)
    }

    /// The 50/90/99/100 % times.
    pub fn percentiles(&self, truth: &Truth) -> Percentiles {
        let (d, target) = self.delays(truth);
        percentiles(&d, target)
    }
}

/// The 50/90/99/100 % points of sorted delays `d` out of `target` (a point
/// beyond the delays that arrived is `None`).
pub(crate) fn percentiles(d: &[f64], target: usize) -> Percentiles {
    let at = |p: f64| {
        if target == 0 {
            return None;
        }
        let k = ((p * target as f64).ceil() as usize).max(1);
        d.get(k - 1).copied()
    };
    Percentiles {
        t50_s: at(0.5),
        t90_s: at(0.9),
        t99_s: at(0.99),
        t100_s: at(1.0),
    }
}

/// How a cluster that joins through one seed forms: when every initial
/// member first lists every other one as live. The join burst is where a
/// member can miss another's alive rumor and wait for anti-entropy.
#[derive(Debug, Default)]
pub struct Formation {
    /// The initial members.
    members: BitSet,
    /// Per observer: the initial members it lists as live.
    known: Vec<BitSet>,
    /// (observer, subject) pairs known, out of `target`.
    pairs: usize,
    target: usize,
    /// When `pairs` first reached half, 90 %, 99 % and 99.9 % of `target`.
    pub milestones: [Option<Micros>; 4],
    /// When `pairs` first reached `target`.
    pub formed_at: Option<Micros>,
    /// The pair that was learnt last then: (observer, subject).
    pub last_pair: Option<(usize, usize)>,
}

impl Formation {
    /// Track the forming of a cluster of `initial` members out of `n` nodes.
    pub fn new(n: usize, initial: &[usize]) -> Self {
        let mut members = BitSet::new(n);
        for &i in initial {
            members.insert(i);
        }
        let k = initial.len();
        Formation {
            members,
            known: vec![BitSet::new(n); n],
            pairs: 0,
            target: k * k.saturating_sub(1),
            milestones: [None; 4],
            formed_at: None,
            last_pair: None,
        }
    }

    fn on_event(&mut self, now: Micros, observer: usize, subject: usize, kind: MemberEventKind) {
        if self.formed_at.is_some()
            || !self.members.contains(observer)
            || !self.members.contains(subject)
        {
            return;
        }
        match kind {
            MemberEventKind::Joined | MemberEventKind::Alive | MemberEventKind::Updated
                if self.known[observer].insert(subject) =>
            {
                self.pairs += 1;
                for (slot, per_mille) in self.milestones.iter_mut().zip([500, 900, 990, 999]) {
                    if slot.is_none() && self.pairs * 1000 >= self.target * per_mille {
                        *slot = Some(now);
                    }
                }
                if self.pairs == self.target {
                    self.formed_at = Some(now);
                    self.last_pair = Some((observer, subject));
                }
            }
            MemberEventKind::Failed | MemberEventKind::Left
                if self.known[observer].remove(subject) =>
            {
                self.pairs -= 1;
            }
            _ => {}
        }
    }
}

/// Running counters and trackers for one run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Every tracked update, in start order.
    pub updates: Vec<Update>,
    /// Open updates by subject.
    by_subject: FastMap<usize, Vec<usize>>,
    /// False death declarations: (observer, subject) pairs marked dead while
    /// the subject was up, unpaused and reachable from the observer.
    pub false_positives: u64,
    /// Distinct subjects of false positives.
    pub false_positive_nodes: std::collections::BTreeSet<usize>,
    /// Summed time those marks lasted (until the observer saw it alive again, or the end).
    pub false_positive_micros: Micros,
    open_false: FastMap<(u32, u32), Micros>,
    /// Suspicions of nodes that were up, unpaused and reachable.
    pub live_suspicions: u64,
    /// Suspicions of nodes while they were paused.
    pub paused_suspicions: u64,
    /// (observer, subject) death declarations of nodes while they were paused.
    pub paused_failures: u64,
    /// Stream bytes carried (requests and replies).
    pub stream_bytes: u64,
    /// Datagrams delivered / lost by the network model.
    pub datagrams_delivered: u64,
    /// Datagrams the network model dropped (loss or partition).
    pub datagrams_dropped: u64,
    /// Member events drained from the nodes.
    pub member_events: u64,
    /// The forming of a cluster bootstrapped through a seed.
    pub formation: Option<Formation>,
    /// When the views last healed (small clusters only).
    pub healing: Option<crate::healing::Healing>,
}

impl Metrics {
    /// Counters for a run of `n` nodes.
    pub fn new(n: usize) -> Self {
        Metrics {
            healing: crate::healing::Healing::new(n),
            ..Metrics::default()
        }
    }

    /// Start tracking an update about `subject`.
    pub fn track(&mut self, kind: UpdateKind, subject: usize, start: Micros, eligible: BitSet) {
        let n = eligible.0.len() * 64;
        let idx = self.updates.len();
        if matches!(kind, UpdateKind::Join) {
            // A new life: older news about the subject is over.
            for &i in self.by_subject.get(&subject).into_iter().flatten() {
                self.updates[i].closed = true;
            }
        }
        self.updates.push(Update {
            kind,
            subject,
            start,
            eligible,
            seen: BitSet::new(n),
            arrivals: Vec::new(),
            first_suspect: None,
            closed: false,
        });
        self.by_subject.entry(subject).or_default().push(idx);
    }

    /// A node's event, at `now`.
    pub fn on_event(&mut self, now: Micros, observer: usize, event: &Event, truth: &Truth) {
        let Event::Member { kind, member } = event else {
            return;
        };
        self.member_events += 1;
        let Some(subject) = crate::name_index(&member.name) else {
            return;
        };
        if subject == observer || subject >= truth.up.len() {
            return;
        }
        if let Some(f) = self.formation.as_mut() {
            f.on_event(now, observer, subject, *kind);
        }
        if let Some(h) = self.healing.as_mut() {
            h.on_event(now, observer, subject, *kind, truth);
        }
        let healthy = truth.up[subject]
            && !truth.paused[subject]
            && !truth.leaving[subject]
            && truth.reachable(observer, subject);
        let key = (observer as u32, subject as u32);
        match kind {
            MemberEventKind::Failed if healthy => {
                self.false_positives += 1;
                self.false_positive_nodes.insert(subject);
                self.open_false.entry(key).or_insert(now);
            }
            MemberEventKind::Suspect if healthy => self.live_suspicions += 1,
            MemberEventKind::Suspect if truth.paused[subject] => self.paused_suspicions += 1,
            MemberEventKind::Failed if truth.paused[subject] => self.paused_failures += 1,
            MemberEventKind::Joined | MemberEventKind::Alive | MemberEventKind::Updated => {
                if let Some(t) = self.open_false.remove(&key) {
                    self.false_positive_micros += now - t;
                }
            }
            _ => {}
        }
        let Some(list) = self.by_subject.get(&subject) else {
            return;
        };
        for &i in list {
            let u = &mut self.updates[i];
            if u.closed || now < u.start {
                continue;
            }
            let learnt = match (&u.kind, kind) {
                (UpdateKind::Death, MemberEventKind::Suspect) => {
                    u.first_suspect.get_or_insert(now);
                    false
                }
                (UpdateKind::Death | UpdateKind::Leave, k) => {
                    matches!(k, MemberEventKind::Failed | MemberEventKind::Left)
                }
                (UpdateKind::Join, k) => {
                    member.state == MemberState::Alive
                        && matches!(
                            k,
                            MemberEventKind::Joined
                                | MemberEventKind::Alive
                                | MemberEventKind::Updated
                        )
                }
                (UpdateKind::Tags(key, value), _) => {
                    !member.state.is_gone()
                        && member.tags.get(key.as_str()).map(String::as_str) == Some(value.as_str())
                }
            };
            if learnt && u.seen.insert(observer) {
                u.arrivals.push((now, observer as u32));
            }
        }
    }

    /// A node was replaced (restart): its old views are gone.
    pub fn on_observer_reset(&mut self, observer: usize, truth: &Truth) {
        let o = observer as u32;
        self.open_false.retain(|&(u, _), _| u != o);
        if let Some(h) = self.healing.as_mut() {
            h.forget_observer(observer, truth);
        }
    }

    /// A node went down, came up or began to leave.
    pub fn on_truth_change(&mut self, truth: &Truth) {
        if let Some(h) = self.healing.as_mut() {
            h.recount(truth);
        }
    }

    /// Close open false positives at the end of the run.
    pub fn finish(&mut self, end: Micros) {
        for (_, t) in self.open_false.drain() {
            self.false_positive_micros += end.saturating_sub(t);
        }
    }
}

/// Sorted arrival delays (s) of something that started at `start`, counting
/// only the `eligible` nodes still up and unrestarted at the end, and how
/// many such nodes there are (shared by updates and workload writes).
pub fn arrival_delays(
    eligible: &BitSet,
    arrivals: &[(Micros, u32)],
    start: Micros,
    truth: &Truth,
) -> (Vec<f64>, usize) {
    let keep = |i: usize| eligible.contains(i) && truth.up[i] && truth.up_since[i] <= start;
    let target = (0..truth.up.len()).filter(|&i| keep(i)).count();
    let mut d: Vec<f64> = arrivals
        .iter()
        .filter(|&&(_, o)| keep(o as usize))
        .map(|&(t, _)| to_secs(t - start))
        .collect();
    d.sort_by(f64::total_cmp);
    (d, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset() {
        let mut b = BitSet::new(130);
        assert!(b.is_empty());
        assert!(b.insert(129));
        assert!(!b.insert(129));
        assert!(b.contains(129) && !b.contains(128));
        assert_eq!(b.len(), 1);
    }
}
