//! Timing samples for histograms, taken only once a driver turned them on
//! with [`crate::Node::set_sampling`] (a simulator of thousands of nodes
//! that never drains them keeps none): probe round trips, how long suspicions
//! lasted before their member was declared dead, and how long key-space
//! updates took to arrive. The core only
//! collects them (it has no metrics); the driver drains them, about once a
//! second, into its histograms. Past [`MAX_SAMPLES`] of a kind between two
//! drains, samples are dropped and counted in
//! [`crate::Stats::samples_dropped`].

use std::time::Duration;

/// Samples of one kind kept between two drains; more are counted and dropped.
pub const MAX_SAMPLES: usize = 4096;

/// What the node measured since the last [`crate::Node::take_samples`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Samples {
    /// Direct probes answered before their timeout: ping sent to ack read.
    pub probe_rtt: Vec<Duration>,
    /// Suspicions that ended in the member's death here (by this node's
    /// timeout or anyone's word): from when this node raised or heard of
    /// the suspicion to the death.
    pub suspicion_to_failure: Vec<Duration>,
    /// Remote key-space writes applied here (by rumor or anti-entropy):
    /// from the writer's timestamp, corrected by its measured clock offset,
    /// to the apply. Only writes made after this node started count; the
    /// others are catch-up. Key-space records are the only updates that
    /// carry their origin time (membership changes, user events and
    /// per-node state do not), and small ones ride the same gossip as
    /// those, so their latency stands for the dissemination path.
    pub dissemination: Vec<Duration>,
    /// Updates sent for the first time from this node's broadcast queue:
    /// how long each waited there (for a tick, or the eager pacing). The
    /// local share of a gossip hop, for every kind of update; the network's
    /// share is about half a probe round trip.
    pub broadcast_wait: Vec<Duration>,
    /// Whether samples are taken at all.
    enabled: bool,
}

impl Samples {
    /// Empty, taking samples when `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        Samples {
            enabled,
            ..Samples::default()
        }
    }

    /// Whether samples are taken.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// A direct probe's round trip; false if it was dropped.
    pub(crate) fn add_probe_rtt(&mut self, d: Duration) -> bool {
        keep(self.enabled, &mut self.probe_rtt, d)
    }

    /// A suspicion that ended in the member's death; false if dropped.
    pub(crate) fn add_suspicion_to_failure(&mut self, d: Duration) -> bool {
        keep(self.enabled, &mut self.suspicion_to_failure, d)
    }

    /// An update's wait in the broadcast queue; false if dropped.
    pub(crate) fn add_broadcast_wait(&mut self, d: Duration) -> bool {
        keep(self.enabled, &mut self.broadcast_wait, d)
    }

    /// A remote write's dissemination latency; false if dropped.
    pub(crate) fn add_dissemination(&mut self, d: Duration) -> bool {
        keep(self.enabled, &mut self.dissemination, d)
    }
}

/// Keep `d` in `kind` if sampling is `enabled` and there is room; false
/// only if it was dropped for want of room.
fn keep(enabled: bool, kind: &mut Vec<Duration>, d: Duration) -> bool {
    if !enabled {
        return true;
    }
    let room = kind.len() < MAX_SAMPLES;
    if room {
        kind.push(d);
    }
    room
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_and_says_so() {
        let mut s = Samples::new(true);
        let kept = (0..MAX_SAMPLES + 3)
            .filter(|_| s.add_probe_rtt(Duration::from_millis(1)))
            .count();
        assert_eq!((kept, s.probe_rtt.len()), (MAX_SAMPLES, MAX_SAMPLES));
        assert!(s.add_suspicion_to_failure(Duration::from_secs(1)));
    }

    #[test]
    fn nothing_is_kept_until_sampling_is_on() {
        let mut s = Samples::default();
        assert!(s.add_probe_rtt(Duration::from_millis(1)), "not a drop");
        assert!(s.probe_rtt.is_empty());
    }
}
