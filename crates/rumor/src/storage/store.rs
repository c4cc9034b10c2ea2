//! The open database: opening and checking a data directory, and committing
//! a set of changes.

use super::batch::Changes;
use super::error::StorageError;
use super::load::{load, LoadError, Loaded};
use super::meta::{keys, FORMAT_VERSION};
use super::options::{StorageOptions, SyncMode};
use super::tables::{encode_state, KV, META, STATE};
use super::writer::Writer;
use redb::{Durability, ReadableDatabase, ReadableTable};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The database file's name inside the data directory.
pub const FILE_NAME: &str = "rumor.redb";

/// An open data directory. Holds redb's lock on the file: a second open of
/// the same directory, from this process or another, fails with
/// [`StorageError::Locked`] until this one is dropped.
pub struct Store {
    /// `None` after a failed commit: redb refuses every later operation
    /// after an I/O error, so the next commit reopens the file first.
    db: Option<redb::Database>,
    dir: PathBuf,
    file: PathBuf,
    sync: SyncMode,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("file", &self.file).finish()
    }
}

impl Store {
    /// Opens the data directory (creating it if missing), verifies every
    /// page of the database file, and reads everything it holds.
    ///
    /// A file left by a crash opens at its last durable commit. A damaged
    /// file gives [`StorageError::Corrupt`], never a panic.
    pub fn open(options: &StorageOptions) -> Result<(Store, Loaded), StorageError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::from_io(&dir, e))?;
        let file = dir.join(FILE_NAME);
        let db = open_db(&file, true)?;
        sync_dir(&dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A directory created just now needs its own entry durable too.
            sync_dir(parent)?;
        }
        let created = init(&db, &file)?;
        let mut loaded = guarded(&file, || load(&db)).and_then(|r| {
            r.map_err(|e| match e {
                LoadError::Engine(e) => map_err(&file, e),
                LoadError::Row(detail) => StorageError::Corrupt {
                    path: file.clone(),
                    detail,
                },
            })
        })?;
        loaded.created = created;
        let store = Store {
            db: Some(db),
            dir,
            file,
            sync: options.sync,
        };
        Ok((store, loaded))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sync mode the store was opened with.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    /// Moves the store to a dedicated thread that commits what is
    /// submitted to it (see [`Writer`]).
    pub fn spawn_writer(self) -> Writer {
        Writer::spawn(self)
    }

    /// Commits `changes` in one transaction, with an fsync if `durable`.
    /// After an error the next call reopens the file first.
    pub(crate) fn commit(&mut self, changes: &Changes, durable: bool) -> Result<(), StorageError> {
        let file = self.file.clone();
        let db = self.db()?;
        let result = guarded(&file, || write(db, changes, durable))
            .and_then(|r| r.map_err(|e| map_err(&file, e)));
        if result.is_err() {
            self.db = None;
        }
        result
    }

    /// Makes every earlier commit durable (one empty durable commit).
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.commit(&Changes::default(), true)
    }

    /// The open database, reopened after a failure. The reopen skips the
    /// full check: the file was verified at open and only redb wrote it
    /// since; a retry loop on a full disk must not read it all each time.
    fn db(&mut self) -> Result<&redb::Database, StorageError> {
        if self.db.is_none() {
            self.db = Some(open_db(&self.file, false)?);
        }
        self.db.as_ref().ok_or(StorageError::Closed)
    }
}

/// Opens (or creates) the file; with `verify`, a full integrity check:
/// redb then verifies the checksum of every page and reports a damaged
/// file as `Corrupted` where an unchecked open may panic.
fn open_db(file: &Path, verify: bool) -> Result<redb::Database, StorageError> {
    let opened = guarded(file, || {
        redb::Builder::new()
            .set_check_integrity_on_open(verify)
            .create(file)
    })?;
    opened.map_err(|e| map_err(file, e.into()))
}

