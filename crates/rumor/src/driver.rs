//! The task that drives one rumor-core state machine: it feeds datagrams,
//! stream messages, commands and timers in, and carries transmits and
//! events out. Events leave here, and only here, stamped with the wall
//! clock once and sent on the node's one event channel
//! ([`crate::events`]).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumor_core::aggregate::Estimate;
use rumor_core::kv::{Entry as KvEntry, VersionVector};
use rumor_core::{Event as CoreEvent, Member, Node as Core, Tags, TransmitKind};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::events::{Event, KvChange, MemberEvent, StateChange, UserEvent};
use crate::framing::Framer;
use crate::lazy_channel::LazyChannel;
use crate::metrics::{self, Counters, MemberCounts, Stats, TransportStats};
use crate::persist::{Persist, WriteReply};
use crate::transport::admission::Refused;
use crate::transport::sent::SentLog;
use crate::transport::tcp::{self, FromStream, StreamCtx};
use crate::transport::udp::RECV_BUFFER;
use crate::transport::Transport;

/// Datagrams read without yielding after one arrives.
const RECV_BATCH: usize = 32;
/// Most datagrams read, of those already received, before timeouts are
/// handled.
const TIMEOUT_RECV_BATCH: usize = 256;

/// Requests from the [`crate::Node`] handle.
pub(crate) enum Command {
    Members(oneshot::Sender<Vec<Member>>),
    Local(oneshot::Sender<Member>),
    /// The last direct probe round trip to this member, if any.
    MemberRtt(String, oneshot::Sender<Option<Duration>>),
    Stats(oneshot::Sender<Stats>),
    SetTags(Tags, oneshot::Sender<Result<(), rumor_core::Error>>),
    /// Join through these addresses; answers (seeds tried, seeds that answered).
    Join(Vec<SocketAddr>, oneshot::Sender<JoinTally>),
    Leave(oneshot::Sender<()>),
    /// Whether another live member holds this node's name, and whether a
    /// check of that is still waiting for its answer.
    NameCheck(oneshot::Sender<(Option<SocketAddr>, bool)>),
    /// Peers found running the other membership mode, and their mode.
    MembershipMismatches(oneshot::Sender<Vec<(SocketAddr, rumor_core::Membership)>>),
    /// Mark a member left cluster-wide on its behalf (see [`rumor_core::ForceLeave`]).
    ForceLeave(String, rumor_core::ForceLeave, Reply<()>),
    /// Broadcast a user event (name, payload); answers its Lamport time.
    SendEvent(String, Vec<u8>, Reply<u64>),
    /// Ask a query (name, payload, options); answers its Lamport time and
    /// where its acks and answers will arrive.
    Query(
        String,
        Vec<u8>,
        rumor_core::query::QueryParams,
        Reply<(u64, Duration, mpsc::Receiver<crate::QueryAnswer>)>,
    ),
    /// Change the core's limits while running.
    SetLimits(rumor_core::Limits, Reply<()>),
    /// Change the protocol configuration while running; answers the
    /// restart-only fields kept (see [`rumor_core::Node::set_protocol`]).
    SetProtocol(Box<rumor_core::Config>, Reply<Vec<&'static str>>),
    /// Change the stream caps while running.
    SetStreamLimits(crate::builder::StreamLimits, oneshot::Sender<()>),
    /// Answer the query (origin, ltime) with a payload.
    Respond(Arc<str>, u64, Vec<u8>, Reply<()>),
    /// Set (`Some`) or delete (`None`) one of this node's state keys.
    StateWrite(String, Option<String>, Reply<()>),
    /// One member's state (`None` if unknown).
    StateOf(String, oneshot::Sender<Option<BTreeMap<String, String>>>),
    /// Every owner's state.
    States(oneshot::Sender<BTreeMap<String, BTreeMap<String, String>>>),
    /// The live entry under a key.
    KvGet(String, oneshot::Sender<Option<KvEntry>>),
    /// Live entries under a prefix, in key order.
    KvScan(String, oneshot::Sender<Vec<(String, KvEntry)>>),
    /// The causal context of a key.
    KvContext(String, oneshot::Sender<VersionVector>),
    /// Up to `limit` entries after a key (tombstones included), in key order.
    KvPage(
        Option<String>,
        usize,
        oneshot::Sender<Vec<(String, KvEntry)>>,
    ),
    /// Merge records from outside the protocol (a backup).
    KvImport(
        Vec<rumor_core::kv::Record>,
        oneshot::Sender<rumor_core::Imported>,
    ),
    /// Write (`Some`) or delete (`None`) a last-write-wins key; answered
    /// once durable when the node has a data dir.
    KvWrite(String, Option<Vec<u8>>, WriteReply),
    /// Write or delete a siblings-mode key with the context the writer read.
    KvWriteInContext(String, Option<Vec<u8>>, VersionVector, WriteReply),
    /// Start aggregating a state key.
    TrackAggregate(String, Reply<()>),
    /// The current estimate of an aggregate.
    Aggregate(String, oneshot::Sender<Option<Estimate>>),
    Shutdown,
}

/// Where the answer of a command the core may refuse goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, rumor_core::Error>>;

/// A state owner's live keys as an owned map.
fn owned_state(o: &rumor_core::state::OwnerState) -> BTreeMap<String, String> {
    o.iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Microseconds since the Unix epoch now (0 if the clock is before it).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A join waiting for its seeds' replies.
struct PendingJoin {
    pending: HashSet<SocketAddr>,
    tried: usize,
    answered: usize,
    /// Seeds that accepted the connection but did not authenticate it.
    unauthenticated: usize,
    reply: oneshot::Sender<JoinTally>,
}

/// How a join went: seed addresses tried, those that answered, and those
/// that accepted the connection but closed it unanswered or sent a reply
/// that could not be authenticated (wrong key or label, or stream limits).
pub(crate) type JoinTally = (usize, usize, usize);

/// Everything the driver task owns.
pub(crate) struct Driver<T: Transport> {
    pub core: Core,
    pub name: String,
    /// The sockets.
    pub net: T,
    pub ctx: Arc<StreamCtx>,
    pub origin: Instant,
    pub commands: mpsc::Receiver<Command>,
    /// The node's one event channel.
    pub events: Arc<LazyChannel<Event>>,
    pub counters: Arc<Counters>,
    pub max_streams: usize,
    /// Datagrams sent lately, to check "port unreachable" reports against.
    pub sent: SentLog,
    pub metrics_interval: Option<Duration>,
    /// The data dir, if the node has one.
    pub persist: Option<Persist>,
    /// Added to the system clock the key space reads (tests only: a node
    /// with a clock that is off).
    pub wall_offset_micros: i64,
}

/// A system clock stepping back by more than this is logged at WARN.
const CLOCK_STEP_WARN: u64 = 1_000_000;

/// Mutable state of a running driver besides what [`Driver`] was given.
struct Running {
    streams_tx: mpsc::Sender<FromStream>,
    streams_rx: mpsc::Receiver<FromStream>,
    tasks: JoinSet<()>,
    outbound: Arc<Semaphore>,
    joins: Vec<PendingJoin>,
    leaves: Vec<oneshot::Sender<()>>,
    left: bool,
    next_export: Option<Instant>,
    /// This node's queries in flight: where their answers go.
    /// Queries this node asked and is still collecting, by Lamport time:
    /// where their answers go and when they were asked.
    queries: std::collections::HashMap<u64, (mpsc::Sender<crate::QueryAnswer>, Instant)>,
}

impl<T: Transport> Driver<T> {
    /// The core's time for the input at hand. Every input and command
    /// reads it first, so it also refreshes the core's wall clock: local
    /// writes are stamped with the system clock as read now, and remote
    /// stamps are checked against it.
    fn now(&mut self) -> rumor_core::Instant {
        let elapsed = self.origin.elapsed().as_micros() as u64;
        self.refresh_wall_clock(elapsed);
        rumor_core::Instant::from_micros(elapsed)
    }

    /// Give the core the Unix time at `origin` as the system clock says
    /// now (it moves when NTP steps or slews the clock); one WARN per step
    /// back of more than a second (stamps keep increasing regardless: the
    /// hybrid logical clock holds its last wall time until the clock
    /// passes it again).
    fn refresh_wall_clock(&mut self, elapsed: u64) {
        let origin = unix_micros()
            .saturating_add_signed(self.wall_offset_micros)
            .saturating_sub(elapsed);
        let previous = self.core.wall_clock();
        if previous != 0 && origin.saturating_add(CLOCK_STEP_WARN) < previous {
            tracing::warn!(node = %self.name, stepped_back_s = (previous - origin) as f64 / 1e6,
                "the system clock stepped back: key-space stamps keep the last time issued until it catches up");
        }
        self.core.set_wall_clock(origin);
    }

    /// Handle up to `most` datagrams that are already received, without
    /// waiting for more.
    fn take_received(&mut self, buf: &mut [u8], most: usize) {
        for _ in 0..most {
            match self.net.try_recv_from(buf) {
                Ok((n, from)) => self.datagram(from, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => self.receive_failed(&e),
            }
        }
    }

    /// A receive failed: a queued ICMP error surfaces this way, so read
    /// which destinations refused our datagrams and tell the core.
    fn receive_failed(&mut self, e: &std::io::Error) {
        if !self.report_refused() {
            tracing::debug!(node = %self.name, error = %e, "udp receive failed");
        }
    }

    /// Hand the core the destinations the kernel reported "port
    /// unreachable" for, when the report quotes a datagram we really sent
    /// there (others are counted and ignored); whether there were any.
    fn report_refused(&mut self) -> bool {
        let refused = self.net.take_refused();
        let now = self.now();
        for r in &refused {
            if self.sent.matches(r.to, &r.quoted) {
                tracing::trace!(node = %self.name, to = %r.to, "port unreachable");
                self.core.handle_unreachable(now, r.to);
                continue;
            }
            Counters::inc(&self.counters.unreachable_unmatched);
            if let Some(held) = self.ctx.warn.allow("unreachable_unmatched") {
                tracing::warn!(node = %self.name, to = %r.to, quoted = r.quoted.len(),
                    similar_lines_held_back = held,
                    "ICMP port unreachable ignored: it quotes no datagram sent there");
            }
        }
        !refused.is_empty()
    }

    fn framer(&self) -> &Framer {
        &self.ctx.framer
    }

    /// Run until shut down or until the handle is dropped.
    pub(crate) async fn run(mut self) {
        let (streams_tx, streams_rx) = mpsc::channel(256);
        let mut st = Running {
            streams_tx,
            streams_rx,
            tasks: JoinSet::new(),
            outbound: Arc::new(Semaphore::new(self.max_streams)),
            joins: Vec::new(),
            leaves: Vec::new(),
            left: false,
            next_export: self.metrics_interval.map(|i| self.origin + i),
            queries: std::collections::HashMap::new(),
        };
        // The key space's clock needs real time (refreshed at every input).
        let _ = self.now();
        // Timing samples only for a node whose histograms are exported.
        self.core.set_sampling(self.metrics_interval.is_some());
        let mut buf = vec![0u8; RECV_BUFFER];
        tracing::debug!(node = %self.name, addr = %self.core.local().addr, "node started");
        loop {
            self.flush(&mut st).await;
            while st.tasks.try_join_next().is_some() {}
            let far = Instant::now() + Duration::from_secs(3600);
            let mut wake = self
                .core
                .poll_timeout()
                .map(|t| self.origin + Duration::from_micros(t.as_micros()))
                .unwrap_or(far);
            if let Some(e) = st.next_export {
                wake = wake.min(e);
            }
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.command(&mut st, cmd),
                },
                r = self.net.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.datagram(from, &buf[..n]);
                        // Take what else is already queued before going round.
                        self.take_received(&mut buf, RECV_BATCH);
                    }
                    Err(e) => self.receive_failed(&e),
                },
                r = self.net.accept() => match r {
                    Ok((s, peer)) => self.accept(&mut st, s, peer),
                    Err(e) => {
                        tracing::warn!(node = %self.name, error = %e, "tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(m) = st.streams_rx.recv() => self.stream_message(&mut st, m),
                _ = tokio::time::sleep_until(wake) => {
                    // An ack already received must count before a probe's
                    // timeout is judged: on a starved machine the socket
                    // holds many, and each missed one was a false suspicion
                    // whose refutation loaded the machine further (a
                    // 1,000-node join storm in one process stayed stuck).
                    self.take_received(&mut buf, TIMEOUT_RECV_BATCH);
                    let now = self.now();
                    self.core.handle_timeout(now);
                    if let (Some(at), Some(every)) = (st.next_export, self.metrics_interval) {
                        if Instant::now() >= at {
                            metrics::export(&self.name, &self.stats());
                            metrics::record_samples(&self.name, &self.core.take_samples());
                            st.next_export = Some(Instant::now() + every);
                        }
                    }
                }
            }
        }
        if let Some(p) = self.persist.take() {
            p.close(&self.core).await;
        }
        tracing::debug!(node = %self.name, "node stopped");
    }

    fn stats(&self) -> Stats {
        // The queue's byte count walks every queued update: once.
        let (queued, queued_bytes) = self.core.broadcast_queue();
        let (active_view, passive_view) = self.core.view_sizes();
        Stats {
            core: self.core.stats().clone(),
            transport: TransportStats {
                plaintext_accepted: self.framer().encryption().plaintext_accepted(),
                ..self.counters.snapshot()
            },
            awareness: self.core.awareness(),
            members: MemberCounts::of(self.core.members().map(|m| m.state)),
            clock_skew: self
                .core
                .clock_skew()
                .iter()
                .map(|(name, s)| (name.to_string(), s))
                .collect(),
            broadcast_queue_messages: queued,
            broadcast_queue_bytes: queued_bytes,
            propagation: self.core.propagation_budget(),
            active_view,
            passive_view,
        }
    }

    fn command(&mut self, st: &mut Running, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Members(tx) => {
                let _ = tx.send(self.core.members().collect());
            }
            Command::MemberRtt(name, tx) => {
                let _ = tx.send(self.core.member_rtt(&name));
            }
            Command::Local(tx) => {
                let _ = tx.send(self.core.local());
            }
            Command::Stats(tx) => {
                let _ = tx.send(self.stats());
            }
            Command::MembershipMismatches(tx) => {
                let _ = tx.send(self.core.membership_mismatches().to_vec());
            }
            Command::NameCheck(tx) => {
                let _ = tx.send((self.core.name_conflict(), self.core.checking_name()));
            }
            Command::SetTags(tags, tx) => {
                let _ = tx.send(self.core.set_tags(now, tags));
            }
            Command::Join(addrs, tx) => {
                let own = self.core.local().addr;
                let pending: HashSet<SocketAddr> =
                    addrs.into_iter().filter(|a| *a != own).collect();
                if pending.is_empty() {
                    let _ = tx.send((0, 0, 0));
                    return;
                }
                let list: Vec<SocketAddr> = pending.iter().copied().collect();
                tracing::debug!(node = %self.name, seeds = ?list, "joining");
                self.core.join(now, &list);
                st.left = false;
                st.joins.push(PendingJoin {
                    tried: pending.len(),
                    pending,
                    answered: 0,
                    unauthenticated: 0,
                    reply: tx,
                });
            }
            Command::Leave(tx) => {
                if self.core.is_leaving() && st.left {
                    let _ = tx.send(());
                    return;
                }
                tracing::debug!(node = %self.name, "leaving");
                self.core.leave(now);
                st.leaves.push(tx);
            }
            Command::ForceLeave(name, opts, tx) => {
                let _ = tx.send(self.core.force_leave(now, &name, opts));
            }
            Command::SendEvent(name, payload, tx) => {
                let _ = tx.send(self.core.send_event(now, &name, &payload));
            }
            Command::Query(name, payload, params, tx) => {
                let timeout = params.timeout.unwrap_or_else(|| {
                    rumor_core::query::default_timeout(self.core.config(), self.core.num_live())
                });
                let asked = self.core.query(now, &name, &payload, params).map(|ltime| {
                    let (answers, rx) = mpsc::channel(crate::query::ANSWER_BUFFER);
                    st.queries.insert(ltime, (answers, Instant::now()));
                    (ltime, timeout, rx)
                });
                let _ = tx.send(asked);
            }
            Command::SetLimits(limits, tx) => {
                let _ = tx.send(self.core.set_limits(limits));
            }
            Command::SetProtocol(mut config, tx) => {
                // As at start: the envelope's overhead comes off the datagram.
                config.packet_size = config.packet_size.saturating_sub(self.framer().overhead());
                let _ = tx.send(self.core.set_protocol(now, *config));
            }
            Command::SetStreamLimits(limits, tx) => {
                self.ctx
                    .admission
                    .set_caps(limits.max_streams_per_source, limits.max_streams);
                self.ctx.set_preauth_budget(limits.stream_preauth_budget);
                let (old, new) = (self.max_streams, limits.max_streams.max(1));
                tcp::resize_outbound(&st.outbound, old, new, &mut st.tasks);
                self.max_streams = new;
                let _ = tx.send(());
            }
            Command::Respond(origin, ltime, payload, tx) => {
                let _ = tx.send(
                    self.core
                        .respond_query(now, &origin, ltime, false, &payload),
                );
            }
            Command::StateWrite(key, value, tx) => {
                let _ = tx.send(self.core.state_write(now, &key, value.as_deref()));
            }
            Command::StateOf(name, tx) => {
                let _ = tx.send(self.core.state().owner(&name).map(owned_state));
            }
            Command::States(tx) => {
                let all = self
                    .core
                    .state()
                    .owners()
                    .map(|(n, o)| (n.to_string(), owned_state(o)))
                    .collect();
                let _ = tx.send(all);
            }
            Command::KvGet(key, tx) => {
                let _ = tx.send(self.core.kv().get(&key).cloned());
            }
            Command::KvScan(prefix, tx) => {
                let found = self
                    .core
                    .kv()
                    .scan(&prefix)
                    .map(|(k, e)| (k.to_owned(), e.clone()))
                    .collect();
                let _ = tx.send(found);
            }
            Command::KvContext(key, tx) => {
                let _ = tx.send(self.core.kv().context(&key));
            }
            Command::KvPage(after, limit, tx) => {
                let page = self
                    .core
                    .kv()
                    .iter_after(after.as_deref())
                    .take(limit)
                    .map(|(k, e)| (k.to_owned(), e.clone()))
                    .collect();
                let _ = tx.send(page);
            }
            Command::KvImport(records, tx) => {
                let _ = tx.send(self.core.kv_import(now, records));
            }
            Command::KvWrite(key, value, tx) => self.kv_write(tx, |core| match value {
                Some(value) => core.kv_put(now, &key, value),
                None => core.kv_delete(now, &key),
            }),
            Command::KvWriteInContext(key, value, read, tx) => {
                self.kv_write(tx, |core| core.kv_put_in_context(now, &key, value, &read))
            }
            Command::TrackAggregate(name, tx) => {
                let _ = tx.send(self.core.track_aggregate(now, &name));
            }
            Command::Aggregate(name, tx) => {
                let _ = tx.send(self.core.aggregate(&name));
            }
            Command::Shutdown => {}
        }
    }

    fn datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        Counters::inc(&self.counters.udp_packets_in);
        Counters::add(&self.counters.udp_bytes_in, bytes.len());
        match self.framer().open(bytes) {
            Ok(body) => {
                let body = body.into_owned();
                let now = self.now();
                self.core.handle_datagram(now, from, &body);
            }
            Err(r) => {
                self.counters.reject(r);
                // Anyone can send these at will: one line per reason per
                // interval, with how many were held back.
                if let Some(held) = self.ctx.warn.allow(r.name()) {
                    tracing::warn!(node = %self.name, %from, reason = r.name(), similar_lines_held_back = held, "datagram refused");
                }
            }
        }
    }

