//! The nemesis: a seeded schedule of faults, one at a time, and the
//! [`Timeline`] of what it actually did (the checker's record of which
//! failures were deserved).

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

/// What happens to an agent a fault took down, when the fault ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Restart {
    /// It stays down for the rest of the run.
    Never,
    /// It starts again on its data dir.
    WithData,
    /// Its data dir is removed and it starts empty.
    Wiped,
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Fault {
    /// The host goes silent (every packet to and from it dropped), its
    /// agent is killed a second later; when the fault ends the host is
    /// reachable again and the agent maybe restarted.
    HostCrash { host: usize, restart: Restart },
    /// The agent is killed (the host stays up and answers ICMP).
    ProcessCrash { host: usize, restart: Restart },
    /// The agent is stopped with SIGSTOP, continued when the fault ends.
    Pause { host: usize },
    /// Two sides that cannot reach each other (either way).
    Partition { side: Vec<usize> },
    /// `from` cannot reach `to`; the other way works.
    OneWay { from: Vec<usize>, to: Vec<usize> },
    /// Every link loses this share of packets.
    LossBurst { loss: f64 },
    /// Every link of `hosts` gets this much more one-way delay, with jitter.
    LatencySpike {
        hosts: Vec<usize>,
        delay_ms: u64,
        jitter_ms: u64,
    },
    /// The agent leaves gracefully (SIGTERM) and starts again when the fault ends.
    Restart { host: usize, wipe: bool },
    /// The agent restarts (kill -9, on its data) with its wall clock off by
    /// `offset_ms`, and again with the right clock when the fault ends.
    ClockOffset { host: usize, offset_ms: i64 },
}

impl Fault {
    /// The hosts it takes down (killed, stopped or left).
    pub fn downed(&self) -> Option<usize> {
        match self {
            Fault::HostCrash { host, .. }
            | Fault::ProcessCrash { host, .. }
            | Fault::Pause { host }
            | Fault::Restart { host, .. }
            | Fault::ClockOffset { host, .. } => Some(*host),
            _ => None,
        }
    }
}

/// A fault, when it starts and how long it lasts (seconds from the run's start).
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Start.
    pub at: f64,
    /// Length.
    pub duration: f64,
    /// What.
    pub fault: Fault,
}

/// The schedule for `hosts` hosts over `secs` seconds, from `seed`. At most
/// a quarter of the hosts end the run down for good; host 0 always stays.
pub fn schedule(seed: u64, hosts: usize, secs: f64) -> Vec<Step> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut dead: Vec<usize> = Vec::new();
    let max_dead = hosts / 4;
    let mut steps = Vec::new();
    let mut t = rng.random_range(3.0..8.0);
    while t < secs - 5.0 {
        let up: Vec<usize> = (1..hosts).filter(|h| !dead.contains(h)).collect();
        let Some(&host) = up.choose(&mut rng) else {
            break;
        };
        let duration: f64 = rng.random_range(1.0..20.0);
        let restart =
            |rng: &mut Xoshiro256PlusPlus, dead: &mut Vec<usize>| match rng.random_range(0..6) {
                0 if dead.len() < max_dead => {
                    dead.push(host);
                    Restart::Never
                }
                1 | 2 => Restart::Wiped,
                _ => Restart::WithData,
            };
        let fault = match rng.random_range(0..10) {
            0 => Fault::HostCrash {
                host,
                restart: restart(&mut rng, &mut dead),
            },
            1 => Fault::ProcessCrash {
                host,
                restart: restart(&mut rng, &mut dead),
            },
            2 => Fault::Pause { host },
            3 => {
                let mut all: Vec<usize> = (0..hosts).collect();
                all.shuffle(&mut rng);
                let k = rng.random_range(1..=hosts / 2);
                Fault::Partition {
                    side: all[..k].to_vec(),
                }
            }
            4 => Fault::Partition { side: vec![host] },
            5 => {
                let mut all: Vec<usize> = (0..hosts).collect();
                all.shuffle(&mut rng);
                let k = rng.random_range(1..=hosts / 2);
                Fault::OneWay {
                    from: all[..k].to_vec(),
                    to: all[k..].to_vec(),
                }
            }
            6 => Fault::LossBurst {
                loss: rng.random_range(0.05..0.30),
            },
            7 => {
                let mut all: Vec<usize> = (0..hosts).collect();
                all.shuffle(&mut rng);
                let k = rng.random_range(1..=hosts);
                Fault::LatencySpike {
                    hosts: all[..k].to_vec(),
                    delay_ms: rng.random_range(20..200),
                    jitter_ms: rng.random_range(0..50),
                }
            }
            _ => Fault::Restart {
                host,
                wipe: rng.random_bool(0.5),
            },
        };
        steps.push(Step {
            at: t,
            duration,
            fault,
        });
        t += duration + rng.random_range(2.0..10.0);
    }
    steps
}

/// What a period of a host or a link went through.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Disturbance {
    /// The agent was not running (crashed, left, restarting).
    Down { host: usize, wiped: bool },
    /// The agent was stopped.
    Paused { host: usize },
    /// Packets from `from` to `to` were dropped.
    Cut { from: usize, to: usize },
    /// Every link lost packets.
    Loss { loss: f64 },
    /// Links of `hosts` were slow.
    Latency { hosts: Vec<usize> },
    /// The host's wall clock was off.
    Clock { host: usize, offset_ms: i64 },
}

/// One disturbance from `from` to `to` (seconds; `to` is infinite while it lasts).
#[derive(Clone, Debug, Serialize)]
pub struct Interval {
    /// Start.
    pub from: f64,
    /// End.
    pub to: f64,
    /// What.
    pub what: Disturbance,
}

/// Everything the nemesis did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    /// Every disturbance, in the order they started.
    pub intervals: Vec<Interval>,
}

impl Timeline {
    /// Records a disturbance starting at `at`; returns its index for [`Timeline::end`].
    pub fn begin(&mut self, at: f64, what: Disturbance) -> usize {
        self.intervals.push(Interval {
            from: at,
            to: f64::INFINITY,
            what,
        });
        self.intervals.len() - 1
    }

    /// Ends disturbance `i` at `at`.
    pub fn end(&mut self, i: usize, at: f64) {
        if let Some(iv) = self.intervals.get_mut(i) {
            iv.to = iv.to.min(at);
        }
    }

    /// The disturbances overlapping `[from, to]`.
    pub fn overlapping(&self, from: f64, to: f64) -> impl Iterator<Item = &Interval> {
        self.intervals
            .iter()
            .filter(move |iv| iv.from <= to && iv.to >= from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = serde_json::to_string(&schedule(9, 8, 600.0)).unwrap_or_default();
        let b = serde_json::to_string(&schedule(9, 8, 600.0)).unwrap_or_default();
        let c = serde_json::to_string(&schedule(10, 8, 600.0)).unwrap_or_default();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn faults_come_one_at_a_time_and_few_hosts_die_for_good() {
        let s = schedule(3, 16, 3600.0);
        assert!(s.len() > 50, "{} faults in an hour", s.len());
        for w in s.windows(2) {
            assert!(w[0].at + w[0].duration < w[1].at);
        }
        let dead = s
            .iter()
            .filter(|x| {
                matches!(
                    x.fault,
                    Fault::HostCrash {
                        restart: Restart::Never,
                        ..
                    } | Fault::ProcessCrash {
                        restart: Restart::Never,
                        ..
                    }
                )
            })
            .count();
        assert!(dead <= 4);
        assert!(s.iter().all(|x| x.fault.downed() != Some(0)));
    }
}
