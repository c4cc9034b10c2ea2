//! Partial membership ([`Membership::Partial`]): the node's neighbours are a
//! HyParView overlay and its rumors travel on Plumtree broadcast trees laid
//! over them, instead of SWIM probing every member and gossip to random
//! members.
//!
//! What stays as in full membership: the members table (every member this
//! node has heard of, merged by the same rules, reported by the same
//! events), suspicion with refutation, the admission of new names, and the
//! services. What changes:
//! - *Failure detection*: only neighbours are checked (HyParView's pings).
//!   A neighbour silent for `view.failure_timeout` is suspected by this
//!   node, and the suspicion goes to every member on the tree; each member
//!   declares it dead when its own suspicion timer runs out, unless the
//!   suspect refutes (it hears the suspicion on the tree too).
//! - *Dissemination*: a rumor this node makes (its own alive claim, its
//!   accusations, its leave, user events, state and key-space writes,
//!   queries) is one tree broadcast. A rumor the tree delivered is passed
//!   on by the tree alone: handling it never broadcasts it again.
//! - *Anti-entropy*: the join pulls the members table from the seeds (a
//!   digest per record, as full membership's join syncs do), and every
//!   push-pull interval the node pulls from one neighbour; the services
//!   sample neighbours only.
//! - *The handshake*: this node's stream requests carry
//!   [`Message::Membership`]; a full-membership node refuses them, and this
//!   node refuses stream requests without it and overlay messages reaching
//!   a full node are refused too ([`Event::MembershipMismatch`]).

use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;

use super::{Node, Timer};
use crate::codec;
use crate::config::Membership;
use crate::event::{Event, SuspicionCause};
use crate::member::MemberState;
use crate::message::{Message, MessageType};
use crate::overlay::hyparview::{HyParView, ViewEvent, ViewMessage};
use crate::overlay::plumtree::{Plumtree, TreeMessage};
use crate::time::Instant;

/// Bytes a tree `Gossip` adds around its payload at most (type, length,
/// kind, id, round, payload length).
const TREE_OVERHEAD: usize = 24;

/// Broadcasts kept while the node has no neighbour yet.
const MAX_HELD: usize = 64;

/// Peers remembered as running the other membership mode.
const MAX_MISMATCHED: usize = 64;

/// When a joiner announces itself again, in `view.probe_interval`s after
/// the join: the first announcement goes out on the tree as the joiner
/// gets its first neighbour, while the overlay may still be forming (in a
/// cold start, every node joins at once) and reaches only the part that is
/// linked then; this one reaches the settled overlay. A member that knows
/// the claim already ignores it.
const REANNOUNCE_AFTER: u32 = 8;

/// The overlay of a partial-membership node.
pub(super) struct Overlay {
    view: HyParView<SocketAddr>,
    tree: Plumtree<SocketAddr, Vec<u8>>,
    /// The messages of the tree payload being handled: broadcasting one of
    /// them again is the tree's job, not this node's.
    relaying: Vec<Message>,
    /// Broadcasts made before the first neighbour came up (a tree with no
    /// link would lose them).
    held: Vec<Vec<u8>>,
    /// The earliest overlay timer set in the node's queue, if any.
    armed: Option<Instant>,
    /// Joins so far (an earlier join's announcements stop).
    joins: u32,
}

impl Node {
    /// Whether this node runs partial membership.
    pub(super) fn partial(&self) -> bool {
        self.config.membership == Membership::Partial
    }

    /// The node starts in partial membership: build its overlay.
    pub(super) fn start_overlay(&mut self, now: Instant) {
        let me = self.local_entry().addr();
        let seed = self.rng.random();
        self.overlay = Some(Box::new(Overlay {
            view: HyParView::new(me, self.config.view.clone(), seed, now),
            tree: Plumtree::new(self.config.tree.clone()),
            relaying: Vec::new(),
            held: Vec::new(),
            armed: None,
            joins: 0,
        }));
    }