    fn accept(&mut self, st: &mut Running, stream: T::Stream, peer: SocketAddr) {
        Counters::inc(&self.counters.streams_accepted);
        let ticket = match self.ctx.admission.admit(peer.ip()) {
            Ok(t) => t,
            Err(refused) => {
                Counters::inc(match refused {
                    Refused::PerSource => &self.counters.streams_refused_per_source,
                    Refused::Busy => &self.counters.streams_rejected_busy,
                });
                let reason = refused.as_str();
                if let Some(held) = self.ctx.warn.allow(reason) {
                    tracing::warn!(node = %self.name, %peer, reason,
                        open = self.ctx.admission.open(), similar_lines_held_back = held,
                        "too many streams: connection refused");
                }
                return; // dropping the stream closes it
            }
        };
        st.tasks.spawn(tcp::serve(
            self.ctx.clone(),
            stream,
            peer,
            st.streams_tx.clone(),
            ticket,
        ));
    }

    /// Send a stream request. A best-effort one (`deadline` set: a probe's
    /// stream ping) is sent only while at least half of the outgoing slots
    /// are free, so that it can never starve joins and syncs; it ends
    /// within `deadline`.
    fn dial(&mut self, st: &mut Running, to: SocketAddr, msg: Vec<u8>, deadline: Option<Duration>) {
        if deadline.is_some() && st.outbound.available_permits() * 2 < self.max_streams {
            Counters::inc(&self.counters.stream_pings_no_slot);
            tracing::debug!(node = %self.name, %to, "stream slots short: probe's stream ping skipped");
            return;
        }
        let Ok(permit) = st.outbound.clone().try_acquire_owned() else {
            Counters::inc(&self.counters.streams_rejected_busy);
            tracing::debug!(node = %self.name, %to, "too many streams: request dropped");
            self.join_outcome(st, to, false, false);
            return;
        };
        st.tasks.spawn(tcp::request::<T>(
            self.ctx.clone(),
            to,
            msg,
            deadline,
            st.streams_tx.clone(),
            permit,
        ));
    }

