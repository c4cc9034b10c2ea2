//! Command-line arguments: every subcommand and flag of the `rumor` binary.
//!
//! Agent settings are all `Option`s here: a flag that was not given (and
//! whose `RUMOR_*` variable is unset) falls through to the config file and
//! then to the defaults, see [`crate::config`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The address the CLI client talks to when `--http` is not given.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7947";

/// rumor: gossip membership and failure detection (SWIM + Lifeguard).
#[derive(Debug, Parser)]
#[command(name = "rumor", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent: a cluster member with an HTTP API and a dashboard.
    Agent(Box<AgentArgs>),
    /// List the members the local agent knows.
    Members(MembersArgs),
    /// Show the local agent: name, addresses, profile, members, encryption, stats.
    Info(InfoArgs),
    /// Ask the local agent to join a cluster through the given addresses.
    Join(JoinArgs),
    /// Ask the local agent to leave the cluster gracefully and exit.
    Leave(ClientArgs),
    /// Mark a dead or unreachable member left on every member (--prune:
    /// forget it at once).
    ForceLeave(ForceLeaveArgs),
    /// Broadcast a user event through the local agent.
    Event(EventArgs),
    /// Ask the cluster a query and print each ack and answer as it arrives.
    Query(QueryArgs),
    /// Read, write, list and watch the replicated key space.
    Kv(KvArgs),
    /// Set or delete the local agent's per-node state keys.
    State(StateArgs),
    /// Print a cluster-wide aggregate of a per-node state key (tracks it first).
    Agg(AggArgs),
    /// Print membership and user events from the local agent as they happen.
    Monitor(MonitorArgs),
    /// Manage the local agent's encryption keyring.
    Keys(KeysArgs),
    /// Change the local agent's tags.
    Tags(TagsArgs),
    /// Run N nodes in this process with a scripted failure scenario and a dashboard.
    Demo(DemoArgs),
    /// Run the deterministic simulator: the `rumor-sim` binary beside this
    /// one, or in-process when built with `--features sim` (`rumor sim
    /// --help` lists its flags; docs/simulator.md explains them).
    #[command(disable_help_flag = true)]
    Sim(SimArgs),
}

