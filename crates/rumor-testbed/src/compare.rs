//! `rumor-testbed compare`: rumor and Serf, one after the other, on the same
//! hosts under the same link conditions and the same membership faults:
//! detection of a silent host crash, false failures and suspicions under
//! loss, jitter and pauses, user-event spread, convergence after a
//! partition heals, and bytes sent per agent.

use crate::hosts::{Hosts, Subnet};
use crate::link::Link;
use crate::members::{Kind, Members, Obs, Rumor, Serf};
use crate::run::nap;
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A link condition applied to every link for a window.
#[derive(Clone, Debug, Serialize)]
pub struct Condition {
    /// How it is shown (`loss 5%`, `jitter 20ms`).
    pub label: String,
    /// Extra loss (0..1).
    pub loss: f64,
    /// Jitter, ms (normal, around the base delay).
    pub jitter_ms: f64,
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Condition, String> {
        let (k, v) = s
            .split_once(':')
            .ok_or_else(|| format!("condition {s:?}: expected loss:P or jitter:MS"))?;
        let v: f64 = v
            .parse()
            .map_err(|_| format!("condition {s:?}: {v:?} is not a number"))?;
        match k {
            "loss" if (0.0..1.0).contains(&v) => Ok(Condition {
                label: format!("loss {}%", v * 100.0),
                loss: v,
                jitter_ms: 0.0,
            }),
            "jitter" if v >= 0.0 => Ok(Condition {
                label: format!("jitter {v}ms"),
                loss: 0.0,
                jitter_ms: v,
            }),
            _ => Err(format!(
                "condition {s:?}: expected loss:P (0 <= P < 1) or jitter:MS"
            )),
        }
    }
}

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Hosts.
    pub hosts: usize,
    /// The subnet.
    pub subnet: Subnet,
    /// Emulator seed.
    pub seed: u64,
    /// Profile of both systems (lan, wan).
    pub profile: String,
    /// Conditions of every link outside the phases.
    pub base: Link,
    /// The rumor binary, if rumor runs.
    pub rumor: Option<PathBuf>,
    /// The serf binary, if Serf runs.
    pub serf: Option<PathBuf>,
    /// Silent host crashes.
    pub crashes: usize,
    /// User events.
    pub events: usize,
    /// Seconds per condition.
    pub window: f64,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// Pause lengths, seconds.
    pub pauses: Vec<f64>,
    /// Longest wait for anything to happen.
    pub timeout: f64,
    /// Logs.
    pub dir: PathBuf,
}

/// One silent host crash.
#[derive(Clone, Debug, Serialize)]
pub struct Crash {
    /// Seconds from the crash to the first suspicion anywhere.
    pub first_suspect: Option<f64>,
    /// ... to the first agent declaring it failed.
    pub first_failed: Option<f64>,
    /// ... to the last of the other agents declaring it failed.
    pub all_failed: Option<f64>,
}

/// One condition's window.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    /// The condition.
    pub label: String,
    /// Seconds.
    pub secs: f64,
    /// Distinct members declared failed (every member was up).
    pub false_failures: usize,
    /// The same per hour.
    pub false_failures_per_hour: f64,
    /// Distinct suspicions of members (rumor: per member and incarnation;
    /// Serf: each prober's suspect line).
    pub suspicions: usize,
    /// Bytes each agent sent per second (median), IP headers included.
    pub bytes_per_agent_per_sec: f64,
}

/// One pause.
#[derive(Clone, Debug, Serialize)]
pub struct Pause {
    /// Seconds paused.
    pub secs: f64,
    /// How many agents declared the paused one failed (deserved once the
    /// pause outlasts the suspicion timeout).
    pub declared_failed_by: usize,
    /// Members other than the paused one declared failed meanwhile (false).
    pub others_failed: usize,
}

