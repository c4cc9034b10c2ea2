//! A hostile sender and forged ICMP evidence in the simulator: the
//! invariants hold for the honest nodes, the lies are refused (and counted),
//! no invented member is ever admitted, and a forged port-unreachable kills
//! nobody.

mod common;

use common::{assert_clean, run};
use rumor_sim::faults::Fault;
use rumor_sim::hostile::HostileReport;
use rumor_sim::report::RunResult;
use rumor_sim::scenario::Scenario;

fn report(r: &RunResult) -> &HostileReport {
    r.summary.hostile.as_ref().expect("a hostile report")
}

/// `--scenario hostile` on a few seeds: 20 s of invented members, forged
/// maxima, false accusations, replays and duplicates while a member crashes
/// and another restarts. Every invariant holds (completeness, accuracy,
/// convergence, incarnations, no invented member admitted, Lamport clocks
/// clamped) and each kind of lie was refused by the bound meant for it.
#[test]
fn hostile_sender_is_refused_and_every_invariant_holds() {
    for seed in 1..=4 {
        let s = Scenario::builtin("hostile", 32, seed).expect("builtin");
        let r = run(&s, seed);
        assert_clean(&r);
        assert!(r.summary.convergence_checked, "seed {seed}");
        assert_eq!(r.summary.completeness_checks, 1, "seed {seed}");
        let h = report(&r);
        let sent = h.sent;
        assert!(sent.invented_claims > 5000, "seed {seed}: {h:?}");
        assert!(sent.forged_maxima > 100 && sent.accusations > 0, "{h:?}");
        assert!(sent.replays > 0 && sent.duplicates > 0, "{h:?}");
        assert!(sent.last_words > 0, "a crashed member's claim was replayed");
        assert_eq!(h.invented_admitted, 0, "{h:?}");
        // Relayed names wait for an ack that never comes; one sender's
        // share of the pending table fills up.
        assert!(h.members_pending > 1000, "{h:?}");
        assert!(h.refused("max_pending_members") > 0, "{h:?}");
        // Claims of an invented name at a real node's address: that node
        // does not answer to the name.
        assert!(h.misdirected_pings > 0, "{h:?}");
        // u64::MAX incarnations and state versions; epoch u64::MAX and
        // 1e308 shares; state of an owner that is no member.
        assert!(h.refused("implausible_counter") > 0, "{h:?}");
        assert!(h.refused("aggregate_value") > 0, "{h:?}");
        assert!(h.refused("state_quota") > 0, "{h:?}");
        // The plausible false accusations were refuted: every one of them
        // was wrong, and accuracy held at the end.
        assert!(r.summary.false_positives > 0, "the accusations had effect");
    }
}

/// The random sweep includes the hostile sender (in about half the seeds);
/// this checks that it does, so the sweep in tests/invariants.rs covers it.
#[test]
fn random_sweep_includes_a_hostile_sender() {
    let with: usize = (1..=16)
        .filter(|&seed| {
            let s = Scenario::builtin("random", 32, seed).expect("builtin");
            s.faults.iter().any(|f| matches!(f, Fault::Hostile { .. }))
        })
        .count();
    assert!((3..=13).contains(&with), "{with} of 16");
}

/// Spoofing the source of each invented claim (an unencrypted cluster
/// cannot tell it from the member speaking for itself) gets the names
/// admitted; the `admission` check must say so.
#[test]
fn planted_spoofed_flood_fails_the_admission_check() {
    let s = Scenario::builder("spoofed-flood", 16)
        .fault(Fault::Hostile {
            at: 20.0,
            duration: 2.0,
            spoof: true,
        })
        .duration(60.0)
        .build()
        .expect("valid");
    let r = run(&s, 1);
    assert!(
        r.violations.iter().any(|v| v.invariant == "admission"),
        "{}",
        r.summary.text()
    );
    assert!(report(&r).invented_admitted > 0);
}

/// `--scenario forged-icmp`: one forged port-unreachable at one prober, then
/// one at every prober of another live member, each timed to beat the real
/// ack. Nobody is suspected or declared dead; a real process crash later is
/// still detected at once (`--refuse`).
#[test]
fn one_forged_unreachable_kills_nobody() {
    for seed in 1..=3 {
        let s = Scenario::builtin("forged-icmp", 32, seed).expect("builtin");
        let r = run(&s, seed);
        assert_clean(&r);
        let h = report(&r);
        // 1 at one prober + 1 at each of the other 30 live nodes' probes.
        assert!(h.forged_unreachable >= 25, "seed {seed}: {h:?}");
        assert!(h.unreachable_reports >= h.forged_unreachable, "{h:?}");
        assert_eq!(r.summary.false_positives, 0, "seed {seed}");
        assert_eq!(r.summary.live_suspicions, 0, "seed {seed}");
        let all_dead = r
            .summary
            .detection
            .all_dead_s
            .expect("the crash was detected");
        assert!(all_dead < 40.0, "seed {seed}: {all_dead}");
    }
}

/// The warm bootstrap hands each node the member table as the answer to a
/// join request it made, so the core admits the members at once instead of
/// holding every name for a ping (which made a 1,000-node warm start ~12x
/// slower and perturbed every measurement that follows it).
#[test]
fn warm_bootstrap_table_is_a_trusted_answer() {
    let s = Scenario::builtin("forged-icmp", 32, 1).expect("builtin");
    let r = run(&s, 1);
    assert_clean(&r);
    let h = report(&r);
    assert_eq!(h.members_pending, 0, "{h:?}");
    assert_eq!(h.members_verified, 0, "{h:?}");
}
