//! `rumor keys` across the cluster on real agents: a rotation with one
//! agent down reports it (exit 1), a later run reaches all five, every
//! agent writes its keyring file back, and an agent restarted from its file
//! rejoins under the rotated key. Serf's base64 keys are accepted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const TOKEN: &str = "ring-token";

fn gen(base64: bool) -> String {
    let mut c = Command::new(BIN);
    c.args(["keys", "gen"]);
    if base64 {
        c.arg("--base64");
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

fn cli(a: &Agent, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--http", &a.http.to_string()])
        .env("RUMOR_HTTP_TOKEN", TOKEN)
        .output()
        .expect("run rumor")
}

/// The keys of a keyring file, in order (comments skipped).
fn file_keys(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn start(name: &str, ring: &Path, port: u16, seed: Option<&Agent>) -> Agent {
    let mut b = agent(name)
        .args(&["--keyring", ring.to_str().unwrap(), "--http-token", TOKEN])
        .port(port);
    if let Some(s) = seed {
        b = b.join(&[s]);
    }
    b.spawn()
}

#[test]
fn a_rotation_reaches_every_member_and_survives_restarts() {
    let (k1, k2_b64) = (gen(false), gen(true));
    assert_eq!(k2_b64.len(), 44, "base64 of 32 bytes: {k2_b64}");
    let (f1, f2) = (fingerprint(&k1), fingerprint(&k2_b64));
    let dir = temp_dir("keyring-cluster");
    let rings: Vec<PathBuf> = (0..5).map(|i| dir.join(format!("ring{i}"))).collect();
    for r in &rings {
        std::fs::write(r, format!("{k1}\n")).unwrap();
    }
    let ports: Vec<u16> = (0..5).map(|_| fixed_port()).collect();
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..5 {
        let a = start(&format!("kr{i}"), &rings[i], ports[i], agents.first());
        agents.push(a);
    }
    wait_until("five encrypted agents converge", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == 5)
    });

    // One agent down during the install: reported, exit 1.
    agents[4].signal(nix::sys::signal::Signal::SIGKILL);
    let _ = agents[4].wait_exit(DEADLINE);
    let o = cli(&agents[0], &["keys", "install", &k2_b64]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("key {f2} installed on 4 of 5 members")),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("kr4: no answer"), "{}", stderr(&o));

    // It comes back (with the old keyring: k1 is still primary everywhere).
    agents[4] = start("kr4", &rings[4], ports[4], Some(&agents[0]));
    wait_until("kr4 is back everywhere", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == 5)
    });
    for args in [
        vec!["keys", "install", k2_b64.as_str()],
        vec!["keys", "use", k2_b64.as_str()],
        vec!["keys", "remove", k1.as_str()],
    ] {
        let o = cli(&agents[1], &args);
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("on 5 of 5 members"), "{}", stdout(&o));
    }
    let o = cli(&agents[2], &["keys", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["answered"], 5, "{v}");
    assert_eq!(v["keys"][&f2]["members"], 5, "{v}");
    assert_eq!(v["keys"][&f2]["primary"], 5, "{v}");
    assert!(v["keys"].get(&f1).is_none(), "k1 still held: {v}");

    // Every agent wrote its file back: the rotated key only.
    let k2_hex = {
        let o = cli(&agents[0], &["keys", "list", "--local", "--json"]);
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["primary"], f2.as_str());
        file_keys(&rings[0])[0].clone()
    };
    assert_eq!(fingerprint(&k2_hex), f2);
    for r in &rings {
        assert_eq!(file_keys(r), vec![k2_hex.clone()], "{}", r.display());
    }

    // A restart reads the rotated file and rejoins under k2.
    agents[3].signal(nix::sys::signal::Signal::SIGTERM);
    let _ = agents[3].wait_exit(DEADLINE);
    agents[3] = start("kr3", &rings[3], ports[3], Some(&agents[0]));
    wait_until("kr3 rejoins under the rotated key", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == 5)
    });
}

#[test]
fn a_serf_key_of_the_wrong_size_is_a_clear_error() {
    // `serf keygen` makes 32-byte keys, older Serf 16-byte ones.
    let o = Command::new(BIN)
        .args(["keys", "fingerprint", "AAECAwQFBgcICQoLDA0ODw=="])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("16 bytes"), "{}", stderr(&o));
}
