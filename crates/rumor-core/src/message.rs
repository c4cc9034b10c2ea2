//! The protocol's messages, independent of their encoding (see [`crate::codec`]).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::member::{MemberState, Tags};
use crate::state::Delta;

/// One protocol message. A datagram carries one or more (a compound packet);
/// a stream carries exactly one.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Are you alive? Answered with an [`Message::Ack`] of the same `seq`.
    Ping {
        /// Matches the ack to the probe.
        seq: u32,
        /// The name the sender believes lives at this address; a node
        /// ignores pings meant for another name (a stale address).
        target: Arc<str>,
    },
    /// The answer to a ping, or a relay forwarding the target's answer.
    Ack {
        /// The ping's sequence number.
        seq: u32,
    },
    /// A relay's word that the target of a ping-req did not answer in time
    /// (Lifeguard: tells the prober its own links are fine).
    Nack {
        /// The ping-req's sequence number.
        seq: u32,
        /// The target's host answered that nothing listens on its port (an
        /// ICMP port unreachable): the process is gone, not just slow.
        refused: bool,
    },
    /// Please probe `target` for me and forward its ack (or a nack).
    PingReq {
        /// The requester's sequence number, used in the forwarded ack or nack.
        seq: u32,
        /// Name of the member to probe.
        target: Arc<str>,
        /// Its address.
        target_addr: SocketAddr,
    },
    /// A member is alive at `incarnation`.
    Alive(Alive),
    /// `from` suspects member `name` at `incarnation`.
    Suspect {
        /// Incarnation the suspicion is about.
        incarnation: u64,
        /// The suspected member.
        name: Arc<str>,
        /// Who suspects it.
        from: Arc<str>,
    },
    /// Member `name` is dead at `incarnation`; `from == name` means it left.
    Dead {
        /// Incarnation the declaration is about.
        incarnation: u64,
        /// The dead member.
        name: Arc<str>,
        /// Who declared it.
        from: Arc<str>,
    },
    /// Full membership state, exchanged over a stream (anti-entropy, join).
    PushPull(PushPull),
    /// An application event broadcast to the cluster.
    UserEvent(UserEvent),
    /// One step of a per-node state anti-entropy exchange.
    StateSync(StateSync),
    /// A fresh per-node state write, spread as a rumor.
    StateDelta(Delta),
    /// Half of the sender's aggregate mass (push-sum), to apply once.
    Aggregate {
        /// The sender's name (transfers are deduplicated per sender).
        sender: Arc<str>,
        /// Aggregation epoch.
        epoch: u64,
        /// Transfer number, increasing per sender within an epoch.
        seq: u32,
        /// `(aggregate name, share)` pairs.
        shares: Vec<(String, crate::aggregate::Share)>,
    },
    /// Receipt of an aggregate transfer: the sender may forget it.
    AggregateAck {
        /// Aggregation epoch of the transfer.
        epoch: u64,
        /// Transfer number.
        seq: u32,
    },
    /// Replicated key-space records: a fresh write's rumor, or what a sync
    /// found the receiver lacks.
    KvRecords(Vec<crate::kv::Record>),
    /// A step of a Merkle anti-entropy session, initiator to responder.
    KvSyncRequest {
        /// The initiator's session number.
        session: u32,
        /// The step.
        request: crate::kv::SyncRequest,
    },
    /// The responder's answer to a [`Message::KvSyncRequest`].
    KvSyncResponse {
        /// The initiator's session number.
        session: u32,
        /// The answer.
        response: crate::kv::SyncResponse,
    },
    /// A clock probe riding with the first step of a Merkle session (or its
    /// echo with the first answer): see [`crate::kv::skew`]. Its own message
    /// type, so that nodes that do not know it skip it.
    KvClock(crate::kv::ClockProbe),
    /// A request for the member records the sender lacks, over a stream:
    /// the answer is a [`PushPull`] reply with only the records whose
    /// [`crate::member::record_digest`] is not in `digest`.
    Pull {
        /// The sender's own claim.
        alive: Alive,
        /// Digests of every member record the sender holds.
        digest: Vec<u32>,
    },
    /// Rides with the answer to a [`Message::Pull`]: the positions, in the
    /// pull's digest list, of the digests the answerer holds no record
    /// for. The puller sends the records at those positions back, so that
    /// a pull carries news both ways (see `Node::pull_from_random`).
    Lacking {
        /// Positions in the pull's list, ascending.
        positions: Vec<u32>,
    },
    /// A partial-membership overlay message (HyParView), peers by address.
    View(crate::overlay::hyparview::ViewMessage<SocketAddr>),
    /// A broadcast-tree message (Plumtree) with an opaque payload.
    Tree(crate::overlay::plumtree::TreeMessage<Vec<u8>>),
    /// The sender runs this membership mode. Partial-membership nodes put
    /// it in their stream requests; a node whose mode differs answers with
    /// its own, refusing the peer (the modes cannot interoperate).
    Membership(crate::config::Membership),
    /// A question gossiped to every member; those its filters select
    /// answer straight to the asker (see [`crate::query`]).
    Query(Query),
    /// An ack or an answer to a [`Message::Query`], to its asker (or to a
    /// member that relays it there).
    QueryResponse(QueryResponse),
    /// Member `name` left at `incarnation` and is to be forgotten at once,
    /// not kept as a tombstone (a pruning force-leave: see
    /// [`crate::node::ForceLeave`]).
    Reap {
        /// Incarnation the leave is about.
        incarnation: u64,
        /// The member to forget.
        name: Arc<str>,
    },
}

