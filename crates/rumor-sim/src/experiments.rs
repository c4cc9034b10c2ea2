//! The experiments of `docs/simulator.md` (`--experiment sync|aggregate|push-sum`):
//! each runs a few scenarios, prints a table, and writes CSV and a PNG.
//!
//! * `sync`: one write's spread (fraction of live nodes holding it vs time,
//!   averaged over the writes of a low-rate workload) under push, pull and
//!   push-pull anti-entropy alone (rumors off), and push-pull with rumors.
//! * `aggregate`: push-sum rounds to 1e-3 and 1e-6 vs N, against
//!   c·(log2 N + log2 1/ε), and bytes per node per round.
//! * `push-sum`: the same with the membership-free push-sum model
//!   ([`pushsum`]), over several seeds, to N = 10^5 and beyond, with loss
//!   and crashes.

use std::fmt::Write as _;
use std::path::Path;

use crate::engine::Simulation;
use crate::plots::{lines, Series};
use crate::pushsum;
use crate::scenario::Scenario;
use crate::workload::{
    AggregateReport, AggregateSpec, Mode, Store, Workload, WorkloadReport, WritesReport, WritesSpec,
};

fn io<E: std::fmt::Display>(e: E) -> String {
    format!("experiment failed: {e}")
}

/// One write-spread run: `mode` anti-entropy, rumors on or off.
pub fn sync_run(
    n: usize,
    store: Store,
    mode: Mode,
    rumors: bool,
    seed: u64,
) -> Result<WritesReport, String> {
    let jw = (n as f64 * 0.002).clamp(0.1, 10.0);
    let start = jw + 3.0;
    let w = Workload::Writes(WritesSpec {
        rate: 2.0,
        store,
        keys: 1000,
        start: Some(start),
        stop: Some(start + 5.0),
        sync_mode: Some(mode),
        rumors: Some(rumors),
        sync_interval: None,
        prime: true,
        state_keys: 0,
    });
    let s = Scenario::builder("sync", n)
        .workload(w)
        .duration(start + 5.0 + 40.0)
        .build()
        .map_err(io)?;
    match run_workload(&s, seed)? {
        Some(WorkloadReport::Writes(r)) => Ok(r),
        _ => Err("no writes report".into()),
    }
}

/// Run scenario `s` with `seed`; its workload's report, if it has one.
fn run_workload(s: &Scenario, seed: u64) -> Result<Option<WorkloadReport>, String> {
    Ok(Simulation::new(s, seed).map_err(io)?.run().summary.workload)
}

/// Experiment (a): write `sync.csv` and `sync.png` into `dir`; returns the table.
pub fn sync(n: usize, store: Store, seed: u64, dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let runs = [
        ("push, rumors off", Mode::Push, false),
        ("pull, rumors off", Mode::Pull, false),
        ("push-pull, rumors off", Mode::PushPull, false),
        ("push-pull + rumors", Mode::PushPull, true),
    ];
    let mut table = String::from(
        "| variant | writes | reached all | mean t50 | mean t90 | mean t99 | mean t100 | worst t100 | bytes/node/s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut csv = String::from("variant,t_s,fraction\n");
    let mut series = Vec::new();
    for (label, mode, rumors) in runs {
        let r = sync_run(n, store, mode, rumors, seed)?;
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2} s"));
        let _ = writeln!(
            table,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            r.writes,
            r.complete,
            f(r.mean.t50_s),
            f(r.mean.t90_s),
            f(r.mean.t99_s),
            f(r.mean.t100_s),
            f(r.max.t100_s),
            r.bytes_per_node_per_s
        );
        for (t, y) in &r.curve {
            let _ = writeln!(csv, "{label},{t:.4},{y:.5}");
        }
        series.push(Series {
            label: label.to_string(),
            points: r.curve.clone(),
            markers: false,
        });
    }
    std::fs::write(dir.join("sync.csv"), csv).map_err(io)?;
    let store_name = match store {
        Store::State => "per-node state",
        Store::Kv => "kv",
    };
    lines(
        &dir.join("sync.png"),
        &format!("one write's spread, {store_name}, N = {n}"),
        "seconds since the write",
        "fraction of live nodes holding it",
        &series,
    )?;
    Ok(table)
}

