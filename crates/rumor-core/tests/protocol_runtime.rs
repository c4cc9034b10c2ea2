//! `Node::set_protocol`: the protocol configuration changes while the node
//! runs. Shorter intervals take effect at once (the periodic timers are
//! brought forward, not left at the old period), intervals set to zero
//! stop their timer, the restart-only fields keep their values and are
//! named, an invalid configuration changes nothing, and the node stays the
//! same member throughout.

mod common;

use std::time::Duration;

use common::{secs, Net};
use rumor_core::message::MessageType;
use rumor_core::{Config, Error, MemberState};

fn slow() -> Config {
    Config {
        probe_interval: secs(5.0),
        probe_timeout: secs(1.0),
        ..Config::local()
    }
}

/// Run until node `i` starts a probe (at most `limit`): the next probe
/// tick is then a whole interval away.
fn until_a_probe(net: &mut Net, i: usize, limit: Duration) {
    let before = net.node(i).stats().probes;
    assert!(
        net.run_until_true(limit, |net| net.node(i).stats().probes > before),
        "node {i} did not probe within {limit:?}"
    );
}

#[test]
fn a_shorter_probe_interval_takes_effect_at_once() {
    let mut net = Net::converged(3, slow());
    until_a_probe(&mut net, 0, secs(12.0));
    let incarnation = net.node(0).local().incarnation;
    let probes = net.node(0).stats().probes;
    // Without re-arming, the next probe would be about 5 s away.
    let fast = Config {
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(50),
        ..slow()
    };
    let mut kept = None;
    net.with(0, |n, now| kept = Some(n.set_protocol(now, fast.clone())));
    assert_eq!(kept.expect("ran").expect("valid"), Vec::<&str>::new());
    net.run_for(Duration::from_millis(200));
    let after = net.node(0).stats().probes;
    assert!(
        after > probes,
        "no probe within 200 ms of the change ({probes} -> {after})"
    );
    // And it keeps probing at the new rate: ~10 more in the next second.
    net.run_for(secs(1.0));
    let later = net.node(0).stats().probes;
    assert!(later >= after + 8, "{after} -> {later} in 1 s");
    assert_eq!(net.node(0).config().probe_interval, fast.probe_interval);
    assert_eq!(
        net.node(0).local().incarnation,
        incarnation,
        "same identity"
    );
    for i in 0..3 {
        assert!(net.node(i).members().all(|m| m.state == MemberState::Alive));
    }
}

/// Push-pull requests node 0 has sent.
fn push_pulls(net: &Net) -> u64 {
    net.node(0).stats().messages_out[MessageType::PushPull as usize - 1]
}

#[test]
fn a_longer_interval_waits_for_the_pending_tick_and_zero_stops_a_timer() {
    let mut net = Net::converged(2, Config::local());
    // Past the pulls that follow the joins (their answers count as
    // push-pulls): 15.75 s.
    net.run_for(secs(16.0));
    until_a_probe(&mut net, 0, secs(3.0));
    let longer = Config {
        probe_interval: secs(30.0),
        push_pull_interval: Duration::ZERO,
        ..Config::local()
    };
    // On both: a push-pull request is answered, and counted, by the other.
    for i in 0..2 {
        net.with(i, |n, now| {
            n.set_protocol(now, longer.clone()).expect("valid");
        });
    }
    let probes = net.node(0).stats().probes;
    let pulls = push_pulls(&net);
    // The tick already pending (at most 1 s away) still runs once, then
    // the next is 30 s away; push-pull (every 15 s) has stopped.
    net.run_for(secs(20.0));
    let s = net.node(0).stats();
    assert_eq!(s.probes, probes + 1, "one pending probe, then none");
    assert_eq!(push_pulls(&net), pulls, "no push-pull once disabled");
}

#[test]
fn restart_only_fields_are_named_and_invalid_configs_change_nothing() {
    let mut net = Net::converged(2, Config::local());
    let mut asked = Config {
        gossip_nodes: 5,
        packet_size: 1000,
        ..Config::local()
    };
    asked.kv.merkle_depth = 2;
    let mut kept = Vec::new();
    net.with(0, |n, now| {
        kept = n.set_protocol(now, asked.clone()).expect("valid")
    });
    assert_eq!(kept, vec!["kv", "packet_size"]);
    let c = net.node(0).config().clone();
    assert_eq!(c.gossip_nodes, 5, "the rest applied");
    assert_eq!(c.packet_size, Config::local().packet_size);
    assert_eq!(c.kv, Config::local().kv);

    let bad = Config {
        probe_timeout: secs(5.0),
        gossip_nodes: 7,
        ..Config::local()
    };
    let mut result = None;
    net.with(0, |n, now| result = Some(n.set_protocol(now, bad.clone())));
    let err = result.expect("ran").expect_err("invalid");
    assert!(
        matches!(&err, Error::InvalidConfig(m) if m.contains("probe_timeout")),
        "{err}"
    );
    assert_eq!(net.node(0).config(), &c, "nothing changed");
}

/// Aggregate transfers node 0 has sent.
fn transfers(net: &Net) -> u64 {
    net.node(0).stats().messages_out[MessageType::Aggregate as usize - 1]
}

#[test]
fn a_service_timer_follows_its_new_interval() {
    // Aggregation is a service: its round timer is re-armed through the
    // service's own configuration hook, not the node's table.
    let slow_rounds = Config {
        aggregate_interval: secs(5.0),
        aggregate_epoch: secs(60.0),
        ..Config::local()
    };
    let mut net = Net::converged(3, slow_rounds.clone());
    net.with(0, |n, now| n.track_aggregate(now, "load").expect("valid"));
    // The first round comes within 5 s; after it the next is 5 s away.
    assert!(
        net.run_until_true(secs(6.0), |net| transfers(net) > 0),
        "no first round"
    );
    let before = transfers(&net);
    let fast_rounds = Config {
        aggregate_interval: Duration::from_millis(100),
        ..slow_rounds
    };
    net.with(0, |n, now| {
        n.set_protocol(now, fast_rounds.clone()).expect("valid");
    });
    net.run_for(secs(1.0));
    let after = transfers(&net);
    assert!(
        after >= before + 5,
        "rounds every 100 ms should send several transfers in 1 s: {before} -> {after}"
    );
}