    /// Join through `seeds`: ask one for a place in the overlay, and
    /// pull the members table from each (their answers tell the driver the
    /// join was heard).
    pub(super) fn join_overlay(&mut self, now: Instant, seeds: &[SocketAddr]) {
        let own = self.local_entry().addr();
        let seeds: Vec<SocketAddr> = seeds.iter().copied().filter(|&s| s != own).collect();
        for &seed in &seeds {
            self.pull_from(now, seed);
        }
        let Some(ov) = self.overlay.as_deref_mut() else {
            return;
        };
        ov.view.join(now, &seeds);
        ov.joins = ov.joins.wrapping_add(1);
        let join = ov.joins;
        let again = self.config.view.probe_interval * REANNOUNCE_AFTER;
        self.set_timer(now + again, Timer::Announce(join));
    }

    /// Announce this node's alive claim on the tree again, after join
    /// number `join` (unless another join or a leave came since).
    pub(super) fn announce(&mut self, join: u32) {
        let current = self.overlay.as_deref().map(|ov| ov.joins);
        if self.leaving || self.conflict.is_some() || current != Some(join) {
            return;
        }
        let own = super::alive_of(&self.name, self.local_entry());
        self.broadcast_on_tree(Message::Alive(own), false);
    }

    /// Reach member `to`, believed dead: pull from it and ask it into the
    /// overlay. If it is alive (a partition healed), the two sides' trees
    /// join, and the pull's records make each side suspect the other's
    /// members, who hear it on the joined tree and refute.
    pub(super) fn reach(&mut self, now: Instant, to: SocketAddr) {
        self.pull_from(now, to);
        if let Some(ov) = self.overlay.as_deref_mut() {
            ov.view.reach(to);
        }
    }

    /// Leave the overlay, after the leave was broadcast: its announcements
    /// go out at once, then the neighbours are told (they announce the
    /// leave too, should the broadcast be lost).
    pub(super) fn leave_overlay(&mut self) {
        if let Some(ov) = self.overlay.as_deref_mut() {
            ov.tree.flush_announcements();
            ov.view.leave();
        }
    }

    /// A HyParView message from `from`.
    pub(super) fn on_view(&mut self, now: Instant, from: SocketAddr, msg: ViewMessage<SocketAddr>) {
        if self.leaving {
            return;
        }
        match self.overlay.as_deref_mut() {
            Some(ov) => ov.view.handle(now, from, msg),
            None => self.refuse_mode(from, Membership::Partial, true),
        }
    }

    /// A Plumtree message from `from`: what it delivers is handled as if
    /// it had arrived here directly, and is not broadcast again.
    pub(super) fn on_tree(&mut self, now: Instant, from: SocketAddr, msg: TreeMessage<Vec<u8>>) {
        if self.leaving {
            return;
        }
        let Some(ov) = self.overlay.as_deref_mut() else {
            self.refuse_mode(from, Membership::Partial, true);
            return;
        };
        ov.view.heard(now, &from);
        ov.tree.handle(now, from, msg);
        let mut delivered = Vec::new();
        while let Some(d) = ov.tree.poll_delivered() {
            delivered.push(d.payload);
        }
        for payload in delivered {
            self.deliver(now, from, &payload);
        }
    }

    /// Handle a rumor the tree delivered (it came over the link from
    /// `from`). Only rumors ride the tree; anything else in it is dropped.
    fn deliver(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        let Some(msgs) = self.decode(payload) else {
            return;
        };
        let (rumors, other): (Vec<Message>, Vec<Message>) =
            msgs.into_iter().partition(|m| is_rumor(m.kind()));
        self.stats.unknown_messages += other.len() as u64;
        if let Some(ov) = self.overlay.as_deref_mut() {
            ov.relaying = rumors.clone();
        }
        for m in rumors {
            self.handle_message(now, from, m);
        }
        if let Some(ov) = self.overlay.as_deref_mut() {
            ov.relaying.clear();
        }
    }

