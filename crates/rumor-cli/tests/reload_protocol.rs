//! SIGHUP applies the `[protocol]` table and the stream caps of `[limits]`
//! to a running agent: `GET /v1/info` shows the new values, the shorter
//! probe interval shows in the probe counter at once, a field that needs a
//! restart is one WARN while the rest is applied, an invalid table is
//! refused whole with the start-up error, and the agent stays a member of
//! its two-agent cluster throughout.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

fn info(a: &Agent) -> Value {
    a.get("/v1/info")
}

fn probes(a: &Agent) -> u64 {
    info(a)["stats"]["rumor_probes_total"].as_u64().unwrap_or(0)
}

/// Both agents list each other alive.
fn both_alive(a: &Agent, b: &Agent) -> bool {
    a.status_of(&b.name).as_deref() == Some("alive")
        && b.status_of(&a.name).as_deref() == Some("alive")
}

#[test]
fn sighup_applies_protocol_and_stream_caps() {
    let dir = temp_dir("hup-protocol");
    let conf = dir.join("rumor.toml");
    let write = |text: &str| std::fs::write(&conf, text).expect("config");
    write("[protocol]\nprobe_interval = \"5s\"\nkv_siblings_prefixes = [\"cart/\"]\n");
    let a = agent("hupp-a")
        .args(&["--config", conf.to_str().expect("utf-8")])
        .spawn();
    let b = agent("hupp-b").join(&[&a]).spawn();
    wait_until("both alive", DEADLINE, || both_alive(&a, &b));
    let before = info(&a);
    assert_eq!(before["config"]["protocol"]["probe_interval_ms"], 5000);
    assert_eq!(before["config"]["limits"]["max_streams"], 128);
    let incarnation = before["incarnation"].clone();

    write(concat!(
        "[protocol]\nprobe_interval = \"200ms\"\nprobe_timeout = \"100ms\"\n",
        "gossip_nodes = 4\nkv_siblings_prefixes = [\"other/\"]\n",
        "[limits]\nmax_streams = 8\nmax_streams_per_source = 4\n"
    ));
    let probes_before = probes(&a);
    a.signal(Signal::SIGHUP);
    wait_until("the reload is applied", DEADLINE, || {
        a.stderr().contains("SIGHUP: applied:")
    });
    let log = a.stderr();
    for change in [
        "protocol.probe_interval 5s -> 200ms",
        "protocol.gossip_nodes 3 -> 4",
        "limits.max_streams 128 -> 8",
        "limits.max_streams_per_source 16 -> 4",
    ] {
        assert!(log.contains(change), "{change} not logged:\n{log}");
    }
    assert!(
        log.contains("protocol.kv_siblings_prefixes changed but needs a restart"),
        "{log}"
    );
    assert_eq!(
        log.matches("needs a restart").count(),
        1,
        "only the prefixes need a restart:\n{log}"
    );
    let after = info(&a);
    let p = &after["config"]["protocol"];
    assert_eq!(p["probe_interval_ms"], 200, "{after}");
    assert_eq!(p["probe_timeout_ms"], 100);
    assert_eq!(p["gossip_nodes"], 4);
    assert_eq!(
        p["kv_siblings_prefixes"],
        serde_json::json!(["cart/"]),
        "kept until a restart"
    );
    assert_eq!(after["config"]["limits"]["max_streams"], 8);
    assert_eq!(after["config"]["limits"]["max_streams_per_source"], 4);
    // At 5 s a probe, 10 probes in 15 s can only be the new interval.
    wait_until(
        "10 probes at the new interval",
        Duration::from_secs(15),
        || probes(&a) >= probes_before + 10,
    );

    // Invalid: refused as a whole, with the error start-up gives.
    write("[protocol]\nprobe_interval = \"200ms\"\nprobe_timeout = \"1s\"\n[limits]\nmax_streams = 2\n");
    a.signal(Signal::SIGHUP);
    wait_until("the bad reload is refused", DEADLINE, || {
        a.stderr().contains("configuration not reloaded")
    });
    let log = a.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("configuration not reloaded"))
        .expect("the line");
    assert!(line.contains("probe_timeout"), "{line}");
    let kept = info(&a);
    assert_eq!(kept["config"]["protocol"]["probe_timeout_ms"], 100);
    assert_eq!(kept["config"]["limits"]["max_streams"], 8);

    // A member throughout: same incarnation, never seen failed.
    assert_eq!(kept["incarnation"], incarnation);
    assert!(both_alive(&a, &b));
    assert!(!b.stderr().contains("member-failed"), "{}", b.stderr());
    assert!(!b.stderr().contains("member-suspect"), "{}", b.stderr());
}
