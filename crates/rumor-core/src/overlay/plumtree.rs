//! Plumtree (Leitão, Pereira, Rodrigues, SRDS 2007): epidemic broadcast
//! trees over the overlay's neighbours.
//!
//! Each node splits its neighbours into *eager* peers, which get every
//! message in full (`Gossip`), and *lazy* peers, which get only its id
//! (`IHave`). All start eager; a node that receives a message twice prunes
//! the second sender to lazy (`Prune`), so the eager links settle into a
//! spanning tree. A node that hears of a message by `IHave` and does not
//! get it within `graft_timeout` asks an announcer for it (`Graft`), which
//! also makes that link eager again: the tree repairs itself after
//! failures. Received messages are kept for `retention` to answer grafts.
//!
//! The first messages' arrival order shapes the tree, not the hop counts,
//! so a node that hears by `IHave` of a message it got that would have
//! come `optimize_hops` or more hops sooner over the announcer's link swaps
//! the two: it grafts the announcer (asking for nothing) and prunes the
//! link it got the message over (the paper's optimisation). Off by
//! default: with broadcasts from random origins it made the last-delivery
//! hop count worse in the simulator (N = 10,000: 23 hops without, 30 with
//! `optimize_hops = 7`), since a swap that shortens one origin's path can
//! lengthen another's.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::Peer;
use crate::time::Instant;

/// A broadcast's identifier, unique in the cluster (the driver derives it,
/// e.g. from the origin and a sequence number).
pub type MessageId = u64;

/// Most ids in one `IHave` (about 700 bytes, well within a datagram).
const IHAVE_BATCH: usize = 64;

/// Plumtree's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeConfig {
    /// How long a node waits for a message announced by `IHave` before it
    /// grafts the first announcer.
    pub graft_timeout: Duration,
    /// How long it then waits for each further announcer.
    pub regraft_timeout: Duration,
    /// How long a received message is kept to answer grafts and to
    /// recognise duplicates.
    pub retention: Duration,
    /// Hops an announcer's link must save to replace the eager one a
    /// message came over (the paper: 7); `None`: never replaced.
    pub optimize_hops: Option<u16>,
    /// How long announcements (`IHave`) wait to go out together: one
    /// message per lazy peer per batch instead of one per broadcast (zero:
    /// each at once). Well below `graft_timeout`.
    pub ihave_delay: Duration,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            graft_timeout: Duration::from_millis(200),
            regraft_timeout: Duration::from_millis(100),
            retention: Duration::from_secs(60),
            optimize_hops: None,
            ihave_delay: Duration::from_millis(50),
        }
    }
}

/// A Plumtree message; the sender is known from the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeMessage<M> {
    /// A broadcast, `round` hops from its origin.
    Gossip {
        /// Its id.
        id: MessageId,
        /// Hops so far.
        round: u16,
        /// Its payload.
        payload: M,
    },
    /// I have these (id, round) messages.
    IHave(Vec<(MessageId, u16)>),
    /// Keep sending me messages in full, and send me `id` if given.
    Graft {
        /// The message wanted, if any.
        id: Option<MessageId>,
    },
    /// I got that twice: send me only ids from now on.
    Prune,
}

impl<M> TreeMessage<M> {
    /// The same message with its payload (if any) replaced by `f(payload)`.
    pub fn map_payload<N>(self, f: impl FnOnce(M) -> N) -> TreeMessage<N> {
        match self {
            TreeMessage::Gossip { id, round, payload } => TreeMessage::Gossip {
                id,
                round,
                payload: f(payload),
            },
            TreeMessage::IHave(ids) => TreeMessage::IHave(ids),
            TreeMessage::Graft { id } => TreeMessage::Graft { id },
            TreeMessage::Prune => TreeMessage::Prune,
        }
    }
}

/// A broadcast delivered to this node's application, once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered<M> {
    /// Its id.
    pub id: MessageId,
    /// Hops from its origin (0 for this node's own).
    pub round: u16,
    /// Its payload.
    pub payload: M,
}

/// A message this node has, kept until it expires.
#[derive(Clone, Debug)]
struct Kept<P, M> {
    round: u16,
    payload: M,
    /// Who it came from (`None`: this node's own).
    parent: Option<P>,
}

