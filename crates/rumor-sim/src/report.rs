//! The outcome of a run: the [`Summary`] (printed as text or JSON), the
//! per-update infection series, and their CSV files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use rumor_core::message::MessageType;
use rumor_core::Stats;
use serde::Serialize;

use crate::engine::{CostCounters, Truth};
use crate::invariants::{Bounds, Checker, Violation};
use crate::metrics::{Metrics, Percentiles};
use crate::scenario::{profile_name, Scenario};
use crate::to_secs;

/// How fast crashes were detected, averaged over the crashes that got that far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Detection {
    /// Crash to the first suspicion anywhere.
    pub first_suspect_s: Option<f64>,
    /// Crash to the first death declaration anywhere.
    pub first_dead_s: Option<f64>,
    /// Crash to the last live node marking it dead.
    pub all_dead_s: Option<f64>,
}

/// One tracked update.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpdateSummary {
    /// join, tags, death or leave.
    pub kind: &'static str,
    /// The node it is about.
    pub subject: usize,
    /// When it happened (seconds).
    pub start_s: f64,
    /// Nodes that should have learnt it.
    pub target: usize,
    /// Nodes that did.
    pub reached: usize,
    /// Time to 50/90/99/100 %.
    pub times: Percentiles,
    /// Deaths: crash to first suspicion.
    pub first_suspect_s: Option<f64>,
}

/// Messages and bytes per node per second, over the window from
/// `from_s` (5 s after the bootstrap) to the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Start of the window, seconds.
    pub from_s: f64,
    /// Datagram and stream bytes sent.
    pub bytes_per_node_per_s: f64,
    /// Datagram bytes only.
    pub datagram_bytes_per_node_per_s: f64,
    /// Stream (push-pull) bytes, requests and replies.
    pub stream_bytes_per_node_per_s: f64,
    /// Datagrams plus streams sent.
    pub packets_per_node_per_s: f64,
    /// Protocol messages sent (piggybacked ones included), all types.
    pub msgs_per_node_per_s: f64,
    /// Messages by type.
    pub msgs_by_type: BTreeMap<&'static str, f64>,
}

/// Everything a run reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Cluster size.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Protocol profile.
    pub profile: &'static str,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Datagram loss of the network.
    pub loss: f64,
    /// Mean over join/tag/leave updates of their 50/90/99/100 % times.
    pub dissemination: Percentiles,
    /// Mean over crashes.
    pub detection: Detection,
    /// Seed bootstrap: seconds until every initial member listed every
    /// other as live (`None`: warm bootstrap, or it never happened).
    pub formed_s: Option<f64>,
    /// Seed bootstrap: seconds until 50, 90, 99 and 99.9 % of the
    /// (observer, subject) pairs were known (absent with a warm bootstrap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formed_percentiles_s: Option<[Option<f64>; 4]>,
    /// The (observer, subject) pair learnt last in that formation.
    pub formed_last_pair: Option<(usize, usize)>,
    /// Seconds from the last fault's end until every running member last
    /// saw every other alive (absent without faults, above
    /// [`crate::healing::Healing::MAX_NODES`] nodes, or if the views had
    /// not healed by the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healed_s: Option<f64>,
    /// (observer, subject) death declarations of live, unpaused, reachable nodes.
    pub false_positives: u64,
    /// Distinct live nodes somebody declared dead.
    pub false_positive_nodes: usize,
    /// Summed seconds those declarations stood.
    pub false_positive_seconds: f64,
    /// Suspicions of live, unpaused, reachable nodes.
    pub live_suspicions: u64,
    /// Suspicions of nodes while they were paused.
    pub paused_suspicions: u64,
    /// (observer, subject) death declarations of nodes while they were paused.
    pub paused_failures: u64,
    /// Bytes sent per node per second.
    pub bytes_per_node_per_s: f64,
    /// Messages sent per node per second.
    pub msgs_per_node_per_s: f64,
    /// The cost in detail.
    pub cost: Cost,
    /// Every tracked update.
    pub updates: Vec<UpdateSummary>,
    /// Number of invariant violations.
    pub invariant_violations: usize,
    /// The first violations in detail.
    pub violations: Vec<Violation>,
    /// Completeness checks run.
    pub completeness_checks: usize,
    /// Whether the run lasted long enough after the last heal to check convergence.
    pub convergence_checked: bool,
    /// The bounds used (seconds): detect, converge, grace.
    pub bounds_s: [f64; 3],
    /// Events processed.
    pub events: u64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Peak resident memory of the process so far, MiB (Linux VmHWM).
    pub peak_rss_mib: Option<f64>,
    /// The command that replays this run.
    pub replay: String,
    /// What the workload measured, if the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<crate::workload::WorkloadReport>,
    /// What a hostile sender or ICMP forger did and what was refused, if
    /// the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostile: Option<crate::hostile::HostileReport>,
}

