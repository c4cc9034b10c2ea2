//! The defaults written in the docs are the defaults in the code.
//!
//! Every default is stated once, in docs/agent.md's tables; this test parses
//! them (and the "rumor" column of docs/operations.md's departures from
//! memberlist) and compares each cell with `Config::lan()/wan()/local()`,
//! `Limits::default()`, the library's stream limits and the agent's own
//! defaults (read from a running agent's `GET /v1/info`, or, for the two
//! addresses it cannot bind in a test, from their constants). A cell that
//! disagrees, a row for an unknown key or a missing row fails the test.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rumor_core::{Config, Limits};
use serde_json::Value;

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The rows of every Markdown table in `text` whose header is `header`
/// (cells trimmed, the header and the `|---|` line left out).
fn tables(text: &str, header: &[&str]) -> Vec<Vec<String>> {
    let cells = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    let mut found = false;
    while let Some(l) = lines.next() {
        if !l.trim_start().starts_with('|') || cells(l) != header {
            continue;
        }
        found = true;
        lines.next(); // |---|
        while let Some(l) = lines.peek() {
            if !l.trim_start().starts_with('|') {
                break;
            }
            out.push(cells(l));
            lines.next();
        }
    }
    assert!(found, "no table with header {header:?}");
    out
}

/// A cell's value, normalised: `"1s"` → `1000ms`, `` `3` `` → `3`,
/// `off`, `[]`. Backticks and quotes are dropped.
fn norm(cell: &str) -> String {
    let v = cell.trim().trim_matches('`').trim_matches('"');
    match duration(v) {
        Some(d) => format!("{}ms", d.as_millis()),
        None => v.replace([',', '_'], ""),
    }
}

