//! Scenarios: what a run does. Built from the Rust builder API
//! ([`Scenario::builder`]), from a small TOML file ([`Scenario::from_toml`]),
//! or by name ([`Scenario::builtin`]: `join`, `crash`, `churn`, `partition`,
//! `pause`, `lossy`, `random` for seeded sweeps, the workloads `writes`
//! and `aggregate` (see [`crate::workload`]), `hostile` (a lying sender,
//! see [`crate::hostile`]), `forged-icmp` (forged port-unreachable
//! evidence against live nodes) and `skew` (key-space writes with clock
//! offsets and jumps, see [`crate::clock`])).
//!
//! A TOML scenario:
//!
//! ```toml
//! name = "two-crashes"
//! nodes = 32
//! duration = 150
//! profile = "lan"
//! bootstrap = "warm"   # or "seed"
//! [network]
//! loss = 0.01
//! latency = { kind = "log_normal", median_ms = 1.0, sigma = 0.5 }
//! [[faults]]
//! kind = "crash"
//! at = 20
//! node = 3
//! [[faults]]
//! kind = "partition"
//! at = 30
//! nodes = [4, 5, 6]
//! duration = 8
//! [clock]              # per-node clock offsets and jumps (crate::clock)
//! max_offset = 60
//! jumps = 8
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rumor_core::{Config, Profile};
use serde::{Deserialize, Serialize};

use crate::clock::ClockSpec;
use crate::faults::{random_faults, Fault};
use crate::invariants::Bounds;
use crate::network::{Latency, NetworkConfig};
use crate::workload::{AggregateSpec, Store, Workload, WritesSpec};
use crate::{mix_seed, to_secs};

/// The names [`Scenario::builtin`] knows.
pub const BUILTINS: [&str; 12] = [
    "join",
    "crash",
    "churn",
    "partition",
    "pause",
    "lossy",
    "random",
    "writes",
    "aggregate",
    "hostile",
    "forged-icmp",
    "skew",
];

/// A scenario that cannot be built; the message says why, in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError(msg.into()))
}

/// Everything a run needs besides its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// A label for reports.
    pub name: String,
    /// Cluster size, late joiners included.
    pub nodes: usize,
    /// Simulated seconds.
    pub duration: f64,
    /// The protocol profile.
    pub profile: Profile,
    /// The protocol configuration (derived from the profile).
    pub config: Config,
    /// Link conditions.
    pub network: NetworkConfig,
    /// The initial members join over this many seconds.
    pub join_window: f64,
    /// How the initial cluster forms.
    pub bootstrap: Bootstrap,
    /// Faults and actions, in any order.
    pub faults: Vec<Fault>,
    /// The command-line arguments (without the seed) that rebuild this
    /// scenario, printed with a violation so it can be replayed.
    pub replay_args: Option<String>,
    /// Application traffic (writes, aggregation), if any.
    pub workload: Option<Workload>,
    /// Per-node clock offsets and jumps, if any; with a key-space writes
    /// workload, invariant 5 is checked at the end of the run.
    pub clock: Option<ClockSpec>,
}

/// How the initial cluster forms during the join window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bootstrap {
    /// Each node joins through node 0, spread over the join window: every
    /// join is a rumor that floods the cluster (realistic, O(N²) gossip).
    Seed,
    /// Every node starts alone; node 0 joins all of them (so it learns
    /// everyone from their replies), then each joins back through node 0 and
    /// gets the full view in the reply. No join floods: cheap at large N.
    #[default]
    Warm,
}

impl FromStr for Bootstrap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "seed" => Ok(Bootstrap::Seed),
            "warm" => Ok(Bootstrap::Warm),
            other => Err(format!(
                "unknown bootstrap {other:?}: expected seed or warm"
            )),
        }
    }
}

/// The default network of a profile.
pub fn default_network(profile: Profile) -> NetworkConfig {
    let latency = match profile {
        Profile::Lan => Latency::Uniform {
            min_ms: 0.2,
            max_ms: 0.8,
        },
        Profile::Wan => Latency::LogNormal {
            median_ms: 40.0,
            sigma: 0.4,
        },
        Profile::Local => Latency::Fixed { ms: 0.05 },
    };
    NetworkConfig {
        latency,
        loss: 0.0,
        refuse: false,
    }
}

/// The profile's lowercase name.
pub fn profile_name(profile: Profile) -> &'static str {
    match profile {
        Profile::Lan => "lan",
        Profile::Wan => "wan",
        Profile::Local => "local",
    }
}

fn default_join_window(nodes: usize) -> f64 {
    (nodes as f64 * 0.002).clamp(0.1, 10.0)
}

