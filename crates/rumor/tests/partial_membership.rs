//! Partial membership over real sockets on 127.0.0.1 (`Membership::Partial`,
//! encrypted like every library node): a cluster forms, a user event
//! reaches every node once, a crash is reported to all; and nodes of the
//! two modes refuse each other at the join with a clear error.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use rumor::core::message::MessageType;
use rumor::{Config, Error, Event, EventFilter, MemberState, Membership};

fn partial_config() -> Config {
    Config {
        membership: Membership::Partial,
        ..fast_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_cluster_spreads_an_event_once_and_reports_a_crash() {
    let mut nodes = start_cluster("p", 8, partial_config()).await;
    let mut subs: Vec<_> = nodes
        .iter()
        .map(|n| n.subscribe(EventFilter::USER))
        .collect();
    nodes[3]
        .send_event("deploy", b"v2".to_vec())
        .await
        .expect("event sent");
    for (i, sub) in subs.iter_mut().enumerate() {
        let got = tokio::time::timeout(DEADLINE, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("p{i} got no user event"))
            .expect("subscription open");
        match got {
            Event::User(ev) => {
                assert_eq!((ev.name.as_str(), &ev.payload[..]), ("deploy", &b"v2"[..]))
            }
            other => panic!("p{i}: {other:?}"),
        }
    }
    // Exactly once: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, sub) in subs.iter_mut().enumerate() {
        assert!(sub.try_recv().is_err(), "p{i} delivered the event twice");
    }
    for (i, n) in nodes.iter().enumerate() {
        let stats = n.stats().await.expect("stats");
        // Eight nodes and an active view of five: every node has a
        // neighbour, none more than the view holds.
        let active_size = partial_config().view.active_size;
        assert!(
            (1..=active_size).contains(&stats.active_view),
            "p{i} has {} neighbours",
            stats.active_view
        );
        let s = stats.core;
        assert!(s.messages_out[MessageType::View as usize - 1] > 0);
        assert!(s.messages_out[MessageType::Tree as usize - 1] > 0);
        assert_eq!(s.messages_out[MessageType::PingReq as usize - 1], 0);
        assert_eq!(s.membership_refused, 0);
        assert_eq!(s.decode_errors, 0);
    }

    // p7 stops without leaving: its neighbours suspect it, the tree tells
    // everyone, and every member declares it dead.
    let crashed = nodes.pop().expect("eight nodes");
    crashed.shutdown().await.expect("shutdown");
    let ok = try_wait_until(|| all_hold(&nodes, "p7", MemberState::Dead)).await;
    assert!(
        ok,
        "not every node holds p7 dead: {}",
        views(&nodes, "p7").await
    );
    let rest: BTreeSet<String> = (0..7).map(|i| format!("p{i}")).collect();
    wait_converged(&nodes, &rest).await;
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_partial_nodes_refuse_each_other_at_the_join() {
    let partial_seed = builder("ps")
        .config(partial_config())
        .start()
        .await
        .expect("starts");
    let full_seed = builder("fs").start().await.expect("starts");

    let full = builder("f1").start().await.expect("starts");
    match full.join([partial_seed.advertise_addr()]).await {
        Err(Error::MembershipMismatch { peer, ours, theirs }) => {
            assert_eq!(peer, partial_seed.advertise_addr());
            assert_eq!((ours, theirs), (Membership::Full, Membership::Partial));
        }
        other => panic!("a full node joined a partial seed: {other:?}"),
    }
    let partial = builder("p1")
        .config(partial_config())
        .start()
        .await
        .expect("starts");
    let err = partial
        .join([full_seed.advertise_addr()])
        .await
        .expect_err("a partial node joined a full seed");
    assert!(
        err.to_string()
            .contains("runs full membership and this node runs partial"),
        "{err}"
    );
    // Neither seed took the other mode's node in.
    assert_eq!(
        alive(&partial_seed).await,
        BTreeSet::from(["ps".to_string()])
    );
    assert_eq!(alive(&full_seed).await, BTreeSet::from(["fs".to_string()]));
    for seed in [&partial_seed, &full_seed] {
        let refused = seed.stats().await.expect("stats").core.membership_refused;
        assert!(refused > 0, "the seed counted no refusal");
    }
    for n in [partial_seed, full_seed, full, partial] {
        n.shutdown().await.expect("shutdown");
    }
}
