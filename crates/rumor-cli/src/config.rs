//! Agent configuration: the TOML file, and its merge with flags, `RUMOR_*`
//! environment variables and defaults.
//!
//! Precedence, highest first: flags, environment variables (both handled by
//! clap, see [`crate::cli::AgentArgs`]), the `--config` file, the defaults.
//! The file rejects unknown keys, naming them, so a typo never passes silently.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rumor_core::{Profile, Tags};
use serde::{Deserialize, Serialize};

use crate::cli::{parse_tag, AgentArgs};

/// Default gossip address (UDP and TCP).
pub const DEFAULT_BIND: &str = "0.0.0.0:7946";
/// Default HTTP API address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7947";
/// Default gossip port for seeds given without one.
pub const DEFAULT_PORT: u16 = 7946;
/// Default bound on a graceful leave.
pub const DEFAULT_LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of events waiting for the event handler.
pub const DEFAULT_EVENT_HANDLER_BACKLOG: usize = 1024;
/// Default time between two `retry_join` attempts (Serf's).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Default log level.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The `--config` file. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Member name.
    pub name: Option<String>,
    /// Gossip bind address.
    pub bind: Option<String>,
    /// Advertised gossip address.
    pub advertise: Option<String>,
    /// HTTP API address.
    pub http: Option<String>,
    /// Seeds; failing to reach every one at start is fatal.
    pub join: Option<Vec<String>>,
    /// Seeds retried in the background until one answers.
    pub retry_join: Option<Vec<String>>,
    /// Time between two `retry_join` attempts, e.g. "30s".
    pub retry_interval: Option<String>,
    /// Name servers for SRV seeds (`ip:port`, or `ip` for port 53).
    pub dns_servers: Option<Vec<String>>,
    /// Attempts of `retry_join` before the agent gives up (0: forever).
    pub retry_max: Option<u32>,
    /// Rejoin the snapshot's members even after a graceful leave.
    pub rejoin_after_leave: Option<bool>,
    /// Leave gracefully on SIGTERM (else exit as if crashed).
    pub leave_on_terminate: Option<bool>,
    /// Log level.
    pub log_level: Option<String>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Profile name.
    pub profile: Option<String>,
    /// "full" or "partial" membership.
    pub membership: Option<String>,
    /// Keyring file.
    pub keyring: Option<PathBuf>,
    /// With a keyring: "enforce", "send" or "accept".
    pub encryption: Option<String>,
    /// Cluster label.
    pub label: Option<String>,
    /// JSON logs.
    pub log_json: Option<bool>,
    /// Bearer token of the write endpoints (it also grants reads).
    pub http_token: Option<String>,
    /// Bearer token of the read endpoints.
    pub http_read_token: Option<String>,
    /// Run the API without a token even where one is required.
    pub http_insecure: Option<bool>,
    /// Snapshot file.
    pub snapshot: Option<PathBuf>,
    /// Directory for durable state.
    pub data_dir: Option<PathBuf>,
    /// `always` or `interval`.
    pub sync: Option<String>,
    /// With `sync = "interval"`: the longest wait for an fsync, e.g. "100ms".
    pub sync_interval: Option<String>,
    /// Event handlers, `[FILTER=]CMD`: one string or a list.
    pub event_handler: Option<crate::event_handler::OneOrMany>,
    /// Events waiting for the event handler before new ones are dropped.
    pub event_handler_backlog: Option<usize>,
    /// Longest one event handler run may take, e.g. "30s".
    pub event_handler_timeout: Option<String>,
    /// Graceful leave bound, e.g. "5s".
    pub leave_timeout: Option<String>,
    /// Events kept for `GET /v1/events?since=` (0: none).
    pub event_history: Option<usize>,
    /// Time between two samples of the last hour's series, e.g. "10s".
    pub timeseries_interval: Option<String>,
    /// Overrides of the profile's protocol settings.
    pub protocol: Option<ProtocolOverrides>,
    /// Bounds on what peers can make the agent hold.
    pub limits: Option<LimitOverrides>,
}

