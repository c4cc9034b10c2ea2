//! Membership over real sockets on 127.0.0.1: join, convergence, failure
//! detection, graceful leave, IPv6, DNS seeds.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use rumor::{EventFilter, MemberEventKind, MemberState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_converge_then_report_a_failure_and_a_leave() {
    let mut nodes = start_cluster("n", 10, fast_config()).await;

    let mut subs: Vec<_> = nodes
        .iter()
        .map(|n| n.subscribe(EventFilter::MEMBER))
        .collect();

    // n9 stops without leaving: everyone else must find it failed.
    let crashed = nodes.pop().expect("ten nodes");
    crashed.shutdown().await.expect("shutdown");
    let ok = try_wait_until(|| all_hold(&nodes, "n9", MemberState::Dead)).await;
    assert!(
        ok,
        "not every node reports n9 failed: {}",
        views(&nodes, "n9").await
    );
    for (i, rx) in subs.iter_mut().enumerate().take(9) {
        let events = drain(rx);
        assert!(
            reported(&events, MemberEventKind::Failed, "n9"),
            "n{i} got no failed event for n9: {events:?}"
        );
        assert!(!reported(&events, MemberEventKind::Left, "n9"));
    }

    // n8 leaves gracefully: everyone else must report it left.
    let leaver = nodes.pop().expect("nine nodes");
    leaver
        .leave(Duration::from_secs(10))
        .await
        .expect("leave completes");
    leaver.shutdown().await.expect("shutdown");
    let ok = try_wait_until(|| all_hold(&nodes, "n8", MemberState::Left)).await;
    assert!(
        ok,
        "not every node reports n8 left: {}",
        views(&nodes, "n8").await
    );
    for (i, rx) in subs.iter_mut().enumerate().take(8) {
        let events = drain(rx);
        assert!(
            reported(&events, MemberEventKind::Left, "n8"),
            "n{i} got no left event for n8: {events:?}"
        );
        assert!(!reported(&events, MemberEventKind::Failed, "n8"));
    }
    let rest: BTreeSet<String> = (0..8).map(|i| format!("n{i}")).collect();
    wait_converged(&nodes, &rest).await;
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_reports_answers_and_fails_naming_the_seeds() {
    let a = builder("a").start().await.expect("a starts");
    let b = builder("b").start().await.expect("b starts");
    assert_eq!(b.join([a.advertise_addr()]).await.expect("join"), 1);
    // A node joining through itself alone is the first node: nothing to do.
    assert_eq!(a.join([a.advertise_addr()]).await.expect("self join"), 0);

    // Nobody listens on a fresh port that was bound and released.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port");
    let lonely = builder("c")
        .join_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect("c starts");
    let started = std::time::Instant::now();
    let err = lonely.join([dead]).await.expect_err("no seed answers");
    assert!(started.elapsed() < Duration::from_secs(10));
    let msg = err.to_string();
    assert!(msg.contains(&dead.to_string()), "{msg}");
    for n in [a, b, lonely] {
        n.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_seeds_and_tags() {
    let a = builder("a")
        .tag("role", "db")
        .start()
        .await
        .expect("a starts");
    let port = a.advertise_addr().port();
    let b = builder("b")
        .seed(format!("localhost:{port}"))
        .start()
        .await
        .expect("b joins through localhost");
    wait_until("b sees a's tags", || async {
        b.members()
            .await
            .expect("members")
            .iter()
            .any(|m| &*m.name == "a" && m.tags.get("role").map(String::as_str) == Some("db"))
    })
    .await;
    let mut rx = a.subscribe(EventFilter::MEMBER);
    let mut tags = rumor::Tags::new();
    tags.insert("role".into(), "web".into());
    b.set_tags(tags).await.expect("set tags");
    wait_until("a sees b's new tags", || async {
        a.members()
            .await
            .expect("members")
            .iter()
            .any(|m| &*m.name == "b" && m.tags.get("role").map(String::as_str) == Some("web"))
    })
    .await;
    assert!(reported(&drain(&mut rx), MemberEventKind::Updated, "b"));
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback() {
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    if std::net::UdpSocket::bind(v6).is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let a = builder("a").bind(v6).start().await.expect("a starts");
    let b = builder("b")
        .bind(v6)
        .seed(a.advertise_addr())
        .start()
        .await
        .expect("b joins over IPv6");
    let both: BTreeSet<String> = ["a", "b"].map(String::from).into();
    wait_converged(&[a, b], &both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertise_differs_from_bind() {
    let a = builder("a")
        .bind("0.0.0.0:0".parse().expect("addr"))
        .advertise("127.0.0.1:0".parse().expect("addr"))
        .start()
        .await
        .expect("a starts");
    assert!(a.local_addr().ip().is_unspecified());
    assert_eq!(a.advertise_addr().port(), a.local_addr().port());
    assert!(a.advertise_addr().ip().is_loopback());
    let b = builder("b")
        .seed(a.advertise_addr())
        .start()
        .await
        .expect("b joins");
    assert_eq!(a.local().await.expect("local").addr, a.advertise_addr());
    let both: BTreeSet<String> = ["a", "b"].map(String::from).into();
    wait_converged(&[a, b], &both).await;
    let err = builder("c")
        .bind("0.0.0.0:0".parse().expect("addr"))
        .start()
        .await
        .expect_err("unspecified bind needs an advertise address");
    assert!(err.to_string().contains("advertise"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_node() {
    let a = builder("a").start().await.expect("a starts");
    let addr = a.local_addr();
    let b = builder("b").seed(addr).start().await.expect("b joins");
    drop(a);
    // The task ends and releases its sockets: the port can be bound again.
    wait_until("a's port is free again", || async {
        tokio::net::UdpSocket::bind(addr).await.is_ok()
            && tokio::net::TcpListener::bind(addr).await.is_ok()
    })
    .await;
    wait_until("b finds a failed", || async {
        state_of(&b, "a").await == Some(MemberState::Dead)
    })
    .await;
    b.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_its_old_incarnation_starts_above_it() {
    let fresh = builder("inc-fresh").start().await.expect("starts");
    assert!(fresh.local().await.expect("local").incarnation < 42);
    let resumed = builder("inc-resumed")
        .incarnation(41)
        .start()
        .await
        .expect("starts");
    assert_eq!(resumed.local().await.expect("local").incarnation, 42);
    // Others learn the resumed incarnation on join.
    let other = builder("inc-other")
        .seed(resumed.advertise_addr())
        .start()
        .await
        .expect("joins");
    let ok = try_wait_until(|| async {
        other.members().await.is_ok_and(|ms| {
            ms.iter()
                .any(|m| &*m.name == "inc-resumed" && m.incarnation >= 42)
        })
    })
    .await;
    assert!(ok, "the joiner never saw incarnation 42");
    for n in [fresh, resumed, other] {
        n.shutdown().await.expect("shutdown");
    }
}

/// A node whose process is gone leaves a closed port: the kernel answers
/// pings to it with ICMP "port unreachable", the survivors read that from
/// their sockets' error queues and declare it dead on that evidence.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_reported_unreachable_and_its_node_dead() {
    let mut nodes = start_cluster("u", 5, fast_config()).await;
    let gone = nodes.pop().expect("five nodes");
    gone.shutdown().await.expect("shutdown");
    wait_until("every survivor marks u4 dead", || {
        all_hold(&nodes, "u4", MemberState::Dead)
    })
    .await;
    let mut reports = 0;
    for n in &nodes {
        reports += n.stats().await.expect("stats").core.unreachable;
    }
    assert!(
        reports > 0,
        "no survivor read a port-unreachable report for u4's closed port"
    );
    // Gossip still goes to the recently dead (so they can refute), and each
    // datagram to u4's port draws an ICMP error that the kernel reports
    // through the next call on the socket: a send to a live member right
    // after it must still go out.
    for i in 0..10 {
        nodes[0]
            .send_event("tick", format!("{i}").as_bytes())
            .await
            .expect("event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in &nodes {
        let t = n.stats().await.expect("stats").transport;
        assert_eq!(
            t.udp_send_errors,
            0,
            "{}: datagrams lost to send errors",
            n.name()
        );
    }
}
