//! Applying claims about members: alive, suspect and dead messages, the
//! push-pull merge, refutation of claims about this node, suspicion
//! timeouts, and reclaiming tombstones.
//!
//! The rules (SWIM with memberlist's refinements):
//! - an alive claim overrides only a lower incarnation (or a tombstone at
//!   another address: a restart);
//! - a suspect or dead claim overrides an alive member at the same or a
//!   lower incarnation; dead and left are final for that incarnation;
//! - claims about this node at its current incarnation or later are refuted
//!   with a higher incarnation.

use std::sync::Arc;

use rand::Rng;

use std::net::SocketAddr;

use super::{alive_of, record_of, Node, Source, Timer};
use crate::codec;
use crate::event::{Event, MemberEventKind, SuspicionCause};
use crate::kv::hash::StableHasher;
use crate::limits::{plausible, Limit, INCARNATION_JUMP};
use crate::member::{validate_name, MemberState, MAX_TAGS_BYTES};
use crate::message::{Alive, MemberRecord, Message, MessageType, PushPull};
use crate::suspicion::Suspicion;
use crate::time::Instant;

/// Retransmit multiplier for alive claims that overturn a suspicion.
const REFUTATION_BOOST: u32 = 3;

/// How many members are chosen to send a death or leave straight to the
/// member it is about (see `Node::tell_the_accused`).
const TELLERS: usize = 2;

impl Node {
    /// Apply an alive claim that came from `source`; `gossip`
    /// re-broadcasts it when accepted.
    pub(super) fn on_alive(&mut self, now: Instant, a: &Alive, source: Source, gossip: bool) {
        if validate_name(&a.name).is_err() || codec::tags_encoded_len(&a.tags) > MAX_TAGS_BYTES {
            self.stats.invalid_claims += 1;
            return;
        }
        if a.name == self.name {
            if !self.plausible_claim(0, a.incarnation) {
                return;
            }
            let me = &self.members[0];
            if a.addr != me.addr() {
                // Another live member with this name, or this node's
                // previous life: ask that address before arguing.
                self.check_name(now, a.addr);
                return;
            }
            let differs = a.tags != *me.tags() || a.protocol != me.protocol();
            if a.incarnation > me.incarnation || (a.incarnation == me.incarnation && differs) {
                self.refute(now, a.incarnation);
            }
            return;
        }
        let Some(i) = self.members.get_index_of(&a.name) else {
            self.admit(now, a, source, gossip);
            return;
        };
        if !self.plausible_claim(i, a.incarnation) {
            return;
        }
        let e = &self.members[i];
        let moved = a.addr != e.addr();
        let restarted = e.state.is_gone() && moved;
        if moved && !restarted {
            self.refused(Limit::NameHeld);
            return;
        }
        if a.incarnation <= e.incarnation && !restarted {
            return;
        }
        let before = e.state;
        let changed = a.tags != *e.tags() || a.protocol != e.protocol() || moved;
        self.suspicions.remove(&a.name);
        if changed {
            self.members
                .set_identity(i, a.addr, a.protocol, a.tags.clone());
        }
        self.members[i].incarnation = a.incarnation;
        self.set_state(now, i, MemberState::Alive);
        match before {
            MemberState::Dead | MemberState::Left => self.emit(MemberEventKind::Joined, i),
            MemberState::Suspect => self.emit(MemberEventKind::Alive, i),
            MemberState::Alive if changed => self.emit(MemberEventKind::Updated, i),
            MemberState::Alive => {}
        }
        if before.is_gone() && self.partial() {
            // Back from the dead, learned from a peer rather than the tree
            // (the refutation's broadcast missed this node: a healed
            // partition): passed on to every member, whose own tree
            // broadcast may have missed them too.
            self.broadcast_on_tree(Message::Alive(a.clone()), true);
        } else if gossip {
            // A claim that overturns a suspicion must reach everyone: a
            // node that misses it declares a live member dead.
            let boost = if before == MemberState::Suspect {
                REFUTATION_BOOST
            } else {
                1
            };
            self.broadcast_boosted(a.name.clone(), Message::Alive(a.clone()), boost);
        }
    }

