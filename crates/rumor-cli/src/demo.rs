//! `rumor demo`: N real nodes in this process on 127.0.0.1, the dashboard of
//! the first one, and a scripted scenario with a timeline.
//!
//! Script: wait until every node sees every node alive; crash one node (all
//! its I/O stops at once); pause one node for longer than the probe timeout
//! and let it come back; make one node leave gracefully; broadcast one user
//! event. For each step the timeline says when the first and the last other
//! node saw it (for the user event: when the first and the last remaining
//! node delivered it, the sender included).
//!
//! The library has no pause hook, so the paused node is the one node that
//! does not run in this process: it is a child `rumor agent` process, stopped
//! with SIGSTOP and resumed with SIGCONT (a real pause, packets queue in the
//! kernel as they would for a stalled process).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumor_core::{MemberState, Profile, Tags};
use serde_json::{json, Value};

use crate::cli::DemoArgs;
use crate::cluster::{self, NodeSettings, SharedCluster};
use crate::http::{self, ApiState};

/// The longest the paused node stays paused.
pub const MAX_PAUSE: Duration = Duration::from_secs(3);

/// How long to pause a node so that it is suspected but, if the protocol
/// works, never declared failed: past several probe timeouts, at most half
/// the minimum suspicion timeout of a cluster of `n`, and at most [`MAX_PAUSE`].
pub fn pause_for(profile: Profile, n: usize) -> Duration {
    let c = rumor_core::Config::profile(profile);
    let floor = c.probe_timeout * 3;
    (c.suspicion_min(n) / 2).min(MAX_PAUSE).max(floor)
}
/// Bound on each step of the script.
const STEP_DEADLINE: Duration = Duration::from_secs(120);
/// How often the script looks at every node's view.
const POLL: Duration = Duration::from_millis(25);

struct Demo {
    /// The nodes' profile.
    profile: Profile,
    /// The in-process nodes.
    nodes: Vec<SharedCluster>,
    /// The child process that gets paused, and its name.
    child: tokio::process::Child,
    child_name: String,
    names: Vec<String>,
    start: Instant,
    timeline: Vec<Value>,
}

/// When the first and the last of `watchers` saw `target` in a state `pred` accepts.
struct Reach {
    first: Option<Duration>,
    last: Option<Duration>,
    seen_by: usize,
    of: usize,
}

impl Demo {
    fn secs(d: Option<Duration>) -> Value {
        d.map_or(Value::Null, |d| {
            json!((d.as_secs_f64() * 1000.0).round() / 1000.0)
        })
    }

    fn say(&mut self, what: &str, detail: Value) {
        let t = self.start.elapsed().as_secs_f64();
        println!("[{t:8.3}s] {what}");
        self.timeline
            .push(json!({"at_s": (t * 1000.0).round() / 1000.0, "what": what, "detail": detail}));
    }

    /// Poll until every watcher sees `target` in a state matching `pred`
    /// (or the deadline passes); times are measured from `since`.
    async fn reach(
        &self,
        watchers: &[usize],
        target: &str,
        since: Instant,
        pred: impl Fn(MemberState) -> bool,
        deadline: Duration,
    ) -> Reach {
        let mut seen: HashMap<usize, Duration> = HashMap::new();
        let end = since + deadline;
        while Instant::now() < end && seen.len() < watchers.len() {
            for &w in watchers {
                if seen.contains_key(&w) {
                    continue;
                }
                let hit = self.nodes[w]
                    .members()
                    .await
                    .unwrap_or_default()
                    .iter()
                    .any(|m| &*m.name == target && pred(m.state));
                if hit {
                    seen.insert(w, since.elapsed());
                }
            }
            tokio::time::sleep(POLL).await;
        }
        Reach {
            first: seen.values().min().copied(),
            last: if seen.len() == watchers.len() {
                seen.values().max().copied()
            } else {
                None
            },
            seen_by: seen.len(),
            of: watchers.len(),
        }
    }

