//! The epidemic model on its own: no membership, one rumor, synchronous
//! rounds, each node contacting `fanout` uniformly random peers per round by
//! push, pull or push-pull. Plain arrays, so 10^6 nodes take about a second.
//!
//! Theory (Pittel 1987; Karp et al. 2000), for comparison:
//! push needs about log_{1+f} N + (ln N)/f rounds; pull about
//! log_{1+f} N + ln ln N / ln(1+f); push-pull about log_{1+2f} N + ln ln N / ln(1+f)
//! (log3 N + ln ln N for f = 1).

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

/// How a contact spreads the rumor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Informed nodes send it to the peers they pick.
    Push,
    /// Uninformed nodes ask the peers they pick.
    Pull,
    /// Both.
    PushPull,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "push" => Ok(Mode::Push),
            "pull" => Ok(Mode::Pull),
            "push-pull" | "pushpull" | "push_pull" => Ok(Mode::PushPull),
            other => Err(format!(
                "unknown epidemic mode {other:?}: expected push, pull or push-pull"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
            Mode::PushPull => "push-pull",
        })
    }
}

/// The outcome of one epidemic run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpidemicResult {
    /// Nodes.
    pub nodes: usize,
    /// Mode.
    pub mode: Mode,
    /// Peers contacted per node per round.
    pub fanout: usize,
    /// The seed.
    pub seed: u64,
    /// Rounds until every node knew the rumor (or the cap was hit).
    pub rounds: usize,
    /// Whether everyone was reached.
    pub complete: bool,
    /// The theoretical estimate of `rounds`.
    pub theory_rounds: f64,
    /// Informed nodes after each round (index 0 = before the first round).
    pub informed: Vec<usize>,
    /// Messages sent (one per contact, plus one per pull answered with the rumor).
    pub messages: u64,
}

/// The theoretical number of rounds (see the module doc).
pub fn theory_rounds(n: usize, mode: Mode, fanout: usize) -> f64 {
    let n = n.max(2) as f64;
    let f = fanout.max(1) as f64;
    let lnln = n.ln().ln().max(0.0);
    match mode {
        Mode::Push => n.ln() / (1.0 + f).ln() + n.ln() / f,
        Mode::Pull => n.ln() / (1.0 + f).ln() + lnln / (1.0 + f).ln(),
        Mode::PushPull => n.ln() / (1.0 + 2.0 * f).ln() + lnln / (1.0 + f).ln(),
    }
}

fn peer(rng: &mut Xoshiro256PlusPlus, n: usize, me: usize) -> usize {
    let j = rng.random_range(0..n - 1);
    if j >= me {
        j + 1
    } else {
        j
    }
}

/// Spread one rumor from node 0 among `n` nodes.
pub fn run(n: usize, mode: Mode, fanout: usize, seed: u64) -> EpidemicResult {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let fanout = fanout.max(1);
    let theory = theory_rounds(n, mode, fanout);
    let cap = (10.0 * theory) as usize + 100;
    let mut informed = vec![false; n.max(1)];
    informed[0] = true;
    let mut count = 1usize;
    let mut history = vec![count];
    let mut messages = 0u64;
    let mut next = informed.clone();
    let mut rounds = 0;
    while count < n && rounds < cap {
        rounds += 1;
        for u in 0..n {
            let push = informed[u] && mode != Mode::Pull;
            let pull = !informed[u] && mode != Mode::Push;
            if !push && !pull {
                continue;
            }
            for _ in 0..fanout {
                let v = peer(&mut rng, n, u);
                messages += 1;
                if push {
                    next[v] = true;
                }
                if pull && informed[v] {
                    messages += 1;
                    next[u] = true;
                }
            }
        }
        informed.copy_from_slice(&next);
        count = informed.iter().filter(|&&b| b).count();
        history.push(count);
    }
    EpidemicResult {
        nodes: n,
        mode,
        fanout,
        seed,
        rounds,
        complete: count >= n,
        theory_rounds: theory,
        informed: history,
        messages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_track_theory() {
        for mode in [Mode::Push, Mode::Pull, Mode::PushPull] {
            for fanout in 1..=4 {
                let r = run(1000, mode, fanout, 7);
                assert!(r.complete, "{mode} {fanout}");
                let t = r.theory_rounds;
                assert!(
                    (r.rounds as f64) > 0.4 * t && (r.rounds as f64) < 2.5 * t + 3.0,
                    "{mode} f={fanout}: {} rounds vs theory {t:.1}",
                    r.rounds
                );
                assert_eq!(r, run(1000, mode, fanout, 7));
            }
        }
        // Push-pull beats push.
        assert!(run(10_000, Mode::PushPull, 1, 1).rounds < run(10_000, Mode::Push, 1, 1).rounds);
        assert!("bogus".parse::<Mode>().is_err());
    }
}
