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
    /// Updates too large for any packet, left to anti-entropy.
    pub oversize_broadcasts: u64,
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
    /// Merkle sync sessions started.
    pub kv_syncs: u64,
    /// Merkle sync sessions abandoned on a refusal or a mismatched answer.
    pub kv_sync_failures: u64,
    /// Claims whose counter (incarnation, state version, epoch) jumped
    /// implausibly far ahead of what is known (ignored; see [`crate::limits`]).
    pub implausible_counters: u64,
    /// New members refused because `limits.max_members` are held.
    pub members_refused: u64,
    /// New names heard from a third party and held pending their own ack.
    pub members_pending: u64,
    /// Pending names admitted on their ack.
    pub members_verified: u64,
    /// New names refused because the pending table (or the sender's share
    /// of it) was full.
    pub admissions_refused: u64,
    /// Queued broadcasts dropped because `limits.max_broadcasts` were queued.
    pub broadcasts_dropped: u64,
    /// Per-node state entries refused: their owner is not a member, or the
    /// owner's key or byte quota is full.
    pub state_refused: u64,
    /// Key-space writes refused because a key-space quota is full.
    pub kv_refused: u64,
    /// Aggregation transfers refused: non-finite or overflowing values.
    pub aggregate_invalid: u64,
}

impl Stats {
    pub(crate) fn count_in(&mut self, kind: MessageType) {
        self.messages_in[kind as usize - 1] += 1;
    }

    /// Count one refusal by `limit` in its counter.
    pub(crate) fn count_refusal(&mut self, limit: Limit) {
        let counter = match limit {
            Limit::Members => &mut self.members_refused,
            Limit::PendingMembers => &mut self.admissions_refused,
            Limit::Broadcasts => &mut self.broadcasts_dropped,
            Limit::State => &mut self.state_refused,
            Limit::Kv => &mut self.kv_refused,
            Limit::Counter => &mut self.implausible_counters,
            Limit::Aggregate => &mut self.aggregate_invalid,
            Limit::NameHeld => &mut self.address_conflicts,
        };
        *counter += 1;
    }

    pub(crate) fn count_out(&mut self, kind: MessageType) {
        self.messages_out[kind as usize - 1] += 1;
    }
}
