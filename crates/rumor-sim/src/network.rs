//! The network model: per-packet one-way latency drawn from a distribution,
//! uniform loss, per-node asymmetric loss, and partitions.
//!
//! Datagrams may be lost; streams are reliable unless the two ends are
//! partitioned from each other (then they fail silently, like a TCP connect
//! that times out). Loss delays a stream rather than losing it, as TCP's
//! retransmissions do ([`Network::stream`]): a lost SYN or SYN-ACK costs
//! [`SYN_RTO`] (doubling on each further loss), a lost request or reply
//! [`DATA_RTO`] (likewise); a stream whose retransmissions would take over
//! [`STREAM_GIVE_UP`] fails.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::Micros;

/// The longest one-way latency any distribution may produce (a cap on long tails).
pub const MAX_LATENCY: Micros = 10 * crate::SECOND;

/// TCP's retransmission timeout for a lost SYN or SYN-ACK (Linux's
/// initial RTO, 1 s).
pub const SYN_RTO: Micros = crate::SECOND;

/// TCP's retransmission timeout for a lost data segment on a fast link
/// (Linux's least RTO, 200 ms). Only the message's last segment is modelled
/// (a loss before it is repaired by fast retransmit in about a round trip).
pub const DATA_RTO: Micros = 200_000;

/// A stream whose retransmissions would add more than this fails (the
/// driver's stream deadline would have cut it off).
pub const STREAM_GIVE_UP: Micros = 10 * crate::SECOND;

/// How one-way latency is distributed; every value is in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always `ms`.
    Fixed {
        /// The latency.
        ms: f64,
    },
    /// Uniform between `min_ms` and `max_ms`.
    Uniform {
        /// Lower bound.
        min_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Log-normal with median `median_ms` and shape `sigma` (long-tailed).
    LogNormal {
        /// The median.
        median_ms: f64,
        /// Standard deviation of the underlying normal.
        sigma: f64,
    },
    /// Pareto with minimum `min_ms` and tail index `alpha` (heavier tail for smaller alpha).
    Pareto {
        /// The minimum (scale).
        min_ms: f64,
        /// The tail index, > 0.
        alpha: f64,
    },
}

impl Latency {
    /// Check the parameters; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        match *self {
            Latency::Fixed { ms } if !ok(ms) => Err(format!("latency ms {ms} must be >= 0")),
            Latency::Uniform { min_ms, max_ms }
                if !ok(min_ms) || !ok(max_ms) || max_ms < min_ms =>
            {
                Err(format!(
                    "uniform latency needs 0 <= min_ms ({min_ms}) <= max_ms ({max_ms})"
                ))
            }
            Latency::LogNormal { median_ms, sigma } if !ok(median_ms) || !ok(sigma) => {
                Err(format!(
                    "log-normal latency needs median_ms ({median_ms}) and sigma ({sigma}) >= 0"
                ))
            }
            Latency::Pareto { min_ms, alpha }
                if !(ok(min_ms) && alpha.is_finite() && alpha > 0.0) =>
            {
                Err(format!(
                    "pareto latency needs min_ms ({min_ms}) >= 0 and alpha ({alpha}) > 0"
                ))
            }
            _ => Ok(()),
        }
    }

    /// The same shape with its typical value (fixed value, mean of the
    /// uniform, median, minimum) moved to `ms`.
    pub fn scaled_to(&self, ms: f64) -> Latency {
        match *self {
            Latency::Fixed { .. } => Latency::Fixed { ms },
            Latency::Uniform { min_ms, max_ms } => {
                let mid = (min_ms + max_ms) / 2.0;
                let f = if mid > 0.0 { ms / mid } else { 1.0 };
                if mid > 0.0 {
                    Latency::Uniform {
                        min_ms: min_ms * f,
                        max_ms: max_ms * f,
                    }
                } else {
                    Latency::Fixed { ms }
                }
            }
            Latency::LogNormal { sigma, .. } => Latency::LogNormal {
                median_ms: ms,
                sigma,
            },
            Latency::Pareto { alpha, .. } => Latency::Pareto { min_ms: ms, alpha },
        }
    }

    /// The typical value in milliseconds (for theory curves and reports).
    pub fn typical_ms(&self) -> f64 {
        match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => (min_ms + max_ms) / 2.0,
            Latency::LogNormal { median_ms, .. } => median_ms,
            Latency::Pareto { min_ms, .. } => min_ms,
        }
    }

    /// Draw one latency.
    pub fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> Micros {
        let ms = match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => min_ms + (max_ms - min_ms) * rng.random::<f64>(),
            Latency::LogNormal { median_ms, sigma } => {
                // Box-Muller for a standard normal.
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median_ms * (sigma * z).exp()
            }
            Latency::Pareto { min_ms, alpha } => {
                let u = 1.0 - rng.random::<f64>();
                min_ms / u.powf(1.0 / alpha)
            }
        };
        ((ms * 1000.0).round() as Micros).min(MAX_LATENCY)
    }
}

