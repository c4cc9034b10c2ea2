//! The experiments of `docs/simulator.md` (`--experiment sync|aggregate`):
//! each runs a few scenarios, prints a table, and writes CSV and a PNG.
//!
//! * `sync`: one write's spread (fraction of live nodes holding it vs time,
//!   averaged over the writes of a low-rate workload) under push, pull and
//!   push-pull anti-entropy alone (rumors off), and push-pull with rumors.
//! * `aggregate`: push-sum rounds to 1e-3 and 1e-6 vs N, against
//!   c·(log2 N + log2 1/ε), and bytes per node per round.

use std::fmt::Write as _;
use std::path::Path;

use crate::engine::Simulation;
use crate::plots::{lines, Series};
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
    match Simulation::new(&s, seed)
        .map_err(io)?
        .run()
        .summary
        .workload
    {
        Some(WorkloadReport::Writes(r)) => Ok(r),
        _ => Err("no writes report".into()),
    }
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
    match Simulation::new(&s, seed)
        .map_err(io)?
        .run()
        .summary
        .workload
    {
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
    // c fitted by least squares through the origin over both ε.
    let (mut num, mut den) = (0.0, 0.0);
    for (n, r3, r6, _) in &rows {
        for (r, eps) in [(r3, 1e-3f64), (r6, 1e-6)] {
            if let Some(r) = r {
                let x = (*n as f64).log2() + (1.0 / eps).log2();
                num += x * *r as f64;
                den += x * x;
            }
        }
    }
    let c = if den > 0.0 { num / den } else { 1.0 };
    let mut table = format!(
        "c = {c:.3} (least squares)\n\n| N | rounds to 1e-3 | c·(log2 N + log2 1e3) | rounds to 1e-6 | c·(log2 N + log2 1e6) | bytes/node/round (aggregate msgs) | mass error | quiescent samples |\n|---|---|---|---|---|---|---|---|\n"
    );
    let mut csv = String::from("nodes,rounds_1e3,rounds_1e6,bytes_per_node_per_round,mass_error\n");
    let mut measured3 = Vec::new();
    let mut measured6 = Vec::new();
    let mut theory3 = Vec::new();
    let mut theory6 = Vec::new();
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
        if let Some(v) = r3 {
            measured3.push((lg, *v as f64));
        }
        if let Some(v) = r6 {
            measured6.push((lg, *v as f64));
        }
        theory3.push((lg, t3));
        theory6.push((lg, t6));
    }
    std::fs::write(dir.join("aggregate.csv"), csv).map_err(io)?;
    lines(
        &dir.join("aggregate_rounds.png"),
        "push-sum: rounds until every node is within ε",
        "log2 N",
        "rounds",
        &[
            Series {
                label: "measured, ε = 1e-3".into(),
                points: measured3,
                markers: true,
            },
            Series {
                label: format!("{c:.2}·(log2 N + log2 1e3)"),
                points: theory3,
                markers: false,
            },
            Series {
                label: "measured, ε = 1e-6".into(),
                points: measured6,
                markers: true,
            },
            Series {
                label: format!("{c:.2}·(log2 N + log2 1e6)"),
                points: theory6,
                markers: false,
            },
        ],
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