    /// Apply `from`'s suspicion of `name` at `incarnation`, raised for `cause`.
    pub(super) fn on_suspect(
        &mut self,
        now: Instant,
        incarnation: u64,
        name: Arc<str>,
        from: Arc<str>,
        cause: SuspicionCause,
        gossip: bool,
    ) {
        let Some(i) = self.members.get_index_of(&name) else {
            return;
        };
        if !self.plausible_claim(i, incarnation) {
            return;
        }
        let e = &self.members[i];
        if incarnation < e.incarnation || e.state.is_gone() {
            return;
        }
        if i == 0 {
            if self.config.refute_suspicions && !self.leaving {
                self.refute(now, incarnation);
            }
            return;
        }
        let msg = Message::Suspect {
            incarnation,
            name: name.clone(),
            from: from.clone(),
        };
        if e.state == MemberState::Suspect {
            // Lifeguard: an independent confirmation shortens the timeout.
            if let Some(s) = self.suspicions.get_mut(&name) {
                if s.confirm(from) {
                    let deadline = s.deadline();
                    self.set_timer(deadline, Timer::Suspicion(name.clone()));
                    if gossip {
                        self.broadcast(name, msg);
                    }
                }
            }
            return;
        }
        let from_other = from != self.name;
        let n = self.live;
        let expected = self.config.suspicion_confirmations;
        let expected = if (n as u32).saturating_sub(2) < expected {
            0
        } else {
            expected
        };
        let s = Suspicion::new(
            now,
            from.clone(),
            self.config.suspicion_min(n),
            self.config.suspicion_max(n),
            expected,
        );
        self.set_timer(s.deadline(), Timer::Suspicion(name.clone()));
        self.suspicions.insert(name.clone(), s);
        self.members[i].incarnation = incarnation;
        self.set_state(now, i, MemberState::Suspect);
        self.emit(MemberEventKind::Suspect, i);
        self.events.push_back(Event::Suspected {
            name: name.clone(),
            accuser: from,
            cause,
        });
        self.maybe_watch_suspect(now, name.clone(), !from_other);
        if gossip {
            self.broadcast(name, msg);
        }
    }

    /// Apply `from`'s declaration that `name` is dead (left, if `from == name`).
    pub(super) fn on_dead(
        &mut self,
        now: Instant,
        incarnation: u64,
        name: Arc<str>,
        from: Arc<str>,
        gossip: bool,
    ) {
        let Some(i) = self.members.get_index_of(&name) else {
            return;
        };
        if !self.plausible_claim(i, incarnation) {
            return;
        }
        let e = &self.members[i];
        let left = from == name;
        // Left outranks dead at the same incarnation: a member first found
        // failed and then heard leaving is reported as having left.
        let upgrade = left && e.state == MemberState::Dead;
        if incarnation < e.incarnation || (e.state.is_gone() && !upgrade) {
            return;
        }
        if i == 0 && !self.leaving {
            self.refute(now, incarnation);
            return;
        }
        if let Some(s) = self.suspicions.remove(&name).filter(|_| !left) {
            let lasted = now.saturating_since(s.started());
            if !self.samples.add_suspicion_to_failure(lasted) {
                self.stats.samples_dropped += 1;
            }
        }
        self.members[i].incarnation = incarnation;
        let state = if left {
            MemberState::Left
        } else {
            MemberState::Dead
        };
        self.set_state(now, i, state);
        if i != 0 {
            if left {
                self.stats.leaves += 1;
                self.emit(MemberEventKind::Left, i);
            } else {
                self.stats.deaths += 1;
                self.emit(MemberEventKind::Failed, i);
            }
        }
        if gossip {
            let msg = Message::Dead {
                incarnation,
                name: name.clone(),
                from,
            };
            self.tell_the_accused(i, incarnation, &msg);
            self.broadcast(name, msg);
        }
    }

