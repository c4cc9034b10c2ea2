//! The discrete-event engine: a virtual clock and one event queue ordered by
//! (time, insertion sequence), driving unmodified [`rumor_core::Node`]s
//! through their sans-IO API.
//!
//! A node is only woken at its own `poll_timeout` (stale wake-ups are
//! skipped), or when a packet reaches it, so the cost of a run grows with
//! the traffic, not with N × ticks. All randomness comes from the run's
//! seed: the network draws from one RNG, each node gets its own seed.

use std::net::SocketAddr;
use std::time::Instant as WallInstant;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rumor_core::limits::Limit;
use rumor_core::member::no_tags;
use rumor_core::message::{Alive, MemberRecord, Message, MessageType, PushPull};
use rumor_core::{codec, MemberState};
use rumor_core::{Event, Identities, Instant, Node, Stats, Tags, TransmitKind};

use crate::clock::ClockPlan;
use crate::event_queue::EventQueue;
use crate::faults::Fault;
use crate::hostile::{Hostile, HostileReport, Target};
use crate::invariants::{Bounds, Checker, PendingCrash, FULL_CHECK_NODES};
use crate::metrics::{BitSet, Formation, Metrics, UpdateKind};
use crate::network::Network;
use crate::report::{self, RunResult};
use crate::scenario::{Bootstrap, Scenario};
use crate::workload::{self, AggState, Store, Workload, WorkloadReport, WritesState};
use crate::{addr_index, mix_seed, node_addr, node_name, secs, to_secs, Micros, SECOND};

/// Ground truth about the nodes, as only the simulator knows it.
#[derive(Clone, Debug)]
pub struct Truth {
    /// Running (not crashed, not yet joined, not stopped after leaving).
    pub up: Vec<bool>,
    /// Paused (up, but frozen).
    pub paused: Vec<bool>,
    /// Leaving gracefully (up until its leave completes).
    pub leaving: Vec<bool>,
    /// When the current instance started.
    pub up_since: Vec<Micros>,
    /// Last time a fault touched the node (start, pause, resume, slow,
    /// partition, loss, and their ends).
    pub disturbed_at: Vec<Micros>,
    /// Bumped at each crash and restart, so replies to a dead instance are dropped.
    pub generation: Vec<u32>,
    /// The network, with its partitions.
    pub net: Network,
}

impl Truth {
    /// Whether `a` and `b` can talk.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.net.reachable(a, b)
    }
}

/// A scheduled step of the scenario.
#[derive(Clone, Debug)]
enum Step {
    /// Start a node; `alone` starts it without seeds.
    Start {
        node: usize,
        track: bool,
        alone: bool,
    },
    /// Node 0 joins through all of these.
    JoinAll(Vec<usize>),
    Crash(usize),
    Restart(usize),
    Pause(usize),
    Resume(usize),
    Slow(usize, Micros),
    Partition(u32, Vec<usize>),
    Heal(u32),
    Loss(usize, f64, f64),
    Leave(usize),
    Stop(usize, u32),
    /// Start the cost window: snapshot the counters.
    Snapshot,
    Tags(usize, String, String),
    /// Planned write `k` of the writes workload.
    Write(usize),
    /// Every up node writes its `load` value; then the tracker tracks it.
    SetLoad,
    /// Sample the aggregate workload (every round).
    AggSample,
    /// Check whether every live replica agrees (every 100 ms until they do).
    AgreeSample,
    /// Every up node writes a key of its own (writes workload `prime`) and
    /// its preloaded state keys (`state_keys`).
    Prime,
    /// Check whether the late joiners hold the preloaded state yet (every
    /// 100 ms while one does not).
    CatchUpSample,
    /// The hostile actor's next burst; it stops at the given time.
    HostileTick(Micros),
    /// Arm a forger of ICMP evidence against a node.
    ForgeUnreachable(IcmpForger),
    /// Step a node's wall clock by this many µs ([`crate::clock`]).
    ClockJump(usize, i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Datagram,
    /// The ICMP "port unreachable" answering a datagram to crashed node `target`.
    Unreachable {
        target: u32,
    },
    /// A stream request; `probe`: a probe's stream ping (its sender wants
    /// to hear that the connection was made, see [`Kind::Connected`]).
    Request {
        from_gen: u32,
        probe: bool,
    },
    Reply {
        to_gen: u32,
    },
    /// A probe's stream ping reached the host of the node it came from
    /// (running or paused): the kernel accepted the connection.
    Connected {
        to_gen: u32,
    },
    /// A datagram from the hostile actor, carrying source address `src`.
    Forged {
        src: SocketAddr,
    },
}

#[derive(Debug)]
struct Delivery {
    to: u32,
    from: u32,
    kind: Kind,
    /// Already waited behind a slow node's queue.
    delayed: bool,
    payload: Vec<u8>,
}

#[derive(Debug)]
enum Action {
    Wake(u32),
    Deliver(Delivery),
    Step(usize),
    CheckCrash(usize),
}

/// A forger of ICMP evidence against a live node (see
/// [`Fault::ForgedUnreachable`]).
#[derive(Clone, Debug)]
struct IcmpForger {
    victim: usize,
    everywhere: bool,
    relays: bool,
    /// Nodes that got their forged report (all of them once it is spent).
    fooled: BitSet,
}

/// Datagrams a slow node's receive buffer holds (about Linux's default
/// 208 KiB of small datagrams); more arriving meanwhile are dropped.
const SLOW_QUEUE: u64 = 256;

/// Per-node driver state besides the truth.
#[derive(Default)]
struct Slot {
    wake: Option<Micros>,
    inbox: Vec<Delivery>,
    slow: Micros,
    busy_until: Micros,
}

/// One simulation run: build it with [`Simulation::new`], then [`Simulation::run`].
pub struct Simulation {
    scenario: Scenario,
    seed: u64,
    n: usize,
    now: Micros,
    end: Micros,
    queue: EventQueue<Action>,
    rng: Xoshiro256PlusPlus,
    nodes: Vec<Option<Node>>,
    /// Member identities, stored once for all nodes rather than per node.
    identities: Identities,
    slots: Vec<Slot>,
    truth: Truth,
    steps: Vec<Step>,
    crashes: Vec<PendingCrash>,
    bounds: Bounds,
    metrics: Metrics,
    checker: Checker,
    retired: Stats,
    events_processed: u64,
    last_heal: Micros,
    cost_base: (CostCounters, Micros),
    writes: Option<WritesState>,
    planned_writes: Vec<(usize, usize)>,
    write_keys: usize,
    settle_from: Micros,
    agg: Option<AggState>,
    /// The hostile actor, if a `hostile` fault is scheduled (it captures
    /// datagrams from the start of the run).
    hostile: Option<Hostile>,
    /// The actor duplicates honest datagrams until then.
    hostile_live_until: Micros,
    /// Armed ICMP forgers.
    icmp_forgers: Vec<IcmpForger>,
    /// The node whose datagram being processed asked it to relay a ping to
    /// a forger's victim: its pings now are relayed ones.
    relaying: Option<usize>,
    /// The warm bootstrap is handing a node its table (its announcement
    /// is dropped).
    warm_joining: bool,
    /// Forged port-unreachable reports delivered.
    forged_unreachable: u64,
    /// Per-node wall clocks, when the scenario gives them offsets.
    clocks: Option<ClockPlan>,
}

/// Counters that cost is computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostCounters {
    /// Datagram bytes sent.
    pub bytes_out: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Streams sent (requests and replies).
    pub streams_out: u64,
    /// Messages sent by type code - 1.
    pub messages_out: [u64; MessageType::ALL.len()],
    /// Stream bytes carried.
    pub stream_bytes: u64,
}

