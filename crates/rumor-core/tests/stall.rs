//! Stalled members ([`Config::stall_grace`]): a member whose host accepts
//! the probes' stream pings but whose process answers nothing (paused,
//! hung) is given the grace before anyone suspects it; a host that accepts
//! nothing (a silent crash) is judged exactly as without the grace.

mod common;

use common::{name, secs, Net};
use rumor_core::{Config, Event, MemberEventKind, SuspicionCause};

const VICTIM: usize = 3;

fn cluster(grace_secs: f64) -> Net {
    let mut config = Config::lan();
    config.stall_grace = secs(grace_secs);
    Net::converged(8, config)
}

/// Node `VICTIM` paused for `pause` seconds, then watched for 30 s more.
fn paused_for(grace_secs: f64, pause: f64) -> Net {
    let mut net = cluster(grace_secs);
    net.run_for(secs(2.0));
    net.pause(VICTIM);
    net.run_for(secs(pause));
    net.resume(VICTIM);
    net.run_for(secs(30.0));
    net
}

fn probe_stalls(net: &Net) -> u64 {
    net.running()
        .iter()
        .map(|&i| net.node(i).stats().probe_stalls)
        .sum()
}

#[test]
fn a_pause_shorter_than_the_grace_is_not_suspected() {
    let net = paused_for(10.0, 8.0);
    assert_eq!(net.seen(MemberEventKind::Suspect, VICTIM).count(), 0);
    assert_eq!(net.seen(MemberEventKind::Failed, VICTIM).count(), 0);
    let stalls = probe_stalls(&net);
    assert!(stalls >= 4, "only {stalls} probes found the victim stalled");
    assert!(net.all_see_alive(&net.running()));
}

#[test]
fn without_the_grace_the_same_pause_is_suspected() {
    let net = paused_for(0.0, 8.0);
    assert!(net.seen(MemberEventKind::Suspect, VICTIM).count() > 0);
    assert_eq!(probe_stalls(&net), 0);
}

#[test]
fn a_member_stalled_past_the_grace_is_declared_failed() {
    let mut net = cluster(10.0);
    net.run_for(secs(2.0));
    net.pause(VICTIM);
    let started = net.now;
    assert!(
        net.run_until_all_dead(VICTIM, secs(120.0)),
        "the hung member was not declared failed"
    );
    let victim = name(VICTIM);
    let stalled: Vec<u64> = net
        .other_events
        .iter()
        .filter_map(|(_, _, e)| match e {
            Event::Suspected {
                name,
                cause: SuspicionCause::Stalled { for_ms },
                ..
            } if **name == *victim => Some(*for_ms),
            _ => None,
        })
        .collect();
    assert!(!stalled.is_empty(), "no suspicion gave the stall as cause");
    assert!(stalled.iter().all(|&ms| ms >= 10_000), "{stalled:?}");
    let first = net
        .seen(MemberEventKind::Suspect, VICTIM)
        .map(|s| s.at)
        .min()
        .expect("suspected");
    assert!(
        first.saturating_since(started) >= secs(10.0),
        "suspected {:?} after the pause began, within the grace",
        first.saturating_since(started)
    );
}

/// Node 5 crashes silently (its host accepts nothing): when every other
/// node has declared it dead.
fn silent_crash_detected(grace_secs: f64) -> rumor_core::Instant {
    let mut net = cluster(grace_secs);
    net.run_for(secs(2.0));
    net.crash(5);
    assert!(
        net.run_until_all_dead(5, secs(60.0)),
        "the crash was not detected by everyone"
    );
    assert_eq!(probe_stalls(&net), 0, "a crashed host looked stalled");
    net.now
}

#[test]
fn a_silent_crash_is_detected_exactly_as_without_the_grace() {
    assert_eq!(silent_crash_detected(10.0), silent_crash_detected(0.0));
}
