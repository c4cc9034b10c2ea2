//! Counters the core keeps so its driver can export them as metrics.

use crate::limits::Limit;
use crate::message::MessageType;

/// Monotonic counters of what the node did and what it dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub packets_in: u64,
    /// Datagrams produced.
    pub packets_out: u64,
    /// Bytes of datagrams received.
    pub bytes_in: u64,
    /// Bytes of datagrams produced.
    pub bytes_out: u64,
    /// Stream messages received.
    pub streams_in: u64,
    /// Stream messages produced.
    pub streams_out: u64,
    /// Messages received, by [`MessageType`] code - 1.
    pub messages_in: [u64; MessageType::ALL.len()],
    /// Messages sent, by [`MessageType`] code - 1 (piggybacked ones included).
    pub messages_out: [u64; MessageType::ALL.len()],
    /// Packets or streams that could not be decoded (dropped).
    pub decode_errors: u64,
    /// Packets or streams of a protocol version this build does not speak (dropped).
    pub unsupported_version: u64,
    /// Messages of unknown type (skipped).
    pub unknown_messages: u64,
    /// Messages refused because their sender runs the other membership
    /// mode (full or partial; see [`crate::Membership`]).
    pub membership_refused: u64,
    /// Stream messages over `max_stream_size` (dropped).
    pub oversize_streams: u64,
    /// Probes started.
    pub probes: u64,
    /// Probes that got an ack.
    pub probe_acks: u64,
    /// Nacks received from relays.
    pub nacks: u64,
    /// Ping-reqs sent to relays.
    pub indirect_probes: u64,
    /// Second direct pings sent at a probe's timeout
    /// ([`crate::Config::probe_retry`]).
    pub probe_retries: u64,
    /// Pings sent over a stream because a probe's direct ping went
    /// unanswered ([`crate::Config::probe_stream_fallback`]).
    pub probe_stream_pings: u64,
    /// Probes saved by the stream ping: its ack came back and nothing else
    /// had acked the probe yet (the datagrams failed but the stream worked).
    pub probe_stream_fallback_acks: u64,
    /// Stream pings not sent because enough were in flight already.
    pub probe_stream_pings_skipped: u64,
    /// Failed probes not turned into a suspicion: the target's host was up
    /// and it had stalled for less than [`crate::Config::stall_grace`].
    pub probe_stalls: u64,
    /// Timing samples dropped because [`crate::samples::MAX_SAMPLES`] of
    /// their kind were waiting for the driver.
    pub samples_dropped: u64,
    /// Reports that a datagram to a member's address came back "port
    /// unreachable" ([`crate::Node::handle_unreachable`]).
    pub unreachable: u64,
    /// Members this node began to suspect.
    pub suspicions: u64,
    /// Times this node refuted a suspicion or death of itself.
    pub refutations: u64,
    /// Members declared dead (by anyone) as seen here.
    pub deaths: u64,
    /// User events this node missed as rumors and got from a push-pull.
    pub events_repaired: u64,
    /// Members that left, as seen here.
    pub leaves: u64,
    /// Alive claims of a live name from a different address (ignored).
    pub address_conflicts: u64,
    /// Pings addressed to another name (ignored).
    pub misdirected_pings: u64,
    /// Alive claims with an invalid name or oversized tags (ignored).
    pub invalid_claims: u64,
    /// Claims about a third member that reached a partial-membership node
    /// in a datagram rather than on the tree or in a pull (dropped).
    pub off_tree_claims: u64,
    /// Updates too large for any packet, left to anti-entropy.
    pub oversize_broadcasts: u64,
    /// Queries from an origin not known alive at the address they name,
    /// and answers to relay to an address that is no member's (dropped).
    pub queries_refused: u64,
    /// Query answers this node relayed to their asker.
    pub query_responses_relayed: u64,
    /// Queries of this node sent once more, straight, to a member that had
    /// neither acked nor answered a quarter of the way to the deadline.
    pub queries_resent: u64,
    /// Per-node state entries applied from peers.
    pub state_applied: u64,
    /// Per-node state entries not newer than known (ignored).
    pub state_stale: u64,
    /// Per-node state entries over a limit or malformed (ignored).
    pub state_invalid: u64,
    /// Per-node state digests sent (in anti-entropy requests and answers).
    pub state_digests: u64,
    /// Encoded bytes of those digests.
    pub state_digest_bytes: u64,
    /// Key-space records applied from peers.
    pub kv_applied: u64,
    /// Key-space records not newer than known (ignored).
    pub kv_stale: u64,
    /// Key-space records over a limit or malformed (ignored).
    pub kv_invalid: u64,
    /// Key-space records refused because their timestamp was further ahead
    /// of this node's clock than `kv.max_drift` (not counted in
    /// `kv_invalid`; anti-entropy offers them again later).
    pub kv_refused_future: u64,
    /// Peer clock offsets measured on Merkle sync sessions.
    pub kv_clock_samples: u64,
    /// Merkle sync sessions started.
    pub kv_syncs: u64,
    /// Merkle sync sessions abandoned on a refusal or a mismatched answer.
    pub kv_sync_failures: u64,
    /// Steps of Merkle sync sessions sent once more, unanswered after a
    /// sync interval (a datagram lost either way).
    pub kv_sync_resends: u64,
    /// New names heard from a third party and held pending their own ack
    /// (see [`crate::admission`]).
    pub members_pending: u64,
    /// Pending names admitted on their ack.
    pub members_verified: u64,
    /// Refusals by the bounds of [`crate::limits`], indexed by
    /// [`Limit::index`] (see [`Stats::refused`]).
    pub refused: [u64; Limit::ALL.len()],
}

impl Stats {
    pub(crate) fn count_in(&mut self, kind: MessageType) {
        self.messages_in[kind as usize - 1] += 1;
    }

    /// Refusals by `limit` so far.
    pub fn refused(&self, limit: Limit) -> u64 {
        self.refused[limit.index()]
    }

    /// Count one refusal by `limit`.
    pub(crate) fn count_refusal(&mut self, limit: Limit) {
        self.refused[limit.index()] += 1;
        if limit == Limit::NameHeld {
            self.address_conflicts += 1;
        }
    }

    pub(crate) fn count_out(&mut self, kind: MessageType) {
        self.messages_out[kind as usize - 1] += 1;
    }
}
