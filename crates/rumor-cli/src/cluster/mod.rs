//! The boundary between the agent and the node it runs.
//!
//! Everything else in this crate (HTTP API, dashboard, snapshot, event
//! handler, demo) talks to a cluster member only through [`Cluster`], so
//! the implementation behind it lives in one place: [`lib_node::LibNode`],
//! a `rumor::Node` from the networked library.

pub mod lib_node;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rumor_core::{Member, MemberEventKind, Tags};
use tokio::sync::broadcast;

pub use rumor::{Estimate, KvEntry, Stats};

/// A boxed future, so [`Cluster`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A membership change, stamped with the wall-clock time it was seen.
#[derive(Clone, Debug)]
pub struct MemberEvent {
    /// What happened.
    pub kind: MemberEventKind,
    /// The member after the change.
    pub member: Member,
    /// When the local node saw it.
    pub at: SystemTime,
}

/// An application event delivered here (sent by any member, this one
/// included), stamped with the wall-clock time it was seen.
#[derive(Clone, Debug)]
pub struct UserEvent {
    /// Event name.
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// The member that sent it.
    pub origin: String,
    /// Lamport time at the origin.
    pub ltime: u64,
    /// When the local node delivered it.
    pub at: SystemTime,
}

/// A change of a replicated key, seen here (a local write or one learned
/// from the cluster).
#[derive(Clone, Debug)]
pub struct KvChange {
    /// The key.
    pub key: String,
    /// Its entry now (possibly a tombstone: a delete).
    pub new: KvEntry,
    /// When the local node applied it.
    pub at: SystemTime,
}

/// Every member's per-node state, by member name, then key.
pub type States = BTreeMap<String, BTreeMap<String, String>>;

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The caller's input is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A value, key or event over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A quota or count limit of the node is full (the message names it).
    #[error("{0}")]
    LimitReached(String),
    /// A key or member that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation does not fit the node's state (e.g. keys without encryption).
    #[error("{0}")]
    Conflict(String),
    /// No seed answered.
    #[error("{0}")]
    Unreachable(String),
    /// The data dir refused a write (a full disk, a failing one): it was
    /// not acknowledged.
    #[error("{0}")]
    Storage(String),
    /// The node is shutting down.
    #[error("the node has stopped")]
    Closed,
}

/// The keyring as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyringView {
    /// The key used for sending, hex.
    pub primary: Option<String>,
    /// Every installed key, hex, primary first.
    pub keys: Vec<String>,
}

/// Settings a node starts with.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Member name.
    pub name: String,
    /// Gossip bind address (UDP and TCP).
    pub bind: SocketAddr,
    /// Address others dial, if not `bind`.
    pub advertise: Option<SocketAddr>,
    /// Initial tags.
    pub tags: Tags,
    /// Protocol configuration (a profile's, possibly tuned).
    pub config: rumor_core::Config,
    /// Keys, hex; the first is primary. Empty: no encryption.
    pub keys: Vec<String>,
    /// What the node sends and accepts when it has keys.
    pub encryption: rumor::EncryptionMode,
    /// Cluster label.
    pub label: Option<String>,
    /// The incarnation recorded by a previous run, if any.
    pub last_incarnation: Option<u64>,
    /// Stream limits other than the library's defaults.
    pub streams: StreamLimits,
    /// The data dir, if any.
    pub data: Option<crate::config::DataDir>,
}

/// Limits on incoming streams (`[limits]`); `None` keeps the library's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams open at once in each direction.
    pub max_streams: Option<usize>,
    /// Incoming streams open at once from one address.
    pub max_streams_per_source: Option<usize>,
    /// Bytes read before a stream's header is authenticated.
    pub stream_preauth_budget: Option<usize>,
}

