//! The replicated key space over the in-test network.

mod common;

use common::{secs, Net};
use rumor_core::kv::{Invalid, KvConfig, KvError, Mode};
use rumor_core::message::SyncMode;
use rumor_core::{Config, Error};

fn cluster(n: usize, config: Config) -> Net {
    Net::converged(n, config)
}

fn value(net: &Net, i: usize, key: &str) -> Option<Vec<u8>> {
    net.node(i)
        .kv()
        .get(key)
        .and_then(|e| e.lww_value().map(<[u8]>::to_vec))
}

fn roots_equal(net: &Net) -> bool {
    let live = net.running();
    live.windows(2)
        .all(|w| net.node(w[0]).kv().root() == net.node(w[1]).kv().root())
}

#[test]
fn a_write_on_one_node_is_read_on_all_others() {
    let mut net = cluster(5, Config::lan());
    net.with(2, |n, now| {
        n.kv_put(now, "config/db", b"primary=a".to_vec()).unwrap()
    });
    assert!(net.run_until_true(secs(5.0), |net| (0..5)
        .all(|i| value(net, i, "config/db").as_deref() == Some(b"primary=a"))));
    net.with(4, |n, now| n.kv_delete(now, "config/db").unwrap());
    assert!(net.run_until_true(secs(5.0), |net| (0..5)
        .all(|i| value(net, i, "config/db").is_none())));
    assert!(net.run_until_true(secs(10.0), roots_equal));
}

#[test]
fn merkle_anti_entropy_alone_converges_in_every_mode() {
    for mode in [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull] {
        let config = Config {
            kv_rumors: false,
            kv_sync_mode: mode,
            ..Config::lan()
        };
        let mut net = cluster(10, config);
        for i in 0..10 {
            net.with(i, |n, now| {
                for k in 0..20 {
                    n.kv_put(now, &format!("k/{i}/{k}"), vec![i as u8, k as u8])
                        .unwrap();
                }
            });
        }
        let ok = net.run_until_true(secs(120.0), |net| {
            roots_equal(net) && net.node(0).kv().len() == 200
        });
        assert!(
            ok,
            "{mode:?}: replicas did not converge by Merkle anti-entropy alone"
        );
    }
}

#[test]
fn a_large_value_spreads_over_streams() {
    let mut net = cluster(6, Config::lan());
    let big = vec![7u8; 20_000];
    net.with(1, |n, now| n.kv_put(now, "blob", big.clone()).unwrap());
    assert!(net.run_until_true(secs(30.0), |net| (0..6)
        .all(|i| value(net, i, "blob").as_deref() == Some(&big[..]))));
}

#[test]
fn concurrent_writes_on_both_sides_of_a_partition_are_kept_as_siblings() {
    let config = Config {
        kv: KvConfig {
            prefix_modes: vec![("cart/".into(), Mode::Siblings)],
            ..KvConfig::default()
        },
        ..Config::lan()
    };
    let mut net = cluster(6, config);
    net.drop = Box::new(|a, b, _| (a < 3) != (b < 3));
    let ctx = net.node(0).kv().context("cart/alice");
    net.with(0, |n, now| {
        n.kv_put_in_context(now, "cart/alice", Some(b"book".to_vec()), &ctx)
            .unwrap()
    });
    net.with(4, |n, now| {
        n.kv_put_in_context(now, "cart/alice", Some(b"pen".to_vec()), &ctx)
            .unwrap()
    });
    net.run_for(secs(5.0));
    net.drop = Box::new(|_, _, _| false);
    let ok = net.run_until_true(secs(120.0), |net| {
        roots_equal(net)
            && (0..6).all(|i| match net.node(i).kv().get("cart/alice") {
                Some(rumor_core::kv::Entry::Siblings(s)) => s.len() == 2,
                _ => false,
            })
    });
    assert!(
        ok,
        "both concurrent writes should survive as siblings everywhere"
    );
    let mut r = Ok(());
    net.with(1, |n, now| r = n.kv_put(now, "cart/bob", b"x".to_vec()));
    assert!(
        matches!(r, Err(Error::Kv(KvError::ContextRequired { .. }))),
        "a sibling key without a context: {r:?}"
    );
}