/// One system's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// rumor or Serf.
    pub system: String,
    /// Hosts.
    pub hosts: usize,
    /// Seconds for every agent to see every member alive after the starts.
    pub join_secs: f64,
    /// Silent host crashes.
    pub crashes: Vec<Crash>,
    /// Seconds for a user event to reach every agent, per event.
    pub event_t100: Vec<Option<f64>>,
    /// Condition windows.
    pub windows: Vec<Window>,
    /// Pauses.
    pub pauses: Vec<Pause>,
    /// Seconds from healing a partition of halves (20 s) to every agent
    /// seeing every member alive.
    pub partition_heal_secs: Option<f64>,
}

/// Runs the comparison: each selected system on fresh hosts, the same phases.
pub fn compare(o: &CompareOptions) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    for (label, bin) in [("rumor", &o.rumor), ("serf", &o.serf)] {
        let Some(bin) = bin else { continue };
        let t0 = Instant::now();
        let hosts = Hosts::create(o.hosts, o.subnet, o.base.clone(), o.seed)?;
        let dir = o.dir.join(label);
        let mut sys: Box<dyn Members> = if label == "rumor" {
            Box::new(Rumor::new(hosts, bin.clone(), &o.profile, dir, t0))
        } else {
            Box::new(Serf::new(hosts, bin.clone(), &o.profile, dir, t0))
        };
        eprintln!("compare: {label}, {} hosts", o.hosts);
        reports.push(phases(sys.as_mut(), o, t0)?);
    }
    Ok(reports)
}

fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// Waits until `f` holds (polling every 250 ms) or `secs` pass; when it held.
fn wait_for(secs: f64, mut f: impl FnMut() -> bool) -> Result<Option<Instant>> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        if f() {
            return Ok(Some(Instant::now()));
        }
        nap(Duration::from_millis(250))?;
    }
    Ok(None)
}

