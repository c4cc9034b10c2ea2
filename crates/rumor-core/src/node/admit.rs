//! Who may add a member, and whether this node's own name is taken.
//!
//! - New names are admitted on trusted evidence or after an ack from the
//!   claimed address ([`crate::admission`]), within `limits.max_members`.
//! - An alive claim of this node's own name at another address is checked
//!   with a ping for the name: an ack means another live member holds it
//!   ([`Event::NameConflict`]); silence means it was this node's previous
//!   life, taken over as before once the cluster sees it gone.
//! - Refusals are counted and reported, rate-limited ([`Event::Refused`]).

use std::net::SocketAddr;
use std::time::Duration;

use super::{Fresh, Node};
use crate::admission::Refused;
use crate::event::{Event, MemberEventKind};
use crate::limits::Limit;
use crate::member::MemberState;
use crate::message::{Alive, Message};
use crate::time::Instant;

/// Where a claim about a member came from, and so what it proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// A datagram from this address, or a message in a stream request
    /// from it: only a claim about the sender's own address speaks for
    /// itself.
    Peer(SocketAddr),
    /// The requester's own record in a stream request from this address
    /// (a stream comes from an ephemeral port: the IP must match).
    Requester(SocketAddr),
    /// The answer to a stream request this node made.
    Trusted,
    /// A relayed claim whose address acked this node's ping for its name.
    Verified,
}

/// How often each kind of refusal is reported.
const REFUSAL_REPORT_INTERVAL: Duration = Duration::from_secs(1);

impl Node {
    /// An alive claim for `a.name`, which this node does not hold.
    pub(super) fn admit(&mut self, now: Instant, a: &Alive, source: Source, gossip: bool) {
        let direct = match source {
            Source::Trusted | Source::Verified => true,
            Source::Peer(from) => a.addr == from,
            Source::Requester(from) => a.addr.ip() == from.ip(),
        };
        if self.members.len() >= self.config.limits.max_members {
            self.refused(Limit::Members);
            return;
        }
        if !direct {
            if let Source::Peer(from) | Source::Requester(from) = source {
                self.hold_for_ack(now, a, from);
            }
            return;
        }
        self.pending.forget(&a.name);
        let index = self.members.len();
        self.members.insert(
            a.name.clone(),
            a.addr,
            a.protocol,
            a.tags.clone(),
            Fresh {
                incarnation: a.incarnation,
                state: MemberState::Alive,
                state_change: now,
            },
        );
        self.live += 1;
        self.add_to_probe_order(index);
        self.emit(MemberEventKind::Joined, index);
        if gossip {
            // A joiner reaches every member itself (Node::announce_self): a
            // claim heard from the member, or verified by its ack, is
            // gossiped on ticks for those who lost the announcement, without
            // an eager round whose relays would each cost a ping to the
            // joiner. New names from an answer this node asked for (the
            // members a joiner learns from its seed) still go out at once.
            let claim = Message::Alive(a.clone());
            if source == Source::Trusted {
                self.broadcast(a.name.clone(), claim);
            } else {
                self.broadcast_on_ticks(a.name.clone(), claim);
            }
        }
    }

    /// Keep a relayed claim until its address acks a ping for its name.
    fn hold_for_ack(&mut self, now: Instant, a: &Alive, sender: SocketAddr) {
        if self.pending.len() >= self.config.limits.max_pending_members {
            self.pending.expire(now, self.config.probe_interval);
        }
        let seq = self.next_seq();
        match self.pending.offer(now, a, sender.ip(), seq) {
            Ok(()) => {
                self.stats.members_pending += 1;
                let ping = Message::Ping {
                    seq,
                    target: a.name.clone(),
                };
                self.send_bare(a.addr, &ping);
            }
            Err(Refused::AlreadyPending) => {}
            Err(Refused::Full | Refused::SenderFull) => self.refused(Limit::PendingMembers),
        }
    }