/// The `[limits]` table: bounds on what peers can make the agent hold
/// (`rumor_core::Limits`; defaults fit a 10,000-member LAN cluster).
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Members held, tombstones included.
    pub max_members: Option<usize>,
    /// Names waiting for their own ack before they are admitted.
    pub max_pending_members: Option<usize>,
    /// Of those, from one sender address.
    pub max_pending_per_sender: Option<usize>,
    /// Per-node state keys per member.
    pub max_state_keys_per_owner: Option<usize>,
    /// Per-node state bytes per member.
    pub max_state_bytes_per_owner: Option<usize>,
    /// Records in the replicated key space.
    pub max_kv_keys: Option<usize>,
    /// Bytes in the replicated key space.
    pub max_kv_bytes: Option<usize>,
    /// Updates waiting to be piggybacked.
    pub max_broadcasts: Option<usize>,
    /// Streams open at once in each direction.
    pub max_streams: Option<usize>,
    /// Incoming streams open at once from one address (an IPv6 /64).
    pub max_streams_per_source: Option<usize>,
    /// Bytes read from a stream before its header is authenticated.
    pub stream_preauth_budget: Option<usize>,
}

impl LimitOverrides {
    /// `c` with these limits, validated; errors name the key.
    pub fn apply(&self, mut c: rumor_core::Config) -> Result<rumor_core::Config> {
        let l = &mut c.limits;
        let fields = [
            (self.max_members, &mut l.max_members),
            (self.max_pending_members, &mut l.max_pending_members),
            (self.max_pending_per_sender, &mut l.max_pending_per_sender),
            (
                self.max_state_keys_per_owner,
                &mut l.max_state_keys_per_owner,
            ),
            (
                self.max_state_bytes_per_owner,
                &mut l.max_state_bytes_per_owner,
            ),
            (self.max_kv_keys, &mut l.max_kv_keys),
            (self.max_kv_bytes, &mut l.max_kv_bytes),
            (self.max_broadcasts, &mut l.max_broadcasts),
        ];
        for (value, slot) in fields {
            if let Some(v) = value {
                *slot = v;
            }
        }
        c.limits
            .validate()
            .map_err(|e| anyhow::anyhow!("[limits]: {e}"))?;
        Ok(c)
    }
}

/// The `[protocol]` table: protocol settings that replace the profile's.
/// Durations are strings like `"500ms"` or `"2s"`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolOverrides {
    /// Time between two probes.
    pub probe_interval: Option<String>,
    /// Wait for a direct ack before asking others.
    pub probe_timeout: Option<String>,
    /// Members asked to probe indirectly.
    pub indirect_checks: Option<usize>,
    /// Ping over TCP too when a direct probe times out.
    pub probe_stream_fallback: Option<bool>,
    /// Ping once more directly when a direct probe times out.
    pub probe_retry: Option<bool>,
    /// How long a member whose host is up but whose process is silent
    /// (paused, hung) may stay so before it is suspected ("0s" disables).
    pub stall_grace: Option<String>,
    /// Retransmissions are `retransmit_mult * ceil(log10(N+1))`.
    pub retransmit_mult: Option<u32>,
    /// Minimum suspicion timeout is `suspicion_mult * max(1, log10 N) * probe_interval`.
    pub suspicion_mult: Option<u32>,
    /// Maximum suspicion timeout is this many times the minimum.
    pub suspicion_max_mult: Option<u32>,
    /// Time between gossip ticks.
    pub gossip_interval: Option<String>,
    /// Members each gossip tick sends to.
    pub gossip_nodes: Option<usize>,
    /// How long dead members still receive gossip.
    pub gossip_to_the_dead: Option<String>,
    /// Base interval of full-state push-pull ("0s" disables it).
    pub push_pull_interval: Option<String>,
    /// How long dead and left members are remembered.
    pub tombstone_timeout: Option<String>,
    /// Time between two anti-entropy rounds of the per-node state.
    pub state_sync_interval: Option<String>,
    /// Time between two anti-entropy rounds of the replicated key space.
    pub kv_sync_interval: Option<String>,
    /// Time between two aggregate exchanges.
    pub aggregate_interval: Option<String>,
    /// Length of an aggregate epoch (at least 10 `aggregate_interval`).
    pub aggregate_epoch: Option<String>,
    /// Key prefixes whose keys keep concurrent writes as siblings (the
    /// others are last-write-wins); must be the same on every member.
    pub kv_siblings_prefixes: Option<Vec<String>>,
}

