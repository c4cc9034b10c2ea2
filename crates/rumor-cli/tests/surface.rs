//! The operator's surface on real agents: `rumor members` filters and
//! detail view, `rumor info` and `GET /v1/info`, `/v1/self`'s state, and
//! the newline rule of `rumor kv put` from standard input.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// Names in `rumor members --json` output, sorted.
fn names(out: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut n: Vec<String> = v
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("?").to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn members_filters_by_name_and_tag_regex() {
    let a = agent("web-1").args(&["--tag", "zone=eu-1a"]).spawn();
    let b = agent("web-2")
        .args(&["--tag", "zone=us-2"])
        .join(&[&a])
        .spawn();
    let c = agent("db-1")
        .args(&["--tag", "zone=eu-1b", "--tag", "role=db"])
        .join(&[&a])
        .spawn();
    wait_until("three alive", DEADLINE, || a.alive_count() == 3);

    let run = |args: &[&str]| {
        let mut all = vec!["members", "--json"];
        all.extend_from_slice(args);
        let o = a.cli(&all);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        names(&stdout(&o))
    };
    assert_eq!(run(&["--name", "web-.*"]), ["web-1", "web-2"]);
    // Anchored: `web` alone matches no whole name.
    assert!(run(&["--name", "web"]).is_empty());
    assert_eq!(run(&["--tag", "zone=eu-.*"]), ["db-1", "web-1"]);
    assert_eq!(run(&["--name", "web-.*", "--tag", "zone=eu-.*"]), ["web-1"]);
    // A member without the tag does not match.
    assert_eq!(run(&["--tag", "role=.*"]), ["db-1"]);

    // The detail view: incarnation, protocol, state keys.
    let o = a.cli(&["state", "set", "load", "0.5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = a.cli(&["members", "--detailed", "--name", "web-1"]);
    let text = stdout(&o);
    let mut rows = text.lines();
    let head: Vec<&str> = rows.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        head,
        [
            "NAME",
            "ADDRESS",
            "STATUS",
            "INCARNATION",
            "PROTOCOL",
            "STATE-KEYS",
            "TAGS"
        ],
        "{text}"
    );
    let row: Vec<&str> = rows.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row[0], "web-1", "{text}");
    assert_eq!(row[1], a.gossip.to_string());
    assert!(row[4].contains('-'), "protocol range: {text}");
    assert_eq!(row[5], "1", "{text}");
    assert_eq!(row[6], "zone=eu-1a");

    // A regex that does not compile: one line, exit 2.
    for args in [
        &["members", "--name", "web-("][..],
        &["members", "--tag", "zone=[eu"][..],
    ] {
        let o = a.cli(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("regex"), "{err}");
    }
    drop((b, c));
}

#[test]
fn info_and_self() {
    let a = agent("info-a")
        .args(&["--label", "blue", "--tag", "role=api"])
        .spawn();
    let b = agent("info-b")
        .args(&["--label", "blue"])
        .join(&[&a])
        .spawn();
    wait_until("two alive", DEADLINE, || a.alive_count() == 2);

    let v = a.get("/v1/info");
    assert_eq!(v["name"], "info-a");
    assert_eq!(v["addr"], a.gossip.to_string());
    assert_eq!(v["http"], a.http.to_string());
    assert_eq!(v["profile"], "local");
    assert_eq!(v["label"], "blue");
    assert_eq!(v["members"]["alive"], 2);
    assert_eq!(v["encryption"]["enabled"], false);
    assert_eq!(v["encryption"]["keys"], 0);
    assert!(v["protocol"]["min"].as_u64().is_some(), "{v}");
    assert_eq!(v["tags"]["role"], "api");
    assert!(
        v["stats"]["rumor_probes_total"].as_u64().is_some(),
        "stats carry the library's counters: {v}"
    );
    assert_eq!(v["stats"]["rumor_members{status=\"alive\"}"], 2.0);

    let o = a.cli(&["info"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    for want in [
        "name:",
        "info-a",
        "profile:",
        "alive=2",
        "encryption:",
        "off",
        "label:",
        "blue",
        "rumor_probes_total",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let o = a.cli(&["info", "--json"]);
    let j: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(j["name"], "info-a");

    // /v1/self shows this node's state.
    let o = a.cli(&["state", "set", "version", "1.2.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("/v1/self shows the state", DEADLINE, || {
        a.get("/v1/self")["state"]["version"] == "1.2.3"
    });
    drop(b);
}

/// `rumor kv put KEY [--raw]` with `input` on stdin.
fn put_stdin(a: &Agent, key: &str, input: &[u8], raw: bool) {
    let mut cmd = Command::new(BIN);
    cmd.args(["kv", "put", key, "--http", &a.http.to_string()]);
    if raw {
        cmd.arg("--raw");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rumor");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn kv_put_from_stdin_strips_one_newline() {
    let a = agent("kv-nl").spawn();
    let value = |k: &str| a.get(&format!("/v1/kv/{k}"))["value"].clone();
    put_stdin(&a, "echo", b"v\n", false);
    assert_eq!(value("echo"), "v");
    put_stdin(&a, "two", b"v\n\n", false);
    assert_eq!(value("two"), "v\n");
    put_stdin(&a, "crlf", b"v\r\n", false);
    assert_eq!(value("crlf"), "v");
    put_stdin(&a, "raw", b"v\n", true);
    assert_eq!(value("raw"), "v\n");
    // A value given as an argument is stored as given.
    let o = a.cli(&["kv", "put", "arg", "v\n"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(value("arg"), "v\n");
}

#[test]
fn info_sets_measured_dissemination_beside_the_budget() {
    let a = agent("prop-a").spawn();
    let b = agent("prop-b").join(&[&a]).spawn();
    wait_until("two alive", DEADLINE, || a.alive_count() == 2);
    let before = a.get("/v1/info");
    let p = &before["propagation"];
    assert_eq!(p["members"], 2, "{p}");
    assert!(p["budget_seconds"].as_f64().is_some_and(|s| s > 0.0), "{p}");
    assert!(
        p["classic_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{p}"
    );
    assert_eq!(p["measured_samples"], 0, "nothing written yet: {p}");
    // Each member's last probe round trip, as a's probes measured it.
    wait_until("a has probed b", DEADLINE, || {
        a.get("/v1/members/prop-b")["rtt_ms"].as_f64().is_some()
    });
    let rtt = a.get("/v1/members/prop-b")["rtt_ms"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!(rtt > 0.0 && rtt < 1000.0, "{rtt}");
    assert!(
        a.get("/v1/members/prop-a").get("rtt_ms").is_none(),
        "itself"
    );

    for i in 0..5 {
        let (code, _) = request("PUT", &b.url(&format!("/v1/kv/p{i}")), None, Some("v"));
        assert_eq!(code, 200);
    }
    // The histogram is filled at the next metrics export.
    wait_until("5 writes measured on a", DEADLINE, || {
        a.get("/v1/info")["propagation"]["measured_samples"] == 5
    });
    let p = &a.get("/v1/info")["propagation"];
    let p99 = p["measured_p99_seconds"].as_f64().unwrap_or(f64::NAN);
    assert!(p99 > 0.0 && p99 < 5.0, "{p}");
    assert!(p["advice"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
    assert_eq!(a.counter("rumor_dissemination_latency_seconds_count"), 5.0);
    // b's own writes are not dissemination.
    assert_eq!(b.counter("rumor_dissemination_latency_seconds_count"), 0.0);
    assert!(a.counter("rumor_propagation_budget_seconds") > 0.0);
    // Every update b gossiped (its alive claim, the five writes) waited in
    // its queue for a measured while before its first send.
    wait_until("b's queue waits measured", DEADLINE, || {
        b.counter("rumor_broadcast_queue_wait_seconds_count") >= 5.0
    });

    let o = a.cli(&["info"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        text.contains("propagation:") && text.contains("over 5 write(s), budget"),
        "{text}"
    );
}
