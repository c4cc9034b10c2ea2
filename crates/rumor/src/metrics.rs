//! Counters of the transport, the stats snapshot, and their export through
//! the [`metrics`] facade.
//!
//! The core counts protocol work in [`rumor_core::Stats`]; the transport
//! counts what happens on the wire (bytes, rejections, streams) in
//! [`TransportStats`]. [`Stats`] bundles both with the awareness score and
//! the members by state; the driver exports it about once a second as
//! `rumor_*` counters and gauges labelled with the node's name, to
//! whichever recorder the application installed (none: no cost). Any
//! recorder works; note that metrics-exporter-prometheus builds a quanta
//! clock whose TSC calibration can spin for up to 200 ms of CPU at start on
//! a busy machine (the `rumor` agent renders Prometheus text with its own
//! recorder for that reason).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rumor_core::message::MessageType;
use rumor_core::MemberState;

/// Transport counters, shared by the driver and its stream tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub udp_packets_in: AtomicU64,
    pub udp_bytes_in: AtomicU64,
    pub udp_packets_out: AtomicU64,
    pub udp_bytes_out: AtomicU64,
    pub udp_send_errors: AtomicU64,
    pub streams_accepted: AtomicU64,
    pub streams_dialed: AtomicU64,
    pub stream_bytes_in: AtomicU64,
    pub stream_bytes_out: AtomicU64,
    pub stream_errors: AtomicU64,
    pub stream_timeouts: AtomicU64,
    pub streams_oversize: AtomicU64,
    pub streams_rejected_busy: AtomicU64,
    pub stream_pings_no_slot: AtomicU64,
    pub streams_refused_per_source: AtomicU64,
    pub streams_unauthenticated: AtomicU64,
    pub streams_evicted: AtomicU64,
    pub stream_preauth_bytes_in: AtomicU64,
    pub unreachable_unmatched: AtomicU64,
    pub malformed: AtomicU64,
    pub auth_failures: AtomicU64,
    pub label_mismatches: AtomicU64,
    pub unencrypted_rejected: AtomicU64,
    pub compression_errors: AtomicU64,
    // Replay protection of encrypted envelopes (crate::replay).
    pub stale_refused: AtomicU64,
    pub replays_refused: AtomicU64,
}

impl Counters {
    /// Add one to `c`.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Add `n` to `c`.
    pub fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Relaxed);
    }

    /// Count an envelope rejection.
    pub fn reject(&self, r: crate::framing::Reject) {
        use crate::framing::Reject;
        Counters::inc(match r {
            Reject::Malformed => &self.malformed,
            Reject::LabelMismatch => &self.label_mismatches,
            Reject::Unencrypted => &self.unencrypted_rejected,
            Reject::AuthFailed => &self.auth_failures,
            Reject::Stale => &self.stale_refused,
            Reject::Replay => &self.replays_refused,
        });
    }

    /// A snapshot.
    pub fn snapshot(&self) -> TransportStats {
        let g = |c: &AtomicU64| c.load(Relaxed);
        TransportStats {
            udp_packets_in: g(&self.udp_packets_in),
            udp_bytes_in: g(&self.udp_bytes_in),
            udp_packets_out: g(&self.udp_packets_out),
            udp_bytes_out: g(&self.udp_bytes_out),
            udp_send_errors: g(&self.udp_send_errors),
            streams_accepted: g(&self.streams_accepted),
            streams_dialed: g(&self.streams_dialed),
            stream_bytes_in: g(&self.stream_bytes_in),
            stream_bytes_out: g(&self.stream_bytes_out),
            stream_errors: g(&self.stream_errors),
            stream_timeouts: g(&self.stream_timeouts),
            streams_oversize: g(&self.streams_oversize),
            streams_rejected_busy: g(&self.streams_rejected_busy),
            stream_pings_no_slot: g(&self.stream_pings_no_slot),
            streams_refused_per_source: g(&self.streams_refused_per_source),
            streams_unauthenticated: g(&self.streams_unauthenticated),
            streams_evicted: g(&self.streams_evicted),
            stream_preauth_bytes_in: g(&self.stream_preauth_bytes_in),
            unreachable_unmatched: g(&self.unreachable_unmatched),
            malformed: g(&self.malformed),
            auth_failures: g(&self.auth_failures),
            label_mismatches: g(&self.label_mismatches),
            unencrypted_rejected: g(&self.unencrypted_rejected),
            compression_errors: g(&self.compression_errors),
            stale_refused: g(&self.stale_refused),
            replays_refused: g(&self.replays_refused),
            plaintext_accepted: 0,
        }
    }
}

