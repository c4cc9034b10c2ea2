//! Workloads: application traffic a scenario drives on top of membership,
//! and what it measures.
//!
//! * [`Workload::Writes`]: writes at a cluster-wide rate to random keys on
//!   random live nodes, into the per-node state (Scuttlebutt anti-entropy)
//!   or the replicated key space (Merkle anti-entropy). Measures, per write,
//!   the time until 50/90/99/100 % of the live nodes hold it (or a later
//!   write of the same key), the cost, the time after the last heal until
//!   every live replica agrees (equal Merkle roots / state digest hashes),
//!   and checks that no write held by a surviving node is lost (last write
//!   per key wins).
//! * [`Workload::Aggregate`]: every node sets its state key `load`, one node
//!   tracks the aggregate; every aggregation round the simulator compares
//!   each live node's push-sum ratio `s / w` with the true average of the
//!   live nodes' values, and on a lossless network checks mass
//!   conservation: the shares held plus the mass in transfers still in the
//!   network equal the sum of the values.

use std::collections::BTreeMap;
use std::str::FromStr;

use rumor_core::kv::Timestamp;
use rumor_core::message::SyncMode;
use rumor_core::{Config, Event, Node};
use serde::{Deserialize, Serialize};

use crate::engine::Truth;
use crate::metrics::{arrival_delays, percentiles, BitSet, Percentiles};
use crate::{to_secs, Micros};

/// Which store a writes workload writes into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// Per-node state (`state_write`), Scuttlebutt anti-entropy.
    #[default]
    State,
    /// The replicated key space (`kv_put`), Merkle anti-entropy.
    Kv,
}

impl FromStr for Store {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "state" => Ok(Store::State),
            "kv" => Ok(Store::Kv),
            other => Err(format!("unknown store {other:?}: expected state or kv")),
        }
    }
}

/// An anti-entropy direction, by name (`push`, `pull`, `push-pull`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The initiator sends what the peer lacks.
    Push,
    /// The initiator receives what it lacks.
    Pull,
    /// Both.
    PushPull,
}

impl Mode {
    /// The core's [`SyncMode`].
    pub fn sync_mode(self) -> SyncMode {
        match self {
            Mode::Push => SyncMode::Push,
            Mode::Pull => SyncMode::Pull,
            Mode::PushPull => SyncMode::PushPull,
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "push" => Ok(Mode::Push),
            "pull" => Ok(Mode::Pull),
            "push-pull" | "pushpull" => Ok(Mode::PushPull),
            other => Err(format!(
                "unknown sync mode {other:?}: expected push, pull or push-pull"
            )),
        }
    }
}

/// Writes at a rate to random keys on random live nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritesSpec {
    /// Writes per second, cluster-wide.
    pub rate: f64,
    /// Per-node state or the replicated key space.
    #[serde(default)]
    pub store: Store,
    /// Distinct key names written.
    #[serde(default = "default_keys")]
    pub keys: usize,
    /// First write, seconds (default: join window + 2 s).
    #[serde(default)]
    pub start: Option<f64>,
    /// No writes after this, seconds (default: start + 10 s).
    #[serde(default)]
    pub stop: Option<f64>,
    /// Anti-entropy direction for the chosen store (default: the profile's).
    #[serde(default)]
    pub sync_mode: Option<Mode>,
    /// Spread writes as rumors too (default: the profile's).
    #[serde(default)]
    pub rumors: Option<bool>,
    /// Seconds between anti-entropy rounds (default: the profile's).
    #[serde(default)]
    pub sync_interval: Option<f64>,
    /// One second before the first write, every up node writes a key of
    /// its own (`boot`), so that no node's store is empty and every node is
    /// an owner (the `sync` experiment's setting; anti-entropy reaches
    /// nodes with empty stores too).
    #[serde(default)]
    pub prime: bool,
    /// One second before the first write, every up node also writes this
    /// many per-node state keys of its own (`s0`, `s1`, ...; 16-byte values).
    /// A node that joins later (a `join` fault) is then timed until it holds
    /// all of them (the report's `catch_up`).
    #[serde(default)]
    pub state_keys: usize,
}

