//! Backoff for anti-entropy pulls from an empty store.
//!
//! A node with no per-node state (or an empty key space) still pulls, since
//! its empty digest is how it asks for what a peer has. In a cluster where
//! nobody stores anything, pulling every interval would be pure overhead,
//! so an empty store pulls on its 1st, 2nd, 4th, ... 32nd tick and then
//! every 32nd: a fresh node catches up at once, an idle one costs a small
//! datagram every half minute. Writers still push to empty peers every
//! interval, so this delays only pure-pull anti-entropy into empty nodes.

/// Ticks between pulls once fully backed off.
const MAX_GAP: u32 = 32;

/// Counts the sync ticks a store has been empty.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdlePulls {
    ticks: u32,
}

impl IdlePulls {
    /// A tick with the store empty: whether to pull on it.
    pub(crate) fn due(&mut self) -> bool {
        self.ticks = self.ticks.saturating_add(1);
        if self.ticks <= MAX_GAP {
            self.ticks.is_power_of_two()
        } else {
            self.ticks.is_multiple_of(MAX_GAP)
        }
    }

    /// The store holds something: if it empties again, start afresh.
    pub(crate) fn reset(&mut self) {
        self.ticks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulls_back_off_to_every_32nd_tick_and_restart_after_a_reset() {
        let mut idle = IdlePulls::default();
        let due: Vec<u32> = (1..=100).filter(|_| idle.due()).collect();
        assert_eq!(due.len(), 6 + 2); // 1 2 4 8 16 32, then 64 96
        idle.reset();
        assert!(idle.due(), "the first empty tick after a reset pulls");
    }
}