/// A query: like a user event, but the members its filters select answer it.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The asker's Lamport time: with `origin`, names the query.
    pub ltime: u64,
    /// The asking member.
    pub origin: Arc<str>,
    /// Where answers go: the asker's gossip address.
    pub origin_addr: SocketAddr,
    /// The query's name (what it asks).
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// Which members should answer (all must match; none: every member).
    pub filters: Vec<QueryFilter>,
    /// Whether each selected member acks on receipt, before answering.
    pub ack: bool,
    /// Each answer is also sent through this many other members, in case
    /// the direct path loses it.
    pub relay_factor: u8,
    /// How long the asker waits for answers, in milliseconds.
    pub timeout_ms: u32,
}

/// Which members a query selects. Patterns are regular expressions the
/// driver evaluates (the core carries them and does not interpret them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryFilter {
    /// The member's name matches.
    Name(String),
    /// The member has tag `key` with a value that matches `pattern`.
    Tag {
        /// The tag's name.
        key: String,
        /// The pattern its value must match.
        pattern: String,
    },
}

/// An ack or an answer to a query.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResponse {
    /// The query's Lamport time (the asker is the receiver).
    pub ltime: u64,
    /// The answering member.
    pub from: Arc<str>,
    /// An ack (receipt) rather than an answer.
    pub ack: bool,
    /// The answer (empty for an ack).
    pub payload: Vec<u8>,
    /// Set on the copy sent through a relay: where the relay forwards it.
    pub relay_to: Option<SocketAddr>,
}

/// The step of a state exchange between an initiator A and a peer B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SyncPhase {
    /// A → B: A's digest (or only its hash, in push mode).
    Syn,
    /// B → A: what A lacks (pull) and B's digest (push).
    SynAck,
    /// A → B: what B lacks (push).
    Ack,
}

/// Which way an anti-entropy exchange moves state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SyncMode {
    /// The initiator sends what the peer lacks.
    Push,
    /// The initiator receives what it lacks.
    Pull,
    /// Both.
    PushPull,
}

impl SyncMode {
    /// The initiator receives.
    pub fn pulls(self) -> bool {
        matches!(self, SyncMode::Pull | SyncMode::PushPull)
    }

    /// The initiator sends.
    pub fn pushes(self) -> bool {
        matches!(self, SyncMode::Push | SyncMode::PushPull)
    }
}

/// A step of a per-node state exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSync {
    /// The sender's name.
    pub sender: Arc<str>,
    /// Which step.
    pub phase: SyncPhase,
    /// Which way state moves.
    pub mode: SyncMode,
    /// Hash of the sender's full digest: equal hashes end the exchange.
    pub digest_hash: u64,
    /// The digest lists every owner the sender has state of (not a sample).
    pub complete: bool,
    /// `(owner, max version)` pairs, all or a random sample.
    pub digest: Vec<(Arc<str>, u64)>,
    /// State the receiver lacks.
    pub deltas: Vec<Delta>,
}

/// An application event: named, with an opaque payload, ordered by a
/// Lamport clock and identified by `(origin, ltime)`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UserEvent {
    /// Lamport time at the origin when it was sent.
    pub ltime: u64,
    /// The member that sent it.
    pub origin: Arc<str>,
    /// Event name.
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
}

/// Body of an alive message: everything others need to know about a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alive {
    /// Incarnation of this claim.
    pub incarnation: u64,
    /// Member name.
    pub name: Arc<str>,
    /// Address to reach it.
    pub addr: SocketAddr,
    /// Protocol versions it speaks, `(min, max)`.
    pub protocol: (u8, u8),
    /// Its tags.
    pub tags: Arc<Tags>,
}

/// A full-state exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushPull {
    /// Sent by a node joining the cluster.
    pub join: bool,
    /// This is the answer to a push-pull (not to be answered again).
    pub reply: bool,
    /// Every member the sender knows, itself included.
    pub members: Vec<MemberRecord>,
    /// Recent user events the sender heard as rumors (or sent): the
    /// receiver delivers those it missed. Empty on the wire costs nothing.
    pub events: Vec<UserEvent>,
}

/// One member's state in a push-pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member's alive claim (name, address, incarnation, protocol, tags).
    pub alive: Alive,
    /// Its state as the sender sees it.
    pub state: MemberState,
}