fn default_keys() -> usize {
    64
}

/// How node values for the aggregate scenario are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Values {
    /// Node `i` holds `i + 1`.
    #[default]
    Index,
    /// Uniform in [0, 1000), from the seed.
    Random,
}

/// Every node sets state `load`; one node tracks the aggregate `load`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// How values are chosen.
    #[serde(default)]
    pub values: Values,
    /// The node that calls `track_aggregate`.
    #[serde(default)]
    pub tracker: usize,
    /// When values are written and tracking starts, seconds (default: join window + 2 s).
    #[serde(default)]
    pub start: Option<f64>,
    /// Aggregation round, milliseconds (default: the profile's).
    #[serde(default)]
    pub interval_ms: Option<f64>,
    /// Epoch length, seconds (default: the profile's).
    #[serde(default)]
    pub epoch: Option<f64>,
}

/// Application traffic on top of membership.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// See [`WritesSpec`].
    Writes(WritesSpec),
    /// See [`AggregateSpec`].
    Aggregate(AggregateSpec),
}

/// The aggregate name the aggregate workload tracks.
pub const LOAD: &str = "load";

impl Workload {
    /// Apply the workload's protocol settings to `config`.
    pub fn apply(&self, config: &mut Config) {
        match self {
            Workload::Writes(w) => {
                let secs = w.sync_interval.map(std::time::Duration::from_secs_f64);
                match w.store {
                    Store::State => {
                        if let Some(m) = w.sync_mode {
                            config.state_sync_mode = m.sync_mode();
                        }
                        if let Some(r) = w.rumors {
                            config.state_rumors = r;
                        }
                        if let Some(d) = secs {
                            config.state_sync_interval = d;
                        }
                    }
                    Store::Kv => {
                        if let Some(m) = w.sync_mode {
                            config.kv_sync_mode = m.sync_mode();
                        }
                        if let Some(r) = w.rumors {
                            config.kv_rumors = r;
                        }
                        if let Some(d) = secs {
                            config.kv_sync_interval = d;
                        }
                    }
                }
            }
            Workload::Aggregate(a) => {
                if let Some(ms) = a.interval_ms {
                    config.aggregate_interval = std::time::Duration::from_secs_f64(ms / 1000.0);
                }
                if let Some(e) = a.epoch {
                    config.aggregate_epoch = std::time::Duration::from_secs_f64(e);
                }
            }
        }
    }