    fn stream_message(&mut self, st: &mut Running, m: FromStream) {
        let now = self.now();
        match m {
            FromStream::Request { from, msg, reply } => {
                let answer = self.core.handle_stream(now, from, &msg);
                let _ = reply.send(answer);
            }
            FromStream::Reply {
                to,
                msg,
                unauthenticated,
                probe,
            } => {
                let ok = msg.is_some();
                if let Some(msg) = msg {
                    let _ = self.core.handle_stream(now, to, &msg);
                }
                if !probe {
                    self.join_outcome(st, to, ok, unauthenticated);
                }
            }
            FromStream::Connected { to } => self.core.handle_stream_connected(now, to),
        }
    }

    fn join_outcome(&mut self, st: &mut Running, addr: SocketAddr, ok: bool, unauth: bool) {
        for j in st.joins.iter_mut() {
            if j.pending.remove(&addr) {
                j.answered += usize::from(ok);
                j.unauthenticated += usize::from(unauth);
            }
        }
        let (done, waiting) = std::mem::take(&mut st.joins)
            .into_iter()
            .partition::<Vec<_>, _>(|j| j.pending.is_empty());
        st.joins = waiting;
        for j in done {
            let _ = j.reply.send((j.tried, j.answered, j.unauthenticated));
        }
    }