/// Arguments of `rumor sim`, handed unparsed to the simulator.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// The simulator's arguments (`--nodes`, `--scenario`, `--json`, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Settings of `rumor agent`.
///
/// Precedence, highest first: command-line flags, then `RUMOR_*`
/// environment variables, then the `--config` file, then the defaults.
#[derive(Debug, Default, Clone, Args)]
#[command(
    after_help = "Precedence: flags > RUMOR_* environment variables > --config file > defaults.\n\
See docs/agent.md for every key."
)]
pub struct AgentArgs {
    /// Unique member name [default: the host name].
    #[arg(long, env = "RUMOR_NAME")]
    pub name: Option<String>,
    /// UDP and TCP address for gossip [default: 0.0.0.0:7946].
    #[arg(long, env = "RUMOR_BIND")]
    pub bind: Option<String>,
    /// Address other members dial, when it differs from --bind (NAT, 0.0.0.0).
    #[arg(long, env = "RUMOR_ADVERTISE")]
    pub advertise: Option<String>,
    /// HTTP API and dashboard address [default: 127.0.0.1:7947].
    #[arg(long, env = "RUMOR_HTTP")]
    pub http: Option<String>,
    /// Seeds to join at start: host:port or DNS names (port 7946 if omitted);
    /// comma-separated or repeated.
    #[arg(long, env = "RUMOR_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Seeds retried in the background until one answers (the agent runs
    /// meanwhile, not ready); names are resolved again on every attempt;
    /// comma-separated or repeated.
    #[arg(long, env = "RUMOR_RETRY_JOIN", value_delimiter = ',')]
    pub retry_join: Vec<String>,
    /// Name server (ip:port, or ip for port 53) to look SRV seeds up with
    /// instead of /etc/resolv.conf's; comma-separated or repeated.
    /// `host:port` seeds still go through the system resolver.
    #[arg(long = "dns-server", env = "RUMOR_DNS_SERVERS", value_delimiter = ',')]
    pub dns_server: Vec<String>,
    /// Time between two --retry-join attempts, e.g. `30s` [default: 30s].
    #[arg(long, env = "RUMOR_RETRY_INTERVAL")]
    pub retry_interval: Option<String>,
    /// --retry-join attempts before the agent exits 1; 0 retries forever [default: 0].
    #[arg(long, env = "RUMOR_RETRY_MAX")]
    pub retry_max: Option<u32>,
    /// Rejoin the snapshot's members even if the agent left gracefully last
    /// time (config: rejoin_after_leave).
    #[arg(long, env = "RUMOR_REJOIN")]
    pub rejoin: bool,
    /// On SIGTERM, leave gracefully (true) or stop at once so the others see
    /// a failure that a restart refutes (false) [default: true].
    #[arg(long, env = "RUMOR_LEAVE_ON_TERMINATE", value_name = "BOOL")]
    pub leave_on_terminate: Option<bool>,
    /// Log level: trace, debug, info, warn, error or off [default: info];
    /// RUMOR_LOG, an EnvFilter directive, wins when set.
    #[arg(long, env = "RUMOR_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// A tag `key=value`; repeatable (env: comma-separated).
    #[arg(long = "tag", env = "RUMOR_TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Protocol timing profile: lan, wan or local [default: lan].
    #[arg(long, env = "RUMOR_PROFILE")]
    pub profile: Option<String>,
    /// How much of the cluster each node tracks: `full` (every member,
    /// SWIM) or `partial` (a few neighbours: HyParView and Plumtree, for
    /// large clusters) [default: full]. Every agent of a cluster must agree.
    #[arg(long, env = "RUMOR_MEMBERSHIP")]
    pub membership: Option<String>,
    /// Keyring file: hex keys (64 digits), one a line, the first is primary.
    #[arg(long, env = "RUMOR_KEYRING")]
    pub keyring: Option<PathBuf>,
    /// With --keyring: `enforce` (send and accept encrypted only, the
    /// default), `send` (send encrypted, accept plaintext too) or `accept`
    /// (send plaintext, accept both): the steps that turn encryption on or
    /// off in a running cluster. Set it in the --config file to change it
    /// on SIGHUP (a flag beats the file).
    #[arg(long, env = "RUMOR_ENCRYPTION")]
    pub encryption: Option<String>,
    /// Cluster label: only members with the same label talk to each other.
    #[arg(long, env = "RUMOR_LABEL")]
    pub label: Option<String>,
    /// TOML configuration file (unknown keys are rejected).
    #[arg(long, env = "RUMOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "RUMOR_LOG_JSON")]
    pub log_json: bool,
    /// Bearer token required by the write endpoints (and the keyring listing);
    /// it also grants every read. Required with --keyring or a non-loopback --http.
    #[arg(long, env = "RUMOR_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// Bearer token required by the read endpoints (members, kv, events,
    /// aggregates, metrics); /v1/health stays open. Needs --http-token.
    #[arg(long, env = "RUMOR_HTTP_READ_TOKEN", hide_env_values = true)]
    pub http_read_token: Option<String>,
    /// Run without --http-token even with --keyring or a non-loopback --http
    /// (anyone who reaches the API can then change the cluster and its keys).
    #[arg(long, env = "RUMOR_HTTP_INSECURE")]
    pub http_insecure: bool,
    /// File recording known members and the own incarnation; on restart the
    /// agent rejoins them without --join.
    #[arg(long, env = "RUMOR_SNAPSHOT")]
    pub snapshot: Option<PathBuf>,
    /// Directory for durable state: the key space, this node's per-node
    /// state, incarnation and Lamport clock, and the snapshot (unless
    /// --snapshot names another file). Without it they live in memory only.
    #[arg(long, env = "RUMOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir, when a key-space write is acknowledged: `always`
    /// (once it is on disk; the default) or `interval` (at once, on disk
    /// within --sync-interval).
    #[arg(long, env = "RUMOR_SYNC")]
    pub sync: Option<String>,
    /// With --sync interval: the longest an acknowledged write waits for
    /// its fsync, e.g. "100ms".
    #[arg(long, env = "RUMOR_SYNC_INTERVAL")]
    pub sync_interval: Option<String>,
    /// `[FILTER=]CMD`: program run (through `sh -c`) for each membership
    /// event (RUMOR_EVENT and RUMOR_MEMBER_* variables name it) and each user
    /// event (RUMOR_EVENT=user, RUMOR_USER_EVENT, payload on stdin); FILTER is
    /// comma-separated member-join, member-leave, member-failed, ..., user,
    /// user:NAME, query:NAME (docs/agent.md); repeatable.
    #[arg(long, env = "RUMOR_EVENT_HANDLER")]
    pub event_handler: Vec<String>,
    /// Events waiting for the event handler before new ones are dropped
    /// (counted in rumor_event_handler_dropped_total) [default: 1024].
    #[arg(long, env = "RUMOR_EVENT_HANDLER_BACKLOG")]
    pub event_handler_backlog: Option<usize>,
    /// Longest one event handler run may take before it is killed and
    /// counted in rumor_event_handler_slow_total, e.g. `30s` [default: 30s].
    #[arg(long, env = "RUMOR_EVENT_HANDLER_TIMEOUT")]
    pub event_handler_timeout: Option<String>,
    /// Longest a graceful leave may take on SIGINT/SIGTERM, e.g. `5s` [default: 5s].
    #[arg(long, env = "RUMOR_LEAVE_TIMEOUT")]
    pub leave_timeout: Option<String>,
    /// Member and user events the agent keeps for `GET /v1/events?since=`
    /// and `rumor monitor --since` (0: none) [default: 1024].
    #[arg(long, env = "RUMOR_EVENT_HISTORY")]
    pub event_history: Option<usize>,
    /// Time between two samples of the last hour's series
    /// (`GET /v1/timeseries`, the dashboard's charts), 1s to 10m, e.g.
    /// `10s` [default: 10s].
    #[arg(long, env = "RUMOR_TIMESERIES_INTERVAL")]
    pub timeseries_interval: Option<String>,
}

