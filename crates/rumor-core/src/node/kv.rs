//! The replicated key space on the wire: local writes and their rumors, and
//! periodic Merkle anti-entropy sessions with random peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Node, Timer};
use crate::codec;
use crate::event::Event;
use crate::kv::{
    ClockProbe, Invalid, KvStore, MerkleSync, Outcome, Record, SyncRequest, SyncResponse,
    VersionVector,
};
use crate::member::MemberState;
use crate::message::{Message, MessageType};
use crate::time::Instant;
use crate::Error;

/// What [`Node::kv_import`] did with the records it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Merged: news to this replica.
    pub applied: usize,
    /// Not newer than what this replica holds.
    pub stale: usize,
    /// Malformed, of the wrong mode, too far ahead, or over the quota.
    pub refused: usize,
}

/// A Merkle sync this node started.
pub(super) struct Session {
    pub(super) peer: SocketAddr,
    /// The member's name, for its clock offset.
    pub(super) peer_name: Arc<str>,
    sync: MerkleSync,
    started: Instant,
    /// This node's physical time when it sent the clock probe.
    pub(super) t0: u64,
    /// The step awaiting its answer, and when it was last sent: sent once
    /// more at each sync tick it is still unanswered, until
    /// [`SESSION_TIMEOUT`] (a lost datagram costs one tick, not the session).
    pending: SyncRequest,
    sent: Instant,
}

