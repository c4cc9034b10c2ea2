//! The two systems the testbed compares, behind one face: start, crash,
//! pause and restart an agent, send a user event, and read what every agent
//! observed about the others (suspicions, failures, joins, user events).

use crate::agents::{kill_child, signal_child, AgentOptions, Agents, GOSSIP_PORT};
use crate::hosts::Hosts;
use crate::http;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What an agent observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A suspicion of the subject (rumor: every agent that hears it; Serf:
    /// the prober that starts it, the only one that logs it).
    Suspect,
    /// The subject was declared failed.
    Failed,
    /// The subject joined or came back alive.
    Alive,
    /// A user event of this name was delivered.
    User,
}

/// One observation.
#[derive(Clone, Debug)]
pub struct Obs {
    /// Seconds since the run's start.
    pub at: f64,
    /// The host that observed.
    pub observer: usize,
    /// What.
    pub kind: Kind,
    /// The member's name, or the user event's.
    pub subject: String,
    /// rumor: the incarnation of a suspicion (one suspicion per incarnation).
    pub incarnation: Option<u64>,
}

/// A system under test on the testbed's hosts.
pub trait Members {
    /// Its name in reports.
    fn label(&self) -> &'static str;
    /// The hosts.
    fn hosts(&self) -> &Hosts;
    /// Starts host `i`'s agent, joining host 0 (which must be up for i > 0).
    fn start(&mut self, i: usize) -> Result<()>;
    /// Kills host `i`'s agent (SIGKILL).
    fn kill(&mut self, i: usize);
    /// Sends a signal to host `i`'s agent.
    fn signal(&mut self, i: usize, sig: libc::c_int);
    /// Sends a user event from host `i`.
    fn send_event(&self, i: usize, name: &str) -> Result<()>;
    /// Whether every running agent lists all `n` members alive.
    fn all_alive(&self, up: &[bool]) -> bool;
    /// Everything observed so far.
    fn observations(&self) -> Vec<Obs>;
}

/// rumor agents.
pub struct Rumor(pub Agents);

impl Rumor {
    /// Agents of `bin` on `hosts`.
    pub fn new(hosts: Hosts, bin: PathBuf, profile: &str, dir: PathBuf, t0: Instant) -> Rumor {
        let opts = AgentOptions {
            bin,
            profile: profile.into(),
            dir,
            extra: vec![],
        };
        Rumor(Agents::new(hosts, opts, t0))
    }
}

impl Members for Rumor {
    fn label(&self) -> &'static str {
        "rumor"
    }
    fn hosts(&self) -> &Hosts {
        &self.0.hosts
    }
    fn start(&mut self, i: usize) -> Result<()> {
        self.0.start(i)
    }
    fn kill(&mut self, i: usize) {
        self.0.kill(i)
    }
    fn signal(&mut self, i: usize, sig: libc::c_int) {
        self.0.signal(i, sig)
    }
    fn send_event(&self, i: usize, name: &str) -> Result<()> {
        let body = json!({ "name": name }).to_string();
        match http::json(self.0.hosts.ns(i), "POST", "/v1/event", body.as_bytes())? {
            (200, _) => Ok(()),
            (s, v) => bail!("POST /v1/event: {s} {v}"),
        }
    }
    fn all_alive(&self, up: &[bool]) -> bool {
        crate::check::views(&self.0, up).is_empty()
    }
    fn observations(&self) -> Vec<Obs> {
        let mut out = Vec::new();
        for i in 0..self.0.len() {
            let seen = self
                .0
                .agent(i)
                .events
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            for s in seen {
                let kind = match s.data["type"].as_str() {
                    Some("member-suspect") => Kind::Suspect,
                    Some("member-failed") => Kind::Failed,
                    Some("member-join" | "member-alive") => Kind::Alive,
                    Some("user") => Kind::User,
                    _ => continue,
                };
                let subject = if kind == Kind::User {
                    s.data["name"].as_str()
                } else {
                    s.data["member"]["name"].as_str()
                };
                out.push(Obs {
                    at: s.at,
                    observer: i,
                    kind,
                    subject: subject.unwrap_or_default().to_string(),
                    incarnation: s.data["member"]["incarnation"].as_u64(),
                });
            }
        }
        out
    }
}

/// HashiCorp Serf agents, observed through their logs.
pub struct Serf {
    hosts: Hosts,
    bin: PathBuf,
    profile: String,
    dir: PathBuf,
    procs: Vec<Option<Child>>,
    obs: Arc<Mutex<Vec<Obs>>>,
    t0: Instant,
}

/// Serf's RPC port on each host's loopback.
const SERF_RPC: &str = "127.0.0.1:7373";

