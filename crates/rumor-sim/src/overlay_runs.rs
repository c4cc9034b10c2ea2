//! The partial-membership experiments of docs/simulator.md
//! (`--experiment overlay`), on the [`crate::overlay`] model:
//!
//! * [`crash_run`]: a stable overlay loses a fraction of its nodes at once;
//!   how reliable are the broadcasts sent right after, and how long until
//!   the overlay heals (the HyParView paper's experiment);
//! * [`detection_run`]: a few nodes crash; how long until every live node
//!   has heard of it (neighbours detect, the tree spreads it);
//! * [`churn_run`]: nodes crash and new ones join all the time; does every
//!   broadcast still reach everyone, and what it costs in memory and time.

use std::time::Duration;

use serde::Serialize;

use crate::overlay::{Health, Options, Overlay, Spread};
use crate::{secs, to_secs, Micros, SECOND};

/// The broadcasts of a run, summed up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Broadcasts {
    /// How many.
    pub count: usize,
    /// Mean fraction of the live nodes reached.
    pub reliability: f64,
    /// Least fraction reached.
    pub min_reliability: f64,
    /// Mean relative message redundancy.
    pub rmr: f64,
    /// Largest last-delivery hop.
    pub ldh: u16,
    /// Mean time of the last delivery, milliseconds.
    pub last_ms: f64,
    /// Deliveries to a node that had it already (must be 0).
    pub duplicates: u32,
}

fn summarise(spreads: &[&Spread]) -> Broadcasts {
    let n = spreads.len().max(1) as f64;
    let rel = |s: &Spread| s.reached as f64 / s.live_at_send.max(1) as f64;
    Broadcasts {
        count: spreads.len(),
        reliability: spreads.iter().map(|s| rel(s)).sum::<f64>() / n,
        min_reliability: spreads.iter().map(|s| rel(s)).fold(1.0, f64::min),
        rmr: spreads.iter().map(|s| s.rmr()).sum::<f64>() / n,
        ldh: spreads.iter().map(|s| s.max_round).max().unwrap_or(0),
        last_ms: spreads
            .iter()
            .map(|s| (s.last_at - s.sent_at) as f64 / 1000.0)
            .sum::<f64>()
            / n,
        duplicates: spreads.iter().map(|s| s.duplicates).sum(),
    }
}

/// A cluster of `n` joined one by one, then left to settle: the time it
/// settled at.
fn settled(overlay: &mut Overlay, n: usize) -> Micros {
    let spread = Duration::from_secs_f64((n as f64 * 0.0005).max(2.0));
    overlay.join_all(spread);
    let end = overlay.now() + spread.as_micros() as u64 + 40 * SECOND;
    overlay.run_until(end);
    end
}

/// Send `count` broadcasts `gap` apart from random live nodes, ids from
/// `first`, then run `after` more; their ids.
fn broadcasts(
    overlay: &mut Overlay,
    first: u64,
    count: u64,
    gap: Micros,
    after: Micros,
) -> Vec<u64> {
    let mut ids = Vec::new();
    for k in 0..count {
        if let Some(origin) = overlay.random_live() {
            overlay.broadcast(origin, first + k);
            ids.push(first + k);
        }
        let next = overlay.now() + gap;
        overlay.run_until(next);
    }
    let end = overlay.now() + after;
    overlay.run_until(end);
    ids
}

fn spreads<'a>(overlay: &'a Overlay, ids: &[u64]) -> Vec<&'a Spread> {
    ids.iter().filter_map(|&id| overlay.spread(id)).collect()
}

/// What [`crash_run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct CrashRun {
    /// Nodes.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Fraction of the nodes crashed at once.
    pub fraction: f64,
    /// Broadcasts in the settled overlay before the crash.
    pub before: Broadcasts,
    /// The broadcast sent at the instant of the crash.
    pub first_after: Broadcasts,
    /// The broadcasts of the 10 s after the crash (one a second).
    pub after_10s: Broadcasts,
    /// The broadcasts from 20 to 30 s after it.
    pub after_30s: Broadcasts,
    /// Seconds after the crash from which every broadcast reached every
    /// live node.
    pub reliable_after_s: Option<f64>,
    /// Seconds after the crash until the overlay healed (every live node's
    /// view full, symmetric and live; one component).
    pub healed_s: Option<f64>,
    /// The settled overlay's health before the crash.
    pub health_before: Health,
    /// Its health at the end of the run.
    pub health_after: Health,
}

