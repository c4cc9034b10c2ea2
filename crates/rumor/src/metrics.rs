//! Counters of the transport, the stats snapshot, and their export through
//! the [`metrics`] facade.
//!
//! The core counts protocol work in [`rumor_core::Stats`]; the transport
//! counts what happens on the wire (bytes, rejections, streams) in
//! [`TransportStats`]. [`Stats`] bundles both with the awareness score and
//! the members by status; the driver exports it about once a second as
//! `rumor_*` counters and gauges labelled with the node's name (`node`),
//! to whichever recorder the application installed (none: no cost), and
//! the stream tasks record the time and bytes of each TCP request that got
//! its reply in histograms.
//!
//! Every family is declared once in [`FAMILIES`] (name, kind, labels,
//! help), by Prometheus' conventions: base units as suffixes
//! (`_bytes_total`, `_seconds`), `_total` on counters, one family per
//! fact, and the HTTP API's vocabulary (`status` with its names). Call
//! [`describe`] after installing a recorder to give each its help. Any
//! recorder works; note that metrics-exporter-prometheus builds a quanta
//! clock whose TSC calibration can spin for up to 200 ms of CPU at start on
//! a busy machine (the `rumor` agent renders Prometheus text with its own
//! recorder for that reason).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

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
    /// Updates waiting to be gossiped.
    pub broadcast_queue_messages: usize,
    /// Their encoded bytes.
    pub broadcast_queue_bytes: usize,
    /// How long a fresh update should take to reach every live member
    /// (see [`rumor_core::budget`]).
    pub propagation: rumor_core::budget::PropagationBudget,
    /// Peers in the active view (the neighbours) in partial membership;
    /// 0 in full.
    pub active_view: usize,
    /// Peers in the passive view in partial membership; 0 in full.
    pub passive_view: usize,
}

/// What kind of series a metric family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up (its name ends in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted into buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The name Prometheus' `# TYPE` line gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: name, kind, labels and the one-line `# HELP` text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// The metric name, by Prometheus conventions (`rumor_` prefix, base
    /// unit as a suffix, `_total` on counters).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its labels (`le` of histogram buckets not included).
    pub labels: &'static [&'static str],
    /// What one unit of it means.
    pub help: &'static str,
}

/// Every family the library exports, one constant each, and [`FAMILIES`]
/// listing them all: a family exists only by being declared here, with
/// its help text.
macro_rules! families {
    ($($id:ident = $kind:ident $name:literal [$($l:literal),*] $help:literal;)*) => {
        /// The library's metric families, one constant each (see [`FAMILIES`]).
        pub mod family {
            use super::{Family, Kind};
            $(
                #[doc = $help]
                pub const $id: Family = Family {
                    name: $name,
                    kind: Kind::$kind,
                    labels: &[$($l),*],
                    help: $help,
                };
            )*
        }

        /// Every family the library exports (through [`export`] and its
        /// stream tasks), in the order docs/operations.md lists them.
        pub const FAMILIES: &[Family] = &[$(family::$id),*];
    };
}

