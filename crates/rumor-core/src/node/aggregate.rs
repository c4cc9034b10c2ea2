//! The node's aggregation API; the protocol is the aggregation service
//! ([`crate::aggregate::service`]).

use super::{Node, Timer};
use crate::aggregate::service::Aggregation;
use crate::aggregate::Estimate;
use crate::node::service::Context;
use crate::time::Instant;
use crate::Error;

impl Node {
    /// Aggregate the per-node state key `name` across the cluster (every
    /// node whose value of that key parses as a finite number takes part).
    /// Tracking spreads: other nodes join when they first receive mass.
    pub fn track_aggregate(&mut self, now: Instant, name: &str) -> Result<(), Error> {
        self.start(now);
        self.with_aggregation(now, |s, cx| s.track(cx, name))
            .map_err(|m| Error::Aggregate(crate::Rejected::Invalid(m)))
    }

    /// The current estimate of aggregate `name`, if tracked and known.
    pub fn aggregate(&self, name: &str) -> Option<Estimate> {
        self.aggregation.estimate(name)
    }

    /// Every tracked aggregate.
    pub fn aggregates(&self) -> &crate::aggregate::Aggregates {
        self.aggregation.aggregates()
    }

    /// Run `f` on the aggregation service.
    pub(super) fn with_aggregation<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Aggregation, &mut Context<'_, crate::aggregate::service::Tick>) -> R,
    ) -> R {
        self.with_service(now, |n| &mut n.aggregation, Timer::Aggregation, f)
    }
}