/// A session with no answer for this long is abandoned.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    /// The replicated key space.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// Write `key` (last-write-wins keys).
    pub fn kv_put(&mut self, now: Instant, key: &str, value: Vec<u8>) -> Result<(), Error> {
        let physical = self.physical(now);
        self.kv.put(physical, key, value).map_err(kv_error)?;
        self.after_kv_write(now, key);
        Ok(())
    }

    /// Delete `key`, leaving a tombstone (last-write-wins keys).
    pub fn kv_delete(&mut self, now: Instant, key: &str) -> Result<(), Error> {
        let physical = self.physical(now);
        self.kv.delete(physical, key).map_err(kv_error)?;
        self.after_kv_write(now, key);
        Ok(())
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
        let physical = self.physical(now);
        let result = match value {
            Some(v) => self.kv.put_in_context(physical, key, v, read),
            None => self.kv.delete_in_context(physical, key, read),
        };
        result.map_err(kv_error)?;
        self.after_kv_write(now, key);
        Ok(())
    }

    fn after_kv_write(&mut self, now: Instant, key: &str) {
        self.start(now);
        if let Some(record) = self.kv.record(key) {
            if self.config.kv_rumors {
                self.spread_records(vec![record]);
            }
        }
        self.emit_kv_changes();
        self.forward_fresh(now);
    }

    /// Rumor records: small ones piggyback on gossip; large ones are pushed
    /// over streams to `gossip_nodes` members (anti-entropy does the rest).
    fn spread_records(&mut self, records: Vec<Record>) {
        let mut large = Vec::new();
        for r in records {
            let mut bytes = Vec::new();
            codec::encode_message(&Message::KvRecords(vec![r.clone()]), &mut bytes);
            if bytes.len() <= self.config.packet_size / 2 {
                let id: Arc<str> = format!("\u{1}kv\u{1}{}", r.key).into();
                self.broadcast(id, Message::KvRecords(vec![r]));
            } else {
                large.push(r);
            }
        }
        if large.is_empty() {
            return;
        }
        let payload = codec::encode_packet(&Message::KvRecords(large));
        for i in self.random_members(self.config.gossip_nodes, |e| e.state == MemberState::Alive) {
            let to = self.members[i].addr.get();
            self.send_stream(to, payload.clone(), MessageType::KvRecords);
        }
    }

    fn emit_kv_changes(&mut self) {
        while let Some(change) = self.kv.poll_change() {
            self.events.push_back(Event::Kv(change));
        }
    }

    /// Merge records from outside the protocol (a backup being imported):
    /// each is checked and merged exactly like a peer's, and what was news
    /// spreads to the cluster.
    pub fn kv_import(&mut self, now: Instant, records: Vec<Record>) -> Imported {
        self.start(now);
        let imported = self.on_kv_records(now, records);
        self.forward_fresh(now);
        imported
    }

    /// Apply records from a peer; pass on what was news.
    pub(super) fn on_kv_records(&mut self, now: Instant, records: Vec<Record>) -> Imported {
        let physical = self.physical(now);
        let mut news = Vec::new();
        let mut tally = Imported::default();
        for r in records {
            match self
                .kv
                .apply_remote(physical, r.key.as_bytes(), r.entry.clone())
            {
                Outcome::Applied => {
                    self.stats.kv_applied += 1;
                    if let Some(took) = self.dissemination_latency(now, &r) {
                        if !self.samples.add_dissemination(took) {
                            self.stats.samples_dropped += 1;
                        }
                    }
                    news.push(r);
                }
                Outcome::Stale(_) => {
                    self.stats.kv_stale += 1;
                    tally.stale += 1;
                }
                Outcome::Invalid(Invalid::FromTheFuture { ahead_micros }) => {
                    self.refused_future(now, &r, ahead_micros);
                    tally.refused += 1;
                }
                Outcome::Invalid(Invalid::SpaceFull { .. }) => {
                    self.refused(crate::limits::Limit::Kv);
                    tally.refused += 1;
                }
                Outcome::Invalid(_) => {
                    self.stats.kv_invalid += 1;
                    tally.refused += 1;
                }
            }
        }
        tally.applied = news.len();
        if self.config.kv_rumors && !news.is_empty() {
            self.spread_records(news);
        }
        self.emit_kv_changes();
        tally
    }

    /// Start Merkle sessions with random peers. A node with an empty key
    /// space still starts one when the mode pulls (its root tells the peer
    /// it lacks everything); only a push with nothing to push is skipped.
    pub(super) fn kv_sync_tick(&mut self, now: Instant) {
        let interval = self.config.kv_sync_interval;
        self.set_timer(now + interval, Timer::KvSyncTick);
        let physical = self.physical(now);
        let collected = self.kv.gc(physical, self.config.kv_tombstone_grace);
        if !collected.is_empty() {
            self.events.push_back(Event::KvCollected(collected));
        }
        self.clock_tick(now);
        self.kv_sessions
            .retain(|_, s| now.saturating_since(s.started) < SESSION_TIMEOUT);
        self.resend_kv_steps(now, interval);
        let mode = self.config.kv_sync_mode;
        if self.leaving || (self.kv.is_empty() && !mode.pulls()) {
            return;
        }
        if !self.kv.is_empty() {
            self.kv_idle.reset();
        } else if !self.kv_idle.due() {
            return;
        }
        for i in self.random_members(self.config.kv_sync_fanout, |e| {
            e.state == MemberState::Alive
        }) {
            let peer = self.members[i].addr.get();
            let Some(peer_name) = self.members.get_index(i).map(|(k, _)| k.clone()) else {
                continue;
            };
            self.kv_session_seq = self.kv_session_seq.wrapping_add(1);
            let session = self.kv_session_seq;
            let mut sync = MerkleSync::new();
            if let Some(request) = sync.next_request(&self.kv) {
                let t0 = self.physical(now);
                let probe = Message::KvClock(ClockProbe {
                    session,
                    t0,
                    t1: None,
                });
                self.kv_sessions.insert(
                    session,
                    Session {
                        peer,
                        peer_name,
                        sync,
                        started: now,
                        t0,
                        pending: request.clone(),
                        sent: now,
                    },
                );
                self.stats.kv_syncs += 1;
                // The probe goes first, so that the peer holds its echo
                // when it answers the request; a Root request always fits
                // a datagram.
                let msgs = [probe, Message::KvSyncRequest { session, request }];
                if self.kv.is_empty() {
                    self.send_bare_all(peer, &msgs);
                } else {
                    self.send_packet(peer, &msgs);
                }
            }
        }
    }

    /// Send once more the steps of this node's sessions that have waited
    /// `interval` or longer for their answer. The peer answers from its
    /// store alone, so a repeated step gets the same answer.
    fn resend_kv_steps(&mut self, now: Instant, interval: Duration) {
        let due: Vec<(u32, SocketAddr, SyncRequest)> = self
            .kv_sessions
            .iter_mut()
            .filter(|(_, s)| now.saturating_since(s.sent) >= interval)
            .map(|(&id, s)| {
                s.sent = now;
                (id, s.peer, s.pending.clone())
            })
            .collect();
        for (session, peer, request) in due {
            self.stats.kv_sync_resends += 1;
            self.send_sized(peer, Message::KvSyncRequest { session, request });
        }
    }

    /// Answer a step of a peer's session; the echo of its clock probe, if
    /// it sent one, goes first in the same datagram (or alone before the
    /// answer when the answer needs a stream).
    pub(super) fn on_kv_sync_request(
        &mut self,
        from: SocketAddr,
        session: u32,
        request: SyncRequest,
    ) {
        let (echo, answer) = self.kv_sync_answer(from, session, request);
        let Some(echo) = echo else {
            self.send_sized(from, answer);
            return;
        };
        let both = [echo, answer];
        let size: usize = both.iter().map(|m| codec::encode_packet(m).len()).sum();
        if size <= self.config.packet_size {
            self.send_packet(from, &both);
        } else {
            let [echo, answer] = both;
            self.send_bare(from, &echo);
            self.send_sized(from, answer);
        }
    }

    /// The answer to a sync request that came over a stream, encoded as
    /// that stream's reply (the asker matches it to its session by the
    /// address it dialled).
    pub(super) fn kv_sync_stream_answer(
        &mut self,
        from: SocketAddr,
        session: u32,
        request: SyncRequest,
    ) -> Vec<u8> {
        let (echo, answer) = self.kv_sync_answer(from, session, request);
        let mut out = Vec::new();
        codec::begin_packet(&mut out);
        for m in echo.iter().chain([&answer]) {
            codec::encode_message(m, &mut out);
            self.stats.count_out(m.kind());
        }
        self.stats.streams_out += 1;
        out
    }

    /// This node's answer to a sync request, and the clock echo due to
    /// the asker, if any.
    fn kv_sync_answer(
        &mut self,
        from: SocketAddr,
        session: u32,
        request: SyncRequest,
    ) -> (Option<Message>, Message) {
        let response = self.kv.respond(&request);
        let answer = Message::KvSyncResponse { session, response };
        (self.take_echo(from, session), answer)
    }

    /// Send `msgs` alone in one datagram, with no queued updates
    /// piggybacked (as [`Node::send_bare`] does for one).
    fn send_bare_all(&mut self, to: SocketAddr, msgs: &[Message]) {
        let mut buf = Vec::with_capacity(64);
        codec::begin_packet(&mut buf);
        for m in msgs {
            codec::encode_message(m, &mut buf);
            self.stats.count_out(m.kind());
        }
        self.push_datagram(to, buf);
    }

    pub(super) fn on_kv_sync_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        session: u32,
        response: SyncResponse,
    ) {
        // An answer too large for a datagram comes over a stream the
        // peer dialled, from another port of its address.
        let Some(mut s) = self
            .kv_sessions
            .remove(&session)
            .filter(|s| s.peer.ip() == from.ip())
        else {
            return;
        };
        if s.sync.handle_response(&self.kv, response).is_err() {
            self.stats.kv_sync_failures += 1;
            return;
        }
        let peer = s.peer;
        if let Some(request) = s.sync.next_request(&self.kv) {
            s.pending = request.clone();
            s.sent = now;
            self.kv_sessions.insert(session, s);
            self.send_sized(peer, Message::KvSyncRequest { session, request });
            return;
        }
        let result = s.sync.finish();
        let mode = self.config.kv_sync_mode;
        if mode.pulls() && !result.received.is_empty() {
            self.on_kv_records(now, result.received);
        }
        if mode.pushes() && !result.send.is_empty() {
            self.send_sized(peer, Message::KvRecords(result.send));
        }
    }

    /// Send one message in a datagram if it fits, else over a stream.
    pub(super) fn send_sized(&mut self, to: SocketAddr, msg: Message) {
        let payload = codec::encode_packet(&msg);
        if payload.len() <= self.config.packet_size {
            self.send_packet(to, &[msg]);
        } else {
            let kind = msg.kind();
            self.send_stream(to, payload, kind);
        }
    }
}

/// A refused local key-space write as the node's error: a full key space is
/// a limit reached, anything else an invalid write.
fn kv_error(e: crate::kv::KvError) -> Error {
    match e {
        crate::kv::KvError::Invalid(Invalid::SpaceFull { .. }) => Error::LimitReached {
            limit: crate::limits::Limit::Kv,
            detail: e.to_string(),
        },
        e => Error::Kv(e),
    }
}