/// Builds a [`Scenario`] step by step.
#[derive(Clone, Debug)]
pub struct ScenarioBuilder {
    scenario: Scenario,
}

impl ScenarioBuilder {
    /// Use `profile` (its protocol configuration and default network).
    pub fn profile(mut self, profile: Profile) -> Self {
        let refute = self.scenario.config.refute_suspicions;
        self.scenario.profile = profile;
        self.scenario.config = Config::profile(profile);
        self.scenario.config.refute_suspicions = refute;
        self.scenario.network.latency = default_network(profile).latency;
        self
    }

    /// Replace the protocol configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.scenario.config = config;
        self
    }

    /// Simulated seconds.
    pub fn duration(mut self, secs: f64) -> Self {
        self.scenario.duration = secs;
        self
    }

    /// Datagram loss probability.
    pub fn loss(mut self, loss: f64) -> Self {
        self.scenario.network.loss = loss;
        self
    }

    /// One-way latency distribution.
    pub fn latency(mut self, latency: Latency) -> Self {
        self.scenario.network.latency = latency;
        self
    }

    /// How the initial cluster forms.
    pub fn bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.scenario.bootstrap = bootstrap;
        self
    }

    /// Seconds over which the initial members join.
    pub fn join_window(mut self, secs: f64) -> Self {
        self.scenario.join_window = secs;
        self
    }

    /// Add a fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.scenario.faults.push(fault);
        self
    }

    /// Drive `workload`; its protocol settings (sync mode, rumors,
    /// intervals) are applied to the configuration now.
    pub fn workload(mut self, workload: Workload) -> Self {
        workload.apply(&mut self.scenario.config);
        self.scenario.workload = Some(workload);
        self
    }

    /// Give the nodes' wall clocks offsets and jumps.
    pub fn clock(mut self, clock: ClockSpec) -> Self {
        self.scenario.clock = Some(clock);
        self
    }

    /// Turn off refutation of suspicions (plants a bug the accuracy check must catch).
    pub fn refute_suspicions(mut self, on: bool) -> Self {
        self.scenario.config.refute_suspicions = on;
        self
    }

    /// The arguments that rebuild this scenario on the command line.
    pub fn replay_args(mut self, args: impl Into<String>) -> Self {
        self.scenario.replay_args = Some(args.into());
        self
    }

    /// Check and finish.
    pub fn build(self) -> Result<Scenario, ScenarioError> {
        self.scenario.validate()?;
        Ok(self.scenario)
    }
}

/// The TOML form of a scenario; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    nodes: Option<usize>,
    duration: Option<f64>,
    profile: Option<String>,
    join_window: Option<f64>,
    bootstrap: Option<Bootstrap>,
    refute_suspicions: Option<bool>,
    network: Option<NetworkFile>,
    #[serde(default)]
    faults: Vec<Fault>,
    workload: Option<Workload>,
    clock: Option<ClockSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    latency: Option<Latency>,
    loss: Option<f64>,
    refuse: Option<bool>,
}

impl Scenario {
    /// Start a scenario of `nodes` nodes on the LAN profile with no faults.
    pub fn builder(name: &str, nodes: usize) -> ScenarioBuilder {
        let config = Config::lan();
        let duration = Bounds::new(&config, nodes.max(1)).converge_s() + 20.0;
        ScenarioBuilder {
            scenario: Scenario {
                name: name.to_string(),
                nodes,
                duration,
                profile: Profile::Lan,
                config,
                network: default_network(Profile::Lan),
                join_window: default_join_window(nodes),
                bootstrap: Bootstrap::Warm,
                faults: Vec::new(),
                replay_args: None,
                workload: None,
                clock: None,
            },
        }
    }

