//! Faults a scenario injects: crashes, restarts, pauses, slow nodes,
//! partitions, asymmetric loss, a hostile sender ([`crate::hostile`]),
//! forged ICMP evidence, and the ordinary lifecycle actions (late join,
//! graceful leave, tag change) whose spread the simulator measures.
//!
//! Times are seconds since the start of the run; nodes are indices.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::{mix_seed, secs, Micros};

/// One scheduled fault or action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The node stops for good: no timers, no packets, state lost.
    Crash {
        /// When.
        at: f64,
        /// Which node.
        node: usize,
    },
    /// The node crashes, then after `down_for` seconds a fresh node with
    /// the same name and address joins through a live seed.
    Restart {
        /// When it crashes.
        at: f64,
        /// Which node.
        node: usize,
        /// Seconds it stays down.
        down_for: f64,
    },
    /// No timers fire and no packets are processed for `duration`
    /// seconds; then everything queued is processed at once.
    Pause {
        /// When.
        at: f64,
        /// Which node.
        node: usize,
        /// Seconds paused.
        duration: f64,
    },
    /// Every packet the node receives waits `delay_ms` extra (queued
    /// behind the previous one) for `duration` seconds.
    Slow {
        /// When.
        at: f64,
        /// Which node.
        node: usize,
        /// Seconds slow.
        duration: f64,
        /// Extra processing delay per packet, in milliseconds.
        delay_ms: f64,
    },
    /// `nodes` are cut off from the rest for `duration` seconds.
    Partition {
        /// When.
        at: f64,
        /// The group cut off.
        nodes: Vec<usize>,
        /// Seconds until healed.
        duration: f64,
    },
    /// Asymmetric loss at one node for `duration` seconds.
    Loss {
        /// When.
        at: f64,
        /// Which node.
        node: usize,
        /// Seconds it lasts.
        duration: f64,
        /// Loss of datagrams the node sends.
        #[serde(default)]
        out_loss: f64,
        /// Loss of datagrams the node receives.
        #[serde(default)]
        in_loss: f64,
    },
    /// A node outside the initial cluster joins through a live seed.
    Join {
        /// When.
        at: f64,
        /// Which node.
        node: usize,
    },
    /// The node leaves gracefully and stops.
    Leave {
        /// When.
        at: f64,
        /// Which node.
        node: usize,
    },
    /// A hostile sender outside the cluster (see [`crate::hostile`]) floods
    /// invented members, forges maximum counters and false accusations,
    /// replays captured datagrams and duplicates packets for `duration`
    /// seconds.
    Hostile {
        /// When it starts.
        at: f64,
        /// Seconds it keeps going.
        duration: f64,
        /// Send each invented claim from the address it claims (source
        /// spoofing, which an unencrypted cluster cannot tell from the real
        /// thing: such claims are admitted, and the `admission` check fails).
        #[serde(default)]
        spoof: bool,
    },
    /// Forged ICMP evidence against live node `node`: from `at`, the next
    /// probe ping one node (or, with `everywhere`, each node) sends to it is
    /// followed at once by a forged "port unreachable" for its address
    /// (`Node::handle_unreachable`), before the real ack can arrive. Pings
    /// a node sends as a relay of someone else's probe are spared unless
    /// `relays` is set (a forger timing a report at a prober and at each of
    /// its relays).
    ForgedUnreachable {
        /// When the forger starts watching.
        at: f64,
        /// The live node whose address the forged reports name.
        node: usize,
        /// One forged report at every prober (else only at the first).
        #[serde(default)]
        everywhere: bool,
        /// Forge against relayed pings too.
        #[serde(default)]
        relays: bool,
    },
    /// The node sets tag `key` to `value`.
    Tags {
        /// When.
        at: f64,
        /// Which node.
        node: usize,
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
}

impl Fault {
    /// When it starts, in seconds.
    pub fn at(&self) -> f64 {
        match *self {
            Fault::Crash { at, .. }
            | Fault::Restart { at, .. }
            | Fault::Pause { at, .. }
            | Fault::Slow { at, .. }
            | Fault::Partition { at, .. }
            | Fault::Loss { at, .. }
            | Fault::Join { at, .. }
            | Fault::Leave { at, .. }
            | Fault::Hostile { at, .. }
            | Fault::ForgedUnreachable { at, .. }
            | Fault::Tags { at, .. } => at,
        }
    }

    /// When the disturbance it causes ends (its start for instant actions),
    /// in microseconds. A crash or leave never heals but is done at once.
    pub fn heals_at(&self) -> Micros {
        match *self {
            Fault::Restart { at, down_for, .. } => secs(at + down_for),
            Fault::Pause { at, duration, .. }
            | Fault::Slow { at, duration, .. }
            | Fault::Partition { at, duration, .. }
            | Fault::Loss { at, duration, .. }
            | Fault::Hostile { at, duration, .. } => secs(at + duration),
            _ => secs(self.at()),
        }
    }

