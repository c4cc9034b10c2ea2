//! [`Cluster`]: the agent's handle on its `rumor::Node`. It adds what only
//! the agent needs: a shutdown through a shared handle (the HTTP API, the
//! demo and the signal handler all hold one), the agent's start settings,
//! and errors as [`ClusterError`]s the HTTP API maps to status codes.
//! Events are the library's own ([`rumor::Event`]), received straight
//! from the node's one channel.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use rumor::{
    Estimate, EventFilter, Key, Keyring, KvEntry, Member, Node, Stats, Subscription, Tags,
};
use tokio::sync::RwLock;

use super::error::err;
use super::{guess_advertise, normalize_key, ClusterError, KeyringView, NodeSettings, States};

/// How long a join retries before giving up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One running cluster member, as the agent uses it.
pub struct Cluster {
    /// `None` once shut down.
    node: RwLock<Option<Node>>,
    name: String,
    addr: SocketAddr,
    keyring: Option<Keyring>,
    encryption: Option<rumor::EncryptionSwitch>,
}

fn parse_key(key: &str) -> Result<Key, ClusterError> {
    normalize_key(key)?
        .parse()
        .map_err(|e: rumor::Error| ClusterError::Invalid(e.to_string()))
}

impl Cluster {
    /// Bind the sockets and start the node (it joins nobody yet).
    pub async fn start(s: NodeSettings) -> Result<Self> {
        let mut b = Node::builder()
            .name(s.name.clone())
            .bind(s.bind)
            .tags(s.tags.clone())
            .config(s.config.clone())
            .join_timeout(JOIN_TIMEOUT);
        let advertise = s.advertise.or_else(|| {
            s.bind
                .ip()
                .is_unspecified()
                .then(|| guess_advertise(s.bind))
        });
        if let Some(a) = advertise {
            b = b.advertise(a);
        }
        if let Some(l) = &s.label {
            b = b.label(l.clone());
        }
        if let Some((first, rest)) = s.keys.split_first() {
            let primary = parse_key(first).map_err(|e| anyhow::anyhow!("keyring: {e}"))?;
            let others = rest
                .iter()
                .map(|k| parse_key(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("keyring: {e}"))?;
            b = b
                .keyring(Keyring::with_keys(primary, others))
                .encryption(s.encryption);
        }
        if let Some(n) = s.streams.max_streams {
            b = b.max_streams(n);
        }
        if let Some(n) = s.streams.max_streams_per_source {
            b = b.max_streams_per_source(n);
        }
        if let Some(n) = s.streams.stream_preauth_budget {
            b = b.stream_preauth_budget(n);
        }
        if let Some(inc) = s.last_incarnation {
            // Start above the previous run's incarnation, so the first alive
            // claim outranks what the cluster remembers of this node.
            b = b.incarnation(inc);
        }
        if let Some(d) = &s.data {
            let sync = match d.sync_interval {
                None => rumor::storage::SyncMode::Always,
                Some(every) => rumor::storage::SyncMode::Interval(every),
            };
            b = b.storage(rumor::storage::StorageOptions::new(d.dir.clone()).sync(sync));
        }
        // Testing only (the multi-host testbed's clock faults): a wall clock
        // off by this many milliseconds. Not a flag, so no operator sets it
        // by mistake.
        if let Some(ms) = std::env::var("RUMOR_TEST_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            tracing::warn!(
                offset_ms = ms,
                "RUMOR_TEST_CLOCK_OFFSET_MS: this agent's wall clock is shifted (testing only)"
            );
            b = b.test_clock_offset_micros(ms.saturating_mul(1_000));
        }
        let node = b.start().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Cluster {
            name: node.name().to_string(),
            addr: node.advertise_addr(),
            keyring: node.keyring().cloned(),
            encryption: node.encryption().cloned(),
            node: RwLock::new(Some(node)),
        })
    }

    fn ring(&self) -> Result<&Keyring, ClusterError> {
        self.keyring
            .as_ref()
            .ok_or_else(|| err(rumor::Error::NoKeyring))
    }
}

macro_rules! with_node {
    ($self:ident, $n:ident => $body:expr) => {{
        let guard = $self.node.read().await;
        let $n = guard.as_ref().ok_or(ClusterError::Closed)?;
        $body.await.map_err(err)
    }};
}

/// The node's methods, with errors as [`ClusterError`]s; each fails with
/// [`ClusterError::Closed`] once the node is shut down.
impl Cluster {
    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the others reach this node at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node as the cluster sees it.
    pub async fn local(&self) -> Result<Member, ClusterError> {
        with_node!(self, n => n.local())
    }

