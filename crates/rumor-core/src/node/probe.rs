//! SWIM failure detection with Lifeguard: the probe round, indirect probes
//! through relays, nacks, and the local health score they feed.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::seq::SliceRandom;

use super::{Node, Timer};
use crate::member::MemberState;
use crate::message::Message;
use crate::time::Instant;

/// The probe in flight.
pub(super) struct Probe {
    seq: u32,
    target: Arc<str>,
    acked: bool,
    /// Ping-reqs sent (each relay owes an ack or a nack).
    expected_nacks: u32,
    nacks: u32,
}

/// A ping-req this node is relaying.
pub(super) struct Relay {
    requester: SocketAddr,
    requester_seq: u32,
}

impl Node {
    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// Start the next probe of the round (and judge the previous one).
    pub(super) fn probe_tick(&mut self, now: Instant) {
        if let Some(done) = self.probe.take() {
            self.finish_probe(now, done);
        }
        let interval = self.awareness.scale(self.config.probe_interval);
        self.set_timer(now + interval, Timer::ProbeTick);
        if self.leaving {
            return;
        }
        let Some(i) = self.next_probe_target() else {
            return;
        };
        let (target, e) = self.members.get_index(i).expect("probe target in range");
        let (target, addr, state, incarnation) = (target.clone(), e.addr, e.state, e.incarnation);
        let seq = self.next_seq();
        self.stats.probes += 1;
        let mut msgs = vec![Message::Ping {
            seq,
            target: target.clone(),
        }];
        if state == MemberState::Suspect {
            // Buddy system: tell the suspect at once, so it can refute.
            msgs.push(Message::Suspect {
                incarnation,
                name: target.clone(),
                from: self.name.clone(),
            });
        }
        self.send_packet(addr, &msgs);
        self.probe = Some(Probe {
            seq,
            target,
            acked: false,
            expected_nacks: 0,
            nacks: 0,
        });
        let timeout = self.awareness.scale(self.config.probe_timeout);
        self.set_timer(now + timeout, Timer::ProbeTimeout(seq));
    }

    /// The next alive or suspect member in the shuffled round-robin order.
    fn next_probe_target(&mut self) -> Option<usize> {
        for _ in 0..2 {
            while self.probe_pos < self.probe_order.len() {
                let i = self.probe_order[self.probe_pos] as usize;
                self.probe_pos += 1;
                if i != 0 && !self.members[i].state.is_gone() {
                    return Some(i);
                }
            }
            // End of the round: a fresh random order.
            self.probe_order.clear();
            self.probe_order.extend(1..self.members.len() as u32);
            self.probe_order.shuffle(&mut self.rng);
            self.probe_pos = 0;
        }
        None
    }

    /// Put a new member at a random place in the rest of the round.
    pub(super) fn add_to_probe_order(&mut self, index: usize) {
        self.probe_order.push(index as u32);
        let last = self.probe_order.len() - 1;
        if last > self.probe_pos {
            let j = rand::Rng::random_range(&mut self.rng, self.probe_pos..=last);
            self.probe_order.swap(j, last);
        }
    }

    /// The direct ping went unanswered: ask relays to probe the target.
    pub(super) fn probe_timeout(&mut self, _now: Instant, seq: u32) {
        let Some(p) = self.probe.as_ref().filter(|p| p.seq == seq && !p.acked) else {
            return;
        };
        let target = p.target.clone();
        let Some(ti) = self.members.get_index_of(&target) else {
            return;
        };
        let target_addr = self.members[ti].addr;
        let relays = self.random_members(self.config.indirect_checks, move |e| {
            e.state == MemberState::Alive && e.addr != target_addr
        });
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = relays.len() as u32;
        }
        for i in relays {
            self.stats.indirect_probes += 1;
            let to = self.members[i].addr;
            let req = Message::PingReq {
                seq,
                target: target.clone(),
                target_addr,
            };
            self.send_packet(to, &[req]);
        }
    }

    /// The probe's time is up: healthy if acked, otherwise suspect the target.
    fn finish_probe(&mut self, now: Instant, p: Probe) {
        if p.acked {
            return;
        }
        // Lifeguard: relays that did not even nack point at our own links.
        let delta = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks) as i32
        } else {
            1
        };
        self.awareness.apply(delta);
        let Some(e) = self.members.get(&p.target) else {
            return;
        };
        if e.state.is_gone() {
            return;
        }
        let incarnation = e.incarnation;
        let me = self.name.clone();
        self.stats.suspicions += 1;
        self.on_suspect(now, incarnation, p.target, me, true);
    }

    pub(super) fn on_ping(&mut self, from: SocketAddr, seq: u32, target: &str) {
        if !target.is_empty() && target != &*self.name {
            self.stats.misdirected_pings += 1;
            return;
        }
        self.send_packet(from, &[Message::Ack { seq }]);
    }

    pub(super) fn on_ack(&mut self, seq: u32) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq && !p.acked) {
            p.acked = true;
            self.stats.probe_acks += 1;
            if p.expected_nacks == 0 {
                // A direct ack in time: our links are healthy.
                self.awareness.apply(-1);
            }
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            let ack = Message::Ack {
                seq: relay.requester_seq,
            };
            self.send_packet(relay.requester, &[ack]);
        }
    }

    pub(super) fn on_nack(&mut self, seq: u32) {
        if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
            p.nacks += 1;
            self.stats.nacks += 1;
        }
    }

    pub(super) fn on_ping_req(
        &mut self,
        now: Instant,
        from: SocketAddr,
        seq: u32,
        target: Arc<str>,
        addr: SocketAddr,
    ) {
        let relay_seq = self.next_seq();
        self.relays.insert(
            relay_seq,
            Relay {
                requester: from,
                requester_seq: seq,
            },
        );
        self.send_packet(
            addr,
            &[Message::Ping {
                seq: relay_seq,
                target,
            }],
        );
        let timeout = self.config.probe_timeout;
        self.set_timer(now + timeout, Timer::RelayTimeout(relay_seq));
    }

    /// The relayed ping got no ack in time: nack the requester.
    pub(super) fn relay_timeout(&mut self, seq: u32) {
        if let Some(relay) = self.relays.remove(&seq) {
            let nack = Message::Nack {
                seq: relay.requester_seq,
            };
            self.send_packet(relay.requester, &[nack]);
        }
    }
}