/// Checks the format version of an existing file, then creates the
/// tables and the version row in a new one. `Ok(true)`: the file was new.
fn init(db: &redb::Database, file: &Path) -> Result<bool, StorageError> {
    let engine = |e: redb::Error| map_err(file, e);
    let stored = guarded(file, || stored_version(db))?.map_err(engine)?;
    if let Some(bytes) = &stored {
        let found = <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| StorageError::Corrupt {
                path: file.to_path_buf(),
                detail: "the format version row is malformed".into(),
            })?;
        if found > FORMAT_VERSION {
            return Err(StorageError::Version {
                path: file.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
            });
        }
    }
    guarded(file, || create_tables(db, stored.is_none()))?.map_err(engine)?;
    Ok(stored.is_none())
}

/// The format version row, read without writing anything.
fn stored_version(db: &redb::Database) -> Result<Option<Vec<u8>>, redb::Error> {
    let tx = db.begin_read()?;
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let row = meta.get(keys::FORMAT_VERSION.as_bytes())?;
    Ok(row.map(|v| v.value().to_vec()))
}

/// Creates the three tables (a no-op when they exist) and, in a new file,
/// the format version row.
fn create_tables(db: &redb::Database, new: bool) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        tx.open_table(KV)?;
        tx.open_table(STATE)?;
        if new {
            meta.insert(
                keys::FORMAT_VERSION.as_bytes(),
                FORMAT_VERSION.to_le_bytes().as_slice(),
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Applies `changes` in one write transaction.
fn write(db: &redb::Database, changes: &Changes, durable: bool) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut kv = tx.open_table(KV)?;
        for (k, v) in &changes.kv {
            match v {
                Some(v) => kv.insert(k.as_bytes(), v.as_slice())?,
                None => kv.remove(k.as_bytes())?,
            };
        }
        let mut state = tx.open_table(STATE)?;
        for (k, (v, version)) in &changes.state {
            state.insert(
                k.as_bytes(),
                encode_state(v.as_deref(), *version).as_slice(),
            )?;
        }
        if let Some(m) = &changes.meta {
            let mut meta = tx.open_table(META)?;
            for (k, v) in m.rows() {
                meta.insert(k.as_bytes(), v.as_slice())?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// fsyncs the directory, so that a newly created file's entry in it is
/// durable too.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::from_io(dir, e))
}

/// Runs engine code that may panic on a damaged file (redb asserts on some
/// impossible states in debug builds) and reports such a panic as
/// corruption of `file` instead of unwinding into the caller.
fn guarded<T>(file: &Path, f: impl FnOnce() -> T) -> Result<T, StorageError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| StorageError::Corrupt {
        path: file.to_path_buf(),
        detail: panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the storage engine panicked".into()),
    })
}

/// Maps an engine error on `file` to a [`StorageError`].
fn map_err(file: &Path, e: redb::Error) -> StorageError {
    let path = file.to_path_buf();
    match e {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StorageError::Locked { path }
        }
        redb::Error::Corrupted(detail) => StorageError::Corrupt { path, detail },
        redb::Error::UpgradeRequired(v) => StorageError::Corrupt {
            path,
            detail: format!("redb file format {v} needs an upgrade this build cannot do"),
        },
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            StorageError::Corrupt {
                path,
                detail: e.to_string(),
            }
        }
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            StorageError::Corrupt {
                path,
                detail: "the file is truncated".into(),
            }
        }
        redb::Error::Io(e) => StorageError::from_io(file, e),
        other => StorageError::Io {
            path,
            source: std::sync::Arc::new(std::io::Error::other(other.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written by a newer build: `Version`, naming the file.
    #[test]
    fn a_newer_format_version_is_refused() {
        let dir = std::env::temp_dir().join(format!("rumor-store-version-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        drop(Store::open(&StorageOptions::new(&dir)).unwrap());
        let file = dir.join(FILE_NAME);
        {
            let db = redb::Database::create(&file).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert(
                    keys::FORMAT_VERSION.as_bytes(),
                    99u64.to_le_bytes().as_slice(),
                )
                .unwrap();
            tx.commit().unwrap();
        }
        let err = Store::open(&StorageOptions::new(&dir)).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Version {
                    found: 99,
                    supported: FORMAT_VERSION,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
