//! SIGHUP: re-read the `--config` file and the keyring file and apply what
//! a running node can change: tags (gossiped to the others), the event
//! handler, the log level, the keyring (keys installed, primary changed,
//! keys removed, as the file says), the `encryption` mode (enforce, send,
//! accept: the steps of turning encryption on or off in a running cluster),
//! the `[protocol]` table (intervals take effect at once), the whole
//! `[limits]` table (the core's bounds and the transport's stream caps) and
//! `leave_on_terminate`. Each change is one `old -> new` in the INFO line.
//!
//! Everything is read and checked before anything is applied: a file that
//! does not parse, a setting that does not validate or an unreadable
//! keyring is one ERROR line naming the problem (the line start-up would
//! print), and the running configuration is kept. Settings the running
//! node cannot change (name, addresses, profile,
//! `protocol.kv_siblings_prefixes`, label, tokens, snapshot, seeds, DNS
//! servers) are reported at WARN as needing a restart; the rest is still
//! applied. Flags and `RUMOR_*` variables still beat the file, as at
//! start. A reload never stops the agent.

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
    let (cfg, keys, protocol) = match prepare(live) {
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
    apply_protocol(live, protocol, &mut changed).await;
    live.cfg.protocol_overrides = cfg.protocol_overrides.clone();
    live.cfg.limit_overrides = cfg.limit_overrides.clone();
    apply_streams(live, &cfg, &mut changed).await;
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

/// Read and check everything; `None` keys: the agent runs without a
/// keyring. The protocol configuration to apply is the running profile's
/// with the file's `[protocol]` and `[limits]` (a new profile needs a
/// restart).
fn prepare(live: &Live) -> Result<(AgentConfig, Option<Vec<String>>, rumor_core::Config)> {
    let cfg = AgentConfig::resolve(&live.args)?;
    check_http_safety(&cfg)?;
    let protocol = if cfg.profile_name == live.cfg.profile_name {
        cfg.protocol.clone()
    } else {
        let running: rumor_core::Profile = live
            .cfg
            .profile_name
            .parse()
            .map_err(|e: rumor_core::Error| anyhow::anyhow!("profile: {e}"))?;
        let c = cfg
            .protocol_overrides
            .apply(rumor_core::Config::profile(running))?;
        cfg.limit_overrides.apply(c)?
    };
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
    Ok((cfg, keys, protocol))
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

/// The `[protocol]` table and the core's `[limits]`: applied at once, the
/// periodic timers re-armed; a field that needs a restart is one WARN.
async fn apply_protocol(live: &mut Live, new: rumor_core::Config, changed: &mut Vec<String>) {
    let old = live.cfg.protocol.clone();
    if old == new {
        return;
    }
    match live.cluster.set_protocol(new.clone()).await {
        Ok(kept) => {
            for field in &kept {
                let field = match *field {
                    "kv" => "protocol.kv_siblings_prefixes",
                    other => other,
                };
                tracing::warn!(
                    "SIGHUP: {field} changed but needs a restart: the running value is kept"
                );
            }
            let (next, _) = old.runtime_update(&new);
            changed.extend(protocol_changes(&old, &next));
            live.cfg.protocol = next;
        }
        Err(e) => tracing::error!("SIGHUP: [protocol] and [limits] not changed: {e}"),
    }
}

/// `field old -> new` for each setting of the `[protocol]` table (and the
/// core's `[limits]`) that differs.
pub fn protocol_changes(old: &rumor_core::Config, new: &rumor_core::Config) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! each {
        ($($f:ident),*) => {$(
            if old.$f != new.$f {
                out.push(format!(
                    "protocol.{} {:?} -> {:?}",
                    stringify!($f),
                    old.$f,
                    new.$f
                ));
            }
        )*};
    }
    each!(
        probe_interval,
        probe_timeout,
        indirect_checks,
        probe_stream_fallback,
        probe_retry,
        stall_grace,
        retransmit_mult,
        suspicion_mult,
        suspicion_max_mult,
        gossip_interval,
        gossip_nodes,
        gossip_to_the_dead,
        push_pull_interval,
        tombstone_timeout,
        state_sync_interval,
        kv_sync_interval,
        aggregate_interval,
        aggregate_epoch
    );
    let (a, b) = (&old.limits, &new.limits);
    macro_rules! limits {
        ($($f:ident),*) => {$(
            if a.$f != b.$f {
                out.push(format!("limits.{} {} -> {}", stringify!($f), a.$f, b.$f));
            }
        )*};
    }
    limits!(
        max_members,
        max_pending_members,
        max_pending_per_sender,
        max_state_keys_per_owner,
        max_state_bytes_per_owner,
        max_kv_keys,
        max_kv_bytes,
        max_broadcasts
    );
    out
}

/// The transport's stream caps of `[limits]` (`max_streams`,
/// `max_streams_per_source`, `stream_preauth_budget`): applied at once,
/// streams open now are kept.
async fn apply_streams(live: &mut Live, cfg: &AgentConfig, changed: &mut Vec<String>) {
    if cfg.streams == live.cfg.streams {
        return;
    }
    let old = match live.cluster.tuning().await {
        Ok((_, s)) => s,
        Err(e) => {
            tracing::error!("SIGHUP: stream caps not changed: {e}");
            return;
        }
    };
    let new = stream_limits(&cfg.streams);
    match live.cluster.set_stream_limits(new).await {
        Ok(()) => {
            let mut each = |name: &str, a: usize, b: usize| {
                if a != b {
                    changed.push(format!("limits.{name} {a} -> {b}"));
                }
            };
            each("max_streams", old.max_streams, new.max_streams);
            each(
                "max_streams_per_source",
                old.max_streams_per_source,
                new.max_streams_per_source,
            );
            each(
                "stream_preauth_budget",
                old.stream_preauth_budget,
                new.stream_preauth_budget,
            );
            live.cfg.streams = cfg.streams;
        }
        Err(e) => tracing::error!("SIGHUP: stream caps not changed: {e}"),
    }
}

/// The library's stream caps from the `[limits]` table (its defaults where
/// the table is silent).
pub fn stream_limits(s: &crate::cluster::StreamLimits) -> rumor::builder::StreamLimits {
    let d = rumor::builder::StreamLimits::default();
    rumor::builder::StreamLimits {
        max_streams: s.max_streams.unwrap_or(d.max_streams),
        max_streams_per_source: s.max_streams_per_source.unwrap_or(d.max_streams_per_source),
        stream_preauth_budget: s.stream_preauth_budget.unwrap_or(d.stream_preauth_budget),
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
        "timeseries_interval",
        old.timeseries_interval == new.timeseries_interval,
    );
    check(
        "join/retry_join",
        old.join == new.join && old.retry_join == new.retry_join,
    );
    check("dns_servers", old.dns_servers == new.dns_servers);
    if !differ.is_empty() {
        tracing::warn!(
            "SIGHUP: {} changed but needs a restart: the running value is kept until then",
            differ.join(", ")
        );
    }
}