/// Message type codes on the wire. New types get new codes; old nodes skip
/// codes they do not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// [`Message::Ping`]
    Ping = 1,
    /// [`Message::Ack`]
    Ack = 2,
    /// [`Message::Nack`]
    Nack = 3,
    /// [`Message::PingReq`]
    PingReq = 4,
    /// [`Message::Alive`]
    Alive = 5,
    /// [`Message::Suspect`]
    Suspect = 6,
    /// [`Message::Dead`]
    Dead = 7,
    /// [`Message::PushPull`]
    PushPull = 8,
    /// [`Message::UserEvent`]
    UserEvent = 9,
    /// [`Message::StateSync`]
    StateSync = 10,
    /// [`Message::StateDelta`]
    StateDelta = 11,
    /// [`Message::Aggregate`]
    Aggregate = 12,
    /// [`Message::AggregateAck`]
    AggregateAck = 13,
    /// [`Message::KvRecords`]
    KvRecords = 14,
    /// [`Message::KvSyncRequest`]
    KvSyncRequest = 15,
    /// [`Message::KvSyncResponse`]
    KvSyncResponse = 16,
    /// [`Message::Pull`]
    Pull = 17,
    /// [`Message::Query`]
    Query = 18,
    /// [`Message::QueryResponse`]
    QueryResponse = 19,
    /// [`Message::Reap`]
    Reap = 20,
    /// [`Message::KvClock`]
    KvClock = 21,
    /// [`Message::Lacking`]
    Lacking = 22,
    /// [`Message::View`]
    View = 23,
    /// [`Message::Tree`]
    Tree = 24,
    /// [`Message::Membership`]
    Membership = 25,
}

impl MessageType {
    /// Every type, in code order.
    pub const ALL: [MessageType; 25] = [
        MessageType::Ping,
        MessageType::Ack,
        MessageType::Nack,
        MessageType::PingReq,
        MessageType::Alive,
        MessageType::Suspect,
        MessageType::Dead,
        MessageType::PushPull,
        MessageType::UserEvent,
        MessageType::StateSync,
        MessageType::StateDelta,
        MessageType::Aggregate,
        MessageType::AggregateAck,
        MessageType::KvRecords,
        MessageType::KvSyncRequest,
        MessageType::KvSyncResponse,
        MessageType::Pull,
        MessageType::Query,
        MessageType::QueryResponse,
        MessageType::Reap,
        MessageType::KvClock,
        MessageType::Lacking,
        MessageType::View,
        MessageType::Tree,
        MessageType::Membership,
    ];

    /// The type of a wire code, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code.wrapping_sub(1) as usize).copied()
    }

    /// Lowercase name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Ping => "ping",
            MessageType::Ack => "ack",
            MessageType::Nack => "nack",
            MessageType::PingReq => "ping_req",
            MessageType::Alive => "alive",
            MessageType::Suspect => "suspect",
            MessageType::Dead => "dead",
            MessageType::PushPull => "push_pull",
            MessageType::UserEvent => "user_event",
            MessageType::StateSync => "state_sync",
            MessageType::StateDelta => "state_delta",
            MessageType::Aggregate => "aggregate",
            MessageType::AggregateAck => "aggregate_ack",
            MessageType::KvRecords => "kv_records",
            MessageType::KvSyncRequest => "kv_sync_request",
            MessageType::KvSyncResponse => "kv_sync_response",
            MessageType::Pull => "pull",
            MessageType::Query => "query",
            MessageType::QueryResponse => "query_response",
            MessageType::Reap => "reap",
            MessageType::KvClock => "kv_clock",
            MessageType::Lacking => "lacking",
            MessageType::View => "view",
            MessageType::Tree => "tree",
            MessageType::Membership => "membership",
        }
    }
}

impl Message {
    /// This message's wire type.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Ping { .. } => MessageType::Ping,
            Message::Ack { .. } => MessageType::Ack,
            Message::Nack { .. } => MessageType::Nack,
            Message::PingReq { .. } => MessageType::PingReq,
            Message::Alive(_) => MessageType::Alive,
            Message::Suspect { .. } => MessageType::Suspect,
            Message::Dead { .. } => MessageType::Dead,
            Message::PushPull(_) => MessageType::PushPull,
            Message::UserEvent(_) => MessageType::UserEvent,
            Message::StateSync(_) => MessageType::StateSync,
            Message::StateDelta(_) => MessageType::StateDelta,
            Message::Aggregate { .. } => MessageType::Aggregate,
            Message::AggregateAck { .. } => MessageType::AggregateAck,
            Message::KvRecords(_) => MessageType::KvRecords,
            Message::KvSyncRequest { .. } => MessageType::KvSyncRequest,
            Message::KvSyncResponse { .. } => MessageType::KvSyncResponse,
            Message::Pull { .. } => MessageType::Pull,
            Message::Query(_) => MessageType::Query,
            Message::QueryResponse(_) => MessageType::QueryResponse,
            Message::Reap { .. } => MessageType::Reap,
            Message::KvClock(_) => MessageType::KvClock,
            Message::Lacking { .. } => MessageType::Lacking,
            Message::View(_) => MessageType::View,
            Message::Tree(_) => MessageType::Tree,
            Message::Membership(_) => MessageType::Membership,
        }
    }
}
