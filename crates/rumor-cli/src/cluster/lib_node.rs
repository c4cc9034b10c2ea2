//! [`Cluster`] over `rumor::Node`, the networked library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use rumor::{Estimate, Event, Key, Keyring, KvEntry, Member, Node, Stats, Tags};
use tokio::sync::{broadcast, RwLock};
use tokio::task::JoinHandle;

use super::{
    guess_advertise, normalize_key, BoxFuture, Cluster, ClusterError, KeyringView, KvChange,
    MemberEvent, NodeSettings, States, UserEvent,
};

/// How long a join retries before giving up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A `rumor::Node` behind the [`Cluster`] boundary.
pub struct LibNode {
    /// `None` once shut down.
    node: RwLock<Option<Node>>,
    name: String,
    addr: SocketAddr,
    keyring: Option<Keyring>,
    encryption: Option<rumor::EncryptionSwitch>,
    events: broadcast::Sender<Arc<MemberEvent>>,
    user_events: broadcast::Sender<Arc<UserEvent>>,
    kv_changes: broadcast::Sender<Arc<KvChange>>,
    queries: broadcast::Sender<Arc<rumor::IncomingQuery>>,
    forward: JoinHandle<()>,
}

fn err(e: rumor::Error) -> ClusterError {
    use rumor::core::kv::{Invalid, KvError};
    use rumor::core::{Error as Core, Rejected};
    use rumor::Error as E;
    match e {
        E::Key(k @ rumor::KeyError::NotInstalled(_)) => ClusterError::NotFound(format!("key: {k}")),
        E::Key(k) => ClusterError::Invalid(format!("key: {k}")),
        E::NoKeyring => ClusterError::Conflict(
            "this agent runs without encryption: start it with --keyring to manage keys".into(),
        ),
        E::Core(Core::LimitReached { limit, detail }) => {
            ClusterError::LimitReached(format!("{} reached: {detail}", limit.name()))
        }
        E::NameConflict { .. } => ClusterError::Conflict(e.to_string()),
        E::Core(Core::ForceLeave(f)) => force_leave_err(f),
        E::Core(Core::Event(Rejected::TooLarge(m))) => {
            ClusterError::TooLarge(format!("user event: {m}"))
        }
        E::Core(Core::Query(Rejected::TooLarge(m))) => ClusterError::TooLarge(format!("query: {m}")),
        E::Core(Core::Query(r)) => ClusterError::Invalid(format!("query: {r}")),
        E::Core(Core::Kv(c @ KvError::ContextRequired { .. })) => ClusterError::Conflict(format!(
            "{c}: read the key first (GET /v1/kv/KEY returns its \"context\") and pass that context with the write (header X-Rumor-Context or ?context=; rumor kv put --context)"
        )),
        E::Core(Core::Kv(KvError::Invalid(i @ Invalid::ValueTooLarge(_)))) => {
            ClusterError::TooLarge(format!("key-space write: {i}"))
        }
        E::Core(Core::State(Rejected::TooLarge(m))) => {
            ClusterError::TooLarge(format!("state write: {m}"))
        }
        E::JoinFailed { .. } => ClusterError::Unreachable(e.to_string()),
        E::Storage(e) => ClusterError::Storage(format!(
            "the write was not acknowledged: {e}"
        )),
        E::Stopped | E::Task(_) => ClusterError::Closed,
        other => ClusterError::Invalid(other.to_string()),
    }
}

/// A refused force-leave, as the agent explains it.
fn force_leave_err(e: rumor::core::ForceLeaveError) -> ClusterError {
    use rumor::core::ForceLeaveError as F;
    match e {
        F::UnknownMember(name) => {
            ClusterError::NotFound(format!("force-leave: no member named {name:?} is known here"))
        }
        F::Alive(name) => ClusterError::Conflict(format!(
            "force-leave: {name:?} is alive: it is for dead or unreachable members; use --force (\"force\": true) to mark it left anyway (a live member refutes it)"
        )),
        F::Local(name) => ClusterError::Invalid(format!(
            "force-leave: {name:?} is this agent: use `rumor leave`"
        )),
    }
}

