//! Queries: a question gossiped like a user event, answered by the members
//! its filters select, straight to the asker, until the asker's deadline.
//!
//! This module owns the bookkeeping: the queries a node has seen (each is
//! delivered once, acked and answered at most once, and only to the address
//! the asker gave, while the query lasts) and the node's own queries in
//! flight (who acked, who answered: each counted once). Both tables are
//! bounded; what does not fit is refused and counted.
//!
//! Who may ask: a node delivers a query only when its origin is a member it
//! knows alive at the address the query names, so a forged query cannot
//! turn the cluster's answers on a third party.

pub(crate) mod service;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::message::{Query, QueryResponse};
use crate::time::Instant;

/// Largest query (name, payload and filters), in bytes: it is gossiped,
/// so it must fit a datagram beside other updates (Serf's limit too).
pub const MAX_QUERY_SIZE: usize = 1024;

/// Largest answer, in bytes. Answers that do not fit a datagram go over a
/// stream.
pub const MAX_RESPONSE_SIZE: usize = 64 * 1024;

/// Most relays an answer may go through.
pub const MAX_RELAY_FACTOR: u8 = 5;

/// Longest a query may last (asker and answerers alike).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Queries a node remembers at once (seen from others).
pub const MAX_SEEN: usize = 4096;

/// This node's own queries in flight at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// The default timeout is this many gossip intervals per factor of ten
/// members (Serf's `QueryTimeoutMult`).
pub const TIMEOUT_MULT: u32 = 16;

/// How long a query waits for answers by default in a cluster of `n`:
/// `gossip_interval x 16 x ceil(log10(n + 1))`, as Serf does (LAN, 16
/// members: 6.4 s).
pub fn default_timeout(config: &Config, n: usize) -> Duration {
    let scale = ((n as f64 + 1.0).log10().ceil() as u32).max(1);
    (config.gossip_interval * TIMEOUT_MULT * scale).min(MAX_TIMEOUT)
}

/// What the caller of [`crate::Node::query`] chooses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryParams {
    /// Which members answer; empty: all.
    pub filters: Vec<crate::message::QueryFilter>,
    /// Ask the selected members to ack on receipt.
    pub ack: bool,
    /// Send each answer through this many other members too (at most
    /// [`MAX_RELAY_FACTOR`]).
    pub relay_factor: u8,
    /// How long to wait for answers; `None`: [`default_timeout`].
    pub timeout: Option<Duration>,
}

/// A query seen here, from another member (or this one).
struct Seen {
    origin_addr: SocketAddr,
    relay_factor: u8,
    until: Instant,
    acked: bool,
    answered: bool,
}

/// One of this node's queries, collecting answers.
struct InFlight {
    query: Query,
    until: Instant,
    acks: HashSet<Arc<str>>,
    answers: HashSet<Arc<str>>,
}

/// Where an answer goes, if this node may send it.
pub struct Answer {
    /// The asker's address.
    pub to: SocketAddr,
    /// Relays to send copies through.
    pub relay_factor: u8,
}

/// Why a query was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// Seen before: not news.
    Duplicate,
    /// The table is full.
    Full,
}

/// Queries seen and queries asked.
#[derive(Default)]
pub struct QueryLog {
    seen: HashMap<(Arc<str>, u64), Seen>,
    mine: HashMap<u64, InFlight>,
}

impl QueryLog {
    /// Record query `q`, arrived `now`: Ok if it is new.
    pub fn witness(&mut self, now: Instant, q: &Query) -> Result<(), NotTaken> {
        let key = (q.origin.clone(), q.ltime);
        if self.seen.contains_key(&key) {
            return Err(NotTaken::Duplicate);
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.retain(|_, s| s.until > now);
            if self.seen.len() >= MAX_SEEN {
                return Err(NotTaken::Full);
            }
        }
        let lasts = Duration::from_millis(u64::from(q.timeout_ms)).min(MAX_TIMEOUT);
        self.seen.insert(
            key,
            Seen {
                origin_addr: q.origin_addr,
                relay_factor: q.relay_factor.min(MAX_RELAY_FACTOR),
                until: now + lasts,
                acked: false,
                answered: false,
            },
        );
        Ok(())
    }

    /// Whether this node may now ack (`ack`) or answer query `(origin,
    /// ltime)`: it saw the query, the query still lasts, and it has not
    /// acked (answered) it yet. Marks it acked (answered).
    pub fn may_answer(
        &mut self,
        now: Instant,
        origin: &str,
        ltime: u64,
        ack: bool,
    ) -> Option<Answer> {
        let s = self.seen.get_mut(&(Arc::from(origin), ltime))?;
        let done = if ack { &mut s.acked } else { &mut s.answered };
        if *done || s.until <= now {
            return None;
        }
        *done = true;
        Some(Answer {
            to: s.origin_addr,
            relay_factor: s.relay_factor,
        })
    }

