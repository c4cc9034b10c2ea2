//! Per-node state on the wire: local writes, their rumors, and the periodic
//! Scuttlebutt anti-entropy exchange (push, pull or push-pull).

use std::sync::Arc;

use rand::seq::SliceRandom;

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

impl Node {
    /// Set (or with `None`, delete) one of this node's state keys.
    pub fn state_write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        self.start(now);
        let delta = self
            .state
            .write(now, key, value.map(str::to_owned))
            .map_err(Error::InvalidState)?;
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
        let peers = self.random_members(self.config.state_sync_fanout, |e| {
            e.state == MemberState::Alive
        });
        for i in peers {
            let to = self.members[i].addr.get();
            let (digest, complete) = if mode.pulls() {
                self.digest_sample(self.config.packet_size / 2)
            } else {
                (Vec::new(), false)
            };
            let syn = StateSync {
                sender: self.name.clone(),
                phase: SyncPhase::Syn,
                mode,
                digest_hash: self.state.digest_hash(),
                complete,
                digest,
                deltas: Vec::new(),
            };
            self.send_sync(to, syn);
        }
    }

    /// The digest if it fits `budget` bytes, else a random sample of members
    /// (with version 0 for those we hold nothing of) and `complete = false`.
    fn digest_sample(&mut self, budget: usize) -> (Vec<(Arc<str>, u64)>, bool) {
        let full = self.state.digest();
        let size: usize = full.iter().map(|(n, _)| n.len() + 4).sum();
        if size <= budget {
            return (full, true);
        }
        let mut names: Vec<Arc<str>> = self.members.keys().cloned().collect();
        names.shuffle(&mut self.rng);
        let mut out = Vec::new();
        let mut room = budget;
        for name in names {
            let cost = name.len() + 4;
            if cost > room {
                break;
            }
            room -= cost;
            let version = self.state.owner(&name).map_or(0, |o| o.max_version());
            out.push((name, version));
        }
        (out, false)
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
                    self.digest_sample(self.config.packet_size / 4)
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