impl Serf {
    /// Agents of `bin` (`serf`) on `hosts`.
    pub fn new(hosts: Hosts, bin: PathBuf, profile: &str, dir: PathBuf, t0: Instant) -> Serf {
        let n = hosts.len();
        Serf {
            hosts,
            bin,
            profile: profile.into(),
            dir,
            procs: (0..n).map(|_| None).collect(),
            obs: Arc::default(),
            t0,
        }
    }

    fn serf_cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let out = self
            .hosts
            .ns(i)
            .command(&self.bin.to_string_lossy())
            .args(args)
            .output()
            .context("run serf")?;
        if !out.status.success() {
            bail!(
                "serf {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What one line of Serf's log says (Serf's log writer may put two records
/// on one line, so every marker is looked for).
fn parse_serf(line: &str) -> Vec<(Kind, String)> {
    const MARKERS: [(&str, Kind); 5] = [
        ("serf: EventMemberFailed: ", Kind::Failed),
        ("serf: EventMemberJoin: ", Kind::Alive),
        ("memberlist: Suspect ", Kind::Suspect),
        ("agent: Received event: user-event: ", Kind::User),
        ("serf: EventMemberUpdate: ", Kind::Alive),
    ];
    let mut out = Vec::new();
    for (marker, kind) in MARKERS {
        let mut rest = line;
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            if let Some(word) = rest.split_whitespace().next() {
                out.push((kind.clone(), word.to_string()));
            }
        }
    }
    out
}

impl Members for Serf {
    fn label(&self) -> &'static str {
        "Serf"
    }
    fn hosts(&self) -> &Hosts {
        &self.hosts
    }
    fn start(&mut self, i: usize) -> Result<()> {
        let name = Agents::name(i);
        let mut cmd = self.hosts.ns(i).command(&self.bin.to_string_lossy());
        cmd.arg("agent")
            .arg(format!("-node={name}"))
            .arg(format!("-bind={}:{GOSSIP_PORT}", self.hosts.addr(i)))
            .arg(format!("-rpc-addr={SERF_RPC}"))
            .arg(format!("-profile={}", self.profile))
            .arg("-log-level=info");
        if i > 0 {
            cmd.arg(format!("-join={}:{GOSSIP_PORT}", self.hosts.addr(0)));
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        let Some(stdout) = child.stdout.take() else {
            bail!("no stdout from serf");
        };
        let (obs, t0) = (self.obs.clone(), self.t0);
        let log = self.dir.join(format!("serf-{name}.log"));
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = t0.elapsed().as_secs_f64();
                if let Some(f) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{at:.3} {line}");
                }
                for (kind, subject) in parse_serf(&line) {
                    let subject = subject.trim_end_matches(',').to_string();
                    obs.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Obs {
                            at,
                            observer: i,
                            kind,
                            subject,
                            incarnation: None,
                        });
                }
            }
        });
        self.procs[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .serf_cli(i, &["members", &format!("-rpc-addr={SERF_RPC}")])
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("serf on {name} did not answer its RPC within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
    fn kill(&mut self, i: usize) {
        kill_child(&mut self.procs[i]);
    }
    fn signal(&mut self, i: usize, sig: libc::c_int) {
        signal_child(&self.procs[i], sig);
    }
    fn send_event(&self, i: usize, name: &str) -> Result<()> {
        self.serf_cli(
            i,
            &[
                "event",
                &format!("-rpc-addr={SERF_RPC}"),
                "-coalesce=false",
                name,
                "x",
            ],
        )
        .map(|_| ())
    }
    fn all_alive(&self, up: &[bool]) -> bool {
        let n = up.iter().filter(|u| **u).count();
        (0..up.len()).filter(|&i| up[i]).all(|i| {
            self.serf_cli(
                i,
                &["members", &format!("-rpc-addr={SERF_RPC}"), "-status=alive"],
            )
            .is_ok_and(|out| out.lines().filter(|l| !l.trim().is_empty()).count() == n)
        })
    }
    fn observations(&self) -> Vec<Obs> {
        self.obs.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

impl Drop for Serf {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.signal(i, libc::SIGCONT);
            self.kill(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serf_log_lines_parse_even_two_on_one_line() {
        let line = "2026/11/22 05:54:26 [INFO] serf: EventMemberFailed: h3 10.201.0.3    2026/11/22 05:54:26 [INFO] memberlist: Suspect h4 has failed, no acks received";
        let got = parse_serf(line);
        assert_eq!(
            got,
            vec![(Kind::Failed, "h3".into()), (Kind::Suspect, "h4".into())]
        );
        let ev =
            parse_serf("    2026/11/22 05:54:26 [INFO] agent: Received event: user-event: tb-ev-1");
        assert_eq!(ev, vec![(Kind::User, "tb-ev-1".into())]);
    }
}