/// One lossless aggregate run of `rounds` rounds with no epoch change.
pub fn aggregate_run(n: usize, rounds: u64, seed: u64) -> Result<AggregateReport, String> {
    let spec = AggregateSpec {
        epoch: Some(1e6),
        ..AggregateSpec::default()
    };
    let jw = (n as f64 * 0.002).clamp(0.1, 10.0);
    let start = jw + 2.0;
    let s = Scenario::builder("aggregate", n)
        .workload(Workload::Aggregate(AggregateSpec {
            start: Some(start),
            ..spec
        }))
        .duration(start + rounds as f64 * 0.2 + 0.1)
        .build()
        .map_err(io)?;
    match run_workload(&s, seed)? {
        Some(WorkloadReport::Aggregate(r)) => Ok(r),
        _ => Err("no aggregate report".into()),
    }
}

/// Experiment (b): write `aggregate.csv`, `aggregate_rounds.png` and
/// `aggregate_error.png` into `dir`; returns the table.
pub fn aggregate(ns: &[usize], seed: u64, dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for &n in ns {
        let r = aggregate_run(n, 120, seed)?;
        let e = r.epochs.first().cloned();
        let r3 = e.as_ref().and_then(|e| e.rounds_1e3);
        let r6 = e.as_ref().and_then(|e| e.rounds_1e6);
        errors.push(Series {
            label: format!("N = {n}"),
            points: r
                .error_curve
                .iter()
                .enumerate()
                .filter(|(_, e)| e.is_finite())
                .map(|(k, e)| ((k + 1) as f64, e.max(1e-17).log10()))
                .collect(),
            markers: false,
        });
        rows.push((n, r3, r6, r));
    }
    let c = fit_log_rounds(
        rows.iter()
            .map(|(n, r3, r6, _)| (*n, r3.map(|v| v as f64), r6.map(|v| v as f64))),
    );
    let mut table = format!(
        "c = {c:.3} (least squares)\n\n| N | rounds to 1e-3 | c·(log2 N + log2 1e3) | rounds to 1e-6 | c·(log2 N + log2 1e6) | bytes/node/round (aggregate msgs) | mass error | quiescent samples |\n|---|---|---|---|---|---|---|---|\n"
    );
    let mut csv = String::from("nodes,rounds_1e3,rounds_1e6,bytes_per_node_per_round,mass_error\n");
    for (n, r3, r6, r) in &rows {
        let lg = (*n as f64).log2();
        let t3 = c * (lg + 1e3f64.log2());
        let t6 = c * (lg + 1e6f64.log2());
        let s = |x: &Option<u64>| x.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            table,
            "| {n} | {} | {t3:.1} | {} | {t6:.1} | {:.1} | {} | {} |",
            s(r3),
            s(r6),
            r.bytes_per_node_per_round,
            r.mass_error.map_or("-".into(), |m| format!("{m:.1e}")),
            r.quiescent_samples
        );
        let _ = writeln!(
            csv,
            "{n},{},{},{:.2},{}",
            s(r3),
            s(r6),
            r.bytes_per_node_per_round,
            r.mass_error.unwrap_or(f64::NAN)
        );
    }
    std::fs::write(dir.join("aggregate.csv"), csv).map_err(io)?;
    rounds_plot(
        &dir.join("aggregate_rounds.png"),
        "push-sum: rounds until every node is within ε",
        c,
        rows.iter()
            .map(|(n, r3, r6, _)| (*n, r3.map(|v| v as f64), r6.map(|v| v as f64))),
    )?;
    lines(
        &dir.join("aggregate_error.png"),
        "push-sum: worst relative error over live nodes",
        "round since tracking started",
        "log10 max relative error",
        &errors,
    )?;
    Ok(table)
}