    /// Whether `msg`, in a datagram from `from`, is a claim about a third
    /// member: in partial membership those travel only on the tree (or in
    /// pulls), so a datagram carrying one is a full-membership peer's or a
    /// forger's. A datagram may carry the sender's own alive claim (a
    /// correction of a stale accusation) and an accusation of this node
    /// (told to the accused, who refutes it on the tree).
    pub(super) fn off_tree(&self, from: SocketAddr, msg: &Message) -> bool {
        match msg {
            Message::Alive(a) => a.addr != from,
            Message::Suspect { name, .. } | Message::Dead { name, .. } => *name != self.name,
            Message::Reap { .. } => true,
            _ => false,
        }
    }

    /// Broadcast `msg` on the tree if this node makes it (or `vouch`: it
    /// passes on news the tree did not bring): a claim or accusation by
    /// another member, or a rumor the tree is delivering, is already on
    /// its way to everyone.
    pub(super) fn broadcast_on_tree(&mut self, msg: Message, vouch: bool) {
        let Some(ov) = self.overlay.as_deref() else {
            return;
        };
        let authored = vouch
            || match &msg {
                Message::Alive(a) => a.name == self.name,
                Message::Suspect { from, .. } | Message::Dead { from, .. } => *from == self.name,
                _ => true,
            };
        if !authored || ov.relaying.contains(&msg) {
            return;
        }
        let payload = codec::encode_packet(&msg);
        if payload.len() + TREE_OVERHEAD > self.config.packet_size {
            // Anti-entropy carries it instead.
            self.stats.oversize_broadcasts += 1;
            return;
        }
        let id = self.rng.random();
        let now = self.now;
        let Some(ov) = self.overlay.as_deref_mut() else {
            return;
        };
        if ov.view.active().next().is_none() {
            if ov.held.len() >= MAX_HELD {
                ov.held.remove(0);
            }
            ov.held.push(payload);
            return;
        }
        ov.tree.broadcast(now, id, payload);
        // This node's own delivery: it is already handled.
        while ov.tree.poll_delivered().is_some() {}
    }

    /// The overlay's timers are due.
    pub(super) fn overlay_timeout(&mut self, now: Instant) {
        if let Some(ov) = self.overlay.as_deref_mut() {
            ov.armed = None;
            ov.view.handle_timeout(now);
            ov.tree.handle_timeout(now);
        }
    }

    /// After each input: apply the overlay's view changes, send what it
    /// wants sent, and set its next timer.
    pub(super) fn flush_overlay(&mut self, now: Instant) {
        loop {
            let Some(ov) = self.overlay.as_deref_mut() else {
                return;
            };
            let (mut up, mut failed) = (Vec::new(), Vec::new());
            while let Some(ev) = ov.view.poll_event() {
                match ev {
                    ViewEvent::NeighborUp(p) => {
                        ov.tree.neighbor_up(p);
                        up.push(p);
                    }
                    ViewEvent::NeighborDown(p) => ov.tree.neighbor_down(&p),
                    ViewEvent::Failed(p) => failed.push((p, false)),
                    ViewEvent::Left(p) => failed.push((p, true)),
                }
            }
            if !up.is_empty() {
                for payload in std::mem::take(&mut ov.held) {
                    ov.tree.broadcast(now, self.rng.random(), payload);
                    while ov.tree.poll_delivered().is_some() {}
                }
            }
            // Tree first: a leave's broadcast goes out before its
            // disconnects.
            let mut out = Vec::new();
            while let Some((to, m)) = ov.tree.poll_transmit() {
                out.push((to, Message::Tree(m)));
            }
            while let Some((to, m)) = ov.view.poll_transmit() {
                out.push((to, Message::View(m)));
            }
            if out.is_empty() && failed.is_empty() {
                break;
            }
            self.send_packed(out);
            for (peer, left) in failed {
                if left {
                    self.neighbor_left(now, peer);
                } else {
                    self.neighbor_failed(now, peer);
                }
            }
        }
        self.arm_overlay();
    }

