//! Push-sum on its own: rumor-core's aggregation exchange
//! ([`Aggregates`]: rounds, retransmission, exactly-once receipt, acks,
//! epochs) at every node, with no membership. Synchronous rounds: each live
//! node runs one round with a uniformly random peer, its transfer goes
//! through the real codec (so bytes are real encoded sizes) and may be lost,
//! the receiver takes it in and acknowledges it, and the ack may be lost.
//! As in a cluster, nodes tick at their own phases (a fixed random order
//! within the round: a node's timer is jittered once, then periodic) and a
//! transfer and its ack arrive well within a round, so mass received before
//! a node's tick moves on in the same round.
//! Plain arrays, so 10^5 nodes fit in well under a gigabyte.
//!
//! Node 0 tracks the aggregate `load` at round 0 (the others join when
//! their first transfer arrives, with their own value) and leads the epochs.
//! Node `i` holds the value `i + 1`. Crashed nodes (never node 0) stop at
//! `crash_round`; `detect_rounds` later every node knows, as a failure
//! detector would tell it, so transfers pending to them are taken back and
//! they are no longer picked.
//!
//! Theory (Kempe, Dobra, Gehrke 2003): every node is within relative error
//! ε of the true average after O(log N + log 1/ε) rounds.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rumor_core::aggregate::Aggregates;
use rumor_core::codec::{decode, encode_packet};
use rumor_core::message::Message;
use serde::Serialize;

use crate::{name_index, node_name};

/// The aggregate's name.
const LOAD: &str = "load";

/// What one run does.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Options {
    /// Nodes.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Probability that a datagram (transfer or ack) is lost, in [0, 1).
    pub loss: f64,
    /// Fraction of the nodes that crash (node 0 excepted), in [0, 1).
    pub crash: f64,
    /// The round at which they crash.
    pub crash_round: usize,
    /// Rounds from the crash until every node knows of it.
    pub detect_rounds: usize,
    /// Rounds per epoch.
    pub epoch_rounds: usize,
    /// Epochs run (the first starts when node 0 begins tracking).
    pub epochs: usize,
    /// End a single-epoch run once every node is within 1e-6.
    pub stop_at_1e6: bool,
}

impl Options {
    /// One lossless epoch of 400 rounds without crashes, stopping at 1e-6.
    pub fn new(nodes: usize, seed: u64) -> Options {
        Options {
            nodes,
            seed,
            loss: 0.0,
            crash: 0.0,
            crash_round: 0,
            detect_rounds: 25,
            epoch_rounds: 400,
            epochs: 1,
            stop_at_1e6: true,
        }
    }
}

/// One epoch's convergence, as seen by every live node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochResult {
    /// The epoch.
    pub epoch: u64,
    /// Rounds from the epoch's start until every live node was in the
    /// epoch with `s / w` within 1e-3 of the live nodes' true average.
    pub rounds_1e3: Option<usize>,
    /// The same for 1e-6.
    pub rounds_1e6: Option<usize>,
    /// The worst relative error at the epoch's last round run.
    pub final_error: f64,
}

/// The outcome of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PushSumResult {
    /// What was run.
    pub options: Options,
    /// Nodes crashed.
    pub crashed: usize,
    /// Rounds run.
    pub rounds: usize,
    /// Per epoch.
    pub epochs: Vec<EpochResult>,
    /// Transfer datagrams sent (retransmissions included).
    pub transfers: u64,
    /// Ack datagrams sent.
    pub acks: u64,
    /// Encoded bytes of transfers and acks sent, per live node per round.
    pub bytes_per_node_per_round: f64,
    /// Largest relative error of the total mass (held, plus the values of
    /// nodes not yet tracking) over all rounds; measured only without loss
    /// and crashes, in the first epoch.
    pub mass_error: Option<f64>,
    /// Worst relative error over live nodes after each round (infinite
    /// while some live node is not yet tracking or in the epoch).
    pub error: Vec<f64>,
}

fn value(i: usize) -> f64 {
    (i + 1) as f64
}

