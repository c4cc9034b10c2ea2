//! Where the data lives and when a write counts as durable.

use std::path::PathBuf;
use std::time::Duration;

/// How a storage directory is opened and written.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageOptions {
    /// The data directory; created (with its parents) if missing. It holds
    /// one database file, `rumor.redb`.
    pub dir: PathBuf,
    /// When a write is acknowledged relative to reaching the disk.
    pub sync: SyncMode,
}

impl StorageOptions {
    /// Options for `dir` with the default [`SyncMode::Always`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StorageOptions {
            dir: dir.into(),
            sync: SyncMode::default(),
        }
    }

    /// The same options with another sync mode.
    pub fn sync(mut self, sync: SyncMode) -> Self {
        self.sync = sync;
        self
    }
}

/// When a committed batch is flushed to stable storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Every commit is fsynced before its batches are acknowledged: an
    /// acknowledged write survives a crash of the process or the machine.
    /// Concurrent writes share one commit and one fsync (group commit).
    /// The default, because a durable acknowledgement is the point of a
    /// data directory.
    #[default]
    Always,
    /// Commits are acknowledged once written to the database without an
    /// fsync, and an fsync follows at most this long after the first
    /// unsynced commit. A crash of the process alone loses nothing; a crash
    /// of the machine loses at most this window of acknowledged writes (the
    /// database goes back to its last synced commit, never to a torn state).
    Interval(Duration),
}
