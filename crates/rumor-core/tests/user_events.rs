//! User events over the in-test network: everyone gets each event once.

mod common;

use std::time::Duration;

use common::{secs, Net};
use rumor_core::{Config, Error};

/// Seconds until the event from node 0 reached every node, over `rounds` events.
fn event_spread(config: Config, n: usize, rounds: usize) -> Vec<f64> {
    let mut net = Net::new(n, config);
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
        let ok = net.run_until_true(secs(10.0), |net| {
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

#[test]
fn oversized_or_unnamed_events_are_refused() {
    let mut net = Net::new(1, Config::lan());
    let mut r = Ok(0);
    net.with(0, |node, now| r = node.send_event(now, "big", &[0u8; 600]));
    assert!(matches!(r, Err(Error::InvalidEvent(_))), "{r:?}");
    net.with(0, |node, now| r = node.send_event(now, "", b"x"));
    assert!(matches!(r, Err(Error::InvalidEvent(_))), "{r:?}");
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
