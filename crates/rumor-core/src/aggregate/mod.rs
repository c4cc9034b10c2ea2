//! Aggregation by gossip: push-sum (Kempe, Dobra, Gehrke 2003) for average,
//! sum and count, and gossiped minimum and maximum.
//!
//! Each node holds, per aggregate, a share `(s, w, c, u)`: `s` starts at its
//! value and `w` at 1 (so `s / w` tends to the average), `c` starts at 1 and
//! `u` is 1 only at the epoch's leader (so `c / u` tends to the count). Each
//! round a node keeps half of its share and sends half to a random peer.
//!
//! Mass is never lost to packet loss: a sent half stays in flight until the
//! peer acknowledges it, is retransmitted under the same sequence number,
//! and receivers apply each sequence number once. A crashed node's mass is
//! lost with it, so aggregates restart in epochs: each epoch every node
//! starts again from its current value.
//!
//! [`Aggregates`] is the whole exchange without I/O: [`Aggregates::round`]
//! gives the transfer to send each round, [`Aggregates::receive`] applies
//! one, [`Aggregates::acknowledged`] settles one. The node drives it over
//! the wire (`Message::Aggregate`, `Message::AggregateAck`); the simulator's
//! push-sum model drives it directly with random peers.

pub(crate) mod service;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Longest aggregate name, in bytes.
pub const MAX_AGGREGATE_NAME: usize = 64;
/// Most aggregates tracked at once.
pub const MAX_AGGREGATES: usize = 16;

/// One aggregate's share of the cluster-wide mass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Share {
    /// Sum of values.
    pub s: f64,
    /// Weight for the average.
    pub w: f64,
    /// Sum of participant counts.
    pub c: f64,
    /// Weight for the count (1 at the leader).
    pub u: f64,
    /// Smallest value seen.
    pub min: f64,
    /// Largest value seen.
    pub max: f64,
}

impl Share {
    /// The initial share of a node holding `value` (`None`: not a participant).
    pub fn initial(value: Option<f64>, leader: bool) -> Share {
        let (s, w, c, min, max) = match value {
            Some(v) => (v, 1.0, 1.0, v, v),
            // Finite identities for min and max, so shares always encode.
            None => (0.0, 0.0, 0.0, f64::MAX, f64::MIN),
        };
        Share {
            s,
            w,
            c,
            u: if leader { 1.0 } else { 0.0 },
            min,
            max,
        }
    }

    /// Split off half of the mass (min and max are copied, not split).
    pub fn halve(&mut self) -> Share {
        self.s /= 2.0;
        self.w /= 2.0;
        self.c /= 2.0;
        self.u /= 2.0;
        *self
    }

    /// Whether a received share can be absorbed without producing an
    /// infinity or a NaN: every field finite, weights non-negative, and
    /// magnitudes at most [`MAX_MAGNITUDE`] (so that sums of a cluster's
    /// worth of shares stay finite).
    pub fn is_sane(&self) -> bool {
        let bounded = |x: f64| x.is_finite() && x.abs() <= MAX_MAGNITUDE;
        [self.s, self.w, self.c, self.u].into_iter().all(bounded)
            && self.w >= 0.0
            && self.c >= 0.0
            && self.u >= 0.0
            && self.min.is_finite()
            && self.max.is_finite()
    }

    /// Add received mass.
    pub fn absorb(&mut self, other: &Share) {
        self.s += other.s;
        self.w += other.w;
        self.c += other.c;
        self.u += other.u;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// Largest magnitude of a share's mass fields accepted from a peer (and of
/// a tracked value): 1e300 leaves eight orders of magnitude before a sum
/// over a cluster overflows.
pub const MAX_MAGNITUDE: f64 = 1e300;

/// An estimate of one aggregate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Average over participants.
    pub avg: f64,
    /// Sum over participants.
    pub sum: f64,
    /// Number of participants.
    pub count: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Largest relative change of the average over the last rounds.
    pub change: f64,
    /// The estimate has settled (`change` below 1e-6) in this epoch.
    pub converged: bool,
    /// The epoch it comes from.
    pub epoch: u64,
}

/// Half of a node's shares on its way to one peer: sent as
/// `Message::Aggregate` until the peer acknowledges `(epoch, seq)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    /// The peer it goes to.
    pub to: Arc<str>,
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Its sequence number, per sender and epoch (from 1).
    pub seq: u32,
    /// The mass, per aggregate name.
    pub shares: Vec<(String, Share)>,
}

