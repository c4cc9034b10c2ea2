//! Helpers shared by the simulator's integration tests.
#![allow(dead_code)]

use rumor_sim::engine::Simulation;
use rumor_sim::report::RunResult;
use rumor_sim::scenario::Scenario;

/// Run scenario `s` with `seed`.
pub fn run(s: &Scenario, seed: u64) -> RunResult {
    Simulation::new(s, seed).expect("valid scenario").run()
}

/// Fail with the run's summary and replay command if any invariant broke.
pub fn assert_clean(r: &RunResult) {
    assert_eq!(
        r.summary.invariant_violations,
        0,
        "{}\nreplay: {}",
        r.summary.text(),
        r.summary.replay
    );
}
