//! Peers' clock offsets, measured NTP-style on the Merkle sync exchange.
//!
//! The initiator of a sync session sends, next to its first request, a
//! [`ClockProbe`] carrying its physical time `t0`; the responder echoes
//! `t0` with its own physical time `t1` next to its first answer; the
//! initiator reads `t2` when the echo arrives. Assuming the two legs take
//! the same time, the responder's clock is ahead by
//! `offset = t1 - (t0 + t2) / 2`, within half the round trip `t2 - t0`.
//!
//! [`SkewTable`] keeps the latest sample per peer name. The node bounds it
//! by its members (a sample is kept only for a member, and names that are
//! no longer members are pruned), so it never holds more than the
//! membership does. A peer can lie about `t1`: that only skews its own
//! entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::time::Instant;

/// A clock probe on the wire: a request (`t1 = None`, from the initiator)
/// or its echo (`t1 = Some`, from the responder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockProbe {
    /// The sync session it rides with.
    pub session: u32,
    /// The initiator's physical time when it sent the probe, Unix µs.
    pub t0: u64,
    /// The responder's physical time when it answered, Unix µs.
    pub t1: Option<u64>,
}

/// One peer's measured clock offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skew {
    /// How far the peer's clock is ahead of this node's (negative: behind),
    /// in microseconds.
    pub offset_micros: i64,
    /// Round trip of the measuring exchange, in microseconds: the offset is
    /// good to within half of it.
    pub rtt_micros: u64,
    /// When the sample was taken (the node's monotonic time).
    pub at: Instant,
}

impl Skew {
    /// The sample of an exchange sent at `t0`, answered at `t1` (peer
    /// clock) and received at `t2`; `None` if the local clock went back
    /// during the exchange (`t2 < t0`), which makes the sample meaningless.
    pub fn measure(t0: u64, t1: u64, t2: u64, at: Instant) -> Option<Skew> {
        let rtt = t2.checked_sub(t0)?;
        let mid = i128::from(t0) + i128::from(rtt / 2);
        let offset = (i128::from(t1) - mid).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        Some(Skew {
            offset_micros: offset as i64,
            rtt_micros: rtt,
            at,
        })
    }

    /// The offset in seconds.
    pub fn offset_secs(&self) -> f64 {
        self.offset_micros as f64 / 1e6
    }
}

/// Remote records refused because their timestamp was further ahead of
/// this node's clock than `kv.max_drift` (see [`crate::Event::ClockRefused`]):
/// the last one, and how many since the previous report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockRefusal {
    /// The node whose clock stamped the last refused record.
    pub writer: Arc<str>,
    /// Its key.
    pub key: String,
    /// How far ahead of this node's clock its stamp was, in microseconds.
    pub ahead_micros: u64,
    /// The address it came from (the writer, or a peer relaying it).
    pub peer: Option<std::net::SocketAddr>,
    /// The writer's measured clock offset, if this node has a sample.
    pub writer_offset: Option<Skew>,
    /// Records refused as too far ahead since the previous report.
    pub count: u64,
}

/// The latest [`Skew`] sample per peer.
#[derive(Clone, Debug, Default)]
pub struct SkewTable {
    peers: BTreeMap<Arc<str>, Skew>,
}

impl SkewTable {
    /// Record a sample for `peer`, replacing the previous one.
    pub fn record(&mut self, peer: Arc<str>, skew: Skew) {
        self.peers.insert(peer, skew);
    }

    /// Keep only the peers `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.peers.retain(|k, _| keep(k));
    }

    /// The sample of `peer`, if any.
    pub fn get(&self, peer: &str) -> Option<Skew> {
        self.peers.get(peer).copied()
    }

    /// Every peer's sample, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Skew)> + '_ {
        self.peers.iter().map(|(k, v)| (&**k, *v))
    }

    /// Peers with a sample.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer has a sample.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_from_a_synthetic_exchange() {
        // The peer is 5 s ahead; each leg takes 10 ms.
        let (t0, leg, ahead) = (1_000_000_000u64, 10_000u64, 5_000_000u64);
        let t1 = t0 + leg + ahead;
        let t2 = t0 + 2 * leg;
        let s = Skew::measure(t0, t1, t2, Instant::ZERO).unwrap();
        assert_eq!(s.offset_micros, 5_000_000);
        assert_eq!(s.rtt_micros, 20_000);
        assert_eq!(s.offset_secs(), 5.0);
        // Behind by 3 s.
        let s = Skew::measure(t0, t0 + leg - 3_000_000, t2, Instant::ZERO).unwrap();
        assert_eq!(s.offset_micros, -3_000_000);
    }

    #[test]
    fn local_clock_going_back_discards_the_sample() {
        assert_eq!(Skew::measure(100, 50, 99, Instant::ZERO), None);
    }

    #[test]
    fn forged_extremes_saturate() {
        let s = Skew::measure(0, u64::MAX, 0, Instant::ZERO).unwrap();
        assert_eq!(s.offset_micros, i64::MAX);
        let s = Skew::measure(u64::MAX - 1, 0, u64::MAX, Instant::ZERO).unwrap();
        assert_eq!(s.offset_micros, i64::MIN);
    }

    #[test]
    fn table_keeps_latest_and_prunes() {
        let mut t = SkewTable::default();
        let s = |o| Skew {
            offset_micros: o,
            rtt_micros: 0,
            at: Instant::ZERO,
        };
        t.record("a".into(), s(1));
        t.record("a".into(), s(2));
        t.record("b".into(), s(3));
        assert_eq!(t.get("a").map(|x| x.offset_micros), Some(2));
        t.retain(|n| n != "a");
        assert_eq!(t.len(), 1);
        assert!(t.get("a").is_none());
    }
}
