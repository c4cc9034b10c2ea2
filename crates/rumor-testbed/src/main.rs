//! `rumor-testbed`: see the crate's README.

use clap::{Parser, Subcommand};
use rumor_testbed::agents::AgentOptions;
use rumor_testbed::hosts::{self, Subnet};
use rumor_testbed::link::{Distribution, Link};
use rumor_testbed::run::{self, Plant, RunOptions, INTERRUPTED};
use rumor_testbed::selftest;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rumor-testbed",
    about = "Multi-host testbed for rumor: network namespaces, a link emulator, a nemesis and a checker (needs root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run agents on H hosts under the nemesis and a workload, then check them.
    Run(RunArgs),
    /// rumor and Serf side by side on the same hosts under the same membership faults.
    Compare(CompareArgs),
    /// Measure the emulator: added latency, delay accuracy, packet-rate ceiling.
    Selftest {
        /// Round trips per measurement.
        #[arg(long, default_value_t = 2000)]
        pings: usize,
        /// One-way delay for the accuracy check, in ms.
        #[arg(long, default_value_t = 20.0)]
        delay_ms: f64,
    },
    /// Remove the namespaces a killed run left behind.
    Cleanup,
}

#[derive(clap::Args)]
struct RunArgs {
    /// How many hosts (network namespaces), one agent each.
    #[arg(long, default_value_t = 8)]
    hosts: usize,
    /// Seed of the fault schedule, the workload and the emulator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of faults and workload.
    #[arg(long, default_value_t = 120.0)]
    secs: f64,
    /// Longest wait, in seconds, for the cluster to settle once faults heal.
    #[arg(long, default_value_t = 90.0)]
    settle: f64,
    /// The agents' timing profile: lan, wan or local.
    #[arg(long, default_value = "lan")]
    profile: String,
    /// The hosts' subnet (exists only inside the namespaces).
    #[arg(long, default_value = "10.201.0.0/24")]
    subnet: Subnet,
    /// One-way delay of every link, ms.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Jitter of every link, ms.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// How jitter is drawn.
    #[arg(long, value_enum, default_value = "normal")]
    distribution: Distribution,
    /// Loss of every link (0..1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Duplication of every link (0..1).
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Reordering of every link (0..1): the share of packets that skip the delay.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Rate of every link, bytes per second (unlimited when absent).
    #[arg(long)]
    rate: Option<u64>,
    /// No nemesis: only the workload under the link conditions.
    #[arg(long)]
    no_nemesis: bool,
    /// Workload operations per second.
    #[arg(long, default_value_t = 4.0)]
    ops: f64,
    /// Plant a fault the checker must report.
    #[arg(long, value_enum)]
    plant: Option<Plant>,
    /// The rumor binary (default: `rumor` next to this program).
    #[arg(long)]
    rumor_bin: Option<PathBuf>,
    /// Where data dirs and agent logs go (default: a new directory in /tmp, kept).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the checker's verdict as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// How many hosts.
    #[arg(long, default_value_t = 16)]
    hosts: usize,
    /// Which systems, comma separated: rumor, serf.
    #[arg(long, default_value = "rumor,serf", value_delimiter = ',')]
    systems: Vec<String>,
    /// Both systems' timing profile: lan or wan.
    #[arg(long, default_value = "lan")]
    profile: String,
    /// The hosts' subnet.
    #[arg(long, default_value = "10.201.0.0/24")]
    subnet: Subnet,
    /// One-way delay of every link, ms.
    #[arg(long, default_value_t = 0.5)]
    delay_ms: f64,
    /// Jitter of every link, ms.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Loss of every link (0..1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Silent host crashes.
    #[arg(long, default_value_t = 5)]
    crashes: usize,
    /// User events.
    #[arg(long, default_value_t = 5)]
    events: usize,
    /// Seconds per link condition.
    #[arg(long, default_value_t = 120.0)]
    window: f64,
    /// Link conditions, each for --window seconds: loss:P or jitter:MS.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "loss:0.05,loss:0.2,jitter:20"
    )]
    conditions: Vec<rumor_testbed::compare::Condition>,
    /// Pauses (SIGSTOP), seconds.
    #[arg(long, value_delimiter = ',', default_value = "2,5,10")]
    pauses: Vec<f64>,
    /// Longest wait for a detection or a convergence, seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Emulator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The rumor binary (default: `rumor` next to this program).
    #[arg(long)]
    rumor_bin: Option<PathBuf>,
    /// The serf binary.
    #[arg(long, default_value = "serf")]
    serf_bin: String,
    /// Where logs go.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the reports as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn which(bin: &str) -> Option<PathBuf> {
    if bin.contains('/') {
        return Some(PathBuf::from(bin)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

fn compare_cmd(a: CompareArgs) -> anyhow::Result<bool> {
    use rumor_testbed::compare::{compare, table, CompareOptions};
    if !["lan", "wan"].contains(&a.profile.as_str()) {
        anyhow::bail!(
            "--profile {}: use lan or wan (the profiles both systems have)",
            a.profile
        );
    }
    if a.hosts < 3 {
        anyhow::bail!("--hosts {}: compare needs at least 3", a.hosts);
    }
    let mut rumor = None;
    let mut serf = None;
    for s in &a.systems {
        match s.as_str() {
            "rumor" => {
                let bin = a
                    .rumor_bin
                    .clone()
                    .unwrap_or(std::env::current_exe()?.with_file_name("rumor"));
                if !bin.is_file() {
                    anyhow::bail!(
                        "no rumor binary at {}; build it or pass --rumor-bin",
                        bin.display()
                    );
                }
                rumor = Some(bin.canonicalize()?);
            }
            "serf" => {
                serf = Some(which(&a.serf_bin).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no serf binary ({}); install it (apt-get install serf) or pass --serf-bin",
                        a.serf_bin
                    )
                })?);
            }
            other => anyhow::bail!("--systems: unknown {other:?} (rumor, serf)"),
        }
    }
    let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
    let o = CompareOptions {
        hosts: a.hosts,
        subnet: a.subnet,
        seed: a.seed,
        profile: a.profile.clone(),
        base: Link {
            delay: ms(a.delay_ms),
            jitter: ms(a.jitter_ms),
            loss: fraction("loss", a.loss).map_err(anyhow::Error::msg)?,
            ..Link::default()
        },
        rumor,
        serf,
        crashes: a.crashes,
        events: a.events,
        window: a.window.max(1.0),
        conditions: a.conditions.clone(),
        pauses: a.pauses.clone(),
        timeout: a.timeout.max(5.0),
        dir: a.dir.clone().unwrap_or_else(|| run::default_dir(a.seed)),
    };
    let reports = compare(&o)?;
    println!(
        "{} hosts, profile {}, links {} ms ± {} ms, loss {}\n",
        a.hosts, a.profile, a.delay_ms, a.jitter_ms, a.loss
    );
    println!("{}", table(&reports));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(true)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn fraction(name: &str, v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("--{name} {v}: must be between 0 and 1"))
    }
}