impl CostCounters {
    fn minus(&self, base: &CostCounters) -> CostCounters {
        let mut m = self.messages_out;
        for (a, b) in m.iter_mut().zip(base.messages_out.iter()) {
            *a = a.saturating_sub(*b);
        }
        CostCounters {
            bytes_out: self.bytes_out.saturating_sub(base.bytes_out),
            packets_out: self.packets_out.saturating_sub(base.packets_out),
            streams_out: self.streams_out.saturating_sub(base.streams_out),
            messages_out: m,
            stream_bytes: self.stream_bytes.saturating_sub(base.stream_bytes),
        }
    }
}

fn add_stats(acc: &mut Stats, s: &Stats) {
    acc.packets_in += s.packets_in;
    acc.packets_out += s.packets_out;
    acc.bytes_in += s.bytes_in;
    acc.bytes_out += s.bytes_out;
    acc.streams_in += s.streams_in;
    acc.streams_out += s.streams_out;
    for (a, b) in acc.messages_in.iter_mut().zip(s.messages_in.iter()) {
        *a += b;
    }
    for (a, b) in acc.messages_out.iter_mut().zip(s.messages_out.iter()) {
        *a += b;
    }
    acc.decode_errors += s.decode_errors;
    acc.probes += s.probes;
    acc.suspicions += s.suspicions;
    acc.refutations += s.refutations;
    acc.deaths += s.deaths;
    acc.state_digests += s.state_digests;
    acc.state_digest_bytes += s.state_digest_bytes;
    acc.unreachable += s.unreachable;
    acc.invalid_claims += s.invalid_claims;
    acc.misdirected_pings += s.misdirected_pings;
    acc.address_conflicts += s.address_conflicts;
    acc.state_invalid += s.state_invalid;
    acc.kv_refused_future += s.kv_refused_future;
    acc.kv_clock_samples += s.kv_clock_samples;
    acc.state_stale += s.state_stale;
    acc.members_pending += s.members_pending;
    acc.members_verified += s.members_verified;
    for (a, b) in acc.refused.iter_mut().zip(s.refused.iter()) {
        *a += b;
    }
}

