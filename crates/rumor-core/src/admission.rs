//! Admission of new members: names heard of from a third party wait here
//! until the claimed address answers a ping.
//!
//! A node adds a name it has never held only on evidence it can trust:
//! - the member speaks for itself (its alive claim comes from the address
//!   it claims, or is the first record of its own stream request);
//! - the record is in the answer to a stream request this node made (the
//!   seed of a join, or a push-pull partner it picked itself);
//! - or, for a claim relayed by anyone else, the claimed address answers a
//!   ping for that name. Such claims wait in a [`Pending`] table, bounded
//!   in total and per sender, and expire when no ack comes.
//!
//! An invented member at an address where nobody answers is never added, so
//! a flood of alive claims costs the victim one ping per claim it has room
//! for, not a member table, a probe round and a health score.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::message::Alive;
use crate::time::Instant;

/// Why [`Pending::offer`] did not start a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The name already waits for its ack (the claim was kept if newer).
    AlreadyPending,
    /// The table holds its limit.
    Full,
    /// The sender holds its share of the table.
    SenderFull,
}

struct Waiting {
    claim: Alive,
    sender: IpAddr,
    seq: u32,
    since: Instant,
}

/// Names waiting for their ack, by name and by ping sequence number.
pub struct Pending {
    by_name: HashMap<Arc<str>, Waiting>,
    by_seq: HashMap<u32, Arc<str>>,
    per_sender: HashMap<IpAddr, usize>,
    max: usize,
    max_per_sender: usize,
}

impl Pending {
    /// An empty table of at most `max` names, `max_per_sender` from any
    /// one sender address.
    pub fn new(max: usize, max_per_sender: usize) -> Self {
        Pending {
            by_name: HashMap::new(),
            by_seq: HashMap::new(),
            per_sender: HashMap::new(),
            max,
            max_per_sender,
        }
    }

    /// Change the bounds; names waiting over lowered ones stay until they
    /// are acked or expire.
    pub fn set_bounds(&mut self, max: usize, max_per_sender: usize) {
        self.max = max;
        self.max_per_sender = max_per_sender;
    }

    /// Names waiting.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `name` waits for its ack.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Hold `claim`, relayed by `sender`, until the ack of ping `seq`.
    pub fn offer(
        &mut self,
        now: Instant,
        claim: &Alive,
        sender: IpAddr,
        seq: u32,
    ) -> Result<(), Refused> {
        if let Some(w) = self.by_name.get_mut(&claim.name) {
            if claim.incarnation > w.claim.incarnation && claim.addr == w.claim.addr {
                w.claim = claim.clone();
            }
            return Err(Refused::AlreadyPending);
        }
        if self.by_name.len() >= self.max {
            return Err(Refused::Full);
        }
        let count = self.per_sender.entry(sender).or_insert(0);
        if *count >= self.max_per_sender {
            return Err(Refused::SenderFull);
        }
        *count += 1;
        self.by_seq.insert(seq, claim.name.clone());
        self.by_name.insert(
            claim.name.clone(),
            Waiting {
                claim: claim.clone(),
                sender,
                seq,
                since: now,
            },
        );
        Ok(())
    }

    /// The ack of ping `seq` came from `from`: the claim it verifies, if
    /// that ping was an admission check and the ack came from the address
    /// pinged.
    pub fn verified(&mut self, seq: u32, from: std::net::SocketAddr) -> Option<Alive> {
        let name = self.by_seq.get(&seq)?;
        if self.by_name.get(name)?.claim.addr != from {
            return None;
        }
        let name = self.by_seq.remove(&seq)?;
        self.remove(&name).map(|w| w.claim)
    }

    /// Drop what has waited longer than `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: std::time::Duration) {
        let old: Vec<Arc<str>> = self
            .by_name
            .iter()
            .filter(|(_, w)| now.saturating_since(w.since) >= ttl)
            .map(|(n, _)| n.clone())
            .collect();
        for name in old {
            if let Some(w) = self.remove(&name) {
                self.by_seq.remove(&w.seq);
            }
        }
    }

    /// Forget `name` (it was admitted some other way).
    pub fn forget(&mut self, name: &str) {
        if let Some(w) = self.remove(name) {
            self.by_seq.remove(&w.seq);
        }
    }

    fn remove(&mut self, name: &str) -> Option<Waiting> {
        let w = self.by_name.remove(name)?;
        if let Some(c) = self.per_sender.get_mut(&w.sender) {
            *c -= 1;
            if *c == 0 {
                self.per_sender.remove(&w.sender);
            }
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn claim(name: &str, port: u16) -> Alive {
        Alive {
            incarnation: 1,
            name: name.into(),
            addr: ([127, 0, 0, 1], port).into(),
            protocol: (1, 1),
            tags: crate::member::no_tags(),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn an_ack_from_the_claimed_address_admits() {
        let mut p = Pending::new(8, 8);
        p.offer(Instant::ZERO, &claim("x", 7000), A, 1).unwrap();
        assert_eq!(
            p.offer(Instant::ZERO, &claim("x", 7000), B, 2),
            Err(Refused::AlreadyPending)
        );
        assert!(
            p.verified(1, ([127, 0, 0, 1], 7001).into()).is_none(),
            "wrong address"
        );
        let a = p.verified(1, ([127, 0, 0, 1], 7000).into()).unwrap();
        assert_eq!(&*a.name, "x");
        assert!(p.is_empty());
        assert!(
            p.verified(1, ([127, 0, 0, 1], 7000).into()).is_none(),
            "once"
        );
    }

    #[test]
    fn bounded_in_total_and_per_sender_and_expiring() {
        let mut p = Pending::new(3, 2);
        p.offer(Instant::ZERO, &claim("a", 1), A, 1).unwrap();
        p.offer(Instant::ZERO, &claim("b", 2), A, 2).unwrap();
        assert_eq!(
            p.offer(Instant::ZERO, &claim("c", 3), A, 3),
            Err(Refused::SenderFull)
        );
        p.offer(Instant::ZERO, &claim("c", 3), B, 4).unwrap();
        assert_eq!(
            p.offer(Instant::ZERO, &claim("d", 4), B, 5),
            Err(Refused::Full)
        );
        let later = Instant::ZERO + Duration::from_secs(2);
        p.expire(later, Duration::from_secs(1));
        assert!(p.is_empty());
        p.offer(later, &claim("d", 4), A, 6).unwrap();
        assert!(
            p.verified(1, ([127, 0, 0, 1], 1).into()).is_none(),
            "expired"
        );
    }
}