    /// Check against a cluster of `nodes`.
    pub fn validate(&self, nodes: usize) -> Result<(), String> {
        match self {
            Workload::Writes(w) => {
                if !(w.rate.is_finite() && w.rate > 0.0 && w.rate <= 1e6) {
                    return Err(format!("writes rate ({}) must be in (0, 1e6]", w.rate));
                }
                if w.keys == 0 {
                    return Err("writes keys must be at least 1".into());
                }
                if w.state_keys > 10_000 {
                    return Err(format!(
                        "writes state_keys ({}) must be at most 10000",
                        w.state_keys
                    ));
                }
                for v in [w.start, w.stop, w.sync_interval].into_iter().flatten() {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(format!("writes time {v} must be >= 0"));
                    }
                }
            }
            Workload::Aggregate(a) => {
                if a.tracker >= nodes {
                    return Err(format!(
                        "aggregate tracker {} is not a node (0..{nodes})",
                        a.tracker
                    ));
                }
                for v in [a.start, a.interval_ms, a.epoch].into_iter().flatten() {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(format!("aggregate time {v} must be > 0"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// One write and who holds it (it, or a later write of the same key).
#[derive(Clone, Debug)]
pub struct WriteRecord {
    /// Writer.
    pub node: usize,
    /// The key (for per-node state, `owner/key`).
    pub group: String,
    /// When.
    pub start: Micros,
    /// Up at the start.
    pub eligible: BitSet,
    /// Holders.
    pub seen: BitSet,
    /// (time, holder) of each first holding.
    pub arrivals: Vec<(Micros, u32)>,
    /// Its key-space stamp (last-write-wins order); `None` for per-node
    /// state, ordered by write.
    pub stamp: Option<Timestamp>,
}

impl WriteRecord {
    /// Sorted delays (s) at eligible nodes still up and unrestarted, and how many those are.
    pub fn delays(&self, truth: &Truth) -> (Vec<f64>, usize) {
        arrival_delays(&self.eligible, &self.arrivals, self.start, truth)
    }
}

/// What a writes workload measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WritesReport {
    /// `state` or `kv`.
    pub store: &'static str,
    /// Writes made.
    pub writes: usize,
    /// Writes that reached every eligible live node.
    pub complete: usize,
    /// Mean over writes of the 50/90/99/100 % times (writes that reached the level).
    pub mean: Percentiles,
    /// Worst over writes.
    pub max: Percentiles,
    /// Bytes (datagrams + streams) per node per second over the cost window.
    pub bytes_per_node_per_s: f64,
    /// Seconds after the last heal (or the last write, if later) until every
    /// live replica agreed; `None` if they never did.
    pub converged_after_s: Option<f64>,
    /// Every live replica agrees at the end.
    pub replicas_equal: bool,
    /// Keys whose final value at some live node is not the last write held by a survivor.
    pub lost_writes: usize,
    /// Fraction of eligible live nodes holding a write vs seconds since it,
    /// averaged over writes: (t, fraction).
    pub curve: Vec<(f64, f64)>,
    /// Distribution over writes of the time to reach every live node (the
    /// writes that did).
    pub t100: Spread,
    /// Per-node state digests sent over the whole run, per node per second.
    pub state_digests_per_node_per_s: f64,
    /// Mean encoded size of one per-node state digest, bytes.
    pub state_digest_bytes: Option<f64>,
    /// Largest per-node state digest a node can send, bytes (half a packet).
    pub state_digest_budget: usize,
    /// Late joiners and how long they took to learn the preloaded state.
    pub catch_up: Vec<CatchUp>,
    /// Key-space records refused as stamped too far ahead of the receiver's
    /// clock, over all nodes (they arrive later by anti-entropy).
    pub refused_future: u64,
}

/// Median, 99th percentile and maximum of a set of durations, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    /// How many values.
    pub count: usize,
    /// Median.
    pub median_s: Option<f64>,
    /// 99th percentile.
    pub p99_s: Option<f64>,
    /// Maximum.
    pub max_s: Option<f64>,
}

impl Spread {
    /// The spread of `values` (any order).
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let p = percentiles(&values, values.len());
        Spread {
            count: values.len(),
            median_s: p.t50_s,
            p99_s: p.t99_s,
            max_s: p.t100_s,
        }
    }
}

/// A node that joined after the preload, and when it held all of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CatchUp {
    /// The joiner.
    pub node: usize,
    /// When it joined, seconds.
    pub joined_s: f64,
    /// Preloaded entries (of the other nodes) it had to learn.
    pub entries: usize,
    /// Seconds from joining until it held every one (`None`: never did).
    pub learned_after_s: Option<f64>,
}

/// One aggregation epoch as seen by the simulator.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochReport {
    /// The epoch number.
    pub epoch: u64,
    /// When the tracker first showed it, seconds.
    pub start_s: f64,
    /// Rounds until every live node was within 1e-3 of the truth.
    pub rounds_1e3: Option<u64>,
    /// Rounds until every live node was within 1e-6.
    pub rounds_1e6: Option<u64>,
}

/// What an aggregate workload measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AggregateReport {
    /// Nodes live at the end.
    pub live: usize,
    /// The true average of the live nodes' values at the end.
    pub truth: f64,
    /// Per epoch.
    pub epochs: Vec<EpochReport>,
    /// Largest relative error of a live node's `s / w` at the end.
    pub final_error: f64,
    /// Largest relative error of a live node's `aggregate("load").avg` at the end.
    pub final_estimate_error: f64,
    /// Rounds sampled.
    pub samples: usize,
    /// Worst |held + in flight - Σ values| / Σ values over samples of the
    /// first epoch before any fault (lossless runs only).
    pub mass_error: Option<f64>,
    /// Samples with no transfer in the network (quiescent points).
    pub quiescent_samples: usize,
    /// Worst |held - Σ values| / Σ values at quiescent points.
    pub quiescent_mass_error: Option<f64>,
    /// Aggregate datagram bytes per node per round (transfers and acks).
    pub bytes_per_node_per_round: f64,
    /// Max relative error after each round of the first epoch (for plots).
    pub error_curve: Vec<f64>,
}

