//! Per-node state over the in-test network: rumors, anti-entropy in each
//! mode, bulk catch-up, sampled digests, partitions and restarts.

mod common;

use common::{name, secs, Net};
use rumor_core::message::SyncMode;
use rumor_core::Config;

fn cluster(n: usize, config: Config) -> Net {
    Net::converged(n, config)
}

/// Every running node holds `owner`'s `key` = `value`.
fn everyone_has(net: &Net, owner: usize, key: &str, value: Option<&str>) -> bool {
    net.running().iter().all(|&o| {
        net.node(o)
            .state()
            .owner(&name(owner))
            .and_then(|s| s.get(key))
            == value
    })
}

#[test]
fn a_write_reaches_every_node_by_rumor_fast() {
    let mut net = cluster(10, Config::lan());
    let start = net.now;
    net.with(3, |n, now| n.state_write(now, "load", Some("0.7")).unwrap());
    assert!(net.run_until_true(secs(5.0), |net| everyone_has(net, 3, "load", Some("0.7"))));
    let took = net.now - start;
    assert!(took <= secs(0.5), "rumor path took {took:?}");
    net.with(3, |n, now| n.state_write(now, "load", None).unwrap());
    assert!(net.run_until_true(secs(5.0), |net| everyone_has(net, 3, "load", None)));
}

#[test]
fn anti_entropy_alone_converges_in_every_mode() {
    for mode in [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull] {
        let config = Config {
            state_rumors: false,
            state_sync_mode: mode,
            ..Config::lan()
        };
        let mut net = cluster(12, config);
        for i in 0..12 {
            net.with(i, |n, now| {
                n.state_write(now, "port", Some(&format!("{}", 8000 + i)))
                    .unwrap()
            });
        }
        let ok = net.run_until_true(secs(60.0), |net| {
            (0..12).all(|i| everyone_has(net, i, "port", Some(&format!("{}", 8000 + i))))
        });
        assert!(ok, "{mode:?}: state did not converge by anti-entropy alone");
        let hashes: Vec<u64> = (0..12).map(|i| net.node(i).state().digest_hash()).collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "{mode:?}: digests differ"
        );
    }
}

#[test]
fn a_new_node_learns_fifty_keys_of_every_member() {
    let n = 30;
    let mut net = Net::new(n + 1, Config::lan());
    let seed = net.addrs[0];
    for i in 0..n {
        net.with(i, |node, now| node.join(now, &[seed]));
    }
    net.run_for(secs(5.0));
    for i in 0..n {
        net.with(i, |node, now| {
            for k in 0..50 {
                node.state_write(now, &format!("key-{k:02}"), Some(&format!("value-{i}-{k}")))
                    .unwrap();
            }
        });
    }
    net.run_for(secs(10.0));
    let start = net.now;
    net.with(n, |node, now| node.join(now, &[seed]));
    let ok = net.run_until_true(secs(60.0), |net| {
        (0..n).all(|i| {
            net.node(n).state().owner(&name(i)).is_some_and(|o| {
                o.iter().count() == 50 && o.get("key-49") == Some(&*format!("value-{i}-49"))
            })
        })
    });
    assert!(ok, "the new node did not learn every member's 50 keys");
    eprintln!("new node learned 30 x 50 keys in {:?}", net.now - start);
    assert!(net.node(n).stats().streams_in > 0);
}

#[test]
fn sampled_digests_still_converge_in_a_larger_cluster() {
    // 80 names do not fit half a packet: digests are sampled.
    let n = 80;
    let config = Config {
        state_rumors: false,
        ..Config::lan()
    };
    let mut net = cluster(n, config);
    for i in 0..n {
        net.with(i, |node, now| {
            node.state_write(now, "zone", Some(&format!("z{}", i % 3)))
                .unwrap()
        });
    }
    let ok = net.run_until_true(secs(120.0), |net| {
        (0..n).all(|i| everyone_has(net, i, "zone", Some(&format!("z{}", i % 3))))
    });
    assert!(ok, "sampled anti-entropy did not converge");
}

#[test]
fn a_partitioned_node_catches_up_after_healing() {
    let n = 8;
    let mut net = cluster(n, Config::lan());
    let island = 5;
    net.drop = Box::new(move |a, b, _| a == island || b == island);
    for i in 0..n {
        net.with(i, |node, now| {
            node.state_write(now, "epoch", Some("2")).unwrap()
        });
    }
    net.run_for(secs(2.0));
    assert!(
        !everyone_has(&net, 0, "epoch", Some("2")),
        "the island must not have heard yet"
    );
    net.drop = Box::new(|_, _, _| false);
    let ok = net.run_until_true(secs(120.0), |net| {
        (0..n).all(|i| everyone_has(net, i, "epoch", Some("2")))
    });
    assert!(ok, "the island did not catch up");
}

