//! Per-node state as a service of the node: local writes, their rumors
//! ([`Message::StateDelta`]), and the periodic Scuttlebutt anti-entropy
//! exchange ([`Message::StateSync`]: push, pull or push-pull). The store
//! itself, without I/O, is [`ClusterState`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{ClusterState, Delta, Outcome, Quota};
use crate::config::Config;
use crate::event::Event;
use crate::idle::IdlePulls;
use crate::limits::Limit;
use crate::message::{Message, StateSync, SyncPhase};
use crate::node::service::{Context, Service};
use crate::time::Instant;
use crate::Error;

/// Most state bytes one exchange step carries (over a stream when it does
/// not fit a datagram); the rest follows in later rounds.
const STREAM_BUDGET: usize = 256 << 10;

/// A sampled digest leads with owners whose version advanced here within
/// this many sync intervals (enough for news to cross a large cluster).
const NEWS_ROUNDS: u32 = 30;

/// The state service's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tick {
    /// Start an exchange with random peers.
    Sync,
}

/// The per-node state this node holds, and its exchange bookkeeping.
pub(crate) struct NodeState {
    store: ClusterState,
    /// Where the next sampled digest's round-robin part starts (an index
    /// into the known members).
    cursor: usize,
    /// Backoff of pulls while the store is empty.
    idle: IdlePulls,
}

/// A stand-in while the node lends itself to the service (see
/// `Node::with_service`); never seen by anyone.
impl Default for NodeState {
    fn default() -> Self {
        NodeState {
            store: ClusterState::stand_in(),
            cursor: 0,
            idle: IdlePulls::default(),
        }
    }
}

type Cx<'a, 'b> = &'a mut Context<'b, Tick>;

impl NodeState {
    /// The state of node `me`, holding at most `quota` per owner.
    pub fn new(me: Arc<str>, quota: Quota) -> Self {
        NodeState {
            store: ClusterState::new(me).with_quota(quota),
            cursor: 0,
            idle: IdlePulls::default(),
        }
    }

    /// Every owner's state.
    pub fn store(&self) -> &ClusterState {
        &self.store
    }

    /// The store, to restore or re-bound it (before start, or on a reload).
    pub fn store_mut(&mut self) -> &mut ClusterState {
        &mut self.store
    }

    /// Set (or with `None`, delete) one of this node's keys.
    pub fn write(&mut self, cx: Cx, key: &str, value: Option<&str>) -> Result<(), Error> {
        let delta = self.store.write(cx.now(), key, value.map(str::to_owned))?;
        if cx.config().state_rumors {
            rumor(cx, delta);
        }
        self.emit_changes(cx);
        Ok(())
    }

    /// A peer's rumor of a fresh write.
    pub fn on_delta(&mut self, cx: Cx, d: &Delta) {
        self.apply(cx, d, true);
    }

    /// Apply a peer's delta, count the outcomes, pass rumors on.
    fn apply(&mut self, cx: Cx, d: &Delta, rumor_on: bool) {
        // Only members own state: a delta for a name this node does not
        // hold would create an owner nobody reclaims.
        if !cx.peers().knows(&d.owner) {
            cx.refused(Limit::State);
            return;
        }
        let (outcomes, supersede) = self.store.apply(cx.now(), d);
        let mut applied = Vec::new();
        for (o, entry) in outcomes.iter().zip(&d.entries) {
            match o {
                Outcome::Applied => {
                    cx.stats().state_applied += 1;
                    applied.push(entry.clone());
                }
                Outcome::Stale => cx.stats().state_stale += 1,
                Outcome::Invalid => cx.stats().state_invalid += 1,
                Outcome::OverQuota => cx.refused(Limit::State),
                Outcome::Implausible => cx.refused(Limit::Counter),
            }
        }
        if rumor_on && cx.config().state_rumors && !applied.is_empty() {
            rumor(
                cx,
                Delta {
                    entries: applied,
                    ..d.clone()
                },
            );
        }
        if let Some(own) = supersede {
            rumor(cx, own);
        }
        self.emit_changes(cx);
    }

    fn emit_changes(&mut self, cx: Cx) {
        for change in self.store.drain_changes() {
            cx.emit(Event::State(change));
        }
    }

