//! The command line, as a library module so that the `rumor` CLI can offer
//! it as `rumor sim` by calling [`run`] (or [`main_with_args`]).
//!
//! Exit codes: 0 all runs passed, 1 an invariant was violated (the replay
//! command is printed), 2 bad input (one line on stderr).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant as WallInstant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rumor_core::Profile;

use crate::engine::Simulation;
use crate::epidemic::{self, Mode};
use crate::report::{write_csv, RunResult};
use crate::scenario::{profile_name, Scenario, BUILTINS};
use crate::workload::{Mode as SyncDir, Store, Workload};
use crate::{experiments, plots, pushsum, to_secs};

/// `rumor-sim`: simulate a rumor cluster, measure it and check its invariants.
#[derive(Clone, Debug, Parser)]
#[command(name = "rumor-sim", version, about, long_about = None)]
pub struct Args {
    /// Cluster size (default: the TOML file's, else 32).
    #[arg(long, short = 'n')]
    pub nodes: Option<usize>,
    /// First seed.
    #[arg(long, short = 's', default_value_t = 1)]
    pub seed: u64,
    /// A built-in scenario (join, crash, churn, partition, pause, lossy,
    /// random, writes, aggregate, hostile, forged-icmp, skew) or a TOML file.
    #[arg(long, default_value = "crash")]
    pub scenario: String,
    /// Protocol profile: lan, wan or local.
    #[arg(long)]
    pub profile: Option<String>,
    /// Datagram loss probability in [0, 1).
    #[arg(long)]
    pub loss: Option<f64>,
    /// Membership of the simulated nodes (`Config::membership`): full
    /// (default) or partial (HyParView neighbours, Plumtree broadcasts).
    #[arg(long)]
    pub membership: Option<String>,
    /// The probe's stream ping fallback (`Config::probe_stream_fallback`):
    /// on or off (default: the profile's, on).
    #[arg(long)]
    pub stream_fallback: Option<String>,
    /// The probe's second direct ping at its timeout (`Config::probe_retry`):
    /// on or off (default: the profile's, on).
    #[arg(long)]
    pub probe_retry: Option<String>,
    /// The shortest suspicion timeout in probe intervals times log10 N
    /// (`Config::suspicion_mult`; default: the profile's).
    #[arg(long)]
    pub suspicion_mult: Option<u32>,
    /// The longest suspicion timeout as a multiple of the shortest
    /// (`Config::suspicion_max_mult`; default: the profile's).
    #[arg(long)]
    pub suspicion_max_mult: Option<u32>,
    /// Seconds a member whose host is up but whose process is silent may
    /// stay so before it is suspected (`Config::stall_grace`; 0 disables;
    /// default: the profile's).
    #[arg(long, value_name = "SECS")]
    pub stall_grace: Option<f64>,
    /// Crashed nodes' hosts answer with ICMP port unreachable (a process
    /// crash) instead of silence (a host crash, the default).
    #[arg(long)]
    pub refuse: bool,
    /// Typical one-way latency in milliseconds (keeps the profile's distribution shape).
    #[arg(long)]
    pub latency: Option<f64>,
    /// Simulated seconds (default: long enough to check every invariant).
    #[arg(long)]
    pub duration: Option<f64>,
    /// How the initial cluster forms: warm (no join floods) or seed (every
    /// node joins through node 0; realistic, costly at large N).
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Run this many seeds (seed, seed+1, ...) across all cores.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// Worker threads for --seeds (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print JSON (one summary object; an array for several seeds).
    #[arg(long)]
    pub json: bool,
    /// Write CSV time series and PNG plots into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run the membership-free epidemic model instead: push, pull or push-pull.
    #[arg(long)]
    pub epidemic: Option<String>,
    /// Epidemic fan-out (peers per node per round), 1..=4 typical.
    #[arg(long, default_value_t = 1)]
    pub fanout: usize,
    /// Run the membership-free push-sum model instead (rumor-core's
    /// aggregation exchange with random peers): --nodes, --loss, --crash.
    #[arg(long)]
    pub push_sum: bool,
    /// Push-sum model: fraction of the nodes that crash, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub crash: f64,
    /// Push-sum model: the round at which they crash (default: mid-epoch).
    #[arg(long)]
    pub crash_round: Option<usize>,
    /// Push-sum model: rounds until a crash is known to every node.
    #[arg(long, default_value_t = 25)]
    pub detect_rounds: usize,
    /// Push-sum model: rounds per epoch (default 400 for one epoch, 100 for several).
    #[arg(long)]
    pub epoch_rounds: Option<usize>,
    /// Push-sum model: epochs to run (default 1; 2 with --crash).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Turn off refutation of suspicions (plants a bug; the accuracy check must fail).
    #[arg(long)]
    pub no_refute: bool,
    /// Give each node's wall clock a seeded offset of up to ± this many
    /// seconds (the key space refuses stamps more than `max_drift`, 60 s,
    /// ahead); with a kv writes workload, invariant 7 (no acknowledged
    /// write lost) is checked at the end.
    #[arg(long)]
    pub clock_skew: Option<f64>,
    /// With --clock-skew (or a scenario's clocks): this many clock jumps,
    /// forward and backward, of up to the skew, at random nodes and times.
    #[arg(long)]
    pub clock_jumps: Option<usize>,
    /// Writes workload: writes per second, cluster-wide.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Writes workload: `state` (per-node state) or `kv` (replicated key space).
    #[arg(long)]
    pub store: Option<String>,
    /// Writes workload: anti-entropy direction, push, pull or push-pull.
    #[arg(long)]
    pub sync_mode: Option<String>,
    /// Writes workload: spread writes as rumors too, on or off.
    #[arg(long)]
    pub rumors: Option<String>,
    /// Run an experiment of docs/simulator.md instead: `sync` (one write's
    /// spread per anti-entropy mode, --nodes, --store) or `aggregate`
    /// (rounds to 1e-3 / 1e-6 vs N, --sizes) or `push-sum` (the same with the
    /// push-sum model, --sizes, --seeds, --loss, --crash) or `overlay`
    /// (partial membership: reliability and healing after 0-90 % crash at
    /// once, --sizes, --seeds) or `overlay-churn` (partial membership with
    /// 1 % of the nodes replaced per minute, --nodes, --duration); writes
    /// CSV, JSON and PNG into --out.
    #[arg(long)]
    pub experiment: Option<String>,
    /// Cluster sizes for `--experiment aggregate`, comma-separated.
    #[arg(long, default_value = "100,1000,10000")]
    pub sizes: String,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// A failure that should end the program with exit code 2.
#[derive(Debug)]
pub struct InputError(pub String);

/// Parse `argv` (program name first) and run; returns the exit code.
pub fn main_with_args<I, T>(argv: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Args::try_parse_from(argv) {
        Ok(args) => run(args),
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return 0;
            }
            let msg = e.to_string();
            let line = msg.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{line}");
            2
        }
    }
}

