//! Shared helpers of the integration tests: spawn real agents (the built
//! `rumor` binary) on loopback with free ports, talk to their HTTP API, run
//! CLI commands against them, and wait for conditions with a deadline.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rumor");

/// Generous bound on anything the cluster must do.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(a) = u.local_addr() else { continue };
        if TcpListener::bind(a).is_ok() {
            return a.port();
        }
    }
    panic!("no free port");
}

/// A port free for both UDP and TCP on 127.0.0.1, below Linux's ephemeral
/// range (32768-60999), for an agent that starts (or restarts) on it later:
/// a port from the ephemeral range may meanwhile become the local port of
/// an outgoing connection (even one to itself, when something keeps
/// dialling the port while nothing listens).
pub fn fixed_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 20;
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n % 12_000) as u16;
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        if UdpSocket::bind(a).is_ok() && TcpListener::bind(a).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "rumor-cli-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Poll `f` until it returns true; panic naming `what` after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One agent process.
pub struct Agent {
    /// Member name.
    pub name: String,
    /// Gossip address.
    pub gossip: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// The process.
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// Start building an agent.
pub fn agent(name: &str) -> AgentBuilder {
    AgentBuilder {
        name: name.to_string(),
        args: Vec::new(),
        envs: Vec::new(),
        gossip_port: None,
    }
}

/// Options of an agent to spawn.
pub struct AgentBuilder {
    name: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    gossip_port: Option<u16>,
}

impl AgentBuilder {
    /// Add command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Join these agents.
    pub fn join(mut self, seeds: &[&Agent]) -> Self {
        for s in seeds {
            self.args.push("--join".into());
            self.args.push(s.gossip.to_string());
        }
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// Use this gossip port.
    pub fn port(mut self, p: u16) -> Self {
        self.gossip_port = Some(p);
        self
    }

    /// Spawn it and wait until its HTTP API answers.
    pub fn spawn(self) -> Agent {
        let gossip = SocketAddr::from(([127, 0, 0, 1], self.gossip_port.unwrap_or_else(free_port)));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = temp_dir(&self.name);
        let log = dir.join("agent.log");
        let err = std::fs::File::create(&log).expect("log file");
        // The local profile unless the test picks one.
        let profile: &[&str] = if self.args.iter().any(|a| a == "--profile") {
            &[]
        } else {
            &["--profile", "local"]
        };
        let child = Command::new(BIN)
            .args(["agent", "--name", &self.name])
            .args(profile)
            .args(["--bind", &gossip.to_string(), "--http", &http.to_string()])
            .args(&self.args)
            // The test's own variables win (RUMOR_LOG included).
            .env("RUMOR_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn rumor agent");
        let mut a = Agent {
            name: self.name,
            gossip,
            http,
            child,
            log,
        };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = a.child.try_wait() {
                panic!(
                    "agent {} exited with {status} at start:\n{}",
                    a.name,
                    a.stderr()
                );
            }
            if a.try_get("/v1/health").is_some() {
                break;
            }
            if Instant::now() > end {
                panic!("agent {} never answered:\n{}", a.name, a.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        a
    }
}

/// An HTTP answer: status and JSON body (Null when not JSON).
pub fn request(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
    request_with_headers(method, url, token, &[], body)
}

/// [`request`] with extra headers.
pub fn request_with_headers(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut r = agent.request(method, url);
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let res = match body {
        Some(b) => r.set("Content-Type", "application/json").send_string(b),
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

impl Agent {
    /// `http://addr`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// GET as JSON, `None` if the agent does not answer.
    pub fn try_get(&self, path: &str) -> Option<Value> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        agent.get(&self.url(path)).call().ok()?.into_json().ok()
    }

    /// GET as JSON; panics if the agent does not answer.
    pub fn get(&self, path: &str) -> Value {
        self.try_get(path)
            .unwrap_or_else(|| panic!("{} did not answer GET {path}", self.name))
    }

    /// The sum of a counter family in this agent's /metrics (0 if it does
    /// not answer).
    pub fn counter(&self, family: &str) -> f64 {
        let text = ureq::get(&self.url("/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The status `name` has in this agent's view, if known.
    pub fn status_of(&self, name: &str) -> Option<String> {
        let v = self.try_get("/v1/members")?;
        v.as_array()?
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["status"].as_str().map(String::from))
    }

    /// How many members this agent sees alive.
    pub fn alive_count(&self) -> usize {
        self.try_get("/v1/members")
            .and_then(|v| {
                v.as_array()
                    .map(|a| a.iter().filter(|m| m["status"] == "alive").count())
            })
            .unwrap_or(0)
    }

    /// Run `rumor <args> --http <this agent>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--http", &self.http.to_string()])
            .output()
            .expect("run rumor")
    }

    /// The agent's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Send a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("kill");
    }

    /// Wait for the process to exit, with a deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > end {
                panic!("agent {} did not exit:\n{}", self.name, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Text of a process's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of a process's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A key's fingerprint as `rumor keys fingerprint KEY` prints it.
pub fn fingerprint(key: &str) -> String {
    let o = Command::new(BIN)
        .args(["keys", "fingerprint", key])
        .output()
        .expect("run rumor keys fingerprint");
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}