/// What a workload measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// One per run, built at its end: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum WorkloadReport {
    /// See [`WritesReport`].
    Writes(WritesReport),
    /// See [`AggregateReport`].
    Aggregate(AggregateReport),
}

impl WorkloadReport {
    /// A few lines for the text summary.
    pub fn text(&self) -> String {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}s"));
        match self {
            WorkloadReport::Writes(w) => {
                let mut o = format!(
                "writes ({}): {} writes, {} reached every live node | mean 50/90/99/100%: {} {} {} {} | worst 100%: {} | {:.0} B/node/s | replicas equal: {} (after {}) | lost writes: {}\n",
                w.store,
                w.writes,
                w.complete,
                f(w.mean.t50_s),
                f(w.mean.t90_s),
                f(w.mean.t99_s),
                f(w.mean.t100_s),
                f(w.max.t100_s),
                w.bytes_per_node_per_s,
                w.replicas_equal,
                f(w.converged_after_s),
                w.lost_writes
            );
                o.push_str(&format!(
                    "  t100 over {} writes: median {} p99 {} max {} | state digests: {:.2}/node/s, mean {} B (budget {} B)\n",
                    w.t100.count,
                    f(w.t100.median_s),
                    f(w.t100.p99_s),
                    f(w.t100.max_s),
                    w.state_digests_per_node_per_s,
                    w.state_digest_bytes.map_or("-".into(), |b| format!("{b:.0}")),
                    w.state_digest_budget,
                ));
                if w.refused_future > 0 {
                    o.push_str(&format!(
                        "  records refused as stamped too far ahead (clock skew): {}\n",
                        w.refused_future
                    ));
                }
                for c in &w.catch_up {
                    o.push_str(&format!(
                        "  node {} joined at {:.1}s: learned {} preloaded entries after {}\n",
                        c.node,
                        c.joined_s,
                        c.entries,
                        f(c.learned_after_s)
                    ));
                }
                o
            }
            WorkloadReport::Aggregate(a) => {
                let mut o = format!(
                    "aggregate: {} live, truth {:.6}, final max rel error s/w {:.2e}, estimate {:.2e} | {:.0} B/node/round",
                    a.live, a.truth, a.final_error, a.final_estimate_error, a.bytes_per_node_per_round
                );
                if let Some(m) = a.mass_error {
                    o.push_str(&format!(
                        " | mass error {m:.1e} ({} quiescent samples, {:.1e})",
                        a.quiescent_samples,
                        a.quiescent_mass_error.unwrap_or(0.0)
                    ));
                }
                o.push('\n');
                for e in &a.epochs {
                    o.push_str(&format!(
                        "  epoch {} from {:.1}s: rounds to 1e-3 {}, to 1e-6 {}\n",
                        e.epoch,
                        e.start_s,
                        e.rounds_1e3.map_or("-".into(), |r| r.to_string()),
                        e.rounds_1e6.map_or("-".into(), |r| r.to_string()),
                    ));
                }
                o
            }
        }
    }
}

/// Parse a write's value (`w<id>`).
fn write_id(v: &[u8]) -> Option<usize> {
    std::str::from_utf8(v.strip_prefix(b"w")?)
        .ok()?
        .parse()
        .ok()
}