/// Flags every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The agent's HTTP address.
    #[arg(long, env = "RUMOR_HTTP", default_value = DEFAULT_HTTP)]
    pub http: String,
    /// Bearer token for the agent's API: its write token, or its read token
    /// for reads.
    #[arg(long, env = "RUMOR_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
}

/// `rumor members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only members in this status: alive, suspect, dead or left.
    #[arg(long)]
    pub status: Option<String>,
    /// Only members whose name matches this regular expression (the whole name).
    #[arg(long, value_name = "REGEX")]
    pub name: Option<String>,
    /// Only members with tag KEY whose value matches REGEX (the whole
    /// value); repeatable (all must match).
    #[arg(long = "tag", value_name = "KEY=REGEX")]
    pub tags: Vec<String>,
    /// Show addresses, incarnation, protocol versions, state keys and tags.
    #[arg(long)]
    pub detailed: bool,
}

/// `rumor info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON (as `GET /v1/info` answers).
    #[arg(long)]
    pub json: bool,
}

/// `rumor join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Addresses to join (host:port or DNS names).
    #[arg(required = true)]
    pub addrs: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rumor force-leave`.
#[derive(Debug, Args)]
pub struct ForceLeaveArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The member's name.
    pub name: String,
    /// Have every member forget it at once instead of keeping it listed as
    /// left for the tombstone timeout.
    #[arg(long)]
    pub prune: bool,
    /// Also for a member this agent sees alive (a live member refutes it
    /// and stays).
    #[arg(long)]
    pub force: bool,
}

/// `rumor event`.
#[derive(Debug, Args)]
pub struct EventArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Event name.
    pub name: String,
    /// Payload (text).
    pub payload: Option<String>,
}

/// `rumor query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Query name (`_rumor_ping` and `_rumor_info` are built in).
    pub name: String,
    /// Payload (text).
    pub payload: Option<String>,
    /// Only members whose whole name matches this regular expression
    /// (repeatable: each must match).
    #[arg(long = "node", value_name = "REGEX")]
    pub nodes: Vec<String>,
    /// Only members with tag KEY whose whole value matches REGEX (repeatable).
    #[arg(long = "tag", value_name = "KEY=REGEX")]
    pub tags: Vec<String>,
    /// How long to wait for answers, e.g. 5s (default: grows with the
    /// cluster's size, 6.4 s for 16 members on a LAN).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Do not ask the members for acks.
    #[arg(long)]
    pub no_ack: bool,
    /// Send each answer through this many other members too (0-5).
    #[arg(long, default_value_t = 0)]
    pub relay_factor: u8,
    /// Print each line as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rumor kv`.
#[derive(Debug, Args)]
pub struct KvArgs {
    /// The key-space operation.
    #[command(subcommand)]
    pub op: KvOp,
}

/// Key-space operations.
#[derive(Debug, Subcommand)]
pub enum KvOp {
    /// Print the value of a key (exit 1 if absent).
    Get(KvKeyArgs),
    /// Write a key (the value from the argument, or standard input if omitted).
    Put(KvPutArgs),
    /// Delete a key.
    Del(KvKeyArgs),
    /// List keys and values.
    List(KvListArgs),
    /// Print changes of keys as they happen.
    Watch(KvListArgs),
    /// Write every entry (tombstones included) as JSON lines: a backup.
    Export(KvExportArgs),
    /// Merge JSON lines from `rumor kv export` back into the cluster.
    Import(KvImportArgs),
}

/// `rumor kv export`.
#[derive(Debug, Args)]
pub struct KvExportArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Write to this file (atomically, when complete) instead of standard output.
    #[arg(long, short)]
    pub out: Option<std::path::PathBuf>,
}

/// `rumor kv import`.
#[derive(Debug, Args)]
pub struct KvImportArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The file `rumor kv export` wrote; `-` or omitted: standard input.
    pub file: Option<std::path::PathBuf>,
}

