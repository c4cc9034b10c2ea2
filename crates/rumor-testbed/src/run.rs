//! `rumor-testbed run`: hosts, agents, the nemesis and the workload for a
//! while; then every fault healed, the cluster left to settle, and the
//! checker's verdict.

use crate::agents::{AgentOptions, Agents};
use crate::check::{self, Verdict};
use crate::hosts::{Hosts, Subnet};
use crate::http;
use crate::link::Link;
use crate::nemesis::{self, Disturbance, Fault, Restart, Step, Timeline};
use crate::workload::Record;
use anyhow::{bail, Result};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: the run stops and removes what it made.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A fault planted to show that the checker catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// A kv write is recorded as acknowledged but never sent.
    LostWrite,
    /// An agent is killed at the end without the harness knowing.
    SilentKill,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How many hosts.
    pub hosts: usize,
    /// Seed of the schedule, the workload and the emulator.
    pub seed: u64,
    /// Seconds of nemesis and workload.
    pub secs: f64,
    /// Longest wait for the cluster to settle after the faults heal.
    pub settle_secs: f64,
    /// `--profile` of the agents.
    pub profile: String,
    /// The subnet.
    pub subnet: Subnet,
    /// Conditions of every link when no fault acts.
    pub base: Link,
    /// Run the nemesis (else only the workload).
    pub nemesis: bool,
    /// Workload operations per second.
    pub ops_per_sec: f64,
    /// A planted fault.
    pub plant: Option<Plant>,
    /// The agents.
    pub agent: AgentOptions,
}