#[test]
fn a_restarted_node_supersedes_its_old_state() {
    let n = 6;
    let mut net = cluster(n, Config::lan());
    net.with(2, |node, now| {
        node.state_write(now, "old", Some("1")).unwrap();
        node.state_write(now, "both", Some("1")).unwrap();
    });
    net.run_for(secs(3.0));
    net.crash(2);
    net.run_for(secs(1.0));
    net.boot(2);
    let seed = net.addrs[0];
    net.with(2, |node, now| {
        node.join(now, &[seed]);
        node.state_write(now, "both", Some("2")).unwrap();
    });
    let ok = net.run_until_true(secs(60.0), |net| {
        everyone_has(net, 2, "both", Some("2")) && everyone_has(net, 2, "old", None)
    });
    assert!(ok, "peers kept the restarted node's old state");
}

#[test]
fn bad_writes_are_refused_and_nothing_is_stored() {
    let mut net = Net::new(1, Config::lan());
    let mut r = Ok(());
    net.with(0, |node, now| {
        r = node.state_write(now, &"k".repeat(200), Some("v"))
    });
    assert!(
        matches!(
            r,
            Err(rumor_core::Error::State(rumor_core::Rejected::Invalid(_)))
        ),
        "{r:?}"
    );
    net.with(0, |node, now| {
        r = node.state_write(now, "k", Some(&"v".repeat(5000)))
    });
    assert!(
        matches!(
            r,
            Err(rumor_core::Error::State(rumor_core::Rejected::TooLarge(_)))
        ),
        "{r:?}"
    );
    assert!(net.node(0).state().is_empty());
}

/// Anti-entropy alone (no rumors), one writer: the value must reach nodes
/// whose own state is empty, including one that joins afterwards.
#[test]
fn anti_entropy_alone_reaches_nodes_with_empty_state_in_every_mode() {
    for mode in [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull] {
        let config = Config {
            state_rumors: false,
            state_sync_mode: mode,
            ..Config::lan()
        };
        let n = 8;
        let mut net = Net::converged_with_spare(n, 1, config);
        net.with(4, |node, now| {
            node.state_write(now, "role", Some("db")).unwrap()
        });
        let has = |net: &Net, i: usize| {
            net.node(i)
                .state()
                .owner(&name(4))
                .and_then(|o| o.get("role"))
                == Some("db")
        };
        let ok = net.run_until_true(secs(120.0), |net| (0..n).all(|i| has(net, i)));
        assert!(
            ok,
            "{mode:?}: the single writer's value did not reach every node"
        );
        let seed = net.addrs[0];
        net.with(n, |node, now| node.join(now, &[seed]));
        let ok = net.run_until_true(secs(120.0), |net| has(net, n));
        assert!(
            ok,
            "{mode:?}: a node that joined with empty state never learned the value"
        );
    }
}

/// With more owners than fit a digest, digests stay within their budget
/// (half a packet) and anti-entropy alone still spreads one node's write to
/// every node in every mode.
#[test]
fn sampled_digests_stay_within_budget_and_spread_a_single_write() {
    for mode in [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull] {
        let n = 150;
        let config = Config {
            state_rumors: false,
            state_sync_mode: mode,
            ..Config::lan()
        };
        let budget = config.packet_size / 2;
        let mut net = cluster(n, config);
        for i in 0..n {
            net.with(i, |node, now| {
                node.state_write(now, "boot", Some("1")).unwrap()
            });
        }
        net.run_for(secs(5.0));
        net.with(7, |node, now| {
            node.state_write(now, "role", Some("db")).unwrap()
        });
        let ok = net.run_until_true(secs(300.0), |net| everyone_has(net, 7, "role", Some("db")));
        assert!(ok, "{mode:?}: the write did not reach every node");
        for i in 0..n {
            let s = net.node(i).stats();
            assert!(s.state_digests > 0, "{mode:?}: node {i} sent no digest");
            let mean = s.state_digest_bytes / s.state_digests;
            assert!(
                mean <= budget as u64,
                "{mode:?}: node {i}'s digests average {mean} B, over the {budget} B budget"
            );
        }
    }
}
