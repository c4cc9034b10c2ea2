//! [`Cluster`] over `rumor::Node`, the networked library.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use rumor::{Key, Keyring, Member, Node, Stats, Tags};
use tokio::sync::{broadcast, RwLock};
use tokio::task::JoinHandle;

use super::{
    guess_advertise, normalize_key, BoxFuture, Cluster, ClusterError, KeyringView, MemberEvent,
    NodeSettings,
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
    events: broadcast::Sender<MemberEvent>,
    forward: JoinHandle<()>,
}

fn err(e: rumor::Error) -> ClusterError {
    use rumor::Error as E;
    match e {
        E::InvalidKey(m) if m.contains("not installed") => {
            ClusterError::NotFound(format!("key: {m}"))
        }
        E::InvalidKey(m) => ClusterError::Invalid(format!("key: {m}")),
        E::NoKeyring => ClusterError::Conflict(
            "this agent runs without encryption: start it with --keyring to manage keys".into(),
        ),
        E::JoinFailed { .. } => ClusterError::Unreachable(e.to_string()),
        E::Stopped | E::Task(_) => ClusterError::Closed,
        E::Core(_) | E::InvalidConfig(_) | E::InvalidLabel(_) => {
            ClusterError::Invalid(e.to_string())
        }
        other => ClusterError::Invalid(other.to_string()),
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
            b = b.keyring(Keyring::with_keys(primary, others));
        }
        if let Some(inc) = s.last_incarnation {
            // The library has no way to start at a given incarnation; the
            // node learns its old one from the cluster when it rejoins.
            tracing::debug!(incarnation = inc, "previous incarnation from the snapshot");
        }
        let node = b.start().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let (events, _) = broadcast::channel(4096);
        let mut rx = node.subscribe();
        let tx = events.clone();
        let forward = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let _ = tx.send(MemberEvent {
                            kind: ev.kind,
                            member: ev.member,
                            at: SystemTime::now(),
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("{n} membership events were missed");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(LibNode {
            name: node.name().to_string(),
            addr: node.advertise_addr(),
            keyring: node.keyring().cloned(),
            node: RwLock::new(Some(node)),
            events,
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

    fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
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
            match with_node!(self, n => n.leave(timeout)) {
                Err(ClusterError::Invalid(m)) if m.contains("leave not complete") => {
                    tracing::warn!("{m}");
                    Ok(())
                }
                other => other,
            }
        })
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

    fn user_event(&self, _name: &str, _payload: &[u8]) -> Result<(), ClusterError> {
        Err(ClusterError::Unsupported(
            "user events are not available yet: the rumor library's Node has no user-event API"
                .into(),
        ))
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
}

impl Drop for LibNode {
    fn drop(&mut self) {
        self.forward.abort();
    }
}
