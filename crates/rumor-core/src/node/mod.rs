//! The per-node protocol state machine and its sans-IO API.
//!
//! Packets and time go in ([`Node::handle_datagram`], [`Node::handle_stream`],
//! [`Node::handle_timeout`]); packets, timers and events come out
//! ([`Node::poll_transmit`], [`Node::poll_timeout`], [`Node::poll_event`]).
//! The node is membership (the members table, `probe` the SWIM failure
//! detector, `merge` the rules for applying alive/suspect/dead claims,
//! `admit`, `resume`, `force_leave`) plus the services built on it:
//! aggregation, per-node state, user events, queries and the key space,
//! each reached only through a `Context` (see the `service` module); the
//! `aggregate`, `state`, `query` and `kv` submodules here are their public
//! API on the node.

mod admit;
mod aggregate;
mod force_leave;
mod kv;
mod merge;
mod partial;
mod probe;
mod query;
mod resume;
pub(crate) mod service;
mod state;
mod table;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::awareness::Awareness;
use crate::broadcast::BroadcastQueue;
use crate::codec::{self, DecodeError, PROTOCOL_MAX, PROTOCOL_MIN};
use crate::config::Config;
use crate::event::Event;
use crate::member::{record_digest, validate_name, Member, MemberState, Tags, MAX_TAGS_BYTES};
use crate::message::{Alive, MemberRecord, Message, MessageType, PushPull};
use crate::stats::Stats;
use crate::suspicion::Suspicion;
use crate::time::Instant;
use crate::{Error, Rejected};

use admit::Source;
use probe::{Probe, Relay};
use service::Service;
use table::{Entry, Fresh, Members};

pub use table::Identities;

pub use crate::kv::service::Imported;
pub use force_leave::{ForceLeave, ForceLeaveError};
pub use resume::{Resume, Resumed};

/// How a [`Transmit`] travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransmitKind {
    /// One UDP datagram, at most `Config::packet_size` bytes.
    Datagram,
    /// A request over a stream (TCP). The peer's answer, if any, is handed
    /// back to this node with [`Node::handle_stream`].
    Stream,
}

/// Bytes the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// Datagram or stream.
    pub kind: TransmitKind,
    /// The encoded packet.
    pub payload: Vec<u8>,
    /// `Some(limit)` marks a best-effort stream request (a probe's stream
    /// ping, see [`Config::probe_stream_fallback`]): the driver sends it
    /// only if a stream slot is free without eating into the slots other
    /// streams need (else it drops it), and ends the whole exchange
    /// (connect, request, answer) within `limit`, after which the answer no
    /// longer matters. `None` for datagrams and every other stream.
    pub deadline: Option<std::time::Duration>,
}

impl Transmit {
    /// Whether this goes over a stream.
    pub fn is_stream(&self) -> bool {
        self.kind == TransmitKind::Stream
    }
}

/// Timers the node sets for itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ProbeTick,
    /// The direct ping of probe `seq` timed out: ask relays.
    ProbeTimeout(u32),
    /// Probe `seq` is over: judge it.
    ProbeEnd(u32),
    /// Probe a member others suspect.
    ProbeSuspect(Arc<str>),
    /// The relay probe `seq` got no ack: send the requester a nack.
    RelayTimeout(u32),
    /// A suspicion of this member may have expired.
    Suspicion(Arc<str>),
    GossipTick,
    /// A deferred eager round is due (fresh rumors arrived too soon after
    /// the last one).
    EagerTick,
    PushPullTick,
    /// A pull that follows a join (see [`Config::join_sync_delay`]), of
    /// the join with this number (an earlier join's pulls are dropped).
    JoinSync(u32),
    ReconnectTick,
    /// A timer of the per-node state service.
    State(crate::state::service::Tick),
    /// A timer of the aggregation service.
    Aggregation(crate::aggregate::service::Tick),
    /// A timer of the key-space service.
    Kv(crate::kv::service::Tick),
    /// A timer of the query service.
    Query(crate::query::service::Tick),
    /// The partial-membership overlay's timers may be due.
    Overlay,
    /// Announce this node again on the tree, after the join with this
    /// number (see `Node::announce`).
    Announce(u32),
}

/// Most pulls after a join (see [`Node::join_sync`]): the waits double, so
/// the last one comes 2^ROUNDS - 1 join sync delays after the join (15.75 s
/// on the LAN profile).
const JOIN_SYNC_ROUNDS: u8 = 6;

/// The pulls that follow a join: how many are left, the wait before the
/// next, and the number of the join they follow (a join retried after a
/// refusal starts them over).
#[derive(Clone, Copy, Debug, Default)]
struct JoinSyncs {
    left: u8,
    wait: Duration,
    join: u32,
}

