//! The snapshot file: the members this agent knew and its own incarnation,
//! so that a restarted agent rejoins its cluster without `--join`.
//!
//! It is JSON, written atomically (temporary file, then rename) whenever
//! membership changes, at most once a second, and at shutdown. After a
//! graceful leave it records `left: true`, and the next start rejoins only
//! with `rejoin_after_leave` (`--rejoin`): without it, a node that left
//! meant to go. A stop without a leave (`leave_on_terminate = false`)
//! records `left: false`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rumor_core::MemberState;
use serde::{Deserialize, Serialize};

use crate::cluster::SharedCluster;

/// What the file holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The local member's name when written.
    pub name: String,
    /// The local member's incarnation when written.
    pub incarnation: u64,
    /// Whether the agent left gracefully.
    #[serde(default)]
    pub left: bool,
    /// Other members that were alive or suspect.
    pub members: Vec<SnapshotMember>,
}

/// One remembered member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMember {
    /// Name.
    pub name: String,
    /// Gossip address.
    pub addr: SocketAddr,
}

impl Snapshot {
    /// Read a snapshot; a missing file is `Ok(None)`.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("snapshot {} is corrupt", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read snapshot {}", path.display())),
        }
    }

    /// Write atomically.
    pub fn store(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        crate::atomic_file::write(path, &text)
            .with_context(|| format!("cannot write snapshot {}", path.display()))
    }

    /// Take a snapshot of a running node (`None` once it has stopped).
    pub async fn of(cluster: &SharedCluster, left: bool) -> Option<Self> {
        let local = cluster.local().await.ok()?;
        let members = cluster
            .members()
            .await
            .ok()?
            .into_iter()
            .filter(|m| m.name != local.name)
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .map(|m| SnapshotMember {
                name: m.name.to_string(),
                addr: m.addr,
            })
            .collect();
        Some(Snapshot {
            name: local.name.to_string(),
            incarnation: local.incarnation,
            left,
            members,
        })
    }

    /// The addresses to rejoin: none if the agent left, unless
    /// `rejoin_after_leave`.
    pub fn rejoin_addrs(&self, rejoin_after_leave: bool) -> Vec<SocketAddr> {
        if self.left && !rejoin_after_leave {
            return Vec::new();
        }
        self.members.iter().map(|m| m.addr).collect()
    }
}

/// Keep the snapshot current until the task is aborted: write on
/// membership changes (at most once a second) and every 30 s.
pub async fn keep(cluster: SharedCluster, path: PathBuf) {
    let mut events = cluster.subscribe();
    let mut last = Snapshot::default();
    loop {
        let Some(snap) = Snapshot::of(&cluster, false).await else {
            return;
        };
        if snap != last {
            if let Err(e) = snap.store(&path) {
                tracing::warn!("{e:#}");
            }
            last = snap;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("rumor-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        assert_eq!(Snapshot::load(&path).unwrap(), None);
        let s = Snapshot {
            name: "a".into(),
            incarnation: 7,
            left: false,
            members: vec![SnapshotMember {
                name: "b".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
            }],
        };
        s.store(&path).unwrap();
        assert_eq!(Snapshot::load(&path).unwrap(), Some(s.clone()));
        assert_eq!(s.rejoin_addrs(false).len(), 1);
        let left = Snapshot { left: true, ..s };
        assert!(left.rejoin_addrs(false).is_empty());
        assert_eq!(left.rejoin_addrs(true).len(), 1, "--rejoin");
        std::fs::write(&path, "{").unwrap();
        assert!(Snapshot::load(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
