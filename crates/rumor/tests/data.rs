//! Application data over real sockets on 127.0.0.1: user events, per-node
//! state, the replicated key space (with watchers and a node that missed
//! writes while down) and aggregates.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use rumor::{Config, Event, KvEntry, KvMode, Node, VersionVector};
use tokio::sync::broadcast;

/// The test timings plus quick state, key-space and aggregate rounds.
fn data_config() -> Config {
    Config {
        state_sync_interval: Duration::from_millis(300),
        kv_sync_interval: Duration::from_millis(500),
        aggregate_interval: Duration::from_millis(50),
        aggregate_epoch: Duration::from_secs(1),
        ..fast_config()
    }
}

/// Start nodes `n0..n{count-1}` on the data config, all joined through
/// `n0`, and wait until every one sees every other alive.
async fn cluster(count: usize) -> Vec<Node> {
    start_cluster("n", count, data_config()).await
}

async fn stop(nodes: Vec<Node>) {
    for n in nodes {
        n.shutdown().await.expect("shutdown");
    }
}

/// Take every event already queued on `rx`.
fn drain_all(rx: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(broadcast::error::TryRecvError::Lagged(n)) => panic!("lost {n} events"),
            Err(_) => return out,
        }
    }
}

/// A node's key space as last-write-wins values.
async fn kv_values(node: &Node) -> BTreeMap<String, Vec<u8>> {
    node.kv_scan("")
        .await
        .expect("node running")
        .into_iter()
        .filter_map(|(k, e)| e.lww_value().map(|v| (k, v.to_vec())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_event_reaches_every_node_exactly_once() {
    let nodes = cluster(5).await;
    let mut subs: Vec<_> = nodes.iter().map(|n| n.events()).collect();
    let ltime = nodes[2]
        .send_event("deploy", b"v1".to_vec())
        .await
        .expect("event sent");
    let mut got: Vec<Vec<rumor::UserEvent>> = vec![Vec::new(); nodes.len()];
    let mut collect = |subs: &mut Vec<broadcast::Receiver<Event>>| {
        for (i, rx) in subs.iter_mut().enumerate() {
            for e in drain_all(rx) {
                if let Event::User(u) = e {
                    got[i].push(rumor::UserEvent::clone(&u));
                }
            }
        }
        got.clone()
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if collect(&mut subs).iter().all(|g| !g.is_empty()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every node got the event: {:?}",
            collect(&mut subs)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let retransmissions and anti-entropy run: no duplicate may follow.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, g) in collect(&mut subs).iter().enumerate() {
        assert_eq!(g.len(), 1, "n{i} got {g:?}");
        assert_eq!(&*g[0].origin, "n2");
        assert_eq!(g[0].name, "deploy");
        assert_eq!(g[0].payload, b"v1");
        assert_eq!(g[0].ltime, ltime);
    }
    assert!(nodes[0].send_event("", Vec::new()).await.is_err());
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_writes_and_deletes_reach_every_node_and_watchers() {
    let nodes = cluster(5).await;
    let mut watch = nodes[4].watch("cfg/");
    assert_eq!(watch.prefix(), "cfg/");
    nodes[1]
        .kv_put("other/x", b"ignored".to_vec())
        .await
        .expect("put");
    nodes[0].kv_put("cfg/a", b"1".to_vec()).await.expect("put");
    wait_until("every node reads cfg/a", || async {
        for n in &nodes {
            if n.kv_get("cfg/a").await.expect("running").as_deref() != Some(&b"1"[..]) {
                return false;
            }
        }
        true
    })
    .await;
    let change = tokio::time::timeout(DEADLINE, watch.recv())
        .await
        .expect("watch sees the write in time")
        .expect("watch open");
    assert_eq!(change.key, "cfg/a");
    assert_eq!(change.new.lww_value(), Some(&b"1"[..]));
    let scan = nodes[3].kv_scan("cfg/").await.expect("scan");
    assert_eq!(scan.len(), 1);
    assert_eq!(scan[0].0, "cfg/a");

    nodes[3].kv_delete("cfg/a").await.expect("delete");
    wait_until("every node sees cfg/a deleted", || async {
        for n in &nodes {
            if n.kv_get("cfg/a").await.expect("running").is_some() {
                return false;
            }
        }
        true
    })
    .await;
    let change = tokio::time::timeout(DEADLINE, watch.recv())
        .await
        .expect("watch sees the delete in time")
        .expect("watch open");
    assert_eq!(change.key, "cfg/a");
    assert!(change.new.is_tombstone());
    assert!(nodes[2].kv_scan("cfg/").await.expect("scan").is_empty());
    assert_eq!(
        nodes[2].kv_get("other/x").await.expect("get").as_deref(),
        Some(&b"ignored"[..])
    );
    // A last-write-wins key has an empty causal context.
    assert!(nodes[2]
        .kv_context("other/x")
        .await
        .expect("ctx")
        .is_empty());
    let stats = nodes[4].stats().await.expect("stats");
    assert!(stats.core.kv_applied > 0, "{:?}", stats.core);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_node_state_is_visible_everywhere() {
    let nodes = cluster(5).await;
    let mut rx = nodes[3].events();
    nodes[1].state_set("role", "db").await.expect("state set");
    nodes[1].state_set("zone", "a").await.expect("state set");
    wait_until("every node sees n1's state", || async {
        for n in &nodes {
            let s = n.state_of("n1").await.expect("running").unwrap_or_default();
            if s.get("role").map(String::as_str) != Some("db") || !s.contains_key("zone") {
                return false;
            }
        }
        true
    })
    .await;
    assert!(drain_all(&mut rx).iter().any(|e| matches!(
        e,
        Event::State(c) if &*c.owner == "n1" && c.key == "role" && c.value.as_deref() == Some("db")
    )));
    let all = nodes[4].states().await.expect("states");
    assert_eq!(all["n1"]["role"], "db");

    nodes[1].state_delete("zone").await.expect("state delete");
    wait_until("every node sees n1's zone deleted", || async {
        for n in &nodes {
            let s = n.state_of("n1").await.expect("running").unwrap_or_default();
            if s.contains_key("zone") || !s.contains_key("role") {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(nodes[0].state_of("nobody").await.expect("running"), None);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_agree_on_an_aggregate() {
    let nodes = cluster(5).await;
    for (i, n) in nodes.iter().enumerate() {
        n.state_set("load", (i + 1).to_string())
            .await
            .expect("state set");
    }
    for n in &nodes {
        n.track_aggregate("load").await.expect("track");
    }
    let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
    let ok = try_wait_until(|| async {
        for n in &nodes {
            let Some(e) = n.aggregate("load").await.expect("running") else {
                return false;
            };
            if !(close(e.avg, 3.0)
                && close(e.sum, 15.0)
                && close(e.count, 5.0)
                && close(e.min, 1.0)
                && close(e.max, 5.0))
            {
                return false;
            }
        }
        true
    })
    .await;
    let mut seen = Vec::new();
    for n in &nodes {
        seen.push(n.aggregate("load").await.expect("running"));
    }
    assert!(ok, "estimates did not settle: {seen:?}");
    assert_eq!(nodes[0].aggregate("unknown").await.expect("running"), None);
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_on_the_key_space() {
    let mut nodes = cluster(4).await;
    nodes[0].kv_put("keep", b"0".to_vec()).await.expect("put");
    nodes[0].kv_put("gone", b"0".to_vec()).await.expect("put");
    wait_until("every node has both keys", || async {
        for n in &nodes {
            if kv_values(n).await.len() != 2 {
                return false;
            }
        }
        true
    })
    .await;

    let down = nodes.pop().expect("four nodes");
    down.shutdown().await.expect("shutdown");
    for i in 0..5 {
        nodes[i % 3]
            .kv_put(format!("k{i}"), vec![i as u8])
            .await
            .expect("put");
    }
    nodes[1].kv_put("keep", b"1".to_vec()).await.expect("put");
    nodes[2].kv_delete("gone").await.expect("delete");
    wait_until("the running nodes agree", || async {
        let first = kv_values(&nodes[0]).await;
        if first.len() != 6 {
            return false;
        }
        for n in &nodes[1..] {
            if kv_values(n).await != first {
                return false;
            }
        }
        true
    })
    .await;

    let back = builder("n3")
        .config(data_config())
        .seed(nodes[0].advertise_addr())
        .start()
        .await
        .expect("n3 restarts and joins");
    let expected = kv_values(&nodes[0]).await;
    let ok = try_wait_until(|| async { kv_values(&back).await == expected }).await;
    assert!(
        ok,
        "n3 has {:?}, the others {:?}",
        kv_values(&back).await,
        expected
    );
    assert_eq!(expected.get("keep").map(Vec::as_slice), Some(&b"1"[..]));
    assert!(!expected.contains_key("gone"));
    nodes.push(back);
    stop(nodes).await;
}

/// The sibling values of `key` at `node`, sorted (empty if absent).
async fn siblings(node: &Node, key: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = match node.kv_entry(key).await.expect("node running") {
        Some(KvEntry::Siblings(s)) => s.values().map(<[u8]>::to_vec).collect(),
        _ => Vec::new(),
    };
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_keys_keep_concurrent_writes_until_a_write_in_context() {
    let mut config = data_config();
    config.kv.prefix_modes = vec![("cart/".into(), KvMode::Siblings)];
    let a = builder("a")
        .config(config.clone())
        .start()
        .await
        .expect("a starts");
    let b = builder("b")
        .config(config)
        .seed(a.advertise_addr())
        .start()
        .await
        .expect("b joins");
    let nodes = vec![a, b];
    let both: BTreeSet<String> = ["a", "b"].map(String::from).into();
    wait_converged(&nodes, &both).await;

    // A siblings-mode key needs a causal context.
    assert!(nodes[0].kv_put("cart/x", b"apple".to_vec()).await.is_err());
    // Writes that saw nothing are concurrent: both stay.
    for (n, v) in nodes.iter().zip([&b"apple"[..], &b"pear"[..]]) {
        n.kv_put_in_context("cart/x", Some(v.to_vec()), VersionVector::new())
            .await
            .expect("write in context");
    }
    let pair = vec![b"apple".to_vec(), b"pear".to_vec()];
    wait_until("both nodes hold both siblings", || async {
        for n in &nodes {
            if siblings(n, "cart/x").await != pair {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(nodes[1].kv_get("cart/x").await.expect("get"), None);

    // A write that read both supersedes them.
    let read = nodes[1].kv_context("cart/x").await.expect("context");
    assert!(!read.is_empty());
    nodes[1]
        .kv_put_in_context("cart/x", Some(b"apple+pear".to_vec()), read)
        .await
        .expect("write in context");
    wait_until("both nodes hold the merged value only", || async {
        for n in &nodes {
            if siblings(n, "cart/x").await != vec![b"apple+pear".to_vec()] {
                return false;
            }
        }
        true
    })
    .await;

    // The key space's clock runs on real time (the driver set it).
    nodes[0].kv_put("plain", b"1".to_vec()).await.expect("put");
    let entry = nodes[0]
        .kv_entry("plain")
        .await
        .expect("get")
        .expect("stored");
    let wall = entry.latest().expect("timestamped").wall;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64;
    assert!(
        now.abs_diff(wall) < 60_000_000,
        "HLC at {wall}, clock at {now}"
    );
    stop(nodes).await;
}
