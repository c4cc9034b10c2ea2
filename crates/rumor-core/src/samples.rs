//! Timing samples for histograms: probe round trips, how long suspicions
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
}

impl Samples {
    /// A direct probe's round trip; false if it was dropped.
    pub(crate) fn add_probe_rtt(&mut self, d: Duration) -> bool {
        keep(&mut self.probe_rtt, d)
    }

    /// A suspicion that ended in the member's death; false if dropped.
    pub(crate) fn add_suspicion_to_failure(&mut self, d: Duration) -> bool {
        keep(&mut self.suspicion_to_failure, d)
    }

    /// A remote write's dissemination latency; false if dropped.
    pub(crate) fn add_dissemination(&mut self, d: Duration) -> bool {
        keep(&mut self.dissemination, d)
    }
}

fn keep(kind: &mut Vec<Duration>, d: Duration) -> bool {
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
        let mut s = Samples::default();
        let kept = (0..MAX_SAMPLES + 3)
            .filter(|_| s.add_probe_rtt(Duration::from_millis(1)))
            .count();
        assert_eq!((kept, s.probe_rtt.len()), (MAX_SAMPLES, MAX_SAMPLES));
        assert!(s.add_suspicion_to_failure(Duration::from_secs(1)));
    }
}
