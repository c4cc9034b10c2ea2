//! The checker: after the faults heal and the cluster settles, what every
//! live agent says is compared with what the harness did and what the
//! agents acknowledged.
//!
//! 1. every live agent lists every live member alive and every downed one
//!    not alive;
//! 2. no member was declared failed unless, within the suspicion window
//!    before, it was down, paused longer than the shortest suspicion
//!    timeout, or cut off from some host (or the observer itself was paused);
//! 3. every acknowledged kv write is on every live agent with its value, and
//!    no acknowledged delete came back;
//! 4. every user event reached every agent that was up, unpaused and
//!    connected throughout, and no agent process delivered one twice;
//! 5. every live member's last acknowledged state value and tag is what
//!    every live agent sees;
//! 6. the average (and count) of `load` converged to the live members' values.

use crate::agents::Agents;
use crate::emulator::StatsSnapshot;
use crate::http;
use crate::nemesis::{Disturbance, Step, Timeline};
use crate::run::nap;
use crate::workload::Record;
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// What the checker needs.
pub struct Inputs<'a> {
    /// The agents (for their views and event streams).
    pub agents: &'a Agents,
    /// Which the harness believes are running.
    pub up: &'a [bool],
    /// What the nemesis did.
    pub timeline: &'a Timeline,
    /// What the agents acknowledged.
    pub record: &'a Record,
    /// The schedule (for the report).
    pub schedule: &'a [Step],
    /// How long checks 1, 3 and 5 may take to hold.
    pub converge_within: Duration,
    /// The agents' profile.
    pub profile: &'a str,
    /// The emulator's counters.
    pub emulator: StatsSnapshot,
}

/// The checker's verdict.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    /// Every broken promise, one line each.
    pub violations: Vec<String>,
    /// Declarations of failure the timeline explains, with their cause.
    pub deserved_failures: Vec<String>,
    /// Suspicions of members that were up, unpaused and connected.
    pub suspicions_of_live: u64,
    /// Faults injected.
    pub faults: usize,
    /// Acknowledged kv writes, deletes, user events.
    pub writes: usize,
    /// Acknowledged deletes.
    pub deletes: usize,
    /// Acknowledged user events.
    pub events: usize,
    /// Writes not held against the agents (acknowledged by a host that lost
    /// its data before it could pass them on).
    pub writes_excused: usize,
    /// Requests that failed or were refused.
    pub unacknowledged: u64,
    /// Seconds the cluster took to settle after the faults healed.
    pub settled_secs: f64,
    /// The emulator's counters.
    pub emulator: StatsSnapshot,
}

/// The shortest suspicion timeout of `profile` among `n` members, and the
/// window within which a suspicion must end (the longest timeout plus three
/// probe intervals), in seconds.
fn suspicion_window(profile: &str, n: usize) -> (f64, f64) {
    let c = profile
        .parse::<rumor_core::Profile>()
        .map_or_else(|_| rumor_core::Config::lan(), rumor_core::Config::profile);
    let min = c.suspicion_min(n).as_secs_f64();
    let probe = c.probe_interval.as_secs_f64();
    (min, min * f64::from(c.suspicion_max_mult) + 3.0 * probe)
}

/// Problems with the agents' membership views: empty when every live
/// agent sees every live member alive and every other not alive.
pub fn views(agents: &Agents, up: &[bool]) -> Vec<String> {
    let mut problems = Vec::new();
    for i in (0..up.len()).filter(|&i| up[i]) {
        let name = Agents::name(i);
        let members = match http::get(agents.hosts.ns(i), "/v1/members") {
            Ok(Value::Array(m)) => m,
            Ok(v) => {
                problems.push(format!("{name}: /v1/members answered {v}"));
                continue;
            }
            Err(e) => {
                problems.push(format!("{name}: the agent does not answer ({e})"));
                continue;
            }
        };
        let status: HashMap<&str, &str> = members
            .iter()
            .filter_map(|m| Some((m["name"].as_str()?, m["status"].as_str()?)))
            .collect();
        for (j, &live) in up.iter().enumerate() {
            let other = Agents::name(j);
            let s = status.get(other.as_str()).copied().unwrap_or("absent");
            if live && s != "alive" {
                problems.push(format!("{name} sees {other} {s}, but it is up"));
            }
            if !live && (s == "alive" || s == "suspect") {
                problems.push(format!("{name} sees {other} {s}, but it is down"));
            }
        }
    }
    problems
}

