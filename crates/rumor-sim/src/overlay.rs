//! Partial membership at scale: clusters of rumor-core's HyParView overlay
//! with Plumtree broadcast trees over it ([`rumor_core::overlay`]), driven
//! directly by index (no names, addresses or codec), so that 100,000 nodes
//! fit in one process. Each message takes a uniform random latency and may
//! be lost; a crashed node is silent (its messages vanish, it sends none).
//!
//! It measures what the papers measure: a broadcast's reliability (the
//! fraction of live nodes that delivered it), its relative message
//! redundancy (RMR: payload messages per delivery beyond the first, minus
//! one), its last-delivery hop (LDH) and time; the overlay's health (every
//! live node's active view full, symmetric, free of dead neighbours, one
//! connected component); and, with `announce_failures`, how long the
//! cluster takes to hear of a crash (each neighbour that detects it
//! broadcasts it on the tree).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rumor_core::codec;
use rumor_core::message::Message;
use rumor_core::overlay::hyparview::{HyParView, ViewConfig, ViewEvent, ViewMessage};
use rumor_core::overlay::plumtree::{MessageId, Plumtree, TreeConfig, TreeMessage};
use rumor_core::Instant;

use crate::event_queue::EventQueue;
use crate::Micros;

/// Broadcast ids at and above this announce a failure: the failed node's
/// index is the rest (so every detector of one failure broadcasts the same
/// message, and the tree delivers it once).
const FAILURE: MessageId = 1 << 62;

/// How the simulated network and the protocols are set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Random seed of the network and the nodes.
    pub seed: u64,
    /// Least one-way latency, microseconds.
    pub latency_min: Micros,
    /// Most one-way latency, microseconds.
    pub latency_max: Micros,
    /// Probability that a message is lost.
    pub loss: f64,
    /// HyParView's parameters.
    pub view: ViewConfig,
    /// Plumtree's parameters.
    pub tree: TreeConfig,
    /// Neighbours that detect a failure broadcast it.
    pub announce_failures: bool,
    /// Count the bytes each message takes in rumor's wire format (a
    /// datagram of its own, peers as IPv4 addresses, empty payloads):
    /// slower, so off unless asked.
    pub count_bytes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            latency_min: 5_000,
            latency_max: 25_000,
            loss: 0.0,
            view: ViewConfig::default(),
            tree: TreeConfig::default(),
            announce_failures: false,
            count_bytes: false,
        }
    }
}

enum Wire {
    View(ViewMessage<u32>),
    Tree(TreeMessage<()>),
}

enum What {
    Deliver { from: u32, to: u32, wire: Wire },
    Wake(u32),
    Join { node: u32, contacts: Vec<u32> },
}

struct Slot {
    view: HyParView<u32>,
    tree: Plumtree<u32, ()>,
    up: bool,
    /// The wake-up in the queue, if any.
    wake: Option<Micros>,
}

/// How far one broadcast got.
#[derive(Clone, Debug, Default)]
pub struct Spread {
    /// When it was sent.
    pub sent_at: Micros,
    /// Live nodes when it was sent.
    pub live_at_send: u32,
    /// Deliveries (its origin included).
    pub reached: u32,
    /// Deliveries to a node that had delivered it already.
    pub duplicates: u32,
    /// When the last delivery happened.
    pub last_at: Micros,
    /// The largest hop count of a delivery.
    pub max_round: u16,
    /// Payload messages sent for it.
    pub payloads: u64,
    /// Which nodes delivered it (those created before it was sent).
    seen: Vec<u64>,
}

impl Spread {
    /// Payload messages per delivery beyond the first, minus one (0 for a
    /// perfect tree).
    pub fn rmr(&self) -> f64 {
        if self.reached <= 1 {
            return 0.0;
        }
        self.payloads as f64 / (self.reached - 1) as f64 - 1.0
    }
}

/// Messages sent, by kind.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// HyParView messages (joins, walks, shuffles, pings ...).
    pub view: u64,
    /// Plumtree payload messages.
    pub payloads: u64,
    /// Plumtree announcements, grafts and prunes.
    pub control: u64,
    /// Bytes of all of them on the wire, with [`Options::count_bytes`].
    pub bytes: u64,
}

/// The overlay's health at one instant (live nodes only).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// Live nodes.
    pub live: usize,
    /// Live nodes with two or more free places in their active view (of
    /// the configured size, or of every other live node in a smaller
    /// cluster). One free place is normal: a node whose passive peers all
    /// have full views is refused by each and stays one short.
    pub not_full: usize,
    /// Links one way only (a has b, b lacks a).
    pub asymmetric: usize,
    /// Active-view entries naming a crashed node.
    pub dead_neighbors: usize,
    /// Entries naming the node itself, or views over their size.
    pub malformed: usize,
    /// Connected components of the live nodes' active links.
    pub components: usize,
}

