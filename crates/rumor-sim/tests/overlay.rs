//! Partial membership (HyParView + Plumtree) over many seeds with random
//! faults: the views keep their invariants, heal, and every broadcast
//! reaches every live node exactly once.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rumor_sim::overlay::{Options, Overlay};
use rumor_sim::SECOND;

const NODES: usize = 40;
const SEEDS: u64 = 300;

/// A cluster of `NODES` that joins over 2 s, then suffers random faults
/// (crash waves of up to a fifth of the nodes, while fewer than 30 % are
/// down; new nodes joining; 1 % loss) for 20 s, then runs clean: its state
/// after `settle` seconds more.
fn faulty_run(seed: u64, settle: u64) -> Overlay {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let opts = Options {
        seed,
        loss: 0.01,
        ..Options::default()
    };
    let mut o = Overlay::new(NODES, opts);
    o.join_all(std::time::Duration::from_secs(2));
    o.run_until(10 * SECOND);
    let mut id = 0;
    for _ in 0..20 {
        match rng.random_range(0..10) {
            0 => {
                let k = rng.random_range(1..=NODES / 5);
                for _ in 0..k {
                    // At most 30 % of the nodes down: beyond that the
                    // survivors may know no one alive in another part.
                    if o.live() as usize > NODES * 7 / 10 {
                        if let Some(v) = o.random_live() {
                            o.crash(v);
                        }
                    }
                }
            }
            1 => {
                // Like an agent's seeds: three members to try.
                let contacts: Vec<u32> = (0..3).filter_map(|_| o.random_live()).collect();
                o.add_node(&contacts);
            }
            _ => {}
        }
        if let Some(origin) = o.random_live() {
            o.broadcast(origin, id);
            id += 1;
        }
        let at = o.now() + SECOND;
        o.run_until(at);
        assert!(o.health().well_formed(), "seed {seed}: {:?}", o.health());
    }
    let end = o.now() + settle * SECOND;
    let healed = o.run_until_healed(SECOND, end);
    assert!(
        healed.is_some(),
        "seed {seed}: the overlay did not heal within {settle} s of the last fault: {:?}",
        o.health()
    );
    // Messages sent during the faults were never delivered twice.
    for k in 0..id {
        let s = o.spread(k).expect("sent");
        assert_eq!(
            s.duplicates, 0,
            "seed {seed}: broadcast {k} delivered twice"
        );
    }
    o
}

#[test]
fn views_heal_after_random_faults_and_stay_well_formed() {
    for seed in 0..SEEDS {
        let o = faulty_run(seed, 120);
        let h = o.health();
        assert_eq!(h.asymmetric, 0, "seed {seed}: {h:?}");
        assert_eq!(h.components, 1, "seed {seed}: {h:?}");
        assert_eq!(h.dead_neighbors, 0, "seed {seed}: {h:?}");
    }
}

#[test]
fn every_broadcast_after_healing_reaches_every_live_node_exactly_once() {
    for seed in 0..SEEDS {
        let mut o = faulty_run(seed, 120);
        let mut sent = Vec::new();
        for k in 0..5 {
            let origin = o.random_live().expect("live nodes");
            let id = 10_000 + k;
            o.broadcast(origin, id);
            sent.push(id);
            let at = o.now() + SECOND / 2;
            o.run_until(at);
        }
        let at = o.now() + 5 * SECOND;
        o.run_until(at);
        for id in sent {
            let s = o.spread(id).expect("sent");
            assert!(
                o.reached_all_live(s),
                "seed {seed}: broadcast {id} missed live nodes"
            );
            assert_eq!(s.reached, o.live(), "seed {seed}: broadcast {id}");
            assert_eq!(
                s.duplicates, 0,
                "seed {seed}: broadcast {id} delivered twice"
            );
        }
    }
}

#[test]
fn a_settled_tree_sends_each_message_about_once_per_node() {
    // Plumtree's point: once duplicates have pruned the eager links to a
    // tree, a broadcast costs about one payload per node (RMR near 0)
    // where flooding the same overlay would cost about 4 per node.
    let mut o = Overlay::new(200, Options::default());
    o.join_all(std::time::Duration::from_secs(2));
    o.run_until(30 * SECOND);
    for k in 0..20 {
        let origin = o.random_live().expect("live");
        o.broadcast(origin, k);
        let at = o.now() + SECOND;
        o.run_until(at);
    }
    let first = o.spread(0).expect("sent").rmr();
    let last = o.spread(19).expect("sent").rmr();
    assert!(first > 1.0, "the first broadcast floods: rmr {first}");
    assert!(last < 0.1, "the settled tree: rmr {last}");
}