/// One node's Plumtree state.
#[derive(Debug)]
pub struct Plumtree<P, M> {
    config: TreeConfig,
    eager: Vec<P>,
    lazy: Vec<P>,
    kept: HashMap<MessageId, Kept<P, M>>,
    /// Ids in the order they arrived, for expiry.
    arrivals: VecDeque<(Instant, MessageId)>,
    /// Announcers of messages not received yet, in announcement order.
    missing: HashMap<MessageId, VecDeque<(P, u16)>>,
    /// When to graft the next announcer of a missing message.
    grafts: VecDeque<(Instant, MessageId)>,
    out: VecDeque<(P, TreeMessage<M>)>,
    delivered: VecDeque<Delivered<M>>,
    /// Messages sent in full (`Gossip`), for the relative redundancy.
    gossip_sent: u64,
    /// Announcements waiting for the batch to go out, per lazy peer.
    ihaves: Vec<(P, Vec<(MessageId, u16)>)>,
    /// When the waiting announcements go out.
    ihave_due: Option<Instant>,
}

impl<P: Peer, M: Clone> Plumtree<P, M> {
    /// A node with no neighbours yet.
    pub fn new(config: TreeConfig) -> Self {
        Plumtree {
            config,
            eager: Vec::new(),
            lazy: Vec::new(),
            kept: HashMap::new(),
            arrivals: VecDeque::new(),
            missing: HashMap::new(),
            grafts: VecDeque::new(),
            out: VecDeque::new(),
            delivered: VecDeque::new(),
            gossip_sent: 0,
            ihaves: Vec::new(),
            ihave_due: None,
        }
    }

    /// A neighbour came up: it starts eager.
    pub fn neighbor_up(&mut self, peer: P) {
        if !self.eager.contains(&peer) && !self.lazy.contains(&peer) {
            self.eager.push(peer);
        }
    }

    /// A neighbour went away.
    pub fn neighbor_down(&mut self, peer: &P) {
        self.eager.retain(|p| p != peer);
        self.lazy.retain(|p| p != peer);
        for announcers in self.missing.values_mut() {
            announcers.retain(|(p, _)| p != peer);
        }
        self.ihaves.retain(|(p, _)| p != peer);
    }

    /// Broadcast a message of this node's: delivered here at once.
    pub fn broadcast(&mut self, now: Instant, id: MessageId, payload: M) {
        if self.kept.contains_key(&id) {
            return;
        }
        self.accept(now, id, 0, payload, None);
    }

    /// The eager peers (the tree's links from this node).
    pub fn eager(&self) -> &[P] {
        &self.eager
    }

    /// The lazy peers.
    pub fn lazy(&self) -> &[P] {
        &self.lazy
    }

    /// Messages sent in full so far.
    pub fn gossip_sent(&self) -> u64 {
        self.gossip_sent
    }

    /// Whether message `id` was received (and is still kept).
    pub fn has(&self, id: MessageId) -> bool {
        self.kept.contains_key(&id)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(P, TreeMessage<M>)> {
        self.out.pop_front()
    }

    /// The next broadcast to hand to the application.
    pub fn poll_delivered(&mut self) -> Option<Delivered<M>> {
        self.delivered.pop_front()
    }

    /// When [`Plumtree::handle_timeout`] is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let graft = self.grafts.front().map(|(t, _)| *t);
        let expiry = self
            .arrivals
            .front()
            .map(|(t, _)| *t + self.config.retention);
        graft.into_iter().chain(expiry).chain(self.ihave_due).min()
    }

    /// Handle `msg` from `from`.
    pub fn handle(&mut self, now: Instant, from: P, msg: TreeMessage<M>) {
        match msg {
            TreeMessage::Gossip { id, round, payload } => {
                if self.kept.contains_key(&id) {
                    self.make_lazy(&from);
                    self.out.push_back((from, TreeMessage::Prune));
                } else {
                    self.make_eager(&from);
                    self.accept(now, id, round.saturating_add(1), payload, Some(from));
                }
            }
            TreeMessage::IHave(ids) => {
                for (id, round) in ids {
                    if let Some(k) = self.kept.get_mut(&id) {
                        let via = round.saturating_add(1);
                        let swap = self
                            .config
                            .optimize_hops
                            .is_some_and(|saved| via.saturating_add(saved) <= k.round);
                        if let Some(parent) = k.parent.clone().filter(|_| swap) {
                            k.parent = Some(from.clone());
                            k.round = via;
                            self.make_eager(&from);
                            self.out
                                .push_back((from.clone(), TreeMessage::Graft { id: None }));
                            self.make_lazy(&parent);
                            self.out.push_back((parent, TreeMessage::Prune));
                        }
                        continue;
                    }
                    let announcers = self.missing.entry(id).or_insert_with(|| {
                        self.grafts.push_back((now + self.config.graft_timeout, id));
                        VecDeque::new()
                    });
                    announcers.push_back((from.clone(), round));
                }
            }
            TreeMessage::Graft { id } => {
                self.make_eager(&from);
                let kept = id.and_then(|id| Some((id, self.kept.get(&id)?)));
                if let Some((id, k)) = kept {
                    let msg = TreeMessage::Gossip {
                        id,
                        round: k.round,
                        payload: k.payload.clone(),
                    };
                    self.gossip_sent += 1;
                    self.out.push_back((from, msg));
                }
            }
            TreeMessage::Prune => self.make_lazy(&from),
        }
    }

