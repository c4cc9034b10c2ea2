//! The node's query API; the protocol is the query service
//! ([`crate::query::service`]).

use super::Node;
use crate::message::QueryFilter;
use crate::node::service::Context;
use crate::query::service::{Queries, Tick};
use crate::query::{
    default_timeout, QueryParams, MAX_QUERY_SIZE, MAX_RELAY_FACTOR, MAX_RESPONSE_SIZE, MAX_TIMEOUT,
};
use crate::time::Instant;
use crate::{Error, Rejected};

impl Node {
    /// Ask the cluster `name` with `payload`: the query spreads to every
    /// member, this one included ([`crate::Event::Query`]); answers come
    /// back as [`crate::Event::QueryResponse`] until
    /// [`crate::Event::QueryDone`]. Returns the query's Lamport time, which
    /// names it in those events.
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
        self.with_queries(now, |s, cx| {
            s.ask(cx, ltime, name, payload, params, timeout)
        })?;
        self.forward_fresh(now);
        Ok(ltime)
    }

    /// Ack (`ack`) or answer the query `ltime` of `origin`, which this node
    /// was told of ([`crate::Event::Query`]) and which still lasts. An ack
    /// carries no payload. Each is sent once: a second ack or answer is
    /// refused.
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
        self.start(now);
        self.with_queries(now, |s, cx| s.respond(cx, origin, ltime, ack, payload))
    }

    /// Run `f` on the query service.
    pub(super) fn with_queries<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Queries, &mut Context<'_, Tick>) -> R,
    ) -> R {
        self.with_service(now, |n| &mut n.queries, super::Timer::Query, f)
    }
}
