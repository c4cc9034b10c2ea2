//! The keyring across the cluster and on disk.
//!
//! - Every keyring change this agent makes (through `POST`/`DELETE
//!   /v1/keys` or the cluster-wide query below) is written back to its
//!   `--keyring` file, atomically (a temporary file in the same directory,
//!   then a rename; mode 0600), primary key first: a restart after a
//!   rotation reads the rotated keyring.
//! - [`KEYS_QUERY`] is the built-in query `rumor keys install|use|remove|list`
//!   sends to every member: its payload is `{"op": ..., "key": ...}` and
//!   each agent answers `{"ok": bool, "error": ..., "primary": FP, "keys":
//!   [FP, ...]}` (fingerprints, never key material). The query itself
//!   travels encrypted with the cluster's current key, as all gossip does.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::cluster::{ClusterError, KeyringView, SharedCluster};
use crate::http::keys_json;

/// The built-in query that changes or lists every member's keyring.
pub const KEYS_QUERY: &str = "_rumor_keys";

/// One keyring operation.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyOp {
    /// `install`, `use`, `remove` or `list`.
    pub op: String,
    /// The key (hex or base64) for all but `list`.
    #[serde(default)]
    pub key: Option<String>,
}

/// Apply `op` to this agent's keyring and write the keyring file back
/// when it changed; the keyring after it.
pub fn apply(
    cluster: &SharedCluster,
    file: Option<&Path>,
    op: &KeyOp,
) -> Result<KeyringView, ClusterError> {
    let key = || {
        op.key
            .as_deref()
            .ok_or_else(|| ClusterError::Invalid(format!("{} needs a key", op.op)))
    };
    match op.op.as_str() {
        "list" => return cluster.keys(),
        "install" => cluster.install_key(key()?)?,
        "use" => cluster.use_key(key()?)?,
        "remove" => cluster.remove_key(key()?)?,
        other => {
            return Err(ClusterError::Invalid(format!(
                "unknown keyring op {other:?}: expected install, use, remove or list"
            )))
        }
    }
    let view = cluster.keys()?;
    if let Some(path) = file {
        save(path, &view).map_err(|e| {
            ClusterError::Conflict(format!(
                "the keyring changed but {} could not be written: {e}",
                path.display()
            ))
        })?;
    }
    Ok(view)
}

/// Write `view` to `path` atomically: hex keys one a line, primary first.
pub fn save(path: &Path, view: &KeyringView) -> std::io::Result<()> {
    let mut keys: Vec<&String> = view.keys.iter().collect();
    if let Some(p) = &view.primary {
        keys.sort_by_key(|k| *k != p);
    }
    let mut text =
        String::from("# rumor keyring, written by the agent: the first key is the primary one\n");
    for k in keys {
        text.push_str(k);
        text.push('\n');
    }
    crate::atomic_file::write(path, text.as_bytes())
}

/// The answer to one [`KEYS_QUERY`].
fn answer(cluster: &SharedCluster, file: Option<&Path>, payload: &[u8]) -> Value {
    let op: KeyOp = match serde_json::from_slice(payload) {
        Ok(op) => op,
        Err(e) => return json!({ "ok": false, "error": format!("bad keyring request: {e}") }),
    };
    match apply(cluster, file, &op) {
        Ok(view) if view.keys.is_empty() => {
            json!({ "ok": false, "error": "this agent runs without encryption: start it with --keyring to manage keys" })
        }
        Ok(view) => {
            let mut v = keys_json(&view);
            v["ok"] = json!(true);
            v
        }
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    }
}

/// Answer [`KEYS_QUERY`] until the node stops; changes are written to `file`.
pub async fn answer_queries(cluster: SharedCluster, file: Option<PathBuf>) {
    let Ok(mut queries) = cluster.subscribe(rumor::EventFilter::QUERY) else {
        return;
    };
    loop {
        let q = match queries.recv().await {
            Ok(rumor::Event::Query(q)) => q,
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    "{n} queries were missed (keyring queries among them go unanswered)"
                );
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        if q.name != KEYS_QUERY {
            continue;
        }
        let body = answer(&cluster, file.as_deref(), &q.payload);
        if body["ok"] == true {
            tracing::info!(origin = %q.origin, "keyring request from the cluster applied");
        } else {
            tracing::warn!(origin = %q.origin, error = %body["error"], "keyring request from the cluster refused");
        }
        if let Err(e) = cluster.respond(&q, body.to_string().into_bytes()).await {
            tracing::debug!("keyring answer not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_writes_primary_first_atomically_and_privately() {
        let dir = std::env::temp_dir().join(format!("rumor-keyring-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyring");
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let view = KeyringView {
            primary: Some(b.clone()),
            keys: vec![a.clone(), b.clone()],
        };
        save(&path, &view).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(keys, vec![b.as_str(), a.as_str()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "a temporary file was left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
