//! Sockets: one UDP socket for probes and gossip ([`udp`]), one TCP
//! listener and short-lived connections for stream messages ([`tcp`]).

pub(crate) mod icmp;
pub(crate) mod tcp;
pub(crate) mod udp;