/// How many recent averages the convergence indicator looks at.
const HISTORY: usize = 5;

/// Per-aggregate state at one node.
#[derive(Clone, Debug)]
struct Tracked {
    share: Share,
    history: VecDeque<f64>,
    /// The last settled estimate of an earlier epoch, shown while a new one mixes.
    settled: Option<Estimate>,
}

/// Every aggregate this node tracks, its epoch, and the mass in flight.
#[derive(Debug, Default)]
pub struct Aggregates {
    epoch: u64,
    tracked: BTreeMap<String, Tracked>,
    /// Highest sequence number applied per sender in this epoch.
    applied: HashMap<Arc<str>, u32>,
    /// Last sequence number sent in this epoch.
    seq: u32,
    /// The transfer sent and not yet acknowledged.
    in_flight: Option<Transfer>,
    /// This node began the current epoch (it holds the count weight).
    leading: bool,
}

impl Aggregates {
    /// Current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether this node began the current epoch, and so holds its count weight.
    pub fn leading(&self) -> bool {
        self.leading
    }

    /// Names tracked.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tracked.keys().map(String::as_str)
    }

    /// Whether `name` is tracked.
    pub fn is_tracked(&self, name: &str) -> bool {
        self.tracked.contains_key(name)
    }

    /// Start tracking `name` with this node's `value`.
    pub fn track(&mut self, name: &str, value: Option<f64>, leader: bool) -> Result<(), String> {
        if self.tracked.contains_key(name) {
            return Ok(());
        }
        validate_name(name)?;
        if self.tracked.len() >= MAX_AGGREGATES {
            return Err(format!(
                "at most {MAX_AGGREGATES} aggregates can be tracked"
            ));
        }
        self.tracked.insert(
            name.to_owned(),
            Tracked {
                share: Share::initial(value, leader),
                history: VecDeque::new(),
                settled: None,
            },
        );
        Ok(())
    }

    /// Begin `epoch`: every share restarts from the node's current value.
    pub fn begin_epoch(&mut self, epoch: u64, leader: bool, value: impl Fn(&str) -> Option<f64>) {
        // Mass in flight belongs to the old epoch: it is void now.
        self.in_flight = None;
        self.seq = 0;
        self.leading = leader;
        // The ending epoch's estimate keeps the ending epoch's number.
        let ended = std::mem::replace(&mut self.epoch, epoch);
        self.applied.clear();
        for (name, t) in &mut self.tracked {
            if let Some(e) = estimate_of(&t.share, &t.history, ended) {
                if e.converged || t.settled.is_none() {
                    t.settled = Some(e);
                }
            }
            t.share = Share::initial(value(name), leader);
            t.history.clear();
        }
    }

    /// One push-sum round; returns the transfer to send now, if any.
    ///
    /// A transfer not yet acknowledged is sent again under its sequence
    /// number, for as long as its peer may be alive: a peer that applied it
    /// and whose acks were all lost must not see its mass come back to the
    /// sender too (that would duplicate it). Only once `gone(peer)` says the
    /// peer failed or left is the mass taken back; whatever the peer held
    /// went with it, and the next epoch starts afresh either way. Otherwise
    /// half of every share goes to the peer `pick` chooses (`None`: no peer,
    /// nothing sent). The round's averages are recorded for the convergence
    /// indicator. Nothing is sent while nothing is tracked.
    pub fn round(
        &mut self,
        pick: impl FnOnce() -> Option<Arc<str>>,
        gone: impl FnOnce(&str) -> bool,
    ) -> Option<Transfer> {
        if self.tracked.is_empty() {
            return None;
        }
        let out = match self.in_flight.take() {
            Some(f) if !gone(&f.to) => {
                self.in_flight = Some(f.clone());
                Some(f)
            }
            pending => {
                if let Some(f) = pending {
                    self.restore(&f.shares);
                }
                pick().map(|to| {
                    self.seq += 1;
                    let f = Transfer {
                        to,
                        epoch: self.epoch,
                        seq: self.seq,
                        shares: self.split(),
                    };
                    self.in_flight = Some(f.clone());
                    f
                })
            }
        };
        self.end_round();
        out
    }

    /// The peer acknowledged transfer `seq` of `epoch`: its mass is theirs.
    pub fn acknowledged(&mut self, epoch: u64, seq: u32) {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.epoch == epoch && f.seq == seq)
        {
            self.in_flight = None;
        }
    }

    /// The transfer sent and not yet acknowledged, if any.
    pub fn in_flight(&self) -> Option<&Transfer> {
        self.in_flight.as_ref()
    }

    /// Take half of every share, to send.
    fn split(&mut self) -> Vec<(String, Share)> {
        self.tracked
            .iter_mut()
            .map(|(n, t)| (n.clone(), t.share.halve()))
            .collect()
    }

    /// Give back mass that could not be delivered.
    fn restore(&mut self, shares: &[(String, Share)]) {
        for (name, share) in shares {
            if let Some(t) = self.tracked.get_mut(name) {
                t.share.absorb(share);
            }
        }
    }

    /// Take in `sender`'s transfer `seq` of `epoch` (the receiving side of
    /// the exchange; acknowledge it whatever this returns). A later epoch
    /// than this node's is begun first, this node not leading it; mass of
    /// an earlier epoch is void. `leader`: whether this node holds the count
    /// weight, should it start tracking a name in the current epoch.
    /// Returns whether mass was applied.
    pub fn accept(
        &mut self,
        sender: &Arc<str>,
        epoch: u64,
        seq: u32,
        shares: &[(String, Share)],
        value: impl Fn(&str) -> Option<f64>,
        leader: bool,
    ) -> bool {
        if !self.admissible(epoch, shares) {
            return false;
        }
        let leader = if epoch > self.epoch {
            self.begin_epoch(epoch, false, &value);
            false
        } else {
            leader
        };
        epoch == self.epoch && self.receive(sender, seq, shares, value, leader)
    }

    /// Whether a transfer of `epoch` with `shares` may be taken in: its
    /// epoch is a plausible step from this one ([`crate::limits::EPOCH_JUMP`])
    /// and every share is sane ([`Share::is_sane`]). [`Aggregates::accept`]
    /// refuses the others.
    pub fn admissible(&self, epoch: u64, shares: &[(String, Share)]) -> bool {
        crate::limits::plausible(self.epoch, epoch, crate::limits::EPOCH_JUMP)
            && shares.iter().all(|(_, s)| s.is_sane())
    }

    /// Apply `sender`'s transfer `seq` of this epoch, once. Names not yet
    /// tracked here are tracked from now on, this node joining with its own
    /// `value` and `leader` weight. Returns false for a duplicate.
    pub fn receive(
        &mut self,
        sender: &Arc<str>,
        seq: u32,
        shares: &[(String, Share)],
        value: impl Fn(&str) -> Option<f64>,
        leader: bool,
    ) -> bool {
        let last = self.applied.entry(sender.clone()).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        for (name, share) in shares {
            if validate_name(name).is_err() || !share_is_sane(share) {
                continue;
            }
            if !self.tracked.contains_key(name) && self.tracked.len() < MAX_AGGREGATES {
                self.tracked.insert(
                    name.clone(),
                    Tracked {
                        share: Share::initial(value(name), leader),
                        history: VecDeque::new(),
                        settled: None,
                    },
                );
            }
            if let Some(t) = self.tracked.get_mut(name) {
                t.share.absorb(share);
            }
        }
        true
    }

    /// Record this round's averages for the convergence indicator.
    fn end_round(&mut self) {
        for t in self.tracked.values_mut() {
            if t.share.w > 0.0 {
                t.history.push_back(t.share.s / t.share.w);
                if t.history.len() > HISTORY {
                    t.history.pop_front();
                }
            }
        }
    }

    /// The estimate of `name`: this epoch's once it has settled, else the
    /// last settled one of an earlier epoch, else this epoch's so far.
    pub fn estimate(&self, name: &str) -> Option<Estimate> {
        let t = self.tracked.get(name)?;
        let current = estimate_of(&t.share, &t.history, self.epoch);
        match (current, t.settled) {
            (Some(c), _) if c.converged => Some(c),
            (_, Some(s)) => Some(s),
            (c, None) => c,
        }
    }

    /// Total mass held here for `name` (for conservation checks).
    pub fn share(&self, name: &str) -> Option<Share> {
        self.tracked.get(name).map(|t| t.share)
    }
}

