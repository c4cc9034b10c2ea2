//! rumor's multi-host testbed: network namespaces joined by a userspace link
//! emulator (this kernel has no `netem`), rumor agents on them, a seeded
//! nemesis and a checker. See the crate's README.

pub mod agents;
pub mod check;
pub mod compare;
pub mod emulator;
pub mod hosts;
pub mod http;
pub mod link;
pub mod members;
pub mod nemesis;
pub mod netns;
pub mod run;
pub mod selftest;
pub mod tun;
pub mod workload;