fn run_cmd(a: RunArgs) -> anyhow::Result<bool> {
    if !["lan", "wan", "local"].contains(&a.profile.as_str()) {
        anyhow::bail!("--profile {}: use lan, wan or local", a.profile);
    }
    let bin = match a.rumor_bin.clone() {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("rumor"),
    };
    if !bin.is_file() {
        anyhow::bail!(
            "no rumor binary at {}; build it (cargo build -p rumor-cli) or pass --rumor-bin",
            bin.display()
        );
    }
    let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
    let base = Link {
        delay: ms(a.delay_ms),
        jitter: ms(a.jitter_ms),
        distribution: a.distribution,
        loss: fraction("loss", a.loss).map_err(anyhow::Error::msg)?,
        duplicate: fraction("duplicate", a.duplicate).map_err(anyhow::Error::msg)?,
        reorder: fraction("reorder", a.reorder).map_err(anyhow::Error::msg)?,
        rate: a.rate,
        cut: false,
    };
    let dir = a.dir.clone().unwrap_or_else(|| run::default_dir(a.seed));
    let opts = RunOptions {
        hosts: a.hosts,
        seed: a.seed,
        secs: a.secs.max(0.0),
        settle_secs: a.settle.max(1.0),
        profile: a.profile.clone(),
        subnet: a.subnet,
        base,
        nemesis: !a.no_nemesis,
        ops_per_sec: a.ops,
        plant: a.plant,
        agent: AgentOptions {
            bin: bin.canonicalize()?,
            profile: a.profile.clone(),
            dir: dir.clone(),
            extra: vec![],
        },
    };
    let verdict = run::run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    }
    eprintln!(
        "testbed: {} faults, {} writes ({} excused), {} deletes, {} events, {} unacknowledged; settled in {:.1} s; {} suspicions of live members; {} deserved failures",
        verdict.faults, verdict.writes, verdict.writes_excused, verdict.deletes, verdict.events,
        verdict.unacknowledged, verdict.settled_secs, verdict.suspicions_of_live, verdict.deserved_failures.len()
    );
    for v in &verdict.violations {
        eprintln!("VIOLATION {v}");
    }
    if verdict.violations.is_empty() {
        eprintln!("testbed: checker passed (logs in {})", dir.display());
        Ok(true)
    } else {
        let mut replay = format!(
            "rumor-testbed run --hosts {} --seed {} --secs {} --profile {}",
            a.hosts, a.seed, a.secs, a.profile
        );
        for (flag, v) in [
            ("delay-ms", a.delay_ms),
            ("jitter-ms", a.jitter_ms),
            ("loss", a.loss),
        ] {
            if v != 0.0 {
                replay.push_str(&format!(" --{flag} {v}"));
            }
        }
        if a.no_nemesis {
            replay.push_str(" --no-nemesis");
        }
        eprintln!(
            "testbed: {} violations, seed {}; replay: {replay} (logs in {})",
            verdict.violations.len(),
            a.seed,
            dir.display()
        );
        Ok(false)
    }
}

fn main() -> ExitCode {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(a) => run_cmd(a),
        Cmd::Compare(a) => compare_cmd(a),
        Cmd::Selftest { pings, delay_ms } => selftest::run(
            pings.max(10),
            Duration::from_secs_f64(delay_ms.max(0.0) / 1e3),
        )
        .map(|r| {
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            true
        }),
        Cmd::Cleanup => hosts::remove_stale().and_then(|n| {
            println!("removed {n} namespaces");
            let running = hosts::running()?;
            if !running.is_empty() {
                println!(
                    "left {} namespaces of testbeds still running: {}",
                    running.len(),
                    running.join(", ")
                );
            }
            Ok(true)
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rumor-testbed: {e:#}");
            ExitCode::from(2)
        }
    }
}
