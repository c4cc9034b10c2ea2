//! The group-commit writer: one thread that owns the [`Store`] and commits
//! every batch queued while its previous commit ran in one transaction.
//!
//! Rules it keeps:
//! - a batch's future resolves only after the commit holding it returned:
//!   `Ok` once durable under [`SyncMode::Always`], once committed (durable
//!   within the interval) under [`SyncMode::Interval`];
//! - a failed commit fails the futures of its batches, but their changes
//!   are kept and retried with later batches (and on a timer when none
//!   come, backing off from 0.5 to 8 s), so that the file converges to everything submitted once the
//!   disk has room again; [`Writer::healthy`] says whether the last commit
//!   succeeded;
//! - under `Interval`, changes committed but not yet fsynced are kept too:
//!   a failed fsync reopens the file, which drops them, and they are
//!   written again;
//! - [`Writer::close`] commits and fsyncs everything submitted, then closes
//!   the file (and releases its lock) before it returns.

use super::batch::{Batch, Changes};
use super::error::StorageError;
use super::options::SyncMode;
use super::store::Store;
use std::future::Future;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long the writer waits before retrying a failed commit when no new
/// batch arrives: doubled after each failure up to [`RETRY_MAX`], reset by
/// a success.
const RETRY: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(8);

type Reply = oneshot::Sender<Result<(), StorageError>>;

enum Msg {
    Batch(Batch, Reply),
    Close(Reply),
}

/// A handle to the writer thread. Clones share the thread; it ends after
/// [`Writer::close`], or when the last handle is dropped (after committing
/// and syncing what was queued).
#[derive(Clone, Debug)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    health: Arc<Health>,
}

impl Writer {
    pub(crate) fn spawn(store: Store) -> Writer {
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(Health::default());
        let mut thread = Thread {
            sync: store.sync_mode(),
            store: Some(store),
            rx,
            health: health.clone(),
            failed: Changes::default(),
            unsynced: Changes::default(),
            unsynced_since: None,
            retry: RETRY,
        };
        let spawned = std::thread::Builder::new()
            .name("rumor-storage".into())
            .spawn(move || thread.run());
        if let Err(e) = spawned {
            // The closure (and the store) is dropped: every submit fails
            // with Closed.
            tracing::error!("cannot start the storage writer thread: {e}");
            health.set(Some(StorageError::Closed));
        }
        Writer { tx, health }
    }

    /// Queues `batch`; the future resolves when the commit holding it has
    /// returned (see the module rules). Dropping the future does not cancel
    /// the write.
    pub fn submit(
        &self,
        batch: Batch,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + 'static {
        let (reply, done) = oneshot::channel();
        let sent = self.tx.send(Msg::Batch(batch, reply)).is_ok();
        async move {
            if !sent {
                return Err(StorageError::Closed);
            }
            done.await.unwrap_or(Err(StorageError::Closed))
        }
    }

    /// Whether the last commit succeeded. While it is `false` (a full disk,
    /// say) a caller should refuse new local writes (HTTP 507); remote
    /// changes may still be submitted and are kept for the retry.
    pub fn healthy(&self) -> bool {
        self.health.get().is_none()
    }

    /// The error of the last commit, while it has not succeeded since.
    pub fn last_error(&self) -> Option<StorageError> {
        self.health.get()
    }

    /// Commits and fsyncs everything submitted before this call, then
    /// closes the file. Later submits (through any clone) fail with
    /// [`StorageError::Closed`].
    pub async fn close(self) -> Result<(), StorageError> {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Close(reply)).is_err() {
            return Err(StorageError::Closed);
        }
        done.await.unwrap_or(Err(StorageError::Closed))
    }
}

/// The writer thread's state.
struct Thread {
    store: Option<Store>,
    sync: SyncMode,
    rx: mpsc::Receiver<Msg>,
    health: Arc<Health>,
    /// Changes of failed commits, to retry.
    failed: Changes,
    /// Changes committed without an fsync (Interval), until one succeeds.
    unsynced: Changes,
    unsynced_since: Option<Instant>,
    /// The current retry delay.
    retry: Duration,
}