    async fn flush(&mut self, st: &mut Running) {
        // Handling an event can make more to send (a query acked or
        // answered here): send until both are drained.
        loop {
            self.send_transmits(st).await;
            if !self.handle_events(st) {
                break;
            }
        }
        if let Some(p) = &mut self.persist {
            p.submit(&self.core);
        }
    }

    /// A local key-space write: refused before the core sees it while the
    /// data dir refuses commits; otherwise answered at once without a data
    /// dir or when the core refused it, else once it is committed.
    fn kv_write(
        &mut self,
        reply: WriteReply,
        write: impl FnOnce(&mut Core) -> Result<(), rumor_core::Error>,
    ) {
        if let Some(Err(e)) = self.persist.as_ref().map(Persist::check) {
            let _ = reply.send(Err(e));
            return;
        }
        let written = write(&mut self.core);
        match (written, &mut self.persist) {
            (Ok(()), Some(p)) => p.hold(reply),
            (written, _) => {
                let _ = reply.send(written.map_err(crate::Error::from));
            }
        }
    }

    async fn send_transmits(&mut self, st: &mut Running) {
        while let Some(t) = self.core.poll_transmit() {
            match t.kind {
                TransmitKind::Datagram => self.send_datagram(t.to, &t.payload).await,
                TransmitKind::Stream => self.dial(st, t.to, t.payload, t.deadline),
            }
        }
    }