impl ProtocolOverrides {
    /// The profile's configuration with these overrides, validated; errors name the key.
    pub fn apply(&self, mut c: rumor_core::Config) -> Result<rumor_core::Config> {
        let dur = |key: &str, v: &Option<String>, slot: &mut Duration| -> Result<()> {
            if let Some(s) = v {
                *slot = parse_duration(s).with_context(|| format!("protocol.{key}"))?;
            }
            Ok(())
        };
        dur(
            "probe_interval",
            &self.probe_interval,
            &mut c.probe_interval,
        )?;
        dur("probe_timeout", &self.probe_timeout, &mut c.probe_timeout)?;
        dur("stall_grace", &self.stall_grace, &mut c.stall_grace)?;
        dur(
            "gossip_interval",
            &self.gossip_interval,
            &mut c.gossip_interval,
        )?;
        dur(
            "gossip_to_the_dead",
            &self.gossip_to_the_dead,
            &mut c.gossip_to_the_dead,
        )?;
        dur(
            "push_pull_interval",
            &self.push_pull_interval,
            &mut c.push_pull_interval,
        )?;
        dur(
            "tombstone_timeout",
            &self.tombstone_timeout,
            &mut c.tombstone_timeout,
        )?;
        dur(
            "state_sync_interval",
            &self.state_sync_interval,
            &mut c.state_sync_interval,
        )?;
        dur(
            "kv_sync_interval",
            &self.kv_sync_interval,
            &mut c.kv_sync_interval,
        )?;
        dur(
            "aggregate_interval",
            &self.aggregate_interval,
            &mut c.aggregate_interval,
        )?;
        dur(
            "aggregate_epoch",
            &self.aggregate_epoch,
            &mut c.aggregate_epoch,
        )?;
        if let Some(prefixes) = &self.kv_siblings_prefixes {
            if prefixes.iter().any(String::is_empty) {
                anyhow::bail!("protocol.kv_siblings_prefixes: a prefix is empty");
            }
            c.kv.prefix_modes = prefixes
                .iter()
                .map(|p| (p.clone(), rumor_core::kv::Mode::Siblings))
                .collect();
        }
        if let Some(v) = self.indirect_checks {
            c.indirect_checks = v;
        }
        if let Some(v) = self.probe_stream_fallback {
            c.probe_stream_fallback = v;
        }
        if let Some(v) = self.probe_retry {
            c.probe_retry = v;
        }
        if let Some(v) = self.retransmit_mult {
            c.retransmit_mult = v;
        }
        if let Some(v) = self.suspicion_mult {
            c.suspicion_mult = v;
        }
        if let Some(v) = self.suspicion_max_mult {
            c.suspicion_max_mult = v;
        }
        if let Some(v) = self.gossip_nodes {
            c.gossip_nodes = v;
        }
        c.validate()
            .map_err(|e| anyhow::anyhow!("[protocol]: {e}"))?;
        Ok(c)
    }
}

impl FileConfig {
    /// Read and parse a config file; errors name the file and the bad key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parse config text.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message().trim()))
    }
}

