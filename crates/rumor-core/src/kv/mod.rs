//! The replicated key space (design §3 "Cluster state"; invariant 5).
//!
//! Any node may write any key. Pure data structures and message-in /
//! message-out reconciliation; no I/O, no clock (callers pass wall-clock
//! microseconds as `physical`).
//!
//! - [`hlc`]: hybrid logical clocks; [`Timestamp`]s are totally ordered.
//! - [`lww`]: last-write-wins registers, the default mode.
//! - [`vv`] and [`siblings`]: version vectors and multi-value registers that
//!   keep concurrent writes; [`resolve`] has example merge functions.
//! - [`store`]: [`KvStore`], the key space with modes, limits, tombstone
//!   collection and a change feed; [`limits`] lists the size limits.
//! - [`merkle`] and [`sync`]: a Merkle tree over the key space and the
//!   request/response exchange that finds and repairs differences in
//!   O(log n) round trips; [`skew`] measures peers' clock offsets on it.
//!
//! ```
//! use rumor_core::kv::{KvConfig, KvStore, MerkleSync, Outcome};
//! let mut a = KvStore::new("a", KvConfig::default());
//! let mut b = KvStore::new("b", KvConfig::default());
//! a.put(1_000, "config/x", b"1".to_vec()).unwrap();
//! let mut sync = MerkleSync::new();
//! while let Some(req) = sync.next_request(&a) {
//!     sync.handle_response(&a, b.respond(&req)).unwrap();
//! }
//! let done = sync.finish();
//! for r in done.send {
//!     assert_eq!(b.apply_remote(1_000, r.key.as_bytes(), r.entry), Outcome::Applied);
//! }
//! assert_eq!(a.root(), b.root());
//! ```

pub mod entry;
pub mod hash;
pub mod hlc;
pub mod limits;
pub mod lww;
pub mod merkle;
pub mod outcome;
pub mod resolve;
pub(crate) mod service;
pub mod siblings;
pub mod skew;
pub mod store;
pub mod sync;
pub mod vv;

pub use entry::{Change, Entry, Mode, Record};
pub use hlc::{ClockDrift, Hlc, Timestamp};
pub use limits::{Invalid, MAX_CONTEXT_LEN, MAX_KEY_LEN, MAX_SIBLINGS, MAX_VALUE_LEN};
pub use lww::LwwEntry;
pub use merkle::MerkleTree;
pub use outcome::{KvError, Outcome, Stale};
pub use siblings::{Dot, Sibling, SiblingSet};
pub use skew::{ClockProbe, ClockRefusal, Skew, SkewTable};
pub use store::{KvConfig, KvStore, SpaceQuota};
pub use sync::{MerkleSync, Refusal, SyncError, SyncRequest, SyncResponse, SyncResult, SyncStats};
pub use vv::{Causality, VersionVector};

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod sync_tests;