    /// Every known member, this node and tombstones included.
    pub async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        with_node!(self, n => n.members())
    }

    /// The last direct probe round trip to member `name`, if one was
    /// answered in time.
    pub async fn member_rtt(
        &self,
        name: &str,
    ) -> Result<Option<std::time::Duration>, ClusterError> {
        with_node!(self, n => n.member_rtt(name))
    }

    /// The node's events of the kinds `filter` selects, from now on (see
    /// [`rumor::Node::subscribe`]). Subscribed before this returns, so no
    /// later event is missed; [`ClusterError::Closed`] once the node is
    /// shut down (or shutting down).
    pub fn subscribe(&self, filter: EventFilter) -> Result<Subscription, ClusterError> {
        // Only `shutdown` takes the lock for writing: when it holds (or
        // waits for) it, the node is going and has no events to give.
        let guard = self.node.try_read().map_err(|_| ClusterError::Closed)?;
        let node = guard.as_ref().ok_or(ClusterError::Closed)?;
        Ok(node.subscribe(filter))
    }

    /// Counters, the awareness score and members by state.
    pub async fn stats(&self) -> Result<Stats, ClusterError> {
        with_node!(self, n => n.stats())
    }

    /// Replace the tags.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), ClusterError> {
        with_node!(self, n => n.set_tags(tags))
    }

    /// Join through `seeds`; returns how many answered.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<usize, ClusterError> {
        with_node!(self, n => n.join(seeds))
    }

    /// Leave gracefully, waiting at most `timeout` for the announcement to
    /// spread (a timeout is logged, not an error).
    pub async fn leave(&self, timeout: Duration) -> Result<(), ClusterError> {
        let guard = self.node.read().await;
        let n = guard.as_ref().ok_or(ClusterError::Closed)?;
        match n.leave(timeout).await {
            Err(e @ rumor::Error::LeaveTimeout(_)) => {
                tracing::warn!("{e}");
                Ok(())
            }
            other => other.map_err(err),
        }
    }

    /// Mark member `name` left cluster-wide on its behalf; with `prune`
    /// every member forgets it at once. A member seen alive is refused
    /// (Conflict) unless `force`; an unknown name is NotFound.
    pub async fn force_leave(
        &self,
        name: String,
        prune: bool,
        force: bool,
    ) -> Result<(), ClusterError> {
        let opts = rumor::ForceLeave { prune, force };
        with_node!(self, n => n.force_leave(name, opts))
    }

    /// Stop all I/O at once (a crash, as far as the others can tell).
    pub async fn shutdown(&self) {
        let node = self.node.write().await.take();
        if let Some(n) = node {
            if let Err(e) = n.shutdown().await {
                tracing::warn!("shutdown: {e}");
            }
        }
    }

    /// Change the protocol configuration while running; returns the
    /// restart-only fields it would change, kept at their running values.
    pub async fn set_protocol(
        &self,
        config: rumor_core::Config,
    ) -> Result<Vec<&'static str>, ClusterError> {
        with_node!(self, n => n.set_protocol(config))
    }

    /// Change the transport's stream caps while running.
    pub async fn set_stream_limits(
        &self,
        limits: rumor::builder::StreamLimits,
    ) -> Result<(), ClusterError> {
        with_node!(self, n => n.set_stream_limits(limits))
    }

    /// The protocol configuration and stream caps in force.
    pub async fn tuning(
        &self,
    ) -> Result<(rumor_core::Config, rumor::builder::StreamLimits), ClusterError> {
        let guard = self.node.read().await;
        let n = guard.as_ref().ok_or(ClusterError::Closed)?;
        Ok((n.protocol(), n.stream_limits()))
    }

    /// Ask the cluster a query; acks and answers arrive on the stream.
    pub async fn query(
        &self,
        name: String,
        payload: Vec<u8>,
        options: rumor::QueryOptions,
    ) -> Result<rumor::QueryStream, ClusterError> {
        with_node!(self, n => n.query(name, payload, options))
    }

    /// Answer a query delivered as [`rumor::Event::Query`].
    pub async fn respond(
        &self,
        query: &rumor::IncomingQuery,
        payload: Vec<u8>,
    ) -> Result<(), ClusterError> {
        with_node!(self, n => n.respond(query, payload))
    }

    /// Broadcast a user event; returns its Lamport time.
    pub async fn user_event(&self, name: String, payload: Vec<u8>) -> Result<u64, ClusterError> {
        with_node!(self, n => n.send_event(name, payload))
    }

    /// Set (`Some`) or delete (`None`) one of this node's per-node state keys.
    pub async fn state_write(
        &self,
        key: String,
        value: Option<String>,
    ) -> Result<(), ClusterError> {
        match value {
            Some(v) => with_node!(self, n => n.state_set(key, v)),
            None => with_node!(self, n => n.state_delete(key)),
        }
    }

    /// Every member's per-node state as known here, by member name.
    pub async fn states(&self) -> Result<States, ClusterError> {
        with_node!(self, n => n.states())
    }

    /// The live entry under a replicated key (`None`: absent or deleted).
    pub async fn kv_get(&self, key: String) -> Result<Option<KvEntry>, ClusterError> {
        with_node!(self, n => n.kv_entry(&key))
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub async fn kv_scan(&self, prefix: String) -> Result<Vec<(String, KvEntry)>, ClusterError> {
        with_node!(self, n => n.kv_scan(&prefix))
    }

    /// Up to `limit` entries after the key `after`, tombstones included,
    /// in key order (a backup, read in pages).
    pub async fn kv_export_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<(String, KvEntry)>, ClusterError> {
        with_node!(self, n => n.kv_export_page(after.as_deref(), limit))
    }

    /// Merge entries from a backup like a peer's records.
    pub async fn kv_import(
        &self,
        entries: Vec<(String, KvEntry)>,
    ) -> Result<rumor::core::Imported, ClusterError> {
        with_node!(self, n => n.kv_import(entries))
    }

    /// Write (`Some`) or delete (`None`) a last-write-wins key.
    pub async fn kv_write(&self, key: String, value: Option<Vec<u8>>) -> Result<(), ClusterError> {
        match value {
            Some(v) => with_node!(self, n => n.kv_put(key, v)),
            None => with_node!(self, n => n.kv_delete(key)),
        }
    }

    /// Write (`Some`) or delete (`None`) a siblings-mode key with the causal
    /// context `read` the writer saw (on a last-write-wins key the context
    /// is ignored).
    pub async fn kv_write_in_context(
        &self,
        key: String,
        value: Option<Vec<u8>>,
        read: rumor::VersionVector,
    ) -> Result<(), ClusterError> {
        with_node!(self, n => n.kv_put_in_context(key, value, read))
    }

    /// Start aggregating the state key `name` (no-op if already tracked).
    pub async fn track_aggregate(&self, name: String) -> Result<(), ClusterError> {
        with_node!(self, n => n.track_aggregate(name))
    }

    /// The current estimate of aggregate `name` (`None`: not known yet).
    pub async fn aggregate(&self, name: String) -> Result<Option<Estimate>, ClusterError> {
        with_node!(self, n => n.aggregate(&name))
    }

    /// The keyring.
    pub fn keys(&self) -> Result<KeyringView, ClusterError> {
        let Some(ring) = &self.keyring else {
            return Ok(KeyringView {
                primary: None,
                keys: Vec::new(),
            });
        };
        Ok(KeyringView {
            primary: Some(ring.primary().to_string()),
            keys: ring.keys().iter().map(ToString::to_string).collect(),
        })
    }

    /// Install a key.
    pub fn install_key(&self, key: &str) -> Result<(), ClusterError> {
        let k = parse_key(key)?;
        self.ring()?.install(k);
        Ok(())
    }

    /// Make an installed key primary.
    pub fn use_key(&self, key: &str) -> Result<(), ClusterError> {
        let k = parse_key(key)?;
        self.ring()?.use_key(&k).map_err(err)
    }

    /// Remove a key.
    pub fn remove_key(&self, key: &str) -> Result<(), ClusterError> {
        let k = parse_key(key)?;
        self.ring()?.remove(&k).map_err(err)
    }

    /// The encryption mode (`None`: the node has no keyring).
    pub fn encryption(&self) -> Option<rumor::EncryptionMode> {
        self.encryption.as_ref().map(rumor::EncryptionSwitch::get)
    }

    /// Change the encryption mode (nodes with a keyring only).
    pub fn set_encryption(&self, mode: rumor::EncryptionMode) -> Result<(), ClusterError> {
        let switch = self
            .encryption
            .as_ref()
            .ok_or_else(|| err(rumor::Error::NoKeyring))?;
        switch.set(mode);
        Ok(())
    }
}