/// `c` in rounds = c·(log2 N + log2 1/ε), fitted by least squares through
/// the origin over ε = 1e-3 and 1e-6; `rows` are (N, rounds to 1e-3,
/// rounds to 1e-6).
fn fit_log_rounds(rows: impl Iterator<Item = (usize, Option<f64>, Option<f64>)>) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (n, r3, r6) in rows {
        for (r, eps) in [(r3, 1e-3f64), (r6, 1e-6)] {
            if let Some(r) = r {
                let x = (n as f64).log2() + (1.0 / eps).log2();
                num += x * r;
                den += x * x;
            }
        }
    }
    if den > 0.0 {
        num / den
    } else {
        1.0
    }
}

/// Rounds to 1e-3 and 1e-6 against log2 N (markers), with the lines
/// c·(log2 N + log2 1/ε); `rows` as for [`fit_log_rounds`].
fn rounds_plot(
    path: &Path,
    title: &str,
    c: f64,
    rows: impl Iterator<Item = (usize, Option<f64>, Option<f64>)>,
) -> Result<(), String> {
    let mut measured = [Vec::new(), Vec::new()];
    let mut theory = [Vec::new(), Vec::new()];
    for (n, r3, r6) in rows {
        let lg = (n as f64).log2();
        for (k, (r, eps)) in [(r3, 1e3f64), (r6, 1e6)].into_iter().enumerate() {
            if let Some(r) = r {
                measured[k].push((lg, r));
            }
            theory[k].push((lg, c * (lg + eps.log2())));
        }
    }
    let [m3, m6] = measured;
    let [t3, t6] = theory;
    let series = |label: String, points, markers| Series {
        label,
        points,
        markers,
    };
    lines(
        path,
        title,
        "log2 N",
        "rounds",
        &[
            series("measured, ε = 1e-3".into(), m3, true),
            series(format!("{c:.2}·(log2 N + log2 1e3)"), t3, false),
            series("measured, ε = 1e-6".into(), m6, true),
            series(format!("{c:.2}·(log2 N + log2 1e6)"), t6, false),
        ],
    )
}