/// A run's result: the summary and the raw series behind the plots.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The summary.
    pub summary: Summary,
    /// Per update: (label, sorted arrival delays in seconds, target size).
    pub series: Vec<(String, Vec<f64>, usize)>,
    /// Crash-to-dead delay at every node that marked a crashed node dead.
    pub detection_delays: Vec<f64>,
    /// The violations (same as in the summary).
    pub violations: Vec<Violation>,
}

/// Peak resident set size of this process in MiB, from /proc/self/status.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// What [`build`] needs from a finished simulation.
pub struct RunData<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The seed.
    pub seed: u64,
    /// Wall seconds.
    pub wall_s: f64,
    /// Events processed.
    pub events: u64,
    /// Summed node counters over the whole run.
    pub stats: &'a Stats,
    /// Counters over the cost window.
    pub cost: &'a CostCounters,
    /// When the cost window starts (after the bootstrap).
    pub cost_from: u64,
    /// Its length.
    pub cost_window: u64,
    /// Measurements.
    pub metrics: &'a Metrics,
    /// Invariant results.
    pub checker: &'a Checker,
    /// Final truth.
    pub truth: &'a Truth,
    /// Bounds.
    pub bounds: &'a Bounds,
    /// When the last fault healed.
    pub last_heal: u64,
}

/// The command line that replays `scenario` with `seed`.
pub fn replay_command(scenario: &Scenario, seed: u64) -> String {
    match &scenario.replay_args {
        Some(args) => format!("rumor-sim {args} --seed {seed}"),
        None => format!(
            "rumor-sim --scenario {} --nodes {} --profile {} --duration {} --seed {seed}",
            scenario.name,
            scenario.nodes,
            profile_name(scenario.profile),
            scenario.duration
        ),
    }
}