/// What the transport did and what it refused, since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams received (before any check).
    pub udp_packets_in: u64,
    /// Bytes of datagrams received.
    pub udp_bytes_in: u64,
    /// Datagrams sent.
    pub udp_packets_out: u64,
    /// Bytes of datagrams sent (envelope included).
    pub udp_bytes_out: u64,
    /// Datagrams the socket failed to send.
    pub udp_send_errors: u64,
    /// Incoming stream connections accepted.
    pub streams_accepted: u64,
    /// Outgoing stream connections attempted.
    pub streams_dialed: u64,
    /// Bytes read from stream connections (both directions' replies and
    /// requests, whether or not they turned out valid).
    pub stream_bytes_in: u64,
    /// Bytes of stream frames sent.
    pub stream_bytes_out: u64,
    /// Streams that failed to connect, read or write.
    pub stream_errors: u64,
    /// Streams cut off at their deadline (one per whole exchange).
    pub stream_timeouts: u64,
    /// Streams cut off for announcing a body over the size limit or a
    /// header over the pre-auth budget.
    pub streams_oversize: u64,
    /// Streams refused because too many were open (incoming, or outgoing
    /// requests dropped).
    pub streams_rejected_busy: u64,
    /// Probe stream pings not sent because fewer than half of the outgoing
    /// stream slots were free (they never take the other half).
    pub stream_pings_no_slot: u64,
    /// Incoming streams refused because their source had the most open it
    /// may have.
    pub streams_refused_per_source: u64,
    /// Incoming streams whose header failed the label or key check (or was
    /// no header), cut off before their body was read.
    pub streams_unauthenticated: u64,
    /// Incoming streams closed, still unauthenticated, to make room for a
    /// new connection when every slot was taken.
    pub streams_evicted: u64,
    /// Bytes read from stream connections before their header was found
    /// authentic (all bytes of the connections that never were).
    pub stream_preauth_bytes_in: u64,
    /// ICMP "port unreachable" reports ignored because they quoted no
    /// datagram this node sent to that address lately (forged, or quoting
    /// too little to check).
    pub unreachable_unmatched: u64,
    /// Envelopes too short or of an unknown kind.
    pub malformed: u64,
    /// Envelopes no installed key authenticates (or encrypted ones reaching
    /// a node without keys).
    pub auth_failures: u64,
    /// Envelopes from a cluster with another label.
    pub label_mismatches: u64,
    /// Plaintext envelopes refused by an encrypting node.
    pub unencrypted_rejected: u64,
    /// Stream messages whose compression was corrupt or too large.
    pub compression_errors: u64,
    /// Authenticated envelopes refused because their timestamp was outside
    /// the replay window (too old, too far ahead, or clocks too far apart).
    pub stale_refused: u64,
    /// Authenticated envelopes refused because their message id was already
    /// received inside the window (replays, network duplicates).
    pub replays_refused: u64,
    /// Plaintext envelopes an encrypted node accepted because its
    /// [`EncryptionMode`](crate::EncryptionMode) was `Send` or `Accept`
    /// (the transition): 0 for a while means no member sends plaintext.
    pub plaintext_accepted: u64,
}

/// Members known to a node, by state (the node itself included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// Alive members.
    pub alive: usize,
    /// Suspected members.
    pub suspect: usize,
    /// Members declared failed, still remembered.
    pub dead: usize,
    /// Members that left, still remembered.
    pub left: usize,
}

impl MemberCounts {
    /// Count `states`.
    pub fn of(states: impl Iterator<Item = MemberState>) -> Self {
        let mut c = MemberCounts::default();
        for s in states {
            match s {
                MemberState::Alive => c.alive += 1,
                MemberState::Suspect => c.suspect += 1,
                MemberState::Dead => c.dead += 1,
                MemberState::Left => c.left += 1,
            }
        }
        c
    }
}