    /// Start collecting answers to this node's `query` until `until`;
    /// false if too many are in flight.
    pub fn start(&mut self, query: &Query, until: Instant) -> bool {
        if self.mine.len() >= MAX_IN_FLIGHT {
            return false;
        }
        self.mine.insert(
            query.ltime,
            InFlight {
                query: query.clone(),
                until,
                acks: HashSet::new(),
                answers: HashSet::new(),
            },
        );
        true
    }

    /// Whether `r` is a first ack (answer) from its member to one of this
    /// node's queries still in flight.
    pub fn record(&mut self, now: Instant, r: &QueryResponse) -> bool {
        let Some(q) = self.mine.get_mut(&r.ltime) else {
            return false;
        };
        if q.until <= now {
            return false;
        }
        let set = if r.ack { &mut q.acks } else { &mut q.answers };
        set.insert(r.from.clone())
    }

    /// This node's query `ltime`, if in flight, and whether `member` has
    /// acked or answered it.
    pub fn in_flight(&self, ltime: u64) -> Option<(&Query, impl Fn(&str) -> bool + '_)> {
        let q = self.mine.get(&ltime)?;
        Some((&q.query, move |m: &str| {
            q.acks.contains(m) || q.answers.contains(m)
        }))
    }

    /// End this node's query `ltime`; true if it was in flight.
    pub fn finish(&mut self, ltime: u64) -> bool {
        self.mine.remove(&ltime).is_some()
    }

    /// Forget seen queries that have ended.
    pub fn expire(&mut self, now: Instant) {
        self.seen.retain(|_, s| s.until > now);
        if self.seen.is_empty() && self.seen.capacity() > 64 {
            self.seen = HashMap::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(ltime: u64, timeout_ms: u32) -> Query {
        Query {
            ltime,
            origin: "asker".into(),
            origin_addr: "127.0.0.1:7946".parse().unwrap(),
            name: "q".into(),
            payload: vec![],
            filters: vec![],
            ack: true,
            relay_factor: 9,
            timeout_ms,
        }
    }

    #[test]
    fn a_query_is_taken_once_and_answered_once_while_it_lasts() {
        let t = Instant::from_micros(1_000_000);
        let mut log = QueryLog::default();
        assert_eq!(log.witness(t, &query(1, 1000)), Ok(()));
        assert_eq!(log.witness(t, &query(1, 1000)), Err(NotTaken::Duplicate));
        let a = log.may_answer(t, "asker", 1, true).expect("may ack");
        assert_eq!(a.relay_factor, MAX_RELAY_FACTOR);
        assert!(log.may_answer(t, "asker", 1, true).is_none(), "acked twice");
        assert!(log.may_answer(t, "asker", 1, false).is_some());
        assert!(
            log.may_answer(t, "asker", 1, false).is_none(),
            "answered twice"
        );
        assert!(log.may_answer(t, "asker", 2, false).is_none(), "never seen");
        log.witness(t, &query(3, 1000)).unwrap();
        let late = t + Duration::from_millis(1000);
        assert!(
            log.may_answer(late, "asker", 3, false).is_none(),
            "after its deadline"
        );
    }

    #[test]
    fn answers_count_once_per_member_and_only_in_flight() {
        let t = Instant::from_micros(1_000_000);
        let mut log = QueryLog::default();
        assert!(log.start(&query(7, 1000), t + Duration::from_secs(1)));
        let r = |from: &str, ack| QueryResponse {
            ltime: 7,
            from: from.into(),
            ack,
            payload: vec![],
            relay_to: None,
        };
        assert!(log.record(t, &r("a", true)));
        assert!(log.record(t, &r("a", false)));
        assert!(
            !log.record(t, &r("a", false)),
            "a duplicate (a relayed copy)"
        );
        assert!(log.finish(7));
        assert!(!log.record(t, &r("b", false)), "after the end");
    }

    #[test]
    fn the_seen_table_is_bounded() {
        let t = Instant::from_micros(1_000_000);
        let mut log = QueryLog::default();
        for i in 0..MAX_SEEN as u64 {
            log.witness(t, &query(i, 60_000)).unwrap();
        }
        assert_eq!(
            log.witness(t, &query(u64::MAX, 60_000)),
            Err(NotTaken::Full)
        );
        let later = t + Duration::from_secs(61);
        assert_eq!(log.witness(later, &query(u64::MAX, 60_000)), Ok(()));
    }

    #[test]
    fn default_timeout_grows_with_log_n() {
        let c = Config::lan();
        assert_eq!(default_timeout(&c, 16), Duration::from_millis(6400));
        assert_eq!(default_timeout(&c, 1000), Duration::from_millis(12_800));
    }
}
