//! The [`Node`] handle: the application's side of a running node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use rumor_core::aggregate::Estimate;
use rumor_core::kv::{Entry as KvEntry, VersionVector};
use rumor_core::{ForceLeave, Member, Tags};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::builder::StreamLimits;
use crate::driver::Command;
use crate::encryption::{EncryptionMode, EncryptionSwitch};
use crate::events::{EventFilter, KvChange, Lagged, Subscription};
use crate::keyring::{Key, Keyring};
use crate::lazy_channel::LazyChannel;
use crate::metrics::Stats;
use crate::seeds::{self, Seed};
use crate::{Builder, Error, Event, Membership};

/// First wait between two join attempts; doubled up to [`MAX_BACKOFF`],
/// each wait drawn between half and all of it (see [`jittered`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest a join waits for the answer to a check of its name.
const NAME_CHECK_WAIT: Duration = Duration::from_secs(2);

/// Longest wait between two join attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A random wait between half of `backoff` and all of it: nodes refused
/// together (many joining one seed at once) do not all come back together.
fn jittered(backoff: Duration) -> Duration {
    let fraction = getrandom::u32().map_or(1.0, |r| f64::from(r) / f64::from(u32::MAX));
    backoff.mul_f64(0.5 + 0.5 * fraction)
}

/// A running cluster member. Dropping the handle (or calling
/// [`Node::shutdown`]) stops the node without announcing a leave; call
/// [`Node::leave`] first to leave gracefully.
#[derive(Debug)]
pub struct Node {
    pub(crate) name: String,
    pub(crate) advertise: SocketAddr,
    pub(crate) local_addr: SocketAddr,
    pub(crate) commands: mpsc::Sender<Command>,
    /// The node's one event channel (see [`crate::events`]).
    pub(crate) events: Arc<LazyChannel<Event>>,
    pub(crate) keyring: Option<Keyring>,
    pub(crate) encryption: Option<EncryptionSwitch>,
    pub(crate) join_timeout: Duration,
    pub(crate) dns_servers: Vec<SocketAddr>,
    /// The protocol configuration (as given, before the envelope's
    /// overhead comes off `packet_size`) and stream caps in force.
    pub(crate) tuning: std::sync::Mutex<(rumor_core::Config, StreamLimits)>,
    pub(crate) task: Option<JoinHandle<()>>,
}

impl Node {
    /// A builder to configure and start a node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address other members reach this node at.
    pub fn advertise_addr(&self) -> SocketAddr {
        self.advertise
    }

