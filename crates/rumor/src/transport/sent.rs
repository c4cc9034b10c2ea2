//! A short memory of the datagrams this node sent, per destination, so that
//! an ICMP "port unreachable" is believed only when it quotes one of them.
//!
//! An ICMP error carries the head of the datagram it answers, and Linux
//! hands that back with the error (`MSG_ERRQUEUE`): the UDP payload, up to
//! 520 bytes over IPv4 (576 bytes of ICMP less the headers) and 1,184 over
//! IPv6, from Linux and the BSDs alike. For each destination the log keeps
//! a keyed hash of the first [`QUOTE_CHECKED`] bytes of the last
//! [`PER_DESTINATION`] datagrams; a refusal matches if its quote hashes to
//! one of them. Forging one then takes the bytes of a datagram we really
//! sent to that address: in an encrypted cluster they hold a random nonce,
//! so only an attacker who saw the packet can; in a plaintext cluster they
//! are guessable, but not cheaply. A quote shorter than what was hashed
//! (a router quoting only 8 bytes, say) matches nothing, and the node falls
//! back on its probe timeouts, the safe side.
//!
//! The log is bounded: [`MAX_DESTINATIONS`] destinations, the oldest
//! forgotten first; about 24 bytes per datagram remembered.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

/// Bytes of a datagram's head that a quote must reproduce.
pub(crate) const QUOTE_CHECKED: usize = 512;

/// Datagrams remembered per destination.
pub(crate) const PER_DESTINATION: usize = 8;

/// Destinations remembered.
pub(crate) const MAX_DESTINATIONS: usize = 4096;

/// The fingerprint of a datagram's head; `len` 0 is an empty slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Print {
    len: u16,
    hash: u64,
}

#[derive(Debug, Default)]
struct Recent {
    prints: [Print; PER_DESTINATION],
    next: usize,
}

/// The datagrams sent lately, per destination.
#[derive(Debug)]
pub(crate) struct SentLog {
    /// Random keys: the hashes cannot be computed (or collided) off-node.
    keys: RandomState,
    recent: HashMap<SocketAddr, Recent>,
    /// Destinations in the order they were first remembered.
    order: VecDeque<SocketAddr>,
    max_destinations: usize,
}

impl Default for SentLog {
    fn default() -> Self {
        SentLog::new(MAX_DESTINATIONS)
    }
}

impl SentLog {
    /// A log remembering at most `max_destinations` destinations.
    pub(crate) fn new(max_destinations: usize) -> Self {
        SentLog {
            keys: RandomState::new(),
            recent: HashMap::new(),
            order: VecDeque::new(),
            max_destinations: max_destinations.max(1),
        }
    }

    fn print(&self, head: &[u8]) -> Print {
        let mut h = self.keys.build_hasher();
        h.write(head);
        Print {
            len: head.len() as u16,
            hash: h.finish(),
        }
    }

    /// Remember that `datagram` was sent to `to`.
    pub(crate) fn record(&mut self, to: SocketAddr, datagram: &[u8]) {
        if datagram.is_empty() {
            return;
        }
        let print = self.print(&datagram[..datagram.len().min(QUOTE_CHECKED)]);
        if !self.recent.contains_key(&to) {
            while self.recent.len() >= self.max_destinations {
                match self.order.pop_front() {
                    Some(old) => {
                        self.recent.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(to);
        }
        let r = self.recent.entry(to).or_default();
        r.prints[r.next] = print;
        r.next = (r.next + 1) % PER_DESTINATION;
    }

    /// Whether `quoted`, the head of a datagram an ICMP error says `to`
    /// refused, is the head of one we sent to `to` lately.
    pub(crate) fn matches(&self, to: SocketAddr, quoted: &[u8]) -> bool {
        let Some(r) = self.recent.get(&to) else {
            return false;
        };
        r.prints.iter().any(|p| {
            let n = usize::from(p.len);
            n > 0 && quoted.len() >= n && self.print(&quoted[..n]) == *p
        })
    }

    /// Destinations remembered now.
    #[cfg(test)]
    fn destinations(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_quote_of_a_datagram_sent_there_matches() {
        let mut log = SentLog::default();
        let short = b"ping #1 to b".to_vec();
        let long: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
        log.record(addr(2), &short);
        log.record(addr(2), &long);
        assert!(log.matches(addr(2), &short));
        // The kernel quotes a head; 512 bytes or more of it is enough.
        assert!(log.matches(addr(2), &long[..520]));
        assert!(log.matches(addr(2), &long[..QUOTE_CHECKED]));
    }

    #[test]
    fn forged_or_misdirected_quotes_do_not_match() {
        let mut log = SentLog::default();
        let sent = b"\xb1\x00nonce-and-ciphertext".to_vec();
        log.record(addr(2), &sent);
        let mut altered = sent.clone();
        altered[5] ^= 1;
        assert!(!log.matches(addr(2), &altered), "other bytes");
        assert!(!log.matches(addr(3), &sent), "sent elsewhere");
        assert!(!log.matches(addr(2), &sent[..8]), "too short a quote");
        assert!(!log.matches(addr(2), b""), "an empty quote");
        assert!(!log.matches(addr(4), b""), "nothing sent there");
    }

    #[test]
    fn only_the_last_few_per_destination_are_kept() {
        let mut log = SentLog::default();
        for i in 0..PER_DESTINATION as u32 + 1 {
            log.record(addr(2), &i.to_be_bytes());
        }
        assert!(
            !log.matches(addr(2), &0u32.to_be_bytes()),
            "the oldest went"
        );
        assert!(log.matches(addr(2), &1u32.to_be_bytes()));
        assert!(log.matches(addr(2), &(PER_DESTINATION as u32).to_be_bytes()));
    }

    #[test]
    fn destinations_are_bounded_oldest_forgotten_first() {
        let mut log = SentLog::new(3);
        for port in 1..=5 {
            log.record(addr(port), b"hello");
        }
        assert_eq!(log.destinations(), 3);
        assert!(!log.matches(addr(1), b"hello"));
        assert!(!log.matches(addr(2), b"hello"));
        assert!(log.matches(addr(5), b"hello"));
        // Sending again to a known destination does not grow the log.
        log.record(addr(5), b"again");
        assert_eq!(log.destinations(), 3);
        assert!(log.matches(addr(3), b"hello"));
    }

    /// The cost of remembering a datagram, for the record:
    /// `cargo test --release -p rumor --lib sent_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sent_cost() {
        let mut log = SentLog::default();
        let packet = vec![0xB1u8; 1400];
        let rounds = 1_000_000u32;
        let t0 = std::time::Instant::now();
        for i in 0..rounds {
            log.record(addr((i % 1000) as u16 + 1), &packet);
        }
        let per = t0.elapsed().as_nanos() as f64 / f64::from(rounds);
        println!("record: {per:.0} ns per 1,400-byte datagram (1,000 destinations)");
        let t0 = std::time::Instant::now();
        let mut hits = 0;
        for i in 0..rounds {
            hits += usize::from(log.matches(addr((i % 1000) as u16 + 1), &packet[..520]));
        }
        let per = t0.elapsed().as_nanos() as f64 / f64::from(rounds);
        println!("match: {per:.0} ns per quote ({hits} hits)");
    }
}