/// Waits up to `within` for [`views`] to have no problem; returns the last
/// problems (empty once settled).
pub fn settle(agents: &Agents, up: &[bool], within: Duration) -> Result<Vec<String>> {
    let end = Instant::now() + within;
    loop {
        let p = views(agents, up);
        if p.is_empty() || Instant::now() >= end {
            return Ok(p);
        }
        nap(Duration::from_millis(500))?;
    }
}

/// Why the timeline excuses a failure of `subject` seen by `observer` at
/// `t`, if it does.
fn excuse(
    tl: &Timeline,
    subject: usize,
    observer: usize,
    t: f64,
    window: f64,
    min_pause: f64,
) -> Option<String> {
    tl.overlapping(t - window, t).find_map(|iv| match &iv.what {
        Disturbance::Down { host, .. } if *host == subject => {
            Some(format!("it was down from {:.1}s", iv.from))
        }
        Disturbance::Paused { host }
            if (*host == subject || *host == observer) && iv.to - iv.from >= min_pause =>
        {
            Some(format!(
                "h{} was paused {:.1}s at {:.1}s",
                host + 1,
                iv.to - iv.from,
                iv.from
            ))
        }
        Disturbance::Cut { from, to } if *from == subject || *to == subject => Some(format!(
            "h{}->h{} was cut at {:.1}s",
            from + 1,
            to + 1,
            iv.from
        )),
        _ => None,
    })
}

/// Whether host `h` was up, unpaused and fully connected over `[from, to]`.
fn undisturbed(tl: &Timeline, h: usize, from: f64, to: f64) -> bool {
    !tl.overlapping(from, to).any(|iv| match &iv.what {
        Disturbance::Down { host, .. } | Disturbance::Paused { host } => *host == h,
        Disturbance::Cut { from, to } => *from == h || *to == h,
        _ => false,
    })
}

