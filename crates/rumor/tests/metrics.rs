//! The metrics a running node exports, read back through the Prometheus
//! exporter the agent uses (installed in this test process as the global
//! `metrics` recorder): counters move by exactly what the test did to the
//! node, gauges follow the membership.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rumor::core::codec;
use rumor::core::message::Message;
use rumor::framing::Framer;
use rumor::{Key, Keyring, Node};

/// The exporter's handle; the recorder is installed once per process.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("no other recorder in this test binary");
        handle
    })
}

/// The value of the series `name` whose labels include all of `labels`,
/// in the exporter's current output.
fn exported(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = prometheus().render();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let body = rest.strip_suffix('}')?;
            let found: Vec<(&str, &str)> = body
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|l| found.contains(l))
                .then(|| value.parse().ok())
                .flatten()
        })
}

/// [`exported`] for a counter of node `node`, 0 if not exported yet.
fn counter(name: &str, node: &str) -> f64 {
    exported(name, &[("node", node)]).unwrap_or(0.0)
}

/// Node `node`'s exported count of members in `status`.
fn members(node: &str, status: &str) -> Option<f64> {
    exported("rumor_members", &[("node", node), ("status", status)])
}

fn key() -> Key {
    Key::from_bytes([7; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_counters_and_gauges_follow_what_happened() {
    prometheus();
    let names = ["m-a", "m-b", "m-c"];
    let mut nodes: Vec<Node> = Vec::new();
    for name in names {
        let mut b = builder(name)
            .keyring(Keyring::new(key()))
            .metrics_interval(Some(Duration::from_millis(100)));
        if let Some(first) = nodes.first() {
            b = b.seed(first.advertise_addr());
        }
        nodes.push(b.start().await.expect("node starts"));
    }
    let all: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    wait_converged(&nodes, &all).await;

    // Gauges: every node exports three alive members.
    wait_until("every node exports 3 alive members", || async {
        names.iter().all(|n| members(n, "alive") == Some(3.0))
    })
    .await;
    for n in names {
        assert_eq!(members(n, "dead"), Some(0.0), "{n}");
        assert_eq!(members(n, "suspect"), Some(0.0), "{n}");
    }
    // Traffic by message type and in bytes.
    wait_until("m-a exports pings sent and acks received", || async {
        exported(
            "rumor_messages_sent_total",
            &[("node", "m-a"), ("type", "ping")],
        )
        .is_some_and(|v| v > 0.0)
            && exported(
                "rumor_messages_received_total",
                &[("node", "m-a"), ("type", "ack")],
            )
            .is_some_and(|v| v > 0.0)
    })
    .await;
    assert!(counter("rumor_udp_sent_packets_total", "m-a") > 0.0);
    assert!(counter("rumor_udp_sent_bytes_total", "m-a") > 0.0);
    assert!(
        counter("rumor_stream_sent_bytes_total", "m-b") > 0.0,
        "b's join push-pull"
    );
    // b's join push-pull is one timed exchange, of more bytes than none.
    let pp = [("node", "m-b"), ("type", "push_pull")];
    assert!(exported("rumor_stream_exchange_duration_seconds_count", &pp) >= Some(1.0));
    assert!(exported("rumor_stream_exchange_bytes_sum", &pp) > Some(0.0));

    // One altered packet: the authentication failure counter moves by
    // exactly one, and nothing else is blamed on it.
    let a = &nodes[0];
    let target = a.advertise_addr();
    let raw = tokio::net::UdpSocket::bind(loopback()).await.expect("bind");
    let framer = Framer::new("", Some(Keyring::new(key()))).expect("framer");
    let stats = a.stats().await.expect("stats");
    let (before, decode_before) = (stats.transport, stats.core.decode_errors as f64);
    wait_until("the exporter caught up with m-a's counters", || async {
        counter("rumor_auth_failures_total", "m-a") == before.auth_failures as f64
            && counter("rumor_malformed_packets_total", "m-a") == before.malformed as f64
            && counter("rumor_decode_errors_total", "m-a") == decode_before
    })
    .await;
    let ping = codec::encode_packet(&Message::Ping {
        seq: 9,
        target: Arc::from("m-a"),
    });
    let mut flipped = framer.seal(&ping).expect("seal");
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    raw.send_to(&flipped, target).await.expect("send");
    wait_until(
        "the altered packet is exported as an auth failure",
        || async { counter("rumor_auth_failures_total", "m-a") > before.auth_failures as f64 },
    )
    .await;
    assert_eq!(
        counter("rumor_auth_failures_total", "m-a"),
        before.auth_failures as f64 + 1.0
    );

    // One envelope too short to be one: malformed, exactly once.
    raw.send_to(&[0xB1], target).await.expect("send");
    wait_until("the short packet is exported as malformed", || async {
        counter("rumor_malformed_packets_total", "m-a") > before.malformed as f64
    })
    .await;
    assert_eq!(
        counter("rumor_malformed_packets_total", "m-a"),
        before.malformed as f64 + 1.0
    );

    // An authentic envelope around a packet cut short: the protocol's
    // decode error counter moves by exactly one.
    let garbage = framer.seal(&ping[..ping.len() - 1]).expect("seal");
    raw.send_to(&garbage, target).await.expect("send");
    wait_until(
        "the undecodable packet is exported as a decode error",
        || async { counter("rumor_decode_errors_total", "m-a") > decode_before },
    )
    .await;
    assert_eq!(
        counter("rumor_decode_errors_total", "m-a"),
        decode_before + 1.0
    );
    assert_eq!(
        counter("rumor_auth_failures_total", "m-a"),
        before.auth_failures as f64 + 1.0,
        "the other packets were not auth failures"
    );

    // A member stops: the gauges move it from alive to dead (the API's status name).
    let c = nodes.pop().expect("m-c");
    c.shutdown().await.expect("shutdown");
    wait_until("m-a exports 2 alive and 1 dead", || async {
        members("m-a", "alive") == Some(2.0) && members("m-a", "dead") == Some(1.0)
    })
    .await;
    assert!(counter("rumor_deaths_total", "m-a") >= 1.0);
}

/// Nodes whose clocks are off (through the builder's test hook): each
/// measures the other's offset on key-space sync sessions and exports it
/// per peer; records stamped beyond the window are refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_offsets_and_refused_stamps_are_exported() {
    prometheus();
    let config = rumor::Config {
        kv_sync_interval: Duration::from_millis(200),
        ..fast_config()
    };
    // ck-b is 3 s ahead of ck-a, ck-c 120 s ahead (the window is 60 s).
    let offsets = [("ck-a", 0i64), ("ck-b", 3_000_000), ("ck-c", 120_000_000)];
    let mut nodes: Vec<Node> = Vec::new();
    for (name, off) in offsets {
        let mut b = builder(name)
            .config(config.clone())
            .test_clock_offset_micros(off)
            .metrics_interval(Some(Duration::from_millis(100)));
        if let Some(first) = nodes.first() {
            b = b.seed(first.advertise_addr());
        }
        nodes.push(b.start().await.expect("node starts"));
    }
    wait_converged(&nodes, &names(&["ck-a", "ck-b", "ck-c"])).await;
    nodes[0].kv_put("a", b"1".to_vec()).await.expect("put");
    let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 0.5);
    wait_until("ck-a measures ck-b 3 s ahead", || async {
        let skew = nodes[0].clock_skew().await.expect("skew");
        near(skew.get("ck-b").map(|s| s.offset_secs()), 3.0)
    })
    .await;
    wait_until("ck-b measures ck-a 3 s behind", || async {
        let skew = nodes[1].clock_skew().await.expect("skew");
        near(skew.get("ck-a").map(|s| s.offset_secs()), -3.0)
    })
    .await;
    wait_until("ck-a exports the offset of ck-b", || async {
        near(
            exported(
                rumor::metrics::PEER_CLOCK_OFFSET,
                &[("node", "ck-a"), ("peer", "ck-b")],
            ),
            3.0,
        )
    })
    .await;
    // ck-c's writes are 120 s ahead of ck-a's clock: refused and counted.
    nodes[2].kv_put("c", b"1".to_vec()).await.expect("put");
    wait_until("ck-a counts records refused as too far ahead", || async {
        counter("rumor_kv_refused_future_total", "ck-a") > 0.0
    })
    .await;
    let stats = nodes[0].stats().await.expect("stats");
    assert!(stats.core.kv_refused_future > 0);
    assert_eq!(
        stats.core.kv_invalid, 0,
        "counted apart from invalid records"
    );
    for n in nodes {
        let _ = n.shutdown().await;
    }
}