    /// A query this node heard: ack and deliver it (or answer a built-in)
    /// if its filters select this node.
    fn on_query(&mut self, q: rumor_core::message::Query) {
        let me = self.core.local();
        if !crate::query::selected(&q.filters, &me.name, &me.tags) {
            return;
        }
        let now = self.now();
        if q.ack {
            let _ = self.core.respond_query(now, &q.origin, q.ltime, true, &[]);
        }
        if q.name == crate::query::PING {
            let _ = self.core.respond_query(now, &q.origin, q.ltime, false, &[]);
            return;
        }
        let incoming = crate::IncomingQuery::of(&q, std::time::SystemTime::now());
        self.events.send_with(|| Event::Query(Arc::new(incoming)));
    }

    /// Hand the core's events on, each stamped with the time this batch
    /// was polled (the wall clock, read once); whether there were any.
    fn handle_events(&mut self, st: &mut Running) -> bool {
        let mut any = false;
        let at = std::time::SystemTime::now();
        while let Some(ev) = self.core.poll_event() {
            any = true;
            if let Some(p) = &mut self.persist {
                p.note(&self.name, &ev);
            }
            match ev {
                CoreEvent::Member { kind, member } => {
                    tracing::info!(
                        node = %self.name,
                        member = %member.name,
                        addr = %member.addr,
                        event = ?kind,
                        incarnation = member.incarnation,
                        "member event"
                    );
                    self.events
                        .send_with(|| Event::Member(Arc::new(MemberEvent { kind, member, at })));
                }
                CoreEvent::User(ev) => {
                    tracing::debug!(node = %self.name, origin = %ev.origin, name = %ev.name, ltime = ev.ltime, "user event");
                    self.events
                        .send_with(|| Event::User(Arc::new(UserEvent::stamped(ev, at))));
                }
                CoreEvent::State(change) => {
                    self.events
                        .send_with(|| Event::State(Arc::new(StateChange::stamped(change, at))));
                }
                CoreEvent::Kv(change) => {
                    self.events
                        .send_with(|| Event::Kv(Arc::new(KvChange::stamped(change, at))));
                }
                CoreEvent::Refused { limit, count, peer } => {
                    // The core reports each kind at most once a second.
                    let peer = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
                    tracing::warn!(node = %self.name, limit = limit.name(), count, %peer, "refused what a peer sent: limit reached");
                }
                CoreEvent::ClockRefused(r) => self.clock_refused(&r),
                CoreEvent::NameConflict { holder } => {
                    tracing::warn!(node = %self.name, %holder, "this node's name is held by another live member");
                }
                CoreEvent::MembershipMismatch { peer, theirs } => {
                    let ours = self.core.config().membership;
                    tracing::error!(node = %self.name, %peer, %theirs, %ours, "a peer runs the other membership mode: refused (every node of a cluster must set the same membership)");
                }
                CoreEvent::Query(q) => self.on_query(q),
                CoreEvent::Suspected {
                    name,
                    accuser,
                    cause,
                } => {
                    tracing::debug!(node = %self.name, member = %name, %accuser, %cause, "suspicion raised");
                    let s = crate::Suspected {
                        name: name.to_string(),
                        accuser: accuser.to_string(),
                        cause,
                        at,
                    };
                    self.events.send_with(|| Event::Suspected(Arc::new(s)));
                }
                CoreEvent::QueryResponse(r) => {
                    let Some((tx, asked)) = st.queries.get(&r.ltime) else {
                        continue;
                    };
                    let answer = if r.ack {
                        crate::QueryAnswer::Ack {
                            from: r.from.to_string(),
                        }
                    } else {
                        metrics::record_query_response(&self.name, asked.elapsed());
                        crate::QueryAnswer::Response {
                            from: r.from.to_string(),
                            payload: r.payload,
                        }
                    };
                    if tx.try_send(answer).is_err() {
                        tracing::debug!(node = %self.name, ltime = r.ltime, "query answer dropped: the asker is not reading");
                    }
                }
                CoreEvent::QueryDone { ltime } => {
                    st.queries.remove(&ltime);
                }
                CoreEvent::LeaveComplete => {
                    st.left = true;
                    for tx in st.leaves.drain(..) {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
        any
    }

    /// Records were refused as stamped too far ahead: one WARN line per
    /// interval (a peer can trigger these at will), the counter is exact.
    fn clock_refused(&self, r: &rumor_core::kv::ClockRefusal) {
        let Some(held) = self.ctx.warn.allow("kv_refused_future") else {
            return;
        };
        let peer = r.peer.map_or_else(|| "-".to_string(), |p| p.to_string());
        let offset = r.writer_offset.map_or_else(
            || "not measured".to_string(),
            |s| format!("{:+.3}s", s.offset_secs()),
        );
        tracing::warn!(node = %self.name, writer = ?r.writer, %peer, key = ?r.key,
            ahead_s = r.ahead_micros as f64 / 1e6, writer_clock_offset = %offset,
            refused = r.count, similar_lines_held_back = held,
            "refused key-space records stamped too far ahead of this node's clock (kv max_drift): \
             this clock or the writer's is off; they are taken once the clocks are within the window");
    }

    async fn send_datagram(&mut self, to: SocketAddr, payload: &[u8]) {
        let packet = match self.framer().seal(payload) {
            Ok(p) => p,
            Err(e) => {
                Counters::inc(&self.counters.udp_send_errors);
                tracing::warn!(node = %self.name, error = %e, "could not seal datagram");
                return;
            }
        };
        self.sent.record(std::time::Instant::now(), to, &packet);
        let mut sent = self.net.send_to(&packet, to).await;
        if matches!(&sent, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused) {
            // With IP_RECVERR the kernel reports an ICMP error answering an
            // earlier datagram through whichever call on the socket comes
            // next, and a send that reports it is not made: hand the core
            // the refusal and send again, or this datagram is lost.
            self.report_refused();
            sent = self.net.send_to(&packet, to).await;
        }
        match sent {
            Ok(n) => {
                Counters::inc(&self.counters.udp_packets_out);
                Counters::add(&self.counters.udp_bytes_out, n);
            }
            Err(e) => {
                Counters::inc(&self.counters.udp_send_errors);
                tracing::debug!(node = %self.name, %to, error = %e, "udp send failed");
            }
        }
    }
}