/// A settled overlay of `n` nodes loses `fraction` of them at once.
pub fn crash_run(n: usize, fraction: f64, opts: &Options) -> CrashRun {
    let mut o = Overlay::new(n, opts.clone());
    settled(&mut o, n);
    let health_before = o.health();
    let before = broadcasts(&mut o, 0, 10, SECOND / 2, 2 * SECOND);
    let before = summarise(&spreads(&o, &before[5..]));
    let crash_at = o.now();
    o.crash_fraction(fraction);
    let mut ids = Vec::new();
    let mut healed = None;
    for k in 0..30u64 {
        if healed.is_none() && o.health().healed() {
            healed = Some(o.now() - crash_at);
        }
        if let Some(origin) = o.random_live() {
            o.broadcast(origin, 1000 + k);
            ids.push(1000 + k);
        }
        let next = o.now() + SECOND;
        o.run_until(next);
    }
    o.run_until(o.now() + 5 * SECOND);
    let healed = healed.or_else(|| {
        o.run_until_healed(SECOND, crash_at + 120 * SECOND)
            .map(|t| t - crash_at)
    });
    let all = spreads(&o, &ids);
    let reliable_after = all
        .iter()
        .rposition(|s| s.reached < s.live_at_send)
        .map_or(Some(0.0), |last_bad| {
            all.get(last_bad + 1).map(|s| to_secs(s.sent_at - crash_at))
        });
    CrashRun {
        nodes: n,
        seed: opts.seed,
        fraction,
        before,
        first_after: summarise(&all[..1.min(all.len())]),
        after_10s: summarise(&all[..10.min(all.len())]),
        after_30s: summarise(&all[20.min(all.len())..]),
        reliable_after_s: reliable_after,
        healed_s: healed.map(to_secs),
        health_before,
        health_after: o.health(),
    }
}

/// What [`idle_run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRun {
    /// Nodes.
    pub nodes: usize,
    /// Messages per node per second in a settled overlay with no
    /// broadcasts (probes, shuffles).
    pub messages_per_node_s: f64,
    /// Their bytes per node per second in rumor's wire format (no IP or
    /// UDP headers, no encryption).
    pub bytes_per_node_s: f64,
}

/// A settled overlay of `n` nodes left alone for 30 s: what it costs.
pub fn idle_run(n: usize, opts: &Options) -> IdleRun {
    let opts = Options {
        count_bytes: true,
        ..opts.clone()
    };
    let mut o = Overlay::new(n, opts);
    settled(&mut o, n);
    let before = o.traffic().clone();
    let start = o.now();
    o.run_until(start + 30 * SECOND);
    let t = o.traffic();
    let messages =
        (t.view + t.payloads + t.control) - (before.view + before.payloads + before.control);
    let per = |x: u64| x as f64 / n as f64 / 30.0;
    IdleRun {
        nodes: n,
        messages_per_node_s: per(messages),
        bytes_per_node_s: per(t.bytes - before.bytes),
    }
}

/// What [`storm_run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct StormRun {
    /// Nodes.
    pub nodes: usize,
    /// Seconds from the storm until the overlay was whole.
    pub whole_s: Option<f64>,
    /// A broadcast sent then.
    pub broadcast: Broadcasts,
    /// Messages per node until the overlay was whole.
    pub messages_per_node: f64,
}

/// Every node of `n` joins node 0 at the same instant.
pub fn storm_run(n: usize, opts: &Options) -> StormRun {
    let mut o = Overlay::new(n, opts.clone());
    o.join_storm();
    // Start them all before the first look.
    o.run_until(o.now());
    let whole = o.run_until_healed(SECOND / 10, 120 * SECOND);
    let t = o.traffic();
    let messages_per_node = (t.view + t.payloads + t.control) as f64 / n as f64;
    let ids = broadcasts(&mut o, 0, 1, SECOND, 2 * SECOND);
    StormRun {
        nodes: n,
        whole_s: whole.map(to_secs),
        broadcast: summarise(&spreads(&o, &ids)),
        messages_per_node,
    }
}

