//! HyParView (Leitão, Pereira, Rodrigues, DSN 2007): each node keeps a small
//! symmetric *active view* of neighbours it talks to and probes, and a larger
//! *passive view* of peers it knows of, to replace neighbours that fail.
//!
//! * A joiner contacts one member with `Join`; that member takes it as a
//!   neighbour and sends `ForwardJoin` random walks of `active_walk` hops
//!   down each of its other links. The node where a walk ends (or that has
//!   a single neighbour) connects to the joiner; the node at hop
//!   `passive_walk` stores it in its passive view.
//! * A node whose active view is full and must take a neighbour drops a
//!   random one with `Disconnect` (both keep the other as passive).
//! * Each node probes its neighbours (`Ping`/`Pong`); one silent for
//!   `failure_timeout` is reported failed ([`ViewEvent::Failed`]) and
//!   replaced by a passive peer asked with `Neighbor`: high priority (it
//!   must be taken) when the active view is two or more short, low (taken
//!   if there is room) when it is one short.
//! * Every `shuffle_interval` a node sends a sample of both views on a
//!   random walk (`Shuffle`); where the walk ends the peer answers with a
//!   sample of its passive view, and both merge what they got into their
//!   passive views.
//!
//! Links are symmetric: a message that assumes a link the receiver does not
//! have (a `Ping`) is answered with `Disconnect`, and a neighbour that asks
//! to become one is taken back. Datagrams can overtake each other, so a
//! stale `Disconnect` may break one side of a link; only messages that
//! travel over a link count as hearing from a neighbour, so the other side
//! pings it and learns.

use std::collections::VecDeque;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{sample, Peer};
use crate::time::Instant;

/// HyParView's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewConfig {
    /// Most neighbours (the paper: fanout + 1, 5 at 10,000 nodes).
    pub active_size: usize,
    /// Most passive peers (the paper: 30).
    pub passive_size: usize,
    /// Hops of a join's forward walk (the paper's ARWL: 6).
    pub active_walk: u8,
    /// Hop of a join's forward walk that stores the joiner as passive (the
    /// paper's PRWL: 3).
    pub passive_walk: u8,
    /// Time between shuffles.
    pub shuffle_interval: Duration,
    /// Active peers in a shuffle (the paper's ka: 3).
    pub shuffle_active: usize,
    /// Passive peers in a shuffle (the paper's kp: 4).
    pub shuffle_passive: usize,
    /// A neighbour not heard from for this long is pinged; the node checks
    /// its neighbours (and retries promotions) this often.
    pub probe_interval: Duration,
    /// A neighbour not heard from for this long has failed.
    pub failure_timeout: Duration,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            active_size: 5,
            passive_size: 30,
            active_walk: 6,
            passive_walk: 3,
            shuffle_interval: Duration::from_secs(10),
            shuffle_active: 3,
            shuffle_passive: 4,
            probe_interval: Duration::from_secs(1),
            failure_timeout: Duration::from_secs(4),
        }
    }
}

/// A HyParView message; the sender is known to the receiver from the
/// transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewMessage<P> {
    /// Take me as a neighbour and announce me (sent to the contact).
    Join,
    /// A join's random walk: `joiner` joined, `ttl` hops are left.
    ForwardJoin {
        /// The new node.
        joiner: P,
        /// Hops left.
        ttl: u8,
    },
    /// I took you as a neighbour (where a forward walk ended): take me too.
    Connect,
    /// Take me as a neighbour; `high`: you must.
    Neighbor {
        /// The asker's active view is two or more short.
        high: bool,
    },
    /// The answer to [`ViewMessage::Neighbor`].
    NeighborReply {
        /// Whether the asker is now a neighbour.
        accepted: bool,
    },
    /// I dropped you as a neighbour; `leaving`: I am leaving the cluster
    /// (forget me), else keep me as passive.
    Disconnect {
        /// The sender leaves.
        leaving: bool,
    },
    /// A shuffle's random walk from `origin` with a sample of its views.
    Shuffle {
        /// Who started it (the answer goes there directly).
        origin: P,
        /// Hops left.
        ttl: u8,
        /// The origin and samples of its active and passive views.
        peers: Vec<P>,
    },
    /// The answer to a shuffle: a sample of the passive view.
    ShuffleReply {
        /// The sample.
        peers: Vec<P>,
    },
    /// Are you there? (to a neighbour)
    Ping,
    /// Yes.
    Pong,
}