    /// Start an exchange with random live members. A node with no state
    /// still starts one when the mode pulls: its (empty) digest is how it
    /// asks for what the peer has. Only a push with nothing to push is skipped.
    fn sync_tick(&mut self, cx: Cx) {
        let now = cx.now();
        let interval = cx.config().state_sync_interval;
        cx.set_timer(now + interval, Tick::Sync);
        self.store.gc(now, cx.config().state_tombstone_grace);
        let mode = cx.config().state_sync_mode;
        if cx.leaving() || (self.store.is_empty() && !mode.pulls()) {
            return;
        }
        if !self.store.is_empty() {
            self.idle.reset();
        } else if !self.idle.due() {
            return;
        }
        let fanout = cx.config().state_sync_fanout;
        for (_, to) in cx.peers().random_alive(fanout) {
            // A pushing initiator's digest leads with its news, so that the
            // peer can ask for it; a pure pull spends it all on the cursor.
            let news = mode.pushes();
            let budget = cx.config().packet_size / 2;
            let (digest, complete) = self.digest_sample(cx, budget, &[], news);
            let syn = StateSync {
                sender: cx.name().clone(),
                phase: SyncPhase::Syn,
                mode,
                digest_hash: self.store.digest_hash(),
                complete,
                digest,
                deltas: Vec::new(),
            };
            if self.store.is_empty() {
                cx.send_bare(to, &Message::StateSync(syn));
            } else {
                cx.send_sized(to, Message::StateSync(syn));
            }
        }
    }

    /// The digest if it fits `budget` encoded bytes (`complete = true`),
    /// else a sample (`complete = false`), in this order while room lasts:
    /// 1. `first`: owners the peer showed itself ahead on (we ask for them);
    /// 2. with `news`, owners whose version advanced here in the last
    ///    [`NEWS_ROUNDS`] sync intervals, most recent first, in at most half
    ///    of the room;
    /// 3. the rest of the room round-robin over the members from a cursor
    ///    that persists across rounds (version 0 for those we hold nothing
    ///    of), so every owner is listed within `ceil(N / k)` digests of `k`
    ///    cursor entries.
    fn digest_sample(
        &mut self,
        cx: Cx,
        budget: usize,
        first: &[Arc<str>],
        news: bool,
    ) -> (Vec<(Arc<str>, u64)>, bool) {
        let full = self.store.digest();
        let size: usize = full.iter().map(|(n, v)| digest_entry_size(n, *v)).sum();
        if size <= budget {
            count_digest(cx, size);
            return (full, true);
        }
        let mut sample = Sample {
            out: Vec::new(),
            listed: HashSet::new(),
            room: budget,
        };
        let version =
            |store: &ClusterState, name: &str| store.owner(name).map_or(0, |o| o.max_version());
        for name in first {
            if !sample.add(name.clone(), version(&self.store, name)) {
                break;
            }
        }
        if news {
            let window = cx.config().state_sync_interval * NEWS_ROUNDS;
            let now = cx.now();
            let since =
                Instant::from_micros(now.as_micros().saturating_sub(window.as_micros() as u64));
            let keep = sample.room / 2;
            for (name, v) in self.store.changed_since(since) {
                if sample.room <= keep || !sample.add(name, v) {
                    break;
                }
            }
        }
        let n = cx.peers().known();
        let mut scanned = 0;
        while scanned < n {
            let i = (self.cursor + scanned) % n;
            let Some(name) = cx.peers().known_at(i) else {
                break;
            };
            let v = version(&self.store, &name);
            if !sample.listed.contains(&name) && !sample.add(name, v) {
                break;
            }
            scanned += 1;
        }
        self.cursor = if n == 0 {
            0
        } else {
            (self.cursor + scanned) % n
        };
        count_digest(cx, budget - sample.room);
        (sample.out, false)
    }