    /// Check the scenario; the error is one line.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.nodes == 0 {
            return err("nodes must be at least 1");
        }
        if self.nodes > 10_000_000 {
            return err(format!("nodes ({}) must be at most 10000000", self.nodes));
        }
        if !(self.duration.is_finite() && self.duration > 0.0) {
            return err(format!("duration ({}) must be > 0 seconds", self.duration));
        }
        if !(self.join_window.is_finite() && self.join_window >= 0.0) {
            return err(format!("join_window ({}) must be >= 0", self.join_window));
        }
        self.network.validate().map_err(ScenarioError)?;
        self.config
            .validate()
            .map_err(|e| ScenarioError(e.to_string()))?;
        for f in &self.faults {
            f.validate(self.nodes).map_err(ScenarioError)?;
        }
        if let Some(w) = &self.workload {
            w.validate(self.nodes).map_err(ScenarioError)?;
        }
        if let Some(c) = &self.clock {
            c.validate().map_err(ScenarioError)?;
        }
        Ok(())
    }

    /// Nodes that start outside the cluster and join later (a `join` fault).
    pub fn late_joiners(&self) -> BTreeSet<usize> {
        self.faults
            .iter()
            .filter_map(|f| match f {
                Fault::Join { node, .. } => Some(*node),
                _ => None,
            })
            .collect()
    }

    /// When the last fault heals, in seconds (0 if there are none).
    pub fn last_heal_s(&self) -> f64 {
        self.faults
            .iter()
            .map(|f| to_secs(f.heals_at()))
            .fold(0.0, f64::max)
    }

    /// Parse a TOML scenario. `nodes` and `profile` in the file are used
    /// unless given here (command-line overrides).
    pub fn from_toml(
        text: &str,
        nodes: Option<usize>,
        profile: Option<Profile>,
    ) -> Result<Scenario, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    ScenarioError(format!("TOML error at line {line}: {msg}"))
                }
                None => ScenarioError(format!("TOML error: {msg}")),
            }
        })?;
        let profile = match (profile, &file.profile) {
            (Some(p), _) => p,
            (None, Some(s)) => s
                .parse::<Profile>()
                .map_err(|e| ScenarioError(e.to_string()))?,
            (None, None) => Profile::Lan,
        };
        let n = nodes.or(file.nodes).unwrap_or(32);
        let mut b = Scenario::builder(file.name.as_deref().unwrap_or("file"), n).profile(profile);
        if let Some(net) = file.network {
            if let Some(l) = net.latency {
                b = b.latency(l);
            }
            if let Some(l) = net.loss {
                b = b.loss(l);
            }
            if let Some(r) = net.refuse {
                b.scenario.network.refuse = r;
            }
        }
        if let Some(bs) = file.bootstrap {
            b = b.bootstrap(bs);
        }
        if let Some(w) = file.join_window {
            b = b.join_window(w);
        }
        if let Some(r) = file.refute_suspicions {
            b = b.refute_suspicions(r);
        }
        if let Some(c) = file.clock {
            b = b.clock(c);
        }
        let last = file
            .faults
            .iter()
            .map(|f| to_secs(f.heals_at()))
            .fold(0.0, f64::max);
        for f in file.faults {
            b = b.fault(f);
        }
        let mut last = last;
        if let Some(w) = file.workload {
            last = last.max(workload_end(&w, b.scenario.join_window));
            b = b.workload(w);
        }
        let bounds = Bounds::new(&b.scenario.config, n);
        let duration = file
            .duration
            .unwrap_or(last.max(b.scenario.join_window + 20.0) + bounds.converge_s() + 10.0);
        b.duration(duration).build()
    }

    /// A built-in scenario by name for `nodes` nodes on the LAN profile; its
    /// random choices (which node crashes, ...) come from `seed`.
    pub fn builtin(name: &str, nodes: usize, seed: u64) -> Result<Scenario, ScenarioError> {
        Scenario::builtin_with(name, nodes, seed, Profile::Lan)
    }

    /// [`Scenario::builtin`] on a given profile.
    pub fn builtin_with(
        name: &str,
        nodes: usize,
        seed: u64,
        profile: Profile,
    ) -> Result<Scenario, ScenarioError> {
        if !BUILTINS.contains(&name) {
            return err(format!(
                "unknown scenario {name:?}: expected one of {} or a .toml file",
                BUILTINS.join(", ")
            ));
        }
        if nodes == 0 {
            return err("nodes must be at least 1");
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix_seed(seed, 0x5CE7));
        let b = Scenario::builder(name, nodes).profile(profile);
        let config = b.scenario.config.clone();
        let bounds = Bounds::new(&config, nodes);
        let warm = b.scenario.join_window + 20.0;
        let probe = config.probe_interval.as_secs_f64();
        // A random node other than the seed (node 0), when there is one.
        let pick = |rng: &mut Xoshiro256PlusPlus| {
            if nodes > 1 {
                rng.random_range(1..nodes)
            } else {
                0
            }
        };
        let mut last = warm;
        let mut b = match name {
            "join" => {
                let tagger = pick(&mut rng);
                let mut b = b;
                if nodes > 1 {
                    b = b.fault(Fault::Join {
                        at: warm,
                        node: nodes - 1,
                    });
                }
                last = warm + 10.0 * probe;
                b.fault(Fault::Tags {
                    at: last,
                    node: tagger,
                    key: "role".into(),
                    value: "db".into(),
                })
            }
            "crash" => b.fault(Fault::Crash {
                at: warm,
                node: pick(&mut rng),
            }),
            "churn" => {
                let mut b = b;
                let mut order: Vec<usize> = (1..nodes).collect();
                order.shuffle(&mut rng);
                let k = (nodes / 8).clamp(1, 64).min(order.len());
                let span = 30.0 * probe;
                for (j, &node) in order.iter().take(k).enumerate() {
                    let at = warm + rng.random::<f64>() * span;
                    let f = match j % 4 {
                        0 => Fault::Crash { at, node },
                        1 => Fault::Restart {
                            at,
                            node,
                            down_for: rng.random_range(2.0..20.0) * probe,
                        },
                        2 => Fault::Leave { at, node },
                        _ => Fault::Tags {
                            at,
                            node,
                            key: "v".into(),
                            value: format!("{j}"),
                        },
                    };
                    last = last.max(to_secs(f.heals_at()));
                    b = b.fault(f);
                }
                b
            }
            "partition" => {
                let mut order: Vec<usize> = (1..nodes).collect();
                order.shuffle(&mut rng);
                order.truncate((nodes / 4).max(1).min(order.len()));
                order.sort_unstable();
                let duration = 10.0 * probe;
                last = warm + duration;
                b.fault(Fault::Partition {
                    at: warm,
                    nodes: order,
                    duration,
                })
            }
            "pause" => {
                // Past the stall grace, so the paused node is suspected
                // and must refute.
                let duration = config.stall_grace.as_secs_f64() + 10.0 * probe;
                last = warm + duration;
                b.fault(Fault::Pause {
                    at: warm,
                    node: pick(&mut rng),
                    duration,
                })
            }
            "lossy" => {
                let b = b.loss(0.1).fault(Fault::Crash {
                    at: warm,
                    node: pick(&mut rng),
                });
                last = warm + 5.0 * probe;
                b.fault(Fault::Tags {
                    at: last,
                    node: pick(&mut rng),
                    key: "role".into(),
                    value: "web".into(),
                })
            }
            "writes" => {
                let start = b.scenario.join_window + 2.0;
                let stop = start + 10.0;
                let w = Workload::Writes(WritesSpec {
                    rate: 10.0,
                    store: Store::State,
                    keys: 64,
                    start: Some(start),
                    stop: Some(stop),
                    sync_mode: None,
                    rumors: None,
                    sync_interval: None,
                    prime: false,
                    state_keys: 0,
                });
                let mut order: Vec<usize> = (1..nodes).collect();
                order.shuffle(&mut rng);
                order.truncate((nodes / 4).max(1).min(order.len()));
                order.sort_unstable();
                last = stop;
                let b = b.workload(w);
                if nodes > 1 {
                    b.fault(Fault::Partition {
                        at: start + 2.0,
                        nodes: order,
                        duration: 5.0,
                    })
                } else {
                    b
                }
            }
            "skew" => {
                // Key-space writes while every node's clock is off by up
                // to the refusal window and jumps both ways; a partition
                // heals meanwhile. Records from the clock furthest ahead
                // are refused by the one furthest behind until its clock
                // is within the window of their stamps: the run lasts
                // that long after the last write, and then some.
                let start = b.scenario.join_window + 2.0;
                let stop = start + 15.0;
                let window = config.kv.max_drift.as_secs_f64();
                let w = Workload::Writes(WritesSpec {
                    rate: 20.0,
                    store: Store::Kv,
                    keys: 32,
                    start: Some(start),
                    stop: Some(stop),
                    sync_mode: None,
                    rumors: None,
                    sync_interval: None,
                    prime: true,
                    state_keys: 0,
                });
                let mut order: Vec<usize> = (1..nodes).collect();
                order.shuffle(&mut rng);
                order.truncate((nodes / 4).max(1).min(order.len()));
                order.sort_unstable();
                let b = b.workload(w).clock(ClockSpec::new(window, 2 * nodes));
                // Two clocks are up to twice the window apart: a stamp is
                // taken everywhere at most one window after its write.
                last = stop + window;
                if nodes > 1 {
                    b.fault(Fault::Partition {
                        at: start + 3.0,
                        nodes: order,
                        duration: 5.0,
                    })
                } else {
                    b
                }
            }
            "aggregate" => {
                let w = Workload::Aggregate(AggregateSpec::default());
                last = b.scenario.join_window + 2.0 + 30.0;
                b.workload(w)
            }
            "hostile" => {
                // A lying sender for 20 s; meanwhile a member crashes (its
                // detection must not suffer) and another restarts (its old
                // claims are among those replayed).
                let duration = 20.0;
                last = warm + duration;
                let mut order: Vec<usize> = (1..nodes).collect();
                order.shuffle(&mut rng);
                let mut b = b.fault(Fault::Hostile {
                    at: warm,
                    duration,
                    spoof: false,
                });
                if let Some(&node) = order.first() {
                    b = b.fault(Fault::Crash {
                        at: warm + 5.0,
                        node,
                    });
                }
                if let Some(&node) = order.get(1) {
                    b = b.fault(Fault::Restart {
                        at: warm + 2.0,
                        node,
                        down_for: 6.0,
                    });
                }
                b
            }
            "forged-icmp" => {
                // Process crashes answer with ICMP; a forger adds one false
                // report against a live member at one prober, then one at
                // every prober against another; later a member really crashes.
                let mut order: Vec<usize> = (1..nodes).collect();
                order.shuffle(&mut rng);
                let mut b = b;
                b.scenario.network.refuse = true;
                if let Some(&node) = order.first() {
                    b = b.fault(Fault::ForgedUnreachable {
                        at: warm,
                        node,
                        everywhere: false,
                        relays: false,
                    });
                }
                if let Some(&node) = order.get(1) {
                    b = b.fault(Fault::ForgedUnreachable {
                        at: warm + 5.0,
                        node,
                        everywhere: true,
                        relays: false,
                    });
                }
                last = warm + 5.0 + 2.0 * nodes as f64 * probe;
                if let Some(&node) = order.get(2) {
                    b = b.fault(Fault::Crash { at: last, node });
                }
                b
            }
            _ => {
                // "random": a seeded fault schedule for sweeps.
                let mut b = b;
                let until = warm + 30.0 * probe;
                let count = (nodes / 5).clamp(1, 8);
                for f in random_faults(mix_seed(seed, 0xFA17), nodes, count, warm, until) {
                    b = b.fault(f);
                }
                last = until;
                b
            }
        };
        b = match name {
            "writes" => b.duration(last + 30.0),
            "skew" => b.duration(last + bounds.converge_s() + 10.0),
            "aggregate" => {
                // End just before the third epoch starts, so the second is whole.
                let epoch = b.scenario.config.aggregate_epoch.as_secs_f64();
                b.duration((2.0 * epoch - 1.0).max(last + 5.0))
            }
            _ => b.duration(last + bounds.converge_s() + 10.0),
        };
        b.build()
    }
}

