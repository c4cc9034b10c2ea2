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
use serde::Deserialize;

use crate::cli::{parse_tag, AgentArgs};

/// Default gossip address (UDP and TCP).
pub const DEFAULT_BIND: &str = "0.0.0.0:7946";
/// Default HTTP API address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7947";
/// Default gossip port for seeds given without one.
pub const DEFAULT_PORT: u16 = 7946;
/// Default bound on a graceful leave.
pub const DEFAULT_LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Seeds.
    pub join: Option<Vec<String>>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Profile name.
    pub profile: Option<String>,
    /// Keyring file.
    pub keyring: Option<PathBuf>,
    /// Cluster label.
    pub label: Option<String>,
    /// JSON logs.
    pub log_json: Option<bool>,
    /// Bearer token of the write endpoints.
    pub http_token: Option<String>,
    /// Snapshot file.
    pub snapshot: Option<PathBuf>,
    /// Event handler command.
    pub event_handler: Option<String>,
    /// Graceful leave bound, e.g. "5s".
    pub leave_timeout: Option<String>,
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
    /// Seeds, unresolved.
    pub join: Vec<String>,
    /// Tags.
    pub tags: Tags,
    /// Profile.
    pub profile: Profile,
    /// Name of the profile, as given.
    pub profile_name: String,
    /// Keyring file.
    pub keyring: Option<PathBuf>,
    /// Cluster label.
    pub label: Option<String>,
    /// JSON logs.
    pub log_json: bool,
    /// Bearer token of the write endpoints.
    pub http_token: Option<String>,
    /// Snapshot file.
    pub snapshot: Option<PathBuf>,
    /// Event handler command.
    pub event_handler: Option<String>,
    /// Graceful leave bound.
    pub leave_timeout: Duration,
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
        let leave_timeout = match args
            .leave_timeout
            .as_deref()
            .or(file.leave_timeout.as_deref())
        {
            Some(s) => parse_duration(s).with_context(|| format!("leave_timeout {s:?}"))?,
            None => DEFAULT_LEAVE_TIMEOUT,
        };
        Ok(AgentConfig {
            name,
            bind,
            advertise,
            http,
            join,
            tags,
            profile,
            profile_name,
            keyring: args.keyring.clone().or(file.keyring),
            label: args.label.clone().or(file.label),
            log_json: args.log_json || file.log_json.unwrap_or(false),
            http_token: args
                .http_token
                .clone()
                .or(file.http_token)
                .filter(|t| !t.is_empty()),
            snapshot: args.snapshot.clone().or(file.snapshot),
            event_handler: args.event_handler.clone().or(file.event_handler),
            leave_timeout,
        })
    }
}

/// Parse a socket address; the error names the setting.
pub fn parse_addr(what: &str, s: &str) -> Result<SocketAddr> {
    s.trim()
        .parse()
        .with_context(|| format!("{what}: {s:?} is not an address like 127.0.0.1:7946"))
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
        assert_eq!(c.profile, Profile::Wan);
        assert_eq!(c.join, vec!["a:1".to_string()]);
        assert_eq!(c.tags.get("role").map(String::as_str), Some("db"));
        assert_eq!(c.http.to_string(), DEFAULT_HTTP);
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