/// One node of the cluster: the whole protocol, without I/O.
pub struct Node {
    config: Config,
    name: Arc<str>,
    rng: Xoshiro256PlusPlus,
    /// Every known member, this node included, by name.
    members: Members,
    /// Members alive or suspect, this node included.
    live: usize,
    /// Indices into `members` in probe order, and the next position.
    probe_order: Vec<u32>,
    probe_pos: usize,
    probes: HashMap<u32, Probe>,
    /// Suspects this node probes every interval until their suspicion ends,
    /// and stalled members until they answer.
    watching: HashSet<Arc<str>>,
    /// Members whose host is up but whose process has not answered this
    /// node's probes, since when ([`Config::stall_grace`]). Only members
    /// alive or suspect: an entry goes when its member answers or is gone.
    stalled: HashMap<Arc<str>, Instant>,
    relays: HashMap<u32, Relay>,
    next_seq: u32,
    suspicions: HashMap<Arc<str>, Suspicion>,
    user_events: crate::user_event::service::UserEvents,
    /// Queries seen, and this node's own in flight.
    queries: crate::query::service::Queries,
    node_state: crate::state::service::NodeState,
    aggregation: crate::aggregate::service::Aggregation,
    kv: crate::kv::service::KeySpace,
    /// Dead or left members in the order they went, for reclaiming.
    tombstones: VecDeque<(Instant, Arc<str>)>,
    awareness: Awareness,
    broadcasts: BroadcastQueue,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    started: bool,
    leaving: bool,
    leave_pending: bool,
    /// A rumor was queued that has not been gossiped yet.
    fresh: bool,
    /// A gossip tick is pending (ticks run only while rumors are queued).
    gossip_scheduled: bool,
    /// A deferred eager round is pending.
    eager_scheduled: bool,
    /// When the last eager gossip round went out.
    last_eager: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    samples: crate::samples::Samples,
    /// Smoothed round trip of direct probes (TCP's estimator: each sample
    /// weighs 1/8), for the propagation budget's hop latency.
    srtt: Option<std::time::Duration>,
    /// The time of the input being handled.
    now: Instant,
    /// Where the datagram or stream being handled came from.
    peer: Option<SocketAddr>,
    /// Names heard of from third parties, waiting for their ack.
    pending: crate::admission::Pending,
    /// Stream requests this node sent, by destination: their answers are
    /// trusted with new members.
    awaiting_reply: HashMap<SocketAddr, Instant>,
    /// Pings asking whether another address answers to this node's name.
    name_checks: HashMap<u32, (SocketAddr, Instant)>,
    /// Another live member holds this node's name, at this address.
    conflict: Option<SocketAddr>,
    /// The pulls that follow a join.
    join_syncs: JoinSyncs,
    /// A join's first answer is awaited: this node then announces itself
    /// to every live member it lists (see [`Node::announce_self`]).
    announce: bool,
    /// Per [`crate::limits::Limit`]: when refusals were last reported, and
    /// how many since.
    refusals: [(Option<Instant>, u64); crate::limits::Limit::ALL.len()],
    /// The overlay, in partial membership (built at start).
    overlay: Option<Box<partial::Overlay>>,
    /// Peers found running the other membership mode.
    mismatched: Vec<(SocketAddr, crate::config::Membership)>,
}

impl Node {
    /// A node called `name`, reachable at `addr`, with its RNG seeded by `seed`.
    pub fn new(name: &str, addr: SocketAddr, config: Config, seed: u64) -> Result<Self, Error> {
        validate_name(name)?;
        config.validate()?;
        let name: Arc<str> = Arc::from(name);
        let broadcasts = BroadcastQueue::with_capacity(config.limits.max_broadcasts);
        let members = Members::new(
            name.clone(),
            addr,
            (PROTOCOL_MIN, PROTOCOL_MAX),
            Fresh {
                incarnation: 1,
                state: MemberState::Alive,
                state_change: Instant::ZERO,
            },
        );
        Ok(Node {
            awareness: Awareness::new(config.awareness_max),
            node_state: crate::state::service::NodeState::new(
                name.clone(),
                crate::state::Quota {
                    keys: config.limits.max_state_keys_per_owner,
                    bytes: config.limits.max_state_bytes_per_owner,
                },
            ),
            aggregation: Default::default(),
            kv: crate::kv::service::KeySpace::new(
                crate::kv::KvStore::new(name.clone(), config.kv.clone()).with_quota(
                    crate::kv::SpaceQuota {
                        keys: config.limits.max_kv_keys,
                        bytes: config.limits.max_kv_bytes,
                    },
                ),
            ),
            name,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            members,
            live: 1,
            probe_order: Vec::new(),
            probe_pos: 0,
            probes: HashMap::new(),
            watching: HashSet::new(),
            stalled: HashMap::new(),
            relays: HashMap::new(),
            next_seq: 0,
            suspicions: HashMap::new(),
            user_events: Default::default(),
            queries: Default::default(),
            tombstones: VecDeque::new(),
            broadcasts,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            started: false,
            leaving: false,
            leave_pending: false,
            fresh: false,
            gossip_scheduled: false,
            eager_scheduled: false,
            last_eager: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            samples: Default::default(),
            srtt: None,
            now: Instant::ZERO,
            peer: None,
            pending: crate::admission::Pending::new(
                config.limits.max_pending_members,
                config.limits.max_pending_per_sender,
            ),
            awaiting_reply: HashMap::new(),
            name_checks: HashMap::new(),
            conflict: None,
            join_syncs: JoinSyncs::default(),
            announce: false,
            refusals: Default::default(),
            overlay: None,
            mismatched: Vec::new(),
            config,
        })
    }

    /// Share member identities (name, address, protocol range, tags) with
    /// the other nodes of this process that hold `identities`, so each is
    /// stored once: for simulations and tests hosting thousands of nodes.
    pub fn share_identities(&mut self, identities: Identities) {
        self.members.share(identities);
    }

    // ----- commands -----

    /// Start this node above `previous`, the incarnation it had before a
    /// restart (recorded in a snapshot): its first alive claim then outranks
    /// whatever the cluster remembers of it, with no refutation round trip.
    /// Has no effect once the node has started or if `previous` is lower.
    pub fn resume_incarnation(&mut self, previous: u64) {
        if !self.started {
            let e = &mut self.members[0];
            e.incarnation = e.incarnation.max(previous.saturating_add(1));
        }
    }

    /// Join the cluster through `seeds`: a push-pull handshake with each.
    /// Also rejoins after [`Node::leave`], under a higher incarnation.
    pub fn join(&mut self, now: Instant, seeds: &[SocketAddr]) {
        self.start(now);
        if self.leaving {
            self.leaving = false;
            self.leave_pending = false;
            self.bump_incarnation(now, 1);
        }
        if self.partial() {
            self.join_overlay(now, seeds);
        } else {
            let own = self.local_entry().addr();
            let request =
                codec::encode_packet(&Message::PushPull(self.push_pull(now, true, false)));
            for &seed in seeds.iter().filter(|&&s| s != own) {
                self.expect_reply(now, seed);
                self.send_stream(seed, request.clone(), MessageType::PushPull);
                self.announce = true;
            }
        }
        if !self.config.join_sync_delay.is_zero() {
            let join = self.join_syncs.join.wrapping_add(1);
            self.join_syncs = JoinSyncs {
                left: JOIN_SYNC_ROUNDS,
                wait: self.config.join_sync_delay,
                join,
            };
            self.set_timer(now + self.config.join_sync_delay, Timer::JoinSync(join));
        }
        self.forward_fresh(now);
    }

