//! `Node::set_protocol` and `Node::set_stream_limits` on real nodes on
//! 127.0.0.1: a shorter probe interval shows in the probe counter at once,
//! restart-only fields are named and kept, and the per-source stream cap
//! is lowered and raised while connections are held open (none of them is
//! closed by the change).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rumor::builder::StreamLimits;
use rumor::Node;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `to` from `from` (an address of 127.0.0.0/8).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::from((from, 0))).expect("bind");
    s.connect(to).await.expect("connect")
}

/// Whether `s` is still open: a read neither ends nor fails within 100 ms.
async fn still_open(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf))
        .await
        .is_err()
}

async fn probes(n: &Node) -> u64 {
    n.stats().await.expect("stats").core.probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_changes_apply_at_once_and_name_what_needs_a_restart() {
    let slow = rumor_core::Config {
        probe_interval: Duration::from_secs(30),
        probe_timeout: Duration::from_secs(1),
        ..fast_config()
    };
    let nodes = start_cluster("p", 2, slow.clone()).await;
    let before = probes(&nodes[0]).await;
    let mut fast = rumor_core::Config {
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(50),
        ..slow.clone()
    };
    fast.max_stream_size *= 2;
    let kept = nodes[0].set_protocol(fast.clone()).await.expect("valid");
    assert_eq!(kept, vec!["max_stream_size"]);
    let now = nodes[0].protocol();
    assert_eq!(now.probe_interval, Duration::from_millis(100));
    assert_eq!(now.max_stream_size, slow.max_stream_size, "kept");
    // At 30 s a tick, ten probes within a few seconds are the new interval.
    wait_until("10 probes at the new interval", || async {
        probes(&nodes[0]).await >= before + 10
    })
    .await;
    let bad = rumor_core::Config {
        probe_timeout: Duration::from_secs(5),
        ..fast
    };
    assert!(nodes[0].set_protocol(bad).await.is_err());
    assert_eq!(
        nodes[0].protocol().probe_interval,
        Duration::from_millis(100)
    );
    wait_converged(&nodes, &names(&["p0", "p1"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_caps_change_while_connections_are_open() {
    let a = builder("a")
        .max_streams_per_source(4)
        .stream_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("a starts");
    let addr = a.advertise_addr();
    let refused = || async {
        a.stats()
            .await
            .expect("stats")
            .transport
            .streams_refused_per_source
    };
    let accepted = || async { a.stats().await.expect("stats").transport.streams_accepted };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 2], addr).await);
    }
    // Taken from the kernel's queue under the old cap before it changes.
    wait_until("the 3 held streams accepted", || async {
        accepted().await == 3
    })
    .await;
    let lowered = StreamLimits {
        max_streams_per_source: 1,
        ..StreamLimits::default()
    };
    a.set_stream_limits(lowered).await.expect("set");
    assert_eq!(a.stream_limits(), lowered);
    held.push(connect_from([127, 0, 0, 2], addr).await);
    wait_until("the 4th refused under the lowered cap", || async {
        refused().await == 1
    })
    .await;
    // The three held before the change are still open.
    for s in &mut held[..3] {
        assert!(still_open(s).await, "a lowered cap closed nothing");
    }
    a.set_stream_limits(StreamLimits {
        max_streams_per_source: 8,
        ..lowered
    })
    .await
    .expect("set");
    let before = accepted().await;
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 2], addr).await);
    }
    wait_until("the 4 new streams accepted", || async {
        accepted().await >= before + 4
    })
    .await;
    assert_eq!(refused().await, 1, "a raised cap admits at once");
    drop(held);
}
