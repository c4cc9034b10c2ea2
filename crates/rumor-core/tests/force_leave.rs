//! Force-leave in the in-test network: a crashed member is marked left on
//! every member; with prune it is forgotten everywhere at once (not after
//! the tombstone timeout); a live member force-left refutes and stays
//! alive, and once pruned comes back through admission; stale and forged
//! reaps are ignored or refuted.

mod common;

use std::net::SocketAddr;

use common::{name, secs, Net};
use rumor_core::codec;
use rumor_core::message::Message;
use rumor_core::{Config, Error, ForceLeave, ForceLeaveError, MemberEventKind, MemberState};

const N: usize = 5;
const VICTIM: usize = 4;

fn prune() -> ForceLeave {
    ForceLeave {
        prune: true,
        force: false,
    }
}

fn forced() -> ForceLeave {
    ForceLeave {
        prune: false,
        force: true,
    }
}

/// A converged cluster whose member [`VICTIM`] crashed and is seen dead
/// (or at least suspect) by node 0.
fn with_crashed_victim() -> Net {
    let mut net = Net::converged(N, Config::lan());
    net.crash(VICTIM);
    let who = name(VICTIM);
    assert!(
        net.run_until_true(secs(60.0), |net| {
            net.state_of(0, &who) == Some(MemberState::Dead)
        }),
        "node 0 never saw the crashed member dead"
    );
    net
}

fn others() -> std::ops::Range<usize> {
    0..VICTIM
}

#[test]
fn force_leave_of_a_crashed_member_shows_it_left_everywhere() {
    let mut net = with_crashed_victim();
    let who = name(VICTIM);
    let mut result = Ok(());
    net.with(1, |node, now| {
        result = node.force_leave(now, &who, ForceLeave::default())
    });
    result.unwrap();
    assert!(
        net.run_until_true(secs(10.0), |net| {
            others().all(|o| net.state_of(o, &who) == Some(MemberState::Left))
        }),
        "not left everywhere: {:?}",
        others().map(|o| net.state_of(o, &who)).collect::<Vec<_>>()
    );
    // Reported as a leave on every member.
    for o in others() {
        assert!(
            net.seen(MemberEventKind::Left, VICTIM)
                .any(|s| s.observer == o),
            "node {o} saw no leave"
        );
    }
    // A tombstone, not reaped: without prune it stays listed.
    net.run_for(secs(30.0));
    assert!(others().all(|o| net.state_of(o, &who) == Some(MemberState::Left)));
}

#[test]
fn prune_forgets_the_member_everywhere_at_once() {
    let mut net = with_crashed_victim();
    let who = name(VICTIM);
    let mut result = Ok(());
    net.with(2, |node, now| result = node.force_leave(now, &who, prune()));
    result.unwrap();
    // The tombstone timeout is an hour: anything under it is the prune.
    assert!(
        net.run_until_true(secs(10.0), |net| {
            others().all(|o| net.state_of(o, &who).is_none())
        }),
        "still listed: {:?}",
        others().map(|o| net.state_of(o, &who)).collect::<Vec<_>>()
    );
    for o in others() {
        assert!(
            net.seen(MemberEventKind::Reaped, VICTIM)
                .any(|s| s.observer == o),
            "node {o} reported no reap"
        );
        assert_eq!(net.node(o).num_members(), N - 1, "node {o}");
        assert_eq!(net.node(o).num_live(), N - 1, "node {o}");
    }
    // Push-pulls between the survivors do not bring it back.
    net.run_for(secs(120.0));
    assert!(others().all(|o| net.state_of(o, &who).is_none()));
}

#[test]
fn a_pruned_member_that_comes_back_is_admitted_again() {
    let mut net = with_crashed_victim();
    let who = name(VICTIM);
    net.with(0, |node, now| node.force_leave(now, &who, prune()).unwrap());
    assert!(net.run_until_true(secs(10.0), |net| {
        others().all(|o| net.state_of(o, &who).is_none())
    }));
    // It restarts with a fresh state and joins again.
    net.boot(VICTIM);
    let seed = net.addrs[0];
    net.with(VICTIM, |node, now| node.join(now, &[seed]));
    let all: Vec<usize> = (0..N).collect();
    assert!(
        net.run_until_true(secs(30.0), |net| net.all_see_alive(&all)),
        "the restarted member was not admitted again everywhere"
    );
}