    /// Send `out`, the messages to each destination packed into as few
    /// datagrams as fit, in order.
    fn send_packed(&mut self, out: Vec<(SocketAddr, Message)>) {
        let mut packets: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut one = Vec::new();
        for (to, m) in out {
            one.clear();
            codec::encode_message(&m, &mut one);
            self.stats.count_out(m.kind());
            let size = self.config.packet_size;
            match packets
                .iter_mut()
                .rev()
                .find(|(dest, buf)| *dest == to && buf.len() + one.len() <= size)
            {
                Some((_, buf)) => buf.extend_from_slice(&one),
                None => {
                    let mut buf = Vec::with_capacity(one.len() + 1);
                    codec::begin_packet(&mut buf);
                    buf.extend_from_slice(&one);
                    packets.push((to, buf));
                }
            }
        }
        for (to, buf) in packets {
            self.push_datagram(to, buf);
        }
    }

    /// Set the node's timer for the overlay's next deadline, unless an
    /// earlier one is set.
    fn arm_overlay(&mut self) {
        let Some(ov) = self.overlay.as_deref_mut() else {
            return;
        };
        let view = ov.view.poll_timeout();
        let due = ov.tree.poll_timeout().map_or(view, |t| t.min(view));
        if ov.armed.is_none_or(|at| due < at) {
            ov.armed = Some(due);
            self.set_timer(due, Timer::Overlay);
        }
    }

    /// The live member listening at `addr`, with its incarnation.
    fn alive_at(&self, addr: SocketAddr) -> Option<(Arc<str>, u64)> {
        self.members
            .iter()
            .skip(1)
            .find(|(_, e)| e.addr() == addr && e.state == MemberState::Alive)
            .map(|(name, e)| (name.clone(), e.incarnation))
    }

    /// Neighbour `peer` said it leaves and this node has not heard its
    /// broadcast of it: record the leave, and pass it on (vouched for: the
    /// leaver's own broadcast may be lost).
    fn neighbor_left(&mut self, now: Instant, peer: SocketAddr) {
        if let Some((name, incarnation)) = self.alive_at(peer) {
            self.on_dead(now, incarnation, name.clone(), name.clone(), false);
            let leave = Message::Dead {
                incarnation,
                name: name.clone(),
                from: name,
            };
            self.broadcast_on_tree(leave, true);
        }
    }

    /// Neighbour `peer` stopped answering: suspect the member listening
    /// there, and tell everyone on the tree.
    fn neighbor_failed(&mut self, now: Instant, peer: SocketAddr) {
        if let Some((name, incarnation)) = self.alive_at(peer) {
            let me = self.name.clone();
            self.on_suspect(
                now,
                incarnation,
                name,
                me,
                SuspicionCause::NeighborSilent,
                true,
            );
        }
    }

    /// Up to `k` random neighbours whose names this node knows, other than
    /// whoever listens at `except`.
    pub(super) fn random_neighbors(
        &mut self,
        k: usize,
        except: Option<SocketAddr>,
    ) -> Vec<(Arc<str>, SocketAddr)> {
        let Some(ov) = self.overlay.as_deref() else {
            return Vec::new();
        };
        let addrs: Vec<SocketAddr> = ov
            .view
            .active()
            .copied()
            .filter(|&a| Some(a) != except)
            .collect();
        let mut named: Vec<(Arc<str>, SocketAddr)> = self
            .members
            .iter()
            .skip(1)
            .filter(|(_, e)| e.state == MemberState::Alive && addrs.contains(&e.addr()))
            .map(|(n, e)| (n.clone(), e.addr()))
            .collect();
        for i in 0..k.min(named.len()) {
            let j = self.rng.random_range(i..named.len());
            named.swap(i, j);
        }
        named.truncate(k);
        named
    }