/// Runs every check.
pub fn check(x: &Inputs) -> Result<Verdict> {
    let mut v = Verdict {
        faults: x.schedule.len(),
        writes: x.record.puts.len(),
        deletes: x.record.deletes.len(),
        events: x.record.events.len(),
        unacknowledged: x.record.unacknowledged,
        emulator: x.emulator.clone(),
        ..Verdict::default()
    };
    let n = x.up.len();
    let (min_suspicion, window) = suspicion_window(x.profile, n);
    let live: Vec<usize> = (0..n).filter(|&i| x.up[i]).collect();

    // 2. Failures and suspicions.
    let mut false_failures: BTreeMap<(usize, i64), Vec<String>> = BTreeMap::new();
    for o in 0..n {
        let seen = x
            .agents
            .agent(o)
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        for s in seen {
            let ty = s.data["type"].as_str().unwrap_or("");
            let Some(subject) = s.data["member"]["name"].as_str().and_then(Agents::host_of) else {
                continue;
            };
            if ty == "member-suspect"
                && excuse(x.timeline, subject, o, s.at, window, min_suspicion).is_none()
            {
                v.suspicions_of_live += 1;
            }
            if ty != "member-failed" {
                continue;
            }
            match excuse(x.timeline, subject, o, s.at, window, min_suspicion) {
                Some(why) => v.deserved_failures.push(format!(
                    "h{} failed at {:.1}s seen by h{}: {why}",
                    subject + 1,
                    s.at,
                    o + 1
                )),
                None => false_failures
                    .entry((subject, (s.at / window) as i64))
                    .or_default()
                    .push(format!("h{} at {:.1}s", o + 1, s.at)),
            }
        }
    }
    for ((subject, _), seen) in false_failures {
        let during: Vec<String> = x
            .timeline
            .overlapping(0.0, f64::INFINITY)
            .filter(|iv| {
                matches!(
                    iv.what,
                    Disturbance::Loss { .. } | Disturbance::Latency { .. }
                )
            })
            .map(|iv| format!("{:?} {:.1}-{:.1}s", iv.what, iv.from, iv.to))
            .collect();
        v.violations.push(format!(
            "false failure: h{} was declared failed while up and reachable, seen by {} (conditions in the run: {})",
            subject + 1,
            seen.join(", "),
            if during.is_empty() { "none".into() } else { during.join("; ") }
        ));
    }

    // 4. User events.
    for h in 0..n {
        let seen = x
            .agents
            .agent(h)
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        let mut count: HashMap<(&str, u32), usize> = HashMap::new();
        for s in &seen {
            if s.data["type"] == "user" {
                if let Some(name) = s.data["name"].as_str() {
                    *count.entry((name, s.generation)).or_default() += 1;
                }
            }
        }
        for ((name, generation), c) in &count {
            if *c > 1 && x.record.events.iter().any(|e| e.name == *name) {
                v.violations.push(format!(
                    "event: h{} (process {generation}) delivered {name} {c} times",
                    h + 1
                ));
            }
        }
        let missed: u64 = seen.iter().filter_map(|s| s.data["missed"].as_u64()).sum();
        let last_gen = x.agents.agent(h).generation;
        for e in &x.record.events {
            let through = e.at + 15.0;
            let first_here = seen.iter().find(|s| s.generation == last_gen).map(|s| s.at);
            let followed = first_here.is_some_and(|f| f < e.at - 0.5);
            if x.up[h]
                && followed
                && undisturbed(x.timeline, h, e.at - 1.0, through)
                && undisturbed(x.timeline, e.host, e.at - 1.0, through)
                && !count.contains_key(&(e.name.as_str(), last_gen))
            {
                // Whether the stream went on after the send tells a lost
                // event from a stream that stopped.
                let later = seen
                    .iter()
                    .filter(|s| s.generation == last_gen && s.at > e.at)
                    .count();
                let last = seen.last().map_or(0.0, |s| s.at);
                v.violations.push(format!(
                    "event: h{} never delivered {} (sent by h{} at {:.1}s; its event stream reported {missed} missed, read {later} events after the send, the last at {last:.1}s)",
                    h + 1,
                    e.name,
                    e.host + 1,
                    e.at
                ));
            }
        }
    }

    // 1, 3, 5 and 6 converge: asked again until they hold or time is up.
    let until = Instant::now() + x.converge_within;
    let problems = loop {
        let mut p: Vec<String> = views(x.agents, x.up)
            .into_iter()
            .map(|p| format!("membership: {p}"))
            .collect();
        p.extend(key_space(x, &live));
        p.extend(node_state(x, &live));
        p.extend(aggregate(x, &live));
        if p.is_empty() || Instant::now() >= until {
            break p;
        }
        nap(Duration::from_secs(1))?;
    };
    v.settled_secs = x.converge_within.as_secs_f64()
        - until
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
    v.violations.extend(problems);
    v.writes_excused = x
        .record
        .puts
        .iter()
        .filter(|p| excused(x.timeline, p.host, p.at))
        .count();
    Ok(v)
}

/// A write is excused when its host lost its data before it had 10 s up
/// and connected to pass the write on.
fn excused(tl: &Timeline, host: usize, at: f64) -> bool {
    tl.intervals.iter().any(|iv| {
        matches!(iv.what, Disturbance::Down { host: h, wiped: true } if h == host)
            && iv.from >= at
            && !undisturbed_for(tl, host, at, iv.from, 10.0)
    })
}

/// Check 3: acknowledged writes on every live agent, deletes on none.
fn key_space(x: &Inputs, live: &[usize]) -> Vec<String> {
    let mut problems = Vec::new();
    let deleted: HashSet<&str> = x.record.deletes.iter().map(|d| d.0.as_str()).collect();
    for &i in live {
        let name = Agents::name(i);
        let entries = match http::get(x.agents.hosts.ns(i), "/v1/kv?prefix=wl/") {
            Ok(Value::Array(e)) => e,
            other => {
                let why = other.map_or_else(|e| format!("{e:#}"), |v| v.to_string());
                problems.push(format!("kv: {name}: cannot list keys ({why})"));
                continue;
            }
        };
        let have: HashMap<&str, &str> = entries
            .iter()
            .filter_map(|e| Some((e["key"].as_str()?, e["value"].as_str()?)))
            .collect();
        for p in &x.record.puts {
            if excused(x.timeline, p.host, p.at) {
                continue;
            }
            let got = have.get(p.key.as_str());
            if deleted.contains(p.key.as_str()) {
                if got.is_some() {
                    problems.push(format!(
                        "kv: {name} has {} back after its delete was acknowledged",
                        p.key
                    ));
                }
            } else if got != Some(&p.value.as_str()) {
                problems.push(format!(
                    "kv: {name} has {} = {:?}, acknowledged {:?} by h{} at {:.1}s",
                    p.key,
                    got,
                    p.value,
                    p.host + 1,
                    p.at
                ));
            }
        }
    }
    problems
}

