//! Hostile stream connections against a real node on 127.0.0.1: idle
//! connections and a slowloris from one address do not keep a legitimate
//! node from joining; a frame announcing a huge length without the label or
//! key is cut off after at most the pre-auth budget; the per-source cap is
//! enforced and counted.
//!
//! The attacker's connections come from 127.0.0.2 (bound before
//! connecting), the legitimate nodes' from 127.0.0.1; nothing leaves
//! loopback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use rumor::framing::Framer;
use rumor::{Key, Keyring, Node, TransportStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The pre-auth budget's default.
const BUDGET: u64 = 64 * 1024;

fn key(b: u8) -> Key {
    Key::from_bytes([b; 32])
}

/// A connection to `to` from `from` (an address of 127.0.0.0/8).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::from((from, 0))).expect("bind");
    s.connect(to).await.expect("connect")
}

async fn transport(n: &Node) -> TransportStats {
    n.stats().await.expect("stats").transport
}

/// Whether the node closed `s` within `limit` (a read returns end of
/// stream or an error), while we keep writing `junk` into it.
async fn closed_within(s: &mut TcpStream, junk: &[u8], limit: Duration) -> bool {
    let (mut r, mut w) = s.split();
    let write = async {
        // Bounded: at most 64 writes of the junk.
        for _ in 0..64 {
            if w.write_all(junk).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, async {
        tokio::select! {
            _ = write => {}
            _ = read => {}
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_slowloris_do_not_stall_a_join() {
    let ring = Keyring::new(key(1));
    let seed = builder("seed")
        .keyring(ring.clone())
        .stream_timeout(Duration::from_secs(3))
        .start()
        .await
        .expect("seed starts");
    let addr = seed.advertise_addr();

    // A slowloris: a plausible header length, then a byte every 100 ms.
    let mut slow = connect_from([127, 0, 0, 2], addr).await;
    slow.write_all(&200u32.to_be_bytes()).await.expect("write");
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if slow.write_all(&[0xB1]).await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    // 300 idle connections from the same address.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from([127, 0, 0, 2], addr).await);
    }

    // A legitimate node joins at once (the old limits let the idle
    // connections take every stream slot for the whole stream timeout).
    let t0 = Instant::now();
    let joiner = builder("joiner")
        .keyring(ring)
        .join_timeout(Duration::from_secs(2))
        .seed(addr)
        .start()
        .await
        .expect("the joiner gets in while 300 connections sit idle");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "join took {took:?}");
    let nodes = [seed, joiner];
    wait_converged(&nodes, &names(&["seed", "joiner"])).await;

    let cut_after = trickle.await.expect("trickle task");
    let cut_after = cut_after.expect("the slowloris was never cut off");
    assert!(
        cut_after < Duration::from_secs(6),
        "slowloris lived {cut_after:?} (deadline 3 s)"
    );
    let t = transport(&nodes[0]).await;
    assert!(t.streams_refused_per_source >= 300 - 16, "{t:?}");
    assert!(t.stream_timeouts >= 1, "{t:?}");
    drop(idle);
}

/// Idle connections spread over many sources fill every slot; each new
/// connection then evicts the oldest unauthenticated one, and a real peer,
/// authentic within a round trip, gets in and is never evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_many_sources_are_evicted_for_a_real_peer() {
    let ring = Keyring::new(key(1));
    let seed = builder("seed")
        .keyring(ring.clone())
        .max_streams(8)
        .max_streams_per_source(2)
        .stream_timeout(Duration::from_secs(10))
        .start()
        .await
        .expect("seed starts");
    let addr = seed.advertise_addr();
    // 40 sources x 2 connections: 80 connections for 8 slots.
    let mut idle = Vec::new();
    for i in 0..80u8 {
        idle.push(connect_from([127, 0, 1, 2 + i / 2], addr).await);
    }
    // Connections younger than their grace (10 ms at least) are not
    // evicted: a newcomer then is refused instead.
    wait_until(
        "the slots are full, the rest evicted or refused",
        || async {
            let t = transport(&seed).await;
            t.streams_evicted + t.streams_rejected_busy >= 72
        },
    )
    .await;
    let joiner = builder("joiner")
        .keyring(ring)
        .join_timeout(Duration::from_secs(2))
        .seed(addr)
        .start()
        .await
        .expect("the joiner gets in although every slot was taken");
    let nodes = [seed, joiner];
    wait_converged(&nodes, &names(&["seed", "joiner"])).await;
    let t = transport(&nodes[0]).await;
    assert_eq!(t.streams_refused_per_source, 0, "{t:?}");
    drop(idle);
}

/// Counters of the idle test, on a fresh node so they are not shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_deadlines_are_counted() {
    let a = builder("a")
        .stream_timeout(Duration::from_millis(500))
        .max_streams_per_source(4)
        .start()
        .await
        .expect("a starts");
    let addr = a.advertise_addr();
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(connect_from([127, 0, 0, 2], addr).await);
    }
    wait_until(
        "6 refused for their source, 4 cut at the deadline",
        || async {
            let t = transport(&a).await;
            t.streams_refused_per_source == 6 && t.stream_timeouts == 4
        },
    )
    .await;
    // Another address still gets in while the first is at its cap.
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(connect_from([127, 0, 0, 3], addr).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(transport(&a).await.streams_refused_per_source, 6);
    let t = transport(&a).await;
    assert_eq!(t.streams_rejected_busy, 0, "{t:?}");
    drop((idle, others));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_source_cap_holds_while_the_node_serves_others() {
    let a = builder("a")
        .max_streams_per_source(3)
        .stream_timeout(Duration::from_secs(10))
        .start()
        .await
        .expect("a starts");
    let addr = a.advertise_addr();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(connect_from([127, 0, 0, 2], addr).await);
    }
    wait_until("7 of 10 refused", || async {
        transport(&a).await.streams_refused_per_source == 7
    })
    .await;
    // A refused connection is closed at once.
    let mut last = held.pop().expect("ten");
    assert!(closed_within(&mut last, &[0; 16], Duration::from_secs(2)).await);
    // Nodes from another address join while 127.0.0.2 holds its 3.
    let b = builder("b").seed(addr).start().await.expect("b joins");
    let nodes = [a, b];
    wait_converged(&nodes, &names(&["a", "b"])).await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_without_the_key_is_cut_within_the_budget() {
    let a = builder("a")
        .keyring(Keyring::new(key(1)))
        .label("blue")
        .stream_timeout(Duration::from_secs(10))
        .start()
        .await
        .expect("a starts");
    let addr = a.advertise_addr();
    let junk = vec![0x42u8; 64 * 1024];

    // An 8 MiB frame (under the largest message, so the old transport read
    // it all): the length alone is over the pre-auth budget.
    let mut s = connect_from([127, 0, 0, 2], addr).await;
    s.write_all(&(8u32 << 20).to_be_bytes())
        .await
        .expect("write");
    assert!(
        closed_within(&mut s, &junk, Duration::from_secs(2)).await,
        "an 8 MiB frame was not cut off"
    );

    // A header under the budget but sealed with another key: read, refused,
    // and nothing after it is read.
    let wrong = Framer::new("blue", Some(Keyring::new(key(2)))).expect("framer");
    let header = wrong.seal(&[0x5A, 0, 0x80, 0, 0]).expect("seal");
    let mut s = connect_from([127, 0, 0, 2], addr).await;
    s.write_all(&(header.len() as u32).to_be_bytes())
        .await
        .expect("write");
    s.write_all(&header).await.expect("write");
    assert!(
        closed_within(&mut s, &junk, Duration::from_secs(2)).await,
        "a header with the wrong key was not cut off"
    );

    // 60,000 bytes of junk as a header: under the budget, wrong label.
    let mut s = connect_from([127, 0, 0, 2], addr).await;
    s.write_all(&60_000u32.to_be_bytes()).await.expect("write");
    assert!(
        closed_within(&mut s, &junk, Duration::from_secs(2)).await,
        "a junk header was not cut off"
    );

    wait_until("three refusals counted", || async {
        let t = transport(&a).await;
        t.streams_oversize >= 1 && t.streams_unauthenticated >= 2
    })
    .await;
    let t = transport(&a).await;
    assert!(t.auth_failures >= 1, "{t:?}");
    assert!(t.malformed + t.label_mismatches >= 1, "{t:?}");
    // All bytes read were before authentication, and within the budgets:
    // 4 + (4 + header) + (4 + 60,000).
    assert_eq!(t.stream_bytes_in, t.stream_preauth_bytes_in, "{t:?}");
    assert!(t.stream_bytes_in <= 3 * BUDGET, "{t:?}");
    assert!(t.stream_bytes_in <= 4 + 4 + 200 + 4 + 60_000, "{t:?}");
}