impl Simulation {
    /// Prepare a run of `scenario` with `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> Result<Self, crate::scenario::ScenarioError> {
        scenario.validate()?;
        let n = scenario.nodes;
        let truth = Truth {
            up: vec![false; n],
            paused: vec![false; n],
            leaving: vec![false; n],
            up_since: vec![0; n],
            disturbed_at: vec![0; n],
            generation: vec![0; n],
            net: Network::new(scenario.network.clone(), n),
        };
        let mut sim = Simulation {
            scenario: scenario.clone(),
            seed,
            n,
            now: 0,
            end: secs(scenario.duration),
            queue: EventQueue::default(),
            rng: Xoshiro256PlusPlus::seed_from_u64(mix_seed(seed, 0x4E7)),
            nodes: (0..n).map(|_| None).collect(),
            identities: Identities::new(),
            slots: (0..n).map(|_| Slot::default()).collect(),
            truth,
            steps: Vec::new(),
            crashes: Vec::new(),
            bounds: Bounds::new(&scenario.config, n),
            metrics: Metrics::new(n),
            checker: Checker::new(n),
            retired: Stats::default(),
            events_processed: 0,
            last_heal: 0,
            cost_base: (CostCounters::default(), 0),
            writes: None,
            planned_writes: Vec::new(),
            write_keys: 1,
            settle_from: 0,
            agg: None,
            hostile: None,
            hostile_live_until: 0,
            icmp_forgers: Vec::new(),
            relaying: None,
            warm_joining: false,
            forged_unreachable: 0,
            clocks: None,
        };
        sim.plan();
        sim.plan_clocks();
        Ok(sim)
    }

    fn push(&mut self, at: Micros, action: Action) {
        self.queue.push(at, action);
    }

    fn schedule(&mut self, at: Micros, step: Step) {
        self.steps.push(step);
        let i = self.steps.len() - 1;
        self.push(at, Action::Step(i));
    }

    /// Turn the scenario into scheduled steps.
    fn plan(&mut self) {
        let late = self.scenario.late_joiners();
        let window = secs(self.scenario.join_window);
        let n = self.n as u64;
        let initial: Vec<usize> = (0..self.n).filter(|i| !late.contains(i)).collect();
        match self.scenario.bootstrap {
            Bootstrap::Seed => {
                self.metrics.formation = Some(Formation::new(self.n, &initial));
                for &i in &initial {
                    let at = window * i as u64 / n.max(1);
                    self.schedule(
                        at,
                        Step::Start {
                            node: i,
                            track: false,
                            alone: i == 0,
                        },
                    );
                }
            }
            Bootstrap::Warm => {
                for &i in &initial {
                    self.schedule(
                        0,
                        Step::Start {
                            node: i,
                            track: false,
                            alone: true,
                        },
                    );
                }
                if initial.first() == Some(&0) && initial.len() > 1 {
                    self.schedule(0, Step::JoinAll(initial.clone()));
                }
            }
        }
        let snapshot = window + 5 * SECOND;
        if snapshot < self.end {
            self.schedule(snapshot, Step::Snapshot);
        }
        let faults = self.scenario.faults.clone();
        for (k, f) in faults.iter().enumerate() {
            let at = secs(f.at());
            self.last_heal = self.last_heal.max(f.heals_at());
            match f {
                Fault::Crash { node, .. } => self.schedule(at, Step::Crash(*node)),
                Fault::Restart { node, .. } => {
                    self.schedule(at, Step::Crash(*node));
                    self.schedule(f.heals_at(), Step::Restart(*node));
                }
                Fault::Pause { node, .. } => {
                    self.schedule(at, Step::Pause(*node));
                    self.schedule(f.heals_at(), Step::Resume(*node));
                }
                Fault::Slow { node, delay_ms, .. } => {
                    self.schedule(at, Step::Slow(*node, secs(delay_ms / 1000.0)));
                    self.schedule(f.heals_at(), Step::Slow(*node, 0));
                }
                Fault::Partition { nodes, .. } => {
                    self.schedule(at, Step::Partition(k as u32, nodes.clone()));
                    self.schedule(f.heals_at(), Step::Heal(k as u32));
                }
                Fault::Loss {
                    node,
                    out_loss,
                    in_loss,
                    ..
                } => {
                    self.schedule(at, Step::Loss(*node, *out_loss, *in_loss));
                    self.schedule(f.heals_at(), Step::Loss(*node, 0.0, 0.0));
                }
                Fault::Join { node, .. } => self.schedule(
                    at,
                    Step::Start {
                        node: *node,
                        track: true,
                        alone: false,
                    },
                ),
                Fault::Leave { node, .. } => self.schedule(at, Step::Leave(*node)),
                Fault::Hostile { spoof, .. } => {
                    let h = self
                        .hostile
                        .get_or_insert_with(|| Hostile::new(mix_seed(self.seed, 0x0405_711E)));
                    h.spoof |= *spoof;
                    self.schedule(at, Step::HostileTick(f.heals_at()));
                }
                Fault::ForgedUnreachable {
                    node,
                    everywhere,
                    relays,
                    ..
                } => self.schedule(
                    at,
                    Step::ForgeUnreachable(IcmpForger {
                        victim: *node,
                        everywhere: *everywhere,
                        relays: *relays,
                        fooled: BitSet::new(self.n),
                    }),
                ),
                Fault::Tags {
                    node, key, value, ..
                } => self.schedule(at, Step::Tags(*node, key.clone(), value.clone())),
            }
        }
        self.plan_workload();
    }

    /// Give every node its clock offset, and schedule the jumps while the
    /// workload runs (or over the first half of the run).
    fn plan_clocks(&mut self) {
        let Some(spec) = self.scenario.clock.clone() else {
            return;
        };
        let jw = self.scenario.join_window;
        let (from, until) = match &self.scenario.workload {
            Some(w) => (
                secs(jw),
                secs(crate::scenario::workload_end(w, jw)).min(self.end),
            ),
            None => (secs(jw), self.end / 2),
        };
        let plan = spec.plan(self.seed, self.n, from, until);
        for &(at, node, delta) in &plan.jumps {
            self.schedule(at, Step::ClockJump(node, delta));
        }
        self.clocks = Some(plan);
    }

    /// Schedule the workload's steps.
    fn plan_workload(&mut self) {
        let Some(w) = self.scenario.workload.clone() else {
            return;
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix_seed(self.seed, 0x3017));
        let jw = self.scenario.join_window;
        match w {
            Workload::Writes(spec) => {
                let start = spec.start.unwrap_or(jw + 2.0);
                let stop = spec.stop.unwrap_or(start + 10.0);
                self.writes = Some(WritesState {
                    store: spec.store,
                    prime: spec.prime,
                    state_keys: spec.state_keys,
                    ..WritesState::default()
                });
                self.write_keys = spec.keys;
                if spec.prime || spec.state_keys > 0 {
                    self.schedule(secs((start - 1.0).max(0.0)), Step::Prime);
                }
                let count = ((stop - start) * spec.rate).floor().max(1.0) as usize;
                for k in 0..count {
                    let at = secs(start + k as f64 / spec.rate);
                    let node = rng.random_range(0..self.n);
                    let key = rng.random_range(0..spec.keys);
                    self.planned_writes.push((node, key));
                    self.schedule(at, Step::Write(k));
                }
                self.settle_from = self.last_heal.max(secs(stop));
                self.schedule(self.settle_from, Step::AgreeSample);
            }
            Workload::Aggregate(spec) => {
                let values = (0..self.n)
                    .map(|i| match spec.values {
                        workload::Values::Index => (i + 1) as f64,
                        workload::Values::Random => rng.random_range(0.0..1000.0),
                    })
                    .collect();
                self.agg = Some(AggState {
                    values,
                    tracker: spec.tracker,
                    ..AggState::default()
                });
                let start = secs(spec.start.unwrap_or(jw + 2.0));
                self.schedule(start, Step::SetLoad);
            }
        }
    }

    /// Mass of aggregate `load` in transfers still in the network (for the
    /// tracker's epoch), and how many transfers those are.
    fn mass_in_flight(&self, epoch: u64) -> (f64, usize) {
        let (mut mass, mut count) = (0.0, 0);
        for action in self.queue.items() {
            let Action::Deliver(d) = action else {
                continue;
            };
            if d.kind != Kind::Datagram || !self.truth.up[d.to as usize] {
                continue;
            }
            let Ok(decoded) = rumor_core::codec::decode(&d.payload) else {
                continue;
            };
            for m in decoded.messages {
                if let rumor_core::message::Message::Aggregate {
                    epoch: e, shares, ..
                } = m
                {
                    if e != epoch {
                        continue;
                    }
                    count += 1;
                    for (name, share) in shares {
                        if name == workload::LOAD {
                            mass += share.s;
                        }
                    }
                }
            }
        }
        (mass, count)
    }

    /// The bounds the invariants use.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Run to the end; see [`Simulation::run_with_progress`].
    pub fn run(self) -> RunResult {
        self.run_with_progress(|_, _| {})
    }

    /// Run to the end, calling `progress(now, end)` every so often.
    pub fn run_with_progress(mut self, mut progress: impl FnMut(Micros, Micros)) -> RunResult {
        let wall = WallInstant::now();
        while let Some((at, action)) = self.queue.pop_until(self.end) {
            self.now = at;
            self.events_processed += 1;
            if self.events_processed & 0xFFFF == 0 {
                progress(self.now, self.end);
            }
            match action {
                Action::Wake(i) => self.wake(i as usize, at),
                Action::Deliver(d) => self.deliver(d),
                Action::Step(k) => self.step(k),
                Action::CheckCrash(c) => {
                    let crash = self.crashes[c].clone();
                    self.checker
                        .check_completeness(self.now, &crash, &self.nodes, &self.truth);
                }
            }
        }
        self.now = self.end;
        progress(self.end, self.end);
        self.finish(wall.elapsed().as_secs_f64())
    }

    fn finish(mut self, wall_s: f64) -> RunResult {
        self.metrics.finish(self.end);
        let observers: Vec<usize> = if self.n <= FULL_CHECK_NODES {
            (0..self.n).collect()
        } else {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix_seed(self.seed, 0x0B5));
            let mut v: Vec<usize> = (0..FULL_CHECK_NODES)
                .map(|_| rng.random_range(0..self.n))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        self.checker.check_end(
            self.end,
            &self.nodes,
            &self.truth,
            &self.bounds,
            self.last_heal,
            &observers,
        );
        if let (Some(_), Some(w)) = (&self.scenario.clock, &self.writes) {
            let r = w.report(&self.nodes, &self.truth, self.settle_from, 0.0);
            self.checker
                .check_writes(self.end, r.lost_writes, r.replicas_equal);
        }
        let stats = self.total_stats();
        let cost = self.counters(&stats).minus(&self.cost_base.0);
        let cost_window = self.end.saturating_sub(self.cost_base.1);
        let mut result = report::build(report::RunData {
            scenario: &self.scenario,
            seed: self.seed,
            wall_s,
            events: self.events_processed,
            stats: &stats,
            cost: &cost,
            cost_from: self.cost_base.1,
            cost_window,
            metrics: &self.metrics,
            checker: &self.checker,
            truth: &self.truth,
            bounds: &self.bounds,
            last_heal: self.last_heal,
        });
        if let Some(w) = &self.writes {
            let mut r = w.report(
                &self.nodes,
                &self.truth,
                self.settle_from,
                result.summary.cost.bytes_per_node_per_s,
            );
            let run_s = to_secs(self.end).max(1e-9);
            r.state_digests_per_node_per_s = stats.state_digests as f64 / self.n as f64 / run_s;
            r.state_digest_bytes = (stats.state_digests > 0)
                .then(|| stats.state_digest_bytes as f64 / stats.state_digests as f64);
            r.state_digest_budget = self.scenario.config.packet_size / 2;
            r.refused_future = stats.kv_refused_future;
            result.summary.workload = Some(WorkloadReport::Writes(r));
        }
        if let Some(a) = &self.agg {
            let rounds = a.samples.max(1) as f64;
            let sent = stats.messages_out[MessageType::Aggregate as usize - 1] as f64;
            let acked = stats.messages_out[MessageType::AggregateAck as usize - 1] as f64;
            let (t, k) = transfer_sizes();
            let per = (sent * t + acked * k) / self.n as f64 / rounds;
            let r = a.report(&self.nodes, &self.truth, per);
            result.summary.workload = Some(WorkloadReport::Aggregate(r));
        }
        result.summary.hostile = self.hostile_report(&stats);
        result
    }

    fn disturb_agg(&mut self) {
        if let Some(a) = self.agg.as_mut() {
            a.disturbed = true;
        }
    }

    fn total_stats(&self) -> Stats {
        let mut stats = self.retired.clone();
        for node in self.nodes.iter().flatten() {
            add_stats(&mut stats, node.stats());
        }
        stats
    }

    fn counters(&self, stats: &Stats) -> CostCounters {
        CostCounters {
            bytes_out: stats.bytes_out,
            packets_out: stats.packets_out,
            streams_out: stats.streams_out,
            messages_out: stats.messages_out,
            stream_bytes: self.metrics.stream_bytes,
        }
    }

    // ----- node plumbing -----

    fn wake(&mut self, i: usize, at: Micros) {
        if self.slots[i].wake != Some(at) {
            return; // stale
        }
        self.slots[i].wake = None;
        if !self.truth.up[i] || self.truth.paused[i] {
            return;
        }
        if let Some(node) = self.nodes[i].as_mut() {
            node.handle_timeout(Instant::from_micros(self.now));
        }
        self.after(i);
    }

    fn deliver(&mut self, d: Delivery) {
        let i = d.to as usize;
        if !self.truth.up[i] {
            if matches!(d.kind, Kind::Datagram) && self.truth.net.refuses() {
                // The host is up, the process gone: the kernel says so.
                let from = d.from as usize;
                if let Some(delay) = self.truth.net.datagram(&mut self.rng, i, from) {
                    self.push(
                        self.now + delay,
                        Action::Deliver(Delivery {
                            to: from as u32,
                            from: i as u32,
                            kind: Kind::Unreachable { target: i as u32 },
                            delayed: false,
                            payload: Vec::new(),
                        }),
                    );
                }
            }
            return;
        }
        if let Kind::Reply { to_gen } | Kind::Connected { to_gen } = d.kind {
            if to_gen != self.truth.generation[i] {
                return;
            }
        }
        if let Kind::Request {
            from_gen,
            probe: true,
        } = d.kind
        {
            // The kernel accepts the connection whatever the process does.
            let connected = Kind::Connected { to_gen: from_gen };
            self.stream_back(i, d.from as usize, connected, Vec::new());
        }
        if self.truth.paused[i] {
            self.slots[i].inbox.push(d);
            return;
        }
        let slow = self.slots[i].slow;
        if slow > 0 && !d.delayed {
            // A socket's receive buffer is bounded: datagrams that find
            // SLOW_QUEUE already waiting are dropped, as the kernel drops
            // them (streams wait: TCP pushes back instead).
            let backlog = self.slots[i].busy_until.saturating_sub(self.now) / slow;
            let datagram = matches!(d.kind, Kind::Datagram | Kind::Forged { .. });
            if datagram && backlog >= SLOW_QUEUE {
                self.metrics.datagrams_dropped += 1;
                return;
            }
            let at = self.slots[i].busy_until.max(self.now) + slow;
            self.slots[i].busy_until = at;
            let d = Delivery { delayed: true, ..d };
            self.push(at, Action::Deliver(d));
            return;
        }
        self.process(d);
    }

    fn process(&mut self, d: Delivery) {
        let i = d.to as usize;
        let from = d.from as usize;
        let now = Instant::from_micros(self.now);
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        match d.kind {
            Kind::Datagram | Kind::Forged { .. } => {
                let src = match d.kind {
                    Kind::Forged { src } => src,
                    _ => node_addr(from),
                };
                let accusations = |n: &Node| {
                    let m = &n.stats().messages_in;
                    m[MessageType::Suspect as usize - 1] + m[MessageType::Dead as usize - 1]
                };
                let before = accusations(node);
                let own_before = node.incarnation();
                if !self.icmp_forgers.is_empty() {
                    let victims: Vec<_> = self
                        .icmp_forgers
                        .iter()
                        .map(|f| node_addr(f.victim))
                        .collect();
                    if relays_to(&d.payload, &victims) {
                        self.relaying = Some(i);
                    }
                }
                node.handle_datagram(now, src, &d.payload);
                if accusations(node) > before && !self.truth.leaving[i] {
                    let own = node.incarnation();
                    self.checker
                        .check_refutation(self.now, i, own_before, own, &d.payload);
                }
            }
            Kind::Reply { .. } => {
                let _ = node.handle_stream(now, node_addr(from), &d.payload);
            }
            Kind::Unreachable { target } => {
                node.handle_unreachable(now, node_addr(target as usize))
            }
            Kind::Connected { .. } => node.handle_stream_connected(now, node_addr(from)),
            Kind::Request { from_gen, .. } => {
                if let Some(reply) = node.handle_stream(now, node_addr(from), &d.payload) {
                    self.metrics.stream_bytes += reply.len() as u64;
                    self.stream_back(i, from, Kind::Reply { to_gen: from_gen }, reply);
                }
            }
        }
        self.after(i);
        self.relaying = None;
    }

    /// Send `kind` back from node `i` to node `to` over the stream `to`
    /// opened (lost if the network cuts it).
    fn stream_back(&mut self, i: usize, to: usize, kind: Kind, payload: Vec<u8>) {
        if let Some(delay) = self.truth.net.stream(&mut self.rng, i, to, false) {
            let delivery = Delivery {
                to: to as u32,
                from: i as u32,
                kind,
                delayed: false,
                payload,
            };
            self.push(self.now + delay, Action::Deliver(delivery));
        }
    }

    /// Drain a node's transmits and events and re-arm its wake-up.
    fn after(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut stop = false;
        while let Some(t) = node.poll_transmit() {
            let Some(to) = addr_index(t.to, self.n) else {
                self.metrics.datagrams_dropped += 1;
                continue;
            };
            match t.kind {
                // The warm bootstrap forms the cluster at once: nobody is
                // news to anyone, so the joins' announcements stay off the
                // wire (a million datagrams at 1,000 nodes).
                TransmitKind::Datagram if self.warm_joining && is_announcement(i, &t.payload) => {}
                TransmitKind::Datagram => match self.truth.net.datagram(&mut self.rng, i, to) {
                    Some(delay) => {
                        self.metrics.datagrams_delivered += 1;
                        let live = self.now < self.hostile_live_until;
                        let again = self.hostile.as_mut().and_then(|h| {
                            h.capture(i, to, &t.payload);
                            (live && h.duplicate()).then(|| delay + h.delay())
                        });
                        if let Some(again) = again {
                            let copy = Delivery {
                                to: to as u32,
                                from: i as u32,
                                kind: Kind::Datagram,
                                delayed: false,
                                payload: t.payload.clone(),
                            };
                            self.queue.push(self.now + again, Action::Deliver(copy));
                        }
                        let relaying = self.relaying == Some(i);
                        let forger = self.icmp_forgers.iter_mut().find(|f| {
                            f.victim == to && !f.fooled.contains(i) && (f.relays || !relaying)
                        });
                        if let Some(f) = forger {
                            if is_probe(&t.payload) {
                                if f.everywhere {
                                    f.fooled.insert(i);
                                } else {
                                    for j in 0..self.n {
                                        f.fooled.insert(j);
                                    }
                                }
                                self.forged_unreachable += 1;
                                // Forged at once: it beats the real ack.
                                let forged = Delivery {
                                    to: i as u32,
                                    from: to as u32,
                                    kind: Kind::Unreachable { target: to as u32 },
                                    delayed: false,
                                    payload: Vec::new(),
                                };
                                self.queue.push(self.now + 1, Action::Deliver(forged));
                            }
                        }
                        let delivery = Delivery {
                            to: to as u32,
                            from: i as u32,
                            kind: Kind::Datagram,
                            delayed: false,
                            payload: t.payload,
                        };
                        self.queue.push(self.now + delay, Action::Deliver(delivery));
                    }
                    None => self.metrics.datagrams_dropped += 1,
                },
                TransmitKind::Stream => {
                    self.metrics.stream_bytes += t.payload.len() as u64;
                    if let Some(delay) = self.truth.net.stream(&mut self.rng, i, to, true) {
                        let delivery = Delivery {
                            to: to as u32,
                            from: i as u32,
                            kind: Kind::Request {
                                from_gen: self.truth.generation[i],
                                probe: t.deadline.is_some(),
                            },
                            delayed: false,
                            payload: t.payload,
                        };
                        self.queue.push(self.now + delay, Action::Deliver(delivery));
                    }
                }
            }
        }
        while let Some(ev) = node.poll_event() {
            if matches!(ev, Event::LeaveComplete) {
                stop = true;
                continue;
            }
            if let Some(w) = self.writes.as_mut() {
                w.on_event(self.now, i, &ev);
            }
            self.metrics.on_event(self.now, i, &ev, &self.truth);
            self.checker.on_event(self.now, i, &ev);
        }
        if stop {
            self.retire(i);
            return;
        }
        if let Some(t) = node.poll_timeout() {
            let t = t.as_micros().max(self.now);
            let earlier = match self.slots[i].wake {
                Some(w) => t < w,
                None => true,
            };
            if earlier {
                self.slots[i].wake = Some(t);
                self.push(t, Action::Wake(i as u32));
            }
        }
    }

    /// Planned write `k`: the planned node, or the next up one.
    fn do_write(&mut self, k: usize) {
        let (planned, key) = self.planned_writes[k];
        let Some(i) = (0..self.n)
            .map(|d| (planned + d) % self.n)
            .find(|&j| self.truth.up[j] && !self.truth.paused[j] && !self.truth.leaving[j])
        else {
            return;
        };
        let Some(store) = self.writes.as_ref().map(|w| w.store) else {
            return;
        };
        let id = self.writes.as_ref().map_or(0, |w| w.writes.len());
        let key_name = format!("k{key}");
        let value = workload::write_value(id);
        let t = Instant::from_micros(self.now);
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let (ok, group) = match store {
            Store::State => (
                node.state_write(t, &key_name, Some(&value)).is_ok(),
                format!("{}/{key_name}", node_name(i)),
            ),
            Store::Kv => (
                node.kv_put(t, &key_name, value.into_bytes()).is_ok(),
                key_name,
            ),
        };
        // Last-write-wins orders a key's writes by their stamps, which
        // follow each writer's clock: the workload ranks them so.
        let stamp = match store {
            Store::Kv => node.kv().get(&group).and_then(|e| e.latest().cloned()),
            Store::State => None,
        };
        if ok {
            let eligible = self.up_set(usize::MAX);
            let n = self.n;
            let now = self.now;
            if let Some(w) = self.writes.as_mut() {
                w.record(i, group, now, eligible, n, stamp);
            }
        }
        self.after(i);
    }

    /// Take node `i` down (crash or stopped after leaving).
    fn retire(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            add_stats(&mut self.retired, node.stats());
        }
        self.truth.up[i] = false;
        self.truth.paused[i] = false;
        self.truth.leaving[i] = false;
        self.truth.generation[i] += 1;
        self.truth.disturbed_at[i] = self.now;
        self.metrics.on_truth_change(&self.truth);
        self.slots[i] = Slot::default();
    }

    /// Nodes that are up, as a set.
    fn up_set(&self, except: usize) -> BitSet {
        let mut b = BitSet::new(self.n);
        for i in 0..self.n {
            if self.truth.up[i] && i != except {
                b.insert(i);
            }
        }
        b
    }

    /// A live node to join through, other than `i`: node 0 if up, else a random one.
    fn pick_seed(&mut self, i: usize) -> Option<usize> {
        if i != 0 && self.truth.up[0] && !self.truth.leaving[0] {
            return Some(0);
        }
        let ok = |t: &Truth, j: usize| j != i && t.up[j] && !t.leaving[j];
        for _ in 0..64 {
            let j = self.rng.random_range(0..self.n);
            if ok(&self.truth, j) {
                return Some(j);
            }
        }
        (0..self.n).find(|&j| ok(&self.truth, j))
    }

    fn start_node(&mut self, i: usize, track: bool, alone: bool) {
        if self.truth.up[i] {
            return;
        }
        let gen = u64::from(self.truth.generation[i]);
        let node_seed = mix_seed(self.seed, ((i as u64) << 20) ^ gen ^ 0x5EED_0000_0000);
        let node = match Node::new(
            &node_name(i),
            node_addr(i),
            self.scenario.config.clone(),
            node_seed,
        ) {
            Ok(node) => node,
            Err(_) => return, // validated up front; cannot happen
        };
        let mut node = node;
        node.share_identities(self.identities.clone());
        if let Some(c) = &self.clocks {
            node.set_wall_clock(c.origin(i));
        }
        let seed = if alone { None } else { self.pick_seed(i) };
        if track {
            if let Some(w) = self.writes.as_mut() {
                let timing = w.catch_up.len();
                w.joined(self.now, i);
                if w.catch_up.len() > timing {
                    let at = self.now + SECOND / 10;
                    self.schedule(at, Step::CatchUpSample);
                }
            }
            let eligible = self.up_set(i);
            self.metrics.track(UpdateKind::Join, i, self.now, eligible);
            self.checker.on_observer_reset(i);
        }
        self.truth.up[i] = true;
        self.truth.up_since[i] = self.now;
        self.truth.disturbed_at[i] = self.now;
        if track {
            self.metrics.on_observer_reset(i, &self.truth);
        } else {
            self.metrics.on_truth_change(&self.truth);
        }
        let seeds: Vec<_> = seed.map(node_addr).into_iter().collect();
        node.join(Instant::from_micros(self.now), &seeds);
        self.nodes[i] = Some(node);
        self.after(i);
    }

    fn step(&mut self, k: usize) {
        let step = self.steps[k].clone();
        let now = self.now;
        match step {
            Step::Snapshot => {
                let stats = self.total_stats();
                self.cost_base = (self.counters(&stats), now);
            }
            Step::Start { node, track, alone } => self.start_node(node, track, alone),
            Step::Restart(i) => self.start_node(i, true, false),
            Step::JoinAll(members) => {
                // Every node receives the complete member table at once, as
                // a push-pull answer from node 0: no join is news to anyone,
                // so no join rumors flood the cluster. Each node first sends
                // the join request that table answers (to node 0; node 0's
                // to node 1), so the core trusts the answer with new members
                // as it trusts any answer to its own request, rather than
                // verifying every name with a ping. The request itself is
                // taken off the wire: the table is its answer.
                let table = Message::PushPull(PushPull {
                    join: false,
                    reply: true,
                    events: Vec::new(),
                    members: members
                        .iter()
                        .map(|&i| MemberRecord {
                            alive: Alive {
                                incarnation: 1,
                                name: node_name(i).into(),
                                addr: node_addr(i),
                                protocol: (codec::PROTOCOL_MIN, codec::PROTOCOL_MAX),
                                tags: no_tags(),
                            },
                            state: MemberState::Alive,
                        })
                        .collect(),
                });
                let payload = codec::encode_packet(&table);
                let t = Instant::from_micros(now);
                for &i in &members {
                    let seed = match i {
                        0 => members.iter().copied().find(|&j| j != 0).unwrap_or(0),
                        _ => 0,
                    };
                    if let Some(node) = self.nodes[i].as_mut() {
                        node.join(t, &[node_addr(seed)]);
                        while let Some(request) = node.poll_transmit() {
                            if request.kind != TransmitKind::Stream || request.to != node_addr(seed)
                            {
                                self.metrics.datagrams_dropped += 1;
                            }
                        }
                        node.handle_stream(t, node_addr(seed), &payload);
                    }
                    self.warm_joining = true;
                    self.after(i);
                    self.warm_joining = false;
                }
            }
            Step::Crash(i) => {
                if !self.truth.up[i] {
                    return;
                }
                if let (Some(h), Some(node)) = (self.hostile.as_mut(), self.nodes[i].as_ref()) {
                    h.capture_last_words(i, &node.local());
                }
                let name = node_name(i);
                let mut eligible = BitSet::new(self.n);
                for (u, node) in self.nodes.iter().enumerate() {
                    if u == i || !self.truth.up[u] {
                        continue;
                    }
                    if let Some(m) = node.as_ref().and_then(|nd| nd.member(&name)) {
                        if !m.state.is_gone() {
                            eligible.insert(u);
                        }
                    }
                }
                let incarnation = self.nodes[i].as_ref().map_or(0, |nd| nd.incarnation());
                self.metrics.track(UpdateKind::Death, i, now, eligible);
                self.disturb_agg();
                self.retire(i);
                self.crashes.push(PendingCrash {
                    node: i,
                    generation: self.truth.generation[i],
                    incarnation,
                    at: now,
                });
                let c = self.crashes.len() - 1;
                self.push(now + self.bounds.detect, Action::CheckCrash(c));
            }
            Step::Pause(i) => {
                self.disturb_agg();
                if self.truth.up[i] {
                    self.truth.paused[i] = true;
                    self.truth.disturbed_at[i] = now;
                }
            }
            Step::Resume(i) => {
                if !self.truth.paused[i] {
                    return;
                }
                self.truth.paused[i] = false;
                self.truth.disturbed_at[i] = now;
                let inbox = std::mem::take(&mut self.slots[i].inbox);
                for d in inbox {
                    self.deliver(d);
                }
                if let Some(node) = self.nodes[i].as_mut() {
                    node.handle_timeout(Instant::from_micros(now));
                }
                self.slots[i].wake = None;
                self.after(i);
            }
            Step::Slow(i, delay) => {
                self.slots[i].slow = delay;
                self.truth.disturbed_at[i] = now;
            }
            Step::Partition(id, nodes) => {
                self.disturb_agg();
                self.truth.net.partition(id, &nodes);
                self.truth.disturbed_at.iter_mut().for_each(|t| *t = now);
            }
            Step::Heal(id) => {
                self.truth.net.heal(id);
                self.truth.disturbed_at.iter_mut().for_each(|t| *t = now);
            }
            Step::Loss(i, out, inbound) => {
                self.truth.net.set_node_loss(i, out, inbound);
                self.truth.disturbed_at[i] = now;
            }
            Step::Leave(i) => {
                if !self.truth.up[i] || self.truth.leaving[i] {
                    return;
                }
                let eligible = self.up_set(i);
                self.metrics.track(UpdateKind::Leave, i, now, eligible);
                self.truth.leaving[i] = true;
                self.metrics.on_truth_change(&self.truth);
                if let Some(node) = self.nodes[i].as_mut() {
                    node.leave(Instant::from_micros(now));
                }
                let gen = self.truth.generation[i];
                // Like memberlist's leave timeout: stop even if the
                // announcement could not be sent in time.
                self.schedule(now + 30 * SECOND, Step::Stop(i, gen));
                self.after(i);
            }
            Step::Stop(i, gen) => {
                if self.truth.up[i] && self.truth.generation[i] == gen {
                    self.retire(i);
                }
            }
            Step::Write(k) => self.do_write(k),
            Step::SetLoad => {
                let Some(a) = self.agg.as_ref() else { return };
                let values = a.values.clone();
                let tracker = a.tracker;
                let t = Instant::from_micros(now);
                for (i, v) in values.iter().enumerate() {
                    if let Some(node) = self.nodes[i].as_mut().filter(|_| self.truth.up[i]) {
                        let _ = node.state_write(t, workload::LOAD, Some(&format!("{v}")));
                    }
                }
                for i in 0..self.n {
                    if self.truth.up[i] {
                        self.after(i);
                    }
                }
                if let Some(node) = self.nodes[tracker].as_mut() {
                    let _ = node.track_aggregate(t, workload::LOAD);
                }
                if let Some(a) = self.agg.as_mut() {
                    a.tracked_at = Some(now);
                }
                self.after(tracker);
                let round = secs(self.scenario.config.aggregate_interval.as_secs_f64());
                self.schedule(now + round, Step::AggSample);
            }
            Step::AggSample => {
                let Some(a) = self.agg.as_ref() else { return };
                let lossless = self.scenario.network.loss == 0.0 && !a.disturbed;
                let flight = if lossless {
                    let epoch = self.nodes[a.tracker]
                        .as_ref()
                        .map_or(0, |n| n.aggregates().epoch());
                    Some(self.mass_in_flight(epoch))
                } else {
                    None
                };
                if let Some(a) = self.agg.as_mut() {
                    a.sample(now, &self.nodes, &self.truth, flight);
                }
                let round = secs(self.scenario.config.aggregate_interval.as_secs_f64());
                self.schedule(now + round, Step::AggSample);
            }
            Step::Prime => {
                let Some((store, prime, keys)) = self
                    .writes
                    .as_ref()
                    .map(|w| (w.store, w.prime, w.state_keys))
                else {
                    return;
                };
                let t = Instant::from_micros(now);
                let mut preloaded = Vec::new();
                for i in 0..self.n {
                    if !self.truth.up[i] {
                        continue;
                    }
                    if let Some(node) = self.nodes[i].as_mut() {
                        if prime {
                            let _ = match store {
                                Store::State => node.state_write(t, "boot", Some("1")),
                                Store::Kv => node.kv_put(t, &format!("boot/{i}"), b"1".to_vec()),
                            };
                        }
                        let ok = (0..keys).all(|k| {
                            let (key, value) =
                                (workload::preload_key(k), workload::preload_value(i, k));
                            node.state_write(t, &key, Some(&value)).is_ok()
                        });
                        if keys > 0 && ok {
                            preloaded.push(i);
                        }
                    }
                    self.after(i);
                }
                if let Some(w) = self.writes.as_mut() {
                    w.preloaded = preloaded;
                }
            }
            Step::CatchUpSample => {
                let Some(w) = self.writes.as_mut() else {
                    return;
                };
                if w.check_catch_up(now, &self.nodes, &self.truth) {
                    self.schedule(now + SECOND / 10, Step::CatchUpSample);
                }
            }
            Step::AgreeSample => {
                let Some(w) = self.writes.as_mut() else {
                    return;
                };
                if w.agree(&self.nodes, &self.truth) {
                    w.agreed_at = Some(now);
                } else {
                    self.schedule(now + SECOND / 10, Step::AgreeSample);
                }
            }
            Step::HostileTick(until) => self.hostile_tick(until),
            Step::ClockJump(i, delta) => {
                if let Some(c) = self.clocks.as_mut() {
                    let origin = c.jump(i, delta);
                    if let Some(node) = self.nodes[i].as_mut() {
                        node.set_wall_clock(origin);
                    }
                }
            }
            Step::ForgeUnreachable(forger) => self.icmp_forgers.push(forger),
            Step::Tags(i, key, value) => {
                if !self.truth.up[i] || self.truth.leaving[i] {
                    return;
                }
                let Some(node) = self.nodes[i].as_mut() else {
                    return;
                };
                let mut tags: Tags = (*node.local().tags).clone();
                tags.insert(key.clone(), value.clone());
                if node.set_tags(Instant::from_micros(now), tags).is_ok() {
                    let eligible = self.up_set(i);
                    self.metrics
                        .track(UpdateKind::Tags(key, value), i, now, eligible);
                }
                self.after(i);
            }
        }
    }
}

