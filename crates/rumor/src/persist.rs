//! A node's data dir at work: what the core changed in one driver turn —
//! key-space entries, collected tombstones, this node's own per-node state,
//! its incarnation and Lamport clock — goes to the storage writer as one
//! batch, and the local key-space writes of that turn are answered once the
//! batch is committed (durable under [`SyncMode::Always`]).
//!
//! A write the core applied but the disk refused (full, failing) is
//! answered with the storage error: it was not acknowledged, although the
//! node holds it and may already have gossiped it. While the writer is
//! unhealthy, new local writes are refused before the core sees them;
//! changes learned from peers are still queued, and the writer retries
//! them when the disk recovers.
//!
//! [`SyncMode::Always`]: crate::storage::SyncMode::Always

use rumor_core::{Event as CoreEvent, Node as Core, Resume};
use tokio::sync::oneshot;

use crate::storage::{Batch, Meta, StorageOptions, Store, Writer};
use crate::Error;

/// Where the answer to a key-space write goes.
pub(crate) type WriteReply = oneshot::Sender<Result<(), Error>>;

/// The driver's side of the data dir.
pub(crate) struct Persist {
    writer: Writer,
    batch: Batch,
    held: Vec<WriteReply>,
    /// The counters as last submitted.
    meta: Meta,
}

impl Persist {
    /// Keep the node's state through `writer`, starting from `meta`, the
    /// counters the data dir held.
    pub(crate) fn new(writer: Writer, meta: Meta) -> Self {
        Persist {
            writer,
            batch: Batch::default(),
            held: Vec::new(),
            meta,
        }
    }

    /// Whether local writes may proceed: `Err` while the disk refuses
    /// commits.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.writer.last_error() {
            Some(e) => Err(Error::Storage(e)),
            None => Ok(()),
        }
    }

    /// Take note of a core event (before the driver hands it on).
    pub(crate) fn note(&mut self, me: &str, event: &CoreEvent) {
        match event {
            CoreEvent::Kv(c) => {
                let entry = rumor_core::codec::encode_entry(&c.new);
                self.batch.kv_put.push((c.key.clone(), entry));
            }
            CoreEvent::KvCollected(keys) => {
                self.batch
                    .kv_remove
                    .extend(keys.iter().map(|k| k.to_string()));
            }
            CoreEvent::State(c) if &*c.owner == me => {
                self.batch
                    .state_put
                    .push((c.key.clone(), c.value.clone(), c.new_version));
            }
            _ => {}
        }
    }

    /// Answer `reply` when this turn's batch is committed.
    pub(crate) fn hold(&mut self, reply: WriteReply) {
        self.held.push(reply);
    }

    /// End of a driver turn: submit what changed, if anything, and answer
    /// the held writes when the commit returns.
    pub(crate) fn submit(&mut self, core: &Core) {
        let m = &self.meta;
        let counters = (core.incarnation(), core.state_version(), core.event_clock());
        if m.node_name != core.name() || (m.incarnation, m.state_version, m.event_ltime) != counters
        {
            let meta = Meta {
                node_name: core.name().to_owned(),
                incarnation: counters.0,
                state_version: counters.1,
                event_ltime: counters.2,
                // Queries share the user-event clock.
                query_ltime: counters.2,
                ..self.meta.clone()
            };
            self.batch.meta = Some(meta.clone());
            self.meta = meta;
        }
        if self.batch.is_empty() && self.held.is_empty() {
            return;
        }
        let commit = self.writer.submit(std::mem::take(&mut self.batch));
        let held = std::mem::take(&mut self.held);
        tokio::spawn(async move {
            let result = commit.await;
            for reply in held {
                let _ = reply.send(result.clone().map_err(Error::Storage));
            }
        });
    }

    /// Commit and sync everything submitted, then close the data dir.
    pub(crate) async fn close(mut self, core: &Core) {
        self.submit(core);
        if let Err(e) = self.writer.close().await {
            tracing::error!(node = %core.name(), "closing the data dir: {e}");
        }
    }
}

/// Open the data dir, hand the core (not started yet) what it kept, and
/// return what keeps it from now on. A data dir of another node is
/// refused: two identities in one file would each overwrite the other.
pub(crate) async fn open(options: StorageOptions, core: &mut Core) -> Result<Persist, Error> {
    let dir = options.dir.clone();
    let (store, loaded) = tokio::task::spawn_blocking(move || Store::open(&options))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    let meta = loaded.meta;
    if !meta.node_name.is_empty() && meta.node_name != core.name() {
        return Err(Error::InvalidConfig(format!(
            "data dir {} belongs to the node named {:?}, not {:?}: give each node its own data dir",
            dir.display(),
            meta.node_name,
            core.name()
        )));
    }
    let mut undecodable = 0usize;
    let kv = loaded
        .kv
        .into_iter()
        .filter_map(
            |(key, bytes)| match rumor_core::codec::decode_entry(&bytes) {
                Ok(entry) => Some((key, entry)),
                Err(_) => {
                    undecodable += 1;
                    None
                }
            },
        )
        .collect();
    let state = loaded
        .state
        .into_iter()
        .map(|(key, value, version)| (key, rumor_core::state::Entry { value, version }))
        .collect();
    let resumed = core.resume(
        rumor_core::Instant::ZERO,
        Resume {
            incarnation: meta.incarnation,
            lamport: meta.event_ltime.max(meta.query_ltime),
            state,
            state_version: meta.state_version,
            kv,
        },
    );
    let refused = resumed.kv_refused + undecodable;
    if refused > 0 || resumed.state_skipped > 0 {
        tracing::warn!(
            node = %core.name(),
            dir = %dir.display(),
            refused,
            state_skipped = resumed.state_skipped,
            "some entries in the data dir are unreadable or over this node's limits: skipped (peers still hold them; anti-entropy brings them back)"
        );
    }
    tracing::info!(
        node = %core.name(),
        dir = %dir.display(),
        created = loaded.created,
        keys = resumed.kv_loaded,
        incarnation = core.incarnation(),
        state_version = core.state_version(),
        "data dir opened"
    );
    Ok(Persist::new(store.spawn_writer(), meta))
}
