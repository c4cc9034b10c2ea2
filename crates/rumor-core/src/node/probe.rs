//! SWIM failure detection with Lifeguard: the probe round, prompt probes of
//! suspects, indirect probes through relays, nacks, and the local health
//! score they feed.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;

use super::{Node, Timer};
use crate::codec;
use crate::member::MemberState;
use crate::message::{Message, MessageType};
use crate::time::Instant;

/// Most probes with a stream ping in flight at once. A probe pings over a
/// stream at most once; this bounds the rest (watchers probing many
/// suspects at once, say across a partition), so that stream pings never
/// take more than a few of the driver's stream slots whatever happens.
const MAX_STREAM_PINGS: usize = 4;

/// A probe in flight.
pub(super) struct Probe {
    target: Arc<str>,
    /// Where the ping went (to match "port unreachable" reports).
    addr: SocketAddr,
    /// The target's incarnation when the probe began: a failure is evidence
    /// against that incarnation only, not one it has refuted with since.
    incarnation: u64,
    acked: bool,
    /// Ping-reqs sent (each relay owes an ack or a nack).
    expected_nacks: u32,
    nacks: u32,
    /// Relays have been asked (at the timeout, or sooner on a refusal).
    relays_asked: bool,
    /// The direct ping came back "port unreachable".
    refused: bool,
    /// Nacks whose relay's ping came back "port unreachable" too.
    refused_nacks: u32,
    /// When the ping went out.
    started: Instant,
    /// When the probe is judged ([`Timer::ProbeEnd`]).
    ends: Instant,
    /// A ping went to the target over a stream too.
    stream_pinged: bool,
    /// That stream connected: the target's host is up
    /// ([`crate::Config::stall_grace`]).
    host_up: bool,
}

impl Probe {
    /// Every relay's ping came back "port unreachable", and the direct one
    /// too or there were relays to ask: nothing listens at the address.
    /// The relays alone suffice: a direct ping that reached the target's
    /// socket as its process died is lost without any report.
    fn unreachable(&self) -> bool {
        self.relays_asked
            && (self.refused || self.expected_nacks > 0)
            && self.refused_nacks >= self.expected_nacks
    }

    /// Nothing is left to wait for: no ack, and either nothing listens
    /// ([`Probe::unreachable`]) or every relay has nacked. A relay nacks
    /// only after waiting for the target longer than the direct retry
    /// needs, so the relays' verdicts are all the datagram evidence the
    /// probe will get; only a stream ping that found the target's host up
    /// is still worth its deadline (its ack, or the stall grace).
    fn settled(&self) -> bool {
        let all_nacked = self.relays_asked
            && self.expected_nacks > 0
            && self.nacks >= self.expected_nacks
            && !self.host_up;
        !self.acked && (self.unreachable() || all_nacked)
    }
}

/// How long a relay waits for the target's ack before it nacks.
///
/// The requester asks relays at its probe timeout and judges the probe at
/// the end of its interval, so a nack counts only if it arrives within
/// `probe_interval - probe_timeout` of the request. The relay answers after
/// 80 % of that window (leaving the rest for the request's and the nack's
/// trips), and never waits longer than a direct probe would. Waiting the
/// whole probe timeout instead, every nack for a dead target arrived after
/// the judgement, and each healthy prober of it raised its own health
/// score by the number of relays, as if its links were the ones failing.
fn relay_wait(config: &crate::Config) -> std::time::Duration {
    let window = config.probe_interval.saturating_sub(config.probe_timeout);
    if window.is_zero() {
        return config.probe_timeout;
    }
    config.probe_timeout.min(window * 4 / 5)
}

/// A ping-req this node is relaying.
pub(super) struct Relay {
    requester: SocketAddr,
    requester_seq: u32,
    target_addr: SocketAddr,
}