impl Simulation {
    /// One burst of the hostile actor, aimed at the nodes that are up; the
    /// next follows a tick later, until `until`.
    fn hostile_tick(&mut self, until: Micros) {
        let now = self.now;
        if now >= until {
            return;
        }
        self.hostile_live_until = until
            .min(now + crate::hostile::TICK + 1)
            .max(self.hostile_live_until);
        let targets: Vec<Target> = (0..self.n)
            .filter(|&i| self.truth.up[i])
            .filter_map(|i| {
                let incarnation = self.nodes[i].as_ref()?.incarnation();
                Some(Target {
                    node: i,
                    incarnation,
                })
            })
            .collect();
        let Some(h) = self.hostile.as_mut() else {
            return;
        };
        let forgeries = h.tick(&targets);
        for f in forgeries {
            let delay = self.hostile.as_mut().map_or(500, |h| h.delay());
            self.push(
                now + delay,
                Action::Deliver(Delivery {
                    to: f.to as u32,
                    from: f.to as u32,
                    kind: Kind::Forged { src: f.src },
                    delayed: false,
                    payload: f.payload,
                }),
            );
        }
        let next = now + crate::hostile::TICK;
        if next < until {
            self.schedule(next, Step::HostileTick(until));
        }
    }

    /// What the hostile actor sent and what the honest nodes refused.
    fn hostile_report(&self, stats: &Stats) -> Option<HostileReport> {
        if self.hostile.is_none() && self.icmp_forgers.is_empty() {
            return None;
        }
        Some(HostileReport {
            sent: self.hostile.as_ref().map(|h| h.sent).unwrap_or_default(),
            forged_unreachable: self.forged_unreachable,
            refused: Limit::ALL
                .iter()
                .map(|&l| (l.name(), stats.refused(l)))
                .filter(|&(_, c)| c > 0)
                .collect(),
            members_pending: stats.members_pending,
            members_verified: stats.members_verified,
            misdirected_pings: stats.misdirected_pings,
            invalid_claims: stats.invalid_claims,
            unreachable_reports: stats.unreachable,
            invented_admitted: self.checker.invented_admitted,
        })
    }
}

