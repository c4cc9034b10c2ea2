//! The key space's clocks between nodes: per-node wall clocks, the peers'
//! offsets measured on Merkle sync sessions, and records refused as too far
//! ahead (counted, reported, and taken later by anti-entropy).

mod common;

use common::{name, secs, Net};
use rumor_core::kv::ClockRefusal;
use rumor_core::{Config, Event};

/// A plausible Unix time, microseconds.
const BASE: u64 = 1_700_000_000_000_000;

fn cluster(n: usize, offsets_s: &[i64]) -> Net {
    cluster_with(Config::lan(), n, offsets_s)
}

fn cluster_with(config: Config, n: usize, offsets_s: &[i64]) -> Net {
    let mut net = Net::converged(n, config);
    for (i, off) in offsets_s.iter().enumerate() {
        net.with(i, |node, _| {
            node.set_wall_clock(BASE.saturating_add_signed(off * 1_000_000))
        });
    }
    net
}

fn offset_s(net: &Net, observer: usize, peer: usize) -> Option<f64> {
    net.node(observer)
        .clock_skew()
        .get(&name(peer))
        .map(|s| s.offset_secs())
}

#[test]
fn each_peer_offset_is_measured_on_sync_sessions() {
    let mut net = cluster(3, &[0, 5, -2]);
    // Keys everywhere, so that every node runs sync sessions.
    for i in 0..3 {
        net.with(i, |n, now| {
            n.kv_put(now, &format!("k{i}"), vec![1]).unwrap()
        });
    }
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 0.05);
    let ok = net.run_until_true(secs(120.0), |net| {
        near(offset_s(net, 0, 1), 5.0)
            && near(offset_s(net, 0, 2), -2.0)
            && near(offset_s(net, 1, 0), -5.0)
            && near(offset_s(net, 2, 1), 7.0)
    });
    let table: Vec<_> = (0..3)
        .map(|i| {
            net.node(i)
                .clock_skew()
                .iter()
                .map(|(n, s)| (n.to_string(), s.offset_micros))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(ok, "offsets not measured: {table:?}");
    assert!(net.node(0).stats().kv_clock_samples > 0);
    // Never a sample for a non-member, nor for itself.
    assert!(net.node(0).clock_skew().get(&name(0)).is_none());
    assert!(net.node(0).clock_skew().len() <= 2);
}

#[test]
fn a_reaped_member_loses_its_sample() {
    let config = Config {
        tombstone_timeout: secs(30.0),
        ..Config::lan()
    };
    let mut net = cluster_with(config, 3, &[0, 3, 0]);
    for i in 0..3 {
        net.with(i, |n, now| {
            n.kv_put(now, &format!("k{i}"), vec![1]).unwrap()
        });
    }
    assert!(net.run_until_true(secs(120.0), |net| offset_s(net, 0, 1).is_some()));
    net.crash(1);
    // Dead, then reclaimed after the tombstone grace: the sample goes.
    let gone = net.run_until_true(secs(300.0), |net| {
        net.node(0).members().all(|m| *m.name != *name(1))
    });
    assert!(gone, "node 1 never reaped");
    net.run_for(secs(5.0));
    assert!(offset_s(&net, 0, 1).is_none());
}

fn refusals(net: &Net, observer: usize) -> Vec<ClockRefusal> {
    net.other_events
        .iter()
        .filter(|(_, o, _)| *o == observer)
        .filter_map(|(_, _, e)| match e {
            Event::ClockRefused(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn records_from_a_clock_too_far_ahead_are_refused_then_taken_by_anti_entropy() {
    // Node 1's clock is 90 s ahead; the window is 60 s.
    let mut net = cluster(3, &[0, 90, 0]);
    // Node 0 measures node 1's offset first (keys everywhere).
    for i in [0, 2] {
        net.with(i, |n, now| {
            n.kv_put(now, &format!("k{i}"), vec![1]).unwrap()
        });
    }
    assert!(net.run_until_true(secs(60.0), |net| offset_s(net, 0, 1).is_some()));
    let start = net.now;
    net.with(1, |n, now| n.kv_put(now, "ahead", b"x".to_vec()).unwrap());
    let has = |net: &Net, i: usize| net.node(i).kv().get("ahead").is_some();
    net.run_for(secs(20.0));
    assert!(!has(&net, 0) && !has(&net, 2), "taken while 90 s ahead");
    let s = net.node(0).stats();
    assert!(s.kv_refused_future > 0, "{s:?}");
    assert_eq!(s.kv_invalid, 0, "refusals for skew are counted apart");
    let r = refusals(&net, 0);
    let last = r.last().expect("a ClockRefused event");
    assert_eq!(&*last.writer, name(1).as_str());
    assert_eq!(last.key, "ahead");
    assert!(
        (last.ahead_micros as f64 / 1e6 - 90.0).abs() < 21.0,
        "{last:?}"
    );
    let off = last.writer_offset.expect("node 1's offset was known");
    assert!((off.offset_secs() - 90.0).abs() < 0.05, "{off:?}");
    // Reports are rate-limited: at most one a second.
    assert!(r.len() as u64 <= 21 && r.iter().map(|x| x.count).sum::<u64>() <= s.kv_refused_future);
    // Once 30 s have passed, node 0's clock is within 60 s of the stamp:
    // anti-entropy brings the record, nobody refuses it forever.
    assert!(net.run_until_true(secs(60.0), |net| has(net, 0) && has(net, 2)));
    let took = net.now.saturating_since(start).as_secs_f64();
    assert!((30.0..45.0).contains(&took), "taken after {took} s");
}

#[test]
fn local_stamps_increase_when_the_wall_clock_steps_back() {
    let mut net = cluster(1, &[0]);
    let stamp = |net: &Net| {
        net.node(0)
            .kv()
            .get("k")
            .and_then(|e| e.latest().cloned())
            .expect("stamped")
    };
    net.with(0, |n, now| n.kv_put(now, "k", vec![1]).unwrap());
    let t1 = stamp(&net);
    net.with(0, |n, _| n.set_wall_clock(BASE - 5_000_000));
    net.run_for(secs(1.0));
    net.with(0, |n, now| n.kv_put(now, "k", vec![2]).unwrap());
    let t2 = stamp(&net);
    assert!(t2 > t1, "{t1} then {t2}");
    assert_eq!(t2.wall, t1.wall, "the wall holds while the clock is behind");
    assert_eq!(net.node(0).wall_clock(), BASE - 5_000_000);
}

#[test]
fn dissemination_latency_is_corrected_by_the_writers_offset() {
    // Node 1's clock runs 5 s ahead of node 0's, node 2's 5 s behind: raw
    // stamps would make node 1's writes arrive 5 s before they were made
    // and node 2's 5 s late.
    let mut net = cluster(3, &[0, 5, -5]);
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 0.05);
    assert!(net.run_until_true(secs(120.0), |net| {
        near(offset_s(net, 0, 1), 5.0) && near(offset_s(net, 0, 2), -5.0)
    }));
    net.with(0, |n, _| n.set_sampling(true));
    net.with(1, |n, now| n.kv_put(now, "ahead", vec![1]).unwrap());
    net.with(2, |n, now| n.kv_put(now, "behind", vec![2]).unwrap());
    net.run_for(secs(3.0));
    let mut got = Vec::new();
    net.with(0, |n, _| got = n.take_samples().dissemination);
    assert_eq!(got.len(), 2, "one sample per remote write: {got:?}");
    assert!(
        got.iter()
            .all(|d| *d < std::time::Duration::from_millis(500)),
        "{got:?}"
    );
}