fn of<'a>(
    obs: &'a [Obs],
    kind: Kind,
    subject: &'a str,
    after: f64,
) -> impl Iterator<Item = &'a Obs> {
    obs.iter()
        .filter(move |x| x.kind == kind && x.subject == subject && x.at >= after)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn phases(sys: &mut dyn Members, o: &CompareOptions, t0: Instant) -> Result<Report> {
    let n = o.hosts;
    let mut up = vec![true; n];
    for i in 0..n {
        sys.start(i)?;
    }
    let start = Instant::now();
    if wait_for(o.timeout, || sys.all_alive(&up))?.is_none() {
        bail!(
            "{}: the cluster did not form within {} s",
            sys.label(),
            o.timeout
        );
    }
    let join_secs = start.elapsed().as_secs_f64();
    let name = crate::agents::Agents::name;

    // User events from host 0.
    let mut event_t100 = Vec::new();
    for k in 0..o.events {
        let ev = format!("tb-{}-{k}", sys.label());
        let sent = since(t0);
        sys.send_event(0, &ev)?;
        let done = wait_for(30.0, || {
            let obs = sys.observations();
            of(&obs, Kind::User, &ev, 0.0)
                .map(|x| x.observer)
                .collect::<HashSet<_>>()
                .len()
                == n
        })?;
        event_t100.push(done.map(|_| {
            let obs = sys.observations();
            of(&obs, Kind::User, &ev, 0.0)
                .map(|x| x.at)
                .fold(0.0, f64::max)
                - sent
        }));
        nap(Duration::from_secs(1))?;
    }

    // Silent host crashes: every packet of the host dropped, then kill -9.
    let mut crashes = Vec::new();
    for k in 0..o.crashes {
        let victim = 1 + k % (n - 1);
        let who = name(victim);
        let at = since(t0);
        sys.hosts()
            .emulator
            .with_links(|l| l.each_of_host(victim, |x| x.cut = true));
        sys.kill(victim);
        up[victim] = false;
        let others = n - 1;
        wait_for(o.timeout, || {
            let obs = sys.observations();
            of(&obs, Kind::Failed, &who, at)
                .map(|x| x.observer)
                .filter(|&x| x != victim)
                .collect::<HashSet<_>>()
                .len()
                >= others
        })?;
        let obs = sys.observations();
        let first = |kind| of(&obs, kind, &who, at).map(|x| x.at - at).reduce(f64::min);
        let mut failed_by: Vec<(usize, f64)> = of(&obs, Kind::Failed, &who, at)
            .map(|x| (x.observer, x.at - at))
            .collect();
        failed_by.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut seen = HashSet::new();
        failed_by.retain(|(w, _)| seen.insert(*w));
        crashes.push(Crash {
            first_suspect: first(Kind::Suspect),
            first_failed: first(Kind::Failed),
            all_failed: (failed_by.len() >= others).then(|| failed_by.last().map_or(0.0, |x| x.1)),
        });
        eprintln!("compare: {} crash {k}: {:?}", sys.label(), crashes.last());
        let base = o.base.clone();
        sys.hosts()
            .emulator
            .with_links(|l| l.each(|x| *x = base.clone()));
        sys.start(victim)?;
        up[victim] = true;
        wait_for(o.timeout, || sys.all_alive(&up))?;
    }

    // Link conditions: every member stays up; every failure is false.
    let mut windows = Vec::new();
    let base_window = Condition {
        label: "base".into(),
        loss: 0.0,
        jitter_ms: 0.0,
    };
    for c in std::iter::once(&base_window).chain(&o.conditions) {
        let before = sys.hosts().emulator.stats().sent_by;
        let from = since(t0);
        let (loss, jitter) = (c.loss, Duration::from_secs_f64(c.jitter_ms / 1e3));
        sys.hosts().emulator.with_links(|l| {
            l.each(|x| {
                x.loss = x.loss.max(loss);
                x.jitter = x.jitter.max(jitter);
            })
        });
        nap(Duration::from_secs_f64(o.window))?;
        let base = o.base.clone();
        sys.hosts()
            .emulator
            .with_links(|l| l.each(|x| *x = base.clone()));
        let to = since(t0);
        let after = sys.hosts().emulator.stats().sent_by;
        // Failures that the window's suspicions end in come a suspicion
        // timeout later: give them time, then count from the window.
        wait_for(o.timeout, || sys.all_alive(&up))?;
        nap(Duration::from_secs(5))?;
        let obs = sys.observations();
        let in_window = |x: &&Obs| x.at >= from && x.at <= to + 30.0;
        let failed: HashSet<&str> = obs
            .iter()
            .filter(in_window)
            .filter(|x| x.kind == Kind::Failed)
            .map(|x| x.subject.as_str())
            .collect();
        let suspicions: HashSet<(String, Option<u64>, usize)> = obs
            .iter()
            .filter(|x| x.at >= from && x.at <= to)
            .filter(|x| x.kind == Kind::Suspect)
            // rumor: one per member and incarnation; Serf logs each at its prober only.
            .map(|x| {
                (
                    x.subject.clone(),
                    x.incarnation,
                    if x.incarnation.is_some() {
                        0
                    } else {
                        x.observer
                    },
                )
            })
            .collect();
        let secs = to - from;
        let bytes: Vec<f64> = after
            .iter()
            .zip(&before)
            .map(|(a, b)| (a - b) as f64 / secs)
            .collect();
        windows.push(Window {
            label: c.label.clone(),
            secs,
            false_failures: failed.len(),
            false_failures_per_hour: failed.len() as f64 * 3600.0 / secs,
            suspicions: suspicions.len(),
            bytes_per_agent_per_sec: median(bytes),
        });
        eprintln!("compare: {} {:?}", sys.label(), windows.last());
    }

    // Pauses.
    let mut pauses = Vec::new();
    for (k, &secs) in o.pauses.iter().enumerate() {
        let victim = 1 + k % (n - 1);
        let who = name(victim);
        let at = since(t0);
        sys.signal(victim, libc::SIGSTOP);
        nap(Duration::from_secs_f64(secs))?;
        sys.signal(victim, libc::SIGCONT);
        nap(Duration::from_secs(10))?;
        wait_for(o.timeout, || sys.all_alive(&up))?;
        let obs = sys.observations();
        let by: HashSet<usize> = of(&obs, Kind::Failed, &who, at)
            .map(|x| x.observer)
            .filter(|&x| x != victim)
            .collect();
        let others: HashSet<&str> = obs
            .iter()
            .filter(|x| x.at >= at && x.kind == Kind::Failed && x.subject != who)
            .map(|x| x.subject.as_str())
            .collect();
        pauses.push(Pause {
            secs,
            declared_failed_by: by.len(),
            others_failed: others.len(),
        });
    }

    // A partition of halves for 20 s, then healed.
    let side: Vec<usize> = (0..n / 2).collect();
    let rest: Vec<usize> = (n / 2..n).collect();
    sys.hosts().emulator.with_links(|l| {
        l.cut(&side, &rest);
        l.cut(&rest, &side);
    });
    nap(Duration::from_secs(20))?;
    let base = o.base.clone();
    sys.hosts()
        .emulator
        .with_links(|l| l.each(|x| *x = base.clone()));
    let healed = Instant::now();
    let partition_heal_secs =
        wait_for(o.timeout.max(120.0), || sys.all_alive(&up))?.map(|t| (t - healed).as_secs_f64());

    Ok(Report {
        system: sys.label().into(),
        hosts: n,
        join_secs,
        crashes,
        event_t100,
        windows,
        pauses,
        partition_heal_secs,
    })
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}"))
}

