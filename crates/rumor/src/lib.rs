//! The embeddable async rumor library (filled in by the networked-library issue).
pub use rumor_core as core;
