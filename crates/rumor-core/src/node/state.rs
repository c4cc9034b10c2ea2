//! The node's per-node state API; the protocol is the state service
//! ([`crate::state::service`]).

use super::{Node, Timer};
use crate::node::service::{Context, Service};
use crate::state::service::{NodeState, Tick};
use crate::time::Instant;
use crate::Error;

impl Node {
    /// Set (or with `None`, delete) one of this node's state keys.
    pub fn state_write(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        self.start(now);
        self.with_state(now, |s, cx| s.write(cx, key, value))?;
        self.forward_fresh(now);
        Ok(())
    }

    /// Every owner's per-node state.
    pub fn state(&self) -> &crate::state::ClusterState {
        self.node_state.store()
    }

    /// Run `f` on the per-node state service.
    pub(super) fn with_state<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut NodeState, &mut Context<'_, Tick>) -> R,
    ) -> R {
        self.with_service(now, |n| &mut n.node_state, Timer::State, f)
    }

    /// Member `name` was reclaimed: the services that keep something per
    /// member (per-node state) drop it. A new service that does joins here.
    pub(super) fn member_gone(&mut self, name: &str) {
        let now = self.now;
        self.with_state(now, |s, cx| s.on_member_gone(cx, name));
    }
}