/// The reports side by side, as a markdown table.
pub fn table(reports: &[Report]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let med = |v: Vec<Option<f64>>| {
        let got: Vec<f64> = v.iter().flatten().copied().collect();
        if got.len() < v.len() || got.is_empty() {
            format!(
                "{} ({} of {} missing)",
                fmt_opt(got.is_empty().then_some(0.0).or(Some(median(got.clone())))),
                v.len() - got.len(),
                v.len()
            )
        } else {
            format!("{:.2}", median(got))
        }
    };
    let mut add = |label: &str, f: &dyn Fn(&Report) -> String| {
        rows.push((label.into(), reports.iter().map(f).collect()));
    };
    add("join: all see all alive (s)", &|r| {
        format!("{:.2}", r.join_secs)
    });
    add("silent host crash: first suspicion (s, median)", &|r| {
        med(r.crashes.iter().map(|c| c.first_suspect).collect())
    });
    add("silent host crash: first failed (s, median)", &|r| {
        med(r.crashes.iter().map(|c| c.first_failed).collect())
    });
    add("silent host crash: all failed (s, median)", &|r| {
        med(r.crashes.iter().map(|c| c.all_failed).collect())
    });
    add("user event t100 (s, median)", &|r| {
        med(r.event_t100.clone())
    });
    let labels: Vec<String> = reports
        .first()
        .map(|r| r.windows.iter().map(|w| w.label.clone()).collect())
        .unwrap_or_default();
    for (k, l) in labels.iter().enumerate() {
        add(&format!("{l}: false failures (per hour)"), &|r| {
            r.windows.get(k).map_or("—".into(), |w| {
                format!("{} ({:.0}/h)", w.false_failures, w.false_failures_per_hour)
            })
        });
        add(&format!("{l}: suspicions"), &|r| {
            r.windows
                .get(k)
                .map_or("—".into(), |w| w.suspicions.to_string())
        });
        add(&format!("{l}: bytes/s per agent"), &|r| {
            r.windows.get(k).map_or("—".into(), |w| {
                format!("{:.0}", w.bytes_per_agent_per_sec)
            })
        });
    }
    let pauses: Vec<f64> = reports
        .first()
        .map(|r| r.pauses.iter().map(|p| p.secs).collect())
        .unwrap_or_default();
    for (k, s) in pauses.iter().enumerate() {
        add(
            &format!("pause {s} s: agents declaring it failed / others failed"),
            &|r| {
                r.pauses.get(k).map_or("—".into(), |p| {
                    format!("{} / {}", p.declared_failed_by, p.others_failed)
                })
            },
        );
    }
    add("partition healed: all see all alive (s)", &|r| {
        fmt_opt(r.partition_heal_secs)
    });
    let mut out = format!(
        "| figure | {} |\n|---|{}\n",
        reports
            .iter()
            .map(|r| r.system.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(reports.len())
    );
    for (label, cells) in rows {
        out.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
    }
    out
}