/// Run with parsed arguments; returns the exit code.
pub fn run(args: Args) -> i32 {
    let result = match (&args.experiment, &args.epidemic) {
        (Some(name), _) => run_experiment(&args, name),
        (None, Some(mode)) => run_epidemic(&args, mode),
        (None, None) if args.push_sum => run_push_sum(&args),
        (None, None) => run_scenarios(&args),
    };
    match result {
        Ok(code) => code,
        Err(InputError(msg)) => {
            eprintln!("error: {msg}");
            2
        }
    }
}

fn check_common(args: &Args) -> Result<Option<Profile>, InputError> {
    if args.nodes == Some(0) {
        return Err(InputError("--nodes must be at least 1".into()));
    }
    if args.seeds == 0 {
        return Err(InputError("--seeds must be at least 1".into()));
    }
    if let Some(l) = args.loss {
        if !(0.0..1.0).contains(&l) {
            return Err(InputError(format!("--loss {l} must be in [0, 1)")));
        }
    }
    if let Some(l) = args.latency {
        if !(l.is_finite() && l >= 0.0) {
            return Err(InputError(format!(
                "--latency {l} must be >= 0 milliseconds"
            )));
        }
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            return Err(InputError(format!("--duration {d} must be > 0 seconds")));
        }
    }
    args.profile
        .as_deref()
        .map(|p| p.parse::<Profile>().map_err(|e| InputError(e.to_string())))
        .transpose()
}