    /// Leave gracefully: announce it, stop probing, and report
    /// [`Event::LeaveComplete`] once the announcement has been sent enough.
    pub fn leave(&mut self, now: Instant) {
        self.start(now);
        if self.leaving {
            return;
        }
        self.leaving = true;
        if self.conflict.is_some() {
            // The name is another member's: announcing a leave would mark
            // that member left.
            self.events.push_back(Event::LeaveComplete);
            return;
        }
        let incarnation = self.local_entry().incarnation;
        let name = self.name.clone();
        self.on_dead(now, incarnation, name.clone(), name, true);
        self.leave_overlay();
        self.leave_pending = true;
        self.check_leave_complete();
        self.forward_fresh(now);
    }

    /// Replace this node's tags, announcing them under a new incarnation.
    pub fn set_tags(&mut self, now: Instant, tags: Tags) -> Result<(), Error> {
        let size = codec::tags_encoded_len(&tags);
        if size > MAX_TAGS_BYTES {
            return Err(Error::TagsTooLarge {
                size,
                limit: MAX_TAGS_BYTES,
            });
        }
        self.start(now);
        let own = self.local_entry();
        let (addr, protocol) = (own.addr(), own.protocol());
        self.members.set_identity(0, addr, protocol, Arc::new(tags));
        self.bump_incarnation(now, 1);
        self.forward_fresh(now);
        Ok(())
    }

    /// Broadcast a user event to the cluster (and deliver it here too).
    /// Returns its Lamport time.
    pub fn send_event(&mut self, now: Instant, name: &str, payload: &[u8]) -> Result<u64, Error> {
        let size = name.len() + payload.len();
        if name.is_empty() {
            return Err(Error::Event(Rejected::Invalid(
                "event name is empty".into(),
            )));
        }
        if size > self.config.max_event_size {
            return Err(Error::Event(Rejected::TooLarge(format!(
                "name and payload take {size} bytes, the limit is {}",
                self.config.max_event_size
            ))));
        }
        self.start(now);
        let ltime = self.with_user_events(now, |s, cx| s.send(cx, name, payload));
        self.forward_fresh(now);
        Ok(ltime)
    }

    /// The user-event Lamport clock.
    pub fn event_clock(&self) -> u64 {
        self.user_events.clock()
    }

