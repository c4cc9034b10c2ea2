//! The extension point: what a protocol built on membership sees of the node.
//!
//! A *service* (aggregation, per-node state, user events, queries, the key
//! space) owns its state, its timers and the handling of its messages. It reaches the rest of the node only through a
//! [`Context`]: the time, the configuration, the outbox, its timers, peer
//! sampling ([`PeerSampling`]) and refusal reports. It never touches the
//! members table, so that full membership and a partial view (HyParView)
//! can serve it alike. docs/protocol.md ("Adding a service") walks through
//! adding one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Node, Timer};
use crate::config::Config;
use crate::event::Event;
use crate::limits::Limit;
use crate::member::MemberState;
use crate::message::{Message, MessageType};
use crate::state::OwnerState;
use crate::stats::Stats;
use crate::time::Instant;

/// A protocol built on membership, driven by the node.
pub(crate) trait Service {
    /// Its timers; the node wraps them in its own timer queue.
    type Timer;

    /// The node starts: set the first periodic timers.
    fn on_start(&mut self, _cx: &mut Context<'_, Self::Timer>) {}

    /// One of its timers is due.
    fn on_timer(&mut self, cx: &mut Context<'_, Self::Timer>, timer: Self::Timer);

    /// Member `name` is gone from the members table for good (reclaimed):
    /// drop what is kept about it.
    fn on_member_gone(&mut self, _cx: &mut Context<'_, Self::Timer>, _name: &str) {}

    /// The configuration changed from `old` to `cx.config()`: move the
    /// periodic timers whose interval changed (see
    /// [`Context::follow_interval`]).
    fn on_config(&mut self, _cx: &mut Context<'_, Self::Timer>, _old: &Config) {}
}

/// Random peers and what a service may ask about them, whatever the view
/// of the cluster: every member (full membership) or a few neighbours.
pub(crate) trait PeerSampling {
    /// Up to `k` distinct random alive members other than this node, with
    /// their addresses.
    fn random_alive(&mut self, k: usize) -> Vec<(Arc<str>, SocketAddr)>;

    /// Up to `k` distinct random alive members other than this node and
    /// other than whoever listens at `except`.
    fn random_alive_except(&mut self, k: usize, except: SocketAddr) -> Vec<(Arc<str>, SocketAddr)>;

    /// Every alive member other than this node, in table order.
    fn alive(&self) -> Vec<(Arc<str>, SocketAddr)>;

    /// Whether a member not known to have failed or left listens at `addr`.
    fn listens_at(&self, addr: SocketAddr) -> bool;

    /// Whether member `name` is known (in any state).
    fn knows(&self, name: &str) -> bool;

    /// How many members are known, this node included.
    fn known(&self) -> usize;

    /// The `i`th known member, in an order that changes only when members
    /// come or go (for round-robin scans).
    fn known_at(&self, i: usize) -> Option<Arc<str>>;

    /// Where member `name` listens, while it is known.
    fn addr_of(&self, name: &str) -> Option<SocketAddr>;

    /// Whether member `name` is known to have failed or left, or is no
    /// longer known at all.
    fn is_gone(&self, name: &str) -> bool;

    /// Whether this node is the alive member with the smallest name (the
    /// one that leads cluster-wide rounds).
    fn leads(&self) -> bool;
}

/// Full membership samples from the whole members table; partial
/// membership samples its neighbours.
impl PeerSampling for Node {
    fn random_alive(&mut self, k: usize) -> Vec<(Arc<str>, SocketAddr)> {
        if self.partial() {
            return self.random_neighbors(k, None);
        }
        self.random_named(k, |e| e.state == MemberState::Alive)
    }

    fn random_alive_except(&mut self, k: usize, except: SocketAddr) -> Vec<(Arc<str>, SocketAddr)> {
        if self.partial() {
            return self.random_neighbors(k, Some(except));
        }
        self.random_named(k, |e| e.state == MemberState::Alive && e.addr() != except)
    }

    fn alive(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.members
            .iter()
            .skip(1)
            .filter(|(_, e)| e.state == MemberState::Alive)
            .map(|(n, e)| (n.clone(), e.addr()))
            .collect()
    }

    fn listens_at(&self, addr: SocketAddr) -> bool {
        self.members
            .values()
            .any(|e| !e.state.is_gone() && e.addr() == addr)
    }

    fn knows(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    fn known(&self) -> usize {
        self.members.len()
    }

    fn known_at(&self, i: usize) -> Option<Arc<str>> {
        self.members.get_index(i).map(|(n, _)| n.clone())
    }

    fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.members.get(name).map(|e| e.addr())
    }

    fn is_gone(&self, name: &str) -> bool {
        self.members.get(name).is_none_or(|e| e.state.is_gone())
    }

    fn leads(&self) -> bool {
        !self
            .members
            .iter()
            .any(|(n, e)| e.state == MemberState::Alive && **n < *self.name)
    }
}

/// What a service (whose timers are `T`) may use of the node while it
/// handles one input.
pub(crate) struct Context<'a, T> {
    node: &'a mut Node,
    now: Instant,
    /// Wraps the service's timers into the node's.
    wrap: fn(T) -> Timer,
}

impl<'a, T> Context<'a, T> {
    /// A context over `node` at `now` for a service whose timers `wrap`
    /// turns into the node's.
    pub(super) fn new(node: &'a mut Node, now: Instant, wrap: fn(T) -> Timer) -> Self {
        Context { node, now, wrap }
    }

    /// The time of the input being handled.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.node.config
    }

    /// This node's name.
    pub fn name(&self) -> &Arc<str> {
        &self.node.name
    }

    /// Where this node listens.
    pub fn own_addr(&self) -> SocketAddr {
        self.node.local_entry().addr()
    }

    /// Whether this node is leaving the cluster (services go quiet).
    pub fn leaving(&self) -> bool {
        self.node.leaving
    }

    /// Peer sampling over the node's view of the cluster.
    pub fn peers(&mut self) -> &mut dyn PeerSampling {
        self.node
    }

    /// Send `msgs` to `to` in one datagram, with queued rumors piggybacked.
    pub fn send(&mut self, to: SocketAddr, msgs: &[Message]) {
        self.node.send_packet(to, msgs);
    }

    /// Send `msg` alone in a datagram, nothing piggybacked (for requests
    /// every idle node sends each interval).
    pub fn send_bare(&mut self, to: SocketAddr, msg: &Message) {
        self.node.send_bare(to, msg);
    }

    /// Send `msg` in a datagram if it fits, else over a stream.
    pub fn send_sized(&mut self, to: SocketAddr, msg: Message) {
        self.node.send_sized(to, msg);
    }

    /// Send `msgs` alone in one datagram, nothing piggybacked.
    pub fn send_bare_all(&mut self, to: SocketAddr, msgs: &[Message]) {
        self.node.send_bare_all(to, msgs);
    }

    /// Send an encoded request of `kind` over a stream.
    pub fn send_stream(&mut self, to: SocketAddr, payload: Vec<u8>, kind: MessageType) {
        self.node.send_stream(to, payload, kind);
    }

    /// Queue `msg` as a rumor under `id` (a newer rumor of the same id
    /// replaces it), piggybacked and gossiped within the retransmit budget.
    pub fn broadcast(&mut self, id: Arc<str>, msg: Message) {
        self.node.broadcast(id, msg);
    }

    /// Report `event` to the application.
    pub fn emit(&mut self, event: Event) {
        self.node.events.push_back(event);
    }

    /// Where the datagram or stream being handled came from.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.node.peer
    }

    /// Record how long an update took to reach this node.
    pub fn sample_dissemination(&mut self, took: Duration) {
        if !self.node.samples.add_dissemination(took) {
            self.node.stats.samples_dropped += 1;
        }
    }

    /// The node's counters.
    pub fn stats(&mut self) -> &mut Stats {
        &mut self.node.stats
    }

    /// A uniformly random duration below `max` (a timer's first phase).
    pub fn jitter(&mut self, max: Duration) -> Duration {
        self.node.jitter(max)
    }

    /// Fire the service's timer `timer` at `at`.
    pub fn set_timer(&mut self, at: Instant, timer: T) {
        let t = (self.wrap)(timer);
        self.node.set_timer(at, t);
    }

    /// Start periodic `timer`: first due at a random phase of `interval`
    /// (never, if it is zero).
    pub fn start_periodic(&mut self, timer: T, interval: Duration) {
        if !interval.is_zero() {
            let first = self.jitter(interval);
            self.set_timer(self.now + first, timer);
        }
    }

    /// A reload changed periodic `timer`'s interval from `before` to
    /// `after`: follow it (a tick due later than a new, shorter interval
    /// from now is brought forward; zero stops it).
    pub fn follow_interval(&mut self, timer: T, before: Duration, after: Duration) {
        if before != after {
            self.rearm(timer, after);
        }
    }

    /// The service's periodic `timer` now runs every `interval`.
    fn rearm(&mut self, timer: T, interval: Duration) {
        let t = (self.wrap)(timer);
        self.node.rearm(self.now, t, interval);
    }

    /// Count a refusal of what a peer sent, reported rate-limited.
    pub fn refused(&mut self, limit: Limit) {
        self.node.refused(limit);
    }

    /// This node's own per-node state (the state service's data, read
    /// only; not for the state service itself, which holds its own).
    pub fn own_state(&self) -> Option<&OwnerState> {
        self.node.node_state.store().owner(&self.node.name)
    }
}

impl Node {
    /// [`Node::random_members`] by name and address.
    fn random_named(
        &mut self,
        k: usize,
        keep: impl Fn(&super::Entry) -> bool,
    ) -> Vec<(Arc<str>, SocketAddr)> {
        let chosen = self.random_members(k, keep);
        chosen
            .into_iter()
            .filter_map(|i| self.members.get_index(i))
            .map(|(n, e)| (n.clone(), e.addr()))
            .collect()
    }

    /// Run `f` on the service `slot` picks, with a context over the rest of
    /// the node (the service is taken out meanwhile, so that the context
    /// can lend the node).
    pub(super) fn with_service<S: Service + Default, R>(
        &mut self,
        now: Instant,
        slot: fn(&mut Node) -> &mut S,
        wrap: fn(S::Timer) -> Timer,
        f: impl FnOnce(&mut S, &mut Context<'_, S::Timer>) -> R,
    ) -> R {
        let mut service = std::mem::take(slot(self));
        let r = f(&mut service, &mut Context::new(self, now, wrap));
        *slot(self) = service;
        r
    }
}

impl Node {
    /// Run `f` on the user-event service (which has no timers).
    pub(super) fn with_user_events<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(
            &mut crate::user_event::service::UserEvents,
            &mut Context<'_, std::convert::Infallible>,
        ) -> R,
    ) -> R {
        self.with_service(now, |n| &mut n.user_events, |never| match never {}, f)
    }
}
