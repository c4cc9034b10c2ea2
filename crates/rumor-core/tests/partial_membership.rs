//! `Node` in partial membership (`Config::membership = Partial`): a
//! HyParView overlay and Plumtree broadcasts under the same members table,
//! events and services as full membership. Every test here could fail: a
//! node that never joins the overlay, a rumor the tree loses or delivers
//! twice, a crash nobody reports, a mode mismatch accepted.

mod common;

use std::net::SocketAddr;

use common::{name, secs, Net};
use rumor_core::message::MessageType;
use rumor_core::{Config, Event, MemberEventKind, MemberState, Membership};

fn partial() -> Config {
    let mut c = Config::lan();
    c.membership = Membership::Partial;
    c
}

/// `n` partial-membership nodes joined through node 0; asserts that every
/// one lists every other alive.
fn converged(n: usize) -> Net {
    Net::converged(n, partial())
}

/// Every link is held at both ends, each node has a few neighbours, and
/// the links connect every running node.
fn assert_overlay(net: &Net) {
    let running = net.running();
    let mut reached = vec![running[0]];
    let mut k = 0;
    while k < reached.len() {
        for peer in net.node(reached[k]).neighbors() {
            let j = net.addrs.iter().position(|a| *a == peer).expect("a node");
            if !reached.contains(&j) {
                reached.push(j);
            }
        }
        k += 1;
    }
    reached.sort_unstable();
    assert_eq!(reached, running, "the overlay is split");
    for &i in &running {
        let mine = net.node(i).neighbors();
        assert!(
            (1..=5).contains(&mine.len()),
            "{} has {} neighbours",
            name(i),
            mine.len()
        );
        for peer in mine {
            let j = net.addrs.iter().position(|a| *a == peer).expect("a node");
            assert!(
                net.node(j).neighbors().contains(&net.addrs[i]),
                "{} lists {} as a neighbour, not the other way round",
                name(i),
                name(j)
            );
        }
    }
}

#[test]
fn a_partial_cluster_learns_every_member_without_probing_them() {
    let mut net = converged(40);
    net.run_for(secs(20.0));
    assert_overlay(&net);
    for i in 0..40 {
        let s = net.node(i).stats();
        // SWIM's probe round and push-pull are off: no indirect probes, no
        // full-state exchange, and the overlay is what carries traffic.
        assert_eq!(s.messages_out[MessageType::PingReq as usize - 1], 0);
        assert!(s.messages_out[MessageType::View as usize - 1] > 0);
        assert!(s.messages_out[MessageType::Tree as usize - 1] > 0);
        assert_eq!(s.decode_errors, 0);
        assert_eq!(s.membership_refused, 0);
    }
    assert_eq!(net.seen(MemberEventKind::Failed, 5).count(), 0);
}

#[test]
fn a_user_event_reaches_every_node_exactly_once() {
    let mut net = converged(40);
    net.run_for(secs(5.0));
    for origin in [3, 17, 39] {
        net.with(origin, |n, now| {
            n.send_event(now, "deploy", format!("from {origin}").as_bytes())
                .unwrap();
        });
    }
    net.run_for(secs(5.0));
    for origin in [3, 17, 39] {
        let payload = format!("from {origin}").into_bytes();
        let mut got: Vec<usize> = net
            .user_events
            .iter()
            .filter(|(_, _, ev)| ev.payload == payload)
            .map(|(_, at, _)| *at)
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..40).collect::<Vec<_>>(), "event from {origin}");
    }
}