/// The agent's settings after merging every source.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Member name.
    pub name: String,
    /// Gossip bind address.
    pub bind: SocketAddr,
    /// Advertised gossip address, if set.
    pub advertise: Option<SocketAddr>,
    /// HTTP API address.
    pub http: SocketAddr,
    /// Seeds, unresolved; failing to reach every one at start is fatal.
    pub join: Vec<String>,
    /// Seeds, unresolved, retried in the background until one answers.
    pub retry_join: Vec<String>,
    /// Time between two `retry_join` attempts.
    pub retry_interval: Duration,
    /// Name servers SRV seeds are looked up with (empty: the system's).
    pub dns_servers: Vec<SocketAddr>,
    /// Attempts of `retry_join` before the agent exits 1 (0: forever).
    pub retry_max: u32,
    /// Rejoin the snapshot's members even if the snapshot says the agent left.
    pub rejoin_after_leave: bool,
    /// SIGTERM leaves gracefully (`true`) or stops at once, as a crash (`false`).
    pub leave_on_terminate: bool,
    /// Log level (`RUMOR_LOG`, if set, wins).
    pub log_level: String,
    /// Tags.
    pub tags: Tags,

    /// Name of the profile, as given.
    pub profile_name: String,
    /// Keyring file.
    pub keyring: Option<PathBuf>,
    /// What the agent sends and accepts when it has a keyring.
    pub encryption: rumor::EncryptionMode,
    /// Cluster label.
    pub label: Option<String>,
    /// JSON logs.
    pub log_json: bool,
    /// Bearer token of the write endpoints (it also grants reads).
    pub http_token: Option<String>,
    /// Bearer token of the read endpoints (`None`: reads are open).
    pub http_read_token: Option<String>,
    /// Run the API without a token even where one is required.
    pub http_insecure: bool,
    /// Snapshot file (with a data dir and no `snapshot`, one inside it).
    pub snapshot: Option<PathBuf>,
    /// Durable state, if a data dir is set.
    pub data: Option<DataDir>,
    /// Event handlers, parsed (filter and command).
    pub event_handler: Vec<crate::event_handler::HandlerSpec>,
    /// How event handlers run (backlog, timeout).
    pub event_handler_options: crate::event_handler::HandlerOptions,
    /// Graceful leave bound.
    pub leave_timeout: Duration,
    /// Events kept for `GET /v1/events?since=`.
    pub event_history: usize,
    /// Time between two samples of `GET /v1/timeseries`.
    pub timeseries_interval: Duration,
    /// The protocol configuration: the profile's, with the file's `[protocol]` overrides.
    pub protocol: rumor_core::Config,
    /// Stream limits from `[limits]`.
    pub streams: crate::cluster::StreamLimits,
    /// The `[protocol]` table as given (for the start line and reloads).
    pub protocol_overrides: ProtocolOverrides,
    /// The `[limits]` table as given (for the start line and reloads).
    pub limit_overrides: LimitOverrides,
}