/// The push-sum model (`--experiment push-sum`): for each N, `seeds` runs
/// of `base` (its `nodes` and `seed` replaced); writes `push-sum.csv`
/// (one row per run), `push-sum_rounds.png` (mean rounds against
/// c·(log2 N + log2 1/ε)) and `push-sum_error.png` (the first seed's worst
/// error per round) into `dir`; returns the table of means, minima and
/// maxima. With several epochs the last epoch is measured (after a crash
/// in the first, the epoch that starts afresh).
pub fn push_sum(
    ns: &[usize],
    seeds: usize,
    base: &pushsum::Options,
    dir: &Path,
) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut csv = String::from(
        "nodes,seed,loss,crashed,epoch,rounds_1e3,rounds_1e6,final_error,bytes_per_node_per_round,mass_error,wall_s\n",
    );
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let opt = |x: Option<usize>| x.map_or("-".to_string(), |v| v.to_string());
    for &n in ns {
        let mut runs = Vec::new();
        for k in 0..seeds.max(1) as u64 {
            let start = std::time::Instant::now();
            let r = pushsum::run(&pushsum::Options {
                nodes: n,
                seed: base.seed.wrapping_add(k),
                ..base.clone()
            });
            let wall = start.elapsed().as_secs_f64();
            let e = r.epochs.last().cloned().ok_or("no epoch run")?;
            let _ = writeln!(
                csv,
                "{n},{},{},{},{},{},{},{:e},{:.2},{},{wall:.2}",
                r.options.seed,
                r.options.loss,
                r.crashed,
                e.epoch,
                opt(e.rounds_1e3),
                opt(e.rounds_1e6),
                e.final_error,
                r.bytes_per_node_per_round,
                r.mass_error.map_or("-".into(), |m| format!("{m:e}")),
            );
            if k == 0 {
                let from = (r.epochs.len() - 1) * r.options.epoch_rounds;
                errors.push(Series {
                    label: format!("N = {n}"),
                    points: r.error[from..]
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.is_finite())
                        .map(|(k, e)| ((k + 1) as f64, e.max(1e-17).log10()))
                        .collect(),
                    markers: false,
                });
            }
            runs.push((e, r.bytes_per_node_per_round, r.mass_error, wall));
        }
        rows.push((n, runs));
    }
    std::fs::write(dir.join("push-sum.csv"), csv).map_err(io)?;
    let mean = |xs: Vec<Option<usize>>| -> Option<f64> {
        let v: Option<Vec<usize>> = xs.into_iter().collect();
        v.filter(|v| !v.is_empty())
            .map(|v| v.iter().sum::<usize>() as f64 / v.len() as f64)
    };
    let means: Vec<(usize, Option<f64>, Option<f64>)> = rows
        .iter()
        .map(|(n, runs)| {
            (
                *n,
                mean(runs.iter().map(|r| r.0.rounds_1e3).collect()),
                mean(runs.iter().map(|r| r.0.rounds_1e6).collect()),
            )
        })
        .collect();
    let c = fit_log_rounds(means.iter().copied());
    let span = |xs: Vec<Option<usize>>| -> String {
        xs.into_iter().map(opt).collect::<Vec<_>>().join(" ")
    };
    let mut table = format!(
        "c = {c:.3} (least squares over the means)\n\n| N | rounds to 1e-3 (mean; per seed) | c·(log2 N + log2 1e3) | rounds to 1e-6 (mean; per seed) | c·(log2 N + log2 1e6) | bytes/node/round | worst final error | mass error | wall s/run |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for ((n, runs), (_, m3, m6)) in rows.iter().zip(&means) {
        let lg = (*n as f64).log2();
        let f = |m: &Option<f64>| m.map_or("-".into(), |m| format!("{m:.1}"));
        let bytes = runs.iter().map(|r| r.1).sum::<f64>() / runs.len() as f64;
        let worst = runs.iter().map(|r| r.0.final_error).fold(0.0, f64::max);
        let mass = runs
            .iter()
            .filter_map(|r| r.2)
            .fold(None, |a: Option<f64>, m| Some(a.map_or(m, |a| a.max(m))));
        let wall = runs.iter().map(|r| r.3).sum::<f64>() / runs.len() as f64;
        let _ = writeln!(
            table,
            "| {n} | {}; {} | {:.1} | {}; {} | {:.1} | {bytes:.1} | {worst:.1e} | {} | {wall:.1} |",
            f(m3),
            span(runs.iter().map(|r| r.0.rounds_1e3).collect()),
            c * (lg + 1e3f64.log2()),
            f(m6),
            span(runs.iter().map(|r| r.0.rounds_1e6).collect()),
            c * (lg + 1e6f64.log2()),
            mass.map_or("-".into(), |m| format!("{m:.1e}")),
        );
    }
    rounds_plot(
        &dir.join("push-sum_rounds.png"),
        "push-sum model: rounds until every live node is within ε",
        c,
        means.into_iter(),
    )?;
    lines(
        &dir.join("push-sum_error.png"),
        "push-sum model: worst relative error over live nodes",
        "round of the measured epoch",
        "log10 max relative error",
        &errors,
    )?;
    Ok(table)
}

