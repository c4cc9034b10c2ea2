//! The agent runtime: start order, signals and shutdown.
//!
//! Start order (nothing is left half-started on an error): read and check
//! every setting (the HTTP API must be safe, see [`check_http_safety`]), the
//! keyring and the snapshot; resolve the `--join` seeds; bind the HTTP
//! listener; start the node (binds gossip UDP and TCP); rejoin the
//! snapshot's members (without `--join`; after a graceful leave only with
//! `rejoin_after_leave`); join the `--join` seeds (failing to reach every
//! one of them is fatal); take the time series' first sample
//! ([`crate::timeseries`]); only then serve HTTP and run the sampler, the
//! snapshot writer, the event handler and the `--retry-join` loop (see
//! [`crate::retry_join`]: the agent serves meanwhile, `/v1/health/ready`
//! answering 503).
//!
//! SIGINT starts a graceful leave bounded by `leave_timeout`; SIGTERM too
//! when `leave_on_terminate` (the default), else the node stops at once
//! and the others see a failure that the restarted agent refutes. Then the
//! agent exits 0; a second signal exits at once (status 1). `POST
//! /v1/leave` leaves the same way. SIGHUP reloads ([`crate::reload`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::cli::AgentArgs;
use crate::cluster::{self, normalize_key, resolve_seeds_with, NodeSettings, SharedCluster};
use crate::config::{set_keys, AgentConfig};
use crate::http::{self, ApiState};
use crate::retry_join::JoinState;
use crate::snapshot::Snapshot;

/// Set up logging to stderr: text or JSON lines, level from `RUMOR_LOG`
/// (an `EnvFilter` directive), else `default` (see [`crate::logging`]).
pub fn init_logging(json: bool, default: &str) {
    crate::logging::init(json, default);
}

/// Read a keyring file: hex keys, one a line (`#` comments and blank lines
/// ignored), or a JSON array of them; the first is primary.
pub fn load_keyring(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read keyring {}", path.display()))?;
    let raw: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
            .with_context(|| format!("keyring {} is not a JSON array of keys", path.display()))?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    };
    if raw.is_empty() {
        bail!("keyring {} holds no key", path.display());
    }
    raw.iter()
        .enumerate()
        .map(|(i, k)| {
            normalize_key(k).with_context(|| format!("keyring {} key {}", path.display(), i + 1))
        })
        .collect()
}

/// Refuse settings that would leave the HTTP API open to others: a keyring
/// (the API changes keys) or a non-loopback `--http` without `--http-token`,
/// unless `--http-insecure` says so; and a read token without a write token
/// (reads protected, writes open). The error is one line naming the flag to add.
pub fn check_http_safety(cfg: &AgentConfig) -> Result<()> {
    if cfg.http_read_token.is_some() && cfg.http_token.is_none() {
        bail!("--http-read-token needs --http-token too (otherwise writes would be open while reads are not): add --http-token TOKEN");
    }
    if cfg.http_token.is_some() || cfg.http_insecure {
        return Ok(());
    }
    if cfg.keyring.is_some() {
        bail!(
            "the agent has a keyring but its HTTP API has no token: add --http-token TOKEN (or RUMOR_HTTP_TOKEN, or http_token in the config; --http-insecure to run without one)"
        );
    }
    if !cfg.http.ip().is_loopback() {
        bail!(
            "--http {} is not a loopback address and the API has no token: add --http-token TOKEN (or RUMOR_HTTP_TOKEN, or http_token in the config; --http-insecure to run without one)",
            cfg.http
        );
    }
    Ok(())
}