/// Whether a datagram asks its receiver to relay a ping to one of `victims`.
fn relays_to(payload: &[u8], victims: &[SocketAddr]) -> bool {
    codec::decode(payload).is_ok_and(|d| {
        d.messages.iter().any(
            |m| matches!(m, Message::PingReq { target_addr, .. } if victims.contains(target_addr)),
        )
    })
}

/// Whether `payload` is node `i`'s announcement of itself
/// (`Node::announce_self`: its own alive claim alone in a datagram).
fn is_announcement(i: usize, payload: &[u8]) -> bool {
    codec::decode(payload).is_ok_and(
        |d| matches!(d.messages.as_slice(), [Message::Alive(a)] if *a.name == *node_name(i)),
    )
}

/// Whether a datagram carries a probe (a ping).
fn is_probe(payload: &[u8]) -> bool {
    codec::decode(payload)
        .is_ok_and(|d| d.messages.iter().any(|m| matches!(m, Message::Ping { .. })))
}

/// Encoded sizes of one aggregate transfer (one share, a typical sender
/// name) and of its acknowledgement, in bytes.
fn transfer_sizes() -> (f64, f64) {
    use rumor_core::aggregate::Share;
    use rumor_core::message::Message;
    let t = rumor_core::codec::encode_packet(&Message::Aggregate {
        sender: "n1234".into(),
        epoch: 1,
        seq: 100,
        shares: vec![(workload::LOAD.to_string(), Share::initial(Some(1.0), false))],
    });
    let a = rumor_core::codec::encode_packet(&Message::AggregateAck { epoch: 1, seq: 100 });
    (t.len() as f64, a.len() as f64)
}