/// `--experiment overlay`: partial membership (HyParView + Plumtree) at
/// each size in `ns`: broadcast reliability, redundancy and healing after
/// 0–90 % of the nodes crash at once, and how fast a crash is heard of.
pub fn overlay(ns: &[usize], seeds: usize, seed: u64, dir: &Path) -> Result<String, String> {
    use crate::overlay::Options;
    use crate::overlay_runs::{crash_run, detection_run, idle_run, storm_run};
    const FRACTIONS: [f64; 6] = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9];
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut runs = Vec::new();
    let mut detections = Vec::new();
    let mut storms = Vec::new();
    let mut idles = Vec::new();
    let mut series = Vec::new();
    let mut table = String::from(
        "  nodes  crashed  seeds  rel.before  rmr.before  ldh  rel.first  rel.10s  rel.30s  rmr.30s  reliable.after_s  healed_s\n",
    );
    for &n in ns {
        let mut points = Vec::new();
        let mut points_10s = Vec::new();
        for &f in &FRACTIONS {
            let rs: Vec<_> = (0..seeds.max(1) as u64)
                .map(|k| {
                    let opts = Options {
                        seed: seed.wrapping_add(k),
                        ..Options::default()
                    };
                    crash_run(n, f, &opts)
                })
                .collect();
            let m = |g: &dyn Fn(&crate::overlay_runs::CrashRun) -> f64| {
                rs.iter().map(g).sum::<f64>() / rs.len() as f64
            };
            let opt_mean = |g: &dyn Fn(&crate::overlay_runs::CrashRun) -> Option<f64>| {
                let v: Vec<f64> = rs.iter().filter_map(g).collect();
                if v.len() < rs.len() {
                    format!("{}/{} never", rs.len() - v.len(), rs.len())
                } else {
                    format!("{:.1}", v.iter().sum::<f64>() / v.len().max(1) as f64)
                }
            };
            let first = m(&|r| r.first_after.reliability);
            points.push((f * 100.0, first * 100.0));
            points_10s.push((f * 100.0, m(&|r| r.after_10s.reliability) * 100.0));
            let _ = writeln!(
                table,
                "{n:>7}  {:>6.0}%  {:>5}  {:>10.4}  {:>10.3}  {:>3}  {:>9.4}  {:>7.4}  {:>7.4}  {:>7.3}  {:>16}  {:>8}",
                f * 100.0,
                rs.len(),
                m(&|r| r.before.reliability),
                m(&|r| r.before.rmr),
                rs.iter().map(|r| r.before.ldh).max().unwrap_or(0),
                first,
                m(&|r| r.after_10s.reliability),
                m(&|r| r.after_30s.reliability),
                m(&|r| r.after_30s.rmr),
                opt_mean(&|r| r.reliable_after_s),
                opt_mean(&|r| r.healed_s),
            );
            runs.extend(rs);
        }
        series.push(Series {
            label: format!("N = {n}, at the crash"),
            points,
            markers: true,
        });
        series.push(Series {
            label: format!("N = {n}, mean of the next 10 s"),
            points: points_10s,
            markers: true,
        });
        let opts = Options {
            seed,
            ..Options::default()
        };
        detections.push(detection_run(n, 10, &opts));
        storms.push(storm_run(n, &opts));
        idles.push(idle_run(n, &opts));
    }
    let _ = writeln!(
        table,
        "\n  nodes  crashed  noticed_s  all_heard_s  heard_by_all  false_failures"
    );
    for d in &detections {
        let _ = writeln!(
            table,
            "{:>7}  {:>7}  {:>9.2}  {:>11.2}  {:>12}  {:>14}",
            d.nodes, d.crashed, d.first_s, d.all_s, d.heard_by_all, d.false_failures
        );
    }
    let _ = writeln!(
        table,
        "\n  nodes  storm: whole_s  messages/node  broadcast.reliability  broadcast.last_ms"
    );
    for s in &storms {
        let whole = s.whole_s.map_or("never".into(), |w| format!("{w:.1}"));
        let _ = writeln!(
            table,
            "{:>7}  {:>13}  {:>13.1}  {:>21.4}  {:>17.0}",
            s.nodes, whole, s.messages_per_node, s.broadcast.reliability, s.broadcast.last_ms
        );
    }
    let _ = writeln!(table, "\n  nodes  idle: messages/node/s  bytes/node/s");
    for i in &idles {
        let _ = writeln!(
            table,
            "{:>7}  {:>20.2}  {:>12.1}",
            i.nodes, i.messages_per_node_s, i.bytes_per_node_s
        );
    }
    let json = serde_json::json!({
        "crash": runs,
        "detection": detections,
        "storm": storms,
        "idle": idles,
    });
    std::fs::write(dir.join("overlay.json"), json.to_string()).map_err(io)?;
    lines(
        &dir.join("overlay.png"),
        "partial membership: broadcasts after a mass crash",
        "nodes crashed at once (%)",
        "live nodes reached (%)",
        &series,
    )?;
    Ok(table)
}
