//! A small in-test network: nodes in a Vec, one virtual clock, packets
//! delivered after a fixed latency or dropped by a rule.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use rumor_core::{Config, Event, Instant, MemberEventKind, MemberState, Node, TransmitKind};

/// Decides whether a packet from one node index to another is dropped.
pub type DropRule = Box<dyn FnMut(usize, usize, u64) -> bool>;

enum Delivery {
    Datagram(Vec<u8>),
    Stream(Vec<u8>),
    Reply(Vec<u8>),
    /// A datagram to this node index came back "port unreachable".
    Unreachable(usize),
    /// A stream this node opened to the sender connected (its host's
    /// kernel accepted it, whether or not its process is running).
    Connected,
}

/// Called with (node index, node, now, event) for every event.
pub type EventHook = Box<dyn FnMut(usize, &mut Node, Instant, &Event)>;

/// A recorded member event: when, who saw it, what.
pub struct Seen {
    pub at: Instant,
    pub observer: usize,
    pub kind: MemberEventKind,
    pub name: String,
    pub incarnation: u64,
}

pub struct Net {
    pub nodes: Vec<Option<Node>>,
    pub addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    pub now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64, usize, usize)>>,
    payloads: HashMap<u64, Delivery>,
    seq: u64,
    pub latency: Duration,
    pub drop: DropRule,
    /// `drop` applies to stream requests and replies too (the default);
    /// false: streams always arrive (a path where only datagrams are lost).
    pub drop_streams: bool,
    pub events: Vec<Seen>,
    /// User events delivered: when, to whom, which.
    pub user_events: Vec<(Instant, usize, rumor_core::UserEvent)>,
    pub config: Config,
    /// A datagram to a crashed node comes back "port unreachable" (its
    /// process is gone, its host is up), as the kernel's ICMP would say.
    pub refuse_when_down: bool,
    /// Events other than member and user events: when, to whom, which.
    pub other_events: Vec<(Instant, usize, Event)>,
    /// Called with every event a node reports, before its transmits are
    /// sent (to answer queries, say).
    pub on_event: Option<EventHook>,
    /// Datagrams from this node to a crashed one vanish without a report:
    /// they reached the socket just before its process died.
    pub unreported_from: Option<usize>,
    /// Paused nodes (SIGSTOP): no timers run, what arrives waits in
    /// `held` until [`Net::resume`]; their host still accepts streams.
    paused: HashSet<usize>,
    held: Vec<(usize, usize, Delivery)>,
}