    fn report(&mut self, what: &str, r: &Reach) {
        let line = format!(
            "{what}: first node after {}, last after {} ({} of {} nodes)",
            fmt(r.first),
            fmt(r.last),
            r.seen_by,
            r.of
        );
        self.say(
            &line,
            json!({"first_s": Self::secs(r.first), "last_s": Self::secs(r.last), "seen_by": r.seen_by, "of": r.of}),
        );
    }
}

fn fmt(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.3}s", d.as_secs_f64()))
}

/// A port free for UDP and TCP on 127.0.0.1.
fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let a = u.local_addr()?;
        if std::net::TcpListener::bind(a).is_ok() {
            return Ok(a.port());
        }
    }
    bail!("no free port for the paused node")
}

fn signal_child(child: &tokio::process::Child, sig: nix::sys::signal::Signal) -> Result<()> {
    let pid = child.id().context("the paused node's process is gone")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
        .with_context(|| format!("cannot send {sig} to the paused node"))
}

/// Run the demo until Ctrl-C (or the script's end with `--exit-after-script`).
pub async fn run(args: DemoArgs) -> Result<()> {
    if args.nodes < 5 {
        bail!("the demo needs at least 5 nodes (one to watch, one to crash, one to pause, one to leave, one more)");
    }
    let profile: Profile = args
        .profile
        .parse()
        .map_err(|e: rumor_core::Error| anyhow::anyhow!("--profile: {e}"))?;
    let membership: rumor_core::Membership = args
        .membership
        .parse()
        .map_err(|e: rumor_core::Error| anyhow::anyhow!("--membership: {e}"))?;
    let mut config = rumor_core::Config::profile(profile);
    config.membership = membership;
    let http_addr: SocketAddr = crate::config::parse_addr("--http", &args.http)?;
    crate::metrics::install();
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot bind HTTP {http_addr}"))?;
    let http_addr = listener.local_addr().unwrap_or(http_addr);
    let port_of = |i: usize| -> Result<u16> {
        if args.base_port == 0 {
            return Ok(0);
        }
        u16::try_from(i)
            .ok()
            .and_then(|i| args.base_port.checked_add(i))
            .context("--base-port too high for that many nodes")
    };

    let start = Instant::now();
    let in_process = args.nodes - 1;
    let mut nodes = Vec::with_capacity(in_process);
    for i in 0..in_process {
        let name = format!("node-{i:02}");
        let mut tags = Tags::new();
        tags.insert("demo".into(), "yes".into());
        tags.insert("zone".into(), format!("z{}", i % 3));
        let node = cluster::start(NodeSettings {
            name: name.clone(),
            bind: SocketAddr::from(([127, 0, 0, 1], port_of(i)?)),
            advertise: None,
            tags,
            config: config.clone(),
            keys: Vec::new(),
            encryption: rumor::EncryptionMode::Enforce,
            label: None,
            last_incarnation: None,
            // The demo's nodes share one address but stand for separate hosts.
            streams: cluster::StreamLimits {
                max_streams_per_source: Some(1024),
                ..Default::default()
            },
            data: None,
        })
        .await
        .with_context(|| format!("cannot start {name}"))?;
        nodes.push(node);
    }
    let seed = nodes[0].addr();
    let child_name = format!("node-{in_process:02}");
    let child_port = match port_of(in_process)? {
        0 => free_port()?,
        p => p,
    };
    let exe = std::env::current_exe().context("cannot find the rumor binary")?;
    let child = tokio::process::Command::new(exe)
        .args(["agent", "--name", &child_name, "--profile", &args.profile])
        .args(["--membership", &args.membership])
        .args([
            "--bind",
            &format!("127.0.0.1:{child_port}"),
            "--http",
            "127.0.0.1:0",
        ])
        .args(["--tag", "demo=yes", "--tag", "process=own"])
        .args(["--join", &seed.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the paused node's process")?;
    let state = ApiState::new(
        nodes[0].clone(),
        None,
        crate::history::DEFAULT_EVENT_HISTORY,
    );
    let sampler = crate::timeseries::start(
        nodes[0].clone(),
        state.history.clone(),
        state.timeseries.clone(),
    )
    .await;
    let server = tokio::spawn(async move {
        if let Err(e) = http::serve(listener, http::router(state)).await {
            tracing::error!("HTTP server failed: {e}");
        }
    });
    println!(
        "rumor demo: {} nodes on 127.0.0.1 ({in_process} in this process, {child_name} in its own), profile {}, {} membership",
        args.nodes, args.profile, args.membership
    );
    println!("dashboard of {}: http://{http_addr}/", nodes[0].name());

    let names = nodes.iter().map(|n| n.name().to_string()).collect();
    let mut demo = Demo {
        profile,
        nodes,
        child,
        child_name,
        names,
        start,
        timeline: Vec::new(),
    };
    let outcome = tokio::select! {
        r = script(&mut demo, seed, args.nodes) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    let result = match outcome {
        None => {
            println!("interrupted");
            Ok(())
        }
        Some(Err(e)) => Err(e),
        Some(Ok(())) => {
            if args.json {
                println!(
                    "{}",
                    json!({"nodes": args.nodes, "timeline": demo.timeline})
                );
            }
            if !args.exit_after_script {
                println!("script done; the cluster keeps running. Ctrl-C to stop.");
                let _ = tokio::signal::ctrl_c().await;
            }
            Ok(())
        }
    };
    let _ = signal_child(&demo.child, nix::sys::signal::Signal::SIGCONT);
    let _ = demo.child.kill().await;
    // All at once: one after another, 2,000 nodes had not stopped 7.5
    // minutes after the script ended (at once: about a minute).
    futures_util::future::join_all(demo.nodes.iter().map(|n| n.shutdown())).await;
    server.abort();
    sampler.abort();
    if result.is_ok() {
        println!("stopped");
    }
    result
}

async fn views(nodes: &[SharedCluster]) -> Vec<Vec<rumor_core::Member>> {
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        out.push(n.members().await.unwrap_or_default());
    }
    out
}

async fn script(d: &mut Demo, seed: SocketAddr, n: usize) -> Result<()> {
    let k = d.nodes.len();
    d.say(
        &format!("{n} nodes started; joining all to {}", d.names[0]),
        json!({}),
    );
    let t0 = Instant::now();
    for node in &d.nodes[1..] {
        node.join(vec![seed])
            .await
            .map_err(|e| anyhow::anyhow!("join failed: {e}"))?;
    }
    // Converged: every in-process node sees all n alive (the child included).
    let end = t0 + STEP_DEADLINE;
    loop {
        let done = views(&d.nodes)
            .await
            .iter()
            .all(|v| v.iter().filter(|m| m.state == MemberState::Alive).count() == n);
        if done {
            let t = t0.elapsed();
            d.say(
                &format!(
                    "converged: all {n} nodes see {n} alive after {:.3}s",
                    t.as_secs_f64()
                ),
                json!({"converged_s": t.as_secs_f64()}),
            );
            break;
        }
        if Instant::now() > end {
            bail!("the cluster did not converge within {STEP_DEADLINE:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (crash, leave) = (k - 1, k - 2);
    let observers: Vec<usize> = (0..k).filter(|&i| i != crash && i != leave).collect();

    // Crash.
    let name = d.names[crash].clone();
    let t = Instant::now();
    d.nodes[crash].shutdown().await;
    d.say(
        &format!("crashed {name} (all its I/O stopped at once)"),
        json!({"node": name}),
    );
    let mut watchers = observers.clone();
    watchers.push(leave);
    let suspect = d
        .reach(
            &watchers,
            &name,
            t,
            |s| s != MemberState::Alive,
            STEP_DEADLINE,
        )
        .await;
    d.report(&format!("{name} suspected"), &suspect);
    let dead = d
        .reach(
            &watchers,
            &name,
            t,
            |s| s == MemberState::Dead,
            STEP_DEADLINE,
        )
        .await;
    d.report(&format!("{name} declared failed"), &dead);

    // Pause.
    let pause = pause_for(d.profile, n);
    let name = d.child_name.clone();
    let t = Instant::now();
    signal_child(&d.child, nix::sys::signal::Signal::SIGSTOP)?;
    d.say(
        &format!(
            "paused {name} for {:.1}s (SIGSTOP to its process)",
            pause.as_secs_f64()
        ),
        json!({"node": name}),
    );
    let mut watchers = observers.clone();
    watchers.push(leave);
    let suspected = d
        .reach(&watchers, &name, t, |s| s == MemberState::Suspect, pause)
        .await;
    tokio::time::sleep((t + pause).saturating_duration_since(Instant::now())).await;
    signal_child(&d.child, nix::sys::signal::Signal::SIGCONT)?;
    d.say(&format!("resumed {name} (SIGCONT)"), json!({}));
    d.report(&format!("{name} suspected while paused"), &suspected);
    let back_deadline = Instant::now() + STEP_DEADLINE;
    let mut refuted_all = false;
    let mut falsely_dead = false;
    while Instant::now() < back_deadline {
        let vs = views(&d.nodes).await;
        let states: Vec<Option<MemberState>> = watchers
            .iter()
            .map(|&w| vs[w].iter().find(|m| *m.name == *name).map(|m| m.state))
            .collect();
        falsely_dead |= states.contains(&Some(MemberState::Dead));
        if states.iter().all(|s| *s == Some(MemberState::Alive)) {
            refuted_all = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let back = t.elapsed();
    d.say(
        &format!(
            "{name} alive again everywhere: {refuted_all} ({:.3}s after the pause began); declared failed by anyone: {falsely_dead}",
            back.as_secs_f64()
        ),
        json!({"alive_everywhere": refuted_all, "false_positive": falsely_dead, "back_s": back.as_secs_f64()}),
    );

    // Leave.
    let name = d.names[leave].clone();
    let t = Instant::now();
    d.say(&format!("{name} leaves gracefully"), json!({}));
    let leaver = d.nodes[leave].clone();
    let leaving = tokio::spawn(async move {
        let _ = leaver.leave(Duration::from_secs(5)).await;
        leaver.shutdown().await;
    });
    let left = d
        .reach(
            &observers,
            &name,
            t,
            |s| s == MemberState::Left,
            STEP_DEADLINE,
        )
        .await;
    let _ = leaving.await;
    d.report(&format!("{name} seen as left"), &left);

    // User event: every remaining in-process node must deliver it once.
    let mut inboxes: Vec<_> = observers
        .iter()
        .filter_map(|&i| d.nodes[i].subscribe(rumor::EventFilter::USER).ok())
        .collect();
    let t = Instant::now();
    match d.nodes[0]
        .user_event("demo".into(), b"hello".to_vec())
        .await
    {
        Ok(ltime) => {
            d.say(
                &format!("user event \"demo\" sent by {} (ltime {ltime})", d.names[0]),
                json!({"ltime": ltime}),
            );
            let end = t + STEP_DEADLINE;
            let mut seen: Vec<Duration> = Vec::new();
            for rx in &mut inboxes {
                loop {
                    let left = end.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, rx.recv()).await {
                        Ok(Ok(rumor::Event::User(ev)))
                            if ev.name == "demo" && ev.ltime == ltime =>
                        {
                            seen.push(t.elapsed());
                            break;
                        }
                        Ok(Ok(_))
                        | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                        _ => break,
                    }
                }
            }
            let r = Reach {
                first: seen.iter().min().copied(),
                last: (seen.len() == inboxes.len())
                    .then(|| seen.iter().max().copied())
                    .flatten(),
                seen_by: seen.len(),
                of: inboxes.len(),
            };
            d.report("user event delivered", &r);
        }
        Err(e) => d.say(
            &format!("user event skipped: {e}"),
            json!({"skipped": true}),
        ),
    }
    d.say("script done", json!({}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_is_past_the_probe_timeout_and_under_the_suspicion_timeout() {
        for (p, n) in [
            (Profile::Local, 6),
            (Profile::Local, 32),
            (Profile::Lan, 32),
            (Profile::Wan, 8),
        ] {
            let c = rumor_core::Config::profile(p);
            let d = pause_for(p, n);
            assert!(d >= c.probe_timeout * 3, "{p:?} {n}: {d:?}");
            assert!(d < c.suspicion_min(n), "{p:?} {n}: {d:?}");
            if p != Profile::Wan {
                assert!(d <= MAX_PAUSE, "{p:?} {n}: {d:?}");
            }
        }
    }
}
