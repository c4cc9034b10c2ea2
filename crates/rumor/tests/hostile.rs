//! Hostile peers against real nodes on 127.0.0.1: a forger builds valid
//! packets with rumor's own codec and sends them from a socket of its own.
//! Each test checks that the attack is bounded and counted, and that the
//! cluster carries on: a node stopped without leaving is still found dead
//! and a user event still reaches everyone.
//!
//! Every invented member claims an address in 127.0.0.0/8 where nothing
//! listens: the nodes' admission pings go nowhere else.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rumor::core::aggregate::Share;
use rumor::core::codec;
use rumor::core::limits::Limit;
use rumor::core::message::{Alive, Message};
use rumor::core::state::{Delta, Entry};
use rumor::core::UserEvent;
use rumor::framing::Framer;
use rumor::{Event, MemberState, Node};
use tokio::net::UdpSocket;

/// Sends forged datagrams from its own loopback socket.
struct Forger {
    socket: UdpSocket,
    framer: Framer,
}

impl Forger {
    async fn new() -> Forger {
        Forger {
            socket: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
            framer: Framer::new("", None).expect("framer"),
        }
    }

    /// One datagram carrying `messages`, as a node would pack them.
    async fn send(&self, to: SocketAddr, messages: &[Message]) {
        let mut body = Vec::new();
        codec::begin_packet(&mut body);
        for m in messages {
            codec::encode_message(m, &mut body);
        }
        let packet = self.framer.seal(&body).expect("seal");
        self.socket.send_to(&packet, to).await.expect("send");
    }
}

/// An alive claim for an invented member at an address where nobody listens.
fn ghost(i: u32) -> Alive {
    Alive {
        incarnation: 1,
        name: format!("ghost-{i}").into(),
        addr: SocketAddr::from(([127, 77, (i >> 8) as u8, i as u8], 9)),
        protocol: (1, 1),
        tags: Arc::new(Default::default()),
    }
}

async fn member_incarnation(node: &Node, name: &str) -> u64 {
    node.members()
        .await
        .expect("running")
        .into_iter()
        .find(|m| &*m.name == name)
        .map(|m| m.incarnation)
        .expect("member known")
}

