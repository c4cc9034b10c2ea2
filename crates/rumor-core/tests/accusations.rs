//! False accusations reach the member they accuse: a forged death or leave
//! is sent to the accused by chosen members (the eager wave skips members
//! already gone), and a sender still repeating an overturned accusation is
//! told the current claim directly.

mod common;

use std::net::SocketAddr;

use common::{name, secs, Net};
use rumor_core::codec;
use rumor_core::message::Message;
use rumor_core::{Config, Instant, MemberEventKind, MemberState, Node};

/// An address outside the cluster, where the forger sends from.
fn forger() -> SocketAddr {
    "127.66.0.1:7946".parse().unwrap()
}

#[test]
fn forged_leaves_are_refuted_within_seconds_not_at_the_next_push_pull() {
    // Before the accused was told directly, an eager wave could spend the
    // leave's whole budget on live members and the accused heard of it only
    // at its next push-pull (a minute at this size): every victim here must
    // be back within a few probe intervals.
    let n = 64;
    let mut net = Net::converged(n, Config::lan());
    net.run_for(secs(5.0));
    let all: Vec<usize> = (0..n).collect();
    for victim in [3usize, 11, 20, 37, 42, 50, 58, 63] {
        let before = net.node(victim).local().incarnation;
        let forged = Message::Dead {
            incarnation: before + 1,
            name: name(victim).into(),
            from: name(victim).into(), // a leave, in the victim's name
        };
        let relay = (victim + 7) % n;
        let start = net.now;
        net.with(relay, |node, now| {
            node.handle_datagram(now, forger(), &codec::encode_packet(&forged))
        });
        let left = net
            .seen(MemberEventKind::Left, victim)
            .filter(|s| s.at >= start)
            .count();
        assert!(
            left > 0,
            "victim {victim}: the forged leave was not accepted"
        );
        assert!(
            net.run_until_true(secs(10.0), |net| net.all_see_alive(&all)),
            "victim {victim}: still gone somewhere 10 s after a forged leave"
        );
        assert!(net.node(victim).local().incarnation > before + 1);
        net.run_for(secs(3.0));
    }
}

#[test]
fn a_sender_repeating_an_overturned_suspicion_is_told_the_current_claim() {
    let me: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let stale_sender: SocketAddr = "127.0.0.3:7001".parse().unwrap();
    let mut node = Node::new("accused", me, Config::lan(), 7).unwrap();
    let t = Instant::from_micros(1_000_000);
    let suspect = |incarnation| Message::Suspect {
        incarnation,
        name: "accused".into(),
        from: "someone".into(),
    };
    let own = node.local().incarnation;
    node.handle_datagram(t, forger(), &codec::encode_packet(&suspect(own)));
    let refuted = node.local().incarnation;
    assert!(refuted > own, "the suspicion was not refuted");
    while node.poll_transmit().is_some() {}

    node.handle_datagram(t, stale_sender, &codec::encode_packet(&suspect(own)));
    let mut told = false;
    while let Some(tx) = node.poll_transmit() {
        if tx.to != stale_sender {
            continue;
        }
        let msgs = codec::decode(&tx.payload).unwrap().messages;
        told |= msgs.iter().any(|m| {
            matches!(m, Message::Alive(a)
                if &*a.name == "accused" && a.incarnation == refuted && a.addr == me)
        });
    }
    assert!(told, "the stale sender was not told the current claim");
    assert_eq!(
        node.local().incarnation,
        refuted,
        "a stale claim bumped the incarnation"
    );
    assert_eq!(node.local().state, MemberState::Alive);
}
