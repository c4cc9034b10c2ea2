//! The replicated key space as a service of the node: local writes and
//! their rumors ([`Message::KvRecords`]), and periodic Merkle anti-entropy
//! sessions with random peers ([`Message::KvSyncRequest`],
//! [`Message::KvSyncResponse`], with a [`Message::KvClock`] probe riding on
//! the first step). The store itself, without I/O, is [`KvStore`].

mod clock;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::codec;
use crate::config::Config;
use crate::event::Event;
use crate::idle::IdlePulls;
use crate::kv::{
    ClockProbe, Invalid, KvError, KvStore, MerkleSync, Outcome, Record, SpaceQuota, SyncRequest,
    SyncResponse, VersionVector,
};
use crate::limits::Limit;
use crate::message::Message;
use crate::node::service::{Context, Service};
use crate::Error;

pub(crate) use clock::Clocks;

/// What `Node::kv_import` did with the records it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Merged: news to this replica.
    pub applied: usize,
    /// Not newer than what this replica holds.
    pub stale: usize,
    /// Malformed, of the wrong mode, too far ahead, or over the quota.
    pub refused: usize,
}

/// The key-space service's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tick {
    /// Start Merkle sessions with random peers, resend unanswered steps.
    Sync,
}

/// A Merkle sync this node started.
struct Session {
    peer: SocketAddr,
    /// The member's name, for its clock offset.
    peer_name: Arc<str>,
    sync: MerkleSync,
    started: crate::time::Instant,
    /// This node's physical time when it sent the clock probe.
    t0: u64,
    /// The step awaiting its answer, and when it was last sent: sent once
    /// more at each sync tick it is still unanswered, until
    /// [`SESSION_TIMEOUT`] (a lost datagram costs one tick, not the session).
    pending: SyncRequest,
    sent: crate::time::Instant,
}

/// A session with no answer for this long is abandoned.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The key space this node replicates, its sessions and its clocks.
pub(crate) struct KeySpace {
    store: KvStore,
    sessions: HashMap<u32, Session>,
    session_seq: u32,
    /// Backoff of pulls while the key space is empty.
    idle: IdlePulls,
    /// The wall clock, peers' clock offsets, refusal reports.
    clocks: Clocks,
}

/// A stand-in while the node lends itself to the service (see
/// `Node::with_service`); never seen by anyone.
impl Default for KeySpace {
    fn default() -> Self {
        KeySpace::new(KvStore::new(Arc::<str>::default(), Default::default()))
    }
}

type Cx<'a, 'b> = &'a mut Context<'b, Tick>;