    /// Every node index it names.
    pub fn nodes(&self) -> Vec<usize> {
        match self {
            Fault::Partition { nodes, .. } => nodes.clone(),
            Fault::Hostile { .. } => Vec::new(),
            Fault::Crash { node, .. }
            | Fault::ForgedUnreachable { node, .. }
            | Fault::Restart { node, .. }
            | Fault::Pause { node, .. }
            | Fault::Slow { node, .. }
            | Fault::Loss { node, .. }
            | Fault::Join { node, .. }
            | Fault::Leave { node, .. }
            | Fault::Tags { node, .. } => vec![*node],
        }
    }

    /// Check times, probabilities and node indices against a cluster of `n`.
    pub fn validate(&self, n: usize) -> Result<(), String> {
        let at = self.at();
        if !(at.is_finite() && at >= 0.0) {
            return Err(format!("fault time {at} must be >= 0"));
        }
        if let Some(bad) = self.nodes().into_iter().find(|&i| i >= n) {
            return Err(format!(
                "fault names node {bad}, but there are only {n} nodes"
            ));
        }
        let nonneg = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("fault {name} {v} must be >= 0"))
            }
        };
        match *self {
            Fault::Restart { down_for, .. } => nonneg("down_for", down_for),
            Fault::Pause { duration, .. }
            | Fault::Partition { duration, .. }
            | Fault::Hostile { duration, .. } => nonneg("duration", duration),
            Fault::Slow {
                duration, delay_ms, ..
            } => nonneg("duration", duration).and(nonneg("delay_ms", delay_ms)),
            Fault::Loss {
                duration,
                out_loss,
                in_loss,
                ..
            } => {
                nonneg("duration", duration)?;
                for p in [out_loss, in_loss] {
                    if !(0.0..1.0).contains(&p) {
                        return Err(format!("fault loss {p} must be in [0, 1)"));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A random schedule of `count` faults among `n` nodes, all healed by
/// `until` seconds; for seeded sweeps. Node 0 is kept up (it is the seed the
/// others rejoin through), so is at least half the cluster. Half the seeds
/// also get a [`Fault::Hostile`] sender (drawn from its own random stream,
/// so the other faults of a seed are the same with or without it).
pub fn random_faults(seed: u64, n: usize, count: usize, from: f64, until: f64) -> Vec<Fault> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut out = Vec::new();
    if n < 3 {
        return out;
    }
    let mut candidates: Vec<usize> = (1..n).collect();
    candidates.shuffle(&mut rng);
    let budget = count.min((n - 1) / 2);
    for &node in candidates.iter().take(budget) {
        let span = (until - from).max(1.0);
        let at = from + rng.random::<f64>() * span * 0.5;
        let left = (until - at).max(1.0);
        let dur = |rng: &mut Xoshiro256PlusPlus| 0.5 + rng.random::<f64>() * (left - 0.5) * 0.8;
        let f = match rng.random_range(0..8) {
            0 => Fault::Crash { at, node },
            1 => Fault::Restart {
                at,
                node,
                down_for: dur(&mut rng),
            },
            2 => Fault::Pause {
                at,
                node,
                duration: dur(&mut rng).min(20.0),
            },
            3 => Fault::Slow {
                at,
                node,
                duration: dur(&mut rng),
                delay_ms: rng.random_range(1.0..50.0),
            },
            4 => Fault::Partition {
                at,
                nodes: vec![node],
                duration: dur(&mut rng).min(8.0),
            },
            5 => Fault::Loss {
                at,
                node,
                duration: dur(&mut rng),
                out_loss: rng.random_range(0.0..0.3),
                in_loss: rng.random_range(0.0..0.3),
            },
            6 => Fault::Leave { at, node },
            _ => Fault::Tags {
                at,
                node,
                key: "role".into(),
                value: format!("v{}", rng.random_range(0..100)),
            },
        };
        out.push(f);
    }
    let mut hostile = Xoshiro256PlusPlus::seed_from_u64(mix_seed(seed, 0x4057));
    if hostile.random_bool(0.5) {
        let span = (until - from).max(1.0);
        let at = from + hostile.random::<f64>() * span * 0.5;
        let left = (until - at).max(1.0);
        out.push(Fault::Hostile {
            at,
            duration: (1.0 + hostile.random::<f64>() * (left - 1.0) * 0.8).min(20.0),
            spoof: false,
        });
    }
    out.sort_by(|a, b| a.at().total_cmp(&b.at()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_faults_are_valid_and_seeded() {
        let a = random_faults(7, 32, 6, 10.0, 40.0);
        assert_eq!(a, random_faults(7, 32, 6, 10.0, 40.0));
        let hostile = |f: &&Fault| matches!(f, Fault::Hostile { .. });
        assert_eq!(a.iter().filter(|f| !hostile(f)).count(), 6);
        assert!(
            (1..40).any(|s| random_faults(s, 32, 6, 10.0, 40.0)
                .iter()
                .any(|f| hostile(&f))),
            "some seeds have a hostile sender"
        );
        for f in &a {
            f.validate(32).unwrap();
            assert!(f.heals_at() <= secs(40.0) + 1);
            assert!(!f.nodes().contains(&0));
        }
        assert!(Fault::Crash { at: 1.0, node: 9 }.validate(4).is_err());
    }
}
