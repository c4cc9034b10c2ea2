//! The writes and aggregate workloads: dissemination, convergence of
//! replicas, no lost writes, push-sum convergence and mass conservation.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rumor_sim::engine::Simulation;
use rumor_sim::faults::Fault;
use rumor_sim::scenario::Scenario;
use rumor_sim::workload::{
    AggregateReport, AggregateSpec, Store, Workload, WorkloadReport, WritesReport, WritesSpec,
};

fn writes(store: Store, rate: f64, start: f64, stop: f64) -> Workload {
    Workload::Writes(WritesSpec {
        rate,
        store,
        keys: 16,
        start: Some(start),
        stop: Some(stop),
        sync_mode: None,
        rumors: None,
        sync_interval: None,
        prime: false,
        state_keys: 0,
    })
}

fn run_writes(s: &Scenario, seed: u64) -> WritesReport {
    let r = Simulation::new(s, seed).unwrap().run();
    match r.summary.workload {
        Some(WorkloadReport::Writes(w)) => w,
        other => panic!("no writes report: {other:?}"),
    }
}

fn run_agg(s: &Scenario, seed: u64) -> AggregateReport {
    let r = Simulation::new(s, seed).unwrap().run();
    match r.summary.workload {
        Some(WorkloadReport::Aggregate(a)) => a,
        other => panic!("no aggregate report: {other:?}"),
    }
}

#[test]
fn aggregate_lossless_converges_within_bound_and_conserves_mass() {
    for (n, seed) in [(64usize, 1u64), (200, 2)] {
        let spec = AggregateSpec {
            epoch: Some(1000.0),
            ..AggregateSpec::default()
        };
        let s = Scenario::builder("agg", n)
            .workload(Workload::Aggregate(spec))
            .duration(20.0)
            .build()
            .unwrap();
        let a = run_agg(&s, seed);
        let lg = (n as f64).log2();
        // Push-sum: O(log N + log 1/eps) rounds; generous constant 3 (the
        // first epoch also includes tracking spreading to every node).
        let bound = |eps: f64| 3.0 * (lg + (1.0 / eps).log2());
        let e = &a.epochs[0];
        let r3 = e.rounds_1e3.expect("reached 1e-3") as f64;
        let r6 = e.rounds_1e6.expect("reached 1e-6") as f64;
        assert!(
            r3 <= bound(1e-3),
            "n={n}: {r3} rounds to 1e-3 > {}",
            bound(1e-3)
        );
        assert!(
            r6 <= bound(1e-6),
            "n={n}: {r6} rounds to 1e-6 > {}",
            bound(1e-6)
        );
        assert!(a.final_error < 1e-9, "n={n}: final error {}", a.final_error);
        assert!(a.final_estimate_error < 1e-9, "{}", a.final_estimate_error);
        assert!((a.truth - (n as f64 + 1.0) / 2.0).abs() < 1e-12);
        // Held + in flight = sum of values, to rounding, at every round.
        let m = a.mass_error.expect("mass checked");
        assert!(m < 1e-12, "n={n}: mass error {m}");
        assert!(a.quiescent_samples > 0);
        assert!(a.quiescent_mass_error.unwrap() < 1e-12);
    }
}

#[test]
fn aggregate_survives_loss_and_a_crash_after_the_next_epoch() {
    let n = 48;
    let spec = AggregateSpec {
        epoch: Some(20.0),
        values: rumor_sim::workload::Values::Random,
        ..AggregateSpec::default()
    };
    for seed in [3u64, 4] {
        // Epochs begin at 20 s, 40 s, ...; tracking starts at ~2 s; node 17
        // crashes mid-epoch at 6 s; the run ends late in the epoch from 20 s
        // (the estimate falls back to the previous epoch's until the
        // convergence indicator settles, so the epoch must be long enough).
        let s = Scenario::builder("agg-lossy", n)
            .workload(Workload::Aggregate(spec.clone()))
            .loss(0.05)
            .fault(Fault::Crash { at: 6.0, node: 17 })
            .duration(39.5)
            .build()
            .unwrap();
        let a = run_agg(&s, seed);
        assert_eq!(a.live, n - 1);
        assert!(a.epochs.iter().any(|e| e.epoch >= 1), "{:?}", a.epochs);
        assert!(
            a.final_error < 1e-3,
            "seed {seed}: s/w error {}",
            a.final_error
        );
        assert!(
            a.final_estimate_error < 1e-3,
            "seed {seed}: estimate error {}",
            a.final_estimate_error
        );
    }
}