impl<P> ViewMessage<P> {
    /// The same message naming peers by `f(peer)` (an index as an
    /// address, an address as a name).
    pub fn map_peers<Q>(self, mut f: impl FnMut(P) -> Q) -> ViewMessage<Q> {
        match self {
            ViewMessage::Join => ViewMessage::Join,
            ViewMessage::ForwardJoin { joiner, ttl } => ViewMessage::ForwardJoin {
                joiner: f(joiner),
                ttl,
            },
            ViewMessage::Connect => ViewMessage::Connect,
            ViewMessage::Neighbor { high } => ViewMessage::Neighbor { high },
            ViewMessage::NeighborReply { accepted } => ViewMessage::NeighborReply { accepted },
            ViewMessage::Disconnect { leaving } => ViewMessage::Disconnect { leaving },
            ViewMessage::Shuffle { origin, ttl, peers } => ViewMessage::Shuffle {
                origin: f(origin),
                ttl,
                peers: peers.into_iter().map(f).collect(),
            },
            ViewMessage::ShuffleReply { peers } => ViewMessage::ShuffleReply {
                peers: peers.into_iter().map(f).collect(),
            },
            ViewMessage::Ping => ViewMessage::Ping,
            ViewMessage::Pong => ViewMessage::Pong,
        }
    }
}

/// What the overlay tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewEvent<P> {
    /// A neighbour joined the active view.
    NeighborUp(P),
    /// A neighbour left the active view (dropped, left, or failed).
    NeighborDown(P),
    /// A neighbour stopped answering: the cluster should hear that it
    /// failed. (Follows its `NeighborDown`.)
    Failed(P),
    /// A neighbour said it leaves the cluster (`Disconnect { leaving }`).
    /// (Follows its `NeighborDown`.)
    Left(P),
}

/// One neighbour and when it was last heard from.
#[derive(Clone, Debug)]
struct Neighbor<P> {
    peer: P,
    heard: Instant,
}

/// A promotion in flight: the passive peer asked, and when.
#[derive(Clone, Debug)]
struct Asking<P> {
    peer: P,
    since: Instant,
}

/// One node's HyParView state.
#[derive(Debug)]
pub struct HyParView<P> {
    me: P,
    config: ViewConfig,
    rng: Xoshiro256PlusPlus,
    active: Vec<Neighbor<P>>,
    passive: Vec<P>,
    /// The passive peer asked to become a neighbour.
    asking: Option<Asking<P>>,
    /// Passive peers that refused since the last tick (not asked again
    /// before it).
    refused: Vec<P>,
    /// The peers sent in the last shuffle (evicted first when its answer
    /// arrives).
    shuffled: Vec<P>,
    /// Peers given to `join`, asked again while the node has no peers.
    contacts: Vec<P>,
    next_tick: Instant,
    next_shuffle: Instant,
    out: VecDeque<(P, ViewMessage<P>)>,
    events: VecDeque<ViewEvent<P>>,
}

