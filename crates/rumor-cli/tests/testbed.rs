//! The multi-host testbed in the suite: 8 hosts (network namespaces joined
//! by the userspace link emulator), 2 minutes of nemesis with a fixed seed,
//! and the checker must pass; then two planted faults the checker must
//! report. Needs root, `ip` and /dev/net/tun; skipped, loudly, elsewhere.

use rumor_testbed::agents::AgentOptions;
use rumor_testbed::check::Verdict;
use rumor_testbed::link::Link;
use rumor_testbed::run::{run, Plant, RunOptions};
use std::path::PathBuf;
use std::sync::Mutex;

/// One testbed at a time in this process: two at once would share two cores
/// between 16 agents and the emulators, and time out probes that should not.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = std::process::Command::new("ip").arg("-V").output().is_ok();
    let tun = std::path::Path::new("/dev/net/tun").exists();
    if !(root && ip && tun) {
        eprintln!("SKIPPED testbed: needs root ({root}), `ip` ({ip}) and /dev/net/tun ({tun})");
    }
    root && ip && tun
}

fn options(tag: &str, hosts: usize, seed: u64, secs: f64, nemesis: bool) -> RunOptions {
    let dir = std::env::temp_dir().join(format!("rumor-testbed-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    RunOptions {
        hosts,
        seed,
        secs,
        settle_secs: 90.0,
        profile: "lan".into(),
        subnet: "10.201.0.0/24".parse().expect("a valid subnet"),
        base: Link::default(),
        nemesis,
        ops_per_sec: 4.0,
        plant: None,
        agent: AgentOptions {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_rumor")),
            profile: "lan".into(),
            dir,
            extra: vec![],
        },
    }
}

fn go(o: &RunOptions) -> Verdict {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let v = match run(o) {
        Ok(v) => v,
        Err(e) => panic!("the testbed did not run: {e:#}"),
    };
    eprintln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    v
}

#[test]
fn two_minutes_of_nemesis_break_no_promise() {
    if !can_run() {
        return;
    }
    let o = options("nemesis", 8, 1, 120.0, true);
    let v = go(&o);
    assert!(v.faults >= 5, "only {} faults in 2 minutes", v.faults);
    assert!(v.writes > 100 && v.events > 30, "a thin workload: {v:?}");
    assert!(
        v.violations.is_empty(),
        "the checker found violations (replay: rumor-testbed run --hosts 8 --seed 1 --secs 120; logs in {}):\n{}",
        o.agent.dir.display(),
        v.violations.join("\n")
    );
    let _ = std::fs::remove_dir_all(&o.agent.dir);
}

#[test]
fn the_checker_reports_a_write_acknowledged_but_lost() {
    if !can_run() {
        return;
    }
    let mut o = options("lost", 4, 2, 8.0, false);
    o.plant = Some(Plant::LostWrite);
    // Long enough for the other checks to hold (the average restarts from
    // fresh values every 30 s epoch), so that only the planted one fails.
    o.settle_secs = 60.0;
    let v = go(&o);
    assert!(
        v.violations.iter().any(|x| x.contains("wl/planted")),
        "the planted lost write went unreported: {:?}",
        v.violations
    );
    assert!(
        v.violations.iter().all(|x| x.contains("wl/planted")),
        "{:?}",
        v.violations
    );
}

#[test]
fn the_checker_reports_an_agent_that_died_unseen() {
    if !can_run() {
        return;
    }
    let mut o = options("silent", 4, 3, 8.0, false);
    o.plant = Some(Plant::SilentKill);
    o.settle_secs = 10.0;
    let v = go(&o);
    assert!(
        v.violations.iter().any(|x| x.contains("does not answer")),
        "the silent kill went unreported: {:?}",
        v.violations
    );
    assert!(
        v.violations.iter().any(|x| x.contains("but it is up")),
        "no agent saw the killed one go: {:?}",
        v.violations
    );
}
