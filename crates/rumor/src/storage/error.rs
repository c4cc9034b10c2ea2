//! What can go wrong with a data directory, each in one line that names the
//! file and says what to do.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the storage layer. Cheap to clone: one failed group commit
/// fails every batch in it with the same error.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The directory or its file cannot be created or written.
    #[error("data dir {path} is not writable ({source}); give a directory this user can create and write to")]
    NotWritable {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: Arc<io::Error>,
    },
    /// Another process (or another store in this one) has the directory open.
    #[error("data dir {path} is locked by another running agent; stop it or give this one another data dir")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database file is damaged.
    #[error("data file {path} is corrupt ({detail}); move the data dir aside and start again: the node starts empty and pulls the key space from its peers")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What the engine found.
        detail: String,
    },
    /// The file system is full (ENOSPC, or EDQUOT).
    #[error("disk full writing {path}; free space on it: writes fail until then, and nothing acknowledged is lost")]
    Full {
        /// The database file.
        path: PathBuf,
    },
    /// The file was written by a newer version of rumor.
    #[error("data file {path} has format version {found}, this build reads up to {supported}; run a newer rumor or move the data dir aside")]
    Version {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// Any other I/O error.
    #[error("data dir {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: Arc<io::Error>,
    },
    /// The writer was closed (or its thread is gone) before the batch was
    /// committed.
    #[error("the storage writer is closed")]
    Closed,
}

impl StorageError {
    /// Classifies an I/O error on `path`: a full disk, a refusal, or other.
    pub(crate) fn from_io(path: &Path, e: io::Error) -> Self {
        let path = path.to_path_buf();
        if e.raw_os_error().is_some_and(is_full) {
            return StorageError::Full { path };
        }
        match e.kind() {
            io::ErrorKind::StorageFull => StorageError::Full { path },
            io::ErrorKind::PermissionDenied
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::AlreadyExists => StorageError::NotWritable {
                path,
                source: Arc::new(e),
            },
            _ => StorageError::Io {
                path,
                source: Arc::new(e),
            },
        }
    }

    /// Whether the error is a full disk.
    pub fn is_full(&self) -> bool {
        matches!(self, StorageError::Full { .. })
    }
}

/// ENOSPC and EDQUOT on Linux (28, 122): both mean "no room to write".
fn is_full(errno: i32) -> bool {
    errno == 28 || errno == 122
}