impl AgentConfig {
    /// Merge flags/env (`args`) over the config file over the defaults.
    pub fn resolve(args: &AgentArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Merge already-loaded sources.
    pub fn merge(args: &AgentArgs, file: FileConfig) -> Result<Self> {
        let name = match args.name.clone().or(file.name) {
            Some(n) => n,
            None => hostname()?,
        };
        if name.is_empty() {
            bail!("name must not be empty");
        }
        let bind = parse_addr(
            "bind",
            args.bind
                .as_deref()
                .or(file.bind.as_deref())
                .unwrap_or(DEFAULT_BIND),
        )?;
        let advertise = match args.advertise.as_deref().or(file.advertise.as_deref()) {
            Some(a) => Some(parse_addr("advertise", a)?),
            None => None,
        };
        let http = parse_addr(
            "http",
            args.http
                .as_deref()
                .or(file.http.as_deref())
                .unwrap_or(DEFAULT_HTTP),
        )?;
        let join = if args.join.is_empty() {
            file.join.unwrap_or_default()
        } else {
            args.join.clone()
        };
        let join: Vec<String> = join
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let clean = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let retry_join = clean(if args.retry_join.is_empty() {
            file.retry_join.unwrap_or_default()
        } else {
            args.retry_join.clone()
        });
        let retry_interval = match args
            .retry_interval
            .as_deref()
            .or(file.retry_interval.as_deref())
        {
            Some(s) => parse_duration(s).with_context(|| format!("retry_interval {s:?}"))?,
            None => DEFAULT_RETRY_INTERVAL,
        };
        if retry_interval.is_zero() {
            bail!("retry_interval must be above 0 (e.g. \"30s\")");
        }
        let retry_max = args.retry_max.or(file.retry_max).unwrap_or(0);
        let dns_servers = clean(if args.dns_server.is_empty() {
            file.dns_servers.unwrap_or_default()
        } else {
            args.dns_server.clone()
        })
        .iter()
        .map(|s| parse_dns_server(s))
        .collect::<Result<Vec<_>>>()?;
        let log_level = crate::logging::check_level(
            args.log_level
                .as_deref()
                .or(file.log_level.as_deref())
                .unwrap_or(DEFAULT_LOG_LEVEL),
        )?;
        let tags = if args.tags.is_empty() {
            file.tags.unwrap_or_default()
        } else {
            let mut t = Tags::new();
            for item in &args.tags {
                let (k, v) = parse_tag(item).map_err(anyhow::Error::msg)?;
                t.insert(k, v);
            }
            t
        };
        let profile_name = args
            .profile
            .clone()
            .or(file.profile)
            .unwrap_or_else(|| "lan".to_string());
        let profile: Profile = profile_name
            .parse()
            .map_err(|e: rumor_core::Error| anyhow::anyhow!("profile: {e}"))?;
        let membership: rumor_core::Membership = args
            .membership
            .as_deref()
            .or(file.membership.as_deref())
            .unwrap_or("full")
            .parse()
            .map_err(|e: rumor_core::Error| anyhow::anyhow!("membership: {e}"))?;
        let leave_timeout = match args
            .leave_timeout
            .as_deref()
            .or(file.leave_timeout.as_deref())
        {
            Some(s) => parse_duration(s).with_context(|| format!("leave_timeout {s:?}"))?,
            None => DEFAULT_LEAVE_TIMEOUT,
        };
        let timeseries_interval = match args
            .timeseries_interval
            .as_deref()
            .or(file.timeseries_interval.as_deref())
        {
            Some(s) => parse_duration(s).with_context(|| format!("timeseries_interval {s:?}"))?,
            None => crate::timeseries::DEFAULT_INTERVAL,
        };
        let timeseries_interval = crate::timeseries::check_interval(timeseries_interval)?;
        let event_handler_backlog = args
            .event_handler_backlog
            .or(file.event_handler_backlog)
            .unwrap_or(DEFAULT_EVENT_HANDLER_BACKLOG);
        if event_handler_backlog == 0 {
            bail!("event_handler_backlog must be at least 1");
        }
        let event_handler_timeout = match args
            .event_handler_timeout
            .as_deref()
            .or(file.event_handler_timeout.as_deref())
        {
            Some(s) => parse_duration(s).with_context(|| format!("event_handler_timeout {s:?}"))?,
            None => crate::event_handler::DEFAULT_TIMEOUT,
        };
        let handler_args = if args.event_handler.is_empty() {
            file.event_handler
                .clone()
                .map(|h| h.into_vec())
                .unwrap_or_default()
        } else {
            args.event_handler.clone()
        };
        let event_handler = crate::event_handler::parse_all(&handler_args)?;
        let protocol_overrides = file.protocol.clone().unwrap_or_default();
        let protocol = protocol_overrides
            .clone()
            .apply(rumor_core::Config::profile(profile))?;
        let limits = file.limits.clone().unwrap_or_default();
        let mut protocol = limits.apply(protocol)?;
        protocol.membership = membership;
        let streams = crate::cluster::StreamLimits {
            max_streams: limits.max_streams,
            max_streams_per_source: limits.max_streams_per_source,
            stream_preauth_budget: limits.stream_preauth_budget,
        };
        let keyring = args.keyring.clone().or(file.keyring);
        let encryption = match args.encryption.as_deref().or(file.encryption.as_deref()) {
            Some(s) => s
                .parse::<rumor::EncryptionMode>()
                .map_err(|e| anyhow::anyhow!("encryption: {e}"))?,
            None => rumor::EncryptionMode::Enforce,
        };
        if keyring.is_none() && encryption != rumor::EncryptionMode::Enforce {
            bail!("encryption = \"{encryption}\" needs a keyring (--keyring)");
        }
        let data = DataDir::resolve(
            args.data_dir.clone().or(file.data_dir),
            args.sync.as_deref().or(file.sync.as_deref()),
            args.sync_interval
                .as_deref()
                .or(file.sync_interval.as_deref()),
        )?;
        Ok(AgentConfig {
            protocol,
            streams,
            protocol_overrides,
            limit_overrides: limits,
            name,
            bind,
            advertise,
            http,
            join,
            retry_join,
            retry_interval,
            retry_max,
            dns_servers,
            rejoin_after_leave: args.rejoin || file.rejoin_after_leave.unwrap_or(false),
            leave_on_terminate: args
                .leave_on_terminate
                .or(file.leave_on_terminate)
                .unwrap_or(true),
            log_level,
            tags,
            profile_name,
            keyring,
            encryption,
            label: args.label.clone().or(file.label),
            log_json: args.log_json || file.log_json.unwrap_or(false),
            http_token: args
                .http_token
                .clone()
                .or(file.http_token)
                .filter(|t| !t.is_empty()),
            http_read_token: args
                .http_read_token
                .clone()
                .or(file.http_read_token)
                .filter(|t| !t.is_empty()),
            http_insecure: args.http_insecure || file.http_insecure.unwrap_or(false),
            snapshot: args
                .snapshot
                .clone()
                .or(file.snapshot)
                .or_else(|| data.as_ref().map(|d| d.dir.join("snapshot.json"))),
            data,
            event_handler,
            event_handler_options: crate::event_handler::HandlerOptions {
                backlog: event_handler_backlog,
                timeout: event_handler_timeout,
                replay_members: true,
            },
            leave_timeout,
            event_history: args
                .event_history
                .or(file.event_history)
                .unwrap_or(crate::history::DEFAULT_EVENT_HISTORY),
            timeseries_interval,
        })
    }
}

/// Where and how the agent keeps durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    /// The directory.
    pub dir: PathBuf,
    /// `None`: acknowledge after the fsync; `Some(d)`: at once, fsync within `d`.
    pub sync_interval: Option<Duration>,
}