/// The one INFO line at start with the effective configuration (the key
/// count, never a key).
fn log_start(cfg: &AgentConfig, node: &SharedCluster, http: std::net::SocketAddr, keys: usize) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(",")
        }
    };
    tracing::info!(
        name = %node.name(),
        bind = %cfg.bind,
        advertise = %node.addr(),
        http = %http,
        profile = %cfg.profile_name,
        encryption = if keys > 0 { cfg.encryption.as_str() } else { "off" },
        keys,
        label = cfg.label.as_deref().unwrap_or("none"),
        join = %list(&cfg.join),
        retry_join = %list(&cfg.retry_join),
        retry_interval = ?cfg.retry_interval,
        retry_max = cfg.retry_max,
        dns_servers = %list(&cfg.dns_servers.iter().map(ToString::to_string).collect::<Vec<_>>()),
        rejoin_after_leave = cfg.rejoin_after_leave,
        leave_on_terminate = cfg.leave_on_terminate,
        snapshot = %cfg.snapshot.as_ref().map_or("none".into(), |p| p.display().to_string()),
        data_dir = %cfg.data.as_ref().map_or("none".into(), |d| d.dir.display().to_string()),
        sync = %cfg.data.as_ref().map_or("none".into(), crate::config::DataDir::sync_name),
        event_handlers = %crate::event_handler::describe(&cfg.event_handler),
        protocol_overrides = %set_keys(&cfg.protocol_overrides),
        limits = %set_keys(&cfg.limit_overrides),
        log_level = %cfg.log_level,
        timeseries_interval = ?cfg.timeseries_interval,
        "agent started"
    );
    if cfg.data.is_none() {
        tracing::warn!(
            "no data dir (--data-dir): the key space, this node's per-node state and its clocks live in memory only; after a restart this agent starts empty and pulls everything from its peers"
        );
    }
}

/// Why the agent stops.
enum Stop {
    /// SIGINT, or SIGTERM with `leave_on_terminate`: leave, then exit.
    Leave,
    /// SIGTERM without `leave_on_terminate`: stop at once.
    Terminate,
    /// `POST /v1/leave` has left already.
    Api,
}

/// Rejoin the snapshot's members, if it allows; `true` if one answered.
async fn rejoin_snapshot(node: &SharedCluster, snap: &Snapshot, rejoin_after_leave: bool) -> bool {
    if snap.left && !rejoin_after_leave {
        tracing::info!(
            "the snapshot says this agent left: not rejoining its members (pass --rejoin / rejoin_after_leave = true to rejoin after a leave)"
        );
        return false;
    }
    let addrs = snap.rejoin_addrs(rejoin_after_leave);
    if addrs.is_empty() {
        return false;
    }
    match node.join(addrs.clone()).await {
        Ok(n) => {
            tracing::info!("rejoined {n} of {} members from the snapshot", addrs.len());
            true
        }
        Err(e) => {
            tracing::warn!(
                "could not rejoin from the snapshot: {}",
                crate::join_hint::explain(&e.to_string())
            );
            false
        }
    }
}

