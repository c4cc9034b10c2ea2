//! The replicated key space (design §3 "Cluster state"; invariant 5).
//!
//! Any node may write any key. Pure data structures and message-in /
//! message-out reconciliation; no I/O, no clock (callers pass wall-clock
//! microseconds as `physical`).
//!
//! - [`hlc`]: hybrid logical clocks; [`Timestamp`]s are totally ordered.
//! - [`hash`]: the stable hash replicas compare.

pub mod hash;
pub mod hlc;

pub use hlc::{ClockDrift, Hlc, Timestamp};
