//! The rumor agents: one per host, started, crashed, paused and restarted
//! by the harness, each with a data dir, a log file and its event stream
//! followed from the start.

use crate::hosts::Hosts;
use crate::http::{self, Seen};
use anyhow::{bail, Context, Result};
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every agent's gossip port, on its host's address.
pub const GOSSIP_PORT: u16 = 7946;

/// How to start agents.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The `rumor` binary.
    pub bin: PathBuf,
    /// `--profile`.
    pub profile: String,
    /// Where data dirs and logs go.
    pub dir: PathBuf,
    /// More arguments for every agent.
    pub extra: Vec<String>,
}

/// One host's agent across its restarts.
pub struct Agent {
    child: Option<Child>,
    /// How many times it was started.
    pub generation: u32,
    /// Everything its event streams delivered, every generation.
    pub events: Arc<Mutex<Vec<Seen>>>,
    /// Stopped with SIGSTOP.
    pub paused: bool,
}

/// The agents of a testbed.
pub struct Agents {
    /// The hosts they run on (dropped after the agents are killed).
    pub hosts: Hosts,
    opts: AgentOptions,
    agents: Vec<Agent>,
    t0: Instant,
}

impl Agents {
    /// No agent running yet; `t0` is the run's time origin.
    pub fn new(hosts: Hosts, opts: AgentOptions, t0: Instant) -> Agents {
        let agents = (0..hosts.len())
            .map(|_| Agent {
                child: None,
                generation: 0,
                events: Arc::default(),
                paused: false,
            })
            .collect();
        Agents {
            hosts,
            opts,
            agents,
            t0,
        }
    }

    /// Host `i`'s member name.
    pub fn name(i: usize) -> String {
        format!("h{}", i + 1)
    }

    /// The host of a member name.
    pub fn host_of(name: &str) -> Option<usize> {
        name.strip_prefix('h')?
            .parse::<usize>()
            .ok()?
            .checked_sub(1)
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Host `i`'s agent.
    pub fn agent(&self, i: usize) -> &Agent {
        &self.agents[i]
    }

    /// Whether host `i`'s agent process is running (paused or not).
    pub fn running(&mut self, i: usize) -> bool {
        match self.agents[i].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Host `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.opts.dir.join(Self::name(i)).join("data")
    }

    /// Starts host `i`'s agent (which must not be running), joining every
    /// other host, and waits until its API answers and its event stream is
    /// followed.
    pub fn start(&mut self, i: usize) -> Result<()> {
        self.start_with_clock(i, None)
    }

    /// [`Agents::start`] with the agent's wall clock off by `offset_ms`
    /// (the agent's testing hook `RUMOR_TEST_CLOCK_OFFSET_MS`).
    pub fn start_with_clock(&mut self, i: usize, offset_ms: Option<i64>) -> Result<()> {
        let name = Self::name(i);
        let dir = self.opts.dir.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))?;
        let seeds: Vec<String> = (0..self.len())
            .filter(|&j| j != i)
            .map(|j| format!("{}:{GOSSIP_PORT}", self.hosts.addr(j)))
            .collect();
        let mut cmd = self.hosts.ns(i).command(&self.opts.bin.to_string_lossy());
        cmd.args(["agent", "--name", &name])
            .arg("--bind")
            .arg(format!("{}:{GOSSIP_PORT}", self.hosts.addr(i)))
            .arg("--http")
            .arg(format!("127.0.0.1:{}", http::API_PORT))
            .args(["--profile", &self.opts.profile])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--retry-join", &seeds.join(","), "--retry-interval", "1s"])
            .args(&self.opts.extra)
            .env_remove("RUMOR_TEST_CLOCK_OFFSET_MS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(ms) = offset_ms {
            cmd.env("RUMOR_TEST_CLOCK_OFFSET_MS", ms.to_string());
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.opts.bin.display()))?;
        let a = &mut self.agents[i];
        a.child = Some(child);
        a.generation += 1;
        a.paused = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if http::json(self.hosts.ns(i), "GET", "/v1/self", b"").is_ok_and(|(s, _)| s == 200) {
                break;
            }
            if !self.running(i) {
                bail!(
                    "{name}'s agent exited at start; see {}",
                    dir.join("agent.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name}'s agent did not answer within 30 s; see {}",
                    dir.join("agent.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let a = &self.agents[i];
        http::follow_events(self.hosts.ns(i), a.generation, self.t0, a.events.clone())
    }

    /// Sends `sig` to host `i`'s agent.
    pub fn signal(&mut self, i: usize, sig: libc::c_int) {
        signal_child(&self.agents[i].child, sig);
        match sig {
            libc::SIGSTOP => self.agents[i].paused = true,
            libc::SIGCONT => self.agents[i].paused = false,
            _ => {}
        }
    }

    /// Kills host `i`'s agent with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        kill_child(&mut self.agents[i].child);
        self.agents[i].paused = false;
    }

    /// Waits up to `within` for host `i`'s agent to exit by itself (after a
    /// leave or SIGTERM); kills it if it does not.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.running(i) {
                self.agents[i].child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill(i);
        false
    }
}

/// Sends `sig` to `child`, if it runs.
pub fn signal_child(child: &Option<Child>, sig: libc::c_int) {
    if let Some(c) = child {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as libc::pid_t, sig) };
    }
}

/// Kills `child` with SIGKILL, if it runs, and reaps it.
pub fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for i in 0..self.agents.len() {
            if self.agents[i].paused {
                self.signal(i, libc::SIGCONT);
            }
            self.kill(i);
        }
    }
}
