//! Encryption, keyrings, labels and stream limits over real sockets.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rumor::core::codec;
use rumor::core::message::Message;
use rumor::framing::Framer;
use rumor::{EventFilter, Key, Keyring, MemberEventKind, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn key(b: u8) -> Key {
    Key::from_bytes([b; 32])
}

fn names(n: &[&str]) -> BTreeSet<String> {
    n.iter().map(|s| s.to_string()).collect()
}

async fn encrypted_cluster(names: &[&str], k: Key) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for name in names {
        let mut b = builder(name).keyring(Keyring::new(k));
        if let Some(first) = nodes.first() {
            b = b.seed(first.advertise_addr());
        }
        nodes.push(b.start().await.expect("node starts"));
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_key_is_refused() {
    let nodes = encrypted_cluster(&["a", "b", "c"], key(1)).await;
    wait_converged(&nodes, &names(&["a", "b", "c"])).await;
    let err = builder("intruder")
        .keyring(Keyring::new(key(2)))
        .seed(nodes[0].advertise_addr())
        .join_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect_err("wrong key must not join");
    assert!(matches!(err, rumor::Error::JoinFailed { .. }), "{err}");
    // The joining side can tell the seed was there but refused it.
    assert!(
        err.to_string()
            .contains("answered but could not be authenticated"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in &nodes {
        let listed = n.members().await.expect("members");
        assert!(listed.iter().all(|m| &*m.name != "intruder"));
    }
    let stats = nodes[0].stats().await.expect("stats");
    assert!(stats.transport.auth_failures >= 1, "{:?}", stats.transport);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_key_cannot_join_an_encrypted_cluster() {
    let nodes = encrypted_cluster(&["a", "b"], key(1)).await;
    let err = builder("plain")
        .seed(nodes[0].advertise_addr())
        .join_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect_err("no key must not join");
    assert!(matches!(err, rumor::Error::JoinFailed { .. }), "{err}");
    for n in &nodes {
        let listed = n.members().await.expect("members");
        assert!(listed.iter().all(|m| &*m.name != "plain"));
    }
    let t = nodes[0].stats().await.expect("stats").transport;
    assert!(t.unencrypted_rejected >= 1, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_rejected_and_counted() {
    let nodes = encrypted_cluster(&["a"], key(5)).await;
    let target = nodes[0].advertise_addr();
    let raw = tokio::net::UdpSocket::bind(loopback()).await.expect("bind");
    let framer = Framer::new("", Some(Keyring::new(key(5)))).expect("framer");
    let ping = codec::encode_packet(&Message::Ping {
        seq: 77,
        target: Arc::from("a"),
    });
    let good = framer.seal(&ping).expect("seal");

    // The intact packet is answered with an ack we can decrypt.
    raw.send_to(&good, target).await.expect("send");
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), raw.recv_from(&mut buf))
        .await
        .expect("ack in time")
        .expect("recv");
    let ack = framer.open(&buf[..n]).expect("ack authenticates");
    let decoded = codec::decode(&ack).expect("ack decodes");
    assert!(matches!(decoded.messages[0], Message::Ack { seq: 77 }));

    // Each single-byte alteration is refused and counted.
    let before = nodes[0].stats().await.expect("stats").transport;
    for i in 2..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        raw.send_to(&bad, target).await.expect("send");
    }
    let flips = (good.len() - 2) as u64;
    wait_until("every altered packet is counted", || async {
        let t = nodes[0].stats().await.expect("stats").transport;
        t.auth_failures + t.label_mismatches + t.malformed
            >= before.auth_failures + before.label_mismatches + before.malformed + flips
    })
    .await;
    let after = nodes[0].stats().await.expect("stats");
    assert!(after.transport.auth_failures > before.auth_failures);
    // No altered packet got through to the protocol.
    assert_eq!(after.core.decode_errors, 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), raw.recv_from(&mut buf))
            .await
            .is_err(),
        "an altered ping was answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_across_five_nodes_without_failures() {
    let all = ["a", "b", "c", "d", "e"];
    let nodes = encrypted_cluster(&all, key(1)).await;
    wait_converged(&nodes, &names(&all)).await;
    let mut subs: Vec<_> = nodes
        .iter()
        .map(|n| n.subscribe(EventFilter::MEMBER))
        .collect();
    let settle = || tokio::time::sleep(Duration::from_millis(1500));

    for n in &nodes {
        n.install_key(key(2)).expect("install");
    }
    settle().await;
    for n in &nodes {
        n.use_key(&key(2)).expect("use");
    }
    settle().await;
    for n in &nodes {
        n.remove_key(&key(1)).expect("remove");
        assert_eq!(n.list_keys().expect("list"), vec![key(2)]);
    }
    settle().await;
    settle().await;
    wait_converged(&nodes, &names(&all)).await;
    for (n, rx) in nodes.iter().zip(subs.iter_mut()) {
        let events = drain(rx);
        assert!(
            events.iter().all(|e| e.kind != MemberEventKind::Failed),
            "{} saw a failure during rotation: {events:?}",
            n.name()
        );
        let t = n.stats().await.expect("stats").transport;
        assert_eq!(t.auth_failures, 0, "{}: {t:?}", n.name());
    }
    // The old key no longer gets in.
    let err = builder("old")
        .keyring(Keyring::new(key(1)))
        .seed(nodes[0].advertise_addr())
        .join_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect_err("old key refused");
    assert!(matches!(err, rumor::Error::JoinFailed { .. }));
    assert!(nodes[0].remove_key(&key(2)).is_err(), "primary is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_with_different_labels_stay_apart() {
    let blue1 = builder("blue1").label("blue").start().await.expect("start");
    let blue2 = builder("blue2")
        .label("blue")
        .join_timeout(Duration::from_secs(1))
        .seed(blue1.advertise_addr())
        .start()
        .await
        .expect("blue2 joins blue");
    let green1 = builder("green1")
        .label("green")
        .join_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect("start");
    let err = builder("green2")
        .label("green")
        .seed(blue1.advertise_addr())
        .join_timeout(Duration::from_secs(1))
        .start()
        .await
        .expect_err("green cannot join blue");
    assert!(matches!(err, rumor::Error::JoinFailed { .. }));
    assert!(
        err.to_string()
            .contains("answered but could not be authenticated"),
        "{err}"
    );
    // A seed address where nothing listens is silence, not a refusal.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let err = green1.join([nobody]).await.expect_err("nobody there");
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(!err.to_string().contains("authenticated"), "{err}");
    // An explicit join across labels fails too, in both directions.
    assert!(green1.join([blue2.advertise_addr()]).await.is_err());
    assert!(blue2.join([green1.advertise_addr()]).await.is_err());
    wait_converged(&[blue1, blue2], &names(&["blue1", "blue2"])).await;
    assert_eq!(alive(&green1).await, names(&["green1"]));
    let t = green1.stats().await.expect("stats").transport;
    assert!(t.label_mismatches >= 1, "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limits_cut_off_violators_and_the_node_carries_on() {
    let a = builder("a")
        .stream_timeout(Duration::from_millis(300))
        .max_streams(2)
        .start()
        .await
        .expect("a starts");
    let addr = a.advertise_addr();

    // A frame announcing more than max_stream_size.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    assert!(rest.is_empty());

    // Silent connections: two hold the slots until they time out; each of
    // the others evicts the oldest still-silent one (none is ever
    // authentic here) or, while that one is within its grace, is refused:
    // three are cut off at once.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    wait_until("limits are counted", || async {
        let t = a.stats().await.expect("stats").transport;
        t.streams_oversize >= 1
            && t.stream_timeouts >= 2
            && t.streams_evicted + t.streams_rejected_busy >= 3
    })
    .await;
    drop(idle);

    // Still serving: a node joins.
    let b = builder("b").seed(addr).start().await.expect("b joins");
    wait_converged(&[a, b], &names(&["a", "b"])).await;
}