fn mean(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let xs: Vec<f64> = v.flatten().collect();
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Assemble the result of a finished run.
pub fn build(d: RunData<'_>) -> RunResult {
    let s = d.scenario;
    let per = (s.nodes as f64 * to_secs(d.cost_window)).max(1e-9);
    let mut updates = Vec::new();
    let mut series = Vec::new();
    let mut detection_delays = Vec::new();
    for u in &d.metrics.updates {
        let (delays, target) = u.delays(d.truth);
        let times = u.percentiles(d.truth);
        if matches!(u.kind, crate::metrics::UpdateKind::Death) {
            detection_delays.extend(delays.iter().copied());
        }
        series.push((
            format!(
                "{} n{} @{:.1}s",
                u.kind.label(),
                u.subject,
                to_secs(u.start)
            ),
            delays.clone(),
            target,
        ));
        updates.push(UpdateSummary {
            kind: u.kind.label(),
            subject: u.subject,
            start_s: to_secs(u.start),
            target,
            reached: delays.len(),
            times,
            first_suspect_s: u.first_suspect.map(|t| to_secs(t - u.start)),
        });
    }
    let news: Vec<&UpdateSummary> = updates.iter().filter(|u| u.kind != "death").collect();
    let dissemination = Percentiles {
        t50_s: mean(news.iter().map(|u| u.times.t50_s)),
        t90_s: mean(news.iter().map(|u| u.times.t90_s)),
        t99_s: mean(news.iter().map(|u| u.times.t99_s)),
        t100_s: mean(news.iter().map(|u| u.times.t100_s)),
    };
    let deaths: Vec<&UpdateSummary> = updates.iter().filter(|u| u.kind == "death").collect();
    let detection = Detection {
        first_suspect_s: mean(deaths.iter().map(|u| u.first_suspect_s)),
        first_dead_s: mean(
            d.metrics
                .updates
                .iter()
                .filter(|u| matches!(u.kind, crate::metrics::UpdateKind::Death))
                .map(|u| u.arrivals.first().map(|&(t, _)| to_secs(t - u.start))),
        ),
        all_dead_s: mean(deaths.iter().map(|u| u.times.t100_s)),
    };
    let msgs: u64 = d.cost.messages_out.iter().sum();
    let dgram = d.cost.bytes_out as f64;
    let stream = d.cost.stream_bytes as f64;
    let cost = Cost {
        from_s: to_secs(d.cost_from),
        bytes_per_node_per_s: round((dgram + stream) / per),
        datagram_bytes_per_node_per_s: round(dgram / per),
        stream_bytes_per_node_per_s: round(stream / per),
        packets_per_node_per_s: round((d.cost.packets_out + d.cost.streams_out) as f64 / per),
        msgs_per_node_per_s: round(msgs as f64 / per),
        msgs_by_type: MessageType::ALL
            .iter()
            .map(|t| {
                (
                    t.as_str(),
                    round(d.cost.messages_out[*t as usize - 1] as f64 / per),
                )
            })
            .collect(),
    };
    let summary = Summary {
        scenario: s.name.clone(),
        nodes: s.nodes,
        seed: d.seed,
        profile: profile_name(s.profile),
        duration_s: s.duration,
        loss: s.network.loss,
        dissemination,
        detection,
        formed_s: d
            .metrics
            .formation
            .as_ref()
            .and_then(|f| f.formed_at)
            .map(to_secs),
        formed_percentiles_s: d
            .metrics
            .formation
            .as_ref()
            .map(|f| f.milestones.map(|m| m.map(to_secs))),
        formed_last_pair: d.metrics.formation.as_ref().and_then(|f| f.last_pair),
        healed_s: d
            .metrics
            .healing
            .as_ref()
            .filter(|_| d.last_heal > 0)
            .and_then(|h| h.healed_after(d.last_heal)),
        false_positives: d.metrics.false_positives,
        false_positive_nodes: d.metrics.false_positive_nodes.len(),
        false_positive_seconds: round(to_secs(d.metrics.false_positive_micros)),
        live_suspicions: d.metrics.live_suspicions,
        paused_suspicions: d.metrics.paused_suspicions,
        paused_failures: d.metrics.paused_failures,
        bytes_per_node_per_s: cost.bytes_per_node_per_s,
        msgs_per_node_per_s: cost.msgs_per_node_per_s,
        cost,
        updates,
        invariant_violations: d.checker.count,
        violations: d.checker.violations.clone(),
        completeness_checks: d.checker.completeness_checked,
        convergence_checked: d.checker.convergence_checked,
        bounds_s: [
            to_secs(d.bounds.detect),
            to_secs(d.bounds.converge),
            to_secs(d.bounds.grace),
        ],
        events: d.events,
        wall_s: d.wall_s,
        peak_rss_mib: peak_rss_mib(),
        replay: replay_command(s, d.seed),
        workload: None,
        hostile: None,
    };
    RunResult {
        violations: summary.violations.clone(),
        summary,
        series,
        detection_delays,
    }
}

impl Summary {
    /// The parts that must be identical for two runs of the same seed
    /// (everything but wall time and memory), as JSON.
    pub fn deterministic_json(&self) -> String {
        let mut s = self.clone();
        s.wall_s = 0.0;
        s.peak_rss_mib = None;
        serde_json::to_string(&s).unwrap_or_default()
    }

    /// A human-readable report.
    pub fn text(&self) -> String {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3}s"));
        let mut o = String::new();
        let _ = writeln!(
            o,
            "scenario {} | {} nodes | seed {} | {} | {:.0}s simulated in {:.2}s wall, {} events",
            self.scenario,
            self.nodes,
            self.seed,
            self.profile,
            self.duration_s,
            self.wall_s,
            self.events
        );
        let d = &self.dissemination;
        let _ = writeln!(
            o,
            "dissemination (mean over updates): t50 {} t90 {} t99 {} t100 {}",
            f(d.t50_s),
            f(d.t90_s),
            f(d.t99_s),
            f(d.t100_s)
        );
        if let Some([p50, p90, p99, p999]) = self.formed_percentiles_s {
            let _ = writeln!(
                o,
                "forming: half the pairs known after {} 90 % {} 99 % {} 99.9 % {}",
                f(p50),
                f(p90),
                f(p99),
                f(p999)
            );
        }
        if let (Some(t), Some((observer, subject))) = (self.formed_s, self.formed_last_pair) {
            let _ = writeln!(
                o,
                "formed: every member listed every other after {t:.3}s \
                 (last: n{observer} learnt n{subject})"
            );
        }
        if let Some(t) = self.healed_s {
            let _ = writeln!(
                o,
                "healed: every running member saw every other alive {t:.3}s after the last fault ended"
            );
        }
        for u in &self.updates {
            let t = &u.times;
            let _ = writeln!(
                o,
                "  {:5} n{:<6} at {:8.3}s: {}/{} nodes; t50 {} t90 {} t99 {} t100 {}{}",
                u.kind,
                u.subject,
                u.start_s,
                u.reached,
                u.target,
                f(t.t50_s),
                f(t.t90_s),
                f(t.t99_s),
                f(t.t100_s),
                u.first_suspect_s
                    .map_or(String::new(), |s| format!("; first suspicion {s:.3}s"))
            );
        }
        let e = &self.detection;
        let _ = writeln!(
            o,
            "detection (mean over crashes): first suspect {} first dead {} all dead {}",
            f(e.first_suspect_s),
            f(e.first_dead_s),
            f(e.all_dead_s)
        );
        let _ = writeln!(
            o,
            "false positives: {} marks of {} live node(s), {:.1}s in total; {} suspicions of live nodes",
            self.false_positives, self.false_positive_nodes, self.false_positive_seconds, self.live_suspicions
        );
        let c = &self.cost;
        let by: Vec<String> = c
            .msgs_by_type
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        let _ = writeln!(
            o,
            "cost per node per second (from {:.0}s): {:.0} bytes ({:.0} datagram, {:.0} stream), {:.2} packets, {:.2} messages ({})",
            c.from_s,
            c.bytes_per_node_per_s,
            c.datagram_bytes_per_node_per_s,
            c.stream_bytes_per_node_per_s,
            c.packets_per_node_per_s,
            c.msgs_per_node_per_s,
            by.join(", ")
        );
        if let Some(m) = self.peak_rss_mib {
            let _ = writeln!(o, "peak memory: {m:.0} MiB");
        }
        let _ = writeln!(
            o,
            "invariants: {} violation(s); {} completeness check(s), convergence {}",
            self.invariant_violations,
            self.completeness_checks,
            if self.convergence_checked {
                "checked"
            } else {
                "not checked (run ends too soon after the last heal)"
            }
        );
        if let Some(w) = &self.workload {
            o.push_str(&w.text());
        }
        for v in &self.violations {
            let _ = writeln!(
                o,
                "  VIOLATION {} at {:.3}s: {}",
                v.invariant, v.time_s, v.detail
            );
        }
        if self.invariant_violations > 0 {
            let _ = writeln!(o, "replay: {}", self.replay);
        }
        o
    }
}

