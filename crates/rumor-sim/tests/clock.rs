//! Per-node clock offsets and jumps under a key-space writes workload:
//! invariant 7 (no acknowledged write lost, every live replica equal) holds
//! with skew up to the refusal window, and fails when the run ends before
//! the records refused for skew can have arrived.

mod common;

use common::{assert_clean, run};
use rumor_sim::clock::ClockSpec;
use rumor_sim::scenario::Scenario;
use rumor_sim::workload::{WorkloadReport, WritesReport};

fn writes_report(r: &rumor_sim::report::RunResult) -> WritesReport {
    match &r.summary.workload {
        Some(WorkloadReport::Writes(w)) => w.clone(),
        other => panic!("no writes report: {other:?}"),
    }
}

/// A handful of seeds of the `skew` scenario (the 100-seed run is a
/// benchmark command in docs/simulator.md).
#[test]
fn skew_scenario_keeps_every_acknowledged_write() {
    let mut refused = 0;
    for seed in 1..=4u64 {
        let s = Scenario::builtin("skew", 16, seed).unwrap();
        assert!(s.clock.is_some());
        let r = run(&s, seed);
        assert_clean(&r);
        let w = writes_report(&r);
        assert!(w.writes >= 200, "seed {seed}: {w:?}");
        assert!(w.replicas_equal && w.lost_writes == 0, "seed {seed}: {w:?}");
        refused += w.refused_future;
    }
    assert!(
        refused > 0,
        "offsets up to the window must make some stamps too far ahead"
    );
}

#[test]
fn ending_before_refused_records_can_arrive_breaks_invariant_7() {
    let seed = 3;
    let mut s = Scenario::builtin("skew", 16, seed).unwrap();
    let stop = s.join_window + 2.0 + 15.0;
    s.duration = stop + 5.0;
    let r = run(&s, seed);
    assert!(
        r.violations.iter().any(|v| v.invariant == "writes"),
        "{}",
        r.summary.text()
    );
}

#[test]
fn no_skew_no_refusal_and_clocks_from_toml() {
    let text = r#"
nodes = 8
[workload]
kind = "writes"
rate = 10
store = "kv"
[clock]
max_offset = 0
jumps = 0
"#;
    let s = Scenario::from_toml(text, None, None).unwrap();
    assert_eq!(s.clock, Some(ClockSpec::new(0.0, 0)));
    let r = run(&s, 1);
    assert_clean(&r);
    assert_eq!(writes_report(&r).refused_future, 0);
    assert!(Scenario::from_toml("[clock]\nmax_offset = -1", None, None).is_err());
}