fn parse_key(key: &str) -> Result<Key, ClusterError> {
    normalize_key(key)?
        .parse()
        .map_err(|e: rumor::Error| ClusterError::Invalid(e.to_string()))
}

impl LibNode {
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
        // Events travel as `Arc`s: a channel allocates and initialises all
        // its slots up front, and a pointer-sized slot keeps that small.
        let (events, _) = broadcast::channel(4096);
        let (user_events, _) = broadcast::channel(4096);
        let (kv_changes, _) = broadcast::channel(4096);
        let (queries, _) = broadcast::channel(256);
        let mut rx = node.events();
        let (tx, utx, ktx) = (events.clone(), user_events.clone(), kv_changes.clone());
        let qtx = queries.clone();
        let forward = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(Event::Member(ev)) => {
                        let ev = Arc::unwrap_or_clone(ev);
                        let _ = tx.send(Arc::new(MemberEvent {
                            kind: ev.kind,
                            member: ev.member,
                            at: SystemTime::now(),
                        }));
                    }
                    Ok(Event::User(ev)) => {
                        let ev = Arc::unwrap_or_clone(ev);
                        let _ = utx.send(Arc::new(UserEvent {
                            name: ev.name,
                            payload: ev.payload,
                            origin: ev.origin.to_string(),
                            ltime: ev.ltime,
                            at: SystemTime::now(),
                        }));
                    }
                    Ok(Event::Kv(ch)) => {
                        let ch = Arc::unwrap_or_clone(ch);
                        let _ = ktx.send(Arc::new(KvChange {
                            key: ch.key,
                            new: ch.new,
                            at: SystemTime::now(),
                        }));
                    }
                    Ok(Event::Query(q)) => {
                        let _ = qtx.send(q);
                    }
                    Ok(Event::Suspected(s)) => {
                        // The member-suspect line itself comes from
                        // `logging::log_member_events`; this says why.
                        tracing::info!(
                            member = %s.name,
                            accuser = %s.accuser,
                            cause = %s.cause,
                            "suspicion of {} raised by {}: {}",
                            s.name,
                            s.accuser,
                            s.cause
                        );
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("{n} node events were missed");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(LibNode {
            name: node.name().to_string(),
            addr: node.advertise_addr(),
            keyring: node.keyring().cloned(),
            encryption: node.encryption().cloned(),
            node: RwLock::new(Some(node)),
            events,
            user_events,
            kv_changes,
            queries,
            forward,
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

impl Cluster for LibNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn local(&self) -> BoxFuture<'_, Result<Member, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.local()) })
    }

    fn members(&self) -> BoxFuture<'_, Result<Vec<Member>, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.members()) })
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<MemberEvent>> {
        self.events.subscribe()
    }

    fn stats(&self) -> BoxFuture<'_, Result<Stats, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.stats()) })
    }

    fn set_tags(&self, tags: Tags) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.set_tags(tags)) })
    }

    fn join(&self, seeds: Vec<SocketAddr>) -> BoxFuture<'_, Result<usize, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.join(seeds)) })
    }

    fn leave(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move {
            let guard = self.node.read().await;
            let n = guard.as_ref().ok_or(ClusterError::Closed)?;
            match n.leave(timeout).await {
                Err(e @ rumor::Error::LeaveTimeout(_)) => {
                    tracing::warn!("{e}");
                    Ok(())
                }
                other => other.map_err(err),
            }
        })
    }

    fn force_leave(
        &self,
        name: String,
        prune: bool,
        force: bool,
    ) -> BoxFuture<'_, Result<(), ClusterError>> {
        let opts = rumor::ForceLeave { prune, force };
        Box::pin(async move { with_node!(self, n => n.force_leave(name, opts)) })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let node = self.node.write().await.take();
            if let Some(n) = node {
                if let Err(e) = n.shutdown().await {
                    tracing::warn!("shutdown: {e}");
                }
            }
        })
    }

    fn subscribe_user(&self) -> broadcast::Receiver<Arc<UserEvent>> {
        self.user_events.subscribe()
    }

    fn subscribe_kv(&self) -> broadcast::Receiver<Arc<KvChange>> {
        self.kv_changes.subscribe()
    }

    fn set_protocol(
        &self,
        config: rumor_core::Config,
    ) -> BoxFuture<'_, Result<Vec<&'static str>, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.set_protocol(config)) })
    }

    fn set_stream_limits(
        &self,
        limits: rumor::builder::StreamLimits,
    ) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.set_stream_limits(limits)) })
    }

    fn tuning(
        &self,
    ) -> BoxFuture<'_, Result<(rumor_core::Config, rumor::builder::StreamLimits), ClusterError>>
    {
        Box::pin(async move {
            let guard = self.node.read().await;
            let n = guard.as_ref().ok_or(ClusterError::Closed)?;
            Ok((n.protocol(), n.stream_limits()))
        })
    }

    fn subscribe_queries(&self) -> broadcast::Receiver<Arc<rumor::IncomingQuery>> {
        self.queries.subscribe()
    }

    fn query(
        &self,
        name: String,
        payload: Vec<u8>,
        options: rumor::QueryOptions,
    ) -> BoxFuture<'_, Result<rumor::QueryStream, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.query(name, payload, options)) })
    }

    fn respond(
        &self,
        query: Arc<rumor::IncomingQuery>,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.respond(&query, payload)) })
    }

    fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<u64, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.send_event(name, payload)) })
    }

    fn state_write(
        &self,
        key: String,
        value: Option<String>,
    ) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move {
            match value {
                Some(v) => with_node!(self, n => n.state_set(key, v)),
                None => with_node!(self, n => n.state_delete(key)),
            }
        })
    }

    fn states(&self) -> BoxFuture<'_, Result<States, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.states()) })
    }

    fn kv_get(&self, key: String) -> BoxFuture<'_, Result<Option<KvEntry>, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.kv_entry(&key)) })
    }

    fn kv_scan(
        &self,
        prefix: String,
    ) -> BoxFuture<'_, Result<Vec<(String, KvEntry)>, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.kv_scan(&prefix)) })
    }

    fn kv_export_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(String, KvEntry)>, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.kv_export_page(after.as_deref(), limit)) })
    }

    fn kv_import(
        &self,
        entries: Vec<(String, KvEntry)>,
    ) -> BoxFuture<'_, Result<rumor::core::Imported, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.kv_import(entries)) })
    }

    fn kv_write(
        &self,
        key: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move {
            match value {
                Some(v) => with_node!(self, n => n.kv_put(key, v)),
                None => with_node!(self, n => n.kv_delete(key)),
            }
        })
    }

    fn kv_write_in_context(
        &self,
        key: String,
        value: Option<Vec<u8>>,
        read: rumor::VersionVector,
    ) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.kv_put_in_context(key, value, read)) })
    }

    fn track_aggregate(&self, name: String) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.track_aggregate(name)) })
    }

    fn aggregate(&self, name: String) -> BoxFuture<'_, Result<Option<Estimate>, ClusterError>> {
        Box::pin(async move { with_node!(self, n => n.aggregate(&name)) })
    }

    fn keys(&self) -> Result<KeyringView, ClusterError> {
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

    fn install_key(&self, key: &str) -> Result<(), ClusterError> {
        let k = parse_key(key)?;
        self.ring()?.install(k);
        Ok(())
    }

    fn use_key(&self, key: &str) -> Result<(), ClusterError> {
        let k = parse_key(key)?;
        self.ring()?.use_key(&k).map_err(err)
    }

    fn remove_key(&self, key: &str) -> Result<(), ClusterError> {
        let k = parse_key(key)?;
        self.ring()?.remove(&k).map_err(err)
    }

    fn encryption(&self) -> Option<rumor::EncryptionMode> {
        self.encryption.as_ref().map(rumor::EncryptionSwitch::get)
    }

    fn set_encryption(&self, mode: rumor::EncryptionMode) -> Result<(), ClusterError> {
        let switch = self
            .encryption
            .as_ref()
            .ok_or_else(|| err(rumor::Error::NoKeyring))?;
        switch.set(mode);
        Ok(())
    }
}

impl Drop for LibNode {
    fn drop(&mut self) {
        self.forward.abort();
    }
}
