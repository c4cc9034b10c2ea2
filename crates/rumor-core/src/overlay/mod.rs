//! Partial membership for large clusters: a HyParView overlay
//! ([`hyparview`]) that keeps each node's view of the cluster to a few
//! neighbours, and Plumtree broadcast trees ([`plumtree`]) laid over it.
//!
//! Both are sans-IO state machines like [`crate::Node`]: messages and time
//! go in, messages to send and events come out. They are generic over the
//! peer identifier `P` (a name and address on the network, an index in the
//! simulator), so that the simulator can run 100,000 of them in one
//! process. The wire encoding of their messages and their place beside full
//! membership in `Node` (`membership = "partial"`) are not built yet; the
//! simulator drives them directly (`rumor-sim --experiment overlay`).

pub mod hyparview;
pub mod plumtree;

#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::hash::Hash;

use rand::Rng;

/// What identifies a peer of the overlay.
pub trait Peer: Clone + Eq + Hash + Ord + Debug {}

impl<T: Clone + Eq + Hash + Ord + Debug> Peer for T {}

/// Up to `k` distinct elements of `items` picked uniformly at random, in
/// random order, none equal to one in `skip`.
fn sample<P: Peer>(rng: &mut impl Rng, items: &[P], k: usize, skip: &[&P]) -> Vec<P> {
    let mut pool: Vec<&P> = items.iter().filter(|p| !skip.contains(p)).collect();
    let k = k.min(pool.len());
    for i in 0..k {
        let j = rng.random_range(i..pool.len());
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool.into_iter().cloned().collect()
}
