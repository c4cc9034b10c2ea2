//! The design budget of dissemination: how long a fresh update should take
//! to reach every member under the configured gossip parameters, to set
//! beside the measured latency (a measurement above it means loss, an
//! overloaded node or parameters that no longer fit the cluster's size).
//!
//! Two estimates, both for `n` members:
//!
//! - **classic**: push gossip on ticks only. Each tick every holder sends
//!   the update to `k = gossip_nodes` random members; Pittel's bound for
//!   push gossip with fanout `k` is `log_{k+1} n + ln n / k` rounds, one
//!   round per `gossip_interval` (the often quoted `log n / (k·f)` for
//!   gossip rate `f` is its second term).
//! - **eager** (rumor's, with `eager_forward`): a member that learns a
//!   fresh update forwards it at once to `f` members (`eager_fanout`, grown
//!   with `ln n`), so the update spreads in a wave whose hops cost a one-way
//!   latency, not a tick. Reaching all but `n·e^-f` members takes about
//!   `log_f n` hops while the wave grows, plus one as it saturates; eager
//!   rounds are at most one per quarter tick, so a hop waits up to
//!   `gossip_interval / 4` when updates come in bursts. Budget:
//!   `(ceil(log_f n) + 1) · (one_way + gossip_interval / 4)`; in a quiet
//!   cluster (no eager round in the last quarter tick anywhere) the same
//!   hops cost one-way latencies only (`wave`). The members a wave misses
//!   (about 5 % of waves miss one) get the update at a later tick, which
//!   the 99th percentile of per-member latencies leaves out.
//!
//! Checked against the simulator (LAN, one-way 0.2–0.8 ms; kv writes,
//! `docs/operations.md`, "Propagation budget"): at 10 writes/s the mean
//! time for 99 % of the nodes to hold a write is 2 ms at n = 100 and
//! 1,000 (wave: 4 hops, 2 ms); at 100 writes/s, where eager rounds are
//! paced, 93 ms and 109 ms (budget 202 ms at both sizes).

use std::time::Duration;

use crate::Config;

/// How long an update should take to reach every member, by two estimates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PropagationBudget {
    /// The members it was computed for.
    pub members: usize,
    /// Push gossip on ticks only (see the module docs).
    pub classic: Duration,
    /// Eager forwarding's wave with its pacing: the budget (the classic
    /// estimate when eager forwarding is off).
    pub eager: Duration,
    /// The same wave in a quiet cluster: hops of one-way latency only.
    pub wave: Duration,
    /// Hops the eager estimate counts (0 when eager forwarding is off).
    pub eager_hops: u32,
    /// Members each eager round sends to.
    pub eager_fanout: usize,
}

impl PropagationBudget {
    /// The budget rumor's own dissemination should meet: the eager wave's
    /// when eager forwarding is on, else the classic one.
    pub fn expected(&self) -> Duration {
        self.eager
    }
}

/// Members an eager round sends to in a cluster of `n` live members:
/// `eager_fanout`, or `ceil(ln n) + 3` when that is more. A wave with fanout
/// `f` misses each member with probability about `e^-f`, so `n·e^-f`
/// members per wave; growing `f` with `ln n` keeps that near 5 % of waves
/// missing anyone (n = 128: 8, n = 1,000: 10) instead of 27 % and 92 %
/// with 6.
pub fn eager_fanout(config: &Config, n: usize) -> usize {
    let by_size = (n.max(1) as f64).ln().ceil() as usize + 3;
    config.eager_fanout.max(by_size)
}

/// The budget for `n` members, with `one_way` the latency of one hop (half
/// a probe round trip; zero if unknown).
pub fn propagation_budget(config: &Config, n: usize, one_way: Duration) -> PropagationBudget {
    let tick = config.gossip_interval;
    let k = config.gossip_nodes.max(1) as f64;
    let ln_n = (n.max(1) as f64).ln();
    let classic_rounds = if n <= 1 {
        0.0
    } else {
        ln_n / (k + 1.0).ln() + ln_n / k
    };
    let classic = tick.mul_f64(classic_rounds);
    let fanout = eager_fanout(config, n);
    let eager_hops = if !config.eager_forward || n <= 1 {
        0
    } else {
        (ln_n / (fanout as f64).ln()).ceil() as u32 + 1
    };
    let (eager, wave) = if config.eager_forward {
        ((one_way + tick / 4) * eager_hops, one_way * eager_hops)
    } else {
        (classic, classic)
    };
    PropagationBudget {
        members: n,
        classic,
        eager,
        wave,
        eager_hops,
        eager_fanout: fanout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn lan_budgets_grow_with_the_cluster() {
        let c = Config::lan();
        let one_way = Duration::from_micros(500);
        let b64 = propagation_budget(&c, 64, one_way);
        // f = max(6, ceil(ln 64) + 3) = 8; log_8 64 = 2 hops, + 1.
        assert_eq!((b64.eager_fanout, b64.eager_hops), (8, 3));
        assert_eq!(ms(b64.eager), 151); // 3 × (0.5 + 50) ms
        assert_eq!(b64.wave, Duration::from_micros(1500));
        // log_4 64 + ln 64 / 3 = 3 + 1.386 rounds of 200 ms.
        assert_eq!(ms(b64.classic), 877);
        let b1000 = propagation_budget(&c, 1000, one_way);
        assert_eq!((b1000.eager_fanout, b1000.eager_hops), (10, 4));
        assert!(b1000.eager > b64.eager && b1000.classic > b64.classic);
        assert!(b1000.eager < b1000.classic);
    }

    #[test]
    fn without_eager_forwarding_the_budget_is_the_classic_one() {
        let mut c = Config::lan();
        c.eager_forward = false;
        let b = propagation_budget(&c, 100, Duration::ZERO);
        assert_eq!(
            (b.expected(), b.wave, b.eager_hops),
            (b.classic, b.classic, 0)
        );
    }

    #[test]
    fn a_lone_node_has_nothing_to_spread() {
        let c = Config::wan();
        let b = propagation_budget(&c, 1, Duration::from_millis(50));
        assert_eq!(
            (b.classic, b.eager, b.wave),
            (Duration::ZERO, Duration::ZERO, Duration::ZERO)
        );
        let b0 = propagation_budget(&c, 0, Duration::ZERO);
        assert_eq!(b0.expected(), Duration::ZERO);
    }
}
