//! Link conditions: what happens to a packet between two hosts.
//!
//! Every ordered pair of hosts (a directed link) has a [`Link`]: delay with
//! jitter drawn from a [`Distribution`], loss, duplication, reordering, a
//! rate, and whether it is cut (a partition, or a host that lost power).
//! [`Links`] is the table the emulator reads for every packet and the
//! nemesis writes.

use rand::Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How jitter is drawn around the delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Distribution {
    /// Uniform in `delay ± jitter`.
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter`, cut at 0.
    Normal,
    /// Pareto (shape 3) with mean `delay + jitter`: mostly close to the
    /// delay, with a long tail.
    Pareto,
}

/// The conditions of one directed link.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Link {
    /// One-way delay added to every packet.
    pub delay: Duration,
    /// Spread of the delay (see [`Distribution`]).
    pub jitter: Duration,
    /// How jitter is drawn.
    pub distribution: Distribution,
    /// Probability that a packet is dropped.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that a packet skips the delay (and so overtakes those
    /// queued before it).
    pub reorder: f64,
    /// Bytes per second the link carries; packets queue behind each other.
    /// `None` is unlimited.
    pub rate: Option<u64>,
    /// Every packet is dropped (a partition in this direction).
    pub cut: bool,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            distribution: Distribution::Normal,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            rate: None,
            cut: false,
        }
    }
}

/// What the emulator does with one packet.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Dropped because the link is cut.
    Cut,
    /// Dropped by random loss.
    Lost,
    /// Deliver at each of these instants (two for a duplicate).
    Deliver(Vec<Instant>),
}

/// The conditions of every directed link among `n` hosts.
#[derive(Clone, Debug)]
pub struct Links {
    n: usize,
    links: Vec<Link>,
    busy_until: Vec<Instant>,
}

impl Links {
    /// `n` hosts, every link set to `base`.
    pub fn new(n: usize, base: Link) -> Links {
        Links {
            n,
            links: vec![base; n * n],
            busy_until: vec![Instant::now(); n * n],
        }
    }

    /// How many hosts.
    pub fn hosts(&self) -> usize {
        self.n
    }

    /// The link from `a` to `b`.
    pub fn get(&self, a: usize, b: usize) -> &Link {
        &self.links[a * self.n + b]
    }

    /// The link from `a` to `b`, to change.
    pub fn get_mut(&mut self, a: usize, b: usize) -> &mut Link {
        &mut self.links[a * self.n + b]
    }

    /// Applies `f` to every link that starts or ends at `host`.
    pub fn each_of_host(&mut self, host: usize, mut f: impl FnMut(&mut Link)) {
        for other in 0..self.n {
            if other != host {
                f(self.get_mut(host, other));
                f(self.get_mut(other, host));
            }
        }
    }

    /// Applies `f` to every link.
    pub fn each(&mut self, f: impl FnMut(&mut Link)) {
        self.links.iter_mut().for_each(f);
    }

    /// Cuts every link from a host in `from` to a host in `to`.
    pub fn cut(&mut self, from: &[usize], to: &[usize]) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.get_mut(a, b).cut = true;
                }
            }
        }
    }

    /// Decides the fate of a packet of `len` bytes from `a` to `b` at `now`.
    pub fn verdict(
        &mut self,
        a: usize,
        b: usize,
        len: usize,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Verdict {
        let i = a * self.n + b;
        let link = &self.links[i];
        if link.cut {
            return Verdict::Cut;
        }
        if link.loss > 0.0 && rng.random_bool(link.loss.min(1.0)) {
            return Verdict::Lost;
        }
        let copies = if link.duplicate > 0.0 && rng.random_bool(link.duplicate.min(1.0)) {
            2
        } else {
            1
        };
        // The link sends one packet after the other at its rate.
        let mut leave = now;
        if let Some(rate) = link.rate.filter(|r| *r > 0) {
            let start = self.busy_until[i].max(now);
            let wire = Duration::from_nanos((len as u64).saturating_mul(1_000_000_000) / rate);
            self.busy_until[i] = start + wire;
            leave = start + wire;
        }
        let mut at = Vec::with_capacity(copies);
        for _ in 0..copies {
            let skip = link.reorder > 0.0 && rng.random_bool(link.reorder.min(1.0));
            at.push(if skip {
                leave
            } else {
                leave + link.sample_delay(rng)
            });
        }
        Verdict::Deliver(at)
    }
}

impl Link {
    /// One draw of this link's delay.
    pub fn sample_delay(&self, rng: &mut impl Rng) -> Duration {
        let d = self.delay.as_secs_f64();
        let j = self.jitter.as_secs_f64();
        if j == 0.0 {
            return self.delay;
        }
        let s = match self.distribution {
            Distribution::Uniform => d + j * (2.0 * rng.random::<f64>() - 1.0),
            Distribution::Normal => {
                // Box-Muller.
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random();
                d + j * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            }
            Distribution::Pareto => {
                // Shape 3 has mean 1.5 x_m; scale so the excess has mean j.
                let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let xm = 2.0 * j / 3.0;
                d + xm / u.powf(1.0 / 3.0)
            }
        };
        Duration::from_secs_f64(s.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn rng() -> Xoshiro256PlusPlus {
        Xoshiro256PlusPlus::seed_from_u64(7)
    }

    #[test]
    fn cut_links_drop_one_way_only() {
        let mut l = Links::new(3, Link::default());
        l.cut(&[0], &[1]);
        let now = Instant::now();
        assert_eq!(l.verdict(0, 1, 100, now, &mut rng()), Verdict::Cut);
        assert_eq!(
            l.verdict(1, 0, 100, now, &mut rng()),
            Verdict::Deliver(vec![now])
        );
    }

    #[test]
    fn loss_drops_about_its_share() {
        let mut l = Links::new(
            2,
            Link {
                loss: 0.2,
                ..Link::default()
            },
        );
        let mut r = rng();
        let now = Instant::now();
        let lost = (0..10_000)
            .filter(|_| l.verdict(0, 1, 100, now, &mut r) == Verdict::Lost)
            .count();
        assert!((1_800..2_200).contains(&lost), "{lost} of 10000 lost");
    }

    #[test]
    fn delays_have_the_configured_mean_and_spread() {
        for dist in [
            Distribution::Uniform,
            Distribution::Normal,
            Distribution::Pareto,
        ] {
            let link = Link {
                delay: Duration::from_millis(50),
                jitter: Duration::from_millis(10),
                distribution: dist,
                ..Link::default()
            };
            let mut r = rng();
            let draws: Vec<f64> = (0..20_000)
                .map(|_| link.sample_delay(&mut r).as_secs_f64() * 1e3)
                .collect();
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            let min = draws.iter().cloned().fold(f64::MAX, f64::min);
            let want = if dist == Distribution::Pareto {
                60.0
            } else {
                50.0
            };
            assert!((mean - want).abs() < 1.0, "{dist:?}: mean {mean} ms");
            assert!(min >= 0.0 && min < 50.0 + f64::from(dist == Distribution::Pareto) * 7.0);
        }
    }

    #[test]
    fn rate_queues_packets_behind_each_other() {
        let mut l = Links::new(
            2,
            Link {
                rate: Some(1_000_000),
                ..Link::default()
            },
        );
        let now = Instant::now();
        let mut last = now;
        for _ in 0..10 {
            match l.verdict(0, 1, 1_000, now, &mut rng()) {
                Verdict::Deliver(at) => last = at[0],
                v => panic!("{v:?}"),
            }
        }
        // 10 kB at 1 MB/s: the last leaves 10 ms after the first arrived.
        assert_eq!(last - now, Duration::from_millis(10));
    }
}
