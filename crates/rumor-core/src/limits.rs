//! Bounds on everything a peer can make a node hold, and the rules for
//! counters that arrive from the network.
//!
//! Two kinds of defence live here:
//! - [`Limits`]: how many members, pending admissions, state keys and
//!   bytes, key-space records and queued broadcasts a node keeps. Every
//!   refusal is counted in [`crate::Stats`]; the driver logs and exports
//!   them.
//! - [`plausible`] and the `*_JUMP` constants: a counter read off the wire
//!   (an incarnation, a state version, an aggregation epoch) may move ahead
//!   of what this node knows by at most a bounded step. Counters are `u64`,
//!   so a forger who wants to exhaust one must land `2^64 / JUMP` forged
//!   messages in sequence, each accepted by the last: with the steps below
//!   that is at least 2^32 messages. Until then the real owner can always
//!   outrank whatever was forged (a member refutes a forged death at the
//!   forged incarnation + 1), so a forged maximum cannot make a live member
//!   permanently dead or freeze its state. Lamport clocks are clamped
//!   instead ([`LAMPORT_CEILING`]): nothing needs to outrank them.

/// Largest step an incarnation claim may take above the one known for
/// that member (a member's own refutations and tag changes move it by one;
/// 2^20 leaves room for a member that changed tags a million times while
/// this node was partitioned away). A claim about this node further ahead
/// is ignored rather than refuted.
pub const INCARNATION_JUMP: u64 = 1 << 20;

/// Largest step a per-node state version may take above the highest
/// version known for its owner (an owner writes one version per change).
pub const STATE_VERSION_JUMP: u64 = 1 << 32;

/// Largest step an aggregation epoch may take above the current one
/// (epochs advance once per `aggregate_epoch`, 30 s on a LAN: 2^32 of
/// them take four thousand years).
pub const EPOCH_JUMP: u64 = 1 << 32;

/// A user event's Lamport time advances this node's clock only up to this
/// value: an event stamped beyond it is still delivered once, but the clock
/// (and so the next local event) never gets near `u64::MAX`.
pub const LAMPORT_CEILING: u64 = 1 << 62;

/// Whether `claimed` is within `jump` of `known`: not an absurd step ahead.
pub fn plausible(known: u64, claimed: u64, jump: u64) -> bool {
    claimed <= known.saturating_add(jump)
}

/// A bound that refused something a peer sent; reported (at most once a
/// second per kind, with how many were refused since the last report) as
/// [`crate::Event::Refused`] and counted in [`crate::Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_members`]: a new member was refused.
    Members,
    /// [`Limits::max_pending_members`] or [`Limits::max_pending_per_sender`]:
    /// a new name could not wait for its ack.
    PendingMembers,
    /// [`Limits::max_broadcasts`]: a queued update was dropped.
    Broadcasts,
    /// Per-node state: the owner is not a member, or its quota is full.
    State,
    /// [`Limits::max_kv_keys`] or [`Limits::max_kv_bytes`].
    Kv,
    /// A counter jumped implausibly far ahead (see [`plausible`]).
    Counter,
    /// An aggregation transfer with non-finite or overflowing values.
    Aggregate,
    /// An alive claim for a live member's name from another address.
    NameHeld,
    /// A query could not be remembered or asked: too many at once (see
    /// [`crate::query`]).
    Query,
}

impl Limit {
    /// Every kind, in a fixed order.
    pub const ALL: [Limit; 9] = [
        Limit::Members,
        Limit::PendingMembers,
        Limit::Broadcasts,
        Limit::State,
        Limit::Kv,
        Limit::Counter,
        Limit::Aggregate,
        Limit::NameHeld,
        Limit::Query,
    ];

    /// A short name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Members => "max_members",
            Limit::PendingMembers => "max_pending_members",
            Limit::Broadcasts => "max_broadcasts",
            Limit::State => "state_quota",
            Limit::Kv => "kv_quota",
            Limit::Counter => "implausible_counter",
            Limit::Aggregate => "aggregate_value",
            Limit::NameHeld => "name_held",
            Limit::Query => "queries",
        }
    }

    /// Its position in [`Limit::ALL`] (and in `Stats::refused`).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How much a node holds on behalf of others. The defaults let a
/// 10,000-member LAN cluster run with room for churn; each limit can be set
/// in the agent's `[limits]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Members held, this node and tombstones included. A new name beyond
    /// this is refused (counted in `Stats::members_refused`).
    pub max_members: usize,
    /// Names heard of from third parties and waiting for their own ack
    /// (see docs/protocol.md, "Admission"). Beyond this a new name is
    /// refused until an entry is admitted or expires.
    pub max_pending_members: usize,
    /// Of those, how many one sender (by IP address) may have waiting.
    pub max_pending_per_sender: usize,
    /// Per-node state keys one owner may hold (tombstones included).
    pub max_state_keys_per_owner: usize,
    /// Bytes of per-node state keys and values one owner may hold.
    pub max_state_bytes_per_owner: usize,
    /// Records in the replicated key space.
    pub max_kv_keys: usize,
    /// Bytes of keys and values in the replicated key space.
    pub max_kv_bytes: usize,
    /// Updates waiting to be piggybacked; past this the update closest to
    /// its retransmit limit is dropped (anti-entropy still carries it).
    pub max_broadcasts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_members: 20_000,
            max_pending_members: 1024,
            max_pending_per_sender: 256,
            max_state_keys_per_owner: 1024,
            max_state_bytes_per_owner: 256 * 1024,
            max_kv_keys: 1_000_000,
            max_kv_bytes: 256 << 20,
            max_broadcasts: 8192,
        }
    }
}

impl Limits {
    /// Check the values; the error names the field to fix.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let fields = [
            ("max_members", self.max_members, 2),
            ("max_pending_members", self.max_pending_members, 1),
            ("max_pending_per_sender", self.max_pending_per_sender, 1),
            ("max_state_keys_per_owner", self.max_state_keys_per_owner, 1),
            (
                "max_state_bytes_per_owner",
                self.max_state_bytes_per_owner,
                1024,
            ),
            ("max_kv_keys", self.max_kv_keys, 1),
            ("max_kv_bytes", self.max_kv_bytes, 1024),
            ("max_broadcasts", self.max_broadcasts, 16),
        ];
        for (name, value, min) in fields {
            if value < min {
                return Err(crate::Error::InvalidConfig(format!(
                    "limits.{name} ({value}) must be at least {min}"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_bounds_the_step_and_never_overflows() {
        assert!(plausible(5, 5 + INCARNATION_JUMP, INCARNATION_JUMP));
        assert!(!plausible(5, 6 + INCARNATION_JUMP, INCARNATION_JUMP));
        assert!(!plausible(0, u64::MAX, STATE_VERSION_JUMP));
        assert!(plausible(u64::MAX - 1, u64::MAX, INCARNATION_JUMP));
        assert!(plausible(7, 3, 1), "going back is not a jump");
    }

    #[test]
    fn defaults_validate_and_zero_is_named() {
        Limits::default().validate().unwrap();
        let err = Limits {
            max_members: 0,
            ..Limits::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("limits.max_members"), "{err}");
    }
}
