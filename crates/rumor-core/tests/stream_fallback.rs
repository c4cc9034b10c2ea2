//! The probe's fallbacks when its direct ping times out. The stream ping:
//! a member whose datagrams are all lost but whose streams get through is
//! not suspected when the fallback is on, and is when it is off (so the
//! first test can fail). The second direct ping: under random datagram
//! loss it saves most probes that would fail.

mod common;

use common::{name, secs, Net};
use rumor_core::{Config, Event, MemberEventKind};

/// Node `victim`'s datagrams, in and out, are all lost; streams work.
fn udp_blackhole(fallback: bool, victim: usize) -> Net {
    let mut config = Config::lan();
    config.probe_stream_fallback = fallback;
    config.probe_retry = true;
    let mut net = Net::converged(8, config);
    net.drop_streams = false;
    net.drop = Box::new(move |from, to, _| from == victim || to == victim);
    net.run_for(secs(30.0));
    net
}

/// Suspicions of `who` raised by some node's own probe.
fn own_suspicions(net: &Net, who: usize) -> usize {
    let who = name(who);
    net.other_events
        .iter()
        .filter(|(_, at, e)| {
            matches!(e, Event::Suspected { name, accuser, .. }
                if **name == *who && **accuser == *name_of(*at))
        })
        .count()
}

fn name_of(i: usize) -> String {
    name(i)
}

#[test]
fn a_member_reachable_only_over_streams_is_not_suspected() {
    let net = udp_blackhole(true, 3);
    assert_eq!(own_suspicions(&net, 3), 0, "node 3 suspected by a probe");
    assert_eq!(net.seen(MemberEventKind::Suspect, 3).count(), 0);
    assert_eq!(net.seen(MemberEventKind::Failed, 3).count(), 0);
    let saved: u64 = net
        .running()
        .iter()
        .map(|&i| net.node(i).stats().probe_stream_fallback_acks)
        .sum();
    // Every probe of node 3 (about 30 s x 7 probers / 7 targets) is saved
    // by its stream ping, and node 3's own probes of the others too.
    assert!(saved >= 30, "only {saved} probes saved by a stream ping");
    let pings: u64 = net
        .running()
        .iter()
        .map(|&i| net.node(i).stats().probe_stream_pings)
        .sum();
    assert!(pings >= saved, "{pings} stream pings, {saved} saved");
}

#[test]
fn without_the_fallback_the_same_member_is_suspected() {
    let net = udp_blackhole(false, 3);
    assert!(own_suspicions(&net, 3) > 0, "node 3 never suspected");
    assert!(net.seen(MemberEventKind::Suspect, 3).count() > 0);
    let pings: u64 = net
        .running()
        .iter()
        .map(|&i| net.node(i).stats().probe_stream_pings)
        .sum();
    assert_eq!(pings, 0, "stream pings sent with the fallback off");
}

#[test]
fn a_crashed_member_is_still_declared_dead_with_the_fallback_on() {
    let mut net = Net::converged(8, Config::lan());
    net.run_for(secs(2.0));
    net.crash(5);
    assert!(
        net.run_until_all_dead(5, secs(60.0)),
        "the crash was not detected by everyone"
    );
    let others: Vec<usize> = (0..8).filter(|&i| i != 5).collect();
    let saved: u64 = others
        .iter()
        .map(|&i| net.node(i).stats().probe_stream_fallback_acks)
        .sum();
    assert_eq!(saved, 0, "a dead member's stream ping was acked");
}

/// A member whose datagrams (in and out) are lost 1 time in 8, with
/// no relays and no stream fallback: what the second direct ping changes.
fn lossy_member(retry: bool) -> (usize, u64) {
    let mut config = Config::lan();
    config.indirect_checks = 0;
    config.probe_stream_fallback = false;
    config.probe_retry = retry;
    let mut net = Net::converged(4, config);
    // A fixed pseudo-random pattern, the same in both runs.
    net.drop = Box::new(|from, to, seq| {
        (from == 2 || to == 2) && seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 == 0
    });
    net.run_for(secs(300.0));
    let retries = net
        .running()
        .iter()
        .map(|&i| net.node(i).stats().probe_retries)
        .sum();
    (own_suspicions(&net, 2), retries)
}

#[test]
fn a_second_direct_ping_saves_probes_under_random_loss() {
    let (without, none) = lossy_member(false);
    let (with, retries) = lossy_member(true);
    eprintln!("suspicions of the lossy member: {without} without the retry, {with} with it ({retries} retries)");
    assert_eq!(none, 0, "retries sent with probe_retry off");
    assert!(retries > 0, "no retry sent");
    assert!(without >= 10, "only {without} suspicions without the retry");
    assert!(
        with * 2 < without,
        "{with} suspicions with the retry, {without} without"
    );
}