/// Write `updates.csv` (one row per update), `infection.csv` (per update:
/// delay, nodes reached, fraction) and `detection.csv` (crash-to-dead
/// delays) into `dir`.
pub fn write_csv(result: &RunResult, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut u = String::from(
        "kind,subject,start_s,target,reached,t50_s,t90_s,t99_s,t100_s,first_suspect_s\n",
    );
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6}"));
    for s in &result.summary.updates {
        let _ = writeln!(
            u,
            "{},{},{:.6},{},{},{},{},{},{},{}",
            s.kind,
            s.subject,
            s.start_s,
            s.target,
            s.reached,
            opt(s.times.t50_s),
            opt(s.times.t90_s),
            opt(s.times.t99_s),
            opt(s.times.t100_s),
            opt(s.first_suspect_s)
        );
    }
    std::fs::write(dir.join("updates.csv"), u)?;
    let mut inf = String::from("update,delay_s,reached,fraction\n");
    for (label, delays, target) in &result.series {
        for (k, d) in delays.iter().enumerate() {
            let _ = writeln!(
                inf,
                "{label},{d:.6},{},{:.6}",
                k + 1,
                (k + 1) as f64 / (*target).max(1) as f64
            );
        }
    }
    std::fs::write(dir.join("infection.csv"), inf)?;
    let mut det = String::from("delay_s\n");
    for d in &result.detection_delays {
        let _ = writeln!(det, "{d:.6}");
    }
    std::fs::write(dir.join("detection.csv"), det)?;
    let json = serde_json::to_string_pretty(&result.summary).map_err(io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json)
}
