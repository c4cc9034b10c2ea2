//! User events over the in-test network: everyone gets each event once.

mod common;

use std::time::Duration;

use common::{secs, Net};
use rumor_core::{Config, Error, Rejected};

/// Seconds until the event from node 0 reached every node, over `rounds` events.
fn event_spread(config: Config, n: usize, rounds: usize) -> Vec<f64> {
    let mut net = Net::new(n, config.clone());
    net.latency = Duration::from_micros(200);
    net.join_all(0);
    let all: Vec<usize> = (0..n).collect();
    assert!(net.run_until_true(secs(60.0), |net| net.all_see_alive(&all)));
    net.run_for(secs(5.0));
    let mut times = Vec::new();
    for r in 0..rounds {
        let sent = net.now;
        let name = format!("deploy-{r}");
        let mut ltime = 0;
        net.with(r % n, |node, now| {
            ltime = node.send_event(now, &name, b"v1").unwrap()
        });
        assert!(ltime > 0);
        // A member that every retransmission missed gets it from a push-pull.
        let bound = 2.0 * config.push_pull_interval_for(n).as_secs_f64() + 10.0;
        let ok = net.run_until_true(secs(bound), |net| {
            net.user_events
                .iter()
                .filter(|(_, _, e)| e.name == name)
                .count()
                >= n
        });
        assert!(ok, "event {name} did not reach all {n} nodes");
        let last = net
            .user_events
            .iter()
            .filter(|(_, _, e)| e.name == name)
            .map(|(t, _, _)| *t)
            .max()
            .unwrap();
        times.push((last - sent).as_secs_f64());
        net.run_for(secs(3.0));
        let copies = net
            .user_events
            .iter()
            .filter(|(_, _, e)| e.name == name)
            .count();
        assert_eq!(
            copies, n,
            "event {name} delivered {copies} times to {n} nodes"
        );
    }
    times
}

#[test]
fn user_event_reaches_everyone_once() {
    let times = event_spread(Config::lan(), 32, 5);
    eprintln!("event to all 32 (eager forwarding): {times:?}");
}

#[test]
fn eager_forwarding_is_faster_than_waiting_for_the_tick() {
    let eager = event_spread(Config::lan(), 32, 5);
    let lazy = event_spread(
        Config {
            eager_forward: false,
            ..Config::lan()
        },
        32,
        5,
    );
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (e, l) = (med(eager), med(lazy));
    eprintln!("median event t100 at N=32: eager {e:.4} s, tick-only {l:.4} s");
    assert!(
        e < l,
        "eager forwarding did not speed dissemination: {e} vs {l}"
    );
}

/// Anti-entropy for events: a member cut off while an event spread gets it
/// from a push-pull, once.
#[test]
fn an_event_every_rumor_missed_arrives_by_push_pull() {
    use std::cell::Cell;
    use std::rc::Rc;
    let config = Config {
        push_pull_interval: Duration::from_secs(5),
        ..Config::lan()
    };
    let mut net = Net::converged(8, config);
    let cut = Rc::new(Cell::new(true));
    let cut_rule = cut.clone();
    net.drop = Box::new(move |_, to, _| cut_rule.get() && to == 7);
    net.with(0, |node, now| {
        node.send_event(now, "deploy", b"v3").unwrap();
    });
    net.run_for(secs(1.0));
    let got = |net: &Net, i: usize| net.user_events.iter().filter(|(_, o, _)| *o == i).count();
    assert_eq!(got(&net, 7), 0, "node 7 was cut off");
    assert!(
        (0..7).all(|i| got(&net, i) == 1),
        "the rumor reached the rest"
    );
    cut.set(false);
    assert!(
        net.run_until_true(secs(30.0), |net| got(net, 7) == 1),
        "node 7 never got the event"
    );
    net.run_for(secs(20.0));
    assert!(
        (0..8).all(|i| got(&net, i) == 1),
        "delivered more than once"
    );
    assert_eq!(net.node(7).stats().events_repaired, 1);
}

#[test]
fn oversized_or_unnamed_events_are_refused() {
    let mut net = Net::new(1, Config::lan());
    let mut r = Ok(0);
    net.with(0, |node, now| r = node.send_event(now, "big", &[0u8; 600]));
    assert!(
        matches!(r, Err(Error::Event(Rejected::TooLarge(_)))),
        "{r:?}"
    );
    net.with(0, |node, now| r = node.send_event(now, "", b"x"));
    assert!(
        matches!(r, Err(Error::Event(Rejected::Invalid(_)))),
        "{r:?}"
    );
    assert!(net.user_events.is_empty());
}

/// The eager fanout grows with ln N: a wave with fanout 6 would miss
/// somebody in about half the events at N = 256 (256·e^-6 ≈ 0.63 members
/// per wave), and each member missed waits for a 200 ms gossip tick.
#[test]
fn in_a_large_cluster_the_eager_wave_rarely_misses_anyone() {
    let times = event_spread(Config::lan(), 256, 20);
    let waited = times.iter().filter(|&&t| t >= 0.1).count();
    eprintln!("event to all 256: {waited} of 20 waited for a gossip tick: {times:?}");
    assert!(
        waited <= 4,
        "{waited} of 20 events missed a member in the eager wave"
    );
}

/// A member restarted without its data starts its Lamport clock again and
/// may reissue a time the others still remember; its new event must still
/// reach them (the dedup key includes the event's content).
#[test]
fn a_member_restarted_without_data_is_heard_again() {
    let mut net = Net::converged(6, Config::lan());
    net.with(0, |node, now| {
        node.send_event(now, "deploy", b"v1").unwrap();
    });
    let got = |net: &Net, name: &str| {
        let mut to: Vec<usize> = net
            .user_events
            .iter()
            .filter(|(_, _, ev)| ev.name == name)
            .map(|(_, i, _)| *i)
            .collect();
        to.sort_unstable();
        to
    };
    assert!(net.run_until_true(secs(10.0), |net| got(net, "deploy").len() == 6));
    let first = net.user_events[0].2.ltime;
    net.crash(0);
    net.run_for(secs(1.0));
    net.boot(0);
    net.with(0, |node, now| {
        node.send_event(now, "rollback", b"v0").unwrap();
    });
    let reissued = net
        .user_events
        .iter()
        .find(|(_, _, ev)| ev.name == "rollback");
    assert_eq!(
        reissued.map(|(_, _, ev)| ev.ltime),
        Some(first),
        "the restarted node should reissue the old time"
    );
    let seed = net.addrs[1];
    net.with(0, |node, now| node.join(now, &[seed]));
    assert!(
        net.run_until_true(secs(60.0), |net| got(net, "rollback")
            == vec![0, 1, 2, 3, 4, 5]),
        "the new event reached only {:?}",
        got(&net, "rollback")
    );
}