/// The value written by write `id`.
pub fn write_value(id: usize) -> String {
    format!("w{id}")
}

/// Runtime state of a writes workload.
#[derive(Debug, Default)]
pub struct WritesState {
    /// The store.
    pub store: Store,
    /// Every write, in order.
    pub writes: Vec<WriteRecord>,
    /// Writes per group, in order.
    pub by_group: BTreeMap<String, Vec<usize>>,
    /// Last write time.
    pub last_write: Micros,
    /// First sample time at which every live replica agreed, after the last
    /// disturbance (heal or write).
    pub agreed_at: Option<Micros>,
    /// Every node writes a `boot` key at the preload (`WritesSpec::prime`).
    pub prime: bool,
    /// Per-node state keys each node preloads (`WritesSpec::state_keys`).
    pub state_keys: usize,
    /// The nodes that preloaded them.
    pub preloaded: Vec<usize>,
    /// Late joiners being timed.
    pub catch_up: Vec<CatchUp>,
}

/// Where write `id` ranks among its key's writes: by stamp (last-write-wins
/// order), then by write order.
fn rank(writes: &[WriteRecord], id: usize) -> (Option<&Timestamp>, usize) {
    (writes.get(id).and_then(|w| w.stamp.as_ref()), id)
}

/// Name of preloaded per-node state key `k`.
pub fn preload_key(k: usize) -> String {
    format!("s{k}")
}

/// Value of preloaded key `k` on `node` (16 bytes).
pub fn preload_value(node: usize, k: usize) -> String {
    format!("{:016}", node * 1000 + k)
}

impl WritesState {
    /// Record write `id` by `node` in `group` at `now`, with its key-space
    /// `stamp` if any.
    pub fn record(
        &mut self,
        node: usize,
        group: String,
        now: Micros,
        eligible: BitSet,
        n: usize,
        stamp: Option<Timestamp>,
    ) {
        let id = self.writes.len();
        self.writes.push(WriteRecord {
            node,
            group: group.clone(),
            start: now,
            eligible,
            seen: BitSet::new(n),
            arrivals: Vec::new(),
            stamp,
        });
        let list = self.by_group.entry(group).or_default();
        let writes = &self.writes;
        let pos = list.partition_point(|&x| rank(writes, x) <= rank(writes, id));
        list.insert(pos, id);
        // A write ranked below one a node holds is superseded there already
        // (a writer whose clock is behind): it counts as held (seen sets
        // stay prefix-closed in rank order).
        if let Some(&above) = list.get(pos + 1) {
            let holders: Vec<usize> = (0..n)
                .filter(|&i| self.writes[above].seen.contains(i))
                .collect();
            for i in holders {
                if self.writes[id].seen.insert(i) {
                    self.writes[id].arrivals.push((now, i as u32));
                }
            }
        }
        self.last_write = now;
        // The writer holds it, and has superseded every lower-ranked write of the key.
        self.holds(now, node, id);
    }

    /// `observer` now holds write `id` (so every lower-ranked write of its
    /// group: seen sets stay prefix-closed per group, in rank order).
    fn holds(&mut self, now: Micros, observer: usize, id: usize) {
        let Some(w) = self.writes.get(id) else {
            return;
        };
        let Some(list) = self.by_group.get(&w.group) else {
            return;
        };
        let writes = &self.writes;
        let pos = list.partition_point(|&x| rank(writes, x) <= rank(writes, id));
        for &k in list[..pos].iter().rev() {
            let w = &mut self.writes[k];
            if !w.seen.insert(observer) {
                break;
            }
            w.arrivals.push((now, observer as u32));
        }
    }

    /// A node's event.
    pub fn on_event(&mut self, now: Micros, observer: usize, ev: &Event) {
        let id = match ev {
            Event::State(c) if self.store == Store::State => {
                c.value.as_deref().map(str::as_bytes).and_then(write_id)
            }
            Event::Kv(c) if self.store == Store::Kv => c.new.lww_value().and_then(write_id),
            _ => None,
        };
        if let Some(id) = id {
            self.holds(now, observer, id);
        }
    }

