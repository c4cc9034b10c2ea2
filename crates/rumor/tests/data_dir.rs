//! A node with a data dir, over real sockets on 127.0.0.1: it comes back
//! from a restart with its key space, its per-node state version and an
//! incarnation above the last, and its peers reconcile with what it kept.

mod common;

use std::time::Duration;

use common::*;
use rumor::storage::StorageOptions;
use rumor::Node;

fn data_config() -> rumor::Config {
    rumor::Config {
        kv_sync_interval: Duration::from_millis(300),
        state_sync_interval: Duration::from_millis(300),
        ..fast_config()
    }
}

async fn keys(node: &Node) -> usize {
    node.kv_scan("").await.expect("running").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_from_its_data_dir_and_its_peers_reconcile_with_it() {
    let dir = std::env::temp_dir().join(format!("rumor-data-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let storage = || StorageOptions::new(dir.clone());

    let a = builder("a")
        .config(data_config())
        .storage(storage())
        .start()
        .await
        .expect("start a");
    for i in 0..50 {
        a.kv_put(format!("k{i}"), format!("v{i}"))
            .await
            .expect("put");
    }
    a.state_set("role", "db").await.expect("state");
    let before = a.local().await.expect("local");
    a.shutdown().await.expect("shutdown");

    let a = builder("a")
        .config(data_config())
        .storage(storage())
        .start()
        .await
        .expect("restart a");
    assert_eq!(keys(&a).await, 50, "the key space came back");
    assert!(a.local().await.expect("local").incarnation > before.incarnation);
    let b = builder("b")
        .config(data_config())
        .seed(a.local_addr())
        .start()
        .await
        .expect("start b");
    wait_until("b pulled the 50 keys a kept", || async {
        keys(&b).await == 50
    })
    .await;
    wait_until("b learned a's state", || async {
        b.state_of("a")
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.get("role").map(String::as_str) == Some("db"))
    })
    .await;
    for n in [a, b] {
        n.shutdown().await.expect("shutdown");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