fn apply_workload_flags(args: &Args, s: &mut Scenario) -> Result<(), InputError> {
    let any = args.rate.is_some()
        || args.store.is_some()
        || args.sync_mode.is_some()
        || args.rumors.is_some();
    if !any {
        return Ok(());
    }
    let Some(Workload::Writes(mut w)) = s.workload.clone() else {
        return Err(InputError(
            "--rate, --store, --sync-mode and --rumors need a writes workload (--scenario writes)"
                .into(),
        ));
    };
    if let Some(r) = args.rate {
        w.rate = r;
    }
    if let Some(st) = &args.store {
        w.store = st.parse::<Store>().map_err(InputError)?;
    }
    if let Some(m) = &args.sync_mode {
        w.sync_mode = Some(m.parse::<SyncDir>().map_err(InputError)?);
    }
    if let Some(r) = &args.rumors {
        w.rumors = Some(match r.as_str() {
            "on" | "true" => true,
            "off" | "false" => false,
            other => return Err(InputError(format!("--rumors {other}: expected on or off"))),
        });
    }
    let w = Workload::Writes(w);
    w.apply(&mut s.config);
    s.workload = Some(w);
    s.validate().map_err(|e| InputError(e.0))
}

fn run_experiment(args: &Args, name: &str) -> Result<i32, InputError> {
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/sim-out"));
    let table = match name {
        "sync" => {
            let store = match &args.store {
                Some(s) => s.parse::<Store>().map_err(InputError)?,
                None => Store::State,
            };
            experiments::sync(args.nodes.unwrap_or(1000), store, args.seed, &dir)
        }
        "aggregate" => experiments::aggregate(&sizes(args)?, args.seed, &dir),
        "push-sum" => {
            let base = push_sum_options(args, 2)?;
            experiments::push_sum(&sizes(args)?, args.seeds, &base, &dir)
        }
        "overlay" => experiments::overlay(&sizes(args)?, args.seeds, args.seed, &dir),
        "overlay-churn" => {
            let n = args.nodes.unwrap_or(100_000);
            let duration = args.duration.unwrap_or(300.0);
            let opts = crate::overlay::Options {
                seed: args.seed,
                ..Default::default()
            };
            let r = crate::overlay_runs::churn_run(n, duration, 0.01, &opts);
            serde_json::to_string_pretty(&r)
                .map(|s| s + "\n")
                .map_err(|e| e.to_string())
        }
        other => {
            return Err(InputError(format!(
                "unknown experiment {other:?}: expected sync, aggregate, push-sum, overlay or overlay-churn"
            )))
        }
    };
    let table = table.map_err(InputError)?;
    print!("{table}");
    println!("wrote CSV and PNG into {}", dir.display());
    Ok(0)
}

fn sizes(args: &Args) -> Result<Vec<usize>, InputError> {
    let sizes = args
        .sizes
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InputError(format!("--sizes: {e}")))?;
    match sizes.iter().find(|&&n| n < 2) {
        Some(n) => Err(InputError(format!("--sizes: {n} is below 2 nodes"))),
        None => Ok(sizes),
    }
}

/// The push-sum model's options from the command line (for `nodes`).
fn push_sum_options(args: &Args, nodes: usize) -> Result<pushsum::Options, InputError> {
    check_common(args)?;
    if !(0.0..1.0).contains(&args.crash) {
        return Err(InputError(format!(
            "--crash {} must be in [0, 1)",
            args.crash
        )));
    }
    let crashes = args.crash > 0.0;
    let epochs = args.epochs.unwrap_or(if crashes { 2 } else { 1 });
    let epoch_rounds = args
        .epoch_rounds
        .unwrap_or(if epochs > 1 { 100 } else { 400 });
    if epochs == 0 || epoch_rounds == 0 {
        return Err(InputError(
            "--epochs and --epoch-rounds must be at least 1".into(),
        ));
    }
    Ok(pushsum::Options {
        loss: args.loss.unwrap_or(0.0),
        crash: args.crash,
        crash_round: args.crash_round.unwrap_or(epoch_rounds / 2),
        detect_rounds: args.detect_rounds,
        epoch_rounds,
        epochs,
        ..pushsum::Options::new(nodes, args.seed)
    })
}