families! {
    // Membership and health.
    MEMBERS = Gauge "rumor_members" ["node", "status"]
        "Members this node knows, itself included, by status as GET /v1/members names it (alive, suspect, dead, left).";
    AWARENESS = Gauge "rumor_awareness" ["node"]
        "Lifeguard local health score: 0 is healthy; each step lengthens this node's probe timeouts.";
    PEER_CLOCK_OFFSET = Gauge "rumor_peer_clock_offset_seconds" ["node", "peer"]
        "How far each member's clock is ahead of this node's (negative: behind), measured on key-space sync sessions.";
    BROADCAST_QUEUE_MESSAGES = Gauge "rumor_broadcast_queue_messages" ["node"]
        "Updates waiting to be piggybacked on gossip; steady growth is a gossip storm or a queue too small for the churn.";
    BROADCAST_QUEUE_BYTES = Gauge "rumor_broadcast_queue_bytes" ["node"]
        "Encoded bytes of the updates waiting to be piggybacked on gossip.";
    VIEW_PEERS = Gauge "rumor_view_peers" ["node", "type"]
        "Partial membership only (0 in full): peers in the active view (type=active, the neighbours the broadcast tree runs over; fewer than view.active_size for long means too few reachable members) and in the passive view (type=passive, the reserve that replaces failed neighbours).";
    PROBE_RTT = Histogram "rumor_probe_rtt_seconds" ["node"]
        "Round trip of direct probes answered before their timeout, ping sent to ack read.";
    SUSPICION_TO_FAILURE = Histogram "rumor_suspicion_to_failure_seconds" ["node"]
        "How long suspicions that ended in a death lasted here, from when this node raised or heard of the suspicion.";
    DISSEMINATION_LATENCY = Histogram "rumor_dissemination_latency_seconds" ["node"]
        "How long key-space writes made elsewhere took to be applied here, from the writer's timestamp corrected by its measured clock offset (writes made before this node started are not counted).";
    BROADCAST_QUEUE_WAIT = Histogram "rumor_broadcast_queue_wait_seconds" ["node"]
        "How long updates of every kind waited in this node's broadcast queue before their first transmission: the local share of a gossip hop (the network's is about half of rumor_probe_rtt_seconds).";
    PROPAGATION_BUDGET = Gauge "rumor_propagation_budget_seconds" ["node", "estimate"]
        "How long a fresh update should take to reach every live member under the current parameters: estimate=eager is rumor's budget (eager forwarding's wave, hops of half the smoothed probe round trip plus the eager pacing), estimate=wave the same hops in a quiet cluster (no pacing), estimate=classic push gossip on ticks only.";
    QUERY_RESPONSE = Histogram "rumor_query_response_seconds" ["node"]
        "Time from asking a query to each answer (not ack) that reached this node, answers after the asker stopped reading included.";
    SAMPLES_DROPPED = Counter "rumor_samples_dropped_total" ["node"]
        "Timing samples (probe round trips, suspicion lifetimes, dissemination latencies, broadcast queue waits) dropped because more than 4096 of a kind came between two exports.";
    // Probes.
    PROBES = Counter "rumor_probes_total" ["node"]
        "Probes this node started.";
    PROBE_ACKS = Counter "rumor_probe_acks_total" ["node"]
        "Probes answered by an ack, direct, relayed or over TCP.";
    NACKS = Counter "rumor_nacks_total" ["node"]
        "Nacks from relays: the relay heard this node but not the probed member.";
    INDIRECT_PROBES = Counter "rumor_indirect_probes_total" ["node"]
        "Ping-req messages sent to relays for probes whose direct ping went unanswered.";
    PROBE_RETRIES = Counter "rumor_probe_retries_total" ["node"]
        "Second direct pings sent at a probe's timeout (probe_retry).";
    PROBE_STREAM_PINGS = Counter "rumor_probe_stream_pings_total" ["node"]
        "Pings sent over TCP because a probe's direct ping went unanswered (probe_stream_fallback).";
    PROBE_STREAM_FALLBACK_ACKS = Counter "rumor_probe_stream_fallback_acks_total" ["node"]
        "Probes saved by their TCP ping: its ack came back before any other, UDP failed but the stream worked.";
    PROBE_STREAM_PINGS_SKIPPED = Counter "rumor_probe_stream_pings_skipped_total" ["node"]
        "TCP pings of probes the protocol did not send because enough were in flight already.";
    PROBE_STALLS = Counter "rumor_probe_stalls_total" ["node"]
        "Failed probes not turned into a suspicion: the member's host accepted the TCP ping and it had stalled for less than stall_grace.";
    UNREACHABLE = Counter "rumor_unreachable_total" ["node"]
        "ICMP port-unreachable reports answering datagrams this node sent to a member's address.";
    // Failure detection and membership changes.
    SUSPICIONS = Counter "rumor_suspicions_total" ["node"]
        "Members this node began to suspect.";
    REFUTATIONS = Counter "rumor_refutations_total" ["node"]
        "Times this node refuted a suspicion or a death of itself.";
    DEATHS = Counter "rumor_deaths_total" ["node"]
        "Members declared dead (by any member), as this node learned it.";
    LEAVES = Counter "rumor_leaves_total" ["node"]
        "Members that left the cluster, as this node learned it.";
    MEMBERS_PENDING = Counter "rumor_members_pending_total" ["node"]
        "New names heard from a third party and held until they answer a ping themselves.";
    MEMBERS_VERIFIED = Counter "rumor_members_verified_total" ["node"]
        "Pending names admitted as members on their own ack.";
    ADDRESS_CONFLICTS = Counter "rumor_address_conflicts_total" ["node"]
        "Alive claims of a live member's name from another address (ignored).";
    MISDIRECTED_PINGS = Counter "rumor_misdirected_pings_total" ["node"]
        "Pings this node received that were addressed to another name (ignored).";
    INVALID_CLAIMS = Counter "rumor_invalid_claims_total" ["node"]
        "Alive claims with an invalid name or oversized tags (ignored).";
    OFF_TREE_CLAIMS = Counter "rumor_off_tree_claims_total" ["node"]
        "Claims about a third member that reached a partial-membership node in a datagram rather than on the tree or in a pull (dropped).";
    REFUSED = Counter "rumor_refused_total" ["node", "limit"]
        "Items the protocol refused at one of its bounds, by limit (see docs/protocol.md).";
    // Gossip.
    MESSAGES_RECEIVED = Counter "rumor_messages_received_total" ["node", "type"]
        "Protocol messages received, by type, over datagrams and streams.";
    MESSAGES_SENT = Counter "rumor_messages_sent_total" ["node", "type"]
        "Protocol messages sent, by type, over datagrams and streams (piggybacked gossip included).";
    OVERSIZE_BROADCASTS = Counter "rumor_oversize_broadcasts_total" ["node"]
        "Updates too large for any datagram, left to anti-entropy.";
    EVENTS_REPAIRED = Counter "rumor_events_repaired_total" ["node"]
        "User events this node missed as gossip and received through a push-pull.";
    DECODE_ERRORS = Counter "rumor_decode_errors_total" ["node"]
        "Authentic datagrams and stream messages the protocol could not decode (dropped).";
    UNSUPPORTED_VERSION = Counter "rumor_unsupported_version_total" ["node"]
        "Authentic datagrams and stream messages of a protocol version this build does not speak (dropped).";
    UNKNOWN_MESSAGES = Counter "rumor_unknown_messages_total" ["node"]
        "Messages of a type this build does not know, from a newer member (skipped).";
    MEMBERSHIP_REFUSED = Counter "rumor_membership_refused_total" ["node"]
        "Messages refused because their sender runs the other membership mode (full or partial).";
    // Queries.
    QUERIES_REFUSED = Counter "rumor_queries_refused_total" ["node"]
        "Queries from an origin not known alive at the address it names, and answers to relay to an address that is no member's (dropped).";
    QUERY_RESPONSES_RELAYED = Counter "rumor_query_responses_relayed_total" ["node"]
        "Query answers this node relayed to their asker.";
    QUERIES_RESENT = Counter "rumor_queries_resent_total" ["node"]
        "Queries of this node sent once more, straight, to a member that had neither acked nor answered a quarter of the way to the deadline.";
    // Per-node state.
    STATE_APPLIED = Counter "rumor_state_applied_total" ["node"]
        "Per-node state entries received from peers and applied.";
    STATE_STALE = Counter "rumor_state_stale_total" ["node"]
        "Per-node state entries received that were not newer than known (ignored).";
    STATE_INVALID = Counter "rumor_state_invalid_total" ["node"]
        "Per-node state entries received over a limit or malformed (ignored).";
    STATE_DIGESTS = Counter "rumor_state_digests_total" ["node"]
        "Per-node state digests sent in anti-entropy requests and answers.";
    STATE_DIGEST_BYTES = Counter "rumor_state_digest_bytes_total" ["node"]
        "Encoded bytes of the per-node state digests sent.";
    // Key space.
    KV_APPLIED = Counter "rumor_kv_applied_total" ["node"]
        "Key-space records received from peers and applied.";
    KV_STALE = Counter "rumor_kv_stale_total" ["node"]
        "Key-space records received that were not newer than known (ignored).";
    KV_INVALID = Counter "rumor_kv_invalid_total" ["node"]
        "Key-space records received over a limit or malformed (ignored).";
    KV_REFUSED_FUTURE = Counter "rumor_kv_refused_future_total" ["node"]
        "Key-space records refused because their timestamp was further ahead of this node's clock than kv max_drift (offered again later).";
    KV_CLOCK_SAMPLES = Counter "rumor_kv_clock_samples_total" ["node"]
        "Peer clock offsets measured on key-space sync sessions.";
    KV_SYNCS = Counter "rumor_kv_syncs_total" ["node"]
        "Key-space (Merkle) sync sessions this node started.";
    KV_SYNC_FAILURES = Counter "rumor_kv_sync_failures_total" ["node"]
        "Key-space sync sessions abandoned on a refusal or a mismatched answer.";
    KV_SYNC_RESENDS = Counter "rumor_kv_sync_resends_total" ["node"]
        "Key-space sync steps sent once more after a sync interval without an answer.";
    // Datagrams on the wire.
    UDP_RECEIVED_PACKETS = Counter "rumor_udp_received_packets_total" ["node"]
        "Datagrams received on the socket, before any check (those refused are also counted by why).";
    UDP_RECEIVED_BYTES = Counter "rumor_udp_received_bytes_total" ["node"]
        "Bytes of the datagrams received, envelope included.";
    UDP_SENT_PACKETS = Counter "rumor_udp_sent_packets_total" ["node"]
        "Datagrams the socket sent.";
    UDP_SENT_BYTES = Counter "rumor_udp_sent_bytes_total" ["node"]
        "Bytes of the datagrams sent, envelope included.";
    UDP_SEND_ERRORS = Counter "rumor_udp_send_errors_total" ["node"]
        "Datagrams that could not be sealed or that the socket failed to send.";
    // Streams (TCP).
    STREAMS_ACCEPTED = Counter "rumor_streams_accepted_total" ["node"]
        "Incoming TCP connections accepted by the listener, before the stream caps.";
    STREAMS_DIALED = Counter "rumor_streams_dialed_total" ["node"]
        "Outgoing TCP connections attempted.";
    STREAMS_REFUSED = Counter "rumor_streams_refused_total" ["node", "reason"]
        "TCP connections refused or cut off, by reason: per_source, busy (every slot taken; an outgoing request dropped too), unauthenticated, oversize, deadline (either direction), evicted.";
    STREAM_ERRORS = Counter "rumor_stream_errors_total" ["node"]
        "TCP exchanges that failed to connect, read or write.";
    STREAM_PINGS_NO_SLOT = Counter "rumor_stream_pings_no_slot_total" ["node"]
        "TCP pings of probes not sent because fewer than half of the outgoing stream slots were free.";
    STREAM_RECEIVED_BYTES = Counter "rumor_stream_received_bytes_total" ["node"]
        "Bytes read from TCP connections, requests and replies, valid or not.";
    STREAM_PREAUTH_RECEIVED_BYTES = Counter "rumor_stream_preauth_received_bytes_total" ["node"]
        "Bytes read from TCP connections before their header was found authentic (all of those that never were).";
    STREAM_SENT_BYTES = Counter "rumor_stream_sent_bytes_total" ["node"]
        "Bytes written to TCP connections.";
    STREAM_MESSAGES_RECEIVED = Counter "rumor_stream_messages_received_total" ["node"]
        "Authentic stream messages, requests and replies, handed to the protocol.";
    STREAM_MESSAGES_SENT = Counter "rumor_stream_messages_sent_total" ["node"]
        "Stream requests and replies the protocol produced for sending.";
    OVERSIZE_STREAM_MESSAGES = Counter "rumor_oversize_stream_messages_total" ["node"]
        "Stream messages the protocol dropped for being over max_stream_size.";
    COMPRESSION_ERRORS = Counter "rumor_compression_errors_total" ["node"]
        "Stream messages whose compression was corrupt or too large.";
    STREAM_EXCHANGE_DURATION = Histogram "rumor_stream_exchange_duration_seconds" ["node", "type"]
        "Time of this node's TCP requests that got a reply, from dialing to the reply read, by the request's message type (push_pull, pull, state_sync, kv_sync_request, ...).";
    STREAM_EXCHANGE_BYTES = Histogram "rumor_stream_exchange_bytes" ["node", "type"]
        "Bytes on the wire of this node's TCP requests that got a reply, request and reply together, by the request's message type.";
    UNREACHABLE_UNMATCHED = Counter "rumor_unreachable_unmatched_total" ["node"]
        "ICMP port-unreachable reports ignored because they quoted no datagram this node sent to that address lately.";
    // Envelopes (security).
    MALFORMED_PACKETS = Counter "rumor_malformed_packets_total" ["node"]
        "Envelopes too short or of an unknown kind (datagrams and stream headers).";
    AUTH_FAILURES = Counter "rumor_auth_failures_total" ["node"]
        "Envelopes no installed key authenticates, or encrypted ones reaching a node without keys.";
    LABEL_MISMATCHES = Counter "rumor_label_mismatches_total" ["node"]
        "Envelopes from a cluster with another label.";
    UNENCRYPTED_REJECTED = Counter "rumor_unencrypted_rejected_total" ["node"]
        "Plaintext envelopes refused by this encrypting node.";
    PLAINTEXT_ACCEPTED = Counter "rumor_plaintext_accepted_total" ["node"]
        "Plaintext envelopes accepted because the encryption mode is send or accept (a rollout); 0 for a while means no member sends plaintext.";
    STALE_REFUSED = Counter "rumor_stale_refused_total" ["node"]
        "Authenticated envelopes refused because their timestamp was outside the replay window.";
    REPLAYS_REFUSED = Counter "rumor_replays_refused_total" ["node"]
        "Authenticated envelopes refused because their message id was already received inside the replay window.";
}

