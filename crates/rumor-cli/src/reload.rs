//! SIGHUP: re-read the `--config` file and the keyring file and apply what
//! a running node can change: tags (gossiped to the others), the event
//! handler, the log level, the keyring (keys installed, primary changed,
//! keys removed, as the file says), the `encryption` mode (enforce, send,
//! accept: the steps of turning encryption on or off in a running cluster),
//! the core's `[limits]` and `leave_on_terminate`.
//!
//! Everything is read and checked before anything is applied: a file that
//! does not parse, a setting that does not validate or an unreadable
//! keyring is one ERROR line naming the problem, and the running
//! configuration is kept. Settings the running node cannot change (name,
//! addresses, profile, `[protocol]`, the stream caps of `[limits]`, label,
//! tokens, snapshot)
//! are reported at WARN as taking effect at the next restart. Flags and
//! `RUMOR_*` variables still beat the file, as at start. A reload never
//! stops the agent.

use std::collections::BTreeSet;

use anyhow::{bail, Result};

use crate::agent::{check_http_safety, load_keyring};
use crate::cli::AgentArgs;
use crate::cluster::SharedCluster;
use crate::config::AgentConfig;
use crate::http::key_fingerprint;

/// What a reload changes: the running agent's settings and handler task.
pub struct Live {
    /// The node.
    pub cluster: SharedCluster,
    /// The command line (flags and variables still beat the file).
    pub args: AgentArgs,
    /// The configuration in effect.
    pub cfg: AgentConfig,
    /// The running event handlers.
    pub handlers: crate::event_handler::Handlers,
}

/// Re-read and apply; errors are logged, never returned.
pub async fn reload(live: &mut Live) {
    tracing::info!("SIGHUP: reloading the configuration");
    let (cfg, keys) = match prepare(live) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(
                "SIGHUP: configuration not reloaded, the running one is kept: {}",
                format!("{e:#}").replace('\n', " ")
            );
            return;
        }
    };
    let mut changed = Vec::new();
    apply_tags(live, &cfg, &mut changed).await;
    apply_handler(live, &cfg, &mut changed);
    apply_log_level(live, &cfg, &mut changed);
    if let Some(keys) = keys {
        apply_keys(live, &keys, &mut changed);
        live.cfg.keyring = cfg.keyring.clone();
        apply_encryption(live, &cfg, &mut changed);
    }
    apply_limits(live, &cfg, &mut changed).await;
    if cfg.leave_on_terminate != live.cfg.leave_on_terminate {
        changed.push(format!("leave_on_terminate {}", cfg.leave_on_terminate));
        live.cfg.leave_on_terminate = cfg.leave_on_terminate;
    }
    warn_restart_only(&live.cfg, &cfg);
    if changed.is_empty() {
        tracing::info!("SIGHUP: configuration re-read, nothing to change");
    } else {
        tracing::info!("SIGHUP: applied: {}", changed.join("; "));
    }
}

/// Read and check everything; `None` keys: the agent runs without a keyring.
fn prepare(live: &Live) -> Result<(AgentConfig, Option<Vec<String>>)> {
    let cfg = AgentConfig::resolve(&live.args)?;
    check_http_safety(&cfg)?;
    let encrypted = live.cfg.keyring.is_some();
    let keys = match (&cfg.keyring, encrypted) {
        (Some(p), true) => Some(load_keyring(p)?),
        (None, false) => None,
        (Some(_), false) => {
            bail!("the agent runs without encryption; a keyring can only be added by a restart")
        }
        (None, true) => {
            bail!("the keyring setting is gone; encryption can only be turned off by a restart (after encryption = \"accept\" on every agent, see docs/operations.md)")
        }
    };
    Ok((cfg, keys))
}

async fn apply_tags(live: &mut Live, cfg: &AgentConfig, changed: &mut Vec<String>) {
    if cfg.tags == live.cfg.tags {
        return;
    }
    match live.cluster.set_tags(cfg.tags.clone()).await {
        Ok(()) => {
            changed.push(format!("tags {:?} -> {:?}", live.cfg.tags, cfg.tags));
            live.cfg.tags = cfg.tags.clone();
        }
        Err(e) => tracing::error!("SIGHUP: tags not changed: {e}"),
    }
}

fn apply_handler(live: &mut Live, cfg: &AgentConfig, changed: &mut Vec<String>) {
    let (old, new) = (&live.cfg.event_handler_options, &cfg.event_handler_options);
    if cfg.event_handler == live.cfg.event_handler
        && old.backlog == new.backlog
        && old.timeout == new.timeout
    {
        return;
    }
    live.handlers.stop();
    // The members are not news to a reloaded handler: no replay.
    let opts = crate::event_handler::HandlerOptions {
        replay_members: false,
        ..cfg.event_handler_options
    };
    live.handlers =
        crate::event_handler::spawn_all(live.cluster.clone(), cfg.event_handler.clone(), opts);
    changed.push(format!(
        "event handlers [{}] -> [{}]",
        crate::event_handler::describe(&live.cfg.event_handler),
        crate::event_handler::describe(&cfg.event_handler)
    ));
    live.cfg.event_handler = cfg.event_handler.clone();
    live.cfg.event_handler_options = cfg.event_handler_options;
}