#[test]
fn a_crash_is_reported_to_every_member_and_a_leave_too() {
    let mut net = converged(30);
    net.run_for(secs(5.0));
    net.crash(7);
    assert!(
        net.run_until_all_dead(7, secs(60.0)),
        "not every member holds the crashed node dead"
    );
    net.with(12, |n, now| n.leave(now));
    let others: Vec<usize> = net.running().into_iter().filter(|&i| i != 12).collect();
    assert!(
        net.run_until_true(secs(30.0), |net| others
            .iter()
            .all(|&o| net.state_of(o, &name(12)) == Some(MemberState::Left))),
        "not every member saw the leave"
    );
    // Nobody else was declared failed, and the overlay healed around both.
    for i in net.running() {
        if i != 12 {
            assert_eq!(
                net.seen(MemberEventKind::Failed, i).count(),
                0,
                "{}",
                name(i)
            );
        }
    }
    net.crash(12);
    net.run_for(secs(15.0));
    assert_overlay(&net);
}

#[test]
fn a_suspected_live_member_refutes_over_the_tree() {
    let mut net = converged(20);
    net.run_for(secs(5.0));
    // Node 4 falls silent for its neighbours long enough to be suspected,
    // then speaks again before the suspicion runs out.
    let four = 4;
    net.drop = Box::new(move |from, to, _| from == four || to == four);
    net.run_for(secs(6.0));
    net.drop = Box::new(|_, _, _| false);
    net.run_for(secs(60.0));
    let suspected = net
        .other_events
        .iter()
        .any(|(_, _, e)| matches!(e, Event::Suspected { name, .. } if **name == *"node-004"));
    assert!(suspected, "the silent node was never suspected");
    for i in net.running() {
        assert_eq!(
            net.state_of(i, "node-004"),
            Some(MemberState::Alive),
            "{} does not hold node-004 alive",
            name(i)
        );
    }
}

fn mismatches(net: &Net, at: usize) -> Vec<(SocketAddr, Membership)> {
    net.other_events
        .iter()
        .filter(|(_, i, _)| *i == at)
        .filter_map(|(_, _, e)| match e {
            Event::MembershipMismatch { peer, theirs } => Some((*peer, *theirs)),
            _ => None,
        })
        .collect()
}

#[test]
fn full_and_partial_nodes_refuse_each_other() {
    // Nodes 0-2 run full membership; 3 and 4 partial.
    let mut net = Net::new(5, Config::lan());
    net.config = partial();
    net.boot(3);
    net.boot(4);
    let (full_seed, partial_seed) = (net.addrs[0], net.addrs[3]);
    net.with(1, |n, now| n.join(now, &[full_seed]));
    net.with(4, |n, now| n.join(now, &[partial_seed]));
    net.run_for(secs(10.0));
    // A partial node joins through a full one, a full one through a partial one.
    net.with(3, |n, now| n.join(now, &[full_seed]));
    net.with(2, |n, now| n.join(now, &[partial_seed]));
    net.run_for(secs(30.0));
    let (a0, a2, a3) = (net.addrs[0], net.addrs[2], net.addrs[3]);
    assert!(mismatches(&net, 0).contains(&(a3, Membership::Partial)));
    assert!(mismatches(&net, 3).contains(&(a0, Membership::Full)));
    assert!(mismatches(&net, 3).contains(&(a2, Membership::Full)));
    assert!(mismatches(&net, 2).contains(&(a3, Membership::Partial)));
    assert!(net.node(0).stats().membership_refused > 0);
    assert!(net.node(3).stats().membership_refused > 0);
    // Neither side took the other in.
    for (full, partial) in [(0, 3), (1, 3), (2, 3), (2, 4), (0, 4)] {
        assert!(net.node(full).member(&name(partial)).is_none());
        assert!(net.node(partial).member(&name(full)).is_none());
    }
    // Each mode's own pair did form.
    assert_eq!(net.state_of(0, &name(1)), Some(MemberState::Alive));
    assert_eq!(net.state_of(3, &name(4)), Some(MemberState::Alive));
    assert_eq!(net.node(3).membership_mismatches().len(), 2);
}

