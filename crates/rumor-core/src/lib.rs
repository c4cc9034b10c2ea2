//! # rumor-core
//!
//! The rumor gossip protocol as a sans-IO state machine: SWIM membership and
//! failure detection with the Lifeguard extensions, piggybacked
//! dissemination, and push-pull anti-entropy. No sockets, clocks, threads or
//! runtime: the driver (the `rumor` library, or the `rumor-sim` simulator)
//! feeds packets and time in and carries packets, timers and events out.
//!
//! ```
//! use rumor_core::{Config, Instant, Node};
//! let addr = "127.0.0.1:7946".parse().unwrap();
//! let mut node = Node::new("a", addr, Config::lan(), 42).unwrap();
//! node.join(Instant::ZERO, &["127.0.0.1:7947".parse().unwrap()]);
//! // The join handshake is a push-pull stream to the seed.
//! let t = node.poll_transmit().unwrap();
//! assert!(t.is_stream());
//! ```
//!
//! With the `serde` feature, the types events carry (members, user events,
//! key-space and per-node state changes) derive `Serialize` and
//! `Deserialize`.

pub mod admission;
pub mod aggregate;
pub mod awareness;
pub mod broadcast;
pub mod budget;
pub mod codec;
pub mod config;
pub mod event;
mod idle;
pub mod kv;
pub mod limits;
pub mod member;
pub mod message;
pub mod node;
pub mod overlay;
pub mod query;
pub mod samples;
pub mod state;
pub mod stats;
pub mod suspicion;
pub mod time;
pub mod user_event;

pub use config::{Config, Membership, Profile};
pub use event::{Event, MemberEventKind, SuspicionCause};
pub use limits::Limits;
pub use member::{Member, MemberState, Tags};
pub use message::UserEvent;
pub use node::{
    ForceLeave, ForceLeaveError, Identities, Imported, Node, Resume, Resumed, Transmit,
    TransmitKind,
};
pub use stats::Stats;
pub use time::Instant;

/// Errors the core returns to its driver for bad commands or configuration:
/// one variant per service, each typed so that a front end decides how to
/// report it (an HTTP status, an exit code) from the variant, never from the
/// message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range; the message names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A member name is empty or too long.
    #[error("invalid member name: {0}")]
    InvalidName(String),
    /// A replicated key-space write breaks a limit or a rule; nothing was stored.
    #[error("invalid key-space write: {0}")]
    Kv(kv::KvError),
    /// An aggregate name breaks a limit, or too many are tracked.
    #[error("invalid aggregate: {0}")]
    Aggregate(Rejected),
    /// A per-node state key or value breaks a limit.
    #[error("invalid state write: {0}")]
    State(Rejected),
    /// A query or an answer breaks a limit, or answers no query in progress.
    #[error("invalid query: {0}")]
    Query(Rejected),
    /// A user event is too large, or its name is empty or too long.
    #[error("invalid user event: {0}")]
    Event(Rejected),
    /// A write would take this node past one of its [`Limits`]: nothing
    /// was stored. (A count or space quota, not a malformed value.)
    #[error("{detail}")]
    LimitReached {
        /// The bound.
        limit: limits::Limit,
        /// What it allows, naming the setting.
        detail: String,
    },
    /// A force-leave was refused: unknown name, a live member, or this node.
    #[error(transparent)]
    ForceLeave(#[from] node::ForceLeaveError),
    /// Tags take more than [`member::MAX_TAGS_BYTES`] encoded.
    #[error("tags take {size} bytes encoded, the limit is {limit}")]
    TagsTooLarge {
        /// Their encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a service refused a value, by kind: what a front end needs to report
/// it (an HTTP API: 400 or 413). The message says what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// It breaks a rule: empty, malformed, out of range, or not expected now.
    #[error("{0}")]
    Invalid(String),
    /// It is larger than a size limit allows.
    #[error("{0}")]
    TooLarge(String),
}
