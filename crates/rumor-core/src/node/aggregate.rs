//! Aggregation on the wire: push-sum rounds with exactly-once transfers,
//! and epochs started by the leader (the alive member with the smallest name).

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Node, Timer};
use crate::aggregate::{parse_value, Estimate, Share};
use crate::member::MemberState;
use crate::message::Message;
use crate::time::Instant;
use crate::Error;

impl Node {
    /// Aggregate the per-node state key `name` across the cluster (every
    /// node whose value of that key parses as a finite number takes part).
    /// Tracking spreads: other nodes join when they first receive mass.
    pub fn track_aggregate(&mut self, now: Instant, name: &str) -> Result<(), Error> {
        self.start(now);
        let value = self.own_number(name);
        let leader = self.holds_count_weight();
        self.aggregates
            .track(name, value, leader)
            .map_err(|m| Error::Aggregate(crate::Rejected::Invalid(m)))?;
        self.run_aggregation(now);
        Ok(())
    }

    /// Start the round and epoch timers, the first time anything is tracked
    /// (a cluster that aggregates nothing pays no timer wake-ups for it).
    fn run_aggregation(&mut self, now: Instant) {
        if self.agg_running {
            return;
        }
        self.agg_running = true;
        let round = self.jitter(self.config.aggregate_interval);
        self.set_timer(now + round, Timer::AggregateTick);
        let epoch = self.config.aggregate_epoch;
        self.set_timer(now + epoch, Timer::AggregateEpoch);
    }

    /// The current estimate of aggregate `name`, if tracked and known.
    pub fn aggregate(&self, name: &str) -> Option<Estimate> {
        self.aggregates.estimate(name)
    }

    /// Every tracked aggregate.
    pub fn aggregates(&self) -> &crate::aggregate::Aggregates {
        &self.aggregates
    }

    fn own_number(&self, key: &str) -> Option<f64> {
        self.state.owner(&self.name)?.get(key).and_then(parse_value)
    }

    /// Whether this node holds the count weight `u` of the current epoch:
    /// it started the epoch, or (before any epoch) it is the leader.
    fn holds_count_weight(&self) -> bool {
        if self.aggregates.epoch() == 0 {
            self.is_leader()
        } else {
            self.aggregates.leading()
        }
    }

    /// The alive member with the smallest name leads epochs.
    fn is_leader(&self) -> bool {
        !self
            .members
            .iter()
            .any(|(n, e)| e.state == MemberState::Alive && **n < *self.name)
    }

    pub(super) fn aggregate_tick(&mut self, now: Instant) {
        let interval = self.config.aggregate_interval;
        self.set_timer(now + interval, Timer::AggregateTick);
        if self.aggregates.names().next().is_none() || self.leaving {
            return;
        }
        // Known failed or left, or already reclaimed from the member list.
        let pending_gone = self
            .aggregates
            .in_flight()
            .is_some_and(|f| self.members.get(&f.to).is_none_or(|e| e.state.is_gone()));
        // Taken out for the round, so that picking a peer can use the node.
        let mut aggregates = std::mem::take(&mut self.aggregates);
        let pick = || {
            let i = *self
                .random_members(1, |e| e.state == MemberState::Alive)
                .first()?;
            self.members.get_index(i).map(|(n, _)| n.clone())
        };
        let transfer = aggregates.round(pick, |_| pending_gone);
        self.aggregates = aggregates;
        if let Some(f) = transfer {
            // A peer reclaimed from the member list is unreachable.
            if let Some(to) = self.members.get(&f.to).map(|e| e.addr.get()) {
                let msg = Message::Aggregate {
                    sender: self.name.clone(),
                    epoch: f.epoch,
                    seq: f.seq,
                    shares: f.shares,
                };
                self.send_packet(to, &[msg]);
            }
        }
    }

    /// The epoch timer: the leader starts the next epoch.
    pub(super) fn aggregate_epoch_tick(&mut self, now: Instant) {
        let epoch_len = self.config.aggregate_epoch;
        self.set_timer(now + epoch_len, Timer::AggregateEpoch);
        if self.is_leader() && self.aggregates.names().next().is_some() && !self.leaving {
            let next = self.aggregates.epoch().saturating_add(1);
            let state = &self.state;
            let me = &self.name;
            self.aggregates.begin_epoch(next, true, |key| {
                state.owner(me)?.get(key).and_then(parse_value)
            });
        }
    }

    pub(super) fn on_aggregate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: Arc<str>,
        epoch: u64,
        seq: u32,
        shares: Vec<(String, Share)>,
    ) {
        if !self.aggregates.admissible(epoch, &shares) {
            // Acknowledged all the same: the sender must not resend it.
            self.refused(crate::limits::Limit::Aggregate);
            self.send_packet(from, &[Message::AggregateAck { epoch, seq }]);
            return;
        }
        self.run_aggregation(now);
        let leader = self.holds_count_weight();
        let state = &self.state;
        let me = &self.name;
        self.aggregates.accept(
            &sender,
            epoch,
            seq,
            &shares,
            |key| state.owner(me)?.get(key).and_then(parse_value),
            leader,
        );
        self.send_packet(from, &[Message::AggregateAck { epoch, seq }]);
    }

    pub(super) fn on_aggregate_ack(&mut self, epoch: u64, seq: u32) {
        self.aggregates.acknowledged(epoch, seq);
    }
}