/// One running cluster member, as the agent uses it.
pub trait Cluster: Send + Sync + 'static {
    /// This node's name.
    fn name(&self) -> &str;
    /// The address the others reach this node at.
    fn addr(&self) -> SocketAddr;
    /// This node as the cluster sees it.
    fn local(&self) -> BoxFuture<'_, Result<Member, ClusterError>>;
    /// Every known member, this node and tombstones included.
    fn members(&self) -> BoxFuture<'_, Result<Vec<Member>, ClusterError>>;
    /// Membership events from now on.
    fn subscribe(&self) -> broadcast::Receiver<Arc<MemberEvent>>;
    /// Counters, the awareness score and members by state.
    fn stats(&self) -> BoxFuture<'_, Result<Stats, ClusterError>>;
    /// Replace the tags.
    fn set_tags(&self, tags: Tags) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// Join through `seeds`; returns how many answered.
    fn join(&self, seeds: Vec<SocketAddr>) -> BoxFuture<'_, Result<usize, ClusterError>>;
    /// Leave gracefully, waiting at most `timeout` for the announcement to spread.
    fn leave(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// Mark member `name` left cluster-wide on its behalf; with `prune`
    /// every member forgets it at once. A member seen alive is refused
    /// (Conflict) unless `force`; an unknown name is NotFound.
    fn force_leave(
        &self,
        name: String,
        prune: bool,
        force: bool,
    ) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// Stop all I/O at once (a crash, as far as the others can tell).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
    /// User events from now on (sent by any member, this one included).
    fn subscribe_user(&self) -> broadcast::Receiver<Arc<UserEvent>>;
    /// Replicated-key changes from now on.
    fn subscribe_kv(&self) -> broadcast::Receiver<Arc<KvChange>>;
    /// Change the protocol configuration while running; returns the
    /// restart-only fields it would change, kept at their running values.
    fn set_protocol(
        &self,
        config: rumor_core::Config,
    ) -> BoxFuture<'_, Result<Vec<&'static str>, ClusterError>>;
    /// Change the transport's stream caps while running.
    fn set_stream_limits(
        &self,
        limits: rumor::builder::StreamLimits,
    ) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// The protocol configuration and stream caps in force.
    fn tuning(
        &self,
    ) -> BoxFuture<'_, Result<(rumor_core::Config, rumor::builder::StreamLimits), ClusterError>>;
    /// Queries this node is selected for, to answer with [`Cluster::respond`].
    fn subscribe_queries(&self) -> broadcast::Receiver<Arc<rumor::IncomingQuery>>;
    /// Ask the cluster a query; acks and answers arrive on the stream.
    fn query(
        &self,
        name: String,
        payload: Vec<u8>,
        options: rumor::QueryOptions,
    ) -> BoxFuture<'_, Result<rumor::QueryStream, ClusterError>>;
    /// Answer a query delivered by [`Cluster::subscribe_queries`].
    fn respond(
        &self,
        query: Arc<rumor::IncomingQuery>,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// Broadcast a user event; returns its Lamport time.
    fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'_, Result<u64, ClusterError>>;
    /// Set (`Some`) or delete (`None`) one of this node's per-node state keys.
    fn state_write(
        &self,
        key: String,
        value: Option<String>,
    ) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// Every member's per-node state as known here, by member name.
    fn states(&self) -> BoxFuture<'_, Result<States, ClusterError>>;
    /// The live entry under a replicated key (`None`: absent or deleted).
    fn kv_get(&self, key: String) -> BoxFuture<'_, Result<Option<KvEntry>, ClusterError>>;
    /// Live entries whose key starts with `prefix`, in key order.
    fn kv_scan(
        &self,
        prefix: String,
    ) -> BoxFuture<'_, Result<Vec<(String, KvEntry)>, ClusterError>>;
    /// Up to `limit` entries after the key `after`, tombstones included,
    /// in key order (a backup, read in pages).
    fn kv_export_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(String, KvEntry)>, ClusterError>>;
    /// Merge entries from a backup like a peer's records.
    fn kv_import(
        &self,
        entries: Vec<(String, KvEntry)>,
    ) -> BoxFuture<'_, Result<rumor::core::Imported, ClusterError>>;
    /// Write (`Some`) or delete (`None`) a last-write-wins key.
    fn kv_write(
        &self,
        key: String,
        value: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// Write (`Some`) or delete (`None`) a siblings-mode key with the causal
    /// context `read` the writer saw (on a last-write-wins key the context
    /// is ignored).
    fn kv_write_in_context(
        &self,
        key: String,
        value: Option<Vec<u8>>,
        read: rumor::VersionVector,
    ) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// Start aggregating the state key `name` (no-op if already tracked).
    fn track_aggregate(&self, name: String) -> BoxFuture<'_, Result<(), ClusterError>>;
    /// The current estimate of aggregate `name` (`None`: not known yet).
    fn aggregate(&self, name: String) -> BoxFuture<'_, Result<Option<Estimate>, ClusterError>>;
    /// The keyring.
    fn keys(&self) -> Result<KeyringView, ClusterError>;
    /// Install a key.
    fn install_key(&self, key: &str) -> Result<(), ClusterError>;
    /// Make an installed key primary.
    fn use_key(&self, key: &str) -> Result<(), ClusterError>;
    /// Remove a key.
    fn remove_key(&self, key: &str) -> Result<(), ClusterError>;
    /// The encryption mode (`None`: the node has no keyring).
    fn encryption(&self) -> Option<rumor::EncryptionMode>;
    /// Change the encryption mode (nodes with a keyring only).
    fn set_encryption(&self, mode: rumor::EncryptionMode) -> Result<(), ClusterError>;
}

/// A shared handle to a running member.
pub type SharedCluster = Arc<dyn Cluster>;

/// Start a node with `settings`.
pub async fn start(settings: NodeSettings) -> anyhow::Result<SharedCluster> {
    let node = lib_node::LibNode::start(settings).await?;
    Ok(Arc::new(node))
}

/// The address to advertise when bound to an unspecified IP: the source
/// address of the default route, else loopback.
pub fn guess_advertise(bind: SocketAddr) -> SocketAddr {
    if !bind.ip().is_unspecified() {
        return bind;
    }
    let ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, bind.port())
}

/// Check a key is 64 hexadecimal digits; return it lowercased.
pub fn normalize_key(key: &str) -> Result<String, ClusterError> {
    use base64::Engine as _;
    let k = key.trim();
    if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(k.to_ascii_lowercase());
    }
    // Serf's form (`serf keygen`): standard base64 of the key's bytes.
    match base64::engine::general_purpose::STANDARD.decode(k) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        Ok(bytes) => Err(ClusterError::Invalid(format!(
            "a base64 key of {} bytes: rumor's keys are 32 bytes (XChaCha20-Poly1305); Serf's 16- and 24-byte AES keys cannot be used (see `rumor keys gen`)",
            bytes.len()
        ))),
        Err(_) => Err(ClusterError::Invalid(
            "a key is 64 hexadecimal digits or the base64 of 32 bytes (see `rumor keys gen`)".into(),
        )),
    }
}