impl<P: Peer> HyParView<P> {
    /// A node named `me` that knows no one yet; `seed` drives its choices.
    pub fn new(me: P, config: ViewConfig, seed: u64, now: Instant) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let first_shuffle = jitter(&mut rng, config.shuffle_interval);
        HyParView {
            me,
            rng,
            active: Vec::with_capacity(config.active_size),
            passive: Vec::new(),
            asking: None,
            refused: Vec::new(),
            shuffled: Vec::new(),
            contacts: Vec::new(),
            next_tick: now + config.probe_interval,
            next_shuffle: now + first_shuffle,
            out: VecDeque::new(),
            events: VecDeque::new(),
            config,
        }
    }

    /// Join through `contacts` (one is asked; the others are asked while
    /// this node's view is two or more short and it has no passive peers,
    /// as it then shuffles every tick).
    pub fn join(&mut self, now: Instant, contacts: &[P]) {
        self.contacts = contacts
            .iter()
            .filter(|c| **c != self.me)
            .cloned()
            .collect();
        self.join_contact(now);
        // A joiner knows only its contact: shuffle soon for passive peers
        // beyond it (in a cold start, every node knows the same one).
        self.next_shuffle = now + jitter(&mut self.rng, self.config.probe_interval);
    }

    /// Join through a random contact that is not a neighbour already.
    fn join_contact(&mut self, now: Instant) {
        let neighbors: Vec<P> = self.active().cloned().collect();
        let skip: Vec<&P> = neighbors.iter().collect();
        let Some(contact) = sample(&mut self.rng, &self.contacts, 1, &skip).pop() else {
            return;
        };
        self.add_active(now, contact.clone());
        self.send(contact, ViewMessage::Join);
    }

    /// Ask `peer`, a peer this node lost touch with (one believed failed,
    /// across what may have been a partition), to announce this node as a
    /// joiner: the `Join` a joiner sends, whose forward walks end in nodes
    /// of `peer`'s side that connect to this one, so that two overlays
    /// that drifted apart become one again. This node's view is not
    /// touched (the link `peer` keeps to it lapses: this node answers it
    /// with `Disconnect`), so a peer that is really gone costs one
    /// datagram and no neighbour.
    pub fn reach(&mut self, peer: P) {
        if peer != self.me && !self.is_neighbor(&peer) {
            self.send(peer, ViewMessage::Join);
        }
    }

    /// Leave: tell every neighbour to forget this node.
    pub fn leave(&mut self) {
        for n in std::mem::take(&mut self.active) {
            self.send(n.peer.clone(), ViewMessage::Disconnect { leaving: true });
            self.events.push_back(ViewEvent::NeighborDown(n.peer));
        }
        self.passive.clear();
        self.contacts.clear();
    }

    /// This node.
    pub fn me(&self) -> &P {
        &self.me
    }

    /// The neighbours.
    pub fn active(&self) -> impl Iterator<Item = &P> {
        self.active.iter().map(|n| &n.peer)
    }

    /// The passive peers.
    pub fn passive(&self) -> &[P] {
        &self.passive
    }

    /// Whether `peer` is a neighbour.
    pub fn is_neighbor(&self, peer: &P) -> bool {
        self.active.iter().any(|n| n.peer == *peer)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(P, ViewMessage<P>)> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ViewEvent<P>> {
        self.events.pop_front()
    }

    /// When [`HyParView::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// Something else (a broadcast) arrived from `from`: a neighbour that
    /// speaks is alive.
    pub fn heard(&mut self, now: Instant, from: &P) {
        if let Some(n) = self.active.iter_mut().find(|n| n.peer == *from) {
            n.heard = now;
        }
    }

    /// Handle `msg` from `from`.
    pub fn handle(&mut self, now: Instant, from: P, msg: ViewMessage<P>) {
        if from == self.me {
            return;
        }
        // Only what travels over a link shows the link is alive: a
        // neighbour that asks to become one (or answers a shuffle) may not
        // hold this node as a neighbour at all.
        let over_link = !matches!(
            msg,
            ViewMessage::Neighbor { .. }
                | ViewMessage::NeighborReply { .. }
                | ViewMessage::ShuffleReply { .. }
        );
        if over_link {
            self.heard(now, &from);
        }
        match msg {
            ViewMessage::Join => {
                self.add_active(now, from.clone());
                let walk = ViewMessage::ForwardJoin {
                    joiner: from.clone(),
                    ttl: self.config.active_walk,
                };
                let others: Vec<P> = self.active().filter(|p| **p != from).cloned().collect();
                for p in others {
                    self.send(p, walk.clone());
                }
            }
            ViewMessage::ForwardJoin { joiner, ttl } => self.forward_join(now, from, joiner, ttl),
            ViewMessage::Connect => self.add_active(now, from),
            ViewMessage::Neighbor { high } => {
                // A neighbour that asks lost its side of the link (a stale
                // disconnect overtook a newer request): it is taken back.
                let accepted =
                    high || self.is_neighbor(&from) || self.active.len() < self.config.active_size;
                if accepted {
                    self.add_active(now, from.clone());
                } else {
                    self.add_passive(from.clone());
                }
                self.send(from, ViewMessage::NeighborReply { accepted });
            }
            ViewMessage::NeighborReply { accepted } => {
                if self.asking.as_ref().is_some_and(|a| a.peer == from) {
                    self.asking = None;
                }
                if accepted {
                    self.add_active(now, from);
                } else {
                    self.refused.push(from);
                }
                self.refill(now);
            }
            ViewMessage::Disconnect { leaving } => {
                if self.remove_active(&from) {
                    self.events.push_back(ViewEvent::NeighborDown(from.clone()));
                }
                if leaving {
                    self.passive.retain(|p| *p != from);
                    self.events.push_back(ViewEvent::Left(from));
                } else {
                    // Not asked back before the next tick: its view is full,
                    // and a high-priority request would make it drop
                    // another, which would ask it back in turn.
                    self.refused.push(from.clone());
                    self.add_passive(from);
                }
                self.refill(now);
            }
            ViewMessage::Shuffle { origin, ttl, peers } => {
                self.shuffle_hop(from, origin, ttl, peers)
            }
            ViewMessage::ShuffleReply { peers } => {
                let sent = std::mem::take(&mut self.shuffled);
                self.merge_passive(peers, &sent);
            }
            ViewMessage::Ping => {
                if self.is_neighbor(&from) {
                    self.send(from, ViewMessage::Pong);
                } else if self.asking.as_ref().is_some_and(|a| a.peer == from) {
                    // Its acceptance is still on the way.
                    self.asking = None;
                    self.add_active(now, from.clone());
                    self.send(from, ViewMessage::Pong);
                } else {
                    self.send(from, ViewMessage::Disconnect { leaving: false });
                }
            }
            ViewMessage::Pong => {}
        }
    }

    /// Time passed: probe neighbours, drop the silent ones, shuffle, and
    /// fill the active view.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.config.probe_interval;
        let mut failed = Vec::new();
        for n in &self.active {
            let silent = now.saturating_since(n.heard);
            if silent >= self.config.failure_timeout {
                failed.push(n.peer.clone());
            } else if silent >= self.config.probe_interval {
                self.out.push_back((n.peer.clone(), ViewMessage::Ping));
            }
        }
        for peer in failed {
            self.remove_active(&peer);
            self.passive.retain(|p| *p != peer);
            self.events.push_back(ViewEvent::NeighborDown(peer.clone()));
            self.events.push_back(ViewEvent::Failed(peer));
        }
        if let Some(a) = &self.asking {
            if now.saturating_since(a.since) >= self.config.probe_interval {
                // No answer: it is gone.
                let peer = a.peer.clone();
                self.passive.retain(|p| *p != peer);
                self.asking = None;
            }
        }
        self.refused.clear();
        // Two or more short with no passive peer to ask: shuffle now for
        // some, and join again through a contact that is not a neighbour
        // (an island of survivors, or a node that knows no one alive).
        let stuck = self.two_short() && self.passive.is_empty() && self.asking.is_none();
        if now >= self.next_shuffle || stuck {
            self.next_shuffle = now + jitter(&mut self.rng, self.config.shuffle_interval);
            self.shuffle();
        }
        if stuck {
            self.join_contact(now);
        }
        self.refill(now);
    }

    fn forward_join(&mut self, now: Instant, from: P, joiner: P, ttl: u8) {
        if joiner == self.me {
            return;
        }
        if ttl == 0 || self.active.len() <= 1 {
            self.connect(now, joiner);
            return;
        }
        if ttl == self.config.passive_walk {
            self.add_passive(joiner.clone());
        }
        let next = self.random_neighbor(&[&from, &joiner]);
        match next {
            Some(next) => self.send(
                next,
                ViewMessage::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                },
            ),
            None => self.connect(now, joiner),
        }
    }

    /// A join's walk ends here: take the joiner and tell it so.
    fn connect(&mut self, now: Instant, joiner: P) {
        if !self.is_neighbor(&joiner) {
            self.add_active(now, joiner.clone());
            self.send(joiner, ViewMessage::Connect);
        }
    }

    /// Whether the active view is two or more short.
    fn two_short(&self) -> bool {
        self.active.len() + 2 <= self.config.active_size
    }

    fn shuffle(&mut self) {
        let Some(target) = self.random_neighbor(&[]) else {
            return;
        };
        let actives: Vec<P> = self.active().cloned().collect();
        let mut peers = vec![self.me.clone()];
        peers.extend(sample(
            &mut self.rng,
            &actives,
            self.config.shuffle_active,
            &[&target],
        ));
        peers.extend(sample(
            &mut self.rng,
            &self.passive,
            self.config.shuffle_passive,
            &[],
        ));
        self.shuffled = peers[1..].to_vec();
        let ttl = self.config.active_walk;
        self.send(
            target,
            ViewMessage::Shuffle {
                origin: self.me.clone(),
                ttl,
                peers,
            },
        );
    }

    fn shuffle_hop(&mut self, from: P, origin: P, ttl: u8, peers: Vec<P>) {
        if origin == self.me {
            return;
        }
        if ttl > 1 && self.active.len() > 1 {
            if let Some(next) = self.random_neighbor(&[&from, &origin]) {
                let walk = ViewMessage::Shuffle {
                    origin,
                    ttl: ttl - 1,
                    peers,
                };
                self.send(next, walk);
                return;
            }
        }
        let answer = sample(&mut self.rng, &self.passive, peers.len(), &[&origin]);
        self.send(
            origin,
            ViewMessage::ShuffleReply {
                peers: answer.clone(),
            },
        );
        self.merge_passive(peers, &answer);
    }

    /// Ask a passive peer to become a neighbour while the active view has
    /// room and no one is being asked.
    fn refill(&mut self, now: Instant) {
        if self.active.len() >= self.config.active_size || self.asking.is_some() {
            return;
        }
        let skip: Vec<&P> = self.refused.iter().collect();
        let Some(peer) = sample(&mut self.rng, &self.passive, 1, &skip).pop() else {
            return;
        };
        // Two or more short: ask to be taken even by a full peer, which
        // drops one of its own (that one is then one short, which is
        // normal). Otherwise a node whose passive peers all have full views
        // would stay short for good. (The paper asks so only with an empty
        // view.)
        let high = self.active.is_empty() || self.two_short();
        self.asking = Some(Asking {
            peer: peer.clone(),
            since: now,
        });
        self.send(peer, ViewMessage::Neighbor { high });
    }

    /// Take `peer` as a neighbour, dropping a random one if the view is full.
    fn add_active(&mut self, now: Instant, peer: P) {
        if peer == self.me || self.is_neighbor(&peer) {
            return;
        }
        if self.active.len() >= self.config.active_size {
            let i = self.rng.random_range(0..self.active.len());
            let dropped = self.active.swap_remove(i).peer;
            self.send(dropped.clone(), ViewMessage::Disconnect { leaving: false });
            self.events
                .push_back(ViewEvent::NeighborDown(dropped.clone()));
            self.add_passive(dropped);
        }
        self.passive.retain(|p| *p != peer);
        if self.asking.as_ref().is_some_and(|a| a.peer == peer) {
            self.asking = None;
        }
        self.active.push(Neighbor {
            peer: peer.clone(),
            heard: now,
        });
        self.events.push_back(ViewEvent::NeighborUp(peer));
    }

    fn remove_active(&mut self, peer: &P) -> bool {
        match self.active.iter().position(|n| n.peer == *peer) {
            Some(i) => {
                self.active.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn add_passive(&mut self, peer: P) {
        self.merge_passive(vec![peer], &[]);
    }

    /// Add `peers` to the passive view, evicting first those in `evict`,
    /// then random ones, when it is full.
    fn merge_passive(&mut self, peers: Vec<P>, evict: &[P]) {
        let mut evict: Vec<&P> = evict.iter().collect();
        for peer in peers {
            if peer == self.me || self.is_neighbor(&peer) || self.passive.contains(&peer) {
                continue;
            }
            if self.passive.len() >= self.config.passive_size {
                let i = evict
                    .pop()
                    .and_then(|e| self.passive.iter().position(|p| p == e))
                    .unwrap_or_else(|| self.rng.random_range(0..self.passive.len()));
                self.passive.swap_remove(i);
            }
            if self.config.passive_size > 0 {
                self.passive.push(peer);
            }
        }
    }

    fn random_neighbor(&mut self, skip: &[&P]) -> Option<P> {
        let actives: Vec<P> = self.active().cloned().collect();
        sample(&mut self.rng, &actives, 1, skip).pop()
    }

    fn send(&mut self, to: P, msg: ViewMessage<P>) {
        self.out.push_back((to, msg));
    }
}

/// `interval` scaled by a random factor in [0.5, 1.5).
fn jitter(rng: &mut impl Rng, interval: Duration) -> Duration {
    interval.mul_f64(rng.random_range(0.5..1.5))
}