/// A uniformly random peer other than `me`, not known to be dead.
fn pick(rng: &mut Xoshiro256PlusPlus, n: usize, me: usize, known_dead: &[bool]) -> Option<usize> {
    if n < 2 {
        return None;
    }
    for _ in 0..64 {
        let j = rng.random_range(0..n - 1);
        let j = if j >= me { j + 1 } else { j };
        if !known_dead[j] {
            return Some(j);
        }
    }
    None
}

/// Node `v` takes in the datagram `packet`, as its node would: decoded,
/// each transfer accepted; returns the encoded ack (`None`: undecodable).
fn take_in(node: &mut Aggregates, v: usize, packet: &[u8], names: &[Arc<str>]) -> Option<Vec<u8>> {
    let decoded = decode(packet).ok()?;
    let mut ack = None;
    for msg in decoded.messages {
        let Message::Aggregate {
            sender,
            epoch,
            seq,
            shares,
        } = msg
        else {
            continue;
        };
        // The sender's shared name, as a node keeps one per member.
        let Some(sender) = name_index(&sender).and_then(|i| names.get(i)) else {
            continue;
        };
        let leader = if node.epoch() == 0 {
            v == 0
        } else {
            node.leading()
        };
        node.accept(sender, epoch, seq, &shares, |_| Some(value(v)), leader);
        ack = Some(encode_packet(&Message::AggregateAck { epoch, seq }));
    }
    ack
}