    /// An alive claim of this node's name at `addr`, another address: ask
    /// that address whether it answers to the name.
    pub(super) fn check_name(&mut self, now: Instant, addr: SocketAddr) {
        if self.name_checks.values().any(|&(holder, _)| holder == addr) {
            return;
        }
        if self.name_checks.len() >= 8 {
            self.name_checks.clear(); // stale checks nobody answered
        }
        let seq = self.next_seq();
        self.name_checks.insert(seq, (addr, now));
        let ping = Message::Ping {
            seq,
            target: self.name.clone(),
        };
        self.send_bare(addr, &ping);
    }

    /// Whether an ack of `seq` from `from` belongs to admission: it admits
    /// the member it verifies, or reveals that this node's name is taken.
    pub(super) fn on_admission_ack(&mut self, now: Instant, seq: u32, from: SocketAddr) -> bool {
        if let Some(claim) = self.pending.verified(seq, from) {
            self.stats.members_verified += 1;
            if !self.members.contains_key(&claim.name) {
                self.admit(now, &claim, Source::Verified, true);
            }
            return true;
        }
        match self.name_checks.get(&seq) {
            Some(&(holder, _)) if holder == from => {
                self.name_checks.remove(&seq);
                if self.conflict.is_none() {
                    self.conflict = Some(holder);
                    self.events.push_back(Event::NameConflict { holder });
                }
                true
            }
            _ => false,
        }
    }

    /// Whether a stream answer from `from` was asked for by this node.
    pub(super) fn solicited(&mut self, from: SocketAddr) -> bool {
        self.awaiting_reply.remove(&from).is_some()
    }

    /// A stream request to `to` went out: its answer is trusted.
    pub(super) fn expect_reply(&mut self, now: Instant, to: SocketAddr) {
        if self.awaiting_reply.len() >= 256 {
            // Requests whose answers never came; a stream times out long
            // before a push-pull interval.
            let horizon = self.config.push_pull_interval;
            self.awaiting_reply
                .retain(|_, at| now.saturating_since(*at) < horizon);
        }
        if self.awaiting_reply.len() < 256 {
            self.awaiting_reply.insert(to, now);
        }
    }

    /// Drop admission state nobody answered: pending names, name checks.
    pub(super) fn expire_admissions(&mut self, now: Instant) {
        let ttl = self.config.probe_interval;
        self.pending.expire(now, ttl);
        self.name_checks
            .retain(|_, (_, at)| now.saturating_since(*at) < ttl);
        self.report_refusals(now);
    }

    /// Count a refusal and report it, rate-limited.
    pub(super) fn refused(&mut self, limit: Limit) {
        self.stats.count_refusal(limit);
        self.refusals[limit.index()].1 += 1;
        self.report_refusals(self.now);
    }

    /// Report refusals not yet reported, at most once per interval per kind.
    fn report_refusals(&mut self, now: Instant) {
        for limit in Limit::ALL {
            let (last, count) = self.refusals[limit.index()];
            let due = last.is_none_or(|t| now.saturating_since(t) >= REFUSAL_REPORT_INTERVAL);
            if count > 0 && due {
                self.refusals[limit.index()] = (Some(now), 0);
                self.events.push_back(Event::Refused {
                    limit,
                    count,
                    peer: self.peer,
                });
            }
        }
    }

    /// The address of the member holding this node's name, if another live
    /// member answered to it ([`Event::NameConflict`]).
    pub fn name_conflict(&self) -> Option<SocketAddr> {
        self.conflict
    }

    /// Whether a check of this node's name is still waiting for an answer
    /// (a driver confirming a join waits for these, at most a probe
    /// interval).
    pub fn checking_name(&self) -> bool {
        !self.name_checks.is_empty()
    }

    /// Names waiting for their ack (see [`crate::admission`]).
    pub fn pending_admissions(&self) -> usize {
        self.pending.len()
    }
}