fn duration(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The value of `key` in `c`, normalised as [`norm`] does.
fn config_value(c: &Config, key: &str) -> Option<String> {
    Some(match key {
        "probe_interval" => ms(c.probe_interval),
        "probe_timeout" => ms(c.probe_timeout),
        "indirect_checks" => c.indirect_checks.to_string(),
        "probe_stream_fallback" => c.probe_stream_fallback.to_string(),
        "probe_retry" => c.probe_retry.to_string(),
        "stall_grace" => ms(c.stall_grace),
        "retransmit_mult" => c.retransmit_mult.to_string(),
        "suspicion_mult" => c.suspicion_mult.to_string(),
        "suspicion_max_mult" => c.suspicion_max_mult.to_string(),
        "suspicion_confirmations" => c.suspicion_confirmations.to_string(),
        "gossip_interval" => ms(c.gossip_interval),
        "gossip_nodes" => c.gossip_nodes.to_string(),
        "gossip_to_the_dead" => ms(c.gossip_to_the_dead),
        "push_pull_interval" => ms(c.push_pull_interval),
        "tombstone_timeout" => ms(c.tombstone_timeout),
        "state_sync_interval" => ms(c.state_sync_interval),
        "kv_sync_interval" => ms(c.kv_sync_interval),
        "aggregate_interval" => ms(c.aggregate_interval),
        "aggregate_epoch" => ms(c.aggregate_epoch),
        "kv_siblings_prefixes" if c.kv.prefix_modes.is_empty() => "[]".into(),
        "kv_siblings_prefixes" => format!("{:?}", c.kv.prefix_modes),
        "unreachable_suspicion_timeout" => c.unreachable_suspicion_timeout.map_or("off".into(), ms),
        "suspect_watchers" => c.suspect_watchers.to_string(),
        "eager_fanout" => c.eager_fanout.to_string(),
        _ => return None,
    })
}

fn profile(name: &str) -> Config {
    match name {
        "lan" => Config::lan(),
        "wan" => Config::wan(),
        "local" => Config::local(),
        other => panic!("unknown profile {other:?} in the docs"),
    }
}

/// Every `[protocol]` key the agent's config file accepts.
const PROTOCOL_KEYS: [&str; 19] = [
    "probe_interval",
    "probe_timeout",
    "indirect_checks",
    "probe_stream_fallback",
    "probe_retry",
    "stall_grace",
    "retransmit_mult",
    "suspicion_mult",
    "suspicion_max_mult",
    "gossip_interval",
    "gossip_nodes",
    "gossip_to_the_dead",
    "push_pull_interval",
    "tombstone_timeout",
    "state_sync_interval",
    "kv_sync_interval",
    "aggregate_interval",
    "aggregate_epoch",
    "kv_siblings_prefixes",
];

#[test]
fn profile_tables_match_config() {
    let doc = read("docs/agent.md");
    let rows = tables(&doc, &["key", "lan", "wan", "local", "meaning"]);
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    for row in &rows {
        let key = row[0].trim_matches('`');
        seen.push(key.to_string());
        for (i, p) in ["lan", "wan", "local"].iter().enumerate() {
            let Some(want) = config_value(&profile(p), key) else {
                wrong.push(format!("{key}: not a Config setting this test knows"));
                continue;
            };
            let got = norm(&row[i + 1]);
            if got != want {
                wrong.push(format!(
                    "{key} ({p}): docs say {got}, Config::{p}() has {want}"
                ));
            }
        }
    }
    for k in PROTOCOL_KEYS
        .iter()
        .chain(&["unreachable_suspicion_timeout", "suspicion_confirmations"])
    {
        if !seen.iter().any(|s| s == k) {
            wrong.push(format!("{k}: no row in docs/agent.md"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/agent.md disagrees with the code:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn departures_from_memberlist_match_config() {
    let doc = read("docs/operations.md");
    let rows = tables(
        &doc,
        &[
            "key",
            "profile",
            "memberlist",
            "rumor",
            "why, and what it costs",
        ],
    );
    assert!(rows.len() >= 5, "{rows:?}");
    let mut wrong = Vec::new();
    for row in &rows {
        let key = row[0].trim_matches('`');
        let want = config_value(&profile(&row[1]), key)
            .unwrap_or_else(|| panic!("{key}: not a Config setting this test knows"));
        let got = norm(&row[3]);
        if got != want {
            wrong.push(format!(
                "{key} ({}): docs say {got}, the code has {want}",
                row[1]
            ));
        }
        if norm(&row[2]) == got {
            wrong.push(format!(
                "{key} ({}): listed as a departure but equal",
                row[1]
            ));
        }
    }
    // The departure this section exists for.
    assert!(
        rows.iter()
            .any(|r| r[0] == "`suspicion_mult`" && r[1] == "lan"),
        "{rows:?}"
    );
    assert!(
        wrong.is_empty(),
        "docs/operations.md disagrees with the code:\n{}",
        wrong.join("\n")
    );
}

/// The first `NEEDLE EXPR` in a source file whose EXPR (up to `;`, `,` or
/// the line's end) is a number or a string, evaluated (`64 * 1024`, `256 << 20`).
fn source_const(rel: &str, needle: &str) -> String {
    let text = read(rel);
    for (at, _) in text.match_indices(needle) {
        let rest = &text[at + needle.len()..];
        let expr = rest[..rest.find([';', ',', '\n']).unwrap_or(rest.len())].trim();
        if let Some(s) = expr.strip_prefix('"') {
            return s.trim_end_matches('"').to_string();
        }
        let parts: Vec<&str> = expr.split(['*', '<']).filter(|p| !p.is_empty()).collect();
        if parts
            .iter()
            .all(|p| p.trim().replace('_', "").parse::<u64>().is_ok())
        {
            if let Some((a, b)) = expr.split_once('*') {
                return (int(a) * int(b)).to_string();
            }
            if let Some((a, b)) = expr.split_once("<<") {
                return (int(a) << int(b)).to_string();
            }
            return int(expr).to_string();
        }
    }
    panic!("no {needle:?} with a constant value in {rel}")
}

fn int(s: &str) -> u64 {
    s.trim()
        .replace('_', "")
        .parse()
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn limits_table_matches_the_library() {
    let doc = read("docs/agent.md");
    let rows = tables(&doc, &["key", "default", "bounds"]);
    let l = Limits::default();
    let want = |key: &str| -> String {
        match key {
            "max_members" => l.max_members.to_string(),
            "max_pending_members" => l.max_pending_members.to_string(),
            "max_pending_per_sender" => l.max_pending_per_sender.to_string(),
            "max_state_keys_per_owner" => l.max_state_keys_per_owner.to_string(),
            "max_state_bytes_per_owner" => l.max_state_bytes_per_owner.to_string(),
            "max_kv_keys" => l.max_kv_keys.to_string(),
            "max_kv_bytes" => l.max_kv_bytes.to_string(),
            "max_broadcasts" => l.max_broadcasts.to_string(),
            // Not exported by the library: read from its source.
            "max_streams" => source_const("crates/rumor/src/builder.rs", "max_streams:"),
            "max_streams_per_source" => source_const(
                "crates/rumor/src/transport/admission.rs",
                "DEFAULT_MAX_STREAMS_PER_SOURCE: usize =",
            ),
            "stream_preauth_budget" => source_const(
                "crates/rumor/src/transport/tcp.rs",
                "DEFAULT_PREAUTH_BUDGET: usize =",
            ),
            other => panic!("{other}: a [limits] row this test does not know"),
        }
    };
    assert_eq!(rows.len(), 11, "every [limits] key has a row: {rows:?}");
    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let key = r[0].trim_matches('`');
            let (got, want) = (norm(&r[1]), want(key));
            (got != want).then(|| format!("{key}: docs say {got}, the code has {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The first backticked value, or the bare cell, of a "default" cell.
fn default_cell(cell: &str) -> String {
    match cell.split('`').nth(1) {
        Some(v) => norm(v),
        None => norm(cell),
    }
}

#[test]
fn agent_settings_match_a_running_agent() {
    let doc = read("docs/agent.md");
    let rows = tables(&doc, &["flag", "env", "file key", "default", "meaning"]);
    let doc_default = |key: &str| -> String {
        let row = rows
            .iter()
            .find(|r| r[2].trim_matches('`').starts_with(key) && r[2].contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("no settings row for {key}"));
        default_cell(&row[3])
    };
    // An agent with nothing but a name and (free, loopback) addresses.
    let (gossip, http) = (common::free_port(), common::free_port());
    let dir = common::temp_dir("docs-defaults");
    let mut child = Command::new(common::BIN)
        .args(["agent", "--name", "defaults"])
        .args(["--bind", &format!("127.0.0.1:{gossip}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .env_clear()
        .env("RUMOR_LOG", "warn")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rumor agent");
    let url = format!("http://127.0.0.1:{http}/v1/info");
    let end = Instant::now() + common::DEADLINE;
    let info: Value = loop {
        if let Ok(r) = ureq::get(&url).timeout(Duration::from_secs(5)).call() {
            break r.into_json().expect("json");
        }
        assert!(Instant::now() < end, "the agent never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let cfg = &info["config"];
    let ms = |v: &Value| format!("{}ms", v.as_u64().unwrap_or(u64::MAX));
    let checks = [
        (
            "profile",
            info["profile"].as_str().unwrap_or("?").to_string(),
        ),
        (
            "event_handler_backlog",
            cfg["event_handler_backlog"].to_string(),
        ),
        (
            "event_handler_timeout",
            ms(&cfg["event_handler_timeout_ms"]),
        ),
        ("leave_timeout", ms(&cfg["leave_timeout_ms"])),
        ("timeseries_interval", ms(&cfg["timeseries_interval_ms"])),
        (
            "bind",
            source_const("crates/rumor-cli/src/config.rs", "DEFAULT_BIND: &str ="),
        ),
        (
            "http",
            source_const("crates/rumor-cli/src/config.rs", "DEFAULT_HTTP: &str ="),
        ),
    ];
    let wrong: Vec<String> = checks
        .iter()
        .filter_map(|(key, want)| {
            let got = doc_default(key);
            (got != *want).then(|| format!("{key}: docs/agent.md says {got}, the agent has {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