/// Run push-sum as `o` says.
pub fn run(o: &Options) -> PushSumResult {
    let n = o.nodes.max(1);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(o.seed);
    let names: Vec<Arc<str>> = (0..n).map(|i| Arc::from(node_name(i))).collect();
    let mut nodes: Vec<Aggregates> = (0..n).map(|_| Aggregates::default()).collect();
    let mut alive = vec![true; n];
    let mut known_dead = vec![false; n];
    let mut crashed = Vec::new();
    // Node 0 is the leader (smallest name) and tracks first.
    let _ = nodes[0].track(LOAD, Some(value(0)), true);
    let total_values: f64 = (0..n).map(value).sum();
    let lossless = o.loss <= 0.0 && o.crash <= 0.0;
    let mut mass_error: Option<f64> = lossless.then_some(0.0);
    let (mut transfers, mut acks, mut bytes, mut node_rounds) = (0u64, 0u64, 0u64, 0u64);
    let mut epochs: Vec<EpochResult> = Vec::new();
    let mut error = Vec::new();
    // Each node's timer phase: a fixed random order of ticks within a round.
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let epoch_rounds = o.epoch_rounds.max(1);
    let total_rounds = epoch_rounds * o.epochs.max(1);
    let mut round = 0;
    while round < total_rounds {
        let epoch = (round / epoch_rounds) as u64;
        if round % epoch_rounds == 0 {
            if epoch > 0 {
                nodes[0].begin_epoch(epoch, true, |_| Some(value(0)));
            }
            epochs.push(EpochResult {
                epoch,
                rounds_1e3: None,
                rounds_1e6: None,
                final_error: f64::INFINITY,
            });
        }
        if round == o.crash_round && o.crash > 0.0 && n > 1 {
            let k = ((o.crash * n as f64).round() as usize).clamp(1, n - 1);
            while crashed.len() < k {
                let i = rng.random_range(1..n);
                if alive[i] {
                    alive[i] = false;
                    crashed.push(i);
                }
            }
        }
        if !crashed.is_empty() && round == o.crash_round + o.detect_rounds {
            for &i in &crashed {
                known_dead[i] = true;
            }
        }
        // Each live node's tick, at its own phase in the round; the transfer
        // and its ack arrive well within the round.
        for &u in &order {
            if !alive[u] {
                continue;
            }
            node_rounds += 1;
            let peer = || pick(&mut rng, n, u, &known_dead).map(|j| names[j].clone());
            let gone = |to: &str| name_index(to).is_some_and(|j| known_dead[j]);
            let Some(t) = nodes[u].round(peer, gone) else {
                continue;
            };
            let Some(v) = name_index(&t.to).filter(|&v| v < n) else {
                continue;
            };
            let packet = encode_packet(&Message::Aggregate {
                sender: names[u].clone(),
                epoch: t.epoch,
                seq: t.seq,
                shares: t.shares,
            });
            transfers += 1;
            bytes += packet.len() as u64;
            if rng.random_bool(o.loss) || !alive[v] {
                continue;
            }
            let Some(ack) = take_in(&mut nodes[v], v, &packet, &names) else {
                continue;
            };
            acks += 1;
            bytes += ack.len() as u64;
            if rng.random_bool(o.loss) {
                continue;
            }
            if let Ok(d) = decode(&ack) {
                for m in d.messages {
                    if let Message::AggregateAck { epoch, seq } = m {
                        nodes[u].acknowledged(epoch, seq);
                    }
                }
            }
        }
        // Measure.
        let live: Vec<usize> = (0..n).filter(|&i| alive[i]).collect();
        let truth = live.iter().map(|&i| value(i)).sum::<f64>() / live.len() as f64;
        let worst = live
            .iter()
            .map(|&i| match nodes[i].share(LOAD) {
                Some(s) if s.w > 0.0 && nodes[i].epoch() == epoch => {
                    (s.s / s.w - truth).abs() / truth.abs()
                }
                _ => f64::INFINITY,
            })
            .fold(0.0, f64::max);
        error.push(worst);
        if let Some(m) = mass_error.as_mut().filter(|_| epoch == 0) {
            let held: f64 = (0..n)
                .map(|i| nodes[i].share(LOAD).map_or(value(i), |s| s.s))
                .sum::<f64>()
                + (0..n)
                    .filter_map(|i| nodes[i].in_flight())
                    .flat_map(|t| t.shares.iter().map(|(_, s)| s.s))
                    .sum::<f64>();
            *m = m.max((held - total_values).abs() / total_values);
        }
        let since = round % epoch_rounds + 1;
        if let Some(e) = epochs.last_mut() {
            e.final_error = worst;
            if worst <= 1e-3 && e.rounds_1e3.is_none() {
                e.rounds_1e3 = Some(since);
            }
            if worst <= 1e-6 && e.rounds_1e6.is_none() {
                e.rounds_1e6 = Some(since);
            }
        }
        round += 1;
        if o.stop_at_1e6 && o.epochs <= 1 && worst <= 1e-6 {
            break;
        }
    }
    PushSumResult {
        options: o.clone(),
        crashed: crashed.len(),
        rounds: round,
        epochs,
        transfers,
        acks,
        bytes_per_node_per_round: bytes as f64 / node_rounds.max(1) as f64,
        mass_error,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_push_sum_conserves_mass_and_converges() {
        for n in [2, 50, 300] {
            let r = run(&Options::new(n, 3));
            let m = r.mass_error.unwrap();
            assert!(m < 1e-12, "N={n}: mass error {m:e}");
            let r6 = r.epochs[0].rounds_1e6.expect("reached 1e-6");
            let bound = 3.0 * ((n as f64).log2() + 1e6f64.log2());
            assert!((r6 as f64) < bound, "N={n}: {r6} rounds, bound {bound:.0}");
            assert!(r.epochs[0].rounds_1e3 <= Some(r6));
            assert_eq!(
                r.transfers, r.acks,
                "every transfer applied and acknowledged once"
            );
            assert_eq!(r, run(&Options::new(n, 3)), "deterministic");
        }
    }

    #[test]
    fn with_loss_and_a_crash_the_next_epoch_converges_for_survivors() {
        let o = Options {
            loss: 0.05,
            crash: 0.05,
            crash_round: 40,
            epoch_rounds: 100,
            epochs: 2,
            ..Options::new(200, 1)
        };
        let r = run(&o);
        assert_eq!(r.crashed, 10);
        assert!(r.mass_error.is_none());
        assert!(r.transfers > r.acks, "lost transfers are retransmitted");
        let next = &r.epochs[1];
        assert!(next.rounds_1e6.is_some(), "{next:?}");
        assert!(next.final_error < 1e-9, "{next:?}");
    }
}
