//! The node's key-space API; the protocol is the key-space service
//! ([`crate::kv::service`]).

use super::{Node, Timer};
use crate::kv::service::{Imported, KeySpace, Tick};
use crate::kv::{KvStore, Record, SkewTable, VersionVector};
use crate::node::service::Context;
use crate::time::Instant;
use crate::Error;

impl Node {
    /// The replicated key space.
    pub fn kv(&self) -> &KvStore {
        self.kv.store()
    }

    /// Write `key` (last-write-wins keys).
    pub fn kv_put(&mut self, now: Instant, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.kv_write(now, key, Some(value), None)
    }

    /// Delete `key`, leaving a tombstone (last-write-wins keys).
    pub fn kv_delete(&mut self, now: Instant, key: &str) -> Result<(), Error> {
        self.kv_write(now, key, None, None)
    }

    /// Write (or with `None`, delete) a siblings-mode `key`, with the causal
    /// context `read` the writer saw ([`KvStore::context`]).
    pub fn kv_put_in_context(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
        read: &VersionVector,
    ) -> Result<(), Error> {
        self.kv_write(now, key, value, Some(read))
    }

    fn kv_write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<Vec<u8>>,
        read: Option<&VersionVector>,
    ) -> Result<(), Error> {
        self.start(now);
        self.with_kv(now, |s, cx| s.write(cx, key, value, read))?;
        self.forward_fresh(now);
        Ok(())
    }

    /// Merge records from outside the protocol (a backup being imported):
    /// each is checked and merged exactly like a peer's, and what was news
    /// spreads to the cluster.
    pub fn kv_import(&mut self, now: Instant, records: Vec<Record>) -> Imported {
        self.start(now);
        let imported = self.with_kv(now, |s, cx| s.on_records(cx, records));
        self.forward_fresh(now);
        imported
    }

    /// Tell the node the wall-clock time (Unix microseconds) at its
    /// `Instant::ZERO`, for the key space's hybrid logical clock: the
    /// physical time of an input at `now` is `origin + now`.
    ///
    /// Drivers on real machines call this before **every** input or command
    /// (with `unix_now - elapsed_since_origin`, as read then), so that local
    /// writes are stamped with the system clock as read at the write and
    /// remote stamps are checked against it; a system clock that steps
    /// back simply gives a smaller origin, and stamps still increase (the
    /// HLC keeps the largest wall it issued). A simulator may leave it at
    /// 0, or give each node its own origin to model clock offsets.
    pub fn set_wall_clock(&mut self, origin_unix_micros: u64) {
        self.kv.set_wall_clock(origin_unix_micros);
    }

    /// The origin last given to [`Node::set_wall_clock`].
    pub fn wall_clock(&self) -> u64 {
        self.kv.wall_clock()
    }

    /// Each member's clock offset as last measured on a Merkle sync session
    /// this node started (members only; a reaped member's sample goes at
    /// the next sync tick).
    pub fn clock_skew(&self) -> &SkewTable {
        self.kv.clock_skew()
    }

    /// Run `f` on the key-space service.
    pub(super) fn with_kv<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut KeySpace, &mut Context<'_, Tick>) -> R,
    ) -> R {
        self.with_service(now, |n| &mut n.kv, Timer::Kv, f)
    }
}
