//! The HTTP API of a real agent: every endpoint's happy and error paths,
//! `/metrics` parsed as Prometheus text, the SSE stream, the snapshot and
//! the event handler.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::*;
use serde_json::Value;

const TOKEN: &str = "s3cret";

#[test]
fn endpoints_and_their_errors() {
    let dir = temp_dir("api-keys");
    let ring = dir.join("keyring");
    std::fs::write(&ring, format!("{}\n", "01".repeat(32))).unwrap();
    let conf = dir.join("rumor.toml");
    std::fs::write(&conf, "[protocol]\nkv_siblings_prefixes = [\"cart/\"]\n").unwrap();
    let a = agent("api")
        .args(&["--http-token", TOKEN, "--keyring", ring.to_str().unwrap()])
        .args(&["--config", conf.to_str().unwrap()])
        .spawn();
    let u = |p: &str| a.url(p);

    // Reads need no token.
    let (s, v) = request("GET", &u("/v1/members"), None, None);
    assert_eq!(s, 200);
    assert_eq!(v[0]["name"], "api");
    assert_eq!(v[0]["status"], "alive");
    let (s, v) = request("GET", &u("/v1/self"), None, None);
    assert_eq!(s, 200);
    assert_eq!(v["name"], "api");
    assert!(v["awareness"].is_u64());
    let (s, v) = request("GET", &u("/v1/health"), None, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, v) = request("GET", &u("/v1/members/api"), None, None);
    assert_eq!((s, v["name"].as_str()), (200, Some("api")));

    // Unknown member, unknown endpoint, wrong method, bad query.
    let (s, v) = request("GET", &u("/v1/members/nobody"), None, None);
    assert_eq!(s, 404);
    assert!(v["error"].as_str().unwrap().contains("nobody"));
    let (s, v) = request("GET", &u("/v1/nothing"), None, None);
    assert_eq!(s, 404);
    assert!(v["error"].is_string());
    let (s, v) = request("DELETE", &u("/v1/members"), None, None);
    assert_eq!(s, 405);
    assert!(v["error"].is_string());
    let (s, v) = request("GET", &u("/v1/members?status=zombie"), None, None);
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("zombie"));

    // Writes: missing token 401, wrong token 403.
    for (m, p, body) in [
        ("POST", "/v1/join", r#"{"addrs":["127.0.0.1:1"]}"#),
        ("POST", "/v1/leave", "{}"),
        ("PUT", "/v1/tags", r#"{"set":{"a":"b"}}"#),
        ("POST", "/v1/event", r#"{"name":"x"}"#),
        ("POST", "/v1/keys", r#"{"key":"00"}"#),
        ("DELETE", "/v1/keys", r#"{"key":"00"}"#),
        ("PUT", "/v1/kv/k", "v"),
        ("DELETE", "/v1/kv/k", ""),
        ("PUT", "/v1/state/k", "v"),
        ("DELETE", "/v1/state/k", ""),
    ] {
        let (s, v) = request(m, &u(p), None, Some(body));
        assert_eq!(s, 401, "{m} {p}");
        assert!(v["error"].as_str().unwrap().contains("Bearer"), "{m} {p}");
        let (s, v) = request(m, &u(p), Some("wrong"), Some(body));
        assert_eq!(s, 403, "{m} {p}");
        assert!(v["error"].is_string());
    }
    let (s, _) = request("GET", &u("/v1/keys"), None, None);
    assert_eq!(s, 401);

    // Bad JSON and bad fields, with the token.
    let t = Some(TOKEN);
    for (m, p) in [
        ("POST", "/v1/join"),
        ("PUT", "/v1/tags"),
        ("POST", "/v1/event"),
        ("POST", "/v1/keys"),
        ("DELETE", "/v1/keys"),
    ] {
        let (s, v) = request(m, &u(p), t, Some("{not json"));
        assert_eq!(s, 400, "{m} {p}");
        assert!(
            v["error"].as_str().unwrap().contains("bad request body"),
            "{m} {p}: {v}"
        );
        let (s, v) = request(m, &u(p), t, Some(r#"{"unexpected":1}"#));
        assert!(s == 400 || s == 422, "{m} {p}: {s}");
        assert!(v["error"].is_string());
    }
    let (s, _) = request("POST", &u("/v1/join"), t, Some(r#"{"addrs":[]}"#));
    assert_eq!(s, 400);
    let (s, v) = request(
        "POST",
        &u("/v1/join"),
        t,
        Some(r#"{"addrs":["no.such.host.invalid"]}"#),
    );
    assert_eq!(s, 400, "{v}");
    let dead = format!("127.0.0.1:{}", free_port());
    let body = format!(r#"{{"addrs":["{dead}"]}}"#);
    let (s, v) = request("POST", &u("/v1/join"), t, Some(&body));
    assert_eq!(s, 502, "{v}");
    assert!(v["error"].as_str().unwrap().contains(&dead));
    let (s, _) = request("PUT", &u("/v1/tags"), t, Some("{}"));
    assert_eq!(s, 400);
    let big = format!(r#"{{"set":{{"k":"{}"}}}}"#, "x".repeat(2000));
    let (s, v) = request("PUT", &u("/v1/tags"), t, Some(&big));
    assert_eq!(s, 400, "{v}");
    let (s, v) = request("PUT", &u("/v1/tags"), t, Some(r#"{"set":{"role":"x"}}"#));
    assert_eq!((s, v["tags"]["role"].as_str()), (200, Some("x")));

    // User events.
    let (s, v) = request(
        "POST",
        &u("/v1/event"),
        t,
        Some(r#"{"name":"deploy","payload":"v2"}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert!(v["ltime"].is_u64(), "{v}");
    let (s, _) = request("POST", &u("/v1/event"), t, Some(r#"{"name":""}"#));
    assert_eq!(s, 400);
    let big = format!(r#"{{"name":"x","payload":"{}"}}"#, "p".repeat(600));
    let (s, v) = request("POST", &u("/v1/event"), t, Some(&big));
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("limit"), "{v}");
    let (s, _) = request(
        "POST",
        &u("/v1/event"),
        t,
        Some(r#"{"name":"x","payload":7}"#),
    );
    assert!(s == 400 || s == 422, "{s}");

    // Replicated keys: write, read, list, delete, and bad input.
    let (s, v) = request("PUT", &u("/v1/kv/app/color"), t, Some("blue"));
    assert_eq!(s, 200, "{v}");
    let (s, v) = request("GET", &u("/v1/kv/app/color"), None, None);
    assert_eq!((s, v["value"].as_str()), (200, Some("blue")), "{v}");
    assert_eq!(v["mode"], "lww");
    let (s, v) = request("GET", &u("/v1/kv?prefix=app/"), None, None);
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let (s, v) = request("GET", &u("/v1/kv?prefix=zzz"), None, None);
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(0)));
    let (s, v) = request("GET", &u("/v1/kv?bogus=1"), None, None);
    assert_eq!(s, 400, "{v}");
    let (s, _) = request("DELETE", &u("/v1/kv/app/color"), t, None);
    assert_eq!(s, 200);
    let (s, v) = request("GET", &u("/v1/kv/app/color"), None, None);
    assert_eq!(s, 404);
    assert!(v["error"].is_string());
    let (s, v) = request("PUT", &u("/v1/kv/bad%FF"), t, Some("x"));
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("UTF-8"), "{v}");
    let long = "k".repeat(300);
    let (s, v) = request("PUT", &u(&format!("/v1/kv/{long}")), t, Some("x"));
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("256"), "{v}");
    let huge = "v".repeat(70_000);
    let (s, v) = request("PUT", &u("/v1/kv/huge"), t, Some(&huge));
    assert_eq!(s, 413, "{v}");
    let (s, v) = request("GET", &u("/v1/kv/huge"), None, None);
    assert_eq!(s, 404, "nothing stored half-way: {v}");
    // Siblings-mode keys (configured for cart/) need a context: refused
    // without one (see siblings_keys_are_written_with_the_context_from_get).
    let (s, v) = request("PUT", &u("/v1/kv/cart/1"), t, Some("x"));
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("context"), "{v}");
    let (s, _) = request("GET", &u("/v1/kv/cart/1"), None, None);
    assert_eq!(s, 404);

    // Per-node state and aggregates.
    let (s, v) = request("PUT", &u("/v1/state/load"), t, Some("1.5"));
    assert_eq!(s, 200, "{v}");
    let (s, v) = request("GET", &u("/v1/members/api"), None, None);
    assert_eq!((s, v["state"]["load"].as_str()), (200, Some("1.5")), "{v}");
    let (s, v) = request("PUT", &u("/v1/state/k%FF"), t, Some("x"));
    assert_eq!(s, 400, "{v}");
    let (s, v) = request("PUT", &u("/v1/state/load"), t, Some(&"x".repeat(2000)));
    assert_eq!(s, 413, "{v}");
    let (s, v) = request("GET", &u("/v1/aggregate/load"), None, None);
    assert!(s == 200 || s == 202, "{s} {v}");
    let (s, v) = request("PUT", &u("/v1/state/load"), t, Some("NaN"));
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("finite"), "{v}");
    let (s, v) = request("GET", &u("/v1/members/api"), None, None);
    assert_eq!((s, v["state"]["load"].as_str()), (200, Some("1.5")), "{v}");
    wait_until("the aggregate of load is known", DEADLINE, || {
        let (s, v) = request("GET", &u("/v1/aggregate/load"), None, None);
        s == 200 && v["avg"].as_f64() == Some(1.5) && v["count"].as_f64() == Some(1.0)
    });
    let (s, v) = request("GET", &u("/v1/aggregates"), None, None);
    assert_eq!((s, v[0]["name"].as_str()), (200, Some("load")), "{v}");
    let (s, v) = request("GET", &u(&format!("/v1/aggregate/{long}")), None, None);
    assert_eq!(s, 400, "{v}");
    let (s, _) = request("DELETE", &u("/v1/state/load"), t, None);
    assert_eq!(s, 200);
    let (_, v) = request("GET", &u("/v1/members/api"), None, None);
    assert!(v["state"].get("load").is_none(), "{v}");

    // Keys.
    let k = "ab".repeat(32);
    let (s, _) = request("POST", &u("/v1/keys"), t, Some(r#"{"key":"zz"}"#));
    assert_eq!(s, 400);
    let (s, _) = request(
        "POST",
        &u("/v1/keys"),
        t,
        Some(&format!(r#"{{"op":"use","key":"{k}"}}"#)),
    );
    assert_eq!(s, 404);
    let (s, _) = request(
        "POST",
        &u("/v1/keys"),
        t,
        Some(&format!(r#"{{"op":"shred","key":"{k}"}}"#)),
    );
    assert_eq!(s, 400);
    let (s, v) = request(
        "POST",
        &u("/v1/keys"),
        t,
        Some(&format!(r#"{{"key":"{k}"}}"#)),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(2));
    let (s, _) = request(
        "DELETE",
        &u("/v1/keys"),
        t,
        Some(&format!(r#"{{"key":"{}"}}"#, "cd".repeat(32))),
    );
    assert_eq!(s, 404);
    let (s, v) = request("GET", &u("/v1/keys"), t, None);
    assert_eq!((s, v["keys"].as_array().map(Vec::len)), (200, Some(2)));
    let body = format!(r#"{{"key":"{}"}}"#, "01".repeat(32));
    let (s, v) = request("DELETE", &u("/v1/keys"), t, Some(&body));
    assert_eq!(s, 400, "removing the primary key: {v}");

    // Dashboard.
    let resp = ureq::get(&u("/")).call().unwrap();
    assert!(resp.content_type().starts_with("text/html"));
    assert!(resp.into_string().unwrap().contains("EventSource"));
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let a = agent("m").spawn();
    let b = agent("m2").join(&[&a]).spawn();
    wait_until("2 alive", DEADLINE, || {
        a.alive_count() == 2 && b.alive_count() == 2
    });
    // A scrape reads the node as it is now, not its last periodic export
    // (once a second): the members just listed are counted at once.
    let resp = ureq::get(&a.url("/metrics")).call().unwrap();
    assert!(resp.content_type().starts_with("text/plain"));
    let text = resp.into_string().unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let find = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
    };
    // Members by status, in the API's names and counts.
    let members = a.get("/v1/members");
    for status in ["alive", "suspect", "dead", "left"] {
        let listed = members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["status"] == status)
            .count();
        assert_eq!(
            find("rumor_members", Some(("status", status))),
            listed as f64,
            "{status}"
        );
    }
    assert_eq!(find("rumor_members", Some(("status", "alive"))), 2.0);
    assert!(find("rumor_awareness", Some(("node", "m"))) >= 0.0);
    assert_eq!(find("rumor_build_info", Some(("node", "m"))), 1.0);
    assert!(find("process_resident_memory_bytes", None) > 0.0);
    assert!(find("process_start_time_seconds", None) > 1.6e9);
    // Every family has its help (the parser names a histogram's sum and
    // count series apart from it).
    let families: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for f in families {
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|s| f.strip_suffix(s).filter(|b| scrape.docs.contains_key(*b)))
            .unwrap_or(f);
        assert!(scrape.docs.contains_key(family), "{f} has no HELP:\n{text}");
    }
    // Counters move once probes flow.
    wait_until("packets counted", DEADLINE, || {
        let text = ureq::get(&a.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("rumor_udp_received_packets_total{node=\"m\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)
    });
}

#[test]
fn event_stream_reports_joins() {
    let a = agent("sse").spawn();
    let stream = std::net::TcpStream::connect(a.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    write!(
        w,
        "GET /v1/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.contains("200"), "{status}");
    let _b = agent("sse2").join(&[&a]).spawn();
    let mut line = String::new();
    let mut got = false;
    while !got {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(d) = line.trim().strip_prefix("data:") {
            if let Ok(v) = serde_json::from_str::<Value>(d.trim()) {
                got = v["type"] == "member-join" && v["member"]["name"] == "sse2";
            }
        }
    }
    assert!(got, "no member-join event for sse2");
}

#[test]
fn snapshot_rejoins_without_join_flag() {
    let dir = temp_dir("snap");
    let snap = dir.join("snap.json");
    let a = agent("sa").spawn();
    let b_port = free_port();
    let mut b = agent("sb")
        .port(b_port)
        .join(&[&a])
        .args(&["--snapshot", snap.to_str().unwrap()])
        .spawn();
    wait_until("snapshot lists sa", DEADLINE, || {
        std::fs::read_to_string(&snap)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| {
                v["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x["name"] == "sa"))
            })
    });
    // Crash b, then restart it without --join: it finds a from the snapshot
    // and starts above the incarnation recorded there.
    let before: Value = serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    let recorded = before["incarnation"]
        .as_u64()
        .expect("incarnation recorded");
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(DEADLINE);
    wait_until("a sees sb dead", DEADLINE, || {
        a.status_of("sb").as_deref() == Some("dead")
    });
    let b2 = agent("sb")
        .port(b_port)
        .args(&["--snapshot", snap.to_str().unwrap()])
        .spawn();
    wait_until("a sees sb alive again", DEADLINE, || {
        a.status_of("sb").as_deref() == Some("alive")
    });
    assert_eq!(b2.status_of("sa").as_deref(), Some("alive"));
    let now = b2.get("/v1/self")["incarnation"].as_u64().unwrap();
    assert!(now > recorded, "restarted at {now}, recorded {recorded}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    assert!(v["incarnation"].as_u64().is_some());
}

#[test]
fn event_handler_runs_per_event() {
    let dir = temp_dir("handler");
    let out = dir.join("events.txt");
    let script = format!(
        "echo \"$RUMOR_EVENT $RUMOR_MEMBER_NAME $RUMOR_MEMBER_STATUS $RUMOR_TAG_ROLE\" >> {}",
        out.display()
    );
    let a = agent("ha").args(&["--event-handler", &script]).spawn();
    let _b = agent("hb").join(&[&a]).args(&["--tag", "role=web"]).spawn();
    wait_until("handler saw hb join", DEADLINE, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("member-join hb alive web"))
    });
}

#[test]
fn event_handler_gets_user_events() {
    let dir = temp_dir("uhandler");
    let out = dir.join("events.txt");
    let script = format!(
        "if [ \"$RUMOR_EVENT\" = user ]; then echo \"$RUMOR_USER_EVENT $RUMOR_USER_ORIGIN $(cat)\" >> {}; fi",
        out.display()
    );
    let a = agent("ua").args(&["--event-handler", &script]).spawn();
    let b = agent("ub").join(&[&a]).spawn();
    wait_until("2 alive", DEADLINE, || a.alive_count() == 2);
    let o = b.cli(&["event", "deploy", "v2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("handler saw the user event", DEADLINE, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("deploy ub v2"))
    });
}

/// A client reads a siblings-mode key's values and context with GET and
/// resolves the siblings by writing with that context (query, header, CLI).
#[test]
fn siblings_keys_are_written_with_the_context_from_get() {
    let dir = temp_dir("api-siblings");
    let conf = dir.join("rumor.toml");
    std::fs::write(&conf, "[protocol]\nkv_siblings_prefixes = [\"cart/\"]\n").unwrap();
    let a = agent("sib")
        .args(&["--http-token", TOKEN, "--config", conf.to_str().unwrap()])
        .spawn();
    let u = |p: &str| a.url(p);
    let t = Some(TOKEN);

    // No context: 409 that says how to write; a malformed one: 400.
    let (s, v) = request("PUT", &u("/v1/kv/cart/1"), t, Some("x"));
    assert_eq!(s, 409, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("context") && msg.contains("X-Rumor-Context"),
        "{v}"
    );
    let (s, v) = request("PUT", &u("/v1/kv/cart/1?context=zz"), t, Some("x"));
    assert_eq!(s, 400, "{v}");
    // The token is still checked first.
    let (s, _) = request("PUT", &u("/v1/kv/cart/1?context="), None, Some("x"));
    assert_eq!(s, 401);

    // Two writes that saw nothing (the empty context) are concurrent: siblings.
    for x in ["apple", "pear"] {
        let (s, v) = request("PUT", &u("/v1/kv/cart/1?context="), t, Some(x));
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = request("GET", &u("/v1/kv/cart/1"), None, None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["mode"], "siblings");
    let mut vals: Vec<&str> = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["value"].as_str().unwrap())
        .collect();
    vals.sort_unstable();
    assert_eq!(vals, ["apple", "pear"], "{v}");
    let ctx = v["context"].as_str().expect("a context").to_string();
    assert!(!ctx.is_empty(), "{v}");

    // Resolve with the context in the header: one value left.
    let (s, v) = request_with_headers(
        "PUT",
        &u("/v1/kv/cart/1"),
        t,
        &[("X-Rumor-Context", &ctx)],
        Some("apple,pear"),
    );
    assert_eq!(s, 200, "{v}");
    let v = a.get("/v1/kv/cart/1");
    let values = v["values"].as_array().unwrap();
    assert_eq!(values.len(), 1, "{v}");
    assert_eq!(values[0]["value"], "apple,pear");
    // Header and query together: refused.
    let (s, v) = request_with_headers(
        "PUT",
        &u(&format!("/v1/kv/cart/1?context={ctx}")),
        t,
        &[("X-Rumor-Context", &ctx)],
        Some("x"),
    );
    assert_eq!(s, 400, "{v}");

    // The CLI: rumor kv put --context, with the context from kv get --json.
    let out = a.cli(&["kv", "get", "cart/1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let ctx = got["context"].as_str().unwrap().to_string();
    let out = a.cli(&[
        "kv",
        "put",
        "cart/1",
        "banana",
        "--context",
        &ctx,
        "--http-token",
        TOKEN,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = a.get("/v1/kv/cart/1");
    let values = v["values"].as_array().unwrap();
    assert_eq!(values.len(), 1, "{v}");
    assert_eq!(values[0]["value"], "banana");
    let out = a.cli(&["kv", "put", "cart/1", "kiwi", "--http-token", TOKEN]);
    assert!(
        !out.status.success(),
        "a siblings key without --context must fail"
    );
    assert!(stderr(&out).contains("context"), "{}", stderr(&out));

    // Delete in context: a tombstone, the key reads as absent.
    let ctx = a.get("/v1/kv/cart/1")["context"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = request(
        "DELETE",
        &u(&format!("/v1/kv/cart/1?context={ctx}")),
        t,
        None,
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = request("GET", &u("/v1/kv/cart/1"), None, None);
    assert_eq!(s, 404, "{v}");
}

/// `GET /v1/timeseries` of an agent sampling every second: a point at start,
/// at least two after two intervals, one a second apart; the first point's
/// rates null, the others numbers; the members by status of the newest
/// point those of `/v1/members`; a user event and the traffic of a joined
/// member show in the rates. A read endpoint: the read token guards it. A
/// zero interval is a one-line error at start.
#[test]
fn timeseries_counts_members_and_rates() {
    const READ: &str = "r34d";
    let a = agent("ts-a")
        .args(&["--timeseries-interval", "1s"])
        .args(&["--http-token", TOKEN, "--http-read-token", READ])
        .spawn();
    let get = |path: &str| {
        let (s, v) = request("GET", &a.url(path), Some(READ), None);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    };
    // A fresh agent has its first point at once.
    let v = get("/v1/timeseries");
    assert_eq!(v["interval_ms"], 1000, "{v}");
    assert_eq!(v["capacity"], 3600, "{v}");
    let first = v["points"].as_array().expect("points").len();
    assert!(first >= 1, "{v}");
    let (s, _) = request("GET", &a.url("/v1/timeseries"), None, None);
    assert_eq!(s, 401, "a read endpoint needs the read token");

    let _b = agent("ts-b").join(&[&a]).spawn();
    let (s, v) = request(
        "POST",
        &a.url("/v1/event"),
        Some(TOKEN),
        Some(r#"{"name":"ts","payload":"x"}"#),
    );
    assert_eq!(s, 200, "{v}");
    // The newest point agrees with /v1/members (polled: a sample a second).
    let mut last = Value::Null;
    wait_until("a point with the members of /v1/members", DEADLINE, || {
        let members = get("/v1/members");
        let mut want = serde_json::json!({"alive": 0, "suspect": 0, "dead": 0, "left": 0});
        for m in members.as_array().into_iter().flatten() {
            let s = m["status"].as_str().unwrap_or("?").to_string();
            want[&s] = (want[&s].as_u64().unwrap_or(0) + 1).into();
        }
        last = get("/v1/timeseries");
        let points = last["points"].as_array().cloned().unwrap_or_default();
        points.len() >= 2
            && want["alive"] == 2
            && points.last().is_some_and(|p| p["members"] == want)
    });
    let points = last["points"].as_array().unwrap();
    let rates = [
        "suspicions_per_min",
        "failures_per_min",
        "bytes_in_per_s",
        "bytes_out_per_s",
        "events_per_min",
    ];
    for k in rates {
        assert!(
            points[0][k].is_null(),
            "the first point has no rate: {last}"
        );
    }
    for w in points.windows(2) {
        let gap = w[1]["t"].as_u64().unwrap() - w[0]["t"].as_u64().unwrap();
        assert!((500..=3000).contains(&gap), "points {gap} ms apart: {last}");
        for k in rates {
            assert!(w[1][k].as_f64().is_some_and(|x| x >= 0.0), "{k}: {last}");
        }
    }
    wait_until("traffic and the events in the rates", DEADLINE, || {
        let v = get("/v1/timeseries");
        let p = v["points"].as_array().cloned().unwrap_or_default();
        let any = |k: &str| p.iter().any(|p| p[k].as_f64().is_some_and(|x| x > 0.0));
        any("bytes_in_per_s") && any("bytes_out_per_s") && any("events_per_min")
    });
    let text = request_text(&a.url("/v1/timeseries"), READ);
    let n = serde_json::from_str::<Value>(&text)
        .map_or(0, |v| v["points"].as_array().map_or(0, Vec::len));
    eprintln!("GET /v1/timeseries with {n} points: {} bytes", text.len());

    // Zero is refused at start, in one line naming the setting.
    let o = std::process::Command::new(BIN)
        .args(["agent", "--name", "ts-bad", "--timeseries-interval", "0"])
        .args(["--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .output()
        .expect("run rumor");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("timeseries_interval") && err.trim().lines().count() == 1,
        "{err}"
    );
}

fn request_text(url: &str, token: &str) -> String {
    ureq::get(url)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default()
}