    /// A sender still passing on a suspicion or death of this node that an
    /// earlier refutation already overturned missed that refutation (its
    /// budget is spent by now): tell it this node's current claim directly.
    /// One small datagram back to the sender, like an ack.
    pub(super) fn correct_stale_accusation(
        &mut self,
        to: SocketAddr,
        name: &str,
        incarnation: u64,
    ) {
        if name != &*self.name || incarnation >= self.members[0].incarnation || self.leaving {
            return;
        }
        let a = alive_of(&self.name, self.local_entry());
        self.send_bare(to, &Message::Alive(a));
    }

    /// Send a death or leave of member `i` to that member itself. The eager
    /// wave that carries such a claim skips members already gone, and it
    /// can spend the claim's whole retransmit budget before a later round
    /// picks the accused: a live member declared gone by a forged or
    /// mistaken claim would then never hear it and never refute (until a
    /// push-pull, a minute later). So [`TELLERS`] members chosen by
    /// rendezvous hashing on the claim (every node that knows the same
    /// members picks the same ones) tell it directly, and any other node
    /// does with probability `TELLERS / live`, in case a chosen one is
    /// down or its packet is lost. A member that is really gone drops a
    /// few packets.
    fn tell_the_accused(&mut self, i: usize, incarnation: u64, msg: &Message) {
        let Some((accused, e)) = self.members.get_index(i) else {
            return;
        };
        let to = e.addr();
        let score = |teller: &str| {
            let mut h = StableHasher::new();
            h.write_bytes(teller.as_bytes());
            h.write_bytes(accused.as_bytes());
            h.write_u64(incarnation);
            h.finish()
        };
        let mine = score(&self.name);
        let higher = self
            .members
            .iter()
            .filter(|(n, e)| e.state == MemberState::Alive && *n != accused)
            .filter(|(n, _)| score(n) > mine)
            .take(TELLERS)
            .count();
        let p = (TELLERS as f64 / self.live.max(1) as f64).min(1.0);
        if higher < TELLERS || self.rng.random_bool(p) {
            self.send_bare(to, msg);
        }
    }

    /// A suspicion timer fired: declare the member dead if it is still due.
    pub(super) fn suspicion_timeout(&mut self, now: Instant, name: Arc<str>) {
        let Some(s) = self.suspicions.get(&name) else {
            return;
        };
        if s.deadline() > now {
            return; // a stale timer; a later one is set
        }
        let Some(e) = self.members.get(&name) else {
            return;
        };
        if e.state != MemberState::Suspect {
            return;
        }
        let incarnation = e.incarnation;
        let me = self.name.clone();
        // In partial membership every member's own timer declares it: a
        // tree broadcast from each would flood the tree N times.
        let gossip = !self.partial();
        self.on_dead(now, incarnation, name, me, gossip);
    }

    /// Merge a peer's full state. Records are applied like gossip, and what
    /// is accepted is news here and so re-gossiped: a node that learns a
    /// member by push-pull must spread it too, or a join storm leaves most
    /// nodes knowing members they never pass on. But only about a packet's
    /// worth per merge (a random share of the records, plus the sender's own,
    /// which comes first): a node joining 10,000 members would otherwise
    /// queue 10,000 claims that everyone else already knows.
    ///
    /// Records of names this node does not hold are admitted as the answer
    /// to a request it made is trusted; in a request, only the requester's
    /// own record speaks for itself and the others wait for their acks
    /// (see [`crate::admission`]).
    /// Returns whether `pp` answered a request of this node's.
    pub(super) fn merge_push_pull(
        &mut self,
        now: Instant,
        pp: &PushPull,
        from: SocketAddr,
    ) -> bool {
        let budget = (self.config.packet_size / 32) as f64;
        let share = (budget / pp.members.len().max(1) as f64).min(1.0);
        let trusted = pp.reply && self.solicited(from);
        for (i, r) in pp.members.iter().enumerate() {
            let a = &r.alive;
            let known = self.members.contains_key(&a.name);
            let source = match (trusted, i) {
                (true, _) => Source::Trusted,
                (false, 0) => Source::Requester(from),
                (false, _) => Source::Peer(from),
            };
            match r.state {
                MemberState::Alive => {
                    let gossip = i == 0 || share >= 1.0 || self.rng.random_bool(share);
                    self.on_alive(now, a, source, gossip)
                }
                // A remote suspicion or death is only a suspicion here: this
                // node has not seen the member fail itself.
                MemberState::Suspect | MemberState::Dead if known => {
                    let me = self.name.clone();
                    let cause = SuspicionCause::PushPull;
                    self.on_suspect(now, a.incarnation, a.name.clone(), me, cause, true)
                }
                MemberState::Left if known => {
                    self.on_dead(now, a.incarnation, a.name.clone(), a.name.clone(), true)
                }
                // Tombstones of members never seen here are not worth keeping.
                MemberState::Suspect | MemberState::Dead | MemberState::Left => {}
            }
        }
        self.with_user_events(now, |s, cx| s.repair(cx, &pp.events));
        trusted
    }