/// A key operand of `rumor kv`.
#[derive(Debug, Args)]
pub struct KvKeyArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key.
    pub key: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rumor kv put`.
#[derive(Debug, Args)]
pub struct KvPutArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key.
    pub key: String,
    /// The value (text); read from standard input when omitted, less one
    /// trailing newline (as `$(...)` in a shell strips it) unless --raw.
    pub value: Option<String>,
    /// Keep standard input byte for byte (a trailing newline included).
    #[arg(long)]
    pub raw: bool,
    /// Causal context of a siblings-mode key, as `rumor kv get --json`
    /// shows it: the write replaces the siblings that context covers.
    #[arg(long)]
    pub context: Option<String>,
}

/// `rumor kv list` and `rumor kv watch`.
#[derive(Debug, Args)]
pub struct KvListArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rumor state`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The state operation.
    #[command(subcommand)]
    pub op: StateOp,
}

/// Per-node state operations.
#[derive(Debug, Subcommand)]
pub enum StateOp {
    /// Set a key of the local agent's state.
    Set(StateSetArgs),
    /// Delete a key of the local agent's state.
    Del(StateDelArgs),
}

/// `rumor state set`.
#[derive(Debug, Args)]
pub struct StateSetArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key.
    pub key: String,
    /// The value (text).
    pub value: String,
}

/// `rumor state del`.
#[derive(Debug, Args)]
pub struct StateDelArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key.
    pub key: String,
}

/// `rumor agg`.
#[derive(Debug, Args)]
pub struct AggArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The per-node state key to aggregate.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rumor monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print each event as a JSON line.
    #[arg(long)]
    pub json: bool,
    /// First replay the events the agent kept with an id above this (0: all
    /// it kept; ids are in `--json` output), then follow live ones.
    #[arg(long, value_name = "ID")]
    pub since: Option<u64>,
}

/// `rumor keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The keyring operation.
    #[command(subcommand)]
    pub op: KeysOp,
}

/// Keyring operations.
#[derive(Debug, Subcommand)]
pub enum KeysOp {
    /// Print a fresh random key (needs no agent).
    Gen(GenArgs),
    /// Install a key on every member (not yet used for sending).
    Install(KeyArg),
    /// Make an installed key the primary one on every member.
    Use(KeyArg),
    /// Remove a key (not the primary one) from every member.
    Remove(KeyArg),
    /// List every member's keys by fingerprint, with how many hold each
    /// (the API never shows key material).
    List(KeysListArgs),
    /// Print a key's fingerprint, as `rumor keys list` shows it (needs no agent).
    Fingerprint(FingerprintArgs),
}

/// `rumor keys fingerprint`.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// The key: 64 hexadecimal digits.
    pub key: String,
}

/// `rumor keys gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Print the key as base64 (Serf's form) instead of hex.
    #[arg(long)]
    pub base64: bool,
}

/// A key operand.
#[derive(Debug, Args)]
pub struct KeyArg {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The key: 64 hexadecimal digits, or the base64 of 32 bytes.
    pub key: String,
    /// Change only the agent the CLI talks to, not every member.
    #[arg(long)]
    pub local: bool,
}

/// `rumor keys list`.
#[derive(Debug, Args)]
pub struct KeysListArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// List only the keys of the agent the CLI talks to.
    #[arg(long)]
    pub local: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `rumor tags`.
#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The tag operation.
    #[command(subcommand)]
    pub op: TagsOp,
}

/// Tag operations.
#[derive(Debug, Subcommand)]
pub enum TagsOp {
    /// Set tags `key=value` (others are kept).
    Set(TagsSetArgs),
    /// Delete tags by key.
    Del(TagsDelArgs),
}

/// `rumor tags set`.
#[derive(Debug, Args)]
pub struct TagsSetArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// `key=value` pairs.
    #[arg(required = true)]
    pub tags: Vec<String>,
}

/// `rumor tags del`.
#[derive(Debug, Args)]
pub struct TagsDelArgs {
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Keys to delete.
    #[arg(required = true)]
    pub keys: Vec<String>,
}

/// `rumor demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Nodes to run.
    #[arg(long, default_value_t = 32)]
    pub nodes: usize,
    /// Dashboard address (the dashboard of the first node).
    #[arg(long, default_value = "127.0.0.1:7947")]
    pub http: String,
    /// First gossip port; nodes use consecutive ports from here (0: any free ports).
    #[arg(long, default_value_t = 0)]
    pub base_port: u16,
    /// Protocol profile of the demo nodes.
    #[arg(long, default_value = "local")]
    pub profile: String,
    /// Membership of the demo nodes: full or partial.
    #[arg(long, default_value = "full")]
    pub membership: String,
    /// Stop once the scripted scenario has run and the timeline is printed.
    #[arg(long)]
    pub exit_after_script: bool,
    /// Print the timeline as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// Parse `key=value`; the error names the bad item.
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("bad tag {s:?}: expected key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tags_parse() {
        assert_eq!(parse_tag("role=web"), Ok(("role".into(), "web".into())));
        assert_eq!(parse_tag("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=x").is_err());
    }
}