/// Run an agent until it is told to stop.
pub async fn run(args: AgentArgs) -> Result<()> {
    let cfg = AgentConfig::resolve(&args)?;
    check_http_safety(&cfg)?;
    init_logging(cfg.log_json, &cfg.log_level);
    if cfg.http_insecure && cfg.http_token.is_none() {
        tracing::warn!(
            http = %cfg.http,
            "--http-insecure: the HTTP API has no token; anyone who reaches {} can change this member, the cluster's data and its keys",
            cfg.http
        );
    }
    let keys = match &cfg.keyring {
        Some(p) => load_keyring(p)?,
        None => Vec::new(),
    };
    let snapshot = match &cfg.snapshot {
        Some(p) => Snapshot::load(p)?,
        None => None,
    };
    let seeds = resolve_seeds_with(&cfg.join, &cfg.dns_servers).await?;

    crate::metrics::install();
    let http_listener = tokio::net::TcpListener::bind(cfg.http)
        .await
        .with_context(|| format!("cannot bind HTTP {}", cfg.http))?;
    let http_addr = http_listener.local_addr().unwrap_or(cfg.http);

    let key_count = keys.len();
    let node = cluster::start(NodeSettings {
        name: cfg.name.clone(),
        bind: cfg.bind,
        advertise: cfg.advertise,
        tags: cfg.tags.clone(),
        config: cfg.protocol.clone(),
        keys,
        encryption: cfg.encryption,
        label: cfg.label.clone(),
        last_incarnation: snapshot.as_ref().map(|s| s.incarnation),
        streams: cfg.streams,
        data: cfg.data.clone(),
    })
    .await?;
    log_start(&cfg, &node, http_addr, key_count);
    let mut tasks = vec![tokio::spawn(crate::logging::log_member_events(
        node.clone(),
    ))];

    let rejoin = snapshot
        .as_ref()
        .is_some_and(|s| !s.rejoin_addrs(cfg.rejoin_after_leave).is_empty());
    let join_state = if seeds.is_empty() && cfg.retry_join.is_empty() && !rejoin {
        // Nothing to join: the first member of a cluster is ready alone.
        JoinState::joined()
    } else {
        JoinState::waiting("not joined yet".into())
    };
    if let (Some(snap), true) = (&snapshot, seeds.is_empty()) {
        if rejoin_snapshot(&node, snap, cfg.rejoin_after_leave).await {
            join_state.set_joined();
        }
    }
    if !seeds.is_empty() {
        match node.join(seeds.clone()).await {
            Ok(n) => {
                tracing::info!("joined through {n} of {} seeds", seeds.len());
                join_state.set_joined();
            }
            Err(e) => {
                node.shutdown().await;
                bail!(
                    "cannot join the cluster: {}",
                    crate::join_hint::explain(&e.to_string())
                );
            }
        }
    }

    let (leave_tx, mut leave_rx) = mpsc::channel(1);
    let mut state = ApiState::new(node.clone(), cfg.http_token.clone(), cfg.event_history);
    state.read_token = cfg.http_read_token.as_deref().map(Arc::from);
    state.on_leave = Some(leave_tx);
    state.leave_timeout = cfg.leave_timeout;
    state.join = join_state.clone();
    state.keyring_file = cfg.keyring.as_deref().map(Arc::from);
    state.dns_servers = Arc::from(cfg.dns_servers.as_slice());
    state.facts = Arc::new(http::AgentFacts {
        profile: Some(cfg.profile_name.clone()),
        label: cfg.label.clone(),
        bind: Some(cfg.bind.to_string()),
        http: Some(http_addr.to_string()),
        event_handlers: cfg.event_handler.len(),
        event_handler_backlog: Some(cfg.event_handler_options.backlog),
        event_handler_timeout_ms: Some(cfg.event_handler_options.timeout.as_millis() as u64),
        leave_timeout_ms: Some(cfg.leave_timeout.as_millis() as u64),
        timeseries_interval_ms: Some(cfg.timeseries_interval.as_millis() as u64),
        data_dir: cfg.data.as_ref().map(|d| d.dir.display().to_string()),
        sync: cfg.data.as_ref().map(crate::config::DataDir::sync_name),
    });
    // The first sample before the API serves, so that it has a point at once.
    state.timeseries = Arc::new(crate::timeseries::TimeSeries::new(cfg.timeseries_interval));
    tasks.push(
        crate::timeseries::start(
            node.clone(),
            state.history.clone(),
            state.timeseries.clone(),
        )
        .await,
    );
    let leaving = state.leaving.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = http::serve(http_listener, http::router(state)).await {
            tracing::error!("HTTP server failed: {e}");
        }
    }));
    if let Some(p) = cfg.snapshot.clone() {
        tasks.push(tokio::spawn(crate::snapshot::keep(node.clone(), p)));
    }
    tasks.push(tokio::spawn(crate::keyring_sync::answer_queries(
        node.clone(),
        cfg.keyring.clone(),
    )));
    let (retry_tx, mut retry_rx) = mpsc::channel::<anyhow::Error>(1);
    if !cfg.retry_join.is_empty() {
        let (n, seeds, st) = (node.clone(), cfg.retry_join.clone(), join_state.clone());
        let dns = cfg.dns_servers.clone();
        let (interval, max) = (cfg.retry_interval, cfg.retry_max);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::retry_join::run(n, seeds, dns, interval, max, st).await {
                let _ = retry_tx.send(e).await;
            }
        }));
    }
    let handlers = crate::event_handler::spawn_all(
        node.clone(),
        cfg.event_handler.clone(),
        cfg.event_handler_options,
    );
    let mut live = crate::reload::Live {
        cluster: node.clone(),
        args,
        cfg,
        handlers,
    };

    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let stop = loop {
        tokio::select! {
            _ = sigint.recv() => break Stop::Leave,
            _ = sigterm.recv() => break if live.cfg.leave_on_terminate { Stop::Leave } else { Stop::Terminate },
            _ = leave_rx.recv() => break Stop::Api,
            _ = sighup.recv() => crate::reload::reload(&mut live).await,
            Some(e) = retry_rx.recv() => {
                if !join_state.is_joined() {
                    finish(&node, live.cfg.snapshot.as_deref(), false).await;
                    return Err(e);
                }
                tracing::warn!("{e:#} (the agent has joined otherwise: it keeps running)");
            }
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = sigint.recv() => {},
            _ = sigterm.recv() => {},
        }
        eprintln!("rumor: second signal, exiting at once");
        std::process::exit(1);
    });
    let left = match stop {
        Stop::Leave => {
            tracing::info!(timeout = ?live.cfg.leave_timeout, "signal received: leaving the cluster");
            leaving.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = node.leave(live.cfg.leave_timeout).await {
                tracing::warn!("leave failed: {e}");
            }
            true
        }
        Stop::Terminate => {
            tracing::info!(
                "SIGTERM: stopping without leaving (leave_on_terminate = false): the others see this member fail until it restarts"
            );
            leaving.store(true, std::sync::atomic::Ordering::Relaxed);
            false
        }
        Stop::Api => true,
    };
    finish(&node, live.cfg.snapshot.as_deref(), left).await;
    live.handlers.stop();
    for t in tasks {
        t.abort();
    }
    if left {
        tracing::info!("left the cluster; bye");
    } else {
        tracing::info!("stopped; bye");
    }
    Ok(())
}

