//! # rumor-sim
//!
//! A deterministic discrete-event simulator for clusters of unmodified
//! [`rumor_core`] nodes. A virtual clock and one event queue (ordered by
//! time, then by insertion sequence) drive every node through the sans-IO
//! API; a modelled network adds latency, loss, asymmetric loss and
//! partitions; faults crash, restart, pause and slow nodes. Each run measures
//! dissemination, detection, false positives and cost, and checks the
//! protocol invariants of the design (completeness, accuracy, convergence,
//! incarnation monotonicity). The same seed replays byte for byte.
//!
//! ```
//! use rumor_sim::{scenario::Scenario, engine::Simulation};
//! let scenario = Scenario::builtin("crash", 8, 1).unwrap();
//! let result = Simulation::new(&scenario, 1).unwrap().run();
//! assert!(result.violations.is_empty(), "{:?}", result.violations);
//! ```
//!
//! Modules, one concept each: [`network`] (the link model), [`clock`]
//! (per-node wall clocks: offsets and jumps), [`faults`]
//! (what can go wrong), [`scenario`] (what a run does, builder and TOML),
//! [`hostile`] (a sender outside the cluster that lies), [`engine`] (the event loop), [`metrics`] (what a run measures),
//! [`invariants`] (what must hold), [`report`] (the summary, CSV), [`plots`]
//! (PNG figures), [`epidemic`] (the cheap rumor-only model), [`pushsum`]
//! (the cheap aggregation-only model, rumor-core's push-sum exchange without
//! membership) and [`cli`] (the command line).

#![warn(missing_docs)]

pub mod cli;
pub mod clock;
pub mod engine;
pub mod epidemic;
pub mod event_queue;
pub mod experiments;
pub mod faults;
pub mod healing;
pub mod hostile;
pub mod invariants;
pub mod metrics;
pub mod network;
pub mod overlay;
pub mod overlay_runs;
pub mod plots;
pub mod pushsum;
pub mod report;
pub mod scenario;
pub mod workload;

pub use rumor_core as core;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Simulated time in microseconds since the start of the run.
pub type Micros = u64;

/// Microseconds in one second.
pub const SECOND: Micros = 1_000_000;

/// Seconds (possibly fractional) as [`Micros`], clamped at zero.
pub fn secs(s: f64) -> Micros {
    if s.is_finite() && s > 0.0 {
        (s * SECOND as f64).round() as Micros
    } else {
        0
    }
}

/// [`Micros`] as fractional seconds.
pub fn to_secs(t: Micros) -> f64 {
    t as f64 / SECOND as f64
}

/// The name of simulated node `index`.
pub fn node_name(index: usize) -> String {
    format!("n{index}")
}

/// The index of a simulated node from its name, if it is one.
pub fn name_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

const ADDR_BASE: u32 = 0x0A00_0001; // 10.0.0.1
const PORT: u16 = 7946;

/// The synthetic address of simulated node `index` (10.x.y.z:7946). These
/// addresses only label nodes inside the simulator; nothing is ever sent to them.
pub fn node_addr(index: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(ADDR_BASE.wrapping_add(index as u32));
    SocketAddr::V4(SocketAddrV4::new(ip, PORT))
}

/// The index of the simulated node at `addr`, if any.
pub fn addr_index(addr: SocketAddr, nodes: usize) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == PORT => {
            let i = u32::from(*v4.ip()).checked_sub(ADDR_BASE)? as usize;
            (i < nodes).then_some(i)
        }
        _ => None,
    }
}

/// A 64-bit mix of a seed and a salt, for deriving independent RNG seeds.
pub fn mix_seed(seed: u64, salt: u64) -> u64 {
    // splitmix64 finaliser over the combined value.
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 255, 256, 70_000, 999_999] {
            assert_eq!(addr_index(node_addr(i), 1_000_000), Some(i));
            assert_eq!(name_index(&node_name(i)), Some(i));
        }
        assert_eq!(addr_index(node_addr(5), 5), None);
    }
}

/// A small, fast, deterministic hasher for integer keys (node indices);
/// the simulator's maps never see untrusted keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        let z = self.0 ^ (self.0 >> 29);
        z.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (z >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(26) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