impl Health {
    /// Every live node has a full (or one short), symmetric view of live
    /// neighbours, all connected.
    pub fn healed(&self) -> bool {
        self.not_full == 0
            && self.asymmetric == 0
            && self.dead_neighbors == 0
            && self.malformed == 0
            && self.components <= 1
    }

    /// The view invariants that must hold at any time: no self links, no
    /// view over its size.
    pub fn well_formed(&self) -> bool {
        self.malformed == 0
    }
}

/// A simulated partial-membership cluster.
pub struct Overlay {
    opts: Options,
    now: Micros,
    nodes: Vec<Slot>,
    queue: EventQueue<What>,
    rng: Xoshiro256PlusPlus,
    spreads: HashMap<MessageId, Spread>,
    live: u32,
    traffic: Traffic,
    /// Failures noticed by a neighbour: (failed node, when first noticed,
    /// whether it had really crashed).
    detections: Vec<(u32, Micros, bool)>,
}

impl Overlay {
    /// A cluster of `nodes` nodes not started yet.
    pub fn new(nodes: usize, opts: Options) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(opts.seed);
        let slots = (0..nodes as u32)
            .map(|i| Slot {
                view: HyParView::new(i, opts.view.clone(), rng.random(), Instant::ZERO),
                tree: Plumtree::new(opts.tree.clone()),
                up: false,
                wake: None,
            })
            .collect();
        Overlay {
            opts,
            now: 0,
            nodes: slots,
            queue: EventQueue::default(),
            rng,
            spreads: HashMap::new(),
            live: 0,
            traffic: Traffic::default(),
            detections: Vec::new(),
        }
    }

    /// Start every node over `spread`: node 0 first, then each joins
    /// through a random node started before it (of three it knows).
    pub fn join_all(&mut self, spread: Duration) {
        let n = self.nodes.len() as u64;
        let first = self.now;
        self.start(0);
        for i in 1..n {
            let at = first + spread.as_micros() as u64 * i / n.max(1);
            // Like an agent's seeds: up to three earlier nodes to try.
            let contacts = (0..3).map(|_| self.rng.random_range(0..i) as u32).collect();
            self.push(
                at,
                What::Join {
                    node: i as u32,
                    contacts,
                },
            );
        }
    }

    /// Start every node at once, all joining through node 0 (a cold start
    /// of the whole cluster: a join storm).
    pub fn join_storm(&mut self) {
        self.start(0);
        for i in 1..self.nodes.len() as u32 {
            self.push(
                self.now,
                What::Join {
                    node: i,
                    contacts: vec![0],
                },
            );
        }
    }

    /// Add a node that joins now through one of `contacts` (the others are
    /// tried while it knows no one); its index.
    pub fn add_node(&mut self, contacts: &[u32]) -> u32 {
        let i = self.nodes.len() as u32;
        let seed = self.rng.random();
        self.nodes.push(Slot {
            view: HyParView::new(i, self.opts.view.clone(), seed, self.instant()),
            tree: Plumtree::new(self.opts.tree.clone()),
            up: false,
            wake: None,
        });
        let contacts = contacts.to_vec();
        self.push(self.now, What::Join { node: i, contacts });
        i
    }

    /// Nodes ever created.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was ever created.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: u32) -> bool {
        self.nodes.get(i as usize).is_some_and(|s| s.up)
    }

    /// Node `i`'s HyParView state.
    pub fn view(&self, i: u32) -> Option<&HyParView<u32>> {
        self.nodes.get(i as usize).map(|s| &s.view)
    }

    /// Live nodes.
    pub fn live(&self) -> u32 {
        self.live
    }

    /// The simulated time.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Messages sent so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Failures noticed so far: (node, first noticed, really crashed).
    pub fn detections(&self) -> &[(u32, Micros, bool)] {
        &self.detections
    }

    /// How far broadcast `id` got.
    pub fn spread(&self, id: MessageId) -> Option<&Spread> {
        self.spreads.get(&id)
    }

    /// How far the announcement of node `i`'s failure got.
    pub fn failure_spread(&self, i: u32) -> Option<&Spread> {
        self.spreads.get(&(FAILURE | i as u64))
    }

    /// A random live node.
    pub fn random_live(&mut self) -> Option<u32> {
        if self.live == 0 {
            return None;
        }
        loop {
            let i = self.rng.random_range(0..self.nodes.len()) as u32;
            if self.nodes[i as usize].up {
                return Some(i);
            }
        }
    }

    /// Crash node `i` silently: it neither sends nor receives again.
    pub fn crash(&mut self, i: u32) {
        if let Some(s) = self.nodes.get_mut(i as usize) {
            if s.up {
                s.up = false;
                self.live -= 1;
            }
        }
    }

    /// Crash `fraction` of the live nodes at once, chosen at random.
    pub fn crash_fraction(&mut self, fraction: f64) -> Vec<u32> {
        let mut up: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| self.nodes[i as usize].up)
            .collect();
        let k = (up.len() as f64 * fraction).round() as usize;
        for j in 0..k {
            let r = self.rng.random_range(j..up.len());
            up.swap(j, r);
        }
        up.truncate(k);
        for &i in &up {
            self.crash(i);
        }
        up
    }

    /// Node `origin` broadcasts message `id` now.
    pub fn broadcast(&mut self, origin: u32, id: MessageId) {
        let now = self.instant();
        let spread = self.new_spread();
        self.spreads.insert(id, spread);
        self.nodes[origin as usize].tree.broadcast(now, id, ());
        self.flush(origin);
    }

    fn new_spread(&self) -> Spread {
        Spread {
            sent_at: self.now,
            live_at_send: self.live,
            seen: vec![0; self.nodes.len().div_ceil(64)],
            ..Spread::default()
        }
    }

    /// Whether every node live now delivered the broadcast of `spread`.
    pub fn reached_all_live(&self, spread: &Spread) -> bool {
        self.nodes.iter().enumerate().all(|(i, s)| {
            !s.up
                || spread
                    .seen
                    .get(i / 64)
                    .is_some_and(|w| w & (1 << (i % 64)) != 0)
        })
    }

    /// Run until `until`.
    pub fn run_until(&mut self, until: Micros) {
        while let Some((at, what)) = self.queue.pop_until(until) {
            self.now = at;
            self.step(what);
        }
        self.now = self.now.max(until);
    }

    fn step(&mut self, what: What) {
        let now = self.instant();
        match what {
            What::Join { node, contacts } => {
                self.start(node);
                self.nodes[node as usize].view.join(now, &contacts);
                self.flush(node);
            }
            What::Wake(i) => {
                let s = &mut self.nodes[i as usize];
                if !s.up || s.wake != Some(self.now) {
                    return;
                }
                s.wake = None;
                s.view.handle_timeout(now);
                s.tree.handle_timeout(now);
                self.flush(i);
            }
            What::Deliver { from, to, wire } => {
                let s = &mut self.nodes[to as usize];
                if !s.up {
                    return;
                }
                match wire {
                    Wire::View(m) => s.view.handle(now, from, m),
                    Wire::Tree(m) => {
                        s.view.heard(now, &from);
                        s.tree.handle(now, from, m);
                    }
                }
                self.flush(to);
            }
        }
    }

    fn start(&mut self, i: u32) {
        let s = &mut self.nodes[i as usize];
        if !s.up {
            s.up = true;
            self.live += 1;
        }
    }

    fn instant(&self) -> Instant {
        Instant::from_micros(self.now)
    }

    /// Carry out what node `i` wants sent, delivered and woken for.
    fn flush(&mut self, i: u32) {
        let now = self.instant();
        loop {
            let mut busy = false;
            while let Some(ev) = self.nodes[i as usize].view.poll_event() {
                busy = true;
                let s = &mut self.nodes[i as usize];
                match ev {
                    ViewEvent::NeighborUp(p) => s.tree.neighbor_up(p),
                    ViewEvent::NeighborDown(p) => s.tree.neighbor_down(&p),
                    ViewEvent::Failed(p) => {
                        if self.opts.announce_failures {
                            let id = FAILURE | p as u64;
                            if !self.spreads.contains_key(&id) {
                                let crashed = !self.nodes[p as usize].up;
                                self.detections.push((p, self.now, crashed));
                                let spread = self.new_spread();
                                self.spreads.insert(id, spread);
                            }
                            self.nodes[i as usize].tree.broadcast(now, id, ());
                        }
                    }
                    // The model's nodes crash; none leaves.
                    ViewEvent::Left(_) => {}
                }
            }
            while let Some((to, m)) = self.nodes[i as usize].view.poll_transmit() {
                busy = true;
                self.traffic.view += 1;
                self.send(i, to, Wire::View(m));
            }
            while let Some((to, m)) = self.nodes[i as usize].tree.poll_transmit() {
                busy = true;
                if let TreeMessage::Gossip { id, .. } = &m {
                    self.traffic.payloads += 1;
                    if let Some(s) = self.spreads.get_mut(id) {
                        s.payloads += 1;
                    }
                } else {
                    self.traffic.control += 1;
                }
                self.send(i, to, Wire::Tree(m));
            }
            while let Some(d) = self.nodes[i as usize].tree.poll_delivered() {
                busy = true;
                if let Some(s) = self.spreads.get_mut(&d.id) {
                    let word = i as usize / 64;
                    let bit = 1u64 << (i % 64);
                    if s.seen.get(word).is_some_and(|w| w & bit != 0) {
                        s.duplicates += 1;
                    } else {
                        if let Some(w) = s.seen.get_mut(word) {
                            *w |= bit;
                        }
                        s.reached += 1;
                        s.last_at = self.now;
                        s.max_round = s.max_round.max(d.round);
                    }
                }
            }
            if !busy {
                break;
            }
        }
        let s = &mut self.nodes[i as usize];
        let due = s.view.poll_timeout();
        let due = s.tree.poll_timeout().map_or(due, |t| t.min(due));
        let due = due.as_micros().max(self.now);
        if s.wake.is_none_or(|w| due < w) {
            s.wake = Some(due);
            self.push(due, What::Wake(i));
        }
    }

    fn send(&mut self, from: u32, to: u32, wire: Wire) {
        if self.opts.count_bytes {
            self.traffic.bytes += wire_len(&wire) as u64;
        }
        if self.opts.loss > 0.0 && self.rng.random_bool(self.opts.loss.min(1.0)) {
            return;
        }
        let (lo, hi) = (
            self.opts.latency_min,
            self.opts.latency_max.max(self.opts.latency_min),
        );
        let at = self.now + self.rng.random_range(lo..=hi);
        self.push(at, What::Deliver { from, to, wire });
    }

    fn push(&mut self, at: Micros, what: What) {
        self.queue.push(at, what);
    }

    /// The overlay's health now.
    pub fn health(&self) -> Health {
        let n = self.nodes.len();
        let live = self.live as usize;
        let size = self.opts.view.active_size;
        let mut h = Health {
            live,
            ..Health::default()
        };
        let mut parent: Vec<u32> = (0..n as u32).collect();
        for (i, s) in self.nodes.iter().enumerate() {
            if !s.up {
                continue;
            }
            let active: Vec<u32> = s.view.active().copied().collect();
            if active.len() > size || active.contains(&(i as u32)) {
                h.malformed += 1;
            }
            let mut live_neighbors = 0;
            for &p in &active {
                let Some(other) = self.nodes.get(p as usize) else {
                    h.malformed += 1;
                    continue;
                };
                if !other.up {
                    h.dead_neighbors += 1;
                    continue;
                }
                live_neighbors += 1;
                if !other.view.is_neighbor(&(i as u32)) {
                    h.asymmetric += 1;
                }
                union(&mut parent, i as u32, p);
            }
            if live_neighbors + 1 < size.min(live) {
                h.not_full += 1;
            }
        }
        h.components = (0..n as u32)
            .filter(|&i| self.nodes[i as usize].up && find(&mut parent, i) == i)
            .count();
        h
    }

    /// Run in steps of `step` until the overlay is healed or `until`; the
    /// time it healed.
    pub fn run_until_healed(&mut self, step: Micros, until: Micros) -> Option<Micros> {
        while self.now < until {
            if self.health().healed() {
                return Some(self.now);
            }
            let next = (self.now + step).min(until);
            self.run_until(next);
        }
        self.health().healed().then_some(self.now)
    }
}

/// Bytes `wire` takes as a datagram of its own in rumor's wire format.
fn wire_len(wire: &Wire) -> usize {
    let addr = |i: u32| {
        let [_, a, b, c] = i.to_be_bytes();
        SocketAddr::new(Ipv4Addr::new(127, a, b, c).into(), 7946)
    };
    let msg = match wire {
        Wire::View(m) => Message::View(m.clone().map_peers(addr)),
        Wire::Tree(m) => Message::Tree(m.clone().map_payload(|()| Vec::new())),
    };
    codec::encode_packet(&msg).len()
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let up = parent[parent[i as usize] as usize];
        parent[i as usize] = up;
        i = up;
    }
    i
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb) as usize] = ra.min(rb);
    }
}