fn run_push_sum(args: &Args) -> Result<i32, InputError> {
    let nodes = args.nodes.unwrap_or(1000);
    if nodes < 2 {
        return Err(InputError(
            "--nodes must be at least 2 for the push-sum model".into(),
        ));
    }
    let base = push_sum_options(args, nodes)?;
    let mut results = Vec::new();
    for k in 0..args.seeds as u64 {
        let start = WallInstant::now();
        let r = pushsum::run(&pushsum::Options {
            seed: args.seed.wrapping_add(k),
            ..base.clone()
        });
        results.push((r, start.elapsed().as_secs_f64()));
    }
    if args.json {
        print_json_with_wall(&results);
    } else {
        let s = |x: Option<usize>| x.map_or("-".to_string(), |v| v.to_string());
        for (r, wall) in &results {
            let o = &r.options;
            let epochs: Vec<String> = r
                .epochs
                .iter()
                .map(|e| {
                    format!(
                        "epoch {}: 1e-3 in {}, 1e-6 in {} rounds, final error {:.1e}",
                        e.epoch,
                        s(e.rounds_1e3),
                        s(e.rounds_1e6),
                        e.final_error
                    )
                })
                .collect();
            println!(
                "push-sum N={} seed {} loss {} crashed {}: {}; {:.1} bytes/node/round; mass error {}; {:.3}s wall",
                o.nodes,
                o.seed,
                o.loss,
                r.crashed,
                epochs.join("; "),
                r.bytes_per_node_per_round,
                r.mass_error.map_or("-".into(), |m| format!("{m:.1e}")),
                wall
            );
        }
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| InputError(format!("cannot create {}: {e}", dir.display())))?;
        let mut csv = String::from("seed,round,max_relative_error\n");
        for (r, _) in &results {
            for (i, e) in r.error.iter().enumerate() {
                csv.push_str(&format!("{},{},{e:e}\n", r.options.seed, i + 1));
            }
        }
        let path = dir.join("push-sum.csv");
        std::fs::write(&path, csv)
            .map_err(|e| InputError(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(0)
}

fn apply_clock_flags(args: &Args, s: &mut Scenario) -> Result<(), InputError> {
    if args.clock_skew.is_none() && args.clock_jumps.is_none() {
        return Ok(());
    }
    let mut c = match (&s.clock, args.clock_skew) {
        (_, Some(x)) => crate::clock::ClockSpec::new(x, 0),
        (Some(c), None) => c.clone(),
        (None, None) => {
            return Err(InputError(
                "--clock-jumps needs --clock-skew (or a scenario with clocks)".into(),
            ))
        }
    };
    if let Some(j) = args.clock_jumps {
        c.jumps = j;
    } else if let Some(old) = &s.clock {
        c.jumps = old.jumps;
    }
    c.validate().map_err(InputError)?;
    s.clock = Some(c);
    Ok(())
}

/// A flag's `on`/`off` (or `true`/`false`) value.
fn on_off(flag: &str, v: &str) -> Result<bool, InputError> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(InputError(format!("{flag} {other}: expected on or off"))),
    }
}