pub fn name(i: usize) -> String {
    format!("node-{i:03}")
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl Net {
    /// `n` nodes, not yet joined.
    pub fn new(n: usize, config: Config) -> Net {
        let mut net = Net {
            nodes: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            now: Instant::from_micros(1_000_000),
            queue: BinaryHeap::new(),
            payloads: HashMap::new(),
            seq: 0,
            latency: Duration::from_millis(1),
            drop: Box::new(|_, _, _| false),
            drop_streams: true,
            events: Vec::new(),
            user_events: Vec::new(),
            config,
            refuse_when_down: false,
            other_events: Vec::new(),
            on_event: None,
            unreported_from: None,
            paused: HashSet::new(),
            held: Vec::new(),
        };
        for i in 0..n {
            let addr: SocketAddr = format!("127.0.{}.{}:7946", i / 250, i % 250 + 1)
                .parse()
                .unwrap();
            net.addrs.push(addr);
            net.by_addr.insert(addr, i);
            net.nodes.push(None);
            net.boot(i);
        }
        net
    }

    /// `n` nodes joined through node 0 into one alive view (asserted), and
    /// `spare` more booted but not joined (for late joiners).
    pub fn converged_with_spare(n: usize, spare: usize, config: Config) -> Net {
        let mut net = Net::new(n + spare, config);
        let seed = net.addrs[0];
        for i in 0..n {
            net.with(i, |node, now| node.join(now, &[seed]));
        }
        let all: Vec<usize> = (0..n).collect();
        assert!(
            net.run_until_true(secs(60.0), |net| net.all_see_alive(&all)),
            "{n} nodes did not converge"
        );
        net
    }

    /// `n` nodes joined through node 0 into one alive view (asserted).
    pub fn converged(n: usize, config: Config) -> Net {
        let mut net = Net::new(n, config);
        net.join_all(0);
        let all: Vec<usize> = (0..n).collect();
        assert!(
            net.run_until_true(secs(60.0), |net| net.all_see_alive(&all)),
            "{n} nodes did not converge"
        );
        net
    }

    /// (Re)start node `i` under its name and address, with a fresh state.
    pub fn boot(&mut self, i: usize) {
        let node = Node::new(
            &name(i),
            self.addrs[i],
            self.config.clone(),
            1000 + i as u64 + self.seq,
        )
        .unwrap();
        self.nodes[i] = Some(node);
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn with(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant)) {
        let now = self.now;
        if let Some(node) = self.nodes[i].as_mut() {
            f(node, now);
        }
        self.flush(i);
    }

    /// Every node in `range` joins through node `seed`.
    pub fn join_all(&mut self, seed: usize) {
        let seed_addr = self.addrs[seed];
        for i in 0..self.nodes.len() {
            self.with(i, |n, now| n.join(now, &[seed_addr]));
        }
    }

    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Freeze node `i` (SIGSTOP): its process does nothing, its host is up.
    pub fn pause(&mut self, i: usize) {
        self.paused.insert(i);
    }

    /// Thaw node `i` (SIGCONT): what arrived meanwhile is handled now, in
    /// order, and its overdue timers fire.
    pub fn resume(&mut self, i: usize) {
        self.paused.remove(&i);
        let (mine, rest) = std::mem::take(&mut self.held)
            .into_iter()
            .partition::<Vec<_>, _>(|(_, to, _)| *to == i);
        self.held = rest;
        for (from, to, d) in mine {
            self.deliver(from, to, d);
        }
    }

    /// Move the clock to `until`, delivering packets and firing timers in order.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next_packet = self.queue.peek().map(|Reverse((t, ..))| *t);
            let (timer_node, next_timer) = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.paused.contains(i))
                .filter_map(|(i, n)| n.as_ref().and_then(|n| n.poll_timeout()).map(|t| (i, t)))
                .min_by_key(|&(_, t)| t)
                .map_or((None, None), |(i, t)| (Some(i), Some(t)));
            let next = match (next_packet, next_timer) {
                (Some(p), Some(t)) => p.min(t),
                (Some(p), None) => p,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next;
            if next_packet == Some(next) {
                let Some(Reverse((_, id, from, to))) = self.queue.pop() else {
                    break;
                };
                let payload = self.payloads.remove(&id).expect("payload");
                self.deliver(from, to, payload);
            } else if let Some(i) = timer_node {
                let now = self.now;
                if let Some(n) = self.nodes[i].as_mut() {
                    n.handle_timeout(now);
                }
                self.flush(i);
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Run until `done` holds (checked every 100 ms) or `limit` passes; true if it held.
    pub fn run_until_true(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_for(Duration::from_millis(100));
        }
        done(self)
    }

    fn deliver(&mut self, from: usize, to: usize, d: Delivery) {
        let now = self.now;
        let from_addr = self.addrs[from];
        if self.nodes[to].is_none() {
            let reported = self.unreported_from != Some(from);
            if self.refuse_when_down && reported && matches!(d, Delivery::Datagram(_)) {
                self.send(to, from, Delivery::Unreachable(to));
            }
            return;
        }
        if matches!(d, Delivery::Stream(_)) {
            self.send(to, from, Delivery::Connected);
        }
        if self.paused.contains(&to) {
            self.held.push((from, to, d));
            return;
        }
        let Some(node) = self.nodes[to].as_mut() else {
            return;
        };
        match d {
            Delivery::Connected => node.handle_stream_connected(now, from_addr),
            Delivery::Unreachable(target) => node.handle_unreachable(now, self.addrs[target]),
            Delivery::Datagram(bytes) => node.handle_datagram(now, from_addr, &bytes),
            Delivery::Reply(bytes) => {
                node.handle_stream(now, from_addr, &bytes);
            }
            Delivery::Stream(bytes) => {
                if let Some(reply) = node.handle_stream(now, from_addr, &bytes) {
                    self.send(to, from, Delivery::Reply(reply));
                }
            }
        }
        self.flush(to);
    }

    fn send(&mut self, from: usize, to: usize, d: Delivery) {
        self.seq += 1;
        let stream = matches!(
            d,
            Delivery::Stream(_) | Delivery::Reply(_) | Delivery::Connected
        );
        if (self.drop_streams || !stream) && (self.drop)(from, to, self.seq) {
            return;
        }
        let at = self.now + self.latency;
        self.payloads.insert(self.seq, d);
        self.queue.push(Reverse((at, self.seq, from, to)));
    }

    /// Collect node `i`'s transmits and events.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let mut evs = Vec::new();
        while let Some(e) = node.poll_event() {
            evs.push(e);
        }
        if let Some(hook) = self.on_event.as_mut() {
            let mut k = 0;
            while k < evs.len() {
                hook(i, node, now, &evs[k]);
                while let Some(e) = node.poll_event() {
                    evs.push(e);
                }
                k += 1;
            }
        }
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        for e in evs {
            match e {
                Event::Member { kind, member } => self.events.push(Seen {
                    at: now,
                    observer: i,
                    kind,
                    name: member.name.to_string(),
                    incarnation: member.incarnation,
                }),
                Event::User(ev) => self.user_events.push((now, i, ev)),
                e => self.other_events.push((now, i, e)),
            }
        }
        for t in out {
            let Some(&to) = self.by_addr.get(&t.to) else {
                continue;
            };
            let d = match t.kind {
                TransmitKind::Datagram => Delivery::Datagram(t.payload),
                TransmitKind::Stream => Delivery::Stream(t.payload),
            };
            self.send(i, to, d);
        }
    }

    /// Run until every running node but `victim` holds it dead (checked
    /// every 100 ms) or `limit` passes; true if they all did.
    pub fn run_until_all_dead(&mut self, victim: usize, limit: Duration) -> bool {
        let others: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&i| i != victim)
            .collect();
        self.run_until_true(limit, |net| {
            others
                .iter()
                .all(|&o| net.state_of(o, &name(victim)) == Some(MemberState::Dead))
        })
    }

    /// State of member `name` as node `observer` sees it.
    pub fn state_of(&self, observer: usize, name: &str) -> Option<MemberState> {
        self.nodes[observer].as_ref()?.member(name).map(|m| m.state)
    }

    /// Indices of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Every running node in `group` sees exactly `group` alive, nothing else live.
    pub fn all_see_alive(&self, group: &[usize]) -> bool {
        group.iter().all(|&o| {
            let Some(node) = self.nodes[o].as_ref() else {
                return false;
            };
            let alive: Vec<String> = node
                .members()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.name.to_string())
                .collect();
            alive.len() == group.len()
                && group.iter().all(|&g| alive.contains(&name(g)))
                && node.num_live() == group.len()
        })
    }

    /// Events of `kind` about `who`.
    pub fn seen(&self, kind: MemberEventKind, who: usize) -> impl Iterator<Item = &Seen> {
        let who = name(who);
        self.events
            .iter()
            .filter(move |e| e.kind == kind && e.name == who)
    }
}