impl DataDir {
    /// The sync setting as the start line and `/v1/info` show it:
    /// `always` or `interval(100ms)`.
    pub fn sync_name(&self) -> String {
        match self.sync_interval {
            None => "always".into(),
            Some(i) => format!("interval({i:?})"),
        }
    }

    /// The default `sync_interval` with `sync = "interval"`.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

    /// From `data_dir`, `sync` and `sync_interval` as given; sync settings
    /// without a data dir are an error (they would silently do nothing).
    fn resolve(
        dir: Option<PathBuf>,
        sync: Option<&str>,
        interval: Option<&str>,
    ) -> Result<Option<Self>> {
        let interval = interval
            .map(|s| parse_duration(s).with_context(|| format!("sync_interval {s:?}")))
            .transpose()?;
        let Some(dir) = dir else {
            if sync.is_some() || interval.is_some() {
                bail!("sync and sync_interval need a data dir (--data-dir)");
            }
            return Ok(None);
        };
        let sync_interval = match (sync.unwrap_or("always"), interval) {
            ("always", None) => None,
            ("always", Some(_)) => {
                bail!("sync_interval applies to sync = \"interval\"; with sync = \"always\" every write waits for its fsync")
            }
            ("interval", i) => Some(i.unwrap_or(Self::DEFAULT_INTERVAL)),
            (other, _) => bail!("sync = {other:?}: expected \"always\" or \"interval\""),
        };
        if sync_interval.is_some_and(|d| d.is_zero() || d > Duration::from_secs(60)) {
            bail!("sync_interval must be between 1ms and 60s");
        }
        Ok(Some(DataDir { dir, sync_interval }))
    }
}

/// The keys a table sets, as `key=value` (for the start line): `"none"`
/// when it sets none.
pub fn set_keys<T: Serialize>(table: &T) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(table) else {
        return "none".into();
    };
    let set: Vec<String> = map
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if set.is_empty() {
        "none".into()
    } else {
        set.join(" ")
    }
}

/// Parse a socket address; the error names the setting.
pub fn parse_addr(what: &str, s: &str) -> Result<SocketAddr> {
    s.trim()
        .parse()
        .with_context(|| format!("{what}: {s:?} is not an address like 127.0.0.1:7946"))
}

/// Parse a name server: `ip:port`, or `ip` for port 53.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .with_context(|| format!("dns_servers: {s:?} is not an address like 127.0.0.1:53"))
}

/// Parse `500ms`, `5s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("bad duration {s:?}: use ms, s or m"),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| anyhow::anyhow!("bad duration {s:?}"))
}

