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
    /// Read a snapshot (a missing file is `Ok(None)`): a file that does not parse (cut short
    /// by a crash on a filesystem without atomic rename, or damaged) is
    /// moved aside to `<path>.corrupt` with one WARN line and the agent
    /// starts without it, since it holds nothing that is not learned again
    /// (members come back through `--join`/`--retry-join`, the incarnation
    /// from the data dir or by refutation). A file that cannot be read at
    /// all is an error.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read snapshot {}", path.display()))
            }
        };
        match serde_json::from_slice(&text) {
            Ok(snap) => Ok(Some(snap)),
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                let moved = std::fs::rename(path, &aside);
                tracing::warn!(
                    "snapshot {} is damaged ({e}); starting without it{}",
                    path.display(),
                    match moved {
                        Ok(()) => format!(" (kept as {})", aside.display()),
                        Err(_) => String::new(),
                    }
                );
                Ok(None)
            }
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
    let Ok(mut events) = cluster.subscribe(rumor::EventFilter::MEMBER) else {
        return;
    };
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
        let left = Snapshot {
            left: true,
            ..s.clone()
        };
        assert!(left.rejoin_addrs(false).is_empty());
        assert_eq!(left.rejoin_addrs(true).len(), 1, "--rejoin");
        std::fs::write(&path, "{").unwrap();
        assert_eq!(Snapshot::load(&path).unwrap(), None, "damaged: set aside");
        assert!(!path.exists() && path.with_extension("json.corrupt").exists());
        let text = serde_json::to_vec(&s).unwrap();
        for cut in [1, text.len() / 2, text.len() - 1] {
            std::fs::write(&path, &text[..cut]).unwrap();
            assert_eq!(Snapshot::load(&path).unwrap(), None, "cut at {cut}");
        }
        std::fs::create_dir_all(&path).unwrap();
        assert!(Snapshot::load(&path).is_err(), "unreadable is an error");
        let _ = std::fs::remove_dir_all(dir);
    }
}
