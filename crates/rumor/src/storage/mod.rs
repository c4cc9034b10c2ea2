//! Durable state on disk: the replicated key space, this node's own
//! per-node state and the node's counters, in one embedded database (redb)
//! in a data directory.
//!
//! [`Store::open`] opens (or creates) the directory and returns what it
//! holds as [`Loaded`]; [`Store::spawn_writer`] moves the store to a
//! dedicated thread, the [`Writer`], that turns every [`Batch`] queued while
//! the previous commit ran into one transaction (group commit) and
//! acknowledges each batch once its commit is durable as [`SyncMode`] says.
//!
//! This layer knows nothing of the protocol: key-space entries are opaque
//! bytes (the caller encodes them), per-node state is strings and versions,
//! and [`Meta`] is a handful of counters. docs/storage.md argues the engine.

mod batch;
mod error;
mod load;
mod meta;
mod options;
mod store;
mod tables;
mod writer;

pub use batch::Batch;
pub use error::StorageError;
pub use load::Loaded;
pub use meta::{Meta, FORMAT_VERSION};
pub use options::{StorageOptions, SyncMode};
pub use store::Store;
pub use writer::Writer;