/// The scenario for one seed, with the command-line overrides applied.
pub fn build_scenario(args: &Args, seed: u64) -> Result<Scenario, InputError> {
    let profile = check_common(args)?;
    let name = args.scenario.as_str();
    let is_file = name.ends_with(".toml") || Path::new(name).is_file();
    let mut s = if is_file {
        let text = std::fs::read_to_string(name)
            .map_err(|e| InputError(format!("cannot read scenario {name}: {e}")))?;
        Scenario::from_toml(&text, args.nodes, profile)
            .map_err(|e| InputError(format!("{name}: {e}")))?
    } else if BUILTINS.contains(&name) {
        Scenario::builtin_with(
            name,
            args.nodes.unwrap_or(32),
            seed,
            profile.unwrap_or(Profile::Lan),
        )
        .map_err(|e| InputError(e.0))?
    } else {
        return Err(InputError(format!(
            "unknown scenario {name:?}: expected one of {} or a .toml file",
            BUILTINS.join(", ")
        )));
    };
    if let Some(l) = args.loss {
        s.network.loss = l;
    }
    if let Some(ms) = args.latency {
        s.network.latency = s.network.latency.scaled_to(ms);
    }
    if args.refuse {
        s.network.refuse = true;
    }
    if let Some(d) = args.duration {
        s.duration = d;
    }
    if args.no_refute {
        s.config.refute_suspicions = false;
    }
    if let Some(v) = &args.stream_fallback {
        s.config.probe_stream_fallback = on_off("--stream-fallback", v)?;
    }
    if let Some(v) = &args.membership {
        s.config.membership = v
            .parse()
            .map_err(|e: rumor_core::Error| InputError(format!("--membership: {e}")))?;
    }
    if let Some(v) = &args.probe_retry {
        s.config.probe_retry = on_off("--probe-retry", v)?;
    }
    if let Some(m) = args.suspicion_mult {
        s.config.suspicion_mult = m;
    }
    if let Some(m) = args.suspicion_max_mult {
        s.config.suspicion_max_mult = m;
    }
    if let Some(g) = args.stall_grace {
        s.config.stall_grace = std::time::Duration::try_from_secs_f64(g)
            .map_err(|_| InputError(format!("--stall-grace {g}: expected seconds, 0 or more")))?;
    }
    if let Some(b) = &args.bootstrap {
        s.bootstrap = b.parse().map_err(InputError)?;
    }
    apply_workload_flags(args, &mut s)?;
    apply_clock_flags(args, &mut s)?;
    let mut replay = format!(
        "--scenario {name} --nodes {} --profile {}",
        s.nodes,
        profile_name(s.profile)
    );
    for (flag, v) in [
        ("--loss", args.loss),
        ("--latency", args.latency),
        ("--duration", args.duration),
    ] {
        if let Some(v) = v {
            replay.push_str(&format!(" {flag} {v}"));
        }
    }
    if args.no_refute {
        replay.push_str(" --no-refute");
    }
    if let Some(v) = &args.stream_fallback {
        replay.push_str(&format!(" --stream-fallback {v}"));
    }
    if let Some(v) = &args.membership {
        replay.push_str(&format!(" --membership {v}"));
    }
    if let Some(v) = &args.probe_retry {
        replay.push_str(&format!(" --probe-retry {v}"));
    }
    for (flag, v) in [
        ("--suspicion-mult", args.suspicion_mult),
        ("--suspicion-max-mult", args.suspicion_max_mult),
    ] {
        if let Some(v) = v {
            replay.push_str(&format!(" {flag} {v}"));
        }
    }
    if let Some(g) = args.stall_grace {
        replay.push_str(&format!(" --stall-grace {g}"));
    }
    if args.refuse {
        replay.push_str(" --refuse");
    }
    if let Some(b) = &args.bootstrap {
        replay.push_str(&format!(" --bootstrap {b}"));
    }
    if let Some(x) = args.clock_skew {
        replay.push_str(&format!(" --clock-skew {x}"));
    }
    if let Some(j) = args.clock_jumps {
        replay.push_str(&format!(" --clock-jumps {j}"));
    }
    s.replay_args = Some(replay);
    s.validate().map_err(|e| InputError(e.0))?;
    Ok(s)
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn run_scenarios(args: &Args) -> Result<i32, InputError> {
    // Build every scenario first so that bad input fails before any work.
    let scenarios: Vec<(u64, Scenario)> = (0..args.seeds as u64)
        .map(|k| {
            let seed = args.seed.wrapping_add(k);
            build_scenario(args, seed).map(|s| (seed, s))
        })
        .collect::<Result<_, _>>()?;
    let results: Vec<RunResult> = if scenarios.len() == 1 {
        let (seed, s) = &scenarios[0];
        vec![run_one(s, *seed, args.quiet)]
    } else {
        run_many(&scenarios, args)
    };
    let mut failed = 0;
    for r in &results {
        if r.summary.invariant_violations > 0 {
            failed += 1;
        }
    }
    if args.json {
        let out = if results.len() == 1 {
            serde_json::to_string_pretty(&results[0].summary)
        } else {
            serde_json::to_string_pretty(&results.iter().map(|r| &r.summary).collect::<Vec<_>>())
        };
        println!("{}", out.unwrap_or_default());
    } else if results.len() == 1 {
        print!("{}", results[0].summary.text());
    } else {
        for r in &results {
            let s = &r.summary;
            let opt = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.3}"));
            println!(
                "seed {:>6}: t100 {:>7}s all-dead {:>7}s fp {:>3} {:>8.0} B/node/s  {} violation(s){}",
                s.seed,
                opt(s.dissemination.t100_s),
                opt(s.detection.all_dead_s),
                s.false_positives,
                s.bytes_per_node_per_s,
                s.invariant_violations,
                if s.invariant_violations > 0 {
                    format!("  replay: {}", s.replay)
                } else {
                    String::new()
                }
            );
        }
        println!(
            "{} of {} seed(s) violated an invariant",
            failed,
            results.len()
        );
    }
    if let Some(dir) = &args.out {
        for (r, (seed, s)) in results.iter().zip(&scenarios) {
            let d = if results.len() == 1 {
                dir.clone()
            } else {
                dir.join(format!("seed-{seed}"))
            };
            write_csv(r, &d)
                .map_err(|e| InputError(format!("cannot write {}: {e}", d.display())))?;
            match plots::write_plots(r, s, &d) {
                Ok(files) if !args.json => {
                    let note = if plots::text_available() {
                        ""
                    } else {
                        " (no font found: drawn without text)"
                    };
                    eprintln!("wrote CSV and {}{note}", files.join(", "));
                }
                Ok(_) => {}
                Err(e) => eprintln!("warning: {e}"),
            }
        }
    }
    for r in results
        .iter()
        .filter(|r| r.summary.invariant_violations > 0)
    {
        eprintln!("invariant violated; replay with: {}", r.summary.replay);
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// One run with a progress bar that appears when it takes over a second.
fn run_one(s: &Scenario, seed: u64, quiet: bool) -> RunResult {
    let sim = match Simulation::new(s, seed) {
        Ok(sim) => sim,
        Err(e) => unreachable_run(e.0),
    };
    let start = WallInstant::now();
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::hidden());
    bar.set_style(bar_style("{spinner} [{elapsed_precise}] {wide_bar} {msg}"));
    let mut shown = false;
    let result = sim.run_with_progress(|now, end| {
        if quiet {
            return;
        }
        if !shown && start.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        bar.set_position(now * 1000 / end.max(1));
        bar.set_message(format!(
            "{:.0}/{:.0} simulated s",
            to_secs(now),
            to_secs(end)
        ));
    });
    bar.finish_and_clear();
    result
}

fn unreachable_run(msg: String) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

fn run_many(scenarios: &[(u64, Scenario)], args: &Args) -> Vec<RunResult> {
    let workers = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, scenarios.len());
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<RunResult>>> = Mutex::new(vec![None; scenarios.len()]);
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(scenarios.len() as u64)
    };
    bar.set_style(bar_style(
        "[{elapsed_precise}] {wide_bar} {pos}/{len} seeds",
    ));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((seed, s)) = scenarios.get(k) else {
                    break;
                };
                let r = match Simulation::new(s, *seed) {
                    Ok(sim) => sim.run(),
                    Err(e) => unreachable_run(e.0),
                };
                if let Ok(mut v) = slots.lock() {
                    v[k] = Some(r);
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    slots
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Print model results as JSON (one object, or an array for several
/// seeds), each with its wall-clock seconds as `wall_s`.
fn print_json_with_wall<T: serde::Serialize>(results: &[(T, f64)]) {
    let v: Vec<serde_json::Value> = results
        .iter()
        .map(|(r, wall)| {
            let mut j = serde_json::to_value(r).unwrap_or_default();
            if let Some(o) = j.as_object_mut() {
                o.insert("wall_s".into(), serde_json::json!(wall));
            }
            j
        })
        .collect();
    let out = if v.len() == 1 {
        serde_json::to_string_pretty(&v[0])
    } else {
        serde_json::to_string_pretty(&v)
    };
    println!("{}", out.unwrap_or_default());
}

fn run_epidemic(args: &Args, mode: &str) -> Result<i32, InputError> {
    check_common(args)?;
    let mode: Mode = mode.parse().map_err(InputError)?;
    let nodes = args.nodes.unwrap_or(32);
    if nodes < 2 {
        return Err(InputError(
            "--nodes must be at least 2 for the epidemic model".into(),
        ));
    }
    if !(1..=64).contains(&args.fanout) {
        return Err(InputError(format!(
            "--fanout {} must be between 1 and 64",
            args.fanout
        )));
    }
    let mut results = Vec::new();
    for k in 0..args.seeds as u64 {
        let start = WallInstant::now();
        let r = epidemic::run(nodes, mode, args.fanout, args.seed.wrapping_add(k));
        let wall = start.elapsed().as_secs_f64();
        results.push((r, wall));
    }
    if args.json {
        print_json_with_wall(&results);
    } else {
        for (r, wall) in &results {
            println!(
                "epidemic {} fanout {} N={} seed {}: {} rounds ({}), theory {:.2}; {} messages; {:.3}s wall",
                r.mode,
                r.fanout,
                r.nodes,
                r.seed,
                r.rounds,
                if r.complete { "everyone reached" } else { "NOT everyone reached" },
                r.theory_rounds,
                r.messages,
                wall
            );
        }
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| InputError(format!("cannot create {}: {e}", dir.display())))?;
        let mut csv = String::from("seed,round,informed,fraction\n");
        for (r, _) in &results {
            for (i, c) in r.informed.iter().enumerate() {
                csv.push_str(&format!(
                    "{},{i},{c},{:.6}\n",
                    r.seed,
                    *c as f64 / r.nodes as f64
                ));
            }
        }
        let path = dir.join("epidemic.csv");
        std::fs::write(&path, csv)
            .map_err(|e| InputError(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(0)
}
