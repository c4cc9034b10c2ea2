//! The agent's node: [`Cluster`] (a `rumor::Node` with the agent's start
//! settings, shared shutdown and error mapping, in [`node`]),
//! [`ClusterError`] (in [`error`]), and the helpers around them: seeds,
//! keys, the API names of member events.
//!
//! Events are the library's ([`rumor::Event`], stamped once by the
//! driver): the HTTP API, history, event handlers, snapshot and demo
//! subscribe to the node's one channel through [`Cluster::subscribe`].

pub mod error;
pub mod node;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rumor_core::{MemberEventKind, Tags};

pub use error::ClusterError;
pub use node::Cluster;
pub use rumor::{Estimate, KvEntry, Stats};

/// Every member's per-node state, by member name, then key.
pub type States = BTreeMap<String, BTreeMap<String, String>>;

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

/// A shared handle to a running member.
pub type SharedCluster = Arc<Cluster>;

/// Start a node with `settings`.
pub async fn start(settings: NodeSettings) -> anyhow::Result<SharedCluster> {
    Ok(Arc::new(Cluster::start(settings).await?))
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