fn estimate_of(share: &Share, history: &VecDeque<f64>, epoch: u64) -> Option<Estimate> {
    if share.w <= 0.0 {
        return None;
    }
    let avg = share.s / share.w;
    let count = if share.u > 0.0 {
        share.c / share.u
    } else {
        f64::NAN
    };
    let change = match (
        history.iter().copied().reduce(f64::min),
        history.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) if history.len() == HISTORY => {
            (hi - lo).abs() / avg.abs().max(f64::MIN_POSITIVE)
        }
        _ => f64::INFINITY,
    };
    Some(Estimate {
        avg,
        sum: avg * count,
        count,
        min: share.min,
        max: share.max,
        change,
        converged: change < 1e-6 && count.is_finite(),
        epoch,
    })
}

fn share_is_sane(s: &Share) -> bool {
    [s.s, s.w, s.c, s.u].iter().all(|x| x.is_finite()) && s.w >= 0.0 && s.c >= 0.0 && s.u >= 0.0
}

/// Check an aggregate name.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_AGGREGATE_NAME {
        return Err(format!(
            "aggregate name must be 1 to {MAX_AGGREGATE_NAME} bytes, got {}",
            name.len()
        ));
    }
    Ok(())
}

/// Parse a state value as an aggregatable number: finite and at most
/// [`MAX_MAGNITUDE`] in size.
pub fn parse_value(raw: &str) -> Option<f64> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && v.abs() <= MAX_MAGNITUDE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_and_absorbing_conserve_mass() {
        let mut a = Share::initial(Some(4.0), true);
        let mut b = Share::initial(Some(2.0), false);
        let half = a.halve();
        b.absorb(&half);
        assert_eq!(a.s + b.s, 6.0);
        assert_eq!(a.w + b.w, 2.0);
        assert_eq!(a.u + b.u, 1.0);
        assert_eq!((b.min, b.max), (2.0, 4.0));
    }

    #[test]
    fn duplicates_are_applied_once_and_bad_shares_ignored() {
        let mut agg = Aggregates::default();
        agg.track("load", Some(1.0), false).unwrap();
        let from: Arc<str> = "a".into();
        let half = vec![("load".to_string(), Share::initial(Some(3.0), true))];
        assert!(agg.receive(&from, 1, &half, |_| None, false));
        assert!(!agg.receive(&from, 1, &half, |_| None, false));
        assert_eq!(agg.share("load").unwrap().s, 4.0);
        let bad = vec![(
            "load".to_string(),
            Share {
                s: f64::NAN,
                ..Share::default()
            },
        )];
        assert!(agg.receive(&from, 2, &bad, |_| None, false));
        assert_eq!(agg.share("load").unwrap().s, 4.0);
        assert!(parse_value("inf").is_none() && parse_value("NaN").is_none());
        assert_eq!(parse_value(" 2.5 "), Some(2.5));
        assert!(agg.track(&"x".repeat(100), None, false).is_err());
    }

    #[test]
    fn a_transfer_applied_but_never_acknowledged_is_not_duplicated() {
        let (from, to): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut a = Aggregates::default();
        let mut b = Aggregates::default();
        a.track("load", Some(4.0), true).unwrap();
        b.track("load", Some(2.0), false).unwrap();
        let f = a.round(|| Some(to.clone()), |_| false).unwrap();
        // The peer applies it; every ack is lost, and so is every retransmission.
        assert!(b.receive(&from, f.seq, &f.shares, |_| None, false));
        for _ in 0..12 {
            let again = a.round(|| Some(to.clone()), |_| false).unwrap();
            let fresh = b.receive(&from, again.seq, &again.shares, |_| None, false);
            // Held by both (nothing else in flight is applied yet) stays 6.
            let held = a.share("load").unwrap().s + b.share("load").unwrap().s;
            assert_eq!(held, 6.0, "mass duplicated (fresh transfer: {fresh})");
            assert_eq!(again.seq, f.seq);
        }
        // Once the peer is known to be gone the sender takes the mass back.
        a.round(|| None, |_| true);
        assert_eq!(a.in_flight(), None);
        assert_eq!(a.share("load").unwrap().s, 4.0);
    }

    #[test]
    fn an_earlier_epochs_estimate_keeps_its_epoch() {
        let mut agg = Aggregates::default();
        agg.track("load", Some(5.0), true).unwrap();
        for _ in 0..HISTORY {
            agg.round(|| None, |_| false);
        }
        let settled = agg.estimate("load").unwrap();
        assert!(settled.converged && settled.epoch == 0, "{settled:?}");
        agg.begin_epoch(1, true, |_| Some(7.0));
        let shown = agg.estimate("load").unwrap();
        assert_eq!((shown.avg, shown.epoch), (5.0, 0), "{shown:?}");
        for _ in 0..HISTORY {
            agg.round(|| None, |_| false);
        }
        let fresh = agg.estimate("load").unwrap();
        assert_eq!((fresh.avg, fresh.epoch), (7.0, 1), "{fresh:?}");
    }
}