/// Check 6: the average of `load` on every live agent is the mean of the
/// live members' last values (within 1 %), and the count is right (within 5 %).
fn aggregate(x: &Inputs, live: &[usize]) -> Vec<String> {
    let values: Vec<f64> = live
        .iter()
        .filter_map(|&j| x.record.state[j].as_ref()?.0.parse().ok())
        .collect();
    if values.len() != live.len() {
        return vec![format!(
            "aggregate: {} of {} live agents acknowledged a load value",
            values.len(),
            live.len()
        )];
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let mut problems = Vec::new();
    for &i in live {
        let got = match http::json(x.agents.hosts.ns(i), "GET", "/v1/aggregate/load", b"") {
            Ok((200, v)) => v,
            Ok((s, v)) => {
                problems.push(format!("aggregate: h{} answered {s} {v}", i + 1));
                continue;
            }
            Err(e) => {
                problems.push(format!("aggregate: h{}: {e:#}", i + 1));
                continue;
            }
        };
        let avg = got["avg"].as_f64().unwrap_or(f64::NAN);
        let count = got["count"].as_f64().unwrap_or(f64::NAN);
        let n = live.len() as f64;
        if !((avg - mean).abs() <= 0.01 * mean.abs().max(1.0) && (count - n).abs() <= 0.05 * n) {
            problems.push(format!(
                "aggregate: h{} has avg {avg:.2} count {count:.2}, the live members' are {mean:.2} and {n}",
                i + 1
            ));
        }
    }
    problems
}

/// Check 5: last acknowledged state values and tags.
fn node_state(x: &Inputs, live: &[usize]) -> Vec<String> {
    let mut problems = Vec::new();
    for &i in live {
        let name = Agents::name(i);
        let Ok(Value::Array(members)) = http::get(x.agents.hosts.ns(i), "/v1/members") else {
            continue;
        };
        for m in &members {
            let Some(j) = m["name"].as_str().and_then(Agents::host_of) else {
                continue;
            };
            if !x.up.get(j).copied().unwrap_or(false) {
                continue;
            }
            let restarted = last_start(x.timeline, j);
            if let Some((want, at)) = &x.record.state[j] {
                if *at > restarted && m["state"]["load"].as_str() != Some(want) {
                    problems.push(format!(
                        "state: {name} sees h{} load={:?}, acknowledged {want:?} at {at:.1}s",
                        j + 1,
                        m["state"]["load"]
                    ));
                }
            }
            if let Some((want, at)) = &x.record.tags[j] {
                if *at > restarted && m["tags"]["gen"].as_str() != Some(want) {
                    problems.push(format!(
                        "tags: {name} sees h{} gen={:?}, acknowledged {want:?} at {at:.1}s",
                        j + 1,
                        m["tags"]["gen"]
                    ));
                }
            }
        }
    }

    problems
}

/// When host `h` last came back up (0 if never down).
fn last_start(tl: &Timeline, h: usize) -> f64 {
    tl.intervals
        .iter()
        .filter_map(|iv| match iv.what {
            Disturbance::Down { host, .. } if host == h => Some(iv.to),
            _ => None,
        })
        .fold(0.0, f64::max)
}

/// Whether host `h` had `need` seconds up and connected within `[from, to]`.
fn undisturbed_for(tl: &Timeline, h: usize, from: f64, to: f64, need: f64) -> bool {
    let mut cuts: Vec<(f64, f64)> = tl
        .overlapping(from, to)
        .filter(|iv| match &iv.what {
            Disturbance::Down { host, .. } | Disturbance::Paused { host } => *host == h,
            Disturbance::Cut { from, to } => *from == h || *to == h,
            _ => false,
        })
        .map(|iv| (iv.from.max(from), iv.to.min(to)))
        .collect();
    cuts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut t = from;
    for (a, b) in cuts {
        if a - t >= need {
            return true;
        }
        t = t.max(b);
    }
    to - t >= need
}
