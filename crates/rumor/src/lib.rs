//! # rumor
//!
//! Embeddable cluster membership and failure detection (SWIM with the
//! Lifeguard extensions) over tokio: one UDP socket for probes and gossip,
//! one TCP listener for full-state exchanges, optional AES-256-GCM
//! encryption with a rotating keyring, cluster labels, LZ4 stream
//! compression, DNS seeds, and metrics through the [`metrics`] facade.
//!
//! The protocol itself lives in [`rumor_core`] (re-exported as
//! [`core`]), a sans-IO state machine; this crate drives it
//! with one tokio task per node.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rumor::Error> {
//! use rumor::{Node, Profile};
//!
//! let a = Node::builder()
//!     .name("a")
//!     .bind("127.0.0.1:0".parse().unwrap())
//!     .profile(Profile::Local)
//!     .start()
//!     .await?;
//! let b = Node::builder()
//!     .name("b")
//!     .bind("127.0.0.1:0".parse().unwrap())
//!     .profile(Profile::Local)
//!     .seed(a.advertise_addr())
//!     .start()
//!     .await?;
//! // b joined through a during start; a learns of b from the exchange.
//! assert!(b.members().await?.iter().any(|m| &*m.name == "a"));
//! assert_eq!(a.num_live().await?, 2);
//! b.leave(std::time::Duration::from_secs(5)).await?;
//! b.shutdown().await?;
//! a.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Beyond membership, a node carries application events
//! ([`Node::send_event`]), per-node state ([`Node::state_set`],
//! [`Node::state_of`]), a replicated key space ([`Node::kv_put`],
//! [`Node::kv_get`], [`Node::watch`]) and cluster-wide aggregates of state
//! keys ([`Node::track_aggregate`], [`Node::aggregate`]). Everything a node
//! reports is one [`Event`] family on one channel, each event stamped with
//! the wall-clock time the node saw it: [`Node::events`] receives all of it,
//! [`Node::subscribe`] the kinds an [`EventFilter`] selects,
//! [`Node::event_stream`] the same as a `futures` `Stream`, and
//! [`Node::watch`] key-space changes under a prefix.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rumor::Error> {
//! use rumor::{Node, Profile};
//! use std::time::Duration;
//!
//! let start = |name: &str| {
//!     Node::builder()
//!         .name(name)
//!         .bind("127.0.0.1:0".parse().unwrap())
//!         .profile(Profile::Local)
//! };
//! let a = start("a").start().await?;
//! let b = start("b").seed(a.advertise_addr()).start().await?;
//! let mut changes = b.watch("config/");
//! a.kv_put("config/level", b"debug".to_vec()).await?;
//! let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
//!     .await
//!     .expect("replicated in time")
//!     .expect("b is running");
//! assert_eq!(change.key, "config/level");
//! assert_eq!(b.kv_get("config/level").await?.as_deref(), Some(&b"debug"[..]));
//! # a.shutdown().await?;
//! # b.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Modules, one concern each: [`builder`] (configuration and start),
//! [`node`] (the handle), [`events`] (what a node reports, and the ways to
//! receive it), `driver` (the task), [`transport`] (UDP and TCP,
//! behind a trait a simulated network can implement),
//! [`keyring`] (keys and AES-GCM), [`framing`] (labels and the envelope),
//! [`compress`] (LZ4), [`seeds`] (seed resolution), [`metrics`] (stats and
//! their export), [`storage`] (the data directory: durable state on disk).
//!
//! Features: `serde` derives `Serialize` and `Deserialize` for the event
//! types (and the rumor-core types they carry).

pub mod builder;
pub mod compress;
mod driver;
pub mod encryption;
pub mod events;
pub mod framing;
pub mod keyring;
mod lazy_channel;
pub mod metrics;
pub mod node;
mod persist;
pub mod query;
mod replay;
pub mod seeds;
pub mod storage;
pub mod transport;

pub use rumor_core as core;
pub use rumor_core::aggregate::Estimate;
pub use rumor_core::kv::{Entry as KvEntry, Mode as KvMode, VersionVector};
pub use rumor_core::{
    Config, ForceLeave, Member, MemberEventKind, MemberState, Membership, Profile, Tags,
};

pub use builder::Builder;
pub use encryption::{EncryptionMode, EncryptionSwitch};
pub use events::{
    Event, EventFilter, KvChange, Lagged, MemberEvent, StateChange, Subscription, Suspected,
    UserEvent,
};
pub use keyring::{Key, KeyError, Keyring};
pub use metrics::{MemberCounts, Stats, TransportStats};
pub use node::{Node, Watch};
pub use query::{IncomingQuery, QueryAnswer, QueryFilter, QueryOptions, QueryStream};
pub use seeds::Seed;
pub use storage::{StorageError, StorageOptions, SyncMode};
pub use transport::{TokioNet, Transport};

use std::net::SocketAddr;
use std::time::Duration;

/// Errors of the library, typed: callers decide from the variant, not the
/// message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The protocol refused a value (configuration, name, tags).
    #[error(transparent)]
    Core(#[from] rumor_core::Error),
    /// A configuration value of this crate is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A cluster label is too long.
    #[error("invalid label: {0}")]
    InvalidLabel(String),
    /// A key is malformed, not installed, or may not be removed.
    #[error("key: {0}")]
    Key(#[from] keyring::KeyError),
    /// A keyring operation on a node without encryption.
    #[error("this node has no keyring (it was started without encryption)")]
    NoKeyring,
    /// The sockets could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No seed answered within the join timeout.
    #[error("could not join through any of {seeds:?} after {attempts} attempt(s): {reason}")]
    JoinFailed {
        /// The seeds tried, as given.
        seeds: Vec<String>,
        /// Attempts made.
        attempts: u32,
        /// What went wrong on the last attempt.
        reason: String,
    },
    /// The leave was not complete within the timeout.
    #[error("leave not complete after {0:?}")]
    LeaveTimeout(Duration),
    /// The operating system's random generator failed.
    #[error("random generator: {0}")]
    Random(String),
    /// Another live member holds this node's name: it answered a ping for
    /// the name at `holder`. The cluster keeps that member; pick another
    /// name (or stop the other agent).
    #[error("the name {name:?} is held by a live member at {holder}: choose another name, or stop the agent at {holder}")]
    NameConflict {
        /// This node's name.
        name: String,
        /// The address of the member holding it.
        holder: SocketAddr,
    },
    /// A seed runs the other membership mode: this node and the cluster
    /// cannot interoperate. Every node of a cluster must set the same
    /// [`Config::membership`].
    #[error("the seed at {peer} runs {theirs} membership and this node runs {ours}: every node of a cluster must set the same membership")]
    MembershipMismatch {
        /// The seed that refused.
        peer: SocketAddr,
        /// This node's mode.
        ours: Membership,
        /// The seed's mode.
        theirs: Membership,
    },
    /// The data dir refused: it could not be opened (locked, damaged, not
    /// writable) or a write could not be committed (a full disk).
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The node's task has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The node's task panicked or was cancelled.
    #[error("node task failed: {0}")]
    Task(String),
}