/// What [`detection_run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct DetectionRun {
    /// Nodes.
    pub nodes: usize,
    /// Nodes crashed.
    pub crashed: usize,
    /// Mean seconds from the crash until a neighbour noticed.
    pub first_s: f64,
    /// Mean seconds from the crash until every live node had heard.
    pub all_s: f64,
    /// Crashes every live node heard of.
    pub heard_by_all: usize,
    /// Live nodes reported failed (false positives).
    pub false_failures: usize,
}

/// `crashes` nodes of a settled overlay crash one by one, a second apart.
pub fn detection_run(n: usize, crashes: usize, opts: &Options) -> DetectionRun {
    let opts = Options {
        announce_failures: true,
        ..opts.clone()
    };
    let mut o = Overlay::new(n, opts);
    settled(&mut o, n);
    let mut crashed = Vec::new();
    for _ in 0..crashes {
        if let Some(v) = o.random_live() {
            o.crash(v);
            crashed.push((v, o.now()));
        }
        o.run_until(o.now() + SECOND);
    }
    o.run_until(o.now() + 30 * SECOND);
    let mut first = Vec::new();
    let mut all = Vec::new();
    for &(v, at) in &crashed {
        if let Some(&(_, noticed, _)) = o.detections().iter().find(|d| d.0 == v) {
            first.push(to_secs(noticed - at));
        }
        if let Some(s) = o.failure_spread(v) {
            if o.reached_all_live(s) {
                all.push(to_secs(s.last_at - at));
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    DetectionRun {
        nodes: n,
        crashed: crashed.len(),
        first_s: mean(&first),
        all_s: mean(&all),
        heard_by_all: all.len(),
        false_failures: o.detections().iter().filter(|d| !d.2).count(),
    }
}

/// What [`churn_run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnRun {
    /// Nodes at the start.
    pub nodes: usize,
    /// Simulated seconds of churn.
    pub duration_s: f64,
    /// Crashes (each followed by a new node joining).
    pub replaced: usize,
    /// The broadcasts sent during the churn (one a second).
    pub broadcasts: Broadcasts,
    /// Messages per live node per second during the churn.
    pub messages_per_node_s: f64,
    /// Whether the overlay healed within 60 s after the churn stopped.
    pub healed_after: bool,
    /// Wall seconds of the whole run.
    pub wall_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: Option<f64>,
}

/// A settled overlay of `n` nodes where the fraction `per_minute` of the
/// nodes crashes per minute (each replaced by a new node joining a random live one), for
/// `duration` seconds, with a broadcast every second.
pub fn churn_run(n: usize, duration: f64, per_minute: f64, opts: &Options) -> ChurnRun {
    let wall = std::time::Instant::now();
    let mut o = Overlay::new(n, opts.clone());
    settled(&mut o, n);
    let start = o.now();
    let before = o.traffic().clone();
    let per_second = n as f64 * per_minute / 60.0;
    let mut owed = 0.0;
    let mut replaced = 0;
    let mut ids = Vec::new();
    let seconds = duration.max(0.0) as u64;
    for k in 0..seconds {
        owed += per_second;
        while owed >= 1.0 {
            owed -= 1.0;
            if let Some(v) = o.random_live() {
                o.crash(v);
                let contacts: Vec<u32> = (0..3).filter_map(|_| o.random_live()).collect();
                o.add_node(&contacts);
                replaced += 1;
            }
        }
        if let Some(origin) = o.random_live() {
            o.broadcast(origin, 1_000_000 + k);
            ids.push(1_000_000 + k);
        }
        o.run_until(o.now() + SECOND);
    }
    let end = o.now();
    let t = o.traffic();
    let sent = (t.view + t.payloads + t.control) - (before.view + before.payloads + before.control);
    let rate = sent as f64 / (o.live().max(1) as f64 * to_secs(end - start).max(1e-9));
    let healed_after = o.run_until_healed(SECOND, end + secs(60.0)).is_some();
    ChurnRun {
        nodes: n,
        duration_s: duration,
        replaced,
        broadcasts: summarise(&spreads(&o, &ids)),
        messages_per_node_s: rate,
        healed_after,
        wall_s: wall.elapsed().as_secs_f64(),
        peak_rss_mib: crate::report::peak_rss_mib(),
    }
}