/// Normal service after an attack: the last node, stopped without leaving,
/// is found dead by every other within `bound`, and a user event from the
/// first reaches every survivor.
async fn service_goes_on(mut nodes: Vec<Node>, bound: Duration) {
    let victim = nodes.pop().expect("nodes");
    let victim_name = victim.name().to_string();
    let started = Instant::now();
    victim.shutdown().await.expect("shutdown");
    wait_until("every survivor marks the stopped node dead", || async {
        for n in &nodes {
            if state_of(n, &victim_name).await != Some(MemberState::Dead) {
                return false;
            }
        }
        true
    })
    .await;
    let took = started.elapsed();
    assert!(
        took <= bound,
        "detection took {took:?}, over the normal bound {bound:?}"
    );
    let mut subs: Vec<_> = nodes.iter().map(|n| n.events()).collect();
    nodes[0]
        .send_event("after-attack", b"still here")
        .await
        .expect("event");
    for (n, rx) in nodes.iter().zip(subs.iter_mut()) {
        let got = tokio::time::timeout(DEADLINE, async {
            loop {
                match rx.recv().await {
                    Ok(Event::User(ev)) if ev.name == "after-attack" => return true,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return false,
                }
            }
        })
        .await;
        assert_eq!(got, Ok(true), "{} did not get the user event", n.name());
    }
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

/// The detection bound of `fast_config` on a loaded test machine: a probe
/// round of a few members, the port-unreachable path or the Lifeguard
/// suspicion timeout, and slack.
const DETECTION_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invented_members_admits_none() {
    let nodes = start_cluster("f", 4, fast_config()).await;
    let target = nodes[0].advertise_addr();
    let forger = Forger::new().await;
    // 60,000 alive claims, 30 to a datagram, for names nobody holds at
    // addresses where nobody answers.
    for batch in 0..2000u32 {
        let claims: Vec<Message> = (0..30)
            .map(|k| Message::Alive(ghost(batch * 30 + k)))
            .collect();
        forger.send(target, &claims).await;
        if batch % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_until("the target has counted the flood", || async {
        let s = nodes[0].stats().await.expect("stats").core;
        s.members_pending + s.refused(Limit::PendingMembers) >= 1000
    })
    .await;
    let stats = nodes[0].stats().await.expect("stats");
    let ghosts = nodes[0]
        .members()
        .await
        .expect("members")
        .into_iter()
        .filter(|m| m.name.starts_with("ghost-"))
        .count();
    assert_eq!(ghosts, 0, "invented members were admitted");
    assert_eq!(stats.core.members_verified, 0);
    assert!(
        stats.core.refused(Limit::PendingMembers) > 0,
        "the pending table's bound was never reached: {:?}",
        stats.core
    );
    assert!(
        stats.awareness <= 2,
        "local health degraded to {} by the flood",
        stats.awareness
    );
    service_goes_on(nodes, DETECTION_BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_maximum_incarnation_cannot_kill_a_live_member() {
    let nodes = start_cluster("m", 4, fast_config()).await;
    let forger = Forger::new().await;
    let target = nodes[0].advertise_addr();
    // At the maximum: refused outright as an implausible jump.
    forger
        .send(
            target,
            &[Message::Dead {
                incarnation: u64::MAX,
                name: "m1".into(),
                from: "m2".into(),
            }],
        )
        .await;
    wait_until("the implausible claim is counted", || async {
        let s = nodes[0].stats().await.expect("stats").core;
        s.refused(Limit::Counter) >= 1
    })
    .await;
    assert_eq!(state_of(&nodes[0], "m1").await, Some(MemberState::Alive));
    // Just above the current incarnation: accepted and spread, then refuted
    // by m1 itself, which takes a higher incarnation.
    let known = member_incarnation(&nodes[0], "m1").await;
    forger
        .send(
            target,
            &[Message::Dead {
                incarnation: known + 1000,
                name: "m1".into(),
                from: "m2".into(),
            }],
        )
        .await;
    wait_until("m1 refutes and everyone sees it alive again", || async {
        for n in &nodes {
            if state_of(n, "m1").await != Some(MemberState::Alive)
                || member_incarnation(n, "m1").await <= known + 1000
            {
                return false;
            }
        }
        true
    })
    .await;
    service_goes_on(nodes, DETECTION_BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_counters_neither_freeze_state_nor_wrap_clocks_nor_break_aggregation() {
    let nodes = start_cluster("c", 4, fast_config()).await;
    let forger = Forger::new().await;
    let target = nodes[0].advertise_addr();

    // A state delta for c1 at the maximum version: refused.
    nodes[1].state_set("role", "db").await.expect("state");
    wait_until("c0 holds c1's state", || async {
        nodes[0].state_of("c1").await.expect("state").is_some()
    })
    .await;
    let forged = Delta {
        owner: "c1".into(),
        reset: false,
        from: 0,
        through: 0,
        entries: vec![(
            "role".into(),
            Entry {
                value: Some("forged".into()),
                version: u64::MAX,
            },
        )],
    };
    forger.send(target, &[Message::StateDelta(forged)]).await;
    // State for a name that is no member: refused.
    let stray = Delta {
        owner: "nobody".into(),
        reset: false,
        from: 0,
        through: 0,
        entries: vec![(
            "k".into(),
            Entry {
                value: Some("v".into()),
                version: 1,
            },
        )],
    };
    forger.send(target, &[Message::StateDelta(stray)]).await;
    wait_until("both deltas are refused and counted", || async {
        let s = nodes[0].stats().await.expect("stats").core;
        s.refused(Limit::Counter) >= 1 && s.refused(Limit::State) >= 1
    })
    .await;
    assert!(nodes[0].state_of("nobody").await.expect("state").is_none());
    nodes[1].state_set("role", "cache").await.expect("state");
    wait_until("c1's next write reaches c0", || async {
        let s = nodes[0].state_of("c1").await.expect("state");
        s.and_then(|m| m.get("role").cloned()).as_deref() == Some("cache")
    })
    .await;

    // A user event at Lamport time u64::MAX: delivered once, and the next
    // local event still gets a larger time instead of wrapping to 0.
    let mut rx = nodes[0].events();
    let forged = UserEvent {
        ltime: u64::MAX,
        origin: "c3".into(),
        name: "forged".into(),
        payload: vec![],
    };
    forger.send(target, &[Message::UserEvent(forged)]).await;
    wait_until("the forged event is delivered", || {
        let got = std::iter::from_fn(|| rx.try_recv().ok())
            .any(|e| matches!(e, Event::User(ev) if ev.name == "forged"));
        async move { got }
    })
    .await;
    let first = nodes[0].send_event("next", b"").await.expect("event");
    let second = nodes[0].send_event("next", b"").await.expect("event");
    assert!(first > 1 << 40, "the clock wrapped: {first}");
    assert!(second > first, "clock stuck at {first}");

    // An aggregation transfer at the maximum epoch, and one whose shares
    // would overflow to infinity: both refused.
    let share = Share {
        s: 1e308,
        w: 1.0,
        c: 1.0,
        u: 0.0,
        min: 1.0,
        max: 1.0,
    };
    for (epoch, s) in [(u64::MAX, 1.0), (0, 1e308)] {
        let shares = vec![("load".to_string(), Share { s, ..share })];
        let msg = Message::Aggregate {
            sender: "c2".into(),
            epoch,
            seq: 1,
            shares,
        };
        forger.send(target, &[msg]).await;
    }
    wait_until("both transfers are refused", || async {
        let s = nodes[0].stats().await.expect("stats").core;
        s.refused(Limit::Aggregate) >= 2
    })
    .await;
    for (i, n) in nodes.iter().enumerate() {
        n.state_set("load", &format!("{}", i + 1))
            .await
            .expect("state");
        n.track_aggregate("load").await.expect("track");
    }
    wait_until("the average of 1..4 is still found", || async {
        match nodes[0].aggregate("load").await.expect("aggregate") {
            Some(e) => (e.avg - 2.5).abs() < 0.05 && e.avg.is_finite(),
            None => false,
        }
    })
    .await;
    service_goes_on(nodes, DETECTION_BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_with_a_taken_name_is_refused_and_cannot_unseat_it() {
    let nodes = start_cluster("t", 4, fast_config()).await;
    let holder = nodes[1].advertise_addr();
    let before = member_incarnation(&nodes[0], "t1").await;
    let err = builder("t1")
        .seed(nodes[0].advertise_addr())
        .start()
        .await
        .expect_err("an impostor's join must fail");
    match err {
        rumor::Error::NameConflict { name, holder: at } => {
            assert_eq!(name, "t1");
            assert_eq!(at, holder, "the error names the holder's address");
        }
        other => panic!("wrong error: {other}"),
    }
    // The impostor is gone (its start failed). Nobody may have seen t1
    // leave, fail or move: watch every view for two probe rounds' worth.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        for n in &nodes {
            let m = n
                .members()
                .await
                .expect("members")
                .into_iter()
                .find(|m| &*m.name == "t1")
                .expect("t1 known");
            assert_eq!(
                m.state,
                MemberState::Alive,
                "{} sees t1 {:?}",
                n.name(),
                m.state
            );
            assert_eq!(m.addr, holder, "{} moved t1 to {}", n.name(), m.addr);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let conflicts: u64 = {
        let mut total = 0;
        for n in &nodes {
            total += n
                .stats()
                .await
                .expect("stats")
                .core
                .refused(Limit::NameHeld);
        }
        total
    };
    assert!(conflicts > 0, "no member counted the conflicting claim");
    assert!(member_incarnation(&nodes[0], "t1").await >= before);
    let names: BTreeSet<String> = (0..4).map(|i| format!("t{i}")).collect();
    wait_converged(&nodes, &names).await;
    service_goes_on(nodes, DETECTION_BOUND).await;
}