#[test]
fn bad_writes_are_refused_and_nothing_is_stored() {
    let mut net = Net::new(1, Config::lan());
    let mut r = Ok(());
    net.with(0, |n, now| {
        r = n.kv_put(now, &"k".repeat(300), b"v".to_vec())
    });
    assert!(
        matches!(
            r,
            Err(Error::Kv(KvError::Invalid(Invalid::KeyTooLong(300))))
        ),
        "{r:?}"
    );
    net.with(0, |n, now| r = n.kv_put(now, "k", vec![0; 70_000]));
    assert!(
        matches!(
            r,
            Err(Error::Kv(KvError::Invalid(Invalid::ValueTooLarge(70_000))))
        ),
        "{r:?}"
    );
    net.with(0, |n, now| r = n.kv_put(now, "", b"v".to_vec()));
    assert!(r.is_err());
    assert!(net.node(0).kv().is_empty());
}

/// Design invariant 5 over several seeds: random partitions, crashes and
/// restarts of non-writers, 20 % loss; all live replicas end with equal
/// Merkle roots and every key holds its last write.
#[test]
fn replicas_converge_and_no_write_is_lost_under_faults() {
    for seed in 0..6u64 {
        let n = 8;
        let mut net = cluster(n, Config::lan());
        let mut x = 0x853c_49e6_748f_ea9b ^ seed.wrapping_mul(0x9e37_79b9);
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let writers = [0usize, 1, 2];
        let mut last: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        let mut loss = rnd();
        net.drop = Box::new(move |_, _, _| {
            loss ^= loss << 13;
            loss ^= loss >> 7;
            loss ^= loss << 17;
            loss % 5 == 0
        });
        for step in 0..60u64 {
            let w = writers[(rnd() % 3) as usize];
            let key = format!("key/{}", rnd() % 10);
            let val = format!("{seed}-{step}").into_bytes();
            net.with(w, |node, now| node.kv_put(now, &key, val.clone()).unwrap());
            last.insert(key, val);
            match rnd() % 20 {
                0 => {
                    let victim = 3 + (rnd() % 5) as usize;
                    net.crash(victim);
                }
                1 => {
                    for i in 3..n {
                        if net.nodes[i].is_none() {
                            net.boot(i);
                            let seed_addr = net.addrs[0];
                            net.with(i, |node, now| node.join(now, &[seed_addr]));
                        }
                    }
                }
                _ => {}
            }
            net.run_for(secs(0.5));
        }
        // Heal everything.
        net.drop = Box::new(|_, _, _| false);
        for i in 3..n {
            if net.nodes[i].is_none() {
                net.boot(i);
                let seed_addr = net.addrs[0];
                net.with(i, |node, now| node.join(now, &[seed_addr]));
            }
        }
        let ok = net.run_until_true(secs(180.0), |net| {
            roots_equal(net)
                && last.iter().all(|(k, v)| {
                    net.running()
                        .iter()
                        .all(|&i| value(net, i, k).as_deref() == Some(&v[..]))
                })
        });
        assert!(
            ok,
            "seed {seed}: replicas did not converge on the last writes"
        );
    }
}

/// Merkle anti-entropy alone (no rumors), one writer: the key must reach
/// nodes whose key space is empty, including one that joins afterwards.
#[test]
fn anti_entropy_alone_reaches_nodes_with_an_empty_key_space_in_every_mode() {
    for mode in [SyncMode::Push, SyncMode::Pull, SyncMode::PushPull] {
        let config = Config {
            kv_rumors: false,
            kv_sync_mode: mode,
            ..Config::lan()
        };
        let n = 8;
        let mut net = Net::converged_with_spare(n, 1, config);
        net.with(4, |node, now| {
            node.kv_put(now, "leader", b"n4".to_vec()).unwrap()
        });
        let ok = net.run_until_true(secs(120.0), |net| {
            (0..n).all(|i| value(net, i, "leader").as_deref() == Some(b"n4"))
        });
        assert!(
            ok,
            "{mode:?}: the single writer's key did not reach every node"
        );
        let seed = net.addrs[0];
        net.with(n, |node, now| node.join(now, &[seed]));
        let ok = net.run_until_true(secs(120.0), |net| {
            value(net, n, "leader").as_deref() == Some(b"n4")
        });
        assert!(
            ok,
            "{mode:?}: a node that joined with an empty key space never learned the key"
        );
    }
}
