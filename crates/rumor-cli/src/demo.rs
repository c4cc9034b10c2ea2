//! `rumor demo`: N real nodes in this process on 127.0.0.1, the dashboard of
//! the first one, and a scripted scenario with a timeline.
//!
//! Script: wait until every node sees every node alive; crash one node (all
//! its I/O stops at once); pause one node for longer than the probe timeout
//! (the node's driver stops and its packets are dropped both ways, the
//! stand-in for a stopped process) and let it come back; make one node leave
//! gracefully; broadcast one user event when the build supports them. For
//! each step the timeline says when the first and the last other node saw it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rumor_core::{MemberState, Profile, Tags};
use serde_json::{json, Value};

use crate::cli::DemoArgs;
use crate::cluster::{self, NodeSettings, SharedCluster};
use crate::http::{self, ApiState};

/// How long the paused node stays paused.
pub const PAUSE: Duration = Duration::from_secs(3);
/// Bound on each step of the script.
const STEP_DEADLINE: Duration = Duration::from_secs(120);
/// How often the script looks at every node's view.
const POLL: Duration = Duration::from_millis(25);

struct Demo {
    nodes: Vec<SharedCluster>,
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

/// Run the demo until Ctrl-C (or the script's end with `--exit-after-script`).
pub async fn run(args: DemoArgs) -> Result<()> {
    if args.nodes < 5 {
        bail!("the demo needs at least 5 nodes (one to watch, one to crash, one to pause, one to leave, one more)");
    }
    let profile: Profile = args
        .profile
        .parse()
        .map_err(|e: rumor_core::Error| anyhow::anyhow!("--profile: {e}"))?;
    let http_addr: SocketAddr = crate::config::parse_addr("--http", &args.http)?;
    let listener = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot bind HTTP {http_addr}"))?;
    let http_addr = listener.local_addr().unwrap_or(http_addr);

    let start = Instant::now();
    let mut nodes = Vec::with_capacity(args.nodes);
    let mut names = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let port = if args.base_port == 0 {
            0
        } else {
            args.base_port
                .checked_add(i as u16)
                .context("--base-port too high for that many nodes")?
        };
        let name = format!("node-{i:02}");
        let mut tags = Tags::new();
        tags.insert("demo".into(), "yes".into());
        tags.insert("zone".into(), format!("z{}", i % 3));
        let node = cluster::start(NodeSettings {
            name: name.clone(),
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            advertise: None,
            tags,
            profile,
            keys: Vec::new(),
            label: None,
            last_incarnation: None,
        })
        .await
        .with_context(|| format!("cannot start {name}"))?;
        nodes.push(node);
        names.push(name);
    }
    let state = ApiState::new(nodes[0].clone(), None);
    let server = tokio::spawn(async move {
        if let Err(e) = http::serve(listener, http::router(state)).await {
            tracing::error!("HTTP server failed: {e}");
        }
    });
    println!(
        "rumor demo: {} nodes on 127.0.0.1, profile {}",
        args.nodes, args.profile
    );
    println!("dashboard of {}: http://{http_addr}/", names[0]);

    let mut demo = Demo {
        nodes,
        names,
        start,
        timeline: Vec::new(),
    };
    let outcome = tokio::select! {
        r = script(&mut demo) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    match outcome {
        None => println!("interrupted"),
        Some(Err(e)) => {
            stop(&demo.nodes).await;
            server.abort();
            return Err(e);
        }
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
        }
    }
    stop(&demo.nodes).await;
    server.abort();
    println!("stopped");
    Ok(())
}

async fn stop(nodes: &[SharedCluster]) {
    for n in nodes {
        n.shutdown().await;
    }
}

async fn script(d: &mut Demo) -> Result<()> {
    let n = d.nodes.len();
    let seed = d.nodes[0].local().addr;
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
    // Converged: every node sees every node alive.
    let end = t0 + STEP_DEADLINE;
    loop {
        let done = d.nodes.iter().all(|node| {
            node.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == n
        });
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

    let (crash, pause, leave) = (n - 1, n - 2, n - 3);
    let observers: Vec<usize> = (0..n)
        .filter(|&i| i != crash && i != pause && i != leave)
        .collect();

    // Crash.
    let name = d.names[crash].clone();
    let t = Instant::now();
    d.nodes[crash].shutdown().await;
    d.say(&format!("crashed {name}"), json!({"node": name}));
    let mut watchers = observers.clone();
    watchers.extend([pause, leave]);
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
    let name = d.names[pause].clone();
    let t = Instant::now();
    d.nodes[pause]
        .set_paused(true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    d.say(
        &format!(
            "paused {name} for {:.1}s (driver stopped, packets dropped both ways)",
            PAUSE.as_secs_f64()
        ),
        json!({"node": name}),
    );
    let mut watchers = observers.clone();
    watchers.push(leave);
    let suspected = d
        .reach(&watchers, &name, t, |s| s == MemberState::Suspect, PAUSE)
        .await;
    d.nodes[pause]
        .set_paused(false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    d.say(&format!("resumed {name}"), json!({}));
    d.report(&format!("{name} suspected while paused"), &suspected);
    let back = d
        .reach(
            &watchers,
            &name,
            t,
            |s| s == MemberState::Alive,
            STEP_DEADLINE,
        )
        .await;
    // Each watcher's first "alive" after the pause started may predate the
    // suspicion; confirm the final view instead.
    let refuted_all = watchers.iter().all(|&w| {
        d.nodes[w]
            .members()
            .iter()
            .any(|m| *m.name == *name && m.state == MemberState::Alive)
    });
    let falsely_dead = d.nodes.iter().enumerate().any(|(i, node)| {
        i != crash
            && node
                .members()
                .iter()
                .any(|m| *m.name == *name && m.state == MemberState::Dead)
    });
    let line = format!(
        "{name} refuted: alive again everywhere: {refuted_all}; declared failed by anyone: {falsely_dead}"
    );
    d.say(&line, json!({"alive_everywhere": refuted_all, "false_positive": falsely_dead, "last_alive_s": Demo::secs(back.last)}));

    // Leave.
    let name = d.names[leave].clone();
    let t = Instant::now();
    d.say(&format!("{name} leaves gracefully"), json!({}));
    let leaver = d.nodes[leave].clone();
    let leaving = tokio::spawn(async move {
        let _ = leaver.leave(Duration::from_secs(5)).await;
        leaver.shutdown().await;
    });
    let watchers = observers.clone();
    let left = d
        .reach(
            &watchers,
            &name,
            t,
            |s| s == MemberState::Left,
            STEP_DEADLINE,
        )
        .await;
    let _ = leaving.await;
    d.report(&format!("{name} seen as left"), &left);

    // User event.
    match d.nodes[0].user_event("demo", b"hello") {
        Ok(()) => d.say(
            "user event sent (reach time not measured by this build)",
            json!({}),
        ),
        Err(e) => d.say(
            &format!("user event skipped: {e}"),
            json!({"skipped": true}),
        ),
    }
    d.say("script done", json!({}));
    Ok(())
}
