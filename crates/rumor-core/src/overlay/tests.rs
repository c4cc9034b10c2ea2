//! The overlay's state machines driven by hand, one message at a time.

use std::time::Duration;

use super::hyparview::{HyParView, ViewConfig, ViewEvent, ViewMessage};
use super::plumtree::{Plumtree, TreeConfig, TreeMessage};
use crate::time::Instant;

fn at(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

fn drain<P: super::Peer>(v: &mut HyParView<P>) -> Vec<(P, ViewMessage<P>)> {
    std::iter::from_fn(|| v.poll_transmit()).collect()
}

fn events<P: super::Peer>(v: &mut HyParView<P>) -> Vec<ViewEvent<P>> {
    std::iter::from_fn(|| v.poll_event()).collect()
}

#[test]
fn a_contact_takes_the_joiner_and_walks_it_down_its_other_links() {
    let mut c = HyParView::new(0u32, ViewConfig::default(), 1, at(0));
    c.handle(at(0), 1, ViewMessage::Connect);
    c.handle(at(0), 2, ViewMessage::Connect);
    drain(&mut c);
    c.handle(at(1), 9, ViewMessage::Join);
    assert!(c.is_neighbor(&9));
    let mut sent = drain(&mut c);
    sent.sort_by_key(|(p, _)| *p);
    let walk = |_| ViewMessage::ForwardJoin { joiner: 9, ttl: 6 };
    assert_eq!(sent, vec![(1, walk(())), (2, walk(()))]);

    let mut joiner = HyParView::new(9u32, ViewConfig::default(), 2, at(0));
    joiner.join(at(0), &[0]);
    assert!(joiner.is_neighbor(&0));
    assert_eq!(drain(&mut joiner), vec![(0, ViewMessage::Join)]);
}

#[test]
fn a_walk_ends_in_a_connect_and_stores_the_joiner_as_passive_on_its_way() {
    let mut v = HyParView::new(0u32, ViewConfig::default(), 3, at(0));
    for p in 1..=3 {
        v.handle(at(0), p, ViewMessage::Connect);
    }
    drain(&mut v);
    // Hop PRWL: stored as passive and forwarded to a neighbour other than
    // the sender.
    v.handle(at(1), 1, ViewMessage::ForwardJoin { joiner: 9, ttl: 3 });
    assert_eq!(v.passive(), &[9]);
    let sent = drain(&mut v);
    assert_eq!(sent.len(), 1);
    assert!(matches!(
        sent[0],
        (2 | 3, ViewMessage::ForwardJoin { joiner: 9, ttl: 2 })
    ));
    // The walk's end: a neighbour, told so.
    v.handle(at(2), 2, ViewMessage::ForwardJoin { joiner: 9, ttl: 0 });
    assert!(v.is_neighbor(&9));
    assert!(v.passive().is_empty());
    assert_eq!(drain(&mut v), vec![(9, ViewMessage::Connect)]);
}

#[test]
fn a_full_active_view_drops_a_random_neighbour_to_passive_with_a_disconnect() {
    let config = ViewConfig {
        active_size: 2,
        ..ViewConfig::default()
    };
    let mut v = HyParView::new(0u32, config, 4, at(0));
    v.handle(at(0), 1, ViewMessage::Connect);
    v.handle(at(0), 2, ViewMessage::Connect);
    drain(&mut v);
    events(&mut v);
    v.handle(at(1), 3, ViewMessage::Connect);
    assert_eq!(v.active().count(), 2);
    assert!(v.is_neighbor(&3));
    let dropped = if v.is_neighbor(&1) { 2 } else { 1 };
    assert_eq!(v.passive(), &[dropped]);
    assert_eq!(
        drain(&mut v),
        vec![(dropped, ViewMessage::Disconnect { leaving: false })]
    );
    assert_eq!(
        events(&mut v),
        vec![ViewEvent::NeighborDown(dropped), ViewEvent::NeighborUp(3)]
    );
    // A low-priority request is refused while full, a high one is not.
    v.handle(at(2), 4, ViewMessage::Neighbor { high: false });
    assert!(!v.is_neighbor(&4));
    assert_eq!(
        drain(&mut v),
        vec![(4, ViewMessage::NeighborReply { accepted: false })]
    );
    v.handle(at(3), 5, ViewMessage::Neighbor { high: true });
    assert!(v.is_neighbor(&5));
}

#[test]
fn a_silent_neighbour_is_pinged_then_failed_and_replaced_from_the_passive_view() {
    // One neighbour fills the view: no promotion before the failure.
    let config = ViewConfig {
        active_size: 1,
        ..ViewConfig::default()
    };
    let mut v = HyParView::new(0u32, config, 5, at(0));
    v.handle(at(0), 1, ViewMessage::Connect);
    v.handle(at(0), 7, ViewMessage::Disconnect { leaving: false });
    drain(&mut v);
    events(&mut v);
    assert_eq!(v.passive(), &[7]);
    v.handle_timeout(at(1000));
    assert!(drain(&mut v).contains(&(1, ViewMessage::Ping)));
    // 1 answers once, then goes silent.
    v.handle(at(1100), 1, ViewMessage::Pong);
    for ms in [2000, 3000, 4000] {
        v.handle_timeout(at(ms));
        assert!(v.is_neighbor(&1), "failed too early, at {ms} ms");
    }
    drain(&mut v);
    v.handle_timeout(at(5100));
    assert!(!v.is_neighbor(&1));
    assert_eq!(
        events(&mut v),
        vec![ViewEvent::NeighborDown(1), ViewEvent::Failed(1)]
    );
    // With no neighbour left it must be taken: high priority.
    assert!(drain(&mut v).contains(&(7, ViewMessage::Neighbor { high: true })));
    v.handle(at(5200), 7, ViewMessage::NeighborReply { accepted: true });
    assert!(v.is_neighbor(&7));
}

#[test]
fn a_ping_over_a_link_the_receiver_lacks_is_answered_with_a_disconnect() {
    let mut v = HyParView::new(0u32, ViewConfig::default(), 6, at(0));
    v.handle(at(0), 3, ViewMessage::Ping);
    assert_eq!(
        drain(&mut v),
        vec![(3, ViewMessage::Disconnect { leaving: false })]
    );
    // A leaving neighbour is forgotten, not kept as passive.
    v.handle(at(1), 4, ViewMessage::Connect);
    v.handle(at(2), 4, ViewMessage::Disconnect { leaving: true });
    assert!(!v.is_neighbor(&4));
    assert!(v.passive().is_empty());
}

#[test]
fn a_shuffle_walks_then_swaps_passive_samples_with_its_origin() {
    let mut v = HyParView::new(0u32, ViewConfig::default(), 7, at(0));
    v.handle(at(0), 1, ViewMessage::Connect);
    v.handle(at(0), 20, ViewMessage::Disconnect { leaving: false });
    drain(&mut v);
    // One neighbour only: the walk ends here.
    let shuffle = ViewMessage::Shuffle {
        origin: 9,
        ttl: 5,
        peers: vec![9, 10, 11],
    };
    v.handle(at(1), 1, shuffle);
    assert_eq!(
        drain(&mut v),
        vec![(9, ViewMessage::ShuffleReply { peers: vec![20] })]
    );
    let mut passive = v.passive().to_vec();
    passive.sort();
    assert_eq!(passive, vec![9, 10, 11, 20]);
}

fn out<M: Clone>(t: &mut Plumtree<u32, M>) -> Vec<(u32, TreeMessage<M>)> {
    std::iter::from_fn(|| t.poll_transmit()).collect()
}

#[test]
fn a_duplicate_prunes_its_sender_to_lazy() {
    let mut t: Plumtree<u32, &str> = Plumtree::new(TreeConfig::default());
    for p in [1, 2, 3] {
        t.neighbor_up(p);
    }
    let gossip = |round| TreeMessage::Gossip {
        id: 5,
        round,
        payload: "x",
    };
    t.handle(at(0), 1, gossip(0));
    let d = t.poll_delivered().expect("delivered");
    assert_eq!((d.id, d.round), (5, 1));
    let mut sent = out(&mut t);
    sent.sort_by_key(|(p, _)| *p);
    assert_eq!(sent, vec![(2, gossip(1)), (3, gossip(1))]);
    t.handle(at(1), 2, gossip(3));
    assert!(t.poll_delivered().is_none(), "delivered twice");
    assert_eq!(out(&mut t), vec![(2, TreeMessage::Prune)]);
    assert_eq!(t.lazy(), &[2]);
    // The next messages go to 2 as announcements only, batched.
    t.broadcast(at(2), 6, "y");
    t.broadcast(at(3), 7, "z");
    let sent = out(&mut t);
    assert!(!sent.iter().any(|(_, m)| matches!(m, TreeMessage::IHave(_))));
    t.handle_timeout(at(2) + TreeConfig::default().ihave_delay);
    let sent = out(&mut t);
    assert_eq!(sent, vec![(2, TreeMessage::IHave(vec![(6, 0), (7, 0)]))]);
    assert_eq!(t.gossip_sent(), 6);
}

#[test]
fn an_announced_message_that_does_not_come_is_grafted_from_each_announcer_in_turn() {
    let config = TreeConfig::default();
    let mut t: Plumtree<u32, &str> = Plumtree::new(config.clone());
    t.neighbor_up(1);
    t.neighbor_up(2);
    t.handle(at(0), 1, TreeMessage::Prune);
    t.handle(at(0), 2, TreeMessage::Prune);
    t.handle(at(10), 1, TreeMessage::IHave(vec![(8, 2)]));
    t.handle(at(20), 2, TreeMessage::IHave(vec![(8, 4)]));
    let due = t.poll_timeout().expect("a graft timer");
    assert_eq!(due, at(10) + config.graft_timeout);
    t.handle_timeout(due);
    assert_eq!(out(&mut t), vec![(1, TreeMessage::Graft { id: Some(8) })]);
    assert_eq!(t.eager(), &[1]);
    t.handle_timeout(due + config.regraft_timeout);
    assert_eq!(out(&mut t), vec![(2, TreeMessage::Graft { id: Some(8) })]);
    // A graft is answered with the message itself.
    t.handle(
        due,
        3,
        TreeMessage::Gossip {
            id: 8,
            round: 1,
            payload: "z",
        },
    );
    out(&mut t);
    t.handle(due, 4, TreeMessage::Graft { id: Some(8) });
    assert_eq!(
        out(&mut t),
        vec![(
            4,
            TreeMessage::Gossip {
                id: 8,
                round: 2,
                payload: "z"
            }
        )]
    );
}

#[test]
fn kept_messages_expire_after_the_retention() {
    let config = TreeConfig::default();
    let mut t: Plumtree<u32, ()> = Plumtree::new(config.clone());
    t.broadcast(at(0), 1, ());
    assert!(t.has(1));
    t.handle_timeout(at(0) + (config.retention - Duration::from_millis(1)));
    assert!(t.has(1));
    t.handle_timeout(at(0) + config.retention);
    assert!(!t.has(1));
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn an_announcer_many_hops_closer_replaces_the_eager_link() {
    let config = TreeConfig {
        optimize_hops: Some(7),
        ..TreeConfig::default()
    };
    let mut t: Plumtree<u32, ()> = Plumtree::new(config);
    t.neighbor_up(1);
    t.neighbor_up(2);
    t.handle(at(0), 2, TreeMessage::Prune);
    // Message 3 came over 1 at hop 10.
    t.handle(
        at(1),
        1,
        TreeMessage::Gossip {
            id: 3,
            round: 9,
            payload: (),
        },
    );
    out(&mut t);
    // 2 had it at hop 3: not enough hops saved.
    let close = 10 - 1 - 7;
    t.handle(at(2), 2, TreeMessage::IHave(vec![(3, close + 1)]));
    assert!(out(&mut t).is_empty());
    t.handle(at(3), 2, TreeMessage::IHave(vec![(3, close)]));
    assert_eq!(
        out(&mut t),
        vec![
            (2, TreeMessage::Graft { id: None }),
            (1, TreeMessage::Prune)
        ]
    );
    assert_eq!((t.eager(), t.lazy()), (&[2][..], &[1][..]));
    assert!(t.poll_delivered().is_some() && t.poll_delivered().is_none());
}

#[test]
fn a_neighbour_that_asks_to_be_one_is_taken_back_and_its_asking_is_not_a_sign_of_life() {
    // A stale disconnect overtook 1's newer request: 1 lost its side of
    // the link, this node kept its own.
    let config = ViewConfig {
        active_size: 1,
        ..ViewConfig::default()
    };
    let mut v = HyParView::new(0u32, config, 8, at(0));
    v.handle(at(0), 1, ViewMessage::Connect);
    drain(&mut v);
    // Full, yet 1 is taken back.
    v.handle(at(900), 1, ViewMessage::Neighbor { high: false });
    assert_eq!(
        drain(&mut v),
        vec![(1, ViewMessage::NeighborReply { accepted: true })]
    );
    // The request did not count as hearing from 1: it is pinged at the
    // next tick.
    v.handle_timeout(at(1000));
    assert_eq!(drain(&mut v), vec![(1, ViewMessage::Ping)]);
}

#[test]
fn an_island_with_no_passive_peers_joins_again_through_a_contact() {
    let mut v = HyParView::new(0u32, ViewConfig::default(), 9, at(0));
    v.join(at(0), &[7]);
    v.handle(at(10), 1, ViewMessage::Connect);
    drain(&mut v);
    for ms in [1000, 2000, 3000] {
        v.handle(at(ms), 1, ViewMessage::Pong);
        v.handle_timeout(at(ms));
    }
    drain(&mut v);
    events(&mut v);
    // 7 fails; 1 alone is left, and no passive peer: join 7 again (the
    // only contact), in the same tick.
    v.handle(at(4000), 1, ViewMessage::Pong);
    v.handle_timeout(at(4000));
    assert_eq!(
        events(&mut v),
        vec![
            ViewEvent::NeighborDown(7),
            ViewEvent::Failed(7),
            ViewEvent::NeighborUp(7)
        ]
    );
    assert!(drain(&mut v).contains(&(7, ViewMessage::Join)));
}

#[test]
fn mapping_a_message_renames_every_peer_and_keeps_the_rest() {
    let m = ViewMessage::Shuffle {
        origin: 1u32,
        ttl: 4,
        peers: vec![2, 3],
    };
    assert_eq!(
        m.map_peers(|p| p * 10),
        ViewMessage::Shuffle {
            origin: 10,
            ttl: 4,
            peers: vec![20, 30]
        }
    );
    let g = TreeMessage::Gossip {
        id: 5,
        round: 2,
        payload: 7u8,
    };
    assert_eq!(
        g.map_payload(|p| vec![p]),
        TreeMessage::Gossip {
            id: 5,
            round: 2,
            payload: vec![7u8]
        }
    );
}