    /// The address the sockets are bound to (with the port the OS picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Every member this node knows of, itself and tombstones (dead or
    /// left members not yet reclaimed) included.
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        self.ask(Command::Members).await
    }

    /// The round trip of the last direct probe of member `name` that was
    /// answered in time; `None` before one was (or for this node itself).
    pub async fn member_rtt(&self, name: &str) -> Result<Option<Duration>, Error> {
        let name = name.to_string();
        self.ask(|tx| Command::MemberRtt(name, tx)).await
    }

    /// This node as the cluster sees it.
    pub async fn local(&self) -> Result<Member, Error> {
        self.ask(Command::Local).await
    }

    /// Counters of the protocol and the transport, health and membership.
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.ask(Command::Stats).await
    }

    /// Each member's clock offset from this node's (positive: ahead), as
    /// last measured NTP-style on a key-space sync session this node
    /// started; members only.
    pub async fn clock_skew(
        &self,
    ) -> Result<std::collections::BTreeMap<String, rumor_core::kv::Skew>, Error> {
        Ok(self.stats().await?.clock_skew)
    }

    /// The local health score (0 is healthy; higher slows probing down).
    pub async fn awareness(&self) -> Result<u32, Error> {
        Ok(self.stats().await?.awareness)
    }

    /// Members alive or suspect, this node included.
    pub async fn num_live(&self) -> Result<usize, Error> {
        let m = self.stats().await?.members;
        Ok(m.alive + m.suspect)
    }

    /// Everything this node reports from now on: membership changes, user
    /// events, per-node state and key-space changes, queries, suspicions
    /// (see [`Event`]), each stamped with when this node saw it. A
    /// receiver that falls more than
    /// [`EVENTS_CAPACITY`](crate::builder::EVENTS_CAPACITY) events behind
    /// loses the oldest (it is told how many it missed).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The events of the kinds `filter` selects, from now on: a filtered
    /// view of [`Node::events`] (`EventFilter::MEMBER` for membership
    /// changes: joined, updated, suspect, alive, failed, left, reaped).
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        Subscription::new(filter, self.events.subscribe())
    }

    /// Everything this node reports from now on, as a
    /// [`Stream`](futures_util::Stream): [`Node::events`] for `async`
    /// stream combinators. An `Err(Lagged(n))` item says `n` events were
    /// missed because the reader fell behind; the stream ends when the node
    /// stops. [`Subscription::into_stream`] streams fewer kinds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rumor::Error> {
    /// use futures_util::StreamExt;
    /// use rumor::{Event, Node, Profile};
    ///
    /// let node = Node::builder()
    ///     .name("a")
    ///     .bind("127.0.0.1:0".parse().unwrap())
    ///     .profile(Profile::Local)
    ///     .start()
    ///     .await?;
    /// let users = node.event_stream().filter_map(|ev| async move {
    ///     match ev {
    ///         Ok(Event::User(u)) => Some(u),
    ///         _ => None,
    ///     }
    /// });
    /// let mut users = std::pin::pin!(users);
    /// node.send_event("deploy", b"v2".to_vec()).await?;
    /// let u = users.next().await.expect("delivered to the sender too");
    /// assert_eq!((u.name.as_str(), &u.payload[..]), ("deploy", &b"v2"[..]));
    /// assert!(u.at <= std::time::SystemTime::now());
    /// # node.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn event_stream(
        &self,
    ) -> impl Stream<Item = Result<Event, Lagged>> + Send + Unpin + 'static {
        self.subscribe(EventFilter::ALL).into_stream()
    }

    /// Changes of the replicated keys starting with `prefix` (`""` for
    /// all), from now on: local writes and those learned from the cluster,
    /// deletes included (their `new` entry is a tombstone).
    pub fn watch(&self, prefix: impl Into<String>) -> Watch {
        Watch {
            prefix: prefix.into(),
            rx: self.subscribe(EventFilter::KV),
        }
    }

    /// Mark member `name` left on every member, on its behalf: for a member
    /// that died or cannot be reached and will not leave by itself. With
    /// `opts.prune` every member forgets it at once instead of keeping its
    /// tombstone. Fails ([`rumor_core::ForceLeaveError`]) for an unknown
    /// name, this node, or a member seen alive unless `opts.force` (a live
    /// member refutes the leave).
    pub async fn force_leave(
        &self,
        name: impl Into<String>,
        opts: ForceLeave,
    ) -> Result<(), Error> {
        let name = name.into();
        Ok(self.ask(|tx| Command::ForceLeave(name, opts, tx)).await??)
    }

    /// Broadcast an application event to the cluster. Every node, this one
    /// included, delivers it once as [`Event::User`]. Returns its Lamport
    /// time. Fails if the name is empty or name and payload together exceed
    /// the configuration's `max_event_size`.
    pub async fn send_event(
        &self,
        name: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<u64, Error> {
        let (name, payload) = (name.into(), payload.into());
        Ok(self
            .ask(|tx| Command::SendEvent(name, payload, tx))
            .await??)
    }

    /// Ask the cluster a query: it spreads to every member; those its
    /// filters select (every filter must match; patterns are regular
    /// expressions matched against the whole name or tag value) ack it if
    /// `options.ack` and answer it (see [`crate::query`]). The stream yields
    /// acks and answers as they arrive and ends at the timeout (by default
    /// `gossip_interval x 16 x ceil(log10(N + 1))`, as Serf's). Fails if a
    /// pattern does not compile, the name is empty, or name, payload and
    /// filters exceed 1 KiB.
    pub async fn query(
        &self,
        name: impl Into<String>,
        payload: impl Into<Vec<u8>>,
        options: crate::QueryOptions,
    ) -> Result<crate::QueryStream, Error> {
        crate::query::check_filters(&options.filters)
            .map_err(|e| Error::Core(rumor_core::Error::Query(rumor_core::Rejected::Invalid(e))))?;
        let (name, payload) = (name.into(), payload.into());
        let (ltime, timeout, rx) = self
            .ask(|tx| Command::Query(name, payload, options, tx))
            .await??;
        Ok(crate::QueryStream { ltime, timeout, rx })
    }

    /// Change this node's protocol limits while it runs (see
    /// [`rumor_core::Node::set_limits`]): every bound takes the new value at
    /// once; nothing held over a lowered bound is dropped. The transport's
    /// stream caps change with [`Node::set_stream_limits`].
    pub async fn set_limits(&self, limits: rumor_core::Limits) -> Result<(), Error> {
        self.ask(|tx| Command::SetLimits(limits.clone(), tx))
            .await??;
        self.tuned(|t| t.0.limits = limits);
        Ok(())
    }

    /// Change this node's protocol configuration while it runs (see
    /// [`rumor_core::Node::set_protocol`]): checked as at start (an invalid
    /// one changes nothing); intervals take effect at once. The fields of
    /// [`rumor_core::Config::RESTART_ONLY`] keep their values: the names of
    /// those `config` would change are returned.
    pub async fn set_protocol(
        &self,
        config: rumor_core::Config,
    ) -> Result<Vec<&'static str>, Error> {
        let asked = Box::new(config.clone());
        let kept = self.ask(|tx| Command::SetProtocol(asked, tx)).await??;
        self.tuned(|t| t.0 = t.0.runtime_update(&config).0);
        Ok(kept)
    }

    /// The protocol configuration in force (as given to the builder or to
    /// [`Node::set_protocol`]).
    pub fn protocol(&self) -> rumor_core::Config {
        self.tuning().0.clone()
    }

    /// Change the transport's stream caps while running (each raised to
    /// its minimum): streams open now stay open; new ones are refused
    /// until the count is under a lowered cap.
    pub async fn set_stream_limits(&self, limits: StreamLimits) -> Result<(), Error> {
        let limits = limits.clamped();
        self.ask(|tx| Command::SetStreamLimits(limits, tx)).await?;
        self.tuned(|t| t.1 = limits);
        Ok(())
    }

    /// The stream caps in force.
    pub fn stream_limits(&self) -> StreamLimits {
        self.tuning().1
    }

    fn tuning(&self) -> std::sync::MutexGuard<'_, (rumor_core::Config, StreamLimits)> {
        self.tuning.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tuned(&self, f: impl FnOnce(&mut (rumor_core::Config, StreamLimits))) {
        f(&mut self.tuning());
    }

    /// Answer `query` (delivered as [`Event::Query`]) with `payload` (at
    /// most 64 KiB; sent by stream when it does not fit a datagram). Once
    /// per query, before its timeout.
    pub async fn respond(
        &self,
        query: &crate::IncomingQuery,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        let (origin, ltime, payload) = (query.origin.clone(), query.ltime, payload.into());
        Ok(self
            .ask(|tx| Command::Respond(origin, ltime, payload, tx))
            .await??)
    }

    /// Set one of this node's per-node state keys; the cluster learns it
    /// through gossip and anti-entropy. Fails if the key or value is too long.
    pub async fn state_set(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        Ok(self
            .ask(|tx| Command::StateWrite(key, Some(value), tx))
            .await??)
    }

    /// Delete one of this node's per-node state keys.
    pub async fn state_delete(&self, key: impl Into<String>) -> Result<(), Error> {
        let key = key.into();
        Ok(self.ask(|tx| Command::StateWrite(key, None, tx)).await??)
    }

    /// The per-node state of `member` as this node knows it (`None` if it
    /// knows nothing of that member's state).
    pub async fn state_of(&self, member: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        let member = member.to_owned();
        self.ask(|tx| Command::StateOf(member, tx)).await
    }

    /// Every member's per-node state as this node knows it, by member name.
    pub async fn states(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
        self.ask(Command::States).await
    }

    /// The value of a last-write-wins `key`: `None` if absent, deleted, or
    /// a siblings-mode key (read those with [`Node::kv_entry`]).
    pub async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .kv_entry(key)
            .await?
            .and_then(|e| e.lww_value().map(<[u8]>::to_vec)))
    }

    /// The live entry under `key`, in either mode (`None` if absent or deleted).
    pub async fn kv_entry(&self, key: &str) -> Result<Option<KvEntry>, Error> {
        let key = key.to_owned();
        self.ask(|tx| Command::KvGet(key, tx)).await
    }

    /// Live entries whose key starts with `prefix` (`""` for all), in key order.
    pub async fn kv_scan(&self, prefix: &str) -> Result<Vec<(String, KvEntry)>, Error> {
        let prefix = prefix.to_owned();
        self.ask(|tx| Command::KvScan(prefix, tx)).await
    }

    /// A page of the whole key space for a backup: up to `limit` entries
    /// (tombstones included, with their timestamps) after the key `after`,
    /// in key order. Page through with the last key of each page.
    pub async fn kv_export_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, KvEntry)>, Error> {
        let after = after.map(str::to_owned);
        self.ask(|tx| Command::KvPage(after, limit, tx)).await
    }

    /// Merge exported entries back (a restore from backup): each is checked
    /// and merged like a peer's record, so an import never overwrites a
    /// newer write; what is news spreads to the cluster.
    pub async fn kv_import(
        &self,
        entries: Vec<(String, KvEntry)>,
    ) -> Result<rumor_core::Imported, Error> {
        let records = entries
            .into_iter()
            .map(|(key, entry)| rumor_core::kv::Record { key, entry })
            .collect();
        self.ask(|tx| Command::KvImport(records, tx)).await
    }

    /// Write a last-write-wins `key`; the cluster learns it through gossip
    /// and anti-entropy. Fails for a siblings-mode key (use
    /// [`Node::kv_put_in_context`]) or one over the size limits. With a
    /// data dir ([`crate::Builder::storage`]) it returns once the write is
    /// committed (on disk under [`crate::storage::SyncMode::Always`]), and
    /// fails with [`Error::Storage`] when the disk refuses it.
    pub async fn kv_put(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        self.ask(|tx| Command::KvWrite(key, Some(value), tx))
            .await?
    }

    /// Delete a last-write-wins `key` (a tombstone replicates the delete).
    pub async fn kv_delete(&self, key: impl Into<String>) -> Result<(), Error> {
        let key = key.into();
        self.ask(|tx| Command::KvWrite(key, None, tx)).await?
    }

    /// The causal context to pass to [`Node::kv_put_in_context`] after
    /// reading `key` (empty if absent or last-write-wins).
    pub async fn kv_context(&self, key: &str) -> Result<VersionVector, Error> {
        let key = key.to_owned();
        self.ask(|tx| Command::KvContext(key, tx)).await
    }

    /// Write (`Some`) or delete (`None`) a siblings-mode `key`, with the
    /// context `read` the writer saw: the values it supersedes go, writes
    /// concurrent with it stay as siblings.
    pub async fn kv_put_in_context(
        &self,
        key: impl Into<String>,
        value: Option<Vec<u8>>,
        read: VersionVector,
    ) -> Result<(), Error> {
        let key = key.into();
        self.ask(|tx| Command::KvWriteInContext(key, value, read, tx))
            .await?
    }

    /// Aggregate the per-node state key `name` across the cluster: every
    /// node whose value of it parses as a finite number takes part. Nodes
    /// that do not track it yet start when they first receive its mass.
    pub async fn track_aggregate(&self, name: impl Into<String>) -> Result<(), Error> {
        let name = name.into();
        Ok(self.ask(|tx| Command::TrackAggregate(name, tx)).await??)
    }

    /// The current estimate of aggregate `name` (`None` if not tracked here
    /// or not known yet).
    pub async fn aggregate(&self, name: &str) -> Result<Option<Estimate>, Error> {
        let name = name.to_owned();
        self.ask(|tx| Command::Aggregate(name, tx)).await
    }

    /// Replace this node's tags and announce them.
    pub async fn set_tags(&self, tags: Tags) -> Result<(), Error> {
        self.ask(|tx| Command::SetTags(tags, tx)).await??;
        Ok(())
    }

    /// Join the cluster through `seeds`, retrying with backoff until at
    /// least one answers or the builder's join timeout passes. Names
    /// (`host:port`, SRV names) are resolved again on every attempt. Returns the
    /// number of seeds that answered; `Ok(0)` if the only seed is this node.
    pub async fn join<S: Into<Seed>>(
        &self,
        seeds: impl IntoIterator<Item = S>,
    ) -> Result<usize, Error> {
        let seeds: Vec<Seed> = seeds.into_iter().map(Into::into).collect();
        if seeds.is_empty() {
            return Ok(0);
        }
        let deadline = tokio::time::Instant::now() + self.join_timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (addrs, mut problems) = seeds::resolve_with(&seeds, &self.dns_servers).await;
            if !addrs.is_empty() {
                let asked = addrs.clone();
                let (tried, answered, unauthenticated) =
                    self.ask(|tx| Command::Join(addrs, tx)).await?;
                if tried == 0 {
                    return Ok(0);
                }
                let refused = self.ask(Command::MembershipMismatches).await?;
                if let Some(&(peer, theirs)) = refused.iter().find(|(p, _)| asked.contains(p)) {
                    // Two modes: this node runs the other one.
                    let ours = match theirs {
                        Membership::Full => Membership::Partial,
                        Membership::Partial => Membership::Full,
                    };
                    return Err(Error::MembershipMismatch { peer, ours, theirs });
                }
                if answered > 0 {
                    self.confirm_name().await?;
                    tracing::debug!(node = %self.name, answered, "joined");
                    return Ok(answered);
                }
                if unauthenticated > 0 {
                    problems.push(format!(
                        "{unauthenticated} seed address(es) answered but could not be authenticated (they closed the connection unanswered, or their reply failed the key or label check): check the keyring and the label"
                    ));
                }
                if tried > unauthenticated {
                    problems.push(format!(
                        "{} seed address(es) did not answer",
                        tried - unauthenticated
                    ));
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(Error::JoinFailed {
                    seeds: seeds.iter().map(ToString::to_string).collect(),
                    attempts,
                    reason: problems.join("; "),
                });
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// After a join: wait (a few probe timeouts at most) for the answer to
    /// any check of whether another live member holds this node's name.
    async fn confirm_name(&self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + NAME_CHECK_WAIT;
        loop {
            let (conflict, checking) = self.ask(Command::NameCheck).await?;
            if let Some(holder) = conflict {
                return Err(Error::NameConflict {
                    name: self.name.clone(),
                    holder,
                });
            }
            if !checking || tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Leave gracefully: announce it and wait until the announcement has
    /// been gossiped enough, or `timeout` passes. The node keeps running
    /// (and keeps spreading the news) until it is shut down.
    pub async fn leave(&self, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Leave(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::LeaveTimeout(timeout)),
        }
    }

    /// Stop the node and wait for its task to end. No leave is announced:
    /// the others will find this node failed (call [`Node::leave`] first
    /// to leave gracefully).
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            task.await.map_err(|e| Error::Task(e.to_string()))?;
        }
        Ok(())
    }

    /// The keyring of an encrypted node: changes apply at once.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The encryption mode of an encrypted node (`None` without a
    /// keyring); the switch can be cloned and kept: changes apply at once.
    pub fn encryption(&self) -> Option<&EncryptionSwitch> {
        self.encryption.as_ref()
    }

    /// Change what this node sends and accepts (encrypted nodes only, else
    /// [`Error::NoKeyring`]): the next datagram or stream frame in either
    /// direction follows `mode`. See [`EncryptionMode`] for the order in
    /// which a cluster goes through the modes.
    pub fn set_encryption(&self, mode: EncryptionMode) -> Result<(), Error> {
        self.encryption.as_ref().ok_or(Error::NoKeyring)?.set(mode);
        Ok(())
    }

    fn ring(&self) -> Result<&Keyring, Error> {
        self.keyring.as_ref().ok_or(Error::NoKeyring)
    }

    /// Install a key used to decrypt (encrypted nodes only: a node started
    /// without a keyring fails with [`Error::NoKeyring`], since turning
    /// encryption on while running would cut it off from the plaintext
    /// cluster; see docs/operations.md, Security).
    pub fn install_key(&self, key: Key) -> Result<(), Error> {
        self.ring()?.install(key);
        Ok(())
    }

    /// Encrypt with an installed key from now on.
    pub fn use_key(&self, key: &Key) -> Result<(), Error> {
        self.ring()?.use_key(key)
    }

    /// Remove an installed key other than the primary.
    pub fn remove_key(&self, key: &Key) -> Result<(), Error> {
        self.ring()?.remove(key)
    }

    /// The installed keys, primary first.
    pub fn list_keys(&self) -> Result<Vec<Key>, Error> {
        Ok(self.ring()?.keys())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The driver stops when the command channel closes; nothing else
        // to do, and the task is not awaited here.
        if let Some(task) = &self.task {
            if !task.is_finished() {
                let _ = self.commands.try_send(Command::Shutdown);
            }
        }
    }
}

/// Changes of the replicated keys under a prefix, from [`Node::watch`].
#[derive(Debug)]
pub struct Watch {
    prefix: String,
    rx: Subscription,
}

impl Watch {
    /// The prefix watched.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next change under the prefix. Fails with
    /// [`RecvError::Lagged`] (then goes on) if this watcher fell too far
    /// behind and lost changes, and with [`RecvError::Closed`] once the
    /// node has stopped.
    pub async fn recv(&mut self) -> Result<KvChange, RecvError> {
        loop {
            if let Event::Kv(change) = self.rx.recv().await? {
                if change.key.starts_with(&self.prefix) {
                    return Ok(Arc::unwrap_or_clone(change));
                }
            }
        }
    }
}
