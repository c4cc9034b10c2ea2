//! `rumor query` and `POST /v1/query` on real agents: filters select
//! exactly the matching members, `query:NAME=CMD` handlers answer with
//! their stdout, a slow responder times out with the answers that came, a
//! query to a dead member's name returns nothing and does not hang, the
//! built-in `_rumor_info` and `_rumor_ping`, and bad input.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The `(from, payload)` of every response line of `rumor query --json`.
fn responses(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "response")
        .map(|v| {
            (
                v["from"].as_str().unwrap_or("").to_string(),
                v["payload"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn filtered_queries_reach_exactly_the_matching_agents() {
    // Five agents; even ones tagged role=web. Each answers `uptime` with
    // its name; the slow one (q4) answers `slow` after 4 s.
    let answer = "query:uptime,query:slow=if [ \"$RUMOR_QUERY_NAME\" = slow ] && [ \"$RUMOR_SELF_NAME\" = q4 ]; then sleep 4; fi; echo \"$RUMOR_SELF_NAME got $(cat)\"";
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..5 {
        let name = format!("q{i}");
        let role = if i % 2 == 0 { "role=web" } else { "role=db" };
        let mut b = agent(&name).args(&["--tag", role, "--event-handler", answer]);
        if let Some(first) = agents.first() {
            b = b.join(&[first]);
        }
        agents.push(b.spawn());
    }
    wait_until("all five see each other", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == 5)
    });
    let ask = |args: &[&str]| {
        let mut all = vec!["query", "--json", "--timeout", "3s"];
        all.extend_from_slice(args);
        let started = Instant::now();
        let o = agents[1].cli(&all);
        assert!(o.status.success(), "rumor query failed: {}", stderr(&o));
        (stdout(&o), started.elapsed())
    };

    let (out, _) = ask(&["uptime", "hi", "--tag", "role=web"]);
    let got = responses(&out);
    let from: BTreeSet<String> = got.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(from, set(&["q0", "q2", "q4"]), "{out}");
    assert_eq!(got.len(), 3, "an answer twice: {out}");
    for (f, p) in &got {
        assert_eq!(p, &format!("{f} got hi\n"));
    }
    let acks = out.lines().filter(|l| l.contains("\"ack\"")).count();
    assert_eq!(acks, 3, "{out}");

    let (out, _) = ask(&["uptime", "--node", "q[0-2]", "--tag", "role=db|web"]);
    let from: BTreeSet<String> = responses(&out).into_iter().map(|(f, _)| f).collect();
    assert_eq!(from, set(&["q0", "q1", "q2"]), "{out}");

    // The slow answer misses the 3 s deadline; the others are there.
    let (out, took) = ask(&["slow"]);
    let from: BTreeSet<String> = responses(&out).into_iter().map(|(f, _)| f).collect();
    assert_eq!(from, set(&["q0", "q1", "q2", "q3"]), "{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(out.contains("\"done\""), "{out}");

    // Built in: every agent answers, no handler needed.
    let (out, _) = ask(&["_rumor_info"]);
    let infos = responses(&out);
    assert_eq!(infos.len(), 5, "{out}");
    for (from, payload) in &infos {
        let v: Value = serde_json::from_str(payload).expect("info is JSON");
        assert_eq!(v["name"], from.as_str());
        assert_eq!(v["members"]["alive"], 5);
    }
    // Every answer the asker got is timed (3 + 3 + 4 + 5; the slow one
    // too if it beat the deadline's bookkeeping), acks are not.
    let timed = agents[1].counter("rumor_query_response_seconds_count");
    assert!((15.0..=16.0).contains(&timed), "{timed} answers timed");
    assert_eq!(agents[0].counter("rumor_query_response_seconds_count"), 0.0);

    // A dead member's name selects nobody; the query ends at its deadline.
    agents[3].signal(nix::sys::signal::Signal::SIGKILL);
    let (out, took) = ask(&["uptime", "--node", "q3"]);
    assert!(responses(&out).is_empty(), "{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // Human output.
    let o = agents[0].cli(&["query", "uptime", "x", "--node", "q0", "--timeout", "1s"]);
    let text = stdout(&o);
    assert!(text.contains("response from q0: q0 got x"), "{text}");
    assert!(text.contains("total acks: 1, total responses: 1"), "{text}");
}

#[test]
fn bad_queries_are_one_line_errors() {
    let a = agent("qbad").spawn();
    let o = a.cli(&["query", "x", "--node", "("]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("--node"), "{}", stderr(&o));
    let big = "x".repeat(2000);
    let o = a.cli(&["query", "x", &big]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("413") && stderr(&o).contains("1024"),
        "{}",
        stderr(&o)
    );
    let o = a.cli(&["query", "x", "--tag", "novalue"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let (code, v) = request(
        "POST",
        &a.url("/v1/query"),
        None,
        Some(r#"{"name":"x","nodes":["("]}"#),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("does not compile"),
        "{v}"
    );
}