    /// Send the partner who answered this node's request with `pp` the
    /// records it lacks: those at `lacking`, positions in the pull's digest
    /// list (the table's order then; a record that has moved since is sent
    /// in error and merged harmlessly, one missed waits for the next
    /// pull), and those this node holds in a newer version than the
    /// answer's. The push half of a pull, which lists digests only (see
    /// `Node::pull_from_random`).
    pub(super) fn push_back(&mut self, pp: &PushPull, lacking: &[u32], to: SocketAddr) {
        let mut sent = std::collections::HashSet::new();
        let mut back: Vec<MemberRecord> = Vec::new();
        for &i in lacking {
            if let Some((name, e)) = self.members.get_index(i as usize) {
                if sent.insert(i as usize) {
                    back.push(record_of(name, e));
                }
            }
        }
        for r in &pp.members {
            let Some(i) = self.members.get_index_of(&r.alive.name) else {
                continue;
            };
            let Some((name, e)) = self.members.get_index(i) else {
                continue;
            };
            if (e.incarnation, e.state) > (r.alive.incarnation, r.state) && sent.insert(i) {
                back.push(record_of(name, e));
            }
        }
        if back.is_empty() {
            return;
        }
        let push = Message::PushPull(PushPull {
            join: false,
            reply: true,
            events: Vec::new(),
            members: back,
        });
        self.send_stream(to, codec::encode_packet(&push), MessageType::PushPull);
    }

    /// Whether a claim at incarnation `claimed` about member `i` is a
    /// plausible step from the one known (see [`crate::limits`]); an absurd
    /// jump is counted and ignored, so that a forged maximum cannot put a
    /// member where it could never refute it.
    pub(super) fn plausible_claim(&mut self, i: usize, claimed: u64) -> bool {
        let ok = plausible(self.members[i].incarnation, claimed, INCARNATION_JUMP);
        if !ok {
            self.refused(Limit::Counter);
        }
        ok
    }

    /// Claim a higher incarnation than `accused` and announce it, with a
    /// boosted retransmit budget.
    fn refute(&mut self, now: Instant, accused: u64) {
        if self.conflict.is_some() {
            return; // the name is another live member's
        }
        self.stats.refutations += 1;
        self.awareness.apply(1);
        let e = &mut self.members[0];
        e.incarnation = e.incarnation.max(accused);
        self.bump_incarnation(now, REFUTATION_BOOST);
    }

    /// Take the next incarnation and announce this node alive under it,
    /// `boost` times the usual retransmit budget.
    pub(super) fn bump_incarnation(&mut self, now: Instant, boost: u32) {
        let e = &mut self.members[0];
        e.incarnation = e.incarnation.saturating_add(1);
        self.set_state(now, 0, MemberState::Alive);
        self.gossip_own_alive(boost);
    }

    pub(super) fn gossip_own_alive(&mut self, boost: u32) {
        let a = alive_of(&self.name, self.local_entry());
        self.broadcast_boosted(self.name.clone(), Message::Alive(a), boost);
    }

    /// Queue `msg` about `key` for piggybacking.
    pub(super) fn broadcast(&mut self, key: Arc<str>, msg: Message) {
        self.broadcast_boosted(key, msg, 1);
    }