fn now(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// Sleeps, unless interrupted.
pub fn nap(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted; everything the testbed made is removed");
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    Ok(())
}

/// The state of the run the nemesis changes.
struct Bed {
    agents: Agents,
    timeline: Timeline,
    /// Whether the harness believes host `i`'s agent is running.
    up: Vec<bool>,
    base: Link,
    t0: Instant,
}

/// Runs one scenario and returns the checker's verdict.
pub fn run(o: &RunOptions) -> Result<Verdict> {
    let t0 = Instant::now();
    let hosts = Hosts::create(o.hosts, o.subnet, o.base.clone(), o.seed)?;
    std::fs::create_dir_all(&o.agent.dir)?;
    let mut bed = Bed {
        agents: Agents::new(hosts, o.agent.clone(), t0),
        timeline: Timeline::default(),
        up: vec![true; o.hosts],
        base: o.base.clone(),
        t0,
    };
    for i in 0..o.hosts {
        bed.agents.start(i)?;
    }
    let joined = check::settle(&bed.agents, &bed.up, Duration::from_secs(120))?;
    if !joined.is_empty() {
        bail!(
            "the cluster did not form within 120 s: {}",
            joined.join("; ")
        );
    }
    eprintln!("testbed: {} agents joined in {:.1} s", o.hosts, now(t0));
    let started = now(t0);
    let mut record = Record::new(o.hosts);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(o.seed);
    // Every agent tracks the average of `load` from the start.
    for i in 0..o.hosts {
        record.set_load(&bed.agents, i, rng.random_range(0..1000), now(t0));
        http::json(bed.agents.hosts.ns(i), "GET", "/v1/aggregate/load", b"")?;
    }
    let mut schedule: Vec<Step> = if o.nemesis {
        nemesis::schedule(o.seed, o.hosts, o.secs)
    } else {
        Vec::new()
    };
    schedule.iter_mut().for_each(|s| s.at += started);
    let mut pending = schedule.clone().into_iter().peekable();
    let mut active: Option<(Step, Vec<usize>)> = None;
    let gap = Duration::from_secs_f64(1.0 / o.ops_per_sec.max(0.1));
    let mut next_op = Instant::now();
    loop {
        let t = now(t0);
        if let Some((step, _)) = &active {
            if t >= step.at + step.duration {
                let (step, open) = active.take().expect("checked above");
                bed.heal(&step, open)?;
            }
        }
        if active.is_none() && t >= started + o.secs {
            break;
        }
        if active.is_none() && pending.peek().is_some_and(|s| t >= s.at) {
            let step = pending.next().expect("peeked");
            eprintln!(
                "testbed: {:>6.1}s {:?} for {:.1}s",
                t - started,
                step.fault,
                step.duration
            );
            let open = bed.inject(&step)?;
            active = Some((step, open));
        }
        if Instant::now() >= next_op {
            next_op += gap;
            let ready: Vec<usize> = (0..o.hosts)
                .filter(|&h| bed.up[h] && !bed.agents.agent(h).paused)
                .collect();
            if let Some(&h) = ready.choose(&mut rng) {
                record.op(&bed.agents, h, now(t0), o.seed, &mut rng);
            }
        }
        nap(Duration::from_millis(20))?;
    }
    eprintln!(
        "testbed: faults healed at {:.1} s; settling",
        now(t0) - started
    );
    // The aggregate is checked against fresh values on every live agent
    // (an agent restarted empty lost its own).
    for i in (0..o.hosts).filter(|&i| bed.up[i]) {
        record.set_load(&bed.agents, i, rng.random_range(0..1000), now(t0));
    }
    match o.plant {
        Some(Plant::LostWrite) => record.puts.push(crate::workload::Put {
            key: "wl/planted".into(),
            value: "never-sent".into(),
            host: 0,
            at: now(t0),
        }),
        Some(Plant::SilentKill) => {
            let victim = (1..o.hosts).find(|&h| bed.up[h]).unwrap_or(0);
            bed.agents.kill(victim);
        }
        None => {}
    }
    let verdict = check::check(&check::Inputs {
        agents: &bed.agents,
        up: &bed.up,
        timeline: &bed.timeline,
        record: &record,
        schedule: &schedule,
        converge_within: Duration::from_secs_f64(o.settle_secs),
        profile: &o.profile,
        emulator: bed.agents.hosts.emulator.stats(),
    })?;
    Ok(verdict)
}

impl Bed {
    fn t(&self) -> f64 {
        now(self.t0)
    }

    /// Cuts `from` → `to` and records it; returns the timeline entries.
    fn cut(&mut self, from: &[usize], to: &[usize]) -> Vec<usize> {
        self.agents.hosts.emulator.with_links(|l| l.cut(from, to));
        let at = self.t();
        let mut open = Vec::new();
        for &a in from {
            for &b in to {
                if a != b {
                    open.push(self.timeline.begin(at, Disturbance::Cut { from: a, to: b }));
                }
            }
        }
        open
    }

    fn others(&self, host: usize) -> Vec<usize> {
        (0..self.up.len()).filter(|&h| h != host).collect()
    }

    fn down(&mut self, host: usize, wiped: bool) -> usize {
        self.up[host] = false;
        self.timeline
            .begin(self.t(), Disturbance::Down { host, wiped })
    }

    /// Kills host `host`'s agent and starts it again on its data, with
    /// its clock off by `offset_ms`; the gap is recorded as down.
    fn restart_with_clock(&mut self, host: usize, offset_ms: Option<i64>) -> Result<()> {
        self.agents.kill(host);
        let down = self.down(host, false);
        self.agents.start_with_clock(host, offset_ms)?;
        self.up[host] = true;
        self.timeline.end(down, self.t());
        Ok(())
    }

    fn inject(&mut self, step: &Step) -> Result<Vec<usize>> {
        let mut open = Vec::new();
        match &step.fault {
            Fault::HostCrash { host, restart } => {
                let others = self.others(*host);
                open.extend(self.cut(&[*host], &others));
                open.extend(self.cut(&others, &[*host]));
                nap(Duration::from_secs(1))?;
                self.agents.kill(*host);
                open.push(self.down(*host, *restart == Restart::Wiped));
            }
            Fault::ProcessCrash { host, restart } => {
                self.agents.kill(*host);
                open.push(self.down(*host, *restart == Restart::Wiped));
            }
            Fault::Pause { host } => {
                self.agents.signal(*host, libc::SIGSTOP);
                open.push(
                    self.timeline
                        .begin(self.t(), Disturbance::Paused { host: *host }),
                );
            }
            Fault::Partition { side } => {
                let rest: Vec<usize> = (0..self.up.len()).filter(|h| !side.contains(h)).collect();
                open.extend(self.cut(side, &rest));
                open.extend(self.cut(&rest, side));
            }
            Fault::OneWay { from, to } => open.extend(self.cut(from, to)),
            Fault::LossBurst { loss } => {
                let loss = *loss;
                self.agents
                    .hosts
                    .emulator
                    .with_links(|l| l.each(|k| k.loss = k.loss.max(loss)));
                open.push(self.timeline.begin(self.t(), Disturbance::Loss { loss }));
            }
            Fault::LatencySpike {
                hosts,
                delay_ms,
                jitter_ms,
            } => {
                let (d, j) = (
                    Duration::from_millis(*delay_ms),
                    Duration::from_millis(*jitter_ms),
                );
                let base = self.base.clone();
                self.agents.hosts.emulator.with_links(|l| {
                    for a in 0..l.hosts() {
                        for b in 0..l.hosts() {
                            if a != b && (hosts.contains(&a) || hosts.contains(&b)) {
                                let k = l.get_mut(a, b);
                                k.delay = base.delay + d;
                                k.jitter = base.jitter.max(j);
                            }
                        }
                    }
                });
                open.push(self.timeline.begin(
                    self.t(),
                    Disturbance::Latency {
                        hosts: hosts.clone(),
                    },
                ));
            }
            Fault::ClockOffset { host, offset_ms } => {
                self.restart_with_clock(*host, Some(*offset_ms))?;
                let what = Disturbance::Clock {
                    host: *host,
                    offset_ms: *offset_ms,
                };
                open.push(self.timeline.begin(self.t(), what));
            }
            Fault::Restart { host, wipe } => {
                self.agents.signal(*host, libc::SIGTERM);
                open.push(self.down(*host, *wipe));
                self.agents.wait_exit(*host, Duration::from_secs(15));
            }
        }
        Ok(open)
    }

    fn heal(&mut self, step: &Step, open: Vec<usize>) -> Result<()> {
        let base = self.base.clone();
        self.agents
            .hosts
            .emulator
            .with_links(|l| l.each(|k| *k = base.clone()));
        let restart = match &step.fault {
            Fault::HostCrash { host, restart } | Fault::ProcessCrash { host, restart } => {
                (*restart != Restart::Never).then_some((*host, *restart == Restart::Wiped))
            }
            Fault::Restart { host, wipe } => Some((*host, *wipe)),
            Fault::Pause { host } => {
                self.agents.signal(*host, libc::SIGCONT);
                None
            }
            Fault::ClockOffset { host, .. } => {
                self.restart_with_clock(*host, None)?;
                None
            }
            _ => None,
        };
        if let Some((host, wipe)) = restart {
            if wipe {
                let dir = self.agents.data_dir(host);
                let _ = std::fs::remove_dir_all(&dir);
            }
            self.agents.start(host)?;
            self.up[host] = true;
        }
        let at = self.t();
        for i in open {
            // A host that stays down for good keeps its Down interval open.
            let forever = matches!(
                (&self.timeline.intervals[i].what, &step.fault),
                (Disturbance::Down { host, .. }, _) if !self.up[*host]
            );
            if !forever {
                self.timeline.end(i, at);
            }
        }
        Ok(())
    }
}

/// The default directory for a run's data dirs and logs.
pub fn default_dir(seed: u64) -> PathBuf {
    std::env::temp_dir().join(format!("rumor-testbed-{}-s{seed}", std::process::id()))
}