#[test]
fn every_write_reaches_every_live_node() {
    for store in [Store::State, Store::Kv] {
        let s = Scenario::builder("writes", 32)
            .workload(writes(store, 20.0, 2.0, 7.0))
            .duration(20.0)
            .build()
            .unwrap();
        let w = run_writes(&s, 5);
        assert_eq!(w.writes, 100);
        assert_eq!(w.complete, w.writes, "{store:?}: {w:?}");
        assert!(w.replicas_equal && w.lost_writes == 0, "{store:?}: {w:?}");
        assert!(w.converged_after_s.is_some());
        assert!(w.mean.t100_s.unwrap() < 5.0, "{w:?}");
        let t = w.t100;
        assert_eq!(t.count, w.complete);
        assert!(t.median_s <= t.p99_s && t.p99_s <= t.max_s, "{t:?}");
        assert_eq!(t.max_s, w.max.t100_s);
    }
}

#[test]
fn a_late_joiner_is_timed_until_it_holds_the_preloaded_state() {
    let n = 24;
    let mut w = writes(Store::State, 1.0, 3.0, 4.0);
    if let Workload::Writes(spec) = &mut w {
        spec.state_keys = 10;
    }
    let s = Scenario::builder("preload", n + 1)
        .workload(w)
        .fault(Fault::Join { at: 8.0, node: n })
        .duration(40.0)
        .build()
        .unwrap();
    let r = run_writes(&s, 3);
    assert_eq!(r.catch_up.len(), 1, "{r:?}");
    let c = &r.catch_up[0];
    assert_eq!((c.node, c.entries), (n, n * 10));
    let learned = c
        .learned_after_s
        .expect("the joiner learned the preloaded state");
    assert!(learned > 0.0 && learned < 30.0, "{c:?}");
    let bytes = r.state_digest_bytes.expect("digests were sent");
    assert!(
        bytes > 0.0 && bytes <= r.state_digest_budget as f64,
        "{r:?}"
    );
    assert!(r.state_digests_per_node_per_s > 0.0);
}

#[test]
fn kv_replicas_converge_after_partitions_crashes_and_loss() {
    let n = 24;
    for seed in [1u64, 2, 3] {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut b = Scenario::builder("writes-chaos", n)
            .workload(writes(Store::Kv, 20.0, 2.0, 14.0))
            .loss(0.2);
        let mut order: Vec<usize> = (1..n).collect();
        order.shuffle(&mut rng);
        for k in 0..2 {
            let group: Vec<usize> = order[k * 5..k * 5 + 5].to_vec();
            b = b.fault(Fault::Partition {
                at: rng.random_range(3.0..8.0),
                nodes: group,
                duration: rng.random_range(2.0..5.0),
            });
        }
        for &node in &order[12..14] {
            b = b.fault(Fault::Crash {
                at: rng.random_range(3.0..12.0),
                node,
            });
        }
        let s = b.duration(45.0).build().unwrap();
        let w = run_writes(&s, seed);
        assert!(w.writes >= 200);
        assert!(w.replicas_equal, "seed {seed}: {w:?}");
        assert_eq!(w.lost_writes, 0, "seed {seed}");
        assert!(w.converged_after_s.is_some(), "seed {seed}");
    }
}

#[test]
fn workload_toml_and_builtins() {
    let text = r#"
nodes = 16
[workload]
kind = "writes"
rate = 5
store = "kv"
sync_mode = "pull"
rumors = false
"#;
    let s = Scenario::from_toml(text, None, None).unwrap();
    assert!(!s.config.kv_rumors);
    assert_eq!(
        s.config.kv_sync_mode,
        rumor_sim::core::message::SyncMode::Pull
    );
    assert!(s.duration > 12.0);
    assert!(Scenario::from_toml("[workload]\nkind = \"writes\"\nrate = 0", None, None).is_err());
    assert!(
        Scenario::from_toml("[workload]\nkind = \"aggregate\"\ntracker = 99", None, None).is_err()
    );
    for name in ["writes", "aggregate"] {
        let s = Scenario::builtin(name, 16, 1).unwrap();
        assert!(s.workload.is_some());
    }
}