    /// Time passed: send the batch of announcements, graft announcers of
    /// messages still missing, forget old messages.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ihave_due.is_some_and(|due| due <= now) {
            self.send_ihaves();
        }
        while let Some(&(due, id)) = self.grafts.front() {
            if due > now {
                break;
            }
            self.grafts.pop_front();
            let Some(announcers) = self.missing.get_mut(&id) else {
                continue;
            };
            let Some((peer, _round)) = announcers.pop_front() else {
                self.missing.remove(&id);
                continue;
            };
            self.grafts
                .push_back((now + self.config.regraft_timeout, id));
            self.make_eager(&peer);
            self.out
                .push_back((peer, TreeMessage::Graft { id: Some(id) }));
        }
        while let Some(&(at, id)) = self.arrivals.front() {
            if at + self.config.retention > now {
                break;
            }
            self.arrivals.pop_front();
            self.kept.remove(&id);
        }
    }

    /// A new message: keep it, deliver it, push it on.
    fn accept(&mut self, now: Instant, id: MessageId, round: u16, payload: M, from: Option<P>) {
        self.missing.remove(&id);
        let from = from.as_ref();
        self.kept.insert(
            id,
            Kept {
                round,
                payload: payload.clone(),
                parent: from.cloned(),
            },
        );
        self.arrivals.push_back((now, id));
        for p in &self.eager {
            if Some(p) != from {
                let msg = TreeMessage::Gossip {
                    id,
                    round,
                    payload: payload.clone(),
                };
                self.gossip_sent += 1;
                self.out.push_back((p.clone(), msg));
            }
        }
        let lazy: Vec<P> = self
            .lazy
            .iter()
            .filter(|p| Some(*p) != from)
            .cloned()
            .collect();
        for p in lazy {
            self.announce(now, p, id, round);
        }
        if self.config.ihave_delay.is_zero() {
            self.send_ihaves();
        }
        self.delivered.push_back(Delivered { id, round, payload });
    }

    /// Add `(id, round)` to the batch of announcements for `peer`.
    fn announce(&mut self, now: Instant, peer: P, id: MessageId, round: u16) {
        match self.ihaves.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, ids)) => ids.push((id, round)),
            None => self.ihaves.push((peer, vec![(id, round)])),
        }
        if self.ihave_due.is_none() {
            self.ihave_due = Some(now + self.config.ihave_delay);
        }
    }

    /// Send the waiting announcements now (before this node goes away).
    pub fn flush_announcements(&mut self) {
        self.send_ihaves();
    }

    /// Send the waiting announcements, at most [`IHAVE_BATCH`] ids a
    /// message.
    fn send_ihaves(&mut self) {
        self.ihave_due = None;
        for (peer, ids) in std::mem::take(&mut self.ihaves) {
            for chunk in ids.chunks(IHAVE_BATCH) {
                self.out
                    .push_back((peer.clone(), TreeMessage::IHave(chunk.to_vec())));
            }
        }
    }

    fn make_eager(&mut self, peer: &P) {
        if let Some(i) = self.lazy.iter().position(|p| p == peer) {
            let p = self.lazy.swap_remove(i);
            self.eager.push(p);
        }
    }

    fn make_lazy(&mut self, peer: &P) {
        if let Some(i) = self.eager.iter().position(|p| p == peer) {
            let p = self.eager.swap_remove(i);
            self.lazy.push(p);
        }
    }
}