impl Node {
    pub(super) fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// Probe the next member of the round.
    pub(super) fn probe_tick(&mut self, now: Instant) {
        let interval = self.awareness.scale(self.config.probe_interval);
        self.set_timer(now + interval, Timer::ProbeTick);
        self.reap(now);
        self.expire_admissions(now);
        self.queries.expire(now);
        if self.leaving {
            return;
        }
        if let Some(i) = self.next_probe_target() {
            self.start_probe(now, i);
        }
    }

    /// A suspicion of `name` began here. The first accuser always watches
    /// it; others do with probability `suspect_watchers / (N - 2)`. A
    /// watcher probes the suspect soon and then once per probe interval
    /// while the suspicion lasts: if the suspect is dead, these are prompt
    /// independent confirmations; if it is alive, the ping tells it (buddy
    /// system) and it refutes at once.
    pub(super) fn maybe_watch_suspect(&mut self, now: Instant, name: Arc<str>, accuser: bool) {
        let watchers = self.config.suspect_watchers;
        if watchers == 0 || self.leaving {
            return;
        }
        let others = self.live.saturating_sub(2).max(1) as f64;
        if !accuser
            && !self
                .rng
                .random_bool((f64::from(watchers) / others).min(1.0))
        {
            return;
        }
        self.watching.insert(name.clone());
        if !accuser {
            let micros = self.config.probe_timeout.as_micros() as u64;
            let delay = std::time::Duration::from_micros(self.rng.random_range(0..micros.max(1)));
            self.set_timer(now + delay, Timer::ProbeSuspect(name));
        }
    }

    /// A watcher's probe of a suspect (or of a stalled member) is due.
    pub(super) fn probe_suspect(&mut self, now: Instant, name: Arc<str>) {
        let Some(i) = self.members.get_index_of(&name) else {
            self.watching.remove(&name);
            return;
        };
        let suspect = self.members[i].state == MemberState::Suspect;
        if !(suspect || self.stalled.contains_key(&name)) || self.leaving {
            self.watching.remove(&name);
            return;
        }
        if !self.probes.values().any(|p| p.target == name) {
            self.start_probe(now, i);
        }
    }