    /// Anti-entropy in partial membership: pull from one neighbour.
    pub(super) fn pull_from_neighbor(&mut self, now: Instant) {
        if let Some((_, to)) = self.random_neighbors(1, None).pop() {
            self.pull_from(now, to);
        }
    }

    /// In partial membership, mark a stream request as this mode's.
    pub(super) fn mark_stream(&self, payload: &mut Vec<u8>) {
        if self.partial() {
            codec::encode_message(&Message::Membership(Membership::Partial), payload);
        }
    }

    /// A stream from `from` carrying `msgs`: if its sender runs the other
    /// membership mode, refuse it and return the answer that says so.
    pub(super) fn check_stream_mode(
        &mut self,
        from: SocketAddr,
        msgs: &[Message],
    ) -> Option<Vec<u8>> {
        let marked = msgs
            .iter()
            .any(|m| matches!(m, Message::Membership(Membership::Partial)));
        let request = msgs.iter().any(|m| match m {
            Message::PushPull(pp) => !pp.reply,
            Message::Pull { .. } | Message::KvSyncRequest { .. } | Message::Ping { .. } => true,
            _ => false,
        });
        let theirs = match (self.partial(), marked) {
            (false, true) => Membership::Partial,
            (true, false) if request => Membership::Full,
            _ => return None,
        };
        self.refuse_mode(from, theirs, false);
        self.stats.streams_out += 1;
        self.stats.count_out(MessageType::Membership);
        Some(codec::encode_packet(&Message::Membership(
            self.config.membership,
        )))
    }

    /// A peer said which membership mode it runs.
    pub(super) fn on_membership(&mut self, from: SocketAddr, theirs: Membership) {
        if theirs != self.config.membership {
            self.refuse_mode(from, theirs, false);
        }
    }

    /// `from` runs membership `theirs`, not this node's: count it, report
    /// it once per peer, and (`answer`) tell it this node's mode.
    pub(super) fn refuse_mode(&mut self, from: SocketAddr, theirs: Membership, answer: bool) {
        self.stats.membership_refused += 1;
        if !self.mismatched.iter().any(|&(p, _)| p == from) {
            if self.mismatched.len() >= MAX_MISMATCHED {
                self.mismatched.remove(0);
            }
            self.mismatched.push((from, theirs));
            self.events
                .push_back(Event::MembershipMismatch { peer: from, theirs });
        }
        if answer {
            let own = self.config.membership;
            self.send_bare(from, &Message::Membership(own));
        }
    }

    /// Peers found running the other membership mode, and their mode (the
    /// latest [`MAX_MISMATCHED`]).
    pub fn membership_mismatches(&self) -> &[(SocketAddr, Membership)] {
        &self.mismatched
    }

    /// This node's neighbours in partial membership (none in full).
    pub fn neighbors(&self) -> Vec<SocketAddr> {
        self.overlay
            .as_deref()
            .map(|ov| ov.view.active().copied().collect())
            .unwrap_or_default()
    }

    /// How many peers this node's active and passive views hold in partial
    /// membership (both 0 in full).
    pub fn view_sizes(&self) -> (usize, usize) {
        self.overlay
            .as_deref()
            .map(|ov| (ov.view.active().count(), ov.view.passive().len()))
            .unwrap_or_default()
    }
}

/// Whether messages of `kind` are rumors, the only ones the tree carries.
fn is_rumor(kind: MessageType) -> bool {
    matches!(
        kind,
        MessageType::Alive
            | MessageType::Suspect
            | MessageType::Dead
            | MessageType::Reap
            | MessageType::UserEvent
            | MessageType::StateDelta
            | MessageType::KvRecords
            | MessageType::Query
    )
}
