//! Events the core reports to its driver through [`crate::Node::poll_event`].

use crate::member::Member;
use crate::message::UserEvent;

/// What happened to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MemberEventKind {
    /// A new member, or one that came back after dying or leaving.
    Joined,
    /// An alive member changed its tags or protocol range.
    Updated,
    /// A member missed its probes and is suspected.
    Suspect,
    /// A suspected member refuted the suspicion.
    Alive,
    /// A member was declared failed.
    Failed,
    /// A member left gracefully.
    Left,
    /// A dead or left member's tombstone was reclaimed.
    Reaped,
}

/// Why this node began to suspect a member (see [`Event::Suspected`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SuspicionCause {
    /// This node's probe got no ack: not from the member, not through the
    /// `relays` asked to ping it, of which `nacks` answered that they got
    /// no ack either (nacks mean this node's own links work).
    NoAck {
        /// Relays asked to ping the member.
        relays: u32,
        /// Of those, how many nacked.
        nacks: u32,
    },
    /// The member's port answered "unreachable" (ICMP): nothing listens.
    PortUnreachable,
    /// The member's host kept accepting this node's stream pings but its
    /// process answered none for `for_ms` milliseconds, the
    /// [`crate::Config::stall_grace`] (paused or hung).
    Stalled {
        /// How long the member had been stalled, in milliseconds.
        for_ms: u64,
    },
    /// Another member's suspicion, heard in gossip.
    Gossip,
    /// A push-pull partner listed the member suspect or dead.
    PushPull,
    /// The member is this node's neighbour in partial membership and
    /// stopped answering its pings (see [`crate::Membership::Partial`]).
    NeighborSilent,
}

impl std::fmt::Display for SuspicionCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SuspicionCause::NoAck { relays: 0, .. } => {
                f.write_str("no ack to a ping, no relay to ask")
            }
            SuspicionCause::NoAck { relays, nacks } => write!(
                f,
                "no ack to a ping, nor through {relays} relay(s) ({nacks} nacked)"
            ),
            SuspicionCause::PortUnreachable => f.write_str("its port is unreachable (ICMP)"),
            SuspicionCause::Stalled { for_ms } => write!(
                f,
                "its host is up but its process has not answered for {:.1} s",
                *for_ms as f64 / 1000.0
            ),
            SuspicionCause::Gossip => f.write_str("heard in gossip"),
            SuspicionCause::NeighborSilent => {
                f.write_str("a silent neighbour (partial membership)")
            }
            SuspicionCause::PushPull => {
                f.write_str("listed suspect or dead by a push-pull partner")
            }
        }
    }
}

/// Something the driver should know about.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A member's state changed; `member` is its state after the change.
    Member {
        /// What happened.
        kind: MemberEventKind,
        /// The member after the change.
        member: Member,
    },
    /// The local node's leave announcement has been sent as often as the
    /// retransmit budget asks (or there is nobody to tell): safe to stop.
    LeaveComplete,
    /// An application event, delivered once per node (the sender included).
    User(UserEvent),
    /// This node began to suspect `name` (reported after the member's
    /// [`MemberEventKind::Suspect`] event): who raised the suspicion and why.
    Suspected {
        /// The suspected member.
        name: std::sync::Arc<str>,
        /// The member that raised it (this node's own name after a probe).
        accuser: std::sync::Arc<str>,
        /// Why.
        cause: SuspicionCause,
    },
    /// A query, delivered once per node (the asker included). The driver
    /// checks its filters and, if this node is selected, acks and answers
    /// through [`crate::Node::respond_query`].
    Query(crate::message::Query),
    /// An ack or answer to one of this node's queries (each member's ack
    /// and answer delivered once).
    QueryResponse(crate::message::QueryResponse),
    /// This node's query of Lamport time `ltime` reached its deadline: no
    /// more answers will be delivered.
    QueryDone {
        /// The query's Lamport time, as [`crate::Node::query`] returned it.
        ltime: u64,
    },
    /// A per-node state key changed here (a local write or one learned).
    State(crate::state::Change),
    /// A replicated key changed here (a local write or one learned).
    Kv(crate::kv::Change),
    /// Tombstones older than the grace period were collected: these keys
    /// are gone from the key space (a data dir drops them too).
    KvCollected(Vec<std::sync::Arc<str>>),
    /// A bound refused something peers sent: `count` refusals of this kind
    /// since the last report (reported at most once a second per kind),
    /// the last one from `peer` where known. For a rate-limited warning.
    Refused {
        /// The bound.
        limit: crate::limits::Limit,
        /// Refusals since the last report.
        count: u64,
        /// The address the last refused message came from.
        peer: Option<std::net::SocketAddr>,
    },
    /// This node's name is held by another live member, at `holder`: it
    /// answered a ping for the name. The cluster ignores this node's
    /// claims; it does not refute or announce a leave. Pick another name.
    NameConflict {
        /// The address of the member holding the name.
        holder: std::net::SocketAddr,
    },
    /// A peer runs the other membership mode (`theirs`), so this node and
    /// it cannot form one cluster: what it sent was refused (counted in
    /// [`crate::Stats::membership_refused`]). Reported once per peer
    /// address. Every node of a cluster must set the same
    /// [`crate::Config::membership`].
    MembershipMismatch {
        /// The peer.
        peer: std::net::SocketAddr,
        /// Its mode.
        theirs: crate::config::Membership,
    },
    /// Key-space records were refused because their timestamps were too
    /// far ahead of this node's clock (counted in
    /// [`crate::Stats::kv_refused_future`]); reported at most once a second,
    /// with the last one refused. Anti-entropy offers them again, and they
    /// are taken once this node's clock is within `kv.max_drift` of them.
    ClockRefused(crate::kv::ClockRefusal),
}