/// Everything a node counts: protocol, transport, health, membership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The protocol's counters.
    pub core: rumor_core::Stats,
    /// The transport's counters.
    pub transport: TransportStats,
    /// The local health score (0 is healthy).
    pub awareness: u32,
    /// Known members by state.
    pub members: MemberCounts,
    /// Each member's clock offset from this node's, as last measured on a
    /// key-space sync session (members only).
    pub clock_skew: std::collections::BTreeMap<String, rumor_core::kv::Skew>,
}

/// Export `stats` of node `node` to the installed `metrics` recorder.
///
/// The driver does this every [`Builder::metrics_interval`](crate::Builder::metrics_interval);
/// call it with a fresh [`Node::stats`](crate::Node::stats) before rendering a
/// scrape so that the scrape reads current values, not up to an interval old.
pub fn export(node: &str, stats: &Stats) {
    let labels = [("node", node.to_string())];
    let counter = |name: &'static str, v: u64| metrics::counter!(name, &labels).absolute(v);
    let c = &stats.core;
    counter("rumor_packets_in_total", c.packets_in);
    counter("rumor_packets_out_total", c.packets_out);
    counter("rumor_bytes_in_total", c.bytes_in);
    counter("rumor_bytes_out_total", c.bytes_out);
    counter("rumor_streams_in_total", c.streams_in);
    counter("rumor_streams_out_total", c.streams_out);
    counter("rumor_decode_errors_total", c.decode_errors);
    counter("rumor_unsupported_version_total", c.unsupported_version);
    counter("rumor_unknown_messages_total", c.unknown_messages);
    counter("rumor_oversize_streams_total", c.oversize_streams);
    counter("rumor_probes_total", c.probes);
    counter("rumor_acks_total", c.probe_acks);
    counter("rumor_nacks_total", c.nacks);
    counter("rumor_indirect_probes_total", c.indirect_probes);
    counter("rumor_probe_retries_total", c.probe_retries);
    counter("rumor_probe_stream_pings_total", c.probe_stream_pings);
    counter(
        "rumor_probe_stream_fallback_acks_total",
        c.probe_stream_fallback_acks,
    );
    counter(
        "rumor_probe_stream_pings_skipped_total",
        c.probe_stream_pings_skipped,
    );
    counter("rumor_probe_stalls_total", c.probe_stalls);
    counter("rumor_unreachable_total", c.unreachable);
    counter("rumor_suspicions_total", c.suspicions);
    counter("rumor_refutations_total", c.refutations);
    counter("rumor_deaths_total", c.deaths);
    counter("rumor_leaves_total", c.leaves);
    counter("rumor_events_repaired_total", c.events_repaired);
    counter("rumor_address_conflicts_total", c.address_conflicts);
    counter("rumor_misdirected_pings_total", c.misdirected_pings);
    counter("rumor_invalid_claims_total", c.invalid_claims);
    counter("rumor_oversize_broadcasts_total", c.oversize_broadcasts);
    counter("rumor_state_applied_total", c.state_applied);
    counter("rumor_state_stale_total", c.state_stale);
    counter("rumor_state_invalid_total", c.state_invalid);
    counter("rumor_kv_applied_total", c.kv_applied);
    counter("rumor_kv_stale_total", c.kv_stale);
    counter("rumor_kv_invalid_total", c.kv_invalid);
    counter("rumor_kv_refused_future_total", c.kv_refused_future);
    counter("rumor_kv_clock_samples_total", c.kv_clock_samples);
    counter("rumor_kv_syncs_total", c.kv_syncs);
    counter("rumor_kv_sync_failures_total", c.kv_sync_failures);
    counter("rumor_kv_sync_resends_total", c.kv_sync_resends);
    counter("rumor_members_pending_total", c.members_pending);
    counter("rumor_members_verified_total", c.members_verified);
    for limit in rumor_core::limits::Limit::ALL {
        let l = [
            ("node", node.to_string()),
            ("limit", limit.name().to_string()),
        ];
        metrics::counter!("rumor_refused_total", &l).absolute(c.refused(limit));
    }
    for kind in MessageType::ALL {
        let i = kind as usize - 1;
        let l = [
            ("node", node.to_string()),
            ("type", kind.as_str().to_string()),
        ];
        metrics::counter!("rumor_messages_in_total", &l).absolute(c.messages_in[i]);
        metrics::counter!("rumor_messages_out_total", &l).absolute(c.messages_out[i]);
    }
    let t = &stats.transport;
    counter("rumor_udp_packets_in_total", t.udp_packets_in);
    counter("rumor_udp_bytes_in_total", t.udp_bytes_in);
    counter("rumor_udp_packets_out_total", t.udp_packets_out);
    counter("rumor_udp_bytes_out_total", t.udp_bytes_out);
    counter("rumor_udp_send_errors_total", t.udp_send_errors);
    counter("rumor_streams_accepted_total", t.streams_accepted);
    counter("rumor_streams_dialed_total", t.streams_dialed);
    counter("rumor_stream_bytes_in_total", t.stream_bytes_in);
    counter("rumor_stream_bytes_out_total", t.stream_bytes_out);
    counter("rumor_stream_errors_total", t.stream_errors);
    counter("rumor_stream_timeouts_total", t.stream_timeouts);
    counter("rumor_streams_oversize_total", t.streams_oversize);
    counter("rumor_streams_rejected_busy_total", t.streams_rejected_busy);
    counter("rumor_stream_pings_no_slot_total", t.stream_pings_no_slot);
    counter(
        "rumor_stream_preauth_bytes_in_total",
        t.stream_preauth_bytes_in,
    );
    counter("rumor_unreachable_unmatched_total", t.unreachable_unmatched);
    for (reason, n) in [
        ("per_source", t.streams_refused_per_source),
        ("busy", t.streams_rejected_busy),
        ("unauthenticated", t.streams_unauthenticated),
        ("oversize", t.streams_oversize),
        ("deadline", t.stream_timeouts),
        ("evicted", t.streams_evicted),
    ] {
        let l = [("node", node.to_string()), ("reason", reason.to_string())];
        metrics::counter!("rumor_streams_refused_total", &l).absolute(n);
    }
    counter("rumor_malformed_packets_total", t.malformed);
    counter("rumor_auth_failures_total", t.auth_failures);
    counter("rumor_label_mismatches_total", t.label_mismatches);
    counter("rumor_unencrypted_rejected_total", t.unencrypted_rejected);
    counter("rumor_compression_errors_total", t.compression_errors);
    counter("rumor_stale_refused_total", t.stale_refused);
    counter("rumor_replays_refused_total", t.replays_refused);
    counter("rumor_plaintext_accepted_total", t.plaintext_accepted);
    metrics::gauge!("rumor_awareness", &labels).set(stats.awareness as f64);
    let m = stats.members;
    for (state, n) in [
        ("alive", m.alive),
        ("suspect", m.suspect),
        ("dead", m.dead),
        ("left", m.left),
    ] {
        let l = [("node", node.to_string()), ("state", state.to_string())];
        metrics::gauge!("rumor_members", &l).set(n as f64);
    }
    for (peer, skew) in &stats.clock_skew {
        let l = [("node", node.to_string()), ("peer", peer.clone())];
        metrics::gauge!(PEER_CLOCK_OFFSET, &l).set(skew.offset_secs());
    }
}

