//! Per-node state on the wire: local writes, their rumors, and the periodic
//! Scuttlebutt anti-entropy exchange (push, pull or push-pull).

use std::collections::HashSet;
use std::sync::Arc;

use super::{Node, Timer};
use crate::event::Event;
use crate::member::MemberState;
use crate::message::{Message, StateSync, SyncPhase};
use crate::state::{Delta, Outcome};
use crate::time::Instant;
use crate::Error;

/// Most state bytes one exchange step carries (over a stream when it does
/// not fit a datagram); the rest follows in later rounds.
const STREAM_BUDGET: usize = 256 << 10;

/// A sampled digest leads with owners whose version advanced here within
/// this many sync intervals (enough for news to cross a large cluster).
const NEWS_ROUNDS: u32 = 30;

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

impl Node {
    /// Set (or with `None`, delete) one of this node's state keys.
    pub fn state_write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        self.start(now);
        let delta = self.state.write(now, key, value.map(str::to_owned))?;
        if self.config.state_rumors {
            self.rumor_state(delta);
        }
        self.emit_state_changes();
        self.forward_fresh(now);
        Ok(())
    }

    /// Every owner's per-node state.
    pub fn state(&self) -> &crate::state::ClusterState {
        &self.state
    }

    fn rumor_state(&mut self, d: Delta) {
        for (key, entry) in d.entries {
            let id: Arc<str> = format!("\u{1}state\u{1}{}\u{1}{key}", d.owner).into();
            let single = Delta {
                owner: d.owner.clone(),
                reset: false,
                from: 0,
                through: 0,
                entries: vec![(key, entry)],
            };
            self.broadcast(id, Message::StateDelta(single));
        }
    }

    /// Apply a peer's delta, count the outcomes, pass rumors on.
    pub(super) fn apply_delta(&mut self, now: Instant, d: &Delta, rumor: bool) {
        // Only members own state: a delta for a name this node does not
        // hold would create an owner nobody reclaims.
        if !self.members.contains_key(&d.owner) {
            self.refused(crate::limits::Limit::State);
            return;
        }
        let (outcomes, supersede) = self.state.apply(now, d);
        let mut applied = Vec::new();
        for (o, entry) in outcomes.iter().zip(&d.entries) {
            match o {
                Outcome::Applied => {
                    self.stats.state_applied += 1;
                    applied.push(entry.clone());
                }
                Outcome::Stale => self.stats.state_stale += 1,
                Outcome::Invalid => self.stats.state_invalid += 1,
                Outcome::OverQuota => self.refused(crate::limits::Limit::State),
                Outcome::Implausible => self.refused(crate::limits::Limit::Counter),
            }
        }
        if rumor && self.config.state_rumors && !applied.is_empty() {
            self.rumor_state(Delta {
                entries: applied,
                ..d.clone()
            });
        }
        if let Some(own) = supersede {
            self.rumor_state(own);
        }
        self.emit_state_changes();
    }

    fn emit_state_changes(&mut self) {
        for change in self.state.drain_changes() {
            self.events.push_back(Event::State(change));
        }
    }

    /// Start an exchange with a random live member. A node with no state
    /// still starts one when the mode pulls: its (empty) digest is how it
    /// asks for what the peer has. Only a push with nothing to push is skipped.
    pub(super) fn state_sync_tick(&mut self, now: Instant) {
        let interval = self.config.state_sync_interval;
        self.set_timer(now + interval, Timer::StateSyncTick);
        self.state.gc(now, self.config.state_tombstone_grace);
        let mode = self.config.state_sync_mode;
        if self.leaving || (self.state.is_empty() && !mode.pulls()) {
            return;
        }
        if !self.state.is_empty() {
            self.state_idle.reset();
        } else if !self.state_idle.due() {
            return;
        }
        let peers = self.random_members(self.config.state_sync_fanout, |e| {
            e.state == MemberState::Alive
        });
        for i in peers {
            let to = self.members[i].addr.get();
            // A pushing initiator's digest leads with its news, so that the
            // peer can ask for it; a pure pull spends it all on the cursor.
            let news = mode.pushes();
            let (digest, complete) =
                self.digest_sample(now, self.config.packet_size / 2, &[], news);
            let syn = StateSync {
                sender: self.name.clone(),
                phase: SyncPhase::Syn,
                mode,
                digest_hash: self.state.digest_hash(),
                complete,
                digest,
                deltas: Vec::new(),
            };
            if self.state.is_empty() {
                self.send_bare(to, &Message::StateSync(syn));
            } else {
                self.send_sync(to, syn);
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
        now: Instant,
        budget: usize,
        first: &[Arc<str>],
        news: bool,
    ) -> (Vec<(Arc<str>, u64)>, bool) {
        let full = self.state.digest();
        let size: usize = full.iter().map(|(n, v)| digest_entry_size(n, *v)).sum();
        if size <= budget {
            self.count_digest(size);
            return (full, true);
        }
        let mut sample = Sample {
            out: Vec::new(),
            listed: HashSet::new(),
            room: budget,
        };
        let version = |state: &crate::state::ClusterState, name: &str| {
            state.owner(name).map_or(0, |o| o.max_version())
        };
        for name in first {
            if !sample.add(name.clone(), version(&self.state, name)) {
                break;
            }
        }
        if news {
            let window = self.config.state_sync_interval * NEWS_ROUNDS;
            let since =
                Instant::from_micros(now.as_micros().saturating_sub(window.as_micros() as u64));
            let keep = sample.room / 2;
            for (name, v) in self.state.changed_since(since) {
                if sample.room <= keep || !sample.add(name, v) {
                    break;
                }
            }
        }
        let n = self.members.len();
        let mut scanned = 0;
        while scanned < n {
            let i = (self.state_cursor + scanned) % n;
            let name = self.members.get_index(i).map(|(k, _)| k.clone());
            let Some(name) = name else { break };
            let v = version(&self.state, &name);
            if !sample.listed.contains(&name) && !sample.add(name, v) {
                break;
            }
            scanned += 1;
        }
        self.state_cursor = if n == 0 {
            0
        } else {
            (self.state_cursor + scanned) % n
        };
        self.count_digest(budget - sample.room);
        (sample.out, false)
    }

    fn count_digest(&mut self, bytes: usize) {
        self.stats.state_digests += 1;
        self.stats.state_digest_bytes += bytes as u64;
    }

    pub(super) fn on_state_sync(
        &mut self,
        now: Instant,
        from: std::net::SocketAddr,
        sync: StateSync,
    ) {
        let peer = sync.sender.clone();
        for d in &sync.deltas {
            self.apply_delta(now, d, false);
        }
        match sync.phase {
            SyncPhase::Syn => {
                if sync.digest_hash == self.state.digest_hash() {
                    return; // identical state
                }
                let deltas = if sync.mode.pulls() {
                    self.state
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
                        .filter(|(n, v)| *v > self.state.owner(n).map_or(0, |o| o.max_version()))
                        .map(|(n, _)| n.clone())
                        .collect();
                    self.digest_sample(now, self.config.packet_size / 4, &behind, false)
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
                    sender: self.name.clone(),
                    phase: SyncPhase::SynAck,
                    mode: sync.mode,
                    digest_hash: self.state.digest_hash(),
                    complete,
                    digest,
                    deltas,
                };
                self.send_sync(from, ack);
            }
            SyncPhase::SynAck if sync.mode.pushes() => {
                let deltas =
                    self.state
                        .deltas_for(&peer, &sync.digest, sync.complete, STREAM_BUDGET);
                if !deltas.is_empty() {
                    let ack = StateSync {
                        sender: self.name.clone(),
                        phase: SyncPhase::Ack,
                        mode: sync.mode,
                        digest_hash: self.state.digest_hash(),
                        complete: false,
                        digest: Vec::new(),
                        deltas,
                    };
                    self.send_sync(from, ack);
                }
            }
            SyncPhase::SynAck | SyncPhase::Ack => {}
        }
    }

    /// Send a sync step in a datagram if it fits, else over a stream.
    fn send_sync(&mut self, to: std::net::SocketAddr, sync: StateSync) {
        self.send_sized(to, Message::StateSync(sync));
    }
}
