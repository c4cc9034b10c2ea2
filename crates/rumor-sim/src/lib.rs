//! The rumor simulator (filled in by the simulator issue).
pub use rumor_core as core;
