//! The CLI client against real agent processes: members, join, leave, keys,
//! tags; and the errors of bad input (no agent, unknown flags, config typos,
//! ports in use, unreachable seeds).

mod common;

use common::*;
use serde_json::Value;

#[test]
fn no_agent_is_one_line_and_exit_1() {
    let port = free_port();
    let o = std::process::Command::new(BIN)
        .args(["members", "--http", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("no agent answers"), "{err}");
}

#[test]
fn members_join_tags_and_leave() {
    let a = agent("a").args(&["--tag", "role=db"]).spawn();
    let b = agent("b").join(&[&a]).args(&["--tag", "role=web"]).spawn();
    let c = agent("c").join(&[&a]).spawn();
    wait_until("a sees 3 alive", DEADLINE, || a.alive_count() == 3);

    // Table.
    let o = a.cli(&["members"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    let col = lines[0].find("ADDRESS").unwrap();
    for l in &lines[1..] {
        assert!(l.contains("alive"), "{out}");
        // Aligned: the address column starts at the same place.
        assert!(l[col..].starts_with("127.0.0.1:"), "{out}");
    }
    assert!(out.contains("role=db") && out.contains("role=web"), "{out}");

    // JSON and filters.
    let o = a.cli(&["members", "--json", "--tag", "role=web"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["name"], "b");
    assert_eq!(arr[0]["status"], "alive");
    assert!(arr[0]["incarnation"].as_u64().is_some());
    let o = a.cli(&["members", "--json", "--status", "dead"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 0);
    let o = a.cli(&["members", "--status", "sleepy"]);
    assert_eq!(o.status.code(), Some(1));

    // Tags: set on c, seen on a.
    let o = c.cli(&["tags", "set", "zone=z1", "role=cache"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("a sees c's new tags", DEADLINE, || {
        a.get("/v1/members/c")["tags"]["zone"] == "z1"
    });
    let o = c.cli(&["tags", "del", "zone"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("a sees c's zone tag gone", DEADLINE, || {
        let t = &a.get("/v1/members/c")["tags"];
        t.get("zone").is_none() && t["role"] == "cache"
    });

    // Join: d starts alone, then joins through the CLI.
    let mut d = agent("d").spawn();
    assert_eq!(d.alive_count(), 1);
    let o = d.cli(&["join", &a.gossip.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("joined through 1"), "{}", stdout(&o));
    wait_until("everyone sees 4 alive", DEADLINE, || {
        [&a, &b, &c, &d].iter().all(|x| x.alive_count() == 4)
    });

    // Leave: d leaves, its process exits 0, the others see it left.
    let o = d.cli(&["leave"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let status = d.wait_exit(DEADLINE);
    assert!(status.success(), "{status}: {}", d.stderr());
    wait_until("a and b see d left", DEADLINE, || {
        a.status_of("d").as_deref() == Some("left") && b.status_of("d").as_deref() == Some("left")
    });
}

#[test]
fn keys_commands() {
    let gen = || {
        let o = std::process::Command::new(BIN)
            .args(["keys", "gen"])
            .output()
            .unwrap();
        assert!(o.status.success());
        stdout(&o).trim().to_string()
    };
    let (k0, k1, k2) = (gen(), gen(), gen());
    assert_eq!(k1.len(), 64);
    assert_ne!(k1, k2);

    // Without encryption there is no keyring to change.
    let plain = agent("k-plain").spawn();
    let o = plain.cli(&["keys", "install", &k1]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--keyring"), "{}", stderr(&o));

    let dir = temp_dir("keys");
    let ring = dir.join("keyring");
    std::fs::write(&ring, format!("{k0}\n")).unwrap();
    let a = agent("k")
        .args(&["--keyring", ring.to_str().unwrap()])
        .spawn();
    // A member with the same key joins.
    let b = agent("k-b")
        .args(&["--keyring", ring.to_str().unwrap()])
        .join(&[&a])
        .spawn();
    wait_until("encrypted pair converges", DEADLINE, || {
        a.alive_count() == 2 && b.alive_count() == 2
    });

    let list = |a: &Agent| -> Value {
        let o = a.cli(&["keys", "list", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    assert_eq!(list(&a)["keys"].as_array().unwrap().len(), 1);
    assert_eq!(list(&a)["primary"], k0.as_str());
    assert!(a.cli(&["keys", "install", &k1]).status.success());
    assert!(a.cli(&["keys", "install", &k2]).status.success());
    let v = list(&a);
    assert_eq!(v["keys"].as_array().unwrap().len(), 3);
    assert_eq!(v["primary"], k0.as_str());
    assert!(a.cli(&["keys", "use", &k2]).status.success());
    assert_eq!(list(&a)["primary"], k2.as_str());
    // The primary key cannot be removed; another can.
    let o = a.cli(&["keys", "remove", &k2]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("primary"), "{}", stderr(&o));
    assert!(a.cli(&["keys", "remove", &k1]).status.success());
    assert_eq!(list(&a)["keys"].as_array().unwrap().len(), 2);
    // A malformed key is refused.
    let o = a.cli(&["keys", "install", "abc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("64 hexadecimal"), "{}", stderr(&o));
    // The human listing marks the primary.
    let o = a.cli(&["keys", "list"]);
    assert!(stdout(&o).contains("(primary)"));
}

#[test]
fn event_is_not_implemented_yet() {
    let a = agent("e").spawn();
    let o = a.cli(&["event", "deploy", "v2"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("501") && err.contains("user events"), "{err}");
}

fn run_agent(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("agent")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_input_fails_cleanly() {
    // Unknown flag.
    let o = run_agent(&["--bogus"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("--bogus"), "{}", stderr(&o));

    // Config typo names the key.
    let dir = temp_dir("cfg");
    let cfg = dir.join("rumor.toml");
    std::fs::write(&cfg, "name = \"x\"\nprofil = \"lan\"\n").unwrap();
    let o = run_agent(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("profil"), "{err}");

    // Bad profile.
    let o = run_agent(&["--name", "x", "--profile", "mars", "--bind", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mars"), "{}", stderr(&o));

    // Gossip port in use.
    let a = agent("busy").spawn();
    let http = format!("127.0.0.1:{}", free_port());
    let o = run_agent(&[
        "--name",
        "y",
        "--bind",
        &a.gossip.to_string(),
        "--http",
        &http,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&a.gossip.to_string()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // HTTP port in use.
    let bind = format!("127.0.0.1:{}", free_port());
    let o = run_agent(&[
        "--name",
        "y",
        "--bind",
        &bind,
        "--http",
        &a.http.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&a.http.to_string()), "{}", stderr(&o));

    // Unreachable seed: exits 1 and leaves nothing listening.
    let dead_seed = format!("127.0.0.1:{}", free_port());
    let http_port = free_port();
    let http = format!("127.0.0.1:{http_port}");
    let o = run_agent(&[
        "--name",
        "z",
        "--bind",
        &bind,
        "--http",
        &http,
        "--profile",
        "local",
        "--join",
        &dead_seed,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&dead_seed), "{err}");
    assert!(std::net::TcpStream::connect(&http).is_err());
}

#[test]
fn config_file_and_env() {
    let dir = temp_dir("cfgok");
    let cfg = dir.join("rumor.toml");
    std::fs::write(&cfg, "[tags]\nrole = \"from-file\"\nrack = \"r1\"\n").unwrap();
    let a = agent("cfg")
        .args(&["--config", cfg.to_str().unwrap()])
        .spawn();
    let me = a.get("/v1/self");
    assert_eq!(me["tags"]["role"], "from-file");
    // The environment overrides the file.
    let b = agent("cfg2")
        .args(&["--config", cfg.to_str().unwrap()])
        .env("RUMOR_TAGS", "role=from-env")
        .spawn();
    let me = b.get("/v1/self");
    assert_eq!(me["tags"]["role"], "from-env");
    assert!(me["tags"].get("rack").is_none());
}

#[test]
fn monitor_prints_events_as_they_happen() {
    use std::io::{BufRead, BufReader};
    let a = agent("mon").spawn();
    let mut child = std::process::Command::new(BIN)
        .args(["monitor", "--http", &a.http.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The stream may connect a little after the process starts: keep
    // adding members until one shows up.
    let mut others = Vec::new();
    let mut seen = None;
    let end = std::time::Instant::now() + DEADLINE;
    while seen.is_none() && std::time::Instant::now() < end {
        others.push(agent(&format!("mon-{}", others.len())).join(&[&a]).spawn());
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
            seen = Some(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = seen.expect("monitor printed nothing");
    assert!(
        line.contains("member-join") && line.contains("mon-"),
        "{line}"
    );
}