    /// Queue `msg` to be sent `boost` times the usual retransmit limit, the
    /// first sends at once (eager forwarding).
    fn broadcast_boosted(&mut self, key: Arc<str>, msg: Message, boost: u32) {
        if self.queue_update(key, msg, boost) {
            self.fresh = true;
        }
    }

    /// Queue `msg` about `key` for the gossip ticks only, without an eager
    /// round (see [`Node::announce_self`]).
    pub(super) fn broadcast_on_ticks(&mut self, key: Arc<str>, msg: Message) {
        self.queue_update(key, msg, 1);
    }

    /// Queue `msg` for piggybacking (in partial membership, broadcast it on
    /// the tree); whether it went into the piggyback queue.
    fn queue_update(&mut self, key: Arc<str>, msg: Message, boost: u32) -> bool {
        if self.partial() {
            self.broadcast_on_tree(msg, false);
            return false;
        }
        let mut bytes = Vec::with_capacity(48);
        codec::encode_message(&msg, &mut bytes);
        if bytes.len() + 1 > self.config.packet_size {
            // It could never be piggybacked; anti-entropy carries it instead.
            self.stats.oversize_broadcasts += 1;
            return false;
        }
        if self.broadcasts.push_boosted(key, bytes, boost, self.now) {
            self.refused(Limit::Broadcasts);
        }
        true
    }

    /// Change member `i`'s state, keeping the live count and tombstones.
    fn set_state(&mut self, now: Instant, i: usize, state: MemberState) {
        let e = &mut self.members[i];
        let before = e.state;
        if before == state {
            return;
        }
        e.state = state;
        e.state_change = now;
        if !before.is_gone() && state.is_gone() {
            self.live -= 1;
        } else if before.is_gone() && !state.is_gone() {
            self.live += 1;
        }
        if state.is_gone() && i != 0 {
            // A new tombstone (dead to left also restarts its clock).
            let name = self.members.get_index(i).map(|(n, _)| n.clone());
            if let Some(name) = name {
                self.stalled.remove(&name);
                self.tombstones.push_back((now, name));
            }
        }
    }

    /// Forget members dead or left for longer than the tombstone timeout.
    pub(super) fn reap(&mut self, now: Instant) {
        let timeout = self.config.tombstone_timeout;
        while let Some((at, _)) = self.tombstones.front() {
            if now.saturating_since(*at) < timeout {
                break;
            }
            let Some((at, name)) = self.tombstones.pop_front() else {
                break;
            };
            let Some(i) = self.members.get_index_of(&name) else {
                continue;
            };
            let e = &self.members[i];
            if !e.state.is_gone() || e.state_change != at {
                continue; // came back, or went again later: a newer tombstone exists
            }
            self.forget(i);
        }
    }

    /// Remove member `i` (never this node) from the table, reporting it
    /// [`MemberEventKind::Reaped`].
    pub(super) fn forget(&mut self, i: usize) {
        let Some(name) = self.members.get_index(i).map(|(n, _)| n.clone()) else {
            return;
        };
        if i == 0 {
            return;
        }
        self.emit(MemberEventKind::Reaped, i);
        if !self.members[i].state.is_gone() {
            self.live -= 1;
        }
        let last = self.members.len() - 1;
        self.members.swap_remove_index(i);
        self.suspicions.remove(&name);
        self.watching.remove(&name);
        self.member_gone(&name);
        // Keep probe indices valid: the last member moved into slot i.
        let mut pos = self.probe_pos;
        let mut order = Vec::with_capacity(self.probe_order.len());
        for (p, &x) in self.probe_order.iter().enumerate() {
            match x as usize {
                x if x == i => pos -= usize::from(p < self.probe_pos),
                x if x == last => order.push(i as u32),
                _ => order.push(x),
            }
        }
        self.probe_order = order;
        self.probe_pos = pos;
    }

    pub(super) fn emit(&mut self, kind: MemberEventKind, i: usize) {
        let member = self.member_at(i);
        self.events.push_back(Event::Member { kind, member });
    }
}
