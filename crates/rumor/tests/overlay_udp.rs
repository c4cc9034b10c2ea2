//! Partial membership on real UDP sockets: the cluster of
//! `examples/overlay_cluster.rs` (HyParView and Plumtree from rumor-core, in
//! rumor's wire format, one socket per node on 127.0.0.1) becomes whole,
//! and every broadcast reaches every node exactly once.

#[path = "../examples/support/overlay.rs"]
#[allow(dead_code)]
mod overlay;

use std::time::Duration;

const NODES: usize = 60;

/// Start `NODES`, wait (generously) for a whole overlay, then send three
/// broadcasts from different nodes and wait for each to reach everyone.
async fn forms_and_delivers(storm: bool) {
    let cluster = overlay::Cluster::start(NODES, storm, 7)
        .await
        .expect("bind 127.0.0.1");
    let whole = cluster.wait_whole(Duration::from_secs(90), |_, _| {}).await;
    assert!(
        whole.is_some(),
        "not whole 90 s after the last start: {:?}",
        cluster.shape()
    );
    for (k, from) in [0, NODES / 2, NODES - 1].into_iter().enumerate() {
        let id = k as u64;
        cluster.broadcast(from, id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while cluster.delivered(id).0 < NODES && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            cluster.delivered(id).0,
            NODES,
            "broadcast {id} from node {from}"
        );
    }
    // Exactly once: no later delivery pushes a count past N.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in 0..3 {
        assert_eq!(
            cluster.delivered(id).0,
            NODES,
            "broadcast {id} delivered twice"
        );
    }
    assert_eq!(cluster.bad(), 0, "undecodable datagrams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joining_one_by_one_form_an_overlay_that_delivers_every_broadcast_once() {
    forms_and_delivers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joining_one_at_once_form_an_overlay_that_delivers_every_broadcast_once() {
    forms_and_delivers(true).await;
}