/// The gauge of each member's measured clock offset, in seconds (labels
/// `node`, `peer`). A recorder that renders on demand should drop the
/// series an export no longer sets (the agent's does): a reaped member's.
pub const PEER_CLOCK_OFFSET: &str = "rumor_peer_clock_offset_seconds";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    /// Counter values by name, as a recorder saw them.
    type Seen = Arc<Mutex<BTreeMap<String, u64>>>;

    struct Handle {
        name: String,
        seen: Seen,
    }

    impl CounterFn for Handle {
        fn increment(&self, v: u64) {
            *self
                .seen
                .lock()
                .expect("lock")
                .entry(self.name.clone())
                .or_default() += v;
        }

        fn absolute(&self, v: u64) {
            self.seen.lock().expect("lock").insert(self.name.clone(), v);
        }
    }

    #[derive(Default)]
    struct Rec(Seen);

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            // Labels other than the node's are part of the name here.
            let mut name = key.name().to_string();
            for l in key.labels().filter(|l| l.key() != "node") {
                name += &format!("{{{}={}}}", l.key(), l.value());
            }
            Counter::from_arc(Arc::new(Handle {
                name,
                seen: self.0.clone(),
            }))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn state_kv_and_claim_counters_are_exported() {
        let mut stats = Stats::default();
        let c = &mut stats.core;
        (c.state_applied, c.state_stale, c.state_invalid) = (1, 2, 3);
        (c.kv_applied, c.kv_stale, c.kv_invalid) = (4, 5, 6);
        (c.kv_syncs, c.kv_sync_failures) = (7, 8);
        (c.invalid_claims, c.oversize_broadcasts) = (9, 10);
        (c.kv_refused_future, c.kv_clock_samples) = (11, 12);
        (c.kv_sync_resends, c.probe_stalls) = (13, 14);
        let rec = Rec::default();
        metrics::with_local_recorder(&rec, || export("n", &stats));
        let seen = rec.0.lock().expect("lock");
        for (i, name) in [
            "state_applied",
            "state_stale",
            "state_invalid",
            "kv_applied",
            "kv_stale",
            "kv_invalid",
            "kv_syncs",
            "kv_sync_failures",
            "invalid_claims",
            "oversize_broadcasts",
            "kv_refused_future",
            "kv_clock_samples",
            "kv_sync_resends",
            "probe_stalls",
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("rumor_{name}_total");
            assert_eq!(seen.get(&key), Some(&(i as u64 + 1)), "{key}");
        }
    }

    #[test]
    fn replay_refusals_are_counted_and_exported() {
        use crate::framing::Reject;
        let counters = Counters::default();
        counters.reject(Reject::Stale);
        counters.reject(Reject::Replay);
        counters.reject(Reject::Replay);
        let stats = Stats {
            transport: counters.snapshot(),
            ..Stats::default()
        };
        assert_eq!(stats.transport.stale_refused, 1);
        assert_eq!(stats.transport.replays_refused, 2);
        assert_eq!(stats.transport.auth_failures, 0);
        let rec = Rec::default();
        metrics::with_local_recorder(&rec, || export("n", &stats));
        let seen = rec.0.lock().expect("lock");
        assert_eq!(seen.get("rumor_stale_refused_total"), Some(&1));
        assert_eq!(seen.get("rumor_replays_refused_total"), Some(&2));
    }

    #[test]
    fn plaintext_accepted_is_exported() {
        let mut stats = Stats::default();
        stats.transport.plaintext_accepted = 7;
        let rec = Rec::default();
        metrics::with_local_recorder(&rec, || export("n", &stats));
        let seen = rec.0.lock().expect("lock");
        assert_eq!(seen.get("rumor_plaintext_accepted_total"), Some(&7));
    }

    #[test]
    fn stream_refusals_are_exported_by_reason() {
        let mut stats = Stats::default();
        let t = &mut stats.transport;
        (t.streams_refused_per_source, t.streams_rejected_busy) = (1, 2);
        (t.streams_unauthenticated, t.streams_oversize) = (3, 4);
        (t.stream_timeouts, t.streams_evicted) = (5, 6);
        (t.stream_preauth_bytes_in, t.unreachable_unmatched) = (7, 8);
        let rec = Rec::default();
        metrics::with_local_recorder(&rec, || export("n", &stats));
        let seen = rec.0.lock().expect("lock");
        for (i, reason) in [
            "per_source",
            "busy",
            "unauthenticated",
            "oversize",
            "deadline",
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("rumor_streams_refused_total{{reason={reason}}}");
            assert_eq!(seen.get(&key), Some(&(i as u64 + 1)), "{key}");
        }
        assert_eq!(seen.get("rumor_stream_preauth_bytes_in_total"), Some(&7));
        assert_eq!(seen.get("rumor_unreachable_unmatched_total"), Some(&8));
    }
}