/// When a workload's activity ends, in seconds.
pub fn workload_end(w: &Workload, join_window: f64) -> f64 {
    match w {
        Workload::Writes(s) => {
            let start = s.start.unwrap_or(join_window + 2.0);
            s.stop.unwrap_or(start + 10.0)
        }
        Workload::Aggregate(a) => a.start.unwrap_or(join_window + 2.0) + 30.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_build_and_are_seeded() {
        for name in BUILTINS {
            let a = Scenario::builtin(name, 32, 3).unwrap();
            assert_eq!(a, Scenario::builtin(name, 32, 3).unwrap());
            assert!(a.duration > a.last_heal_s());
            let _ = Scenario::builtin(name, 1, 3).unwrap();
        }
        assert!(Scenario::builtin("nope", 32, 1).is_err());
        assert!(Scenario::builtin("crash", 0, 1).is_err());
    }

    #[test]
    fn toml_round_trip_and_errors() {
        let text = r#"
name = "t"
nodes = 10
duration = 60
profile = "local"
[network]
loss = 0.05
latency = { kind = "pareto", min_ms = 1.0, alpha = 2.0 }
[[faults]]
kind = "crash"
at = 10
node = 3
[[faults]]
kind = "partition"
at = 12
nodes = [1, 2]
duration = 4
"#;
        let s = Scenario::from_toml(text, None, None).unwrap();
        assert_eq!(s.nodes, 10);
        assert_eq!(s.profile, Profile::Local);
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.network.loss, 0.05);
        assert_eq!(Scenario::from_toml(text, Some(20), None).unwrap().nodes, 20);
        let bad = Scenario::from_toml("nodes = \"x\"", None, None).unwrap_err();
        assert!(bad.0.contains("line 1"), "{bad}");
        assert!(!bad.0.contains('\n'));
        assert!(Scenario::from_toml(
            "[[faults]]\nkind = \"crash\"\nat = 1\nnode = 99",
            None,
            None
        )
        .is_err());
        assert!(Scenario::from_toml("[network]\nloss = 1.0", None, None).is_err());
        assert!(Scenario::from_toml("bogus = 1", None, None).is_err());
    }
}
