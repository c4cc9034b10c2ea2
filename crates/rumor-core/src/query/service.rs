//! Queries as a service of the node: a query spreads as a rumor
//! ([`Message::Query`]); the driver decides whether this node is selected
//! and answers through `Node::respond_query`; answers
//! ([`Message::QueryResponse`]) go straight to the asker by datagram (by
//! stream when they do not fit one), and through `relay_factor` other
//! members as well. The bookkeeping, without I/O, is [`QueryLog`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{NotTaken, QueryLog, QueryParams, MAX_IN_FLIGHT};
use crate::codec;
use crate::event::Event;
use crate::limits::Limit;
use crate::member::validate_name;
use crate::message::{Message, Query, QueryResponse};
use crate::node::service::{Context, Service};
use crate::time::Instant;
use crate::{Error, Rejected};

/// The query service's timers, by the query's Lamport time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tick {
    /// This node's query ends.
    Deadline(u64),
    /// Send this node's query once more to the members still silent.
    Resend(u64),
}

/// Queries seen, and this node's own in flight.
#[derive(Default)]
pub(crate) struct Queries {
    log: QueryLog,
}

type Cx<'a, 'b> = &'a mut Context<'b, Tick>;

impl Queries {
    /// Ask the cluster (see `Node::query`); `ltime` is the query's Lamport
    /// time; `params` and `timeout` already checked.
    pub fn ask(
        &mut self,
        cx: Cx,
        ltime: u64,
        name: &str,
        payload: &[u8],
        params: QueryParams,
        timeout: Duration,
    ) -> Result<(), Error> {
        let now = cx.now();
        let q = Query {
            ltime,
            origin: cx.name().clone(),
            origin_addr: cx.own_addr(),
            name: name.to_owned(),
            payload: payload.to_vec(),
            filters: params.filters,
            ack: params.ack,
            relay_factor: params.relay_factor,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        if !self.log.start(&q, now + timeout) {
            return Err(Error::LimitReached {
                limit: Limit::Query,
                detail: format!("{MAX_IN_FLIGHT} queries of this node are in flight already"),
            });
        }
        cx.set_timer(now + timeout, Tick::Deadline(ltime));
        if q.ack {
            cx.set_timer(now + timeout / 4, Tick::Resend(ltime));
        }
        self.on_query(cx, q);
        Ok(())
    }

    /// Ack (`ack`) or answer the query `ltime` of `origin` (see
    /// `Node::respond_query`); `payload` already checked.
    pub fn respond(
        &mut self,
        cx: Cx,
        origin: &str,
        ltime: u64,
        ack: bool,
        payload: &[u8],
    ) -> Result<(), Error> {
        let Some(answer) = self.log.may_answer(cx.now(), origin, ltime, ack) else {
            return Err(Error::Query(Rejected::Invalid(
                "no such query in progress, or it was answered already".into(),
            )));
        };
        let r = QueryResponse {
            ltime,
            from: cx.name().clone(),
            ack,
            payload: if ack { Vec::new() } else { payload.to_vec() },
            relay_to: None,
        };
        if *origin == **cx.name() {
            self.on_response(cx, r);
            return Ok(());
        }
        let relays = cx
            .peers()
            .random_alive_except(usize::from(answer.relay_factor), answer.to);
        for (_, via) in relays {
            let copy = QueryResponse {
                relay_to: Some(answer.to),
                ..r.clone()
            };
            send_response(cx, via, copy);
        }
        send_response(cx, answer.to, r);
        Ok(())
    }

    /// Deliver a query once and pass it on, if its origin is a member
    /// known alive at the address it names (or this node).
    pub fn on_query(&mut self, cx: Cx, q: Query) {
        let own = q.origin == *cx.name() && q.origin_addr == cx.own_addr();
        let known = own || {
            let peers = cx.peers();
            !peers.is_gone(&q.origin) && peers.addr_of(&q.origin) == Some(q.origin_addr)
        };
        if !known || validate_name(&q.origin).is_err() {
            cx.stats().queries_refused += 1;
            return;
        }
        match self.log.witness(cx.now(), &q) {
            Ok(()) => {}
            Err(NotTaken::Duplicate) => return,
            Err(NotTaken::Full) => {
                cx.refused(Limit::Query);
                return;
            }
        }
        let key: Arc<str> = format!("\u{1}query\u{1}{}\u{1}{}", q.origin, q.ltime).into();
        cx.broadcast(key, Message::Query(q.clone()));
        cx.emit(Event::Query(q));
    }

    /// An answer to one of this node's queries, or one to relay.
    pub fn on_response(&mut self, cx: Cx, r: QueryResponse) {
        if let Some(to) = r.relay_to {
            // Relay only to a member: never a packet to an address a
            // sender made up.
            if cx.peers().listens_at(to) && to != cx.own_addr() {
                cx.stats().query_responses_relayed += 1;
                send_response(
                    cx,
                    to,
                    QueryResponse {
                        relay_to: None,
                        ..r
                    },
                );
            } else {
                cx.stats().queries_refused += 1;
            }
            return;
        }
        if self.log.record(cx.now(), &r) {
            cx.emit(Event::QueryResponse(r));
        }
    }

    /// A quarter of the way to the deadline of a query that asked for acks:
    /// send it once more, straight, to every alive member that has neither
    /// acked nor answered. A query spreads as a rumor, and an eager wave
    /// that misses a member can spend the rumor's retransmit budget before
    /// a later round reaches it (user events have push-pull repair; queries
    /// last too briefly for it). A member that had it drops the copy.
    fn resend(&mut self, cx: Cx, ltime: u64) {
        let Some((q, heard)) = self.log.in_flight(ltime) else {
            return;
        };
        let msg = Message::Query(q.clone());
        let silent: Vec<SocketAddr> = cx
            .peers()
            .alive()
            .into_iter()
            .filter(|(n, _)| !heard(n))
            .map(|(_, addr)| addr)
            .collect();
        for to in silent {
            cx.stats().queries_resent += 1;
            cx.send_bare(to, &msg);
        }
    }

    /// Forget queries that have ended.
    pub fn expire(&mut self, now: Instant) {
        self.log.expire(now);
    }
}

impl Service for Queries {
    type Timer = Tick;

    fn on_timer(&mut self, cx: Cx, timer: Tick) {
        match timer {
            Tick::Deadline(ltime) => {
                if self.log.finish(ltime) {
                    cx.emit(Event::QueryDone { ltime });
                }
            }
            Tick::Resend(ltime) => self.resend(cx, ltime),
        }
    }
}

/// Send an answer by datagram, or by stream when it does not fit one.
fn send_response(cx: Cx, to: SocketAddr, r: QueryResponse) {
    let msg = Message::QueryResponse(r);
    let bytes = codec::encode_packet(&msg);
    if bytes.len() <= cx.config().packet_size {
        cx.send_bare(to, &msg);
    } else {
        cx.send_stream(to, bytes, msg.kind());
    }
}
