//! Names are identities, with real agent processes: a second agent started
//! with a name a live member holds is refused at join (exit 1, one line
//! naming the holder's address), and the holder keeps its name: nobody sees
//! it leave, fail or move, and it is not counted as left when the impostor
//! is gone.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn an_agent_with_a_taken_name_exits_naming_the_holder() {
    let a = agent("holder").spawn();
    let b = agent("witness").join(&[&a]).spawn();
    wait_until("both list both", DEADLINE, || {
        a.alive_count() == 2 && b.alive_count() == 2
    });
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let bind = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let out = Command::new(BIN)
        .args(["agent", "--name", "holder", "--profile", "local"])
        .args(["--bind", &bind.to_string(), "--http", &http.to_string()])
        .args(["--join", &b.gossip.to_string()])
        .env("RUMOR_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run the impostor");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        last.contains("held by a live member") && last.contains(&a.gossip.to_string()),
        "the error must name the conflict and the holder's address: {err}"
    );
    // The holder keeps its name and address in every view, through the
    // impostor's exit (which must announce no leave).
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        for view in [&a, &b] {
            let m = view.get("/v1/members/holder");
            assert_eq!(m["status"], "alive", "{} sees {m}", view.name);
            assert_eq!(m["addr"], a.gossip.to_string(), "{} sees {m}", view.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = ureq::get(&b.url("/metrics"))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    let conflicts: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("rumor_refused_total") && l.contains("limit=\"name_held\""))
        .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
        .sum();
    assert!(
        conflicts >= 1.0,
        "the witness did not count the conflict:\n{metrics}"
    );
}