/// The gauge of each member's measured clock offset, in seconds (labels
/// `node`, `peer`). A recorder that renders on demand should drop the
/// series an export no longer sets (the agent's does): a reaped member's.
pub const PEER_CLOCK_OFFSET: &str = family::PEER_CLOCK_OFFSET.name;

/// Register every family's help text with the installed `metrics`
/// recorder (call once, after installing it).
pub fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
}

/// Export `stats` of node `node` to the installed `metrics` recorder.
///
/// The driver does this every [`Builder::metrics_interval`](crate::Builder::metrics_interval);
/// call it with a fresh [`Node::stats`](crate::Node::stats) before rendering a
/// scrape so that the scrape reads current values, not up to an interval old.
/// Every name comes from [`FAMILIES`] (see [`describe`]).
pub fn export(node: &str, stats: &Stats) {
    use family::*;
    let labels = [("node", node.to_string())];
    let counter = |f: Family, v: u64| {
        debug_assert_eq!(f.kind, Kind::Counter, "{}", f.name);
        metrics::counter!(f.name, &labels).absolute(v);
    };
    let labelled = |f: Family, label: &'static str, value: &str, v: u64| {
        let l = [("node", node.to_string()), (label, value.to_string())];
        metrics::counter!(f.name, &l).absolute(v);
    };
    let m = stats.members;
    for (status, n) in [
        (MemberState::Alive, m.alive),
        (MemberState::Suspect, m.suspect),
        (MemberState::Dead, m.dead),
        (MemberState::Left, m.left),
    ] {
        let l = [
            ("node", node.to_string()),
            ("status", status.as_str().to_string()),
        ];
        metrics::gauge!(MEMBERS.name, &l).set(n as f64);
    }
    metrics::gauge!(AWARENESS.name, &labels).set(stats.awareness as f64);
    metrics::gauge!(BROADCAST_QUEUE_MESSAGES.name, &labels)
        .set(stats.broadcast_queue_messages as f64);
    metrics::gauge!(BROADCAST_QUEUE_BYTES.name, &labels).set(stats.broadcast_queue_bytes as f64);
    for (view, n) in [
        ("active", stats.active_view),
        ("passive", stats.passive_view),
    ] {
        let l = [("node", node.to_string()), ("type", view.to_string())];
        metrics::gauge!(VIEW_PEERS.name, &l).set(n as f64);
    }
    let budget = &stats.propagation;
    for (estimate, d) in [
        ("eager", budget.eager),
        ("wave", budget.wave),
        ("classic", budget.classic),
    ] {
        let l = [
            ("node", node.to_string()),
            ("estimate", estimate.to_string()),
        ];
        metrics::gauge!(PROPAGATION_BUDGET.name, &l).set(d.as_secs_f64());
    }
    for (peer, skew) in &stats.clock_skew {
        let l = [("node", node.to_string()), ("peer", peer.clone())];
        metrics::gauge!(family::PEER_CLOCK_OFFSET.name, &l).set(skew.offset_secs());
    }
    let c = &stats.core;
    for (f, v) in [
        (PROBES, c.probes),
        (PROBE_ACKS, c.probe_acks),
        (NACKS, c.nacks),
        (INDIRECT_PROBES, c.indirect_probes),
        (PROBE_RETRIES, c.probe_retries),
        (PROBE_STREAM_PINGS, c.probe_stream_pings),
        (PROBE_STREAM_FALLBACK_ACKS, c.probe_stream_fallback_acks),
        (PROBE_STREAM_PINGS_SKIPPED, c.probe_stream_pings_skipped),
        (PROBE_STALLS, c.probe_stalls),
        (SAMPLES_DROPPED, c.samples_dropped),
        (UNREACHABLE, c.unreachable),
        (SUSPICIONS, c.suspicions),
        (REFUTATIONS, c.refutations),
        (DEATHS, c.deaths),
        (LEAVES, c.leaves),
        (MEMBERS_PENDING, c.members_pending),
        (MEMBERS_VERIFIED, c.members_verified),
        (ADDRESS_CONFLICTS, c.address_conflicts),
        (MISDIRECTED_PINGS, c.misdirected_pings),
        (INVALID_CLAIMS, c.invalid_claims),
        (OFF_TREE_CLAIMS, c.off_tree_claims),
        (OVERSIZE_BROADCASTS, c.oversize_broadcasts),
        (EVENTS_REPAIRED, c.events_repaired),
        (DECODE_ERRORS, c.decode_errors),
        (UNSUPPORTED_VERSION, c.unsupported_version),
        (UNKNOWN_MESSAGES, c.unknown_messages),
        (MEMBERSHIP_REFUSED, c.membership_refused),
        (QUERIES_REFUSED, c.queries_refused),
        (QUERY_RESPONSES_RELAYED, c.query_responses_relayed),
        (QUERIES_RESENT, c.queries_resent),
        (STATE_APPLIED, c.state_applied),
        (STATE_STALE, c.state_stale),
        (STATE_INVALID, c.state_invalid),
        (STATE_DIGESTS, c.state_digests),
        (STATE_DIGEST_BYTES, c.state_digest_bytes),
        (KV_APPLIED, c.kv_applied),
        (KV_STALE, c.kv_stale),
        (KV_INVALID, c.kv_invalid),
        (KV_REFUSED_FUTURE, c.kv_refused_future),
        (KV_CLOCK_SAMPLES, c.kv_clock_samples),
        (KV_SYNCS, c.kv_syncs),
        (KV_SYNC_FAILURES, c.kv_sync_failures),
        (KV_SYNC_RESENDS, c.kv_sync_resends),
        (STREAM_MESSAGES_RECEIVED, c.streams_in),
        (STREAM_MESSAGES_SENT, c.streams_out),
        (OVERSIZE_STREAM_MESSAGES, c.oversize_streams),
    ] {
        counter(f, v);
    }
    // The core's packets_in/out and bytes_in/out are not exported: they
    // count the datagrams of the wire counters below minus those refused
    // (counted by why) or not sent (send errors), and their bytes without
    // the envelope.
    for limit in rumor_core::limits::Limit::ALL {
        labelled(REFUSED, "limit", limit.name(), c.refused(limit));
    }
    for kind in MessageType::ALL {
        let i = kind as usize - 1;
        labelled(MESSAGES_RECEIVED, "type", kind.as_str(), c.messages_in[i]);
        labelled(MESSAGES_SENT, "type", kind.as_str(), c.messages_out[i]);
    }
    let t = &stats.transport;
    for (f, v) in [
        (UDP_RECEIVED_PACKETS, t.udp_packets_in),
        (UDP_RECEIVED_BYTES, t.udp_bytes_in),
        (UDP_SENT_PACKETS, t.udp_packets_out),
        (UDP_SENT_BYTES, t.udp_bytes_out),
        (UDP_SEND_ERRORS, t.udp_send_errors),
        (STREAMS_ACCEPTED, t.streams_accepted),
        (STREAMS_DIALED, t.streams_dialed),
        (STREAM_ERRORS, t.stream_errors),
        (STREAM_PINGS_NO_SLOT, t.stream_pings_no_slot),
        (STREAM_RECEIVED_BYTES, t.stream_bytes_in),
        (STREAM_PREAUTH_RECEIVED_BYTES, t.stream_preauth_bytes_in),
        (STREAM_SENT_BYTES, t.stream_bytes_out),
        (COMPRESSION_ERRORS, t.compression_errors),
        (UNREACHABLE_UNMATCHED, t.unreachable_unmatched),
        (MALFORMED_PACKETS, t.malformed),
        (AUTH_FAILURES, t.auth_failures),
        (LABEL_MISMATCHES, t.label_mismatches),
        (UNENCRYPTED_REJECTED, t.unencrypted_rejected),
        (PLAINTEXT_ACCEPTED, t.plaintext_accepted),
        (STALE_REFUSED, t.stale_refused),
        (REPLAYS_REFUSED, t.replays_refused),
    ] {
        counter(f, v);
    }
    for (reason, n) in [
        ("per_source", t.streams_refused_per_source),
        ("busy", t.streams_rejected_busy),
        ("unauthenticated", t.streams_unauthenticated),
        ("oversize", t.streams_oversize),
        ("deadline", t.stream_timeouts),
        ("evicted", t.streams_evicted),
    ] {
        labelled(STREAMS_REFUSED, "reason", reason, n);
    }
}