/// This machine's host name.
pub fn hostname() -> Result<String> {
    let h = nix::unistd::gethostname().context("cannot read the host name; pass --name")?;
    h.into_string()
        .map_err(|_| anyhow::anyhow!("the host name is not UTF-8; pass --name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_is_rejected_by_name() {
        let err = FileConfig::parse("nmae = \"a\"\n").unwrap_err().to_string();
        assert!(err.contains("nmae"), "{err}");
    }

    #[test]
    fn flags_override_file() {
        let file = FileConfig::parse(
            "name = \"f\"\nbind = \"127.0.0.1:1\"\nprofile = \"wan\"\njoin = [\"a:1\"]\n[tags]\nrole = \"db\"\n",
        )
        .unwrap();
        let args = AgentArgs {
            name: Some("flag".into()),
            ..Default::default()
        };
        let c = AgentConfig::merge(&args, file).unwrap();
        assert_eq!(c.name, "flag");
        assert_eq!(c.bind.port(), 1);
        assert_eq!(c.protocol, rumor_core::Config::wan());
        assert_eq!(c.join, vec!["a:1".to_string()]);
        assert_eq!(c.tags.get("role").map(String::as_str), Some("db"));
        assert_eq!(c.http.to_string(), DEFAULT_HTTP);
    }

    #[test]
    fn timeseries_interval_from_flag_or_file_and_checked() {
        let c = AgentConfig::merge(&AgentArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(c.timeseries_interval, crate::timeseries::DEFAULT_INTERVAL);
        let file = FileConfig::parse("timeseries_interval = \"30s\"\n").unwrap();
        let c = AgentConfig::merge(&AgentArgs::default(), file).unwrap();
        assert_eq!(c.timeseries_interval, Duration::from_secs(30));
        let args = AgentArgs {
            timeseries_interval: Some("1s".into()),
            ..Default::default()
        };
        let file = FileConfig::parse("timeseries_interval = \"30s\"\n").unwrap();
        let c = AgentConfig::merge(&args, file).unwrap();
        assert_eq!(c.timeseries_interval, Duration::from_secs(1));
        for bad in ["0", "0s", "500ms", "11m"] {
            let args = AgentArgs {
                timeseries_interval: Some(bad.into()),
                ..Default::default()
            };
            let err = format!(
                "{:#}",
                AgentConfig::merge(&args, FileConfig::default()).unwrap_err()
            );
            assert!(
                err.contains("timeseries_interval") && !err.contains('\n'),
                "{err}"
            );
        }
    }

    #[test]
    fn limits_table_sets_and_checks_the_bounds() {
        let file = FileConfig::parse("[limits]\nmax_members = 500\nmax_kv_keys = 10\n").unwrap();
        let c = file
            .limits
            .unwrap()
            .apply(rumor_core::Config::lan())
            .unwrap();
        assert_eq!(c.limits.max_members, 500);
        assert_eq!(c.limits.max_kv_keys, 10);
        assert_eq!(
            c.limits.max_broadcasts,
            rumor_core::Limits::default().max_broadcasts
        );
        let bad = FileConfig::parse("[limits]\nmax_members = 1\n").unwrap();
        let err = bad
            .limits
            .unwrap()
            .apply(rumor_core::Config::lan())
            .unwrap_err();
        assert!(format!("{err:#}").contains("limits.max_members"), "{err:#}");
        assert!(FileConfig::parse("[limits]\nmax_things = 1\n").is_err());
    }

    #[test]
    fn protocol_overrides() {
        let file = FileConfig::parse(
            "profile = \"local\"\n[protocol]\nsuspicion_mult = 5\nprobe_interval = \"2s\"\n",
        )
        .unwrap();
        let c = AgentConfig::merge(&AgentArgs::default(), file).unwrap();
        assert_eq!(c.protocol.suspicion_mult, 5);
        assert_eq!(c.protocol.probe_interval, Duration::from_secs(2));
        assert_eq!(c.protocol.probe_timeout, Duration::from_millis(200));
        let err = FileConfig::parse("[protocol]\nsuspicion = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("suspicion"), "{err}");
        let bad = FileConfig::parse("[protocol]\nprobe_timeout = \"5s\"\n").unwrap();
        let err = format!(
            "{:#}",
            AgentConfig::merge(&AgentArgs::default(), bad).unwrap_err()
        );
        assert!(err.contains("probe_timeout"), "{err}");
        let file = FileConfig::parse(
            "[protocol]\naggregate_interval = \"50ms\"\naggregate_epoch = \"1s\"\nkv_siblings_prefixes = [\"cart/\"]\n",
        )
        .unwrap();
        let c = AgentConfig::merge(&AgentArgs::default(), file).unwrap();
        assert_eq!(c.protocol.aggregate_interval, Duration::from_millis(50));
        assert_eq!(c.protocol.kv.prefix_modes.len(), 1);
        let bad = FileConfig::parse("[protocol]\naggregate_epoch = \"10ms\"\n").unwrap();
        assert!(AgentConfig::merge(&AgentArgs::default(), bad).is_err());
    }

    #[test]
    fn encryption_mode_from_file_and_flag() {
        let args = AgentArgs {
            keyring: Some("k".into()),
            ..Default::default()
        };
        let c = AgentConfig::merge(&args, FileConfig::default()).unwrap();
        assert_eq!(c.encryption, rumor::EncryptionMode::Enforce);
        let file = || FileConfig::parse("encryption = \"send\"\n").unwrap();
        let c = AgentConfig::merge(&args, file()).unwrap();
        assert_eq!(c.encryption, rumor::EncryptionMode::Send);
        let flag = AgentArgs {
            encryption: Some("accept".into()),
            ..args.clone()
        };
        let c = AgentConfig::merge(&flag, file()).unwrap();
        assert_eq!(c.encryption, rumor::EncryptionMode::Accept);
        let bad = FileConfig::parse("encryption = \"off\"\n").unwrap();
        let err = format!("{:#}", AgentConfig::merge(&args, bad).unwrap_err());
        assert!(err.contains("encryption") && err.contains("off"), "{err}");
        let err = format!(
            "{:#}",
            AgentConfig::merge(&AgentArgs::default(), file()).unwrap_err()
        );
        assert!(err.contains("needs a keyring"), "{err}");
    }

    #[test]
    fn data_dir_settings() {
        let dir = || Some(PathBuf::from("/var/lib/rumor"));
        let d = DataDir::resolve(dir(), None, None).unwrap().unwrap();
        assert_eq!(d.sync_interval, None, "always is the default");
        let d = DataDir::resolve(dir(), Some("interval"), None)
            .unwrap()
            .unwrap();
        assert_eq!(d.sync_interval, Some(DataDir::DEFAULT_INTERVAL));
        let d = DataDir::resolve(dir(), Some("interval"), Some("250ms"))
            .unwrap()
            .unwrap();
        assert_eq!(d.sync_interval, Some(Duration::from_millis(250)));
        assert_eq!(DataDir::resolve(None, None, None).unwrap(), None);
        for (sync, interval, says) in [
            (
                Some("sometimes"),
                None,
                "expected \"always\" or \"interval\"",
            ),
            (Some("always"), Some("1s"), "applies to sync = \"interval\""),
            (Some("interval"), Some("0s"), "between 1ms and 60s"),
            (Some("interval"), Some("soon"), "sync_interval \"soon\""),
        ] {
            let err = DataDir::resolve(dir(), sync, interval).unwrap_err();
            assert!(format!("{err:#}").contains(says), "{err:#}");
        }
        let err = DataDir::resolve(None, Some("always"), None).unwrap_err();
        assert!(err.to_string().contains("need a data dir"), "{err}");
    }

    #[test]
    fn dns_servers_from_flag_or_file() {
        let file = || FileConfig::parse("dns_servers = [\"127.0.0.1:8600\", \"::1\"]\n").unwrap();
        let c = AgentConfig::merge(&AgentArgs::default(), file()).unwrap();
        assert_eq!(
            c.dns_servers,
            vec![
                "127.0.0.1:8600".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let args = AgentArgs {
            dns_server: vec!["127.0.0.2".into()],
            ..Default::default()
        };
        let c = AgentConfig::merge(&args, file()).unwrap();
        assert_eq!(c.dns_servers, vec!["127.0.0.2:53".parse().unwrap()]);
        let bad = FileConfig::parse("dns_servers = [\"resolver\"]\n").unwrap();
        let err = format!(
            "{:#}",
            AgentConfig::merge(&AgentArgs::default(), bad).unwrap_err()
        );
        assert!(
            err.contains("dns_servers") && err.contains("resolver"),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("99999999999999999999999999").is_err());
    }
}
