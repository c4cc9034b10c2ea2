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
//! - [`merkle`]: a Merkle tree over the key space, updated incrementally.
//! - [`hash`]: the stable hash replicas compare.

pub mod hash;
pub mod hlc;
pub mod lww;
pub mod merkle;
pub mod resolve;
pub mod siblings;
pub mod vv;

pub use hlc::{ClockDrift, Hlc, Timestamp};
pub use lww::LwwEntry;
pub use merkle::MerkleTree;
pub use siblings::{Dot, Sibling, SiblingSet};
pub use vv::{Causality, VersionVector};
