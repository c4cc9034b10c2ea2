//! A short memory of the datagrams this node sent lately, so that an ICMP
//! "port unreachable" is believed only when it quotes one of them.
//!
//! An ICMP error carries the head of the datagram it answers, and Linux
//! hands that back with the error (`MSG_ERRQUEUE`): the UDP payload, up to
//! 520 bytes over IPv4 (576 bytes of ICMP less the headers) and 1,184 over
//! IPv6, from Linux and the BSDs alike. The log keeps a keyed hash of the
//! first [`QUOTE_CHECKED`] bytes of each datagram sent in the last
//! [`WINDOW`], at most [`MAX_REMEMBERED`] of them; a refusal matches if its
//! quote hashes to one of the last [`PER_DESTINATION`] sent to its address.
//! Forging one then takes the bytes of a datagram we really sent to that
//! address: in an encrypted cluster they hold a random nonce, so only an
//! attacker who saw the packet can; in a plaintext cluster they are
//! guessable, but not cheaply. A quote shorter than what was hashed (a
//! router quoting only 8 bytes, say), or one answering a datagram older
//! than the window, matches nothing, and the node falls back on its probe
//! timeouts, the safe side.
//!
//! An ICMP error answers within a round trip, so the log holds what the
//! node sent in a few seconds, whatever the cluster's size: a node of 1,000
//! members used to keep eight prints for each of them (about 200 KB), now
//! a few dozen entries in steady state and at most 64 bytes each.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes of a datagram's head that a quote must reproduce.
pub(crate) const QUOTE_CHECKED: usize = 512;

/// Datagrams to one destination a quote is compared with, newest first.
pub(crate) const PER_DESTINATION: usize = 8;

/// How long a datagram sent is remembered.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);

/// Datagrams remembered at most, the oldest forgotten first.
pub(crate) const MAX_REMEMBERED: usize = 512;

/// The fingerprint of a datagram's head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Print {
    len: u16,
    hash: u64,
}

/// One datagram remembered.
#[derive(Debug)]
struct Sent {
    to: SocketAddr,
    print: Print,
    at: Instant,
}

/// The datagrams sent lately, oldest first.
#[derive(Debug)]
pub(crate) struct SentLog {
    /// Random keys: the hashes cannot be computed (or collided) off-node.
    keys: RandomState,
    recent: VecDeque<Sent>,
    window: Duration,
    max: usize,
}

impl Default for SentLog {
    fn default() -> Self {
        SentLog::new(WINDOW, MAX_REMEMBERED)
    }
}

