//! `rumor force-leave` and `POST /v1/force-leave` against real agent
//! processes: a kill -9'd agent force-left on one agent is listed left by
//! every other; `--prune` takes it off every list; an alive member without
//! `--force`, an unknown name and this agent's own name are one-line errors
//! with exit 1 (HTTP 409, 404, 400).

mod common;

use std::time::Instant;

use common::{agent, request, stderr, stdout, wait_until, Agent, DEADLINE};
use nix::sys::signal::Signal;

/// Agents `prefix-0..n`, each joined through the first, every one seeing
/// all `n` alive.
fn cluster(prefix: &str, n: usize) -> Vec<Agent> {
    let first = agent(&format!("{prefix}-0")).spawn();
    let mut agents = vec![first];
    for i in 1..n {
        let a = agent(&format!("{prefix}-{i}")).join(&[&agents[0]]).spawn();
        agents.push(a);
    }
    wait_until("every agent sees every other alive", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == n)
    });
    agents
}

/// Whether `name` is on `a`'s member list at all.
fn listed(a: &Agent, name: &str) -> bool {
    a.try_get("/v1/members")
        .and_then(|v| {
            v.as_array()
                .map(|l| l.iter().any(|m| m["name"].as_str() == Some(name)))
        })
        .unwrap_or(true)
}

#[test]
fn a_killed_agent_is_force_left_everywhere_then_pruned() {
    let mut agents = cluster("fl", 3);
    let mut victim = agents.pop().expect("three agents");
    let name = victim.name.clone();
    victim.signal(Signal::SIGKILL);
    victim.wait_exit(DEADLINE);
    wait_until("agent 0 sees the killed agent gone", DEADLINE, || {
        matches!(
            agents[0].status_of(&name).as_deref(),
            Some("dead" | "suspect")
        )
    });

    let start = Instant::now();
    let out = agents[0].cli(&["force-leave", &name]);
    assert!(out.status.success(), "force-leave: {}", stderr(&out));
    assert!(stdout(&out).contains("marked left"), "{}", stdout(&out));
    wait_until("every other agent lists it left", DEADLINE, || {
        agents
            .iter()
            .all(|a| a.status_of(&name).as_deref() == Some("left"))
    });
    eprintln!(
        "force-leave: left on every agent {:?} after the command",
        start.elapsed()
    );

    let start = Instant::now();
    let out = agents[1].cli(&["force-leave", &name, "--prune"]);
    assert!(
        out.status.success(),
        "force-leave --prune: {}",
        stderr(&out)
    );
    wait_until("it is gone from every list", DEADLINE, || {
        agents.iter().all(|a| !listed(a, &name))
    });
    eprintln!(
        "force-leave --prune: gone from every list {:?} after the command",
        start.elapsed()
    );

    // Once forgotten, the name is unknown.
    let out = agents[0].cli(&["force-leave", &name]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("no member named"), "{err}");
}

#[test]
fn bad_force_leaves_are_one_line_errors() {
    let agents = cluster("flbad", 2);
    let (a, b) = (&agents[0], &agents[1]);

    // An alive member without --force: refused, and it stays alive.
    let out = a.cli(&["force-leave", &b.name]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("is alive") && err.contains("--force"), "{err}");
    let body = format!(r#"{{"name":"{}"}}"#, b.name);
    let (code, v) = request("POST", &a.url("/v1/force-leave"), None, Some(&body));
    assert_eq!(code, 409, "{v}");
    assert_eq!(b.status_of(&b.name).as_deref(), Some("alive"));
    assert_eq!(a.status_of(&b.name).as_deref(), Some("alive"));

    // An unknown name.
    let out = a.cli(&["force-leave", "nobody-here"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("nobody-here"), "{err}");
    let (code, _) = request(
        "POST",
        &a.url("/v1/force-leave"),
        None,
        Some(r#"{"name":"nobody-here","prune":true}"#),
    );
    assert_eq!(code, 404);

    // This agent itself, an empty name, an unknown field.
    let out = a.cli(&["force-leave", &a.name, "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("rumor leave"), "{}", stderr(&out));
    for body in [r#"{"name":""}"#, r#"{"name":"x","purge":true}"#] {
        let (code, v) = request("POST", &a.url("/v1/force-leave"), None, Some(body));
        assert!((400..500).contains(&code), "{body}: {code} {v}");
    }

    // With --force a live member is marked left, refutes (a higher
    // incarnation), and stays alive.
    let incarnation = || b.get("/v1/self")["incarnation"].as_u64().unwrap_or(0);
    let before = incarnation();
    let out = a.cli(&["force-leave", &b.name, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(
        "the live member refutes and is alive everywhere",
        DEADLINE,
        || {
            incarnation() > before
                && agents
                    .iter()
                    .all(|x| x.status_of(&b.name).as_deref() == Some("alive"))
        },
    );
}