fn apply_log_level(live: &mut Live, cfg: &AgentConfig, changed: &mut Vec<String>) {
    if cfg.log_level == live.cfg.log_level {
        return;
    }
    if crate::logging::set_level(&cfg.log_level) {
        changed.push(format!(
            "log level {} -> {}",
            live.cfg.log_level, cfg.log_level
        ));
        live.cfg.log_level = cfg.log_level.clone();
    } else {
        tracing::warn!(
            "SIGHUP: log level {} not applied: RUMOR_LOG is set and wins",
            cfg.log_level
        );
    }
}

/// Make the keyring what the file says: install its keys, make its first
/// primary, remove the others. Keys are named by fingerprint only.
fn apply_keys(live: &mut Live, file: &[String], changed: &mut Vec<String>) {
    let view = match live.cluster.keys() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("SIGHUP: keyring not changed: {e}");
            return;
        }
    };
    let have: BTreeSet<&String> = view.keys.iter().collect();
    let want: BTreeSet<&String> = file.iter().collect();
    for k in want.difference(&have) {
        match live.cluster.install_key(k) {
            Ok(()) => changed.push(format!("key {} installed", key_fingerprint(k))),
            Err(e) => tracing::error!("SIGHUP: key {} not installed: {e}", key_fingerprint(k)),
        }
    }
    if let Some(primary) = file.first() {
        if view.primary.as_ref() != Some(primary) {
            match live.cluster.use_key(primary) {
                Ok(()) => changed.push(format!("primary key {}", key_fingerprint(primary))),
                Err(e) => tracing::error!(
                    "SIGHUP: key {} not made primary: {e}",
                    key_fingerprint(primary)
                ),
            }
        }
    }
    for k in have.difference(&want) {
        match live.cluster.remove_key(k) {
            Ok(()) => changed.push(format!("key {} removed", key_fingerprint(k))),
            Err(e) => tracing::error!("SIGHUP: key {} not removed: {e}", key_fingerprint(k)),
        }
    }
}

/// Switch what the agent sends and accepts (it has a keyring: `prepare`
/// refused a reload that adds or drops one).
fn apply_encryption(live: &mut Live, cfg: &AgentConfig, changed: &mut Vec<String>) {
    if cfg.encryption == live.cfg.encryption {
        return;
    }
    match live.cluster.set_encryption(cfg.encryption) {
        Ok(()) => {
            changed.push(format!(
                "encryption {} -> {}",
                live.cfg.encryption, cfg.encryption
            ));
            live.cfg.encryption = cfg.encryption;
        }
        Err(e) => tracing::error!("SIGHUP: encryption mode not changed: {e}"),
    }
}

/// The core's `[limits]` (members, pending names, state, key space,
/// broadcasts) take their new values at once.
async fn apply_limits(live: &mut Live, cfg: &AgentConfig, changed: &mut Vec<String>) {
    let (old, new) = (&live.cfg.protocol.limits, &cfg.protocol.limits);
    if old == new {
        return;
    }
    match live.cluster.set_limits(new.clone()).await {
        Ok(()) => {
            changed.push(format!("[limits] {new:?}"));
            live.cfg.protocol.limits = new.clone();
        }
        Err(e) => tracing::error!("SIGHUP: [limits] not changed: {e}"),
    }
}

/// Settings a running node cannot change: one WARN naming those that differ.
fn warn_restart_only(old: &AgentConfig, new: &AgentConfig) {
    let mut differ = Vec::new();
    let mut check = |name: &str, same: bool| {
        if !same {
            differ.push(name.to_string());
        }
    };
    check("name", old.name == new.name);
    check("bind", old.bind == new.bind);
    check("advertise", old.advertise == new.advertise);
    check("http", old.http == new.http);
    check("profile", old.profile_name == new.profile_name);
    check(
        "[protocol]",
        old.protocol_overrides == new.protocol_overrides,
    );
    check(
        "[limits] stream caps (max_streams, max_streams_per_source, stream_preauth_budget)",
        old.streams == new.streams,
    );
    check("label", old.label == new.label);
    check("http_token", old.http_token == new.http_token);
    check(
        "http_read_token",
        old.http_read_token == new.http_read_token,
    );
    check("snapshot", old.snapshot == new.snapshot);
    check("log_json", old.log_json == new.log_json);
    check("leave_timeout", old.leave_timeout == new.leave_timeout);
    check(
        "join/retry_join",
        old.join == new.join && old.retry_join == new.retry_join,
    );
    if !differ.is_empty() {
        tracing::warn!(
            "SIGHUP: {} changed but cannot change in a running agent: they apply at the next restart",
            differ.join(", ")
        );
    }
}
