//! Aggregation over the in-test network: push-sum with exactly-once
//! transfers, under loss and crashes.

mod common;

use std::time::Duration;

use common::{secs, Net};
use rumor_core::Config;

fn cluster(n: usize, config: Config) -> Net {
    let mut net = Net::converged(n, config);
    for i in 0..n {
        net.with(i, |node, now| {
            node.state_write(now, "load", Some(&format!("{}", i + 1)))
                .unwrap()
        });
    }
    net.run_for(secs(2.0));
    net
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn lossless_push_sum_converges_to_the_exact_aggregates() {
    let n = 20;
    let mut net = cluster(n, Config::lan());
    net.with(7, |node, now| node.track_aggregate(now, "load").unwrap());
    let truth_avg = (n as f64 + 1.0) / 2.0;
    let start = net.now;
    let ok = net.run_until_true(secs(60.0), |net| {
        (0..n).all(|i| {
            net.node(i).aggregate("load").is_some_and(|e| {
                rel(e.avg, truth_avg) < 1e-9
                    && rel(e.count, n as f64) < 1e-9
                    && e.min == 1.0
                    && e.max == n as f64
            })
        })
    });
    assert!(
        ok,
        "estimates did not reach the true aggregates: {:?}",
        net.node(3).aggregate("load")
    );
    let e = net.node(0).aggregate("load").unwrap();
    assert!(rel(e.sum, 210.0) < 1e-9, "{e:?}");
    eprintln!("20 nodes: exact to 1e-9 after {:?}", net.now - start);
}

#[test]
fn with_loss_and_a_crash_the_next_epoch_is_accurate_for_survivors() {
    let n = 24;
    let config = Config {
        aggregate_epoch: Duration::from_secs(15),
        ..Config::lan()
    };
    let mut net = cluster(n, config);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    net.drop = Box::new(move |_, _, _| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 100 < 5
    });
    net.with(0, |node, now| node.track_aggregate(now, "load").unwrap());
    net.run_for(secs(8.0));
    // A crash in the middle of an epoch: its value and mass vanish.
    let victim = 9;
    net.crash(victim);
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let truth_sum: f64 = survivors.iter().map(|&i| (i + 1) as f64).sum();
    let truth_avg = truth_sum / survivors.len() as f64;
    // Long enough for the death to be known, a fresh epoch, and mixing.
    net.run_for(secs(75.0));
    for &i in &survivors {
        let e = net.node(i).aggregate("load").expect("estimate");
        assert!(
            rel(e.avg, truth_avg) < 1e-3,
            "node {i}: avg {} vs {truth_avg}",
            e.avg
        );
        assert!(
            rel(e.count, survivors.len() as f64) < 1e-3,
            "node {i}: count {}",
            e.count
        );
        assert!(rel(e.sum, truth_sum) < 1e-3, "node {i}: sum {}", e.sum);
        assert!(e.epoch >= 2, "node {i} still shows epoch {}", e.epoch);
    }
}

#[test]
fn bad_names_are_refused() {
    let mut net = Net::new(1, Config::lan());
    let mut r = Ok(());
    net.with(0, |node, now| {
        r = node.track_aggregate(now, &"n".repeat(100))
    });
    assert!(matches!(r, Err(rumor_core::Error::Aggregate(_))), "{r:?}");
    net.with(0, |node, now| r = node.track_aggregate(now, ""));
    assert!(r.is_err());
}
