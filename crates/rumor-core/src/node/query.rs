//! Asking and answering queries (see [`crate::query`]): a query spreads as
//! a rumor; the driver decides whether this node is selected and answers
//! through [`Node::respond_query`]; answers go straight to the asker by
//! datagram (by stream when they do not fit one), and through
//! `relay_factor` other members as well.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Node, Timer};
use crate::codec;
use crate::event::Event;
use crate::limits::Limit;
use crate::member::validate_name;
use crate::message::{Message, MessageType, Query, QueryFilter, QueryResponse};
use crate::query::{
    default_timeout, NotTaken, QueryParams, MAX_QUERY_SIZE, MAX_RELAY_FACTOR, MAX_RESPONSE_SIZE,
    MAX_TIMEOUT,
};
use crate::time::Instant;
use crate::{Error, Rejected};

impl Node {
    /// Ask the cluster `name` with `payload`: the query spreads to every
    /// member, this one included ([`Event::Query`]); answers come back as
    /// [`Event::QueryResponse`] until [`Event::QueryDone`]. Returns the
    /// query's Lamport time, which names it in those events.
    pub fn query(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<u64, Error> {
        let filters_size: usize = params
            .filters
            .iter()
            .map(|f| match f {
                QueryFilter::Name(p) => p.len() + 2,
                QueryFilter::Tag { key, pattern } => key.len() + pattern.len() + 3,
            })
            .sum();
        let size = name.len() + payload.len() + filters_size;
        if name.is_empty() {
            return Err(Error::Query(Rejected::Invalid(
                "query name is empty".into(),
            )));
        }
        if size > MAX_QUERY_SIZE {
            return Err(Error::Query(Rejected::TooLarge(format!(
                "name, payload and filters take {size} bytes, the limit is {MAX_QUERY_SIZE}"
            ))));
        }
        if params.relay_factor > MAX_RELAY_FACTOR {
            return Err(Error::Query(Rejected::Invalid(format!(
                "relay factor {} is over the limit of {MAX_RELAY_FACTOR}",
                params.relay_factor
            ))));
        }
        let timeout = params
            .timeout
            .unwrap_or_else(|| default_timeout(&self.config, self.live));
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(Error::Query(Rejected::Invalid(format!(
                "timeout {timeout:?} is not in (0, {MAX_TIMEOUT:?}]"
            ))));
        }
        self.start(now);
        let ltime = self.user_events.tick();
        let q = Query {
            ltime,
            origin: self.name.clone(),
            origin_addr: self.local_entry().addr.get(),
            name: name.to_owned(),
            payload: payload.to_vec(),
            filters: params.filters,
            ack: params.ack,
            relay_factor: params.relay_factor,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        if !self.queries.start(&q, now + timeout) {
            return Err(Error::LimitReached {
                limit: Limit::Query,
                detail: format!(
                    "{} queries of this node are in flight already",
                    crate::query::MAX_IN_FLIGHT
                ),
            });
        }
        self.set_timer(now + timeout, Timer::QueryDeadline(ltime));
        if q.ack {
            self.set_timer(now + timeout / 4, Timer::QueryResend(ltime));
        }
        self.on_query(now, q);
        self.forward_fresh(now);
        Ok(ltime)
    }

    /// Ack (`ack`) or answer the query `ltime` of `origin`, which this node
    /// was told of ([`Event::Query`]) and which still lasts. An ack carries
    /// no payload. Each is sent once: a second ack or answer is refused.
    pub fn respond_query(
        &mut self,
        now: Instant,
        origin: &str,
        ltime: u64,
        ack: bool,
        payload: &[u8],
    ) -> Result<(), Error> {
        if payload.len() > MAX_RESPONSE_SIZE {
            return Err(Error::Query(Rejected::TooLarge(format!(
                "the answer takes {} bytes, the limit is {MAX_RESPONSE_SIZE}",
                payload.len()
            ))));
        }
        let Some(answer) = self.queries.may_answer(now, origin, ltime, ack) else {
            return Err(Error::Query(Rejected::Invalid(
                "no such query in progress, or it was answered already".into(),
            )));
        };
        self.start(now);
        let r = QueryResponse {
            ltime,
            from: self.name.clone(),
            ack,
            payload: if ack { Vec::new() } else { payload.to_vec() },
            relay_to: None,
        };
        if *origin == *self.name {
            self.on_query_response(now, r);
            return Ok(());
        }
        let relays = self.random_members(usize::from(answer.relay_factor), |e| {
            e.state == crate::member::MemberState::Alive && e.addr.get() != answer.to
        });
        for i in relays {
            let via = self.members[i].addr.get();
            let copy = QueryResponse {
                relay_to: Some(answer.to),
                ..r.clone()
            };
            self.send_response(via, copy);
        }
        self.send_response(answer.to, r);
        Ok(())
    }

    /// Deliver a query once and pass it on, if its origin is a member
    /// known alive at the address it names (or this node).
    pub(super) fn on_query(&mut self, now: Instant, q: Query) {
        let own = q.origin == self.name && q.origin_addr == self.local_entry().addr.get();
        let known = own
            || self
                .members
                .get(&q.origin)
                .is_some_and(|e| !e.state.is_gone() && e.addr.get() == q.origin_addr);
        if !known || validate_name(&q.origin).is_err() {
            self.stats.queries_refused += 1;
            return;
        }
        match self.queries.witness(now, &q) {
            Ok(()) => {}
            Err(NotTaken::Duplicate) => return,
            Err(NotTaken::Full) => {
                self.refused(Limit::Query);
                return;
            }
        }
        let key: Arc<str> = format!("\u{1}query\u{1}{}\u{1}{}", q.origin, q.ltime).into();
        self.broadcast(key, Message::Query(q.clone()));
        self.events.push_back(Event::Query(q));
    }

    /// An answer to one of this node's queries, or one to relay.
    pub(super) fn on_query_response(&mut self, now: Instant, r: QueryResponse) {
        if let Some(to) = r.relay_to {
            // Relay only to a member: never a packet to an address a
            // sender made up.
            let member = self
                .members
                .values()
                .any(|e| !e.state.is_gone() && e.addr.get() == to);
            if member && to != self.local_entry().addr.get() {
                self.stats.query_responses_relayed += 1;
                self.send_response(
                    to,
                    QueryResponse {
                        relay_to: None,
                        ..r
                    },
                );
            } else {
                self.stats.queries_refused += 1;
            }
            return;
        }
        if self.queries.record(now, &r) {
            self.events.push_back(Event::QueryResponse(r));
        }
    }

    /// A quarter of the way to the deadline of a query that asked for acks:
    /// send it once more, straight, to every alive member that has neither
    /// acked nor answered. A query spreads as a rumor, and an eager wave
    /// that misses a member can spend the rumor's retransmit budget before
    /// a later round reaches it (user events have push-pull repair; queries
    /// last too briefly for it). A member that had it drops the copy.
    pub(super) fn query_resend(&mut self, ltime: u64) {
        let (msg, silent) = {
            let Some((q, heard)) = self.queries.in_flight(ltime) else {
                return;
            };
            let silent: Vec<SocketAddr> = self
                .members
                .iter()
                .skip(1)
                .filter(|(n, e)| e.state == crate::member::MemberState::Alive && !heard(n))
                .map(|(_, e)| e.addr.get())
                .collect();
            (Message::Query(q.clone()), silent)
        };
        for to in silent {
            self.stats.queries_resent += 1;
            self.send_bare(to, &msg);
        }
    }

    /// This node's query `ltime` has reached its deadline.
    pub(super) fn query_deadline(&mut self, ltime: u64) {
        if self.queries.finish(ltime) {
            self.events.push_back(Event::QueryDone { ltime });
        }
    }

    /// Forget queries that have ended.
    pub(super) fn expire_queries(&mut self, now: Instant) {
        self.queries.expire(now);
    }

    /// Send an answer by datagram, or by stream when it does not fit one.
    fn send_response(&mut self, to: SocketAddr, r: QueryResponse) {
        let msg = Message::QueryResponse(r);
        let bytes = codec::encode_packet(&msg);
        if bytes.len() <= self.config.packet_size {
            self.send_bare(to, &msg);
        } else {
            self.send_stream(to, bytes, MessageType::QueryResponse);
        }
    }
}