impl SentLog {
    /// A log remembering the datagrams of the last `window`, at most `max`.
    pub(crate) fn new(window: Duration, max: usize) -> Self {
        SentLog {
            keys: RandomState::new(),
            recent: VecDeque::new(),
            window,
            max: max.max(1),
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

    /// Remember that `datagram` was sent to `to` at `now`.
    pub(crate) fn record(&mut self, now: Instant, to: SocketAddr, datagram: &[u8]) {
        if datagram.is_empty() {
            return;
        }
        while self.recent.front().is_some_and(|s| {
            self.recent.len() >= self.max || now.saturating_duration_since(s.at) > self.window
        }) {
            self.recent.pop_front();
        }
        let print = self.print(&datagram[..datagram.len().min(QUOTE_CHECKED)]);
        self.recent.push_back(Sent { to, print, at: now });
    }

    /// Whether `quoted`, the head of a datagram an ICMP error says `to`
    /// refused, is the head of one we sent to `to` lately.
    pub(crate) fn matches(&self, to: SocketAddr, quoted: &[u8]) -> bool {
        self.recent
            .iter()
            .rev()
            .filter(|s| s.to == to)
            .take(PER_DESTINATION)
            .any(|s| {
                let n = usize::from(s.print.len);
                quoted.len() >= n && self.print(&quoted[..n]) == s.print
            })
    }

    /// Datagrams remembered now.
    #[cfg(test)]
    fn remembered(&self) -> usize {
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
        let now = Instant::now();
        let short = b"ping #1 to b".to_vec();
        let long: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
        log.record(now, addr(2), &short);
        log.record(now, addr(2), &long);
        assert!(log.matches(addr(2), &short));
        // The kernel quotes a head; 512 bytes or more of it is enough.
        assert!(log.matches(addr(2), &long[..520]));
        assert!(log.matches(addr(2), &long[..QUOTE_CHECKED]));
    }

    #[test]
    fn forged_or_misdirected_quotes_do_not_match() {
        let mut log = SentLog::default();
        let sent = b"\xb1\x00nonce-and-ciphertext".to_vec();
        log.record(Instant::now(), addr(2), &sent);
        let mut altered = sent.clone();
        altered[5] ^= 1;
        assert!(!log.matches(addr(2), &altered), "other bytes");
        assert!(!log.matches(addr(3), &sent), "sent elsewhere");
        assert!(!log.matches(addr(2), &sent[..8]), "too short a quote");
        assert!(!log.matches(addr(2), b""), "an empty quote");
        assert!(!log.matches(addr(4), b""), "nothing sent there");
    }

    #[test]
    fn only_the_last_few_per_destination_are_compared() {
        let mut log = SentLog::default();
        let now = Instant::now();
        for i in 0..PER_DESTINATION as u32 + 1 {
            log.record(now, addr(2), &i.to_be_bytes());
            log.record(now, addr(3), b"elsewhere");
        }
        assert!(
            !log.matches(addr(2), &0u32.to_be_bytes()),
            "the oldest went"
        );
        assert!(log.matches(addr(2), &1u32.to_be_bytes()));
        assert!(log.matches(addr(2), &(PER_DESTINATION as u32).to_be_bytes()));
    }

    #[test]
    fn datagrams_older_than_the_window_are_forgotten() {
        let mut log = SentLog::default();
        let t0 = Instant::now();
        log.record(t0, addr(1), b"old");
        log.record(t0 + WINDOW, addr(2), b"recent");
        assert!(log.matches(addr(1), b"old"), "still within the window");
        log.record(t0 + WINDOW + Duration::from_millis(1), addr(3), b"new");
        assert!(!log.matches(addr(1), b"old"));
        assert!(log.matches(addr(2), b"recent"));
        assert_eq!(log.remembered(), 2);
    }

    #[test]
    fn the_log_is_bounded_oldest_forgotten_first() {
        let mut log = SentLog::new(WINDOW, 3);
        let now = Instant::now();
        for port in 1..=5 {
            log.record(now, addr(port), b"hello");
        }
        assert_eq!(log.remembered(), 3);
        assert!(!log.matches(addr(1), b"hello"));
        assert!(!log.matches(addr(2), b"hello"));
        assert!(log.matches(addr(3), b"hello"));
        assert!(log.matches(addr(5), b"hello"));
    }

    /// The cost of remembering a datagram, for the record:
    /// `cargo test --release -p rumor --lib sent_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sent_cost() {
        let mut log = SentLog::default();
        let packet = vec![0xB1u8; 1400];
        let rounds = 1_000_000u32;
        let t0 = Instant::now();
        for i in 0..rounds {
            log.record(t0, addr((i % 1000) as u16 + 1), &packet);
        }
        let per = t0.elapsed().as_nanos() as f64 / f64::from(rounds);
        println!("record: {per:.0} ns per 1,400-byte datagram (1,000 destinations)");
        let t0 = Instant::now();
        let mut hits = 0;
        for i in 0..rounds {
            hits += usize::from(log.matches(addr((i % 1000) as u16 + 1), &packet[..520]));
        }
        let per = t0.elapsed().as_nanos() as f64 / f64::from(rounds);
        println!("match: {per:.0} ns per quote ({hits} hits)");
    }
}
