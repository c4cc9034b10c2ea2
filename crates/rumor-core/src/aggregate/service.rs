//! Aggregation as a service of the node: push-sum rounds on the wire with
//! exactly-once transfers ([`Message::Aggregate`], [`Message::AggregateAck`]),
//! and epochs started by the leader (the alive member with the smallest
//! name). The exchange itself, without I/O, is [`Aggregates`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::{parse_value, Aggregates, Estimate, Share};
use crate::config::Config;
use crate::limits::Limit;
use crate::message::Message;
use crate::node::service::{Context, Service};

/// The aggregation service's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tick {
    /// Send half of every share to a random peer.
    Round,
    /// The leader starts the next epoch.
    Epoch,
}

/// The aggregates this node tracks, and whether their timers run.
#[derive(Default)]
pub(crate) struct Aggregation {
    aggregates: Aggregates,
    /// The timers run (only once something is tracked: a cluster that
    /// aggregates nothing pays no timer wake-ups for it).
    running: bool,
}

type Cx<'a, 'b> = &'a mut Context<'b, Tick>;

impl Aggregation {
    /// Every tracked aggregate.
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// The current estimate of aggregate `name`, if tracked and known.
    pub fn estimate(&self, name: &str) -> Option<Estimate> {
        self.aggregates.estimate(name)
    }

    /// Track the per-node state key `name` (see [`crate::Node::track_aggregate`]).
    pub fn track(&mut self, cx: Cx, name: &str) -> Result<(), String> {
        let value = own_number(cx, name);
        let leader = self.holds_count_weight(cx);
        self.aggregates.track(name, value, leader)?;
        self.run(cx);
        Ok(())
    }

    /// A peer's transfer: apply it once and acknowledge it.
    pub fn on_transfer(
        &mut self,
        cx: Cx,
        from: SocketAddr,
        sender: Arc<str>,
        epoch: u64,
        seq: u32,
        shares: Vec<(String, Share)>,
    ) {
        if !self.aggregates.admissible(epoch, &shares) {
            // Acknowledged all the same: the sender must not resend it.
            cx.refused(Limit::Aggregate);
            cx.send(from, &[Message::AggregateAck { epoch, seq }]);
            return;
        }
        self.run(cx);
        let leader = self.holds_count_weight(cx);
        self.aggregates.accept(
            &sender,
            epoch,
            seq,
            &shares,
            |key| own_number(cx, key),
            leader,
        );
        cx.send(from, &[Message::AggregateAck { epoch, seq }]);
    }

    /// A peer acknowledged this node's transfer: forget it.
    pub fn on_ack(&mut self, epoch: u64, seq: u32) {
        self.aggregates.acknowledged(epoch, seq);
    }

    /// Start the timers, the first time anything is tracked.
    fn run(&mut self, cx: Cx) {
        if self.running {
            return;
        }
        self.running = true;
        let round = cx.jitter(cx.config().aggregate_interval);
        cx.set_timer(cx.now() + round, Tick::Round);
        let epoch = cx.config().aggregate_epoch;
        cx.set_timer(cx.now() + epoch, Tick::Epoch);
    }

    /// Whether this node holds the count weight `u` of the current epoch:
    /// it started the epoch, or (before any epoch) it is the leader.
    fn holds_count_weight(&self, cx: Cx) -> bool {
        if self.aggregates.epoch() == 0 {
            cx.peers().leads()
        } else {
            self.aggregates.leading()
        }
    }

    fn round(&mut self, cx: Cx) {
        let interval = cx.config().aggregate_interval;
        cx.set_timer(cx.now() + interval, Tick::Round);
        if self.aggregates.names().next().is_none() || cx.leaving() {
            return;
        }
        // Known failed or left, or already reclaimed from the member list.
        let pending_gone = self
            .aggregates
            .in_flight()
            .is_some_and(|f| cx.peers().is_gone(&f.to));
        let transfer = self.aggregates.round(
            || Some(cx.peers().random_alive(1).pop()?.0),
            |_| pending_gone,
        );
        if let Some(f) = transfer {
            // A peer reclaimed from the member list is unreachable.
            if let Some(to) = cx.peers().addr_of(&f.to) {
                let msg = Message::Aggregate {
                    sender: cx.name().clone(),
                    epoch: f.epoch,
                    seq: f.seq,
                    shares: f.shares,
                };
                cx.send(to, &[msg]);
            }
        }
    }

    fn epoch(&mut self, cx: Cx) {
        let epoch_len = cx.config().aggregate_epoch;
        cx.set_timer(cx.now() + epoch_len, Tick::Epoch);
        if cx.peers().leads() && self.aggregates.names().next().is_some() && !cx.leaving() {
            let next = self.aggregates.epoch().saturating_add(1);
            self.aggregates
                .begin_epoch(next, true, |key| own_number(cx, key));
        }
    }
}

impl Service for Aggregation {
    type Timer = Tick;

    fn on_timer(&mut self, cx: Cx, timer: Tick) {
        match timer {
            Tick::Round => self.round(cx),
            Tick::Epoch => self.epoch(cx),
        }
    }

    fn on_config(&mut self, cx: Cx, old: &Config) {
        if !self.running {
            return;
        }
        let new = cx.config();
        let plan = [
            (Tick::Round, old.aggregate_interval, new.aggregate_interval),
            (Tick::Epoch, old.aggregate_epoch, new.aggregate_epoch),
        ];
        for (tick, before, after) in plan {
            cx.follow_interval(tick, before, after);
        }
    }
}

/// This node's own value of state key `key`, if it parses as a number.
fn own_number<T>(cx: &Context<'_, T>, key: &str) -> Option<f64> {
    cx.own_state()?.get(key).and_then(parse_value)
}
