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

/// A transfer sent and not yet acknowledged.
pub(super) struct InFlight {
    to: SocketAddr,
    epoch: u64,
    seq: u32,
    shares: Vec<(String, Share)>,
    tries: u32,
}

/// Sends of one transfer before its mass is taken back.
const MAX_TRIES: u32 = 4;

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
            .map_err(Error::InvalidAggregate)?;
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
            self.agg_leader
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
        if let Some(mut f) = self.agg_in_flight.take() {
            if f.tries < MAX_TRIES {
                f.tries += 1;
                self.send_transfer(&f);
                self.agg_in_flight = Some(f);
                self.aggregates.end_round();
                return;
            }
            // Undeliverable (the peer is gone): take the mass back.
            self.aggregates.restore(&f.shares);
        }
        if let Some(&i) = self
            .random_members(1, |e| e.state == MemberState::Alive)
            .first()
        {
            self.agg_seq += 1;
            let f = InFlight {
                to: self.members[i].addr.get(),
                epoch: self.aggregates.epoch(),
                seq: self.agg_seq,
                shares: self.aggregates.split(),
                tries: 1,
            };
            self.send_transfer(&f);
            self.agg_in_flight = Some(f);
        }
        self.aggregates.end_round();
    }

    fn send_transfer(&mut self, f: &InFlight) {
        let msg = Message::Aggregate {
            sender: self.name.clone(),
            epoch: f.epoch,
            seq: f.seq,
            shares: f.shares.clone(),
        };
        self.send_packet(f.to, &[msg]);
    }

    /// The epoch timer: the leader starts the next epoch.
    pub(super) fn aggregate_epoch_tick(&mut self, now: Instant) {
        let epoch_len = self.config.aggregate_epoch;
        self.set_timer(now + epoch_len, Timer::AggregateEpoch);
        if self.is_leader() && self.aggregates.names().next().is_some() && !self.leaving {
            let next = self.aggregates.epoch() + 1;
            self.begin_epoch(next, true);
        }
    }

    fn begin_epoch(&mut self, epoch: u64, leader: bool) {
        // Mass in flight belongs to the old epoch: it is void now.
        self.agg_in_flight = None;
        self.agg_seq = 0;
        self.agg_leader = leader;
        let state = &self.state;
        let me = &self.name;
        self.aggregates.begin_epoch(epoch, leader, |key| {
            state.owner(me)?.get(key).and_then(parse_value)
        });
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
        self.run_aggregation(now);
        if epoch > self.aggregates.epoch() {
            self.begin_epoch(epoch, false);
        }
        if epoch == self.aggregates.epoch() {
            let leader = self.holds_count_weight();
            let state = &self.state;
            let me = &self.name;
            self.aggregates.receive(
                &sender,
                seq,
                &shares,
                |key| state.owner(me)?.get(key).and_then(parse_value),
                leader,
            );
        }
        self.send_packet(from, &[Message::AggregateAck { epoch, seq }]);
    }

    pub(super) fn on_aggregate_ack(&mut self, epoch: u64, seq: u32) {
        if self
            .agg_in_flight
            .as_ref()
            .is_some_and(|f| f.epoch == epoch && f.seq == seq)
        {
            self.agg_in_flight = None;
        }
    }
}