    /// A node joined after the preload: time it.
    pub fn joined(&mut self, now: Micros, node: usize) {
        if self.state_keys == 0 || self.preloaded.is_empty() {
            return;
        }
        let others = self.preloaded.iter().filter(|&&j| j != node).count();
        self.catch_up.push(CatchUp {
            node,
            joined_s: to_secs(now),
            entries: others * self.state_keys,
            learned_after_s: None,
        });
    }

    /// Check the late joiners still learning; true while one is.
    pub fn check_catch_up(&mut self, now: Micros, nodes: &[Option<Node>], truth: &Truth) -> bool {
        let (keys, preloaded) = (self.state_keys, &self.preloaded);
        let mut pending = false;
        for c in self
            .catch_up
            .iter_mut()
            .filter(|c| c.learned_after_s.is_none())
        {
            let Some(node) = nodes.get(c.node).and_then(Option::as_ref) else {
                continue;
            };
            let done = preloaded
                .iter()
                .filter(|&&j| j != c.node && truth.up[j])
                .all(|&j| {
                    node.state()
                        .owner(&crate::node_name(j))
                        .is_some_and(|o| (0..keys).all(|k| o.get(&preload_key(k)).is_some()))
                });
            if done {
                c.learned_after_s = Some(to_secs(now) - c.joined_s);
            } else {
                pending = true;
            }
        }
        pending
    }

    /// Whether every live replica agrees now.
    pub fn agree(&self, nodes: &[Option<Node>], truth: &Truth) -> bool {
        let mut first: Option<u64> = None;
        for (i, node) in nodes.iter().enumerate() {
            let Some(node) = node.as_ref().filter(|_| truth.up[i]) else {
                continue;
            };
            let h = match self.store {
                Store::Kv => node.kv().root(),
                Store::State => node.state().digest_hash(),
            };
            match first {
                None => first = Some(h),
                Some(f) if f != h => return false,
                _ => {}
            }
        }
        true
    }