/// A fresh random key, hex.
pub fn generate_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The API name of an event kind.
pub fn kind_name(kind: MemberEventKind) -> &'static str {
    match kind {
        MemberEventKind::Joined => "member-join",
        MemberEventKind::Updated => "member-update",
        MemberEventKind::Suspect => "member-suspect",
        MemberEventKind::Alive => "member-alive",
        MemberEventKind::Failed => "member-failed",
        MemberEventKind::Left => "member-leave",
        MemberEventKind::Reaped => "member-reap",
    }
}

/// Resolve seeds given as `ip:port`, `ip`, `host:port`, `host` (port
/// [`crate::config::DEFAULT_PORT`] when omitted) or an SRV name
/// (`srv:NAME`, or a name starting with `_`; see [`rumor::seeds`]). DNS
/// names may yield several addresses; all are kept. The error names the
/// first seed that fails. SRV seeds are looked up through `dns_servers`
/// when it is not empty (`host:port` names go through the system resolver).
pub async fn resolve_seeds_with(
    seeds: &[String],
    dns_servers: &[SocketAddr],
) -> anyhow::Result<Vec<SocketAddr>> {
    use anyhow::Context;
    let mut out = Vec::new();
    for s in seeds {
        let s = s.trim();
        if let seed @ rumor::Seed::Srv(_) = rumor::Seed::from(s) {
            let (found, errors) =
                rumor::seeds::resolve_with(std::slice::from_ref(&seed), dns_servers).await;
            if found.is_empty() {
                anyhow::bail!("cannot resolve seed {s:?}: {}", errors.join("; "));
            }
            for a in found {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            continue;
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            out.push(a);
            continue;
        }
        if let Ok(ip) = s
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
        {
            out.push(SocketAddr::new(ip, crate::config::DEFAULT_PORT));
            continue;
        }
        let found: Vec<SocketAddr> = if s.contains(':') {
            tokio::net::lookup_host(s).await.map(|it| it.collect())
        } else {
            tokio::net::lookup_host((s, crate::config::DEFAULT_PORT))
                .await
                .map(|it| it.collect())
        }
        .with_context(|| format!("cannot resolve seed {s:?}"))?;
        if found.is_empty() {
            anyhow::bail!("seed {s:?} resolves to no address");
        }
        for a in found {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = generate_key().unwrap();
        assert_eq!(normalize_key(&k.to_uppercase()).unwrap(), k);
        assert!(normalize_key("abc").is_err());
        assert!(normalize_key(&"g".repeat(64)).is_err());
        // `serf keygen` output of 32 bytes 0x00..0x1f, and a 16-byte one.
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let hex: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
        assert_eq!(normalize_key(b64).unwrap(), hex);
        let e = normalize_key("AAECAwQFBgcICQoLDA0ODw==")
            .unwrap_err()
            .to_string();
        assert!(e.contains("16 bytes"), "{e}");
    }
}