impl KeySpace {
    /// The key space held in `store`.
    pub fn new(store: KvStore) -> Self {
        KeySpace {
            store,
            sessions: HashMap::new(),
            session_seq: 0,
            idle: IdlePulls::default(),
            clocks: Clocks::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &KvStore {
        &self.store
    }

    /// The store, to restore or re-bound it (before start, or on a reload).
    pub fn store_mut(&mut self) -> &mut KvStore {
        &mut self.store
    }

    /// Set the quota of the whole key space.
    pub fn set_quota(&mut self, quota: SpaceQuota) {
        self.store.set_quota(quota);
    }

    /// Write `key`: `value` for a last-write-wins key, or with `read`, the
    /// causal context the writer saw, a siblings-mode key (`None`: delete).
    pub fn write(
        &mut self,
        cx: Cx,
        key: &str,
        value: Option<Vec<u8>>,
        read: Option<&VersionVector>,
    ) -> Result<(), Error> {
        let physical = self.clocks.physical(cx.now());
        let result = match (value, read) {
            (Some(v), None) => self.store.put(physical, key, v),
            (None, None) => self.store.delete(physical, key),
            (Some(v), Some(read)) => self.store.put_in_context(physical, key, v, read),
            (None, Some(read)) => self.store.delete_in_context(physical, key, read),
        };
        result.map_err(kv_error)?;
        if let Some(record) = self.store.record(key) {
            if cx.config().kv_rumors {
                spread_records(cx, vec![record]);
            }
        }
        self.emit_changes(cx);
        Ok(())
    }

    fn emit_changes(&mut self, cx: Cx) {
        while let Some(change) = self.store.poll_change() {
            cx.emit(Event::Kv(change));
        }
    }

    /// Apply records from a peer (or an import); pass on what was news.
    pub fn on_records(&mut self, cx: Cx, records: Vec<Record>) -> Imported {
        let now = cx.now();
        let physical = self.clocks.physical(now);
        let mut news = Vec::new();
        let mut tally = Imported::default();
        for r in records {
            match self
                .store
                .apply_remote(physical, r.key.as_bytes(), r.entry.clone())
            {
                Outcome::Applied => {
                    cx.stats().kv_applied += 1;
                    if let Some(took) = self.clocks.dissemination_latency(now, &r) {
                        cx.sample_dissemination(took);
                    }
                    news.push(r);
                }
                Outcome::Stale(_) => {
                    cx.stats().kv_stale += 1;
                    tally.stale += 1;
                }
                Outcome::Invalid(Invalid::FromTheFuture { ahead_micros }) => {
                    self.clocks.refused_future(cx, &r, ahead_micros);
                    tally.refused += 1;
                }
                Outcome::Invalid(Invalid::SpaceFull { .. }) => {
                    cx.refused(Limit::Kv);
                    tally.refused += 1;
                }
                Outcome::Invalid(_) => {
                    cx.stats().kv_invalid += 1;
                    tally.refused += 1;
                }
            }
        }
        tally.applied = news.len();
        if cx.config().kv_rumors && !news.is_empty() {
            spread_records(cx, news);
        }
        self.emit_changes(cx);
        tally
    }

    /// Start Merkle sessions with random peers. A node with an empty key
    /// space still starts one when the mode pulls (its root tells the peer
    /// it lacks everything); only a push with nothing to push is skipped.
    fn sync_tick(&mut self, cx: Cx) {
        let now = cx.now();
        let interval = cx.config().kv_sync_interval;
        cx.set_timer(now + interval, Tick::Sync);
        let physical = self.clocks.physical(now);
        let collected = self.store.gc(physical, cx.config().kv_tombstone_grace);
        if !collected.is_empty() {
            cx.emit(Event::KvCollected(collected));
        }
        self.clocks.tick(cx);
        self.sessions
            .retain(|_, s| now.saturating_since(s.started) < SESSION_TIMEOUT);
        self.resend_steps(cx, interval);
        let mode = cx.config().kv_sync_mode;
        if cx.leaving() || (self.store.is_empty() && !mode.pulls()) {
            return;
        }
        if !self.store.is_empty() {
            self.idle.reset();
        } else if !self.idle.due() {
            return;
        }
        let fanout = cx.config().kv_sync_fanout;
        for (peer_name, peer) in cx.peers().random_alive(fanout) {
            self.session_seq = self.session_seq.wrapping_add(1);
            let session = self.session_seq;
            let mut sync = MerkleSync::new();
            if let Some(request) = sync.next_request(&self.store) {
                let t0 = self.clocks.physical(now);
                let probe = Message::KvClock(ClockProbe {
                    session,
                    t0,
                    t1: None,
                });
                self.sessions.insert(
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
                cx.stats().kv_syncs += 1;
                // The probe goes first, so that the peer holds its echo
                // when it answers the request; a Root request always fits
                // a datagram.
                let msgs = [probe, Message::KvSyncRequest { session, request }];
                if self.store.is_empty() {
                    cx.send_bare_all(peer, &msgs);
                } else {
                    cx.send(peer, &msgs);
                }
            }
        }
    }

    /// Send once more the steps of this node's sessions that have waited
    /// `interval` or longer for their answer. The peer answers from its
    /// store alone, so a repeated step gets the same answer.
    fn resend_steps(&mut self, cx: Cx, interval: Duration) {
        let now = cx.now();
        let mut due: Vec<(u32, SocketAddr, SyncRequest)> = self
            .sessions
            .iter_mut()
            .filter(|(_, s)| now.saturating_since(s.sent) >= interval)
            .map(|(&id, s)| {
                s.sent = now;
                (id, s.peer, s.pending.clone())
            })
            .collect();
        // In session order, not the map's (random per process): the same
        // inputs send the same packets in the same order.
        due.sort_unstable_by_key(|(id, _, _)| *id);
        for (session, peer, request) in due {
            cx.stats().kv_sync_resends += 1;
            cx.send_sized(peer, Message::KvSyncRequest { session, request });
        }
    }

    /// Answer a step of a peer's session; the echo of its clock probe, if
    /// it sent one, goes first in the same datagram (or alone before the
    /// answer when the answer needs a stream).
    pub fn on_sync_request(
        &mut self,
        cx: Cx,
        from: SocketAddr,
        session: u32,
        request: SyncRequest,
    ) {
        let (echo, answer) = self.sync_answer(from, session, request);
        let Some(echo) = echo else {
            cx.send_sized(from, answer);
            return;
        };
        let both = [echo, answer];
        let size: usize = both.iter().map(|m| codec::encode_packet(m).len()).sum();
        if size <= cx.config().packet_size {
            cx.send(from, &both);
        } else {
            let [echo, answer] = both;
            cx.send_bare(from, &echo);
            cx.send_sized(from, answer);
        }
    }

    /// The answer to a sync request that came over a stream, encoded as
    /// that stream's reply (the asker matches it to its session by the
    /// address it dialled).
    pub fn stream_answer(
        &mut self,
        cx: Cx,
        from: SocketAddr,
        session: u32,
        request: SyncRequest,
    ) -> Vec<u8> {
        let (echo, answer) = self.sync_answer(from, session, request);
        let mut out = Vec::new();
        codec::begin_packet(&mut out);
        for m in echo.iter().chain([&answer]) {
            codec::encode_message(m, &mut out);
            cx.stats().count_out(m.kind());
        }
        cx.stats().streams_out += 1;
        out
    }

    /// This node's answer to a sync request, and the clock echo due to
    /// the asker, if any.
    fn sync_answer(
        &mut self,
        from: SocketAddr,
        session: u32,
        request: SyncRequest,
    ) -> (Option<Message>, Message) {
        let response = self.store.respond(&request);
        let answer = Message::KvSyncResponse { session, response };
        (self.clocks.take_echo(from, session), answer)
    }

    /// The answer to one of this node's sessions: the next step, or the
    /// records the session found.
    pub fn on_sync_response(
        &mut self,
        cx: Cx,
        from: SocketAddr,
        session: u32,
        response: SyncResponse,
    ) {
        // An answer too large for a datagram comes over a stream the
        // peer dialled, from another port of its address.
        let Some(mut s) = self
            .sessions
            .remove(&session)
            .filter(|s| s.peer.ip() == from.ip())
        else {
            return;
        };
        if s.sync.handle_response(&self.store, response).is_err() {
            cx.stats().kv_sync_failures += 1;
            return;
        }
        let peer = s.peer;
        if let Some(request) = s.sync.next_request(&self.store) {
            s.pending = request.clone();
            s.sent = cx.now();
            self.sessions.insert(session, s);
            cx.send_sized(peer, Message::KvSyncRequest { session, request });
            return;
        }
        let result = s.sync.finish();
        let mode = cx.config().kv_sync_mode;
        if mode.pulls() && !result.received.is_empty() {
            self.on_records(cx, result.received);
        }
        if mode.pushes() && !result.send.is_empty() {
            cx.send_sized(peer, Message::KvRecords(result.send));
        }
    }
}

impl Service for KeySpace {
    type Timer = Tick;

    fn on_start(&mut self, cx: Cx) {
        self.note_start(cx.now());
        let interval = cx.config().kv_sync_interval;
        cx.start_periodic(Tick::Sync, interval);
    }

    fn on_timer(&mut self, cx: Cx, timer: Tick) {
        match timer {
            Tick::Sync => self.sync_tick(cx),
        }
    }

    fn on_config(&mut self, cx: Cx, old: &Config) {
        let after = cx.config().kv_sync_interval;
        cx.follow_interval(Tick::Sync, old.kv_sync_interval, after);
    }
}

/// Rumor records: small ones piggyback on gossip; large ones are pushed
/// over streams to `gossip_nodes` members (anti-entropy does the rest).
fn spread_records(cx: Cx, records: Vec<Record>) {
    let mut large = Vec::new();
    for r in records {
        let mut bytes = Vec::new();
        codec::encode_message(&Message::KvRecords(vec![r.clone()]), &mut bytes);
        if bytes.len() <= cx.config().packet_size / 2 {
            let id: Arc<str> = format!("\u{1}kv\u{1}{}", r.key).into();
            cx.broadcast(id, Message::KvRecords(vec![r]));
        } else {
            large.push(r);
        }
    }
    if large.is_empty() {
        return;
    }
    let payload = codec::encode_packet(&Message::KvRecords(large));
    let fanout = cx.config().gossip_nodes;
    for (_, to) in cx.peers().random_alive(fanout) {
        cx.send_stream(to, payload.clone(), crate::message::MessageType::KvRecords);
    }
}

/// A refused local key-space write as the node's error: a full key space is
/// a limit reached, anything else an invalid write.
fn kv_error(e: KvError) -> Error {
    match e {
        KvError::Invalid(Invalid::SpaceFull { .. }) => Error::LimitReached {
            limit: Limit::Kv,
            detail: e.to_string(),
        },
        e => Error::Kv(e),
    }
}