    /// The report at the end.
    pub fn report(
        &self,
        nodes: &[Option<Node>],
        truth: &Truth,
        settle_from: Micros,
        bytes_per_node_per_s: f64,
    ) -> WritesReport {
        let mut sums = [0.0f64; 4];
        let mut counts = [0usize; 4];
        let mut max = [None::<f64>; 4];
        let mut complete = 0;
        const STEPS: usize = 200;
        let mut all: Vec<(Vec<f64>, usize)> = Vec::new();
        let mut t100 = Vec::new();
        for w in &self.writes {
            let (d, target) = w.delays(truth);
            if d.len() >= target {
                complete += 1;
            }
            let p = percentiles(&d, target);
            t100.extend(p.t100_s);
            for (k, v) in [p.t50_s, p.t90_s, p.t99_s, p.t100_s]
                .into_iter()
                .enumerate()
            {
                if let Some(v) = v {
                    sums[k] += v;
                    counts[k] += 1;
                    max[k] = Some(max[k].map_or(v, |m: f64| m.max(v)));
                }
            }
            all.push((d, target));
        }
        let mean = |k: usize| (counts[k] > 0).then(|| sums[k] / counts[k] as f64);
        let horizon = max[3]
            .or(max[2])
            .unwrap_or(1.0)
            .max(
                all.iter()
                    .filter_map(|(d, _)| d.last().copied())
                    .fold(0.0, f64::max),
            )
            .max(1e-3);
        let curve = (0..=STEPS)
            .map(|s| {
                let t = horizon * s as f64 / STEPS as f64;
                let (mut acc, mut k) = (0.0, 0usize);
                for (d, target) in &all {
                    if *target > 0 {
                        acc += d.partition_point(|&x| x <= t) as f64 / *target as f64;
                        k += 1;
                    }
                }
                (t, if k > 0 { acc / k as f64 } else { 0.0 })
            })
            .collect();
        // The highest-ranked write per key held by a survivor (for the key
        // space: the greatest stamp, as last-write-wins picks) must win
        // everywhere.
        let mut lost = 0;
        for list in self.by_group.values() {
            let Some(&expected) = list.iter().rev().find(|&&k| {
                let w = &self.writes[k];
                (0..truth.up.len()).any(|i| truth.up[i] && w.seen.contains(i))
            }) else {
                continue;
            };
            let w = &self.writes[expected];
            if self.store == Store::State && !truth.up[w.node] {
                continue; // a dead owner's state may be dropped
            }
            let want = write_value(expected);
            let key = match self.store {
                Store::Kv => w.group.as_str(),
                Store::State => w.group.split_once('/').map_or("", |(_, k)| k),
            };
            let owner = crate::node_name(w.node);
            let bad = nodes.iter().enumerate().any(|(i, node)| {
                let Some(node) = node.as_ref().filter(|_| truth.up[i]) else {
                    return false;
                };
                let got: Option<Vec<u8>> = match self.store {
                    Store::Kv => node
                        .kv()
                        .get(key)
                        .and_then(|e| e.lww_value())
                        .map(<[u8]>::to_vec),
                    Store::State => node
                        .state()
                        .owner(&owner)
                        .and_then(|o| o.get(key))
                        .map(|s| s.as_bytes().to_vec()),
                };
                got.as_deref() != Some(want.as_bytes())
            });
            if bad {
                lost += 1;
            }
        }
        WritesReport {
            store: match self.store {
                Store::State => "state",
                Store::Kv => "kv",
            },
            writes: self.writes.len(),
            complete,
            mean: Percentiles {
                t50_s: mean(0),
                t90_s: mean(1),
                t99_s: mean(2),
                t100_s: mean(3),
            },
            max: Percentiles {
                t50_s: max[0],
                t90_s: max[1],
                t99_s: max[2],
                t100_s: max[3],
            },
            bytes_per_node_per_s,
            converged_after_s: self
                .agreed_at
                .map(|t| to_secs(t.saturating_sub(settle_from))),
            replicas_equal: self.agree(nodes, truth),
            lost_writes: lost,
            curve,
            t100: Spread::of(t100),
            state_digests_per_node_per_s: 0.0,
            state_digest_bytes: None,
            state_digest_budget: 0,
            catch_up: self.catch_up.clone(),
            refused_future: 0,
        }
    }
}

/// Runtime state of an aggregate workload.
#[derive(Debug, Default)]
pub struct AggState {
    /// Each node's value.
    pub values: Vec<f64>,
    /// When tracking started.
    pub tracked_at: Option<Micros>,
    /// The tracker.
    pub tracker: usize,
    /// Per epoch (by the tracker's view).
    pub epochs: Vec<EpochReport>,
    /// Rounds sampled in the current epoch.
    pub round: u64,
    /// Samples taken.
    pub samples: usize,
    /// Worst mass error (first epoch, no fault yet).
    pub mass_error: Option<f64>,
    /// Quiescent samples.
    pub quiescent: usize,
    /// Worst mass error at quiescent points.
    pub quiescent_error: Option<f64>,
    /// Error curve of the first epoch.
    pub error_curve: Vec<f64>,
    /// A fault happened (mass checks stop).
    pub disturbed: bool,
}

/// Relative error of `x` against `truth`.
pub fn rel_err(x: f64, truth: f64) -> f64 {
    if truth == 0.0 {
        x.abs()
    } else {
        ((x - truth) / truth).abs()
    }
}

impl AggState {
    /// The true average of live nodes' values.
    pub fn truth(&self, truth: &Truth) -> (f64, f64, usize) {
        let (mut sum, mut k) = (0.0, 0);
        for (i, v) in self.values.iter().enumerate() {
            if truth.up[i] {
                sum += v;
                k += 1;
            }
        }
        (if k > 0 { sum / k as f64 } else { 0.0 }, sum, k)
    }