/// Link conditions shared by the whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// One-way latency of every packet.
    pub latency: Latency,
    /// Probability that a datagram is lost, in `[0, 1)`.
    #[serde(default)]
    pub loss: f64,
    /// A crashed node's host answers datagrams with ICMP "port unreachable"
    /// (a process crash on a live host) instead of silence (a host crash).
    #[serde(default)]
    pub refuse: bool,
}

impl NetworkConfig {
    /// Check the parameters.
    pub fn validate(&self) -> Result<(), String> {
        self.latency.validate()?;
        if !(0.0..1.0).contains(&self.loss) {
            return Err(format!("loss {} must be in [0, 1)", self.loss));
        }
        Ok(())
    }
}

/// The live state of the network during a run: the configuration plus the
/// partitions and per-node losses that faults switch on and off.
#[derive(Clone, Debug)]
pub struct Network {
    config: NetworkConfig,
    /// Bit `p` set on a node while partition `p` holds it apart from the rest.
    groups: Vec<u64>,
    /// Extra loss on datagrams a node sends.
    loss_out: Vec<f32>,
    /// Extra loss on datagrams a node receives.
    loss_in: Vec<f32>,
}

impl Network {
    /// A network of `nodes` nodes, all connected.
    pub fn new(config: NetworkConfig, nodes: usize) -> Self {
        Network {
            config,
            groups: vec![0; nodes],
            loss_out: vec![0.0; nodes],
            loss_in: vec![0.0; nodes],
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Whether crashed nodes' hosts answer with "port unreachable".
    pub fn refuses(&self) -> bool {
        self.config.refuse
    }

    /// Whether `a` and `b` can talk (not separated by a partition).
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.groups[a] == self.groups[b]
    }

    /// Whether `node` is held apart by any partition.
    pub fn partitioned(&self, node: usize) -> bool {
        self.groups[node] != 0
    }

    /// Cut `nodes` off from the rest under partition id `id` (0..64).
    pub fn partition(&mut self, id: u32, nodes: &[usize]) {
        for &n in nodes {
            self.groups[n] |= 1 << (id % 64);
        }
    }

    /// Heal partition `id`.
    pub fn heal(&mut self, id: u32) {
        let mask = !(1u64 << (id % 64));
        for g in &mut self.groups {
            *g &= mask;
        }
    }

    /// Set the extra outbound and inbound datagram loss of `node`.
    pub fn set_node_loss(&mut self, node: usize, out: f64, inbound: f64) {
        self.loss_out[node] = out as f32;
        self.loss_in[node] = inbound as f32;
    }

    /// Whether `node` has extra loss set.
    pub fn lossy_node(&self, node: usize) -> bool {
        self.loss_out[node] > 0.0 || self.loss_in[node] > 0.0
    }

    /// The probability that a packet from `from` to `to` gets through
    /// (partitions aside).
    fn p_keep(&self, from: usize, to: usize) -> f64 {
        (1.0 - self.config.loss)
            * (1.0 - f64::from(self.loss_out[from]))
            * (1.0 - f64::from(self.loss_in[to]))
    }

    /// The delay of a datagram from `from` to `to`, or `None` if it is lost.
    pub fn datagram(&self, rng: &mut Xoshiro256PlusPlus, from: usize, to: usize) -> Option<Micros> {
        if !self.reachable(from, to) {
            return None;
        }
        let p_keep = self.p_keep(from, to);
        if p_keep < 1.0 && rng.random::<f64>() >= p_keep {
            return None;
        }
        Some(self.config.latency.sample(rng))
    }

    /// The delay of a stream message from `from` to `to`, or `None` if the
    /// two are partitioned or TCP would give up. With `connect` (a request:
    /// a new connection) the handshake comes first: a round trip, and a
    /// [`SYN_RTO`] chain for each of the SYN and SYN-ACK lost; then the
    /// message, with a [`DATA_RTO`] chain if it is lost (a reply travels on
    /// the open connection). Loss is the datagram loss of each direction.
    pub fn stream(
        &self,
        rng: &mut Xoshiro256PlusPlus,
        from: usize,
        to: usize,
        connect: bool,
    ) -> Option<Micros> {
        if !self.reachable(from, to) {
            return None;
        }
        let (there, back) = (self.p_keep(from, to), self.p_keep(to, from));
        let mut delay = self.config.latency.sample(rng);
        if connect {
            delay += self.config.latency.sample(rng) + self.config.latency.sample(rng);
            delay += retransmits(rng, there, SYN_RTO)?;
            delay += retransmits(rng, back, SYN_RTO)?;
        }
        delay += retransmits(rng, there, DATA_RTO)?;
        (delay <= STREAM_GIVE_UP).then_some(delay)
    }
}

/// The time TCP spends resending one packet that gets through with
/// probability `p_keep`: `rto`, doubling, per loss; `None` past
/// [`STREAM_GIVE_UP`].
fn retransmits(rng: &mut Xoshiro256PlusPlus, p_keep: f64, rto: Micros) -> Option<Micros> {
    let (mut spent, mut next) = (0, rto);
    while p_keep < 1.0 && rng.random::<f64>() >= p_keep {
        spent += next;
        next *= 2;
        if spent > STREAM_GIVE_UP {
            return None;
        }
    }
    Some(spent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn distributions_are_sane() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let ln = Latency::LogNormal {
            median_ms: 10.0,
            sigma: 1.0,
        };
        let mut v: Vec<Micros> = (0..10_001).map(|_| ln.sample(&mut rng)).collect();
        v.sort_unstable();
        let median = v[5000] as f64 / 1000.0;
        assert!((8.0..12.0).contains(&median), "{median}");
        let p = Latency::Pareto {
            min_ms: 1.0,
            alpha: 1.5,
        };
        assert!((0..1000).all(|_| p.sample(&mut rng) >= 1000));
        assert!(Latency::Uniform {
            min_ms: 2.0,
            max_ms: 1.0
        }
        .validate()
        .is_err());
    }

    #[test]
    fn partitions_and_loss() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let cfg = NetworkConfig {
            latency: Latency::Fixed { ms: 1.0 },
            loss: 0.0,
            refuse: false,
        };
        let mut net = Network::new(cfg, 4);
        assert_eq!(net.datagram(&mut rng, 0, 1), Some(1000));
        net.partition(3, &[0, 1]);
        assert!(net.reachable(0, 1) && !net.reachable(0, 2));
        assert_eq!(net.stream(&mut rng, 1, 2, true), None);
        net.heal(3);
        assert!(net.reachable(0, 2));
        net.set_node_loss(2, 0.999_999, 0.0);
        let lost = (0..100)
            .filter(|_| net.datagram(&mut rng, 2, 0).is_none())
            .count();
        assert!(lost > 95);
        assert!(net.datagram(&mut rng, 0, 2).is_some());
        // A stream over the lossy side gives up; the clean one is prompt.
        assert_eq!(net.stream(&mut rng, 2, 0, true), None);
        assert_eq!(net.stream(&mut rng, 0, 1, false), Some(1000));
        assert_eq!(net.stream(&mut rng, 0, 1, true), Some(3000));
    }

    #[test]
    fn lost_stream_packets_are_late_not_lost() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let cfg = NetworkConfig {
            latency: Latency::Fixed { ms: 1.0 },
            loss: 0.1,
            refuse: false,
        };
        let net = Network::new(cfg, 2);
        let delays: Vec<Micros> = (0..10_000)
            .filter_map(|_| net.stream(&mut rng, 0, 1, true))
            .collect();
        // Giving up takes four SYNs (or SYN-ACKs) lost in a row: 2 in 10^4.
        assert!(
            delays.len() >= 9_990,
            "{} of 10000 gave up",
            10_000 - delays.len()
        );
        let late = |min: Micros| delays.iter().filter(|&&d| d >= min).count() as f64 / 1e4;
        // The handshake loses a packet 19 % of the time (1 s each); the
        // request 10 % (200 ms).
        assert!((0.16..0.22).contains(&late(SYN_RTO)), "{}", late(SYN_RTO));
        assert!((0.25..0.32).contains(&late(DATA_RTO)), "{}", late(DATA_RTO));
        assert!(delays.iter().all(|&d| d >= 3000));
    }
}