    /// Ping member `i`; relays follow at the probe timeout, judgement at the
    /// end of the (health-scaled) probe interval.
    fn start_probe(&mut self, now: Instant, i: usize) {
        let (target, e) = self.members.get_index(i).expect("probe target in range");
        let (target, addr, state, incarnation) = (target.clone(), e.addr(), e.state, e.incarnation);
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
        let timeout = self.awareness.scale(self.config.probe_timeout);
        let end = self.awareness.scale(self.config.probe_interval);
        self.probes.insert(
            seq,
            Probe {
                target,
                addr,
                incarnation,
                acked: false,
                expected_nacks: 0,
                nacks: 0,
                relays_asked: false,
                refused: false,
                refused_nacks: 0,
                started: now,
                ends: now + end,
                stream_pinged: false,
                host_up: false,
            },
        );
        self.set_timer(now + timeout, Timer::ProbeTimeout(seq));
        self.set_timer(now + end, Timer::ProbeEnd(seq));
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
            let j = self.rng.random_range(self.probe_pos..=last);
            self.probe_order.swap(j, last);
        }
    }

    /// The direct ping went unanswered (or was refused): ask relays to
    /// probe the target, once per probe; ping it directly once more and
    /// over a stream too.
    pub(super) fn probe_timeout(&mut self, now: Instant, seq: u32) {
        let Some(p) = self
            .probes
            .get_mut(&seq)
            .filter(|p| !p.acked && !p.relays_asked)
        else {
            return;
        };
        p.relays_asked = true;
        let target = p.target.clone();
        let target_addr = p.addr;
        let relays = self.random_members(self.config.indirect_checks, move |e| {
            e.state == MemberState::Alive && e.addr() != target_addr
        });
        if let Some(p) = self.probes.get_mut(&seq) {
            p.expected_nacks = relays.len() as u32;
        }
        for i in relays {
            self.stats.indirect_probes += 1;
            let to = self.members[i].addr();
            let req = Message::PingReq {
                seq,
                target: target.clone(),
                target_addr,
            };
            self.send_packet(to, &[req]);
        }
        self.retry_ping(seq);
        self.stream_ping(now, seq);
        self.judge_if_settled(now, seq);
    }

    /// [`crate::Config::probe_retry`]: ping the target of probe `seq`
    /// directly once more, with the same sequence number (and the
    /// suspicion, if it is suspect), unless the first ping was refused.
    fn retry_ping(&mut self, seq: u32) {
        if !self.config.probe_retry {
            return;
        }
        let Some(p) = self.probes.get(&seq).filter(|p| !p.acked && !p.refused) else {
            return;
        };
        let (addr, target, incarnation) = (p.addr, p.target.clone(), p.incarnation);
        let mut msgs = vec![Message::Ping {
            seq,
            target: target.clone(),
        }];
        if self
            .members
            .get(&target)
            .is_some_and(|e| e.state == MemberState::Suspect)
        {
            msgs.push(Message::Suspect {
                incarnation,
                name: target,
                from: self.name.clone(),
            });
        }
        self.stats.probe_retries += 1;
        self.send_packet(addr, &msgs);
    }

    /// The stream fallback ([`crate::Config::probe_stream_fallback`]): ping
    /// the target of probe `seq` over a stream, in parallel with the
    /// relays, with a deadline at the probe's end. Skipped when the direct
    /// ping was refused (nothing listens: a connection would be refused
    /// too), when no time is left, and when [`MAX_STREAM_PINGS`] probes
    /// already have one in flight.
    fn stream_ping(&mut self, now: Instant, seq: u32) {
        if !self.config.probe_stream_fallback {
            return;
        }
        let in_flight = self.probes.values().filter(|p| p.stream_pinged).count();
        let Some(p) = self.probes.get_mut(&seq) else {
            return;
        };
        let left = p.ends.saturating_since(now);
        if p.acked || p.refused || p.stream_pinged || left.is_zero() {
            return;
        }
        if in_flight >= MAX_STREAM_PINGS {
            self.stats.probe_stream_pings_skipped += 1;
            return;
        }
        p.stream_pinged = true;
        let (to, target) = (p.addr, p.target.clone());
        let payload = codec::encode_packet(&Message::Ping { seq, target });
        self.stats.probe_stream_pings += 1;
        self.push_stream(to, payload, MessageType::Ping, Some(left));
    }

    /// A ping that came over a stream (a prober's fallback): the ack to
    /// write back on that stream, or `None` if it names another member.
    pub(super) fn stream_ping_answer(&mut self, seq: u32, target: &str) -> Option<Vec<u8>> {
        if !target.is_empty() && target != &*self.name {
            self.stats.misdirected_pings += 1;
            return None;
        }
        self.stats.streams_out += 1;
        self.stats.count_out(MessageType::Ack);
        Some(codec::encode_packet(&Message::Ack { seq }))
    }

    /// An ack that came over a stream: the answer to a probe's stream ping.
    /// It counts like any ack of the probe, except that it says nothing
    /// about this node's own datagram links (no health credit).
    pub(super) fn on_stream_ack(&mut self, seq: u32) {
        let saved = self
            .probes
            .get(&seq)
            .is_some_and(|p| p.stream_pinged && !p.acked);
        if saved {
            self.stats.probe_stream_fallback_acks += 1;
            self.ack_probe(seq, false);
        }
    }

    /// A stream this node opened to `to` connected: if it carries a probe's
    /// stream ping, the target's host is up, whatever its process does.
    pub(super) fn on_stream_connected(&mut self, to: SocketAddr) {
        for p in self.probes.values_mut() {
            if p.addr == to && p.stream_pinged && !p.acked {
                p.host_up = true;
            }
        }
    }

    /// The probe's time is up: healthy if acked, otherwise suspect the target.
    pub(super) fn probe_end(&mut self, now: Instant, seq: u32) {
        let Some(p) = self.probes.remove(&seq) else {
            return;
        };
        if self.watching.contains(&p.target) {
            self.set_timer(now, Timer::ProbeSuspect(p.target.clone()));
        }
        if !p.acked {
            self.probe_failed(now, p);
        }
    }

    /// Judge a probe that got no ack: suspect its target.
    fn probe_failed(&mut self, now: Instant, p: Probe) {
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
        if e.state.is_gone() || e.incarnation != p.incarnation || self.leaving {
            return;
        }
        let stall_grace = !self.config.stall_grace.is_zero();
        let stalled_for = if p.host_up && !p.refused && stall_grace {
            let Some(for_) = self.stall_wait(now, &p.target) else {
                return;
            };
            Some(for_)
        } else {
            None
        };
        let me = self.name.clone();
        self.stats.suspicions += 1;
        let target = p.target.clone();
        let refused = p.refused || p.unreachable();
        let cause = if refused {
            crate::event::SuspicionCause::PortUnreachable
        } else if let Some(for_) = stalled_for {
            crate::event::SuspicionCause::Stalled {
                for_ms: u64::try_from(for_.as_millis()).unwrap_or(u64::MAX),
            }
        } else {
            crate::event::SuspicionCause::NoAck {
                relays: p.expected_nacks,
                nacks: p.nacks,
            }
        };
        self.on_suspect(now, p.incarnation, p.target, me, cause, true);
        if refused {
            self.cap_suspicion(&target);
        }
    }

    /// A probe of `target` found its host up and its process silent: how
    /// long it has been so if that is past [`crate::Config::stall_grace`]
    /// (suspect it now), else `None` (the stall is recorded and the target
    /// probed every interval until it answers or the grace runs out).
    /// Called only with a non-zero grace, so no stall is recorded without.
    fn stall_wait(&mut self, now: Instant, target: &Arc<str>) -> Option<std::time::Duration> {
        let since = *self.stalled.entry(target.clone()).or_insert(now);
        let stalled_for = now.saturating_since(since);
        if stalled_for >= self.config.stall_grace {
            return Some(stalled_for);
        }
        self.stats.probe_stalls += 1;
        if self.watching.insert(target.clone()) {
            self.set_timer(now, Timer::ProbeSuspect(target.clone()));
        }
        None
    }

    /// A datagram to `to` came back "port unreachable": our probes of that
    /// address ask their relays at once, and relayed pings to it are nacked
    /// at once, saying why.
    pub(super) fn on_unreachable(&mut self, now: Instant, to: SocketAddr) {
        if self.config.unreachable_suspicion_timeout.is_none() {
            return;
        }
        self.stats.unreachable += 1;
        let probes: Vec<u32> = self
            .probes
            .iter()
            .filter(|(_, p)| p.addr == to && !p.acked && !p.refused)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in probes {
            if let Some(p) = self.probes.get_mut(&seq) {
                p.refused = true;
            }
            self.probe_timeout(now, seq);
            self.judge_if_settled(now, seq);
        }
        let relayed: Vec<u32> = self
            .relays
            .iter()
            .filter(|(_, r)| r.target_addr == to)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in relayed {
            if let Some(r) = self.relays.remove(&seq) {
                let nack = Message::Nack {
                    seq: r.requester_seq,
                    refused: true,
                };
                self.send_packet(r.requester, &[nack]);
            }
        }
    }

    /// A probe with nothing left to wait for ([`Probe::settled`]) is
    /// judged now, not at the end of the interval: a silent crash is
    /// suspected as soon as the relays have all nacked.
    fn judge_if_settled(&mut self, now: Instant, seq: u32) {
        let done = self.probes.get(&seq).is_some_and(Probe::settled);
        if let Some(p) = done.then(|| self.probes.remove(&seq)).flatten() {
            // The probe's timers find nothing left and do nothing, so the
            // watchers' next probe is set here, when the probe would have
            // ended.
            let (target, ends) = (p.target.clone(), p.ends);
            self.probe_failed(now, p);
            if self.watching.contains(&target) {
                self.set_timer(ends.max(now), Timer::ProbeSuspect(target));
            }
        }
    }

    /// Nothing listens at the suspect's address: bound its suspicion by the
    /// short unreachable timeout.
    fn cap_suspicion(&mut self, name: &Arc<str>) {
        let Some(timeout) = self.config.unreachable_suspicion_timeout else {
            return;
        };
        if let Some(s) = self.suspicions.get_mut(name) {
            s.cap(timeout);
            let deadline = s.deadline();
            self.set_timer(deadline, Timer::Suspicion(name.clone()));
        }
    }

    pub(super) fn on_ping(&mut self, from: SocketAddr, seq: u32, target: &str) {
        if !target.is_empty() && target != &*self.name {
            self.stats.misdirected_pings += 1;
            return;
        }
        self.send_packet(from, &[Message::Ack { seq }]);
    }

    pub(super) fn on_ack(&mut self, now: Instant, seq: u32, from: SocketAddr) {
        if self.on_admission_ack(now, seq, from) {
            return;
        }
        if self.ack_probe(seq, true) {
            return;
        }
        if let Some(relay) = self.relays.remove(&seq) {
            let ack = Message::Ack {
                seq: relay.requester_seq,
            };
            self.send_packet(relay.requester, &[ack]);
        }
    }

    /// Probe `seq` got its ack (over a datagram when `datagram`, the direct
    /// ping's or a relay's; else over a stream); false if no probe awaited
    /// it.
    fn ack_probe(&mut self, seq: u32, datagram: bool) -> bool {
        let Some(p) = self.probes.get_mut(&seq).filter(|p| !p.acked) else {
            return false;
        };
        p.acked = true;
        self.stats.probe_acks += 1;
        self.stalled.remove(&p.target);
        if datagram && !p.relays_asked {
            // Before the timeout, so the first ping's answer: a round trip.
            let rtt = self.now.saturating_since(p.started);
            self.srtt = Some(self.srtt.map_or(rtt, |s| (s * 7 + rtt) / 8));
            if let Some(e) = self.members.get_mut(&p.target) {
                e.rtt_micros = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX).max(1);
            }
            if !self.samples.add_probe_rtt(rtt) {
                self.stats.samples_dropped += 1;
            }
        }
        if datagram && p.expected_nacks == 0 {
            // A direct ack in time: our links are healthy.
            self.awareness.apply(-1);
        }
        if !self.watching.contains(&p.target) {
            // Nothing is left to judge: drop the probe and its timers,
            // so they do not wake the node for nothing.
            self.probes.remove(&seq);
            self.timers.retain(|Reverse((_, _, t))| {
                !matches!(t, Timer::ProbeTimeout(s) | Timer::ProbeEnd(s) if *s == seq)
            });
        }
        true
    }

    pub(super) fn on_nack(&mut self, now: Instant, seq: u32, refused: bool) {
        if let Some(p) = self.probes.get_mut(&seq) {
            p.nacks += 1;
            p.refused_nacks += u32::from(refused);
            self.stats.nacks += 1;
            self.judge_if_settled(now, seq);
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
                target_addr: addr,
            },
        );
        let mut msgs = vec![Message::Ping {
            seq: relay_seq,
            target: target.clone(),
        }];
        if let Some(e) = self
            .members
            .get(&target)
            .filter(|e| e.state == MemberState::Suspect)
        {
            // Buddy system through relays too.
            msgs.push(Message::Suspect {
                incarnation: e.incarnation,
                name: target,
                from: self.name.clone(),
            });
        }
        self.send_packet(addr, &msgs);
        let wait = relay_wait(&self.config);
        self.set_timer(now + wait, Timer::RelayTimeout(relay_seq));
    }

    /// The relayed ping got no ack in time: nack the requester.
    pub(super) fn relay_timeout(&mut self, seq: u32) {
        if let Some(relay) = self.relays.remove(&seq) {
            let nack = Message::Nack {
                seq: relay.requester_seq,
                refused: false,
            };
            self.send_packet(relay.requester, &[nack]);
        }
    }
}