/// Record the timing samples node `node` took since the last export.
pub(crate) fn record_samples(node: &str, samples: &rumor_core::samples::Samples) {
    let l = [("node", node.to_string())];
    let rtt = metrics::histogram!(family::PROBE_RTT.name, &l);
    for d in &samples.probe_rtt {
        rtt.record(d.as_secs_f64());
    }
    let lasted = metrics::histogram!(family::SUSPICION_TO_FAILURE.name, &l);
    for d in &samples.suspicion_to_failure {
        lasted.record(d.as_secs_f64());
    }
    let waited = metrics::histogram!(family::BROADCAST_QUEUE_WAIT.name, &l);
    for d in &samples.broadcast_wait {
        waited.record(d.as_secs_f64());
    }
    let arrived = metrics::histogram!(family::DISSEMINATION_LATENCY.name, &l);
    for d in &samples.dissemination {
        arrived.record(d.as_secs_f64());
    }
}

/// Record an answer to a query node `node` asked, `took` after asking.
pub(crate) fn record_query_response(node: &str, took: Duration) {
    let l = [("node", node.to_string())];
    metrics::histogram!(family::QUERY_RESPONSE.name, &l).record(took.as_secs_f64());
}

/// Record one TCP request of node `node` that got its reply: `kind` is the
/// request's message type, `took` the time from dialing to the reply read,
/// `bytes` the request's and the reply's bytes on the wire.
pub(crate) fn record_exchange(node: &str, kind: &'static str, took: Duration, bytes: u64) {
    let l = [("node", node.to_string()), ("type", kind.to_string())];
    metrics::histogram!(family::STREAM_EXCHANGE_DURATION.name, &l).record(took.as_secs_f64());
    metrics::histogram!(family::STREAM_EXCHANGE_BYTES.name, &l).record(bytes as f64);
}

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
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            // Only the names: which gauge families an export sets.
            self.0
                .lock()
                .expect("lock")
                .insert(key.name().to_string(), 0);
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
            "evicted",
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("rumor_streams_refused_total{{reason={reason}}}");
            assert_eq!(seen.get(&key), Some(&(i as u64 + 1)), "{key}");
        }
        assert_eq!(
            seen.get("rumor_stream_preauth_received_bytes_total"),
            Some(&7)
        );
        assert_eq!(seen.get("rumor_unreachable_unmatched_total"), Some(&8));
    }

    #[test]
    fn export_sets_every_declared_family_and_no_other() {
        let mut stats = Stats::default();
        let skew = rumor_core::kv::Skew::measure(0, 5, 10, rumor_core::Instant::ZERO);
        stats.clock_skew.insert("p".into(), skew.expect("a sample"));
        let rec = Rec::default();
        metrics::with_local_recorder(&rec, || export("n", &stats));
        let seen: std::collections::BTreeSet<String> = rec
            .0
            .lock()
            .expect("lock")
            .keys()
            .map(|k| k.split('{').next().unwrap_or(k).to_string())
            .collect();
        let declared: std::collections::BTreeSet<String> = FAMILIES
            .iter()
            .filter(|f| f.kind != Kind::Histogram)
            .map(|f| f.name.to_string())
            .collect();
        assert_eq!(seen, declared);
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len(), "a name declared twice");
    }
}