    // ----- input -----

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.start(now);
        self.peer = Some(from);
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let Some(decoded) = self.decode(bytes) else {
            return;
        };
        for msg in decoded {
            if self.partial() && self.off_tree(from, &msg) {
                self.stats.off_tree_claims += 1;
                continue;
            }
            self.handle_message(now, from, msg);
        }
        self.forward_fresh(now);
    }

    /// A datagram this node sent to `to` came back "port unreachable" (an
    /// ICMP error the driver read from its socket): nothing listens there.
    /// A probe of that address asks its relays at once, a relayed ping is
    /// nacked at once, and a member whose relayed pings were all refused
    /// (and its direct one, unless lost) is suspected with the short
    /// [`crate::Config::unreachable_suspicion_timeout`] instead of the Lifeguard
    /// timeout. Ignored when that setting is `None`.
    pub fn handle_unreachable(&mut self, now: Instant, to: SocketAddr) {
        self.start(now);
        self.on_unreachable(now, to);
        self.forward_fresh(now);
    }

    /// A stream this node opened to `to` (a [`TransmitKind::Stream`]
    /// transmit) has connected: the kernel at `to` accepted it, so that
    /// host is up even if its process never answers. Report it as soon as
    /// the connection is made, before the answer (only streams with a
    /// [`Transmit::deadline`], a probe's stream ping, need it); see
    /// [`Config::stall_grace`].
    pub fn handle_stream_connected(&mut self, now: Instant, to: SocketAddr) {
        self.start(now);
        self.on_stream_connected(to);
    }

    /// A stream message arrived from `from` (a request, or the answer to one
    /// of ours). Returns the answer to write back on the same stream, if any.
    pub fn handle_stream(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Option<Vec<u8>> {
        self.start(now);
        self.peer = Some(from);
        self.stats.streams_in += 1;
        if bytes.len() > self.config.max_stream_size {
            self.stats.oversize_streams += 1;
            return None;
        }
        let mut reply = None;
        // An answer to this node's own request, and what it said this node
        // holds that the partner lacks.
        let mut answer: Option<PushPull> = None;
        let mut lacking = Vec::new();
        let msgs = self.decode(bytes)?;
        if let Some(refusal) = self.check_stream_mode(from, &msgs) {
            return Some(refusal);
        }
        for msg in msgs {
            match msg {
                Message::PushPull(pp) => {
                    self.stats.count_in(MessageType::PushPull);
                    let solicited = self.merge_push_pull(now, &pp, from);
                    if !pp.reply {
                        let answer = self.push_pull(now, false, true);
                        reply = Some(self.stream_reply(answer, Vec::new()));
                    } else if solicited {
                        answer = Some(pp);
                    }
                }
                Message::Pull { alive, digest } => {
                    self.stats.count_in(MessageType::Pull);
                    self.on_alive(now, &alive, Source::Requester(from), false);
                    let (answer, lacking) = self.answer_pull(now, &digest);
                    reply = Some(self.stream_reply(answer, lacking));
                }
                Message::Lacking { positions } => {
                    self.stats.count_in(MessageType::Lacking);
                    lacking = positions;
                }
                Message::KvSyncRequest { session, request } => {
                    // The stream's address is the connection's, not the one
                    // the asker gossips from: answer on the stream itself.
                    self.stats.count_in(MessageType::KvSyncRequest);
                    reply = Some(
                        self.with_kv(now, |s, cx| s.stream_answer(cx, from, session, request)),
                    );
                }
                // A probe's stream ping: answered on the stream itself, for
                // the same reason.
                Message::Ping { seq, target } => {
                    self.stats.count_in(MessageType::Ping);
                    reply = self.stream_ping_answer(seq, &target).or(reply);
                }
                Message::Ack { seq } => {
                    self.stats.count_in(MessageType::Ack);
                    self.on_stream_ack(seq);
                }
                msg => self.handle_message(now, from, msg),
            }
        }
        if let Some(answer) = answer {
            self.push_back(&answer, &lacking, from);
            if std::mem::take(&mut self.announce) {
                self.announce_self();
            }
        }
        self.forward_fresh(now);
        reply
    }

    /// Tell every live member, in a datagram of its own, that this node is
    /// alive: once, when the first answer to a join arrives. A claim that
    /// comes from the member's own address is admitted at once, where the
    /// same claim relayed by a third party waits for a ping to that address
    /// ([`crate::admission`]); without this every member pinged every
    /// joiner, and answered every later one (half of the datagrams a
    /// cluster of 700 sent while its nodes started one after another).
    /// Members admit such a claim without forwarding it eagerly (the
    /// joiner reaches them all itself) and gossip it on their ticks, which
    /// reach whoever lost its datagram.
    fn announce_self(&mut self) {
        let own = Message::Alive(alive_of(&self.name, self.local_entry()));
        let targets: Vec<SocketAddr> = self
            .members
            .values()
            .skip(1)
            .filter(|e| matches!(e.state, MemberState::Alive | MemberState::Suspect))
            .map(Entry::addr)
            .collect();
        for to in targets {
            self.send_bare(to, &own);
        }
    }

    /// Run the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::ProbeTick => self.probe_tick(now),
                Timer::ProbeTimeout(seq) => self.probe_timeout(now, seq),
                Timer::ProbeEnd(seq) => self.probe_end(now, seq),
                Timer::ProbeSuspect(name) => self.probe_suspect(now, name),
                Timer::RelayTimeout(seq) => self.relay_timeout(seq),
                Timer::Suspicion(name) => self.suspicion_timeout(now, name),
                Timer::GossipTick => self.gossip_tick(now),
                // `forward_fresh` below runs the round.
                Timer::EagerTick => self.eager_scheduled = false,
                Timer::PushPullTick => self.push_pull_tick(now),
                Timer::JoinSync(join) => self.join_sync(now, join),
                Timer::Query(t) => self.with_queries(now, |s, cx| s.on_timer(cx, t)),
                Timer::ReconnectTick => self.reconnect_tick(now),
                Timer::State(t) => self.with_state(now, |s, cx| s.on_timer(cx, t)),
                Timer::Aggregation(t) => self.with_aggregation(now, |s, cx| s.on_timer(cx, t)),
                Timer::Kv(t) => self.with_kv(now, |s, cx| s.on_timer(cx, t)),
                Timer::Overlay => self.overlay_timeout(now),
                Timer::Announce(join) => self.announce(join),
            }
        }
        self.forward_fresh(now);
    }

    // ----- output -----

    /// The next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_none() {
            shrink_idle(&mut self.transmits);
        }
        t
    }

    /// The next event to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() {
            shrink_idle(&mut self.events);
        }
        e
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    // ----- queries -----

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This node as the cluster sees it.
    pub fn local(&self) -> Member {
        self.member_at(0)
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.members.get_index_of(name).map(|i| self.member_at(i))
    }

    /// The round trip of the last direct probe of member `name` answered in
    /// time, if any was.
    pub fn member_rtt(&self, name: &str) -> Option<std::time::Duration> {
        let micros = self.members.get(name)?.rtt_micros;
        (micros > 0).then(|| std::time::Duration::from_micros(micros.into()))
    }

    /// Every known member (this node and tombstones included).
    pub fn members(&self) -> impl Iterator<Item = Member> + '_ {
        (0..self.members.len()).map(|i| self.member_at(i))
    }

    /// Known members, this node and tombstones included.
    pub fn num_members(&self) -> usize {
        self.members.len()
    }

    /// Members alive or suspect, this node included.
    pub fn num_live(&self) -> usize {
        self.live
    }

    /// The local health score (0 is healthy).
    pub fn awareness(&self) -> u32 {
        self.awareness.score()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How long a fresh update should take to reach every live member
    /// under this node's configuration, one hop costing half the smoothed
    /// probe round trip (zero before the first probe is answered).
    pub fn propagation_budget(&self) -> crate::budget::PropagationBudget {
        let one_way = self.srtt.unwrap_or_default() / 2;
        crate::budget::propagation_budget(&self.config, self.live, one_way)
    }

    /// The smoothed round trip of direct probes, if one was answered yet.
    pub fn smoothed_rtt(&self) -> Option<std::time::Duration> {
        self.srtt
    }

    /// Take timing samples (probe round trips, suspicion lifetimes,
    /// broadcast queue waits, dissemination latencies) from now on, or stop.
    /// Off by default: a driver that exports histograms turns it on and
    /// drains them with [`Node::take_samples`].
    pub fn set_sampling(&mut self, on: bool) {
        self.samples = crate::samples::Samples::new(on);
    }

    /// The timing samples taken since the last call, for the driver's
    /// histograms.
    pub fn take_samples(&mut self) -> crate::samples::Samples {
        let on = self.samples.enabled();
        std::mem::replace(&mut self.samples, crate::samples::Samples::new(on))
    }

    /// Updates waiting to be gossiped: how many, and their encoded bytes.
    pub fn broadcast_queue(&self) -> (usize, usize) {
        (self.broadcasts.len(), self.broadcasts.bytes())
    }

    /// Change this node's [`crate::Limits`] while it runs (an agent's SIGHUP):
    /// every bound takes the new value at once. Nothing held over a lowered
    /// bound is dropped; it only refuses what is new until back under.
    pub fn set_limits(&mut self, limits: crate::Limits) -> Result<(), Error> {
        limits.validate()?;
        self.broadcasts.set_capacity(limits.max_broadcasts);
        self.node_state.store_mut().set_quota(crate::state::Quota {
            keys: limits.max_state_keys_per_owner,
            bytes: limits.max_state_bytes_per_owner,
        });
        self.kv.set_quota(crate::kv::SpaceQuota {
            keys: limits.max_kv_keys,
            bytes: limits.max_kv_bytes,
        });
        self.pending
            .set_bounds(limits.max_pending_members, limits.max_pending_per_sender);
        self.config.limits = limits;
        Ok(())
    }

    /// Change this node's protocol configuration while it runs (an agent's
    /// SIGHUP). `config` is checked as [`Node::new`] checks it: an invalid
    /// one changes nothing. Name, incarnation, members and state are kept.
    /// The fields of [`Config::RESTART_ONLY`] keep their running values;
    /// the names of those `config` asked to change are returned. The
    /// periodic timers follow the new intervals at once: a tick due later
    /// than a new, shorter interval from `now` is brought forward, a
    /// disabled one (interval zero) stops, an enabled one starts.
    pub fn set_protocol(
        &mut self,
        now: Instant,
        config: Config,
    ) -> Result<Vec<&'static str>, Error> {
        let (next, kept) = self.config.runtime_update(&config);
        next.validate()?;
        self.set_limits(next.limits.clone())?;
        let old = std::mem::replace(&mut self.config, next);
        if self.started {
            self.rearm_periodic(now, &old);
        }
        Ok(kept)
    }

    /// After a configuration change: move each periodic timer whose
    /// interval changed (see [`Node::set_protocol`]).
    fn rearm_periodic(&mut self, now: Instant, old: &Config) {
        let new = &self.config;
        let probe = (
            self.awareness.scale(old.probe_interval),
            self.awareness.scale(new.probe_interval),
        );
        let push_pull = (
            old.push_pull_interval_for(self.live),
            new.push_pull_interval_for(self.live),
        );
        let full = !self.partial();
        let plan = [
            (Timer::ProbeTick, probe, full),
            (
                Timer::GossipTick,
                (old.gossip_interval, new.gossip_interval),
                self.gossip_scheduled,
            ),
            (Timer::PushPullTick, push_pull, true),
            (
                Timer::ReconnectTick,
                (old.reconnect_interval, new.reconnect_interval),
                true,
            ),
        ];
        for (timer, (before, after), running) in plan {
            if running && before != after {
                self.rearm(now, timer, after);
            }
        }
        self.with_state(now, |s, cx| s.on_config(cx, old));
        self.with_kv(now, |s, cx| s.on_config(cx, old));
        self.with_aggregation(now, |s, cx| s.on_config(cx, old));
    }

    /// Periodic `timer` now runs every `interval` (zero: never): due at
    /// the earlier of its current deadline and `now + interval`.
    fn rearm(&mut self, now: Instant, timer: Timer, interval: std::time::Duration) {
        let due = self
            .timers
            .iter()
            .filter(|Reverse((_, _, t))| *t == timer)
            .map(|Reverse((at, _, _))| *at)
            .min();
        self.timers.retain(|Reverse((_, _, t))| *t != timer);
        if interval.is_zero() {
            return;
        }
        let at = due.map_or(now + interval, |at| at.min(now + interval));
        self.set_timer(at, timer);
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether [`Node::leave`] was called (and no join since).
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    // ----- internals shared by the submodules -----

    /// Every input and command begins here: note the time (and forget the
    /// previous input's peer), and start the timers the first time.
    fn start(&mut self, now: Instant) {
        self.now = now;
        self.peer = None;
        if self.started {
            return;
        }
        self.started = true;
        if let Some(e) = self.members.get_mut(&self.name) {
            e.state_change = now;
        }
        if self.partial() {
            // No probe round and no gossip ticks: the overlay does both.
            self.start_overlay(now);
        }
        self.gossip_own_alive(1);
        if !self.partial() {
            let probe = self.jitter(self.config.probe_interval);
            let gossip = self.jitter(self.config.gossip_interval);
            self.set_timer(now + probe, Timer::ProbeTick);
            self.set_timer(now + gossip, Timer::GossipTick);
            self.gossip_scheduled = true;
        }
        let push_pull = self.jitter(self.config.push_pull_interval);
        if !self.config.push_pull_interval.is_zero() {
            self.set_timer(now + push_pull, Timer::PushPullTick);
        }
        self.with_state(now, |s, cx| s.on_start(cx));
        self.with_kv(now, |s, cx| s.on_start(cx));
        if !self.config.reconnect_interval.is_zero() {
            let reconnect = self.jitter(self.config.reconnect_interval);
            self.set_timer(now + reconnect, Timer::ReconnectTick);
        }
    }

    fn jitter(&mut self, max: std::time::Duration) -> std::time::Duration {
        let micros = max.as_micros() as u64;
        std::time::Duration::from_micros(if micros == 0 {
            0
        } else {
            self.rng.random_range(0..micros)
        })
    }

    fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, timer)));
    }

    fn decode(&mut self, bytes: &[u8]) -> Option<Vec<Message>> {
        match codec::decode(bytes) {
            Ok(d) => {
                self.stats.unknown_messages += u64::from(d.unknown);
                Some(d.messages)
            }
            Err(DecodeError::UnsupportedVersion(_)) => {
                self.stats.unsupported_version += 1;
                None
            }
            Err(_) => {
                self.stats.decode_errors += 1;
                None
            }
        }
    }

    fn handle_message(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        self.stats.count_in(msg.kind());
        match msg {
            Message::Ping { seq, target } => self.on_ping(from, seq, &target),
            Message::Ack { seq } => self.on_ack(now, seq, from),
            Message::Nack { seq, refused } => self.on_nack(now, seq, refused),
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => self.on_ping_req(now, from, seq, target, target_addr),
            Message::Alive(a) => self.on_alive(now, &a, Source::Peer(from), true),
            Message::Suspect {
                incarnation,
                name,
                from: accuser,
            } => {
                self.correct_stale_accusation(from, &name, incarnation);
                let cause = crate::event::SuspicionCause::Gossip;
                self.on_suspect(now, incarnation, name, accuser, cause, true)
            }
            Message::Dead {
                incarnation,
                name,
                from: accuser,
            } => {
                self.correct_stale_accusation(from, &name, incarnation);
                self.on_dead(now, incarnation, name, accuser, true)
            }
            Message::PushPull(pp) => {
                self.merge_push_pull(now, &pp, from);
            }
            Message::UserEvent(ev) => self.with_user_events(now, |s, cx| s.on_rumor(cx, ev)),
            Message::Query(q) => self.with_queries(now, |s, cx| s.on_query(cx, q)),
            Message::QueryResponse(r) => self.with_queries(now, |s, cx| s.on_response(cx, r)),
            Message::StateSync(sync) => self.with_state(now, |s, cx| s.on_sync(cx, from, sync)),
            Message::StateDelta(d) => self.with_state(now, |s, cx| s.on_delta(cx, &d)),
            Message::Aggregate {
                sender,
                epoch,
                seq,
                shares,
            } => self.with_aggregation(now, |s, cx| {
                s.on_transfer(cx, from, sender, epoch, seq, shares)
            }),
            Message::AggregateAck { epoch, seq } => self.aggregation.on_ack(epoch, seq),
            Message::KvRecords(records) => {
                self.with_kv(now, |s, cx| s.on_records(cx, records));
            }
            Message::KvSyncRequest { session, request } => {
                self.with_kv(now, |s, cx| s.on_sync_request(cx, from, session, request))
            }
            Message::KvClock(probe) => self.with_kv(now, |s, cx| s.on_clock(cx, from, probe)),
            Message::KvSyncResponse { session, response } => {
                self.with_kv(now, |s, cx| s.on_sync_response(cx, from, session, response))
            }
            Message::Reap { incarnation, name } => self.on_reap(now, Some(from), incarnation, name),
            // Answered only over a stream (`handle_stream`), and read
            // only in an answer to this node's pull there.
            Message::Pull { .. } | Message::Lacking { .. } => {}
            Message::View(m) => self.on_view(now, from, m),
            Message::Tree(m) => self.on_tree(now, from, m),
            Message::Membership(m) => self.on_membership(from, m),
        }
    }

    /// Send `first` to `to` in one datagram, with as many queued updates as
    /// fit; nothing is sent if that leaves the datagram empty.
    fn send_packet(&mut self, to: SocketAddr, first: &[Message]) {
        let mut buf = Vec::with_capacity(self.config.packet_size);
        codec::begin_packet(&mut buf);
        for msg in first {
            codec::encode_message(msg, &mut buf);
            self.stats.count_out(msg.kind());
        }
        self.piggyback(&mut buf);
        if buf.len() > 1 {
            self.push_datagram(to, buf);
        }
    }

    /// Send one small message alone in a datagram, with no queued updates
    /// piggybacked: for the pulls every node with an empty store sends each
    /// interval, which must not spend the retransmit budget of membership
    /// updates (dissemination stays as it is without them).
    pub(super) fn send_bare(&mut self, to: SocketAddr, msg: &Message) {
        self.send_bare_all(to, std::slice::from_ref(msg));
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

    /// Fill `buf` with queued updates up to the packet size.
    fn piggyback(&mut self, buf: &mut Vec<u8>) {
        let limit = self.config.retransmit_limit(self.live);
        let (stats, samples) = (&mut self.stats, &mut self.samples);
        self.broadcasts.fill(
            buf,
            self.config.packet_size,
            limit,
            self.now,
            |code, waited| {
                if let Some(kind) = MessageType::from_code(code) {
                    stats.count_out(kind);
                }
                if let Some(w) = waited {
                    if !samples.add_broadcast_wait(w) {
                        stats.samples_dropped += 1;
                    }
                }
            },
        );
        self.check_leave_complete();
    }

    fn push_datagram(&mut self, to: SocketAddr, payload: Vec<u8>) {
        self.stats.packets_out += 1;
        self.stats.bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Datagram,
            payload,
            deadline: None,
        });
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

    fn send_stream(&mut self, to: SocketAddr, mut payload: Vec<u8>, kind: MessageType) {
        self.mark_stream(&mut payload);
        self.push_stream(to, payload, kind, None);
    }

    /// Queue a stream request; `deadline` as in [`Transmit::deadline`].
    fn push_stream(
        &mut self,
        to: SocketAddr,
        payload: Vec<u8>,
        kind: MessageType,
        deadline: Option<std::time::Duration>,
    ) {
        self.stats.streams_out += 1;
        self.stats.count_out(kind);
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Stream,
            payload,
            deadline,
        });
    }

    fn gossip_tick(&mut self, now: Instant) {
        self.gossip_scheduled = false;
        self.gossip_round(now, self.config.gossip_nodes, true);
        self.schedule_gossip(now);
    }

    /// Keep the gossip tick running while rumors are queued, and only then:
    /// an idle node wakes for its probes, not five times a second for an
    /// empty queue.
    fn schedule_gossip(&mut self, now: Instant) {
        if self.started && !self.gossip_scheduled && !self.broadcasts.is_empty() {
            self.gossip_scheduled = true;
            let interval = self.config.gossip_interval;
            self.set_timer(now + interval, Timer::GossipTick);
        }
    }

    /// Eager forwarding: gossip fresh rumors now rather than at the next
    /// tick; eager rounds are at most one per quarter gossip interval, so a
    /// burst of updates is batched rather than sent one packet each.
    fn forward_fresh(&mut self, now: Instant) {
        if self.fresh && self.config.eager_forward {
            let spacing = self.config.gossip_interval / 4;
            match self.last_eager.map(|t| t + spacing).filter(|&at| at > now) {
                None => {
                    self.last_eager = Some(now);
                    self.gossip_round(now, self.eager_fanout(), false);
                }
                // Too soon after the last round: run one when the spacing is up
                // rather than leave these rumors to the next gossip tick.
                Some(at) if !self.eager_scheduled => {
                    self.eager_scheduled = true;
                    self.set_timer(at, Timer::EagerTick);
                }
                Some(_) => {}
            }
        }
        self.schedule_gossip(now);
        self.flush_overlay(now);
    }

    /// Members an eager round goes to (see [`crate::budget::eager_fanout`]).
    fn eager_fanout(&self) -> usize {
        crate::budget::eager_fanout(&self.config, self.live)
    }

    /// Send queued updates to `fanout` random members; with `to_the_dead`,
    /// recently dead or left ones too, so that they can refute (eager rounds
    /// leave them out: a fresh rumor's few sends go to members that pass it
    /// on).
    fn gossip_round(&mut self, now: Instant, fanout: usize, to_the_dead: bool) {
        self.fresh = false;
        if self.broadcasts.is_empty() {
            return;
        }
        let dead_window = self.config.gossip_to_the_dead;
        // Left members too: a leave may be forged (by anyone, in a plaintext
        // cluster), and the member can refute only if it hears of it.
        let targets = self.random_members(fanout, |e| match e.state {
            MemberState::Alive | MemberState::Suspect => true,
            MemberState::Dead | MemberState::Left => {
                to_the_dead && now.saturating_since(e.state_change) < dead_window
            }
        });
        for i in targets {
            if self.broadcasts.is_empty() {
                break;
            }
            let to = self.members[i].addr();
            self.send_packet(to, &[]);
        }
    }

    fn push_pull_tick(&mut self, now: Instant) {
        let interval = self.config.push_pull_interval_for(self.live);
        self.set_timer(now + interval, Timer::PushPullTick);
        // Growth has had a push-pull interval to settle: trim its slack.
        if self.members.capacity() > self.members.len() + self.members.len() / 4 + 16 {
            self.members.shrink_to_fit();
            self.probe_order.shrink_to_fit();
        }
        if self.leaving {
            return;
        }
        if self.partial() {
            self.pull_from_neighbor(now);
        } else {
            self.push_pull_with_random(now, |e| e.state == MemberState::Alive);
        }
    }

    /// The exchanges after a join are pulls: this node's view is the seed's
    /// snapshot plus what it heard since, nothing a partner lacks. It lists
    /// a 4-byte digest per record it holds, and the answer carries only the
    /// records missing from that list (usually none): a few bytes per
    /// member instead of a full view each way. There are
    /// [`JOIN_SYNC_ROUNDS`] of them, at doubling intervals: when many
    /// nodes join at once, the seed's snapshot is taken early, and the
    /// members it missed are news to few others, so gossip rarely carries
    /// them here; a pull from anyone does.
    fn join_sync(&mut self, now: Instant, join: u32) {
        let syncs = &mut self.join_syncs;
        if self.leaving || syncs.left == 0 || syncs.join != join {
            return;
        }
        syncs.left -= 1;
        syncs.wait = syncs.wait.saturating_mul(2);
        if syncs.left > 0 {
            let next = now + syncs.wait;
            self.set_timer(next, Timer::JoinSync(join));
        }
        self.pull_from_random(now);
    }

    /// Pull from one random alive member: list a digest of every record
    /// held; the answer carries the records this node lacks or holds in
    /// another version, and the positions of the listed digests the
    /// partner holds no record for. This node sends back those records and
    /// the ones of the answer it holds newer (`push_back`), so both sides
    /// end with the newer version of every record either had, for 4 bytes
    /// per member when the views agree. (The periodic exchange stays a
    /// full push-pull: as a pull it healed partitions more slowly; see
    /// docs/simulator.md, "Large clusters".)
    fn pull_from_random(&mut self, now: Instant) {
        if self.partial() {
            return self.pull_from_neighbor(now);
        }
        let Some(&i) = self
            .random_members(1, |e| e.state == MemberState::Alive)
            .first()
        else {
            return;
        };
        let to = self.members[i].addr();
        self.pull_from(now, to);
    }

    /// Pull from `to` (see [`Node::pull_from_random`]).
    fn pull_from(&mut self, now: Instant, to: SocketAddr) {
        let pull = Message::Pull {
            alive: alive_of(&self.name, self.local_entry()),
            digest: self.digests(),
        };
        self.expect_reply(now, to);
        self.send_stream(to, codec::encode_packet(&pull), MessageType::Pull);
    }

    /// Send this node's whole view to one random member that passes `keep`.
    fn push_pull_with_random(&mut self, now: Instant, keep: impl Fn(&Entry) -> bool) {
        if let Some(&i) = self.random_members(1, keep).first() {
            let to = self.members[i].addr();
            let request = self.push_pull(now, false, false);
            let payload = codec::encode_packet(&Message::PushPull(request));
            self.expect_reply(now, to);
            self.send_stream(to, payload, MessageType::PushPull);
        }
    }

    /// Push-pull with one random member believed dead (not left): if it is in
    /// fact alive (a healed partition), each side learns the other's claim,
    /// the accused refute, and the views merge again. Each node tries with
    /// probability dead / live, so the cluster as a whole makes about one
    /// attempt per dead member per interval, whatever its size. (Partial
    /// membership reaches it instead: a pull and a place in the overlay.)
    fn reconnect_tick(&mut self, now: Instant) {
        let interval = self.config.reconnect_interval;
        self.set_timer(now + interval, Timer::ReconnectTick);
        if self.leaving || self.live == self.members.len() {
            return;
        }
        let dead = self
            .members
            .values()
            .filter(|e| e.state == MemberState::Dead)
            .count();
        let chance = (dead as f64 / self.live.max(1) as f64).min(1.0);
        if dead > 0 && self.rng.random_bool(chance) {
            if self.partial() {
                let dead = self.random_members(1, |e| e.state == MemberState::Dead);
                if let Some(&i) = dead.first() {
                    let to = self.members[i].addr();
                    self.reach(now, to);
                }
            } else {
                self.push_pull_with_random(now, |e| e.state == MemberState::Dead);
            }
        }
    }

    /// Encode the push-pull answer to a stream request, with the positions
    /// of a pull's digests this node lacks if there are any.
    fn stream_reply(&mut self, answer: PushPull, lacking: Vec<u32>) -> Vec<u8> {
        self.stats.streams_out += 1;
        self.stats.count_out(MessageType::PushPull);
        let mut out = codec::encode_packet(&Message::PushPull(answer));
        if !lacking.is_empty() {
            self.stats.count_out(MessageType::Lacking);
            codec::encode_message(&Message::Lacking { positions: lacking }, &mut out);
        }
        out
    }

    /// The answer to a [`Message::Pull`]: the records whose digest the
    /// puller did not list, with the recent user events, and the positions
    /// of the listed digests this node holds no record for.
    fn answer_pull(&mut self, now: Instant, digest: &[u32]) -> (PushPull, Vec<u32>) {
        // Sorted and searched, not hashed: at 10,000 members a pull is
        // answered by every member six times after a join, and SipHash
        // over 2·N digests per answer was most of its cost.
        let own = self.digests();
        let mut held = digest.to_vec();
        held.sort_unstable();
        let mut own_sorted = own.clone();
        own_sorted.sort_unstable();
        let lacking = (0u32..)
            .zip(digest)
            .filter(|(_, d)| own_sorted.binary_search(d).is_err())
            .map(|(i, _)| i)
            .collect();
        let answer = self.view(now, false, true, |i, _, _| {
            held.binary_search(&own[i]).is_err()
        });
        (answer, lacking)
    }

    /// The digest of every record held, in member order.
    fn digests(&self) -> Vec<u32> {
        self.members
            .iter()
            .map(|(name, e)| record_digest(name, e.incarnation, e.state))
            .collect()
    }

    /// This node's full view (its own record first) and recent user
    /// events, for a push-pull.
    fn push_pull(&mut self, now: Instant, join: bool, reply: bool) -> PushPull {
        self.view(now, join, reply, |_, _, _| true)
    }

    /// The records that pass `keep` (given each one's position, in member
    /// order) and the recent user events.
    fn view(
        &mut self,
        now: Instant,
        join: bool,
        reply: bool,
        keep: impl Fn(usize, &str, &Entry) -> bool,
    ) -> PushPull {
        let events = self.user_events.recent(now, self.config.event_dedup_window);
        PushPull {
            events,
            join,
            reply,
            members: self
                .members
                .iter()
                .enumerate()
                .filter(|(i, (name, e))| keep(*i, name, e))
                .map(|(_, (name, e))| record_of(name, e))
                .collect(),
        }
    }

    /// Up to `k` distinct random members other than this node that pass `keep`.
    fn random_members(&mut self, k: usize, keep: impl Fn(&Entry) -> bool) -> Vec<usize> {
        let n = self.members.len();
        let mut chosen: Vec<usize> = Vec::with_capacity(k);
        if n <= 1 || k == 0 {
            return chosen;
        }
        // Random tries first (cheap in large clusters), then a scan so that
        // a few eligible members among many gone ones are still found.
        for _ in 0..3 * n.min(64) {
            if chosen.len() == k {
                return chosen;
            }
            let i = self.rng.random_range(1..n);
            if !chosen.contains(&i) && keep(&self.members[i]) {
                chosen.push(i);
            }
        }
        let start = self.rng.random_range(1..n);
        for off in 0..n - 1 {
            if chosen.len() == k {
                break;
            }
            let i = 1 + (start - 1 + off) % (n - 1);
            if !chosen.contains(&i) && keep(&self.members[i]) {
                chosen.push(i);
            }
        }
        chosen
    }

    fn check_leave_complete(&mut self) {
        // `live` no longer counts this node once it is leaving: 0 means
        // there is nobody left to tell.
        if self.leave_pending && (!self.broadcasts.contains(&self.name) || self.live == 0) {
            self.leave_pending = false;
            self.events.push_back(Event::LeaveComplete);
        }
    }

    fn local_entry(&self) -> &Entry {
        &self.members[0]
    }

    fn member_at(&self, i: usize) -> Member {
        let (name, e) = self.members.get_index(i).expect("index in range");
        Member {
            name: name.clone(),
            addr: e.addr(),
            incarnation: e.incarnation,
            state: e.state,
            tags: e.tags().clone(),
            protocol: e.protocol(),
        }
    }
}

/// Give back the memory of a drained queue that a burst (a join storm)
/// grew large.
fn shrink_idle<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > 64 {
        q.shrink_to(16);
    }
}

/// The push-pull record describing `e`.
fn record_of(name: &Arc<str>, e: &Entry) -> MemberRecord {
    MemberRecord {
        alive: alive_of(name, e),
        state: e.state,
    }
}

/// The alive claim describing `e`.
fn alive_of(name: &Arc<str>, e: &Entry) -> Alive {
    Alive {
        incarnation: e.incarnation,
        name: name.clone(),
        addr: e.addr(),
        protocol: e.protocol(),
        tags: e.tags().clone(),
    }
}
