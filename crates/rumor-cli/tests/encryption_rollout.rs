//! Encryption turned on in a running cluster of five real agents, with no
//! member ever unable to read another's packets: plaintext → each agent
//! restarted (graceful leave, rejoin) with the keyring and
//! `encryption = "accept"` → each switched to `"send"` by SIGHUP → each to
//! `"enforce"` by SIGHUP. At every step every agent sees all five alive,
//! and no agent ever reports another failed. At the end a plaintext agent
//! can no longer join, and an agent with the key can. And the reverse:
//! enforce → send → accept by SIGHUP, then each restarted without the key.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const TOKEN: &str = "rollout-token";
const N: usize = 5;

fn gen_key() -> String {
    let o = Command::new(BIN).args(["keys", "gen"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// One member of the rollout: where it listens and its config file.
struct Slot {
    name: String,
    port: u16,
    config: PathBuf,
}

fn spawn(slot: &Slot, keyring: Option<&Path>, seed: Option<&Agent>) -> Agent {
    let mut b = agent(&slot.name).port(slot.port).args(&[
        "--profile",
        "lan",
        "--http-token",
        TOKEN,
        "--config",
        slot.config.to_str().unwrap(),
    ]);
    if let Some(k) = keyring {
        b = b.args(&["--keyring", k.to_str().unwrap()]);
    }
    if let Some(s) = seed {
        b = b.join(&[s]);
    }
    b.spawn()
}

/// After a step: every agent sees all alive, then keeps getting its probes
/// answered for a full round (at least N more acks each), so a step that
/// left some member unable to read another fails here, not later.
fn all_see_all_alive(agents: &[Agent], step: &str) {
    wait_until(
        &format!("{step}: every agent sees {N} alive"),
        DEADLINE,
        || agents.iter().all(|a| a.alive_count() == N),
    );
    let before: Vec<u64> = agents
        .iter()
        .map(|a| counter(a, "rumor_probe_acks_total"))
        .collect();
    wait_until(
        &format!("{step}: every agent's probes answered"),
        DEADLINE,
        || {
            agents
                .iter()
                .zip(&before)
                .all(|(a, b)| counter(a, "rumor_probe_acks_total") >= b + N as u64)
        },
    );
    assert!(
        agents.iter().all(|a| a.alive_count() == N),
        "{step}: a member is no longer alive"
    );
}

/// Every member-failed line any agent process ever logged.
fn failures(logs: &[PathBuf]) -> Vec<String> {
    logs.iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("member-failed"))
                .map(|l| format!("{}: {l}", p.display()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn info(a: &Agent) -> Value {
    a.get("/v1/info")
}

fn counter(a: &Agent, name: &str) -> u64 {
    info(a)["stats"][name].as_u64().unwrap_or(0)
}

/// Rewrite every config file to `mode` and SIGHUP the agents one at a time,
/// checking the cluster after each.
fn switch_all(agents: &[Agent], slots: &[Slot], logs: &[PathBuf], from: &str, to: &str) {
    for (a, slot) in agents.iter().zip(slots) {
        std::fs::write(&slot.config, format!("encryption = \"{to}\"\n")).unwrap();
        a.signal(Signal::SIGHUP);
        let line = format!("SIGHUP: applied: encryption {from} -> {to}");
        wait_until(&format!("{} logs {line:?}", a.name), DEADLINE, || {
            a.stderr().contains(&line)
        });
        assert_eq!(info(a)["encryption"]["mode"], to, "{}", a.name);
        all_see_all_alive(agents, &format!("{} in {to}", a.name));
        assert_eq!(failures(logs), Vec::<String>::new());
    }
}

/// A cluster of `N` agents named `{prefix}0..`, each with a config file
/// holding `config`, started with `keyring` and all joined to the first;
/// with their slots and every log file so far.
fn start_cluster(
    dir: &Path,
    prefix: &str,
    config: &str,
    keyring: Option<&Path>,
) -> (Vec<Slot>, Vec<Agent>, Vec<PathBuf>) {
    let slots: Vec<Slot> = (0..N)
        .map(|i| Slot {
            name: format!("{prefix}{i}"),
            port: fixed_port(),
            config: dir.join(format!("{prefix}{i}.toml")),
        })
        .collect();
    let mut logs = Vec::new();
    let mut agents: Vec<Agent> = Vec::new();
    for s in &slots {
        std::fs::write(&s.config, config).unwrap();
        let a = spawn(s, keyring, agents.first());
        logs.push(a.log.clone());
        agents.push(a);
    }
    (slots, agents, logs)
}

/// Restart each agent in turn (graceful leave, rejoin through the next)
/// with `config` and `keyring`, checking the cluster after each; `check`
/// looks at each new agent.
fn restart_each(
    agents: &mut [Agent],
    slots: &[Slot],
    logs: &mut Vec<PathBuf>,
    config: &str,
    keyring: Option<&Path>,
    check: impl Fn(&Agent),
) {
    for i in 0..N {
        agents[i].signal(Signal::SIGTERM);
        assert!(
            agents[i].wait_exit(DEADLINE).success(),
            "{}",
            agents[i].stderr()
        );
        std::fs::write(&slots[i].config, config).unwrap();
        let a = spawn(&slots[i], keyring, Some(&agents[(i + 1) % N]));
        check(&a);
        logs.push(a.log.clone());
        agents[i] = a;
        all_see_all_alive(agents, &format!("{} restarted: {config:?}", slots[i].name));
        assert_eq!(failures(logs), Vec::<String>::new());
    }
}

#[test]
fn encryption_is_turned_on_in_a_running_cluster_with_no_failure() {
    let dir = temp_dir("rollout");
    let ring = dir.join("keyring");
    std::fs::write(&ring, format!("{}\n", gen_key())).unwrap();
    let (slots, mut agents, mut logs) = start_cluster(&dir, "ro", "# plaintext\n", None);
    all_see_all_alive(&agents, "plaintext");
    assert_eq!(info(&agents[0])["encryption"]["enabled"], false);
    // A reload cannot make a plaintext agent send or accept encrypted
    // packets: it has no key. One ERROR line, the agent keeps running.
    std::fs::write(&slots[0].config, "encryption = \"send\"\n").unwrap();
    agents[0].signal(Signal::SIGHUP);
    wait_until("the plaintext agent refuses the reload", DEADLINE, || {
        let log = agents[0].stderr();
        log.contains("configuration not reloaded") && log.contains("needs a keyring")
    });
    std::fs::write(&slots[0].config, "# plaintext\n").unwrap();

    // Step 1: restart each, one at a time, with the keyring in accept mode.
    let started = Instant::now();
    restart_each(
        &mut agents,
        &slots,
        &mut logs,
        "encryption = \"accept\"\n",
        Some(&ring),
        |a| {
            let log = a.stderr();
            assert!(log.contains("encryption=\"accept\""), "start line: {log}");
        },
    );
    let restarts = started.elapsed();
    // The last plaintext sender was gone only after the last restart: the
    // first agents restarted accepted its plaintext and counted it.
    assert!(
        counter(&agents[0], "rumor_plaintext_accepted_total") > 0,
        "{}",
        info(&agents[0])
    );

    // Step 2 and 3: SIGHUP into send, then into enforce.
    let started = Instant::now();
    switch_all(&agents, &slots, &logs, "accept", "send");
    switch_all(&agents, &slots, &logs, "send", "enforce");
    let switches = started.elapsed();
    eprintln!("rollout of {N} agents: restarts {restarts:?}, two SIGHUP rounds {switches:?}");

    // Enforced: a plaintext agent cannot join any more...
    let seed = &agents[0];
    let refused_before = counter(seed, "rumor_unencrypted_rejected_total");
    let plain_log = dir.join("plain.log");
    let mut plain = Command::new(BIN)
        .args(["agent", "--name", "plain", "--profile", "lan"])
        .args(["--bind", &format!("127.0.0.1:{}", free_port())])
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--join", &seed.gossip.to_string()])
        .env("RUMOR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&plain_log).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = plain.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the plaintext agent never gave up");
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&plain_log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("cannot join the cluster"), "{text}");
    assert!(
        counter(seed, "rumor_unencrypted_rejected_total") > refused_before,
        "the seed refused its plaintext"
    );
    assert!(agents.iter().all(|a| a.status_of("plain").is_none()));

    // ...while one with the key can.
    let keyed = Slot {
        name: "keyed".into(),
        port: free_port(),
        config: dir.join("keyed.toml"),
    };
    std::fs::write(&keyed.config, "# enforce by default\n").unwrap();
    let k = spawn(&keyed, Some(&ring), Some(seed));
    logs.push(k.log.clone());
    agents.push(k);
    wait_until("every agent sees the keyed one", DEADLINE, || {
        agents.iter().all(|a| a.alive_count() == N + 1)
    });
    assert_eq!(failures(&logs), Vec::<String>::new());
}

#[test]
fn encryption_is_turned_off_in_a_running_cluster_with_no_failure() {
    let dir = temp_dir("rollback");
    let ring = dir.join("keyring");
    std::fs::write(&ring, format!("{}\n", gen_key())).unwrap();
    let enforce = "encryption = \"enforce\"\n";
    let (slots, mut agents, mut logs) = start_cluster(&dir, "rb", enforce, Some(&ring));
    all_see_all_alive(&agents, "encrypted");
    switch_all(&agents, &slots, &logs, "enforce", "send");
    switch_all(&agents, &slots, &logs, "send", "accept");
    // Everyone sends plaintext now and accepts both: restart each without
    // the key.
    restart_each(
        &mut agents,
        &slots,
        &mut logs,
        "# plaintext\n",
        None,
        |_| {},
    );
    for a in &agents {
        assert_eq!(info(a)["encryption"]["enabled"], false, "{}", a.name);
    }
}