#[test]
fn a_live_member_refuses_force_leave_without_force() {
    let mut net = Net::converged(N, Config::lan());
    let who = name(VICTIM);
    let mut result = Ok(());
    net.with(0, |node, now| {
        result = node.force_leave(now, &who, ForceLeave::default())
    });
    assert_eq!(
        result,
        Err(Error::ForceLeave(ForceLeaveError::Alive(who.clone())))
    );
    net.with(0, |node, now| {
        result = node.force_leave(now, "nobody", prune())
    });
    assert_eq!(
        result,
        Err(Error::ForceLeave(ForceLeaveError::UnknownMember(
            "nobody".into()
        )))
    );
    net.with(0, |node, now| {
        result = node.force_leave(now, &name(0), forced())
    });
    assert_eq!(
        result,
        Err(Error::ForceLeave(ForceLeaveError::Local(name(0))))
    );
    // Nothing was sent about it.
    assert!(net.seen(MemberEventKind::Left, VICTIM).next().is_none());
}

#[test]
fn a_live_member_force_left_refutes_and_stays_alive() {
    let mut net = Net::converged(N, Config::lan());
    let who = name(VICTIM);
    let before = net.node(VICTIM).local().incarnation;
    let start = net.now;
    net.with(0, |node, now| {
        node.force_leave(now, &who, forced()).unwrap()
    });
    assert_eq!(net.state_of(0, &who), Some(MemberState::Left));
    let all: Vec<usize> = (0..N).collect();
    assert!(
        net.run_until_true(secs(10.0), |net| net.all_see_alive(&all)),
        "the live member was not back everywhere"
    );
    assert!(net.node(VICTIM).local().incarnation > before);
    assert!(net
        .seen(MemberEventKind::Left, VICTIM)
        .any(|s| s.at >= start));
}

#[test]
fn a_live_member_force_left_with_prune_comes_back_everywhere() {
    let mut net = Net::converged(N, Config::lan());
    let who = name(VICTIM);
    let before = net.node(VICTIM).local().incarnation;
    let opts = ForceLeave {
        prune: true,
        force: true,
    };
    net.with(0, |node, now| node.force_leave(now, &who, opts).unwrap());
    assert_eq!(net.state_of(0, &who), None, "not pruned at the origin");
    let all: Vec<usize> = (0..N).collect();
    assert!(
        net.run_until_true(secs(10.0), |net| net.all_see_alive(&all)),
        "the live member was not admitted back everywhere"
    );
    assert!(net.node(VICTIM).local().incarnation > before);
}

/// An address outside the cluster, where a forger sends from.
fn forger() -> SocketAddr {
    "127.66.0.1:7946".parse().unwrap()
}

#[test]
fn a_reap_older_than_the_members_incarnation_is_ignored() {
    let mut net = Net::converged(N, Config::lan());
    let who = name(VICTIM);
    let inc = net.state_inc(1, &who);
    assert!(inc > 0);
    let stale = Message::Reap {
        incarnation: inc - 1,
        name: who.clone().into(),
    };
    net.with(1, |node, now| {
        node.handle_datagram(now, forger(), &codec::encode_packet(&stale))
    });
    assert_eq!(net.state_of(1, &who), Some(MemberState::Alive));
    // An implausible jump is refused too (counted, not applied).
    let absurd = Message::Reap {
        incarnation: u64::MAX,
        name: who.clone().into(),
    };
    net.with(1, |node, now| {
        node.handle_datagram(now, forger(), &codec::encode_packet(&absurd))
    });
    assert_eq!(net.state_of(1, &who), Some(MemberState::Alive));
}

#[test]
fn a_forged_reap_of_a_live_member_is_refuted() {
    let mut net = Net::converged(N, Config::lan());
    let who = name(VICTIM);
    let inc = net.state_inc(1, &who);
    let forged = Message::Reap {
        incarnation: inc,
        name: who.clone().into(),
    };
    net.with(1, |node, now| {
        node.handle_datagram(now, forger(), &codec::encode_packet(&forged))
    });
    assert_eq!(net.state_of(1, &who), None, "the reap was not applied");
    let all: Vec<usize> = (0..N).collect();
    assert!(
        net.run_until_true(secs(10.0), |net| net.all_see_alive(&all)),
        "the accused was not back everywhere"
    );
    assert!(net.node(VICTIM).local().incarnation > inc);
}

/// The incarnation of `who` as node `o` sees it.
trait Inc {
    fn state_inc(&self, o: usize, who: &str) -> u64;
}

impl Inc for Net {
    fn state_inc(&self, o: usize, who: &str) -> u64 {
        self.node(o).member(who).map_or(0, |m| m.incarnation)
    }
}