#[test]
fn a_healed_partition_becomes_one_cluster_again() {
    let mut net = converged(30);
    net.run_for(secs(5.0));
    let side = |i: usize| i < 15;
    net.drop = Box::new(move |from, to, _| side(from) != side(to));
    // Long enough for each side to declare the other dead.
    net.run_for(secs(60.0));
    assert_eq!(net.state_of(0, &name(20)), Some(MemberState::Dead));
    assert_eq!(net.state_of(20, &name(0)), Some(MemberState::Dead));
    net.drop = Box::new(|_, _, _| false);
    let all: Vec<usize> = (0..30).collect();
    assert!(
        net.run_until_true(secs(180.0), |net| net.all_see_alive(&all)),
        "the two sides did not merge again"
    );
    net.run_for(secs(15.0));
    assert_overlay(&net);
}

/// 24 clusters (20 and 45 nodes, one-way latencies 0.7-8.4 ms): each
/// starts cold (every node joining node 0 at once) and must learn every
/// member, split in halves for 60 s and merge again, and report a crash to
/// everyone with no other member failed.
#[test]
fn cold_start_partition_and_crash_across_latencies() {
    let mut failures = Vec::new();
    for step in 1..=12u64 {
        for n in [20usize, 45] {
            let mut net = Net::new(n, partial());
            net.latency = std::time::Duration::from_micros(700 * step);
            net.join_all(0);
            let all: Vec<usize> = (0..n).collect();
            if !net.run_until_true(secs(60.0), |net| net.all_see_alive(&all)) {
                failures.push((step, n, "cold start"));
                continue;
            }
            net.run_for(secs(5.0));
            let half = n / 2;
            net.drop = Box::new(move |from, to, _| (from < half) != (to < half));
            net.run_for(secs(60.0));
            net.drop = Box::new(|_, _, _| false);
            if !net.run_until_true(secs(180.0), |net| net.all_see_alive(&all)) {
                failures.push((step, n, "partition heal"));
                continue;
            }
            let victim = 1 + (step as usize * 7) % (n - 1);
            let crashed_at = net.now;
            net.crash(victim);
            if !net.run_until_all_dead(victim, secs(60.0)) {
                failures.push((step, n, "crash"));
                continue;
            }
            let wrongly_failed = net.events.iter().any(|e| {
                e.kind == MemberEventKind::Failed && e.at > crashed_at && e.name != name(victim)
            });
            if wrongly_failed {
                failures.push((step, n, "false failure"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "(latency step, nodes, phase): {failures:?}"
    );
}

#[test]
fn a_claim_about_a_third_member_in_a_datagram_is_dropped() {
    let mut net = converged(12);
    net.run_for(secs(5.0));
    let victim = net.node(9).local();
    // Node 2's address (a forger, or a full-membership peer) claims to
    // node 5 that node 9 left, and that a member nobody knows is alive.
    let forged = [
        rumor_core::message::Message::Dead {
            incarnation: victim.incarnation,
            name: victim.name.clone(),
            from: victim.name.clone(),
        },
        rumor_core::message::Message::Alive(rumor_core::message::Alive {
            incarnation: 1,
            name: "node-999".into(),
            addr: "127.0.9.9:7946".parse().unwrap(),
            protocol: net.node(9).local().protocol,
            tags: Default::default(),
        }),
    ];
    let from = net.addrs[2];
    for msg in &forged {
        let bytes = rumor_core::codec::encode_packet(msg);
        net.with(5, |n, now| n.handle_datagram(now, from, &bytes));
    }
    net.run_for(secs(5.0));
    assert_eq!(net.node(5).stats().off_tree_claims, 2);
    assert_eq!(net.state_of(5, &name(9)), Some(MemberState::Alive));
    assert!(net.node(5).member("node-999").is_none());
    // The same leave on the tree is taken (node 9 itself leaves).
    net.with(9, |n, now| n.leave(now));
    net.run_for(secs(5.0));
    assert_eq!(net.state_of(5, &name(9)), Some(MemberState::Left));
}