    /// One step of a peer's exchange.
    pub fn on_sync(&mut self, cx: Cx, from: SocketAddr, sync: StateSync) {
        let peer = sync.sender.clone();
        for d in &sync.deltas {
            self.apply(cx, d, false);
        }
        match sync.phase {
            SyncPhase::Syn => {
                if sync.digest_hash == self.store.digest_hash() {
                    return; // identical state
                }
                let deltas = if sync.mode.pulls() {
                    self.store
                        .deltas_for(&peer, &sync.digest, sync.complete, STREAM_BUDGET)
                } else {
                    Vec::new()
                };
                let (digest, complete) = if sync.mode.pushes() {
                    // Lead with the owners the initiator is ahead on, so
                    // that it pushes exactly those.
                    let behind: Vec<Arc<str>> = sync
                        .digest
                        .iter()
                        .filter(|(n, v)| *v > self.store.owner(n).map_or(0, |o| o.max_version()))
                        .map(|(n, _)| n.clone())
                        .collect();
                    let budget = cx.config().packet_size / 4;
                    self.digest_sample(cx, budget, &behind, false)
                } else {
                    (Vec::new(), false)
                };
                // The states differ (the hashes did): when the initiator
                // pushes it needs our digest, even an empty one, to know
                // what to send; a pure pull is answered only with data.
                if deltas.is_empty() && !sync.mode.pushes() {
                    return;
                }
                let ack = StateSync {
                    sender: cx.name().clone(),
                    phase: SyncPhase::SynAck,
                    mode: sync.mode,
                    digest_hash: self.store.digest_hash(),
                    complete,
                    digest,
                    deltas,
                };
                cx.send_sized(from, Message::StateSync(ack));
            }
            SyncPhase::SynAck if sync.mode.pushes() => {
                let deltas =
                    self.store
                        .deltas_for(&peer, &sync.digest, sync.complete, STREAM_BUDGET);
                if !deltas.is_empty() {
                    let ack = StateSync {
                        sender: cx.name().clone(),
                        phase: SyncPhase::Ack,
                        mode: sync.mode,
                        digest_hash: self.store.digest_hash(),
                        complete: false,
                        digest: Vec::new(),
                        deltas,
                    };
                    cx.send_sized(from, Message::StateSync(ack));
                }
            }
            SyncPhase::SynAck | SyncPhase::Ack => {}
        }
    }
}

impl Service for NodeState {
    type Timer = Tick;

    fn on_start(&mut self, cx: Cx) {
        let interval = cx.config().state_sync_interval;
        cx.start_periodic(Tick::Sync, interval);
    }

    fn on_timer(&mut self, cx: Cx, timer: Tick) {
        match timer {
            Tick::Sync => self.sync_tick(cx),
        }
    }

    fn on_config(&mut self, cx: Cx, old: &Config) {
        let after = cx.config().state_sync_interval;
        cx.follow_interval(Tick::Sync, old.state_sync_interval, after);
    }

    fn on_member_gone(&mut self, _cx: Cx, name: &str) {
        self.store.remove_owner(name);
    }
}

/// Queue `d`'s entries as rumors, one per key (a later write of the same
/// key replaces the queued one).
fn rumor(cx: Cx, d: Delta) {
    for (key, entry) in d.entries {
        let id: Arc<str> = format!("\u{1}state\u{1}{}\u{1}{key}", d.owner).into();
        let single = Delta {
            owner: d.owner.clone(),
            reset: false,
            from: 0,
            through: 0,
            entries: vec![(key, entry)],
        };
        cx.broadcast(id, Message::StateDelta(single));
    }
}

fn count_digest(cx: Cx, bytes: usize) {
    cx.stats().state_digests += 1;
    cx.stats().state_digest_bytes += bytes as u64;
}

/// Encoded size of one digest entry: the name (length-prefixed) and the
/// version, both varints.
fn digest_entry_size(name: &str, version: u64) -> usize {
    varint_len(name.len() as u64) + name.len() + varint_len(version)
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A sampled digest being filled within a byte budget.
struct Sample {
    out: Vec<(Arc<str>, u64)>,
    listed: HashSet<Arc<str>>,
    room: usize,
}

impl Sample {
    /// List `name` at `version` if it is not listed yet and fits; false when
    /// the room is used up.
    fn add(&mut self, name: Arc<str>, version: u64) -> bool {
        let cost = digest_entry_size(&name, version);
        if cost > self.room {
            return false;
        }
        if self.listed.insert(name.clone()) {
            self.room -= cost;
            self.out.push((name, version));
        }
        true
    }
}