    /// Largest relative error of a live node's `s / w` (infinite if a live
    /// node holds no weight yet), and the mass held: the sum of `s`, plus the
    /// value of each live node not tracking yet (it joins with it).
    pub fn errors(&self, nodes: &[Option<Node>], truth: &Truth) -> (f64, f64) {
        let (avg, _, _) = self.truth(truth);
        let (mut worst, mut held) = (0.0f64, 0.0);
        for (i, node) in nodes.iter().enumerate() {
            let Some(node) = node.as_ref().filter(|_| truth.up[i]) else {
                continue;
            };
            match node.aggregates().share(LOAD) {
                Some(s) if s.w > 0.0 => {
                    held += s.s;
                    worst = worst.max(rel_err(s.s / s.w, avg));
                }
                Some(s) => {
                    held += s.s;
                    worst = f64::INFINITY;
                }
                None => {
                    // Not tracking yet: its value joins the mass when it
                    // first receives a transfer.
                    held += self.values.get(i).copied().unwrap_or(0.0);
                    worst = f64::INFINITY;
                }
            }
        }
        (worst, held)
    }

    /// One round's sample: `in_flight` is the mass in transfers still in the
    /// network (`None`: not counted).
    pub fn sample(
        &mut self,
        now: Micros,
        nodes: &[Option<Node>],
        truth: &Truth,
        in_flight: Option<(f64, usize)>,
    ) {
        self.samples += 1;
        let epoch = nodes
            .get(self.tracker)
            .and_then(Option::as_ref)
            .map_or(0, |n| n.aggregates().epoch());
        if self.epochs.last().is_none_or(|e| e.epoch != epoch) {
            self.epochs.push(EpochReport {
                epoch,
                start_s: to_secs(now),
                rounds_1e3: None,
                rounds_1e6: None,
            });
            self.round = 0;
        }
        self.round += 1;
        let (worst, held) = self.errors(nodes, truth);
        let first_epoch = self.epochs.len() == 1;
        if first_epoch {
            self.error_curve.push(worst);
        }
        let e = self.epochs.last_mut().expect("pushed above");
        if worst <= 1e-3 && e.rounds_1e3.is_none() {
            e.rounds_1e3 = Some(self.round);
        }
        if worst <= 1e-6 && e.rounds_1e6.is_none() {
            e.rounds_1e6 = Some(self.round);
        }
        if let (Some((flight, transfers)), true, false) = (in_flight, first_epoch, self.disturbed) {
            let (_, sum, _) = self.truth(truth);
            let err = rel_err(held + flight, sum);
            self.mass_error = Some(self.mass_error.map_or(err, |m: f64| m.max(err)));
            if transfers == 0 {
                self.quiescent += 1;
                let q = rel_err(held, sum);
                self.quiescent_error = Some(self.quiescent_error.map_or(q, |m: f64| m.max(q)));
            }
        }
    }

    /// The report at the end.
    pub fn report(
        &self,
        nodes: &[Option<Node>],
        truth: &Truth,
        bytes_per_node_per_round: f64,
    ) -> AggregateReport {
        let (avg, _, live) = self.truth(truth);
        let (final_error, _) = self.errors(nodes, truth);
        let mut est = 0.0f64;
        for (i, node) in nodes.iter().enumerate() {
            if let Some(node) = node.as_ref().filter(|_| truth.up[i]) {
                est = est.max(
                    node.aggregate(LOAD)
                        .map_or(f64::INFINITY, |e| rel_err(e.avg, avg)),
                );
            }
        }
        AggregateReport {
            live,
            truth: avg,
            epochs: self.epochs.clone(),
            final_error,
            final_estimate_error: est,
            samples: self.samples,
            mass_error: self.mass_error,
            quiescent_samples: self.quiescent,
            quiescent_mass_error: self.quiescent_error,
            bytes_per_node_per_round,
            error_curve: self.error_curve.clone(),
        }
    }
}