impl Thread {
    fn run(&mut self) {
        loop {
            let Some(first) = self.wait() else {
                // Timer: retry a failed commit or sync the interval.
                self.commit(Changes::default(), Vec::new());
                self.sync_if_due();
                continue;
            };
            let mut changes = Changes::default();
            let mut replies = Vec::new();
            let mut close = None;
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    Msg::Batch(b, r) => {
                        changes.absorb(b);
                        replies.push(r);
                    }
                    Msg::Close(r) => {
                        close = Some(r);
                        break;
                    }
                }
                next = self.rx.try_recv().ok();
            }
            self.commit(changes, replies);
            self.sync_if_due();
            if let Some(r) = close {
                let result = self.finish();
                let _ = r.send(result);
                return;
            }
        }
    }

    /// The next message, or `None` when a timer is due first. A close
    /// nobody waits for when every handle is gone.
    fn wait(&mut self) -> Option<Msg> {
        let deadline = self.deadline();
        let got = match deadline {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => self
                .rx
                .recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let (reply, _) = oneshot::channel();
                Some(Msg::Close(reply))
            }
        }
    }

    /// When the thread must wake without a message: a retry of failed
    /// changes, or the interval's fsync.
    fn deadline(&self) -> Option<Instant> {
        let retry = (!self.failed.is_empty()).then(|| Instant::now() + self.retry);
        let sync = match (self.sync, self.unsynced_since) {
            (SyncMode::Interval(i), Some(since)) => Some(since + i),
            _ => None,
        };
        match (retry, sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Commits the failed changes and `changes` in one transaction and
    /// answers `replies`.
    fn commit(&mut self, changes: Changes, replies: Vec<Reply>) {
        let mut all = std::mem::take(&mut self.failed);
        all.absorb_changes(changes);
        if all.is_empty() {
            for r in replies {
                let _ = r.send(Ok(()));
            }
            return;
        }
        let durable = self.sync == SyncMode::Always;
        let result = match self.store.as_mut() {
            Some(store) => store.commit(&all, durable),
            None => Err(StorageError::Closed),
        };
        match &result {
            Ok(()) => {
                if !durable {
                    self.unsynced.absorb_changes(all);
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => {
                tracing::warn!("storage commit failed, kept for retry: {e}");
                // The reopen goes back to the last fsynced commit.
                self.failed = std::mem::take(&mut self.unsynced);
                self.failed.absorb_changes(all);
                self.unsynced_since = None;
            }
        }
        self.settle(&result);
        for r in replies {
            let _ = r.send(result.clone());
        }
    }

    /// Under `Interval`, fsyncs once the oldest unsynced commit is an
    /// interval old.
    fn sync_if_due(&mut self) {
        let due = match (self.sync, self.unsynced_since) {
            (SyncMode::Interval(i), Some(since)) => since.elapsed() >= i,
            _ => false,
        };
        if due {
            let _ = self.sync_now();
        }
    }

    /// fsyncs; on failure the unsynced changes join the failed ones (the
    /// reopen drops them from the file).
    fn sync_now(&mut self) -> Result<(), StorageError> {
        if self.unsynced_since.is_none() {
            return Ok(());
        }
        let result = match self.store.as_mut() {
            Some(store) => store.sync(),
            None => Err(StorageError::Closed),
        };
        let unsynced = std::mem::take(&mut self.unsynced);
        self.unsynced_since = None;
        if let Err(e) = &result {
            tracing::warn!("storage sync failed, kept for retry: {e}");
            let later = std::mem::take(&mut self.failed);
            self.failed = unsynced;
            self.failed.absorb_changes(later);
        }
        self.settle(&result);
        result
    }

    /// Records the outcome of a commit or sync: health and retry delay.
    fn settle<T>(&mut self, result: &Result<T, StorageError>) {
        let ok = result.is_ok();
        self.health.set(result.as_ref().err().cloned());
        self.retry = if ok {
            RETRY
        } else {
            (self.retry * 2).min(RETRY_MAX)
        };
    }

    /// Commits what failed before and fsyncs everything, in one durable
    /// commit, then closes the file.
    fn finish(&mut self) -> Result<(), StorageError> {
        let result = self.flush_all();
        self.store = None;
        result
    }

    fn flush_all(&mut self) -> Result<(), StorageError> {
        if self.failed.is_empty() && self.unsynced_since.is_none() {
            return Ok(());
        }
        let store = self.store.as_mut().ok_or(StorageError::Closed)?;
        store.commit(&self.failed, true)?;
        self.failed = Changes::default();
        self.unsynced = Changes::default();
        self.unsynced_since = None;
        self.health.set(None);
        Ok(())
    }
}

/// The outcome of the last commit, shared between the writer thread and
/// its handles: `None` while commits succeed.
#[derive(Debug, Default)]
struct Health(std::sync::Mutex<Option<StorageError>>);

impl Health {
    fn get(&self) -> Option<StorageError> {
        self.0
            .lock()
            .map_or(Some(StorageError::Closed), |e| e.clone())
    }

    fn set(&self, e: Option<StorageError>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = e;
        }
    }
}