async fn finish(node: &SharedCluster, snapshot: Option<&Path>, left: bool) {
    if let Some(p) = snapshot {
        if let Some(snap) = Snapshot::of(node, left).await {
            if let Err(e) = snap.store(p) {
                tracing::warn!("{e:#}");
            }
        }
    }
    node.shutdown().await;
    // Let the last datagrams leave the socket buffers.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(Arc::clone(node));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<AgentConfig> {
        use clap::Parser;
        let cli =
            crate::cli::Cli::try_parse_from(["rumor", "agent", "--name", "t"].iter().chain(args))?;
        match cli.command {
            crate::cli::Command::Agent(a) => AgentConfig::merge(&a, Default::default()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn http_safety() {
        let check = |args: &[&str]| cfg(args).and_then(|c| check_http_safety(&c));
        assert!(check(&[]).is_ok());
        assert!(check(&["--http", "[::1]:1"]).is_ok());
        let e = check(&["--keyring", "k"]).unwrap_err().to_string();
        assert!(e.contains("--http-token") && !e.contains('\n'), "{e}");
        let e = check(&["--http", "0.0.0.0:1"]).unwrap_err().to_string();
        assert!(e.contains("--http-token") && e.contains("0.0.0.0:1"), "{e}");
        assert!(check(&["--http", "0.0.0.0:1", "--http-token", "t"]).is_ok());
        assert!(check(&["--keyring", "k", "--http-insecure"]).is_ok());
        let e = check(&["--http-read-token", "r"]).unwrap_err().to_string();
        assert!(e.contains("--http-token"), "{e}");
        assert!(check(&["--http-read-token", "r", "--http-token", "w"]).is_ok());
        // The same settings from the config file.
        let file = |text: &str| {
            let c = AgentConfig::merge(
                &AgentArgs::default(),
                crate::config::FileConfig::parse(text).unwrap(),
            )
            .unwrap();
            check_http_safety(&c)
        };
        assert!(file("keyring = \"k\"\n").is_err());
        assert!(file("http = \"0.0.0.0:1\"\n").is_err());
        assert!(file("keyring = \"k\"\nhttp_insecure = true\n").is_ok());
        assert!(file("keyring = \"k\"\nhttp_token = \"t\"\n").is_ok());
        assert!(file("http_token = \"t\"\nhttp_read_token = \"r\"\n").is_ok());
    }

    #[test]
    fn keyring_files() {
        let dir = std::env::temp_dir().join(format!("rumor-kr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = crate::cluster::generate_key().unwrap();
        let p = dir.join("lines");
        std::fs::write(&p, format!("# primary\n{k}\n\n")).unwrap();
        assert_eq!(load_keyring(&p).unwrap(), vec![k.clone()]);
        let p = dir.join("json");
        std::fs::write(&p, format!("[\"{k}\"]")).unwrap();
        assert_eq!(load_keyring(&p).unwrap(), vec![k]);
        std::fs::write(&p, "nope").unwrap();
        assert!(load_keyring(&p).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
