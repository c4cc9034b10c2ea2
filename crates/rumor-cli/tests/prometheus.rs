//! The agents' metrics through a real Prometheus, and the shipped
//! monitoring files (deploy/prometheus/, deploy/grafana/) against the code.
//!
//! `scraped_by_a_real_prometheus`: three agents scraped every second by a
//! Prometheus server (a child process on loopback, with
//! deploy/prometheus/alerts.yml loaded); one agent is SIGKILLed, and
//! Prometheus' own HTTP API must then show `rumor_members{status="dead"}`
//! = 1 on both survivors, `up` = 0 for the killed one, histogram counts
//! above 0, every alert rule evaluating without error (the failure alerts
//! active) and every query of the Grafana dashboard accepted. `promtool`
//! lints an agent's `/metrics` and checks the rules and configurations.
//! Skipped, loudly, when `prometheus` or `promtool` is not on PATH;
//! `scripts/install-prometheus.sh` installs them (Debian's package).
//!
//! `shipped_files_name_only_real_series` runs always: every metric name in
//! alerts.yml and in the dashboard's queries is one an agent renders.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn alerts_file() -> PathBuf {
    repo().join("deploy/prometheus/alerts.yml")
}

fn grafana_file() -> PathBuf {
    repo().join("deploy/grafana/rumor.json")
}

/// An executable of that name on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A Prometheus server, killed when dropped (a failed assertion included).
struct Prometheus {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Prometheus {
    fn start(exe: &Path, config: &Path, dir: &Path) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let err = std::fs::File::create(&log).expect("prometheus log");
        let child = Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path with query parameters; the JSON answer, also on an
    /// error status (Prometheus explains errors in the body); `None` when
    /// it does not answer.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        let mut r = agent.get(&format!("http://{}{path}", self.addr));
        for (k, v) in params {
            r = r.query(k, v);
        }
        match r.call() {
            Ok(resp) => resp.into_json().ok(),
            Err(ureq::Error::Status(_, resp)) => resp.into_json().ok(),
            Err(_) => None,
        }
    }

    /// An instant query's vector: (labels, value) per series; `None` while
    /// Prometheus does not answer or refuses the query.
    fn query(&self, expr: &str) -> Option<Vec<(Value, f64)>> {
        let v = self.api("/api/v1/query", &[("query", expr)])?;
        if v["status"] != "success" {
            return None;
        }
        let out = v["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| {
                let x = s["value"][1].as_str().and_then(|x| x.parse::<f64>().ok());
                (s["metric"].clone(), x.unwrap_or(f64::NAN))
            })
            .collect();
        Some(out)
    }

    /// The value of `expr`'s series whose label `label` is `value`.
    fn value_where(&self, expr: &str, label: &str, value: &str) -> Option<f64> {
        self.query(expr)?
            .into_iter()
            .find(|(m, _)| m[label] == value)
            .map(|(_, x)| x)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `promtool` with `args`, `stdin` fed to it; (success, stdout + stderr).
fn promtool(exe: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    if let Some(text) = stdin {
        let mut w = child.stdin.take().expect("promtool stdin");
        w.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.success(), text)
}

/// An agent's `/metrics` text.
fn metrics_text(a: &Agent) -> String {
    ureq::get(&a.url("/metrics"))
        .call()
        .expect("GET /metrics")
        .into_string()
        .expect("metrics text")
}

/// Metric names in a `/metrics` text: every sample's name (histograms'
/// `_bucket`, `_sum` and `_count` included) and every family's.
fn rendered_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(n) = rest.split(' ').next() {
                names.insert(n.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions, keywords, label names (in `{...}`, `by (...)` and the like),
/// strings or durations.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let strings = regex::Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    let matchers = regex::Regex::new(r"\{[^}]*\}").unwrap();
    let ranges = regex::Regex::new(r"\[[^\]]*\]").unwrap();
    let grouping =
        regex::Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
            .unwrap();
    let ident = regex::Regex::new(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?").unwrap();
    let e = strings.replace_all(expr, "");
    let e = matchers.replace_all(&e, " ");
    let e = ranges.replace_all(&e, " ");
    let e = grouping.replace_all(&e, " ");
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "Inf",
        "NaN",
    ];
    ident
        .captures_iter(&e)
        .filter(|c| c.get(2).is_none())
        .map(|c| c[1].to_string())
        .filter(|n| !KEYWORDS.contains(&n.as_str()))
        .collect()
}

/// The `expr:` values of a rules file (one line, or a `>-` block).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('>') || rest.starts_with('|') {
            let indent = line.len() - t.len();
            let mut block = String::new();
            while let Some(next) = lines.peek() {
                let nt = next.trim_start();
                if !nt.is_empty() && next.len() - nt.len() <= indent {
                    break;
                }
                block.push_str(nt);
                block.push(' ');
                lines.next();
            }
            out.push(block.trim().to_string());
        } else {
            out.push(rest.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
    }
    out
}

/// Every `expr` string in the dashboard, and the template variables'
/// queries.
fn grafana_exprs(dash: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// A dashboard query with Grafana's variables replaced so that Prometheus
/// can run it.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".*")
        .replace("$node", ".*")
}

/// `rumor_...` and `process_...` names anywhere in a text (the alerts'
/// descriptions and the dashboard's texts name series too).
fn prefixed_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b((?:rumor|process)_[a-z0-9_]+)\b").unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

/// Series that appear only once something happened: the joiner's
/// push-pull histograms after its join, the peer clock offsets after a
/// key-space sync session (every kv_sync_interval, 2 s), the probe round
/// trips after a probe answered.
const LATE_SERIES: &[&str] = &[
    "rumor_stream_exchange_duration_seconds_count",
    "rumor_stream_exchange_bytes_count",
    "rumor_peer_clock_offset_seconds",
    "rumor_probe_rtt_seconds_count",
];

#[test]
fn shipped_files_name_only_real_series() {
    // Two agents, the second joined to the first: its /metrics once the
    // series that need a join and a sync are there.
    let a = agent("names-a").spawn();
    let b = agent("names-b").join(&[&a]).spawn();
    let mut text = String::new();
    wait_until(
        "the joiner's histograms and clock offsets",
        DEADLINE,
        || {
            text = metrics_text(&b);
            LATE_SERIES.iter().all(|n| text.contains(n))
        },
    );
    let names = rendered_names(&text);
    let alerts = std::fs::read_to_string(alerts_file()).expect("read alerts.yml");
    let dash_text = std::fs::read_to_string(grafana_file()).expect("read rumor.json");
    let dash: Value = serde_json::from_str(&dash_text).expect("rumor.json is JSON");
    assert_eq!(dash["schemaVersion"], 39);
    assert!(
        dash["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "the dashboard has a Prometheus data source variable"
    );

    let exprs = rule_exprs(&alerts);
    assert!(exprs.len() >= 8, "alert rules found: {exprs:?}");
    let panel_exprs = grafana_exprs(&dash);
    assert!(panel_exprs.len() >= 8, "dashboard queries: {panel_exprs:?}");

    let mut used: Vec<(String, String)> = Vec::new();
    for e in &exprs {
        used.extend(
            promql_metric_names(e)
                .into_iter()
                .map(|n| (n, format!("alerts.yml: {e}"))),
        );
    }
    for e in &panel_exprs {
        used.extend(
            promql_metric_names(&grafana_to_promql(e))
                .into_iter()
                .map(|n| (n, format!("rumor.json: {e}"))),
        );
    }
    used.extend(
        prefixed_names(&alerts)
            .into_iter()
            .map(|n| (n, "alerts.yml".into())),
    );
    used.extend(
        prefixed_names(&dash_text)
            .into_iter()
            .map(|n| (n, "rumor.json".into())),
    );
    // The parser must have seen the series the files are about.
    for n in ["rumor_members", "rumor_awareness", "up"] {
        assert!(
            used.iter().any(|(u, _)| u == n),
            "{n} not found in the files"
        );
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| n != "up" && !names.contains(n))
        .map(|(n, w)| format!("{n} (in {w})"))
        .collect();
    assert!(
        missing.is_empty(),
        "series named in deploy/ that no agent renders:\n{}",
        missing.join("\n")
    );
}

#[test]
fn promql_names_parser() {
    assert_eq!(
        promql_metric_names(
            r#"histogram_quantile(0.99, sum by (le, type) (rate(x_bucket{type="push_pull"}[10m]))) > 5 and on(node) up == 0"#
        ),
        ["up", "x_bucket"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(
        rule_exprs("  - alert: A\n    expr: up == 0\n  - alert: B\n    expr: >-\n      a\n        < b\n    for: 1m\n"),
        vec!["up == 0".to_string(), "a < b".to_string()]
    );
}

#[test]
fn scraped_by_a_real_prometheus() {
    let (Some(prom), Some(tool)) = (on_path("prometheus"), on_path("promtool")) else {
        eprintln!();
        eprintln!("=============================================================");
        eprintln!("SKIPPED Prometheus test: prometheus or promtool is not on PATH.");
        eprintln!("Run scripts/install-prometheus.sh (as root) to enable it.");
        eprintln!("=============================================================");
        return;
    };

    // The shipped files, as promtool sees them.
    let alerts = alerts_file();
    let (ok, out) = promtool(&tool, &["check", "rules", alerts.to_str().unwrap()], None);
    assert!(
        ok && out.contains("SUCCESS"),
        "promtool check rules:\n{out}"
    );
    let shipped = repo().join("deploy/prometheus/prometheus.yml");
    let (ok, out) = promtool(&tool, &["check", "config", shipped.to_str().unwrap()], None);
    assert!(ok, "promtool check config (shipped):\n{out}");
    let rule_count = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();

    let a = agent("prom-a").spawn();
    let b = agent("prom-b").join(&[&a]).spawn();
    let mut c = agent("prom-c").join(&[&a]).spawn();
    wait_until("3 alive everywhere", DEADLINE, || {
        [&a, &b, &c].iter().all(|x| x.alive_count() == 3)
    });

    let dir = temp_dir("prometheus");
    let config = dir.join("prometheus.yml");
    let targets: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|x| format!("\"{}\"", x.http))
        .collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - \"{}\"\n\
             scrape_configs:\n  - job_name: rumor\n    static_configs:\n      - targets: [{}]\n",
            alerts.display(),
            targets.join(", ")
        ),
    )
    .unwrap();
    let (ok, out) = promtool(&tool, &["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "promtool check config (generated):\n{out}");

    let mut p = Prometheus::start(&prom, &config, &dir);
    let started = Instant::now();
    wait_until("Prometheus scrapes the 3 agents", DEADLINE, || {
        if let Ok(Some(s)) = p.child.try_wait() {
            panic!("prometheus exited with {s}:\n{}", p.log());
        }
        p.query(r#"up{job="rumor"} == 1"#)
            .is_some_and(|v| v.len() == 3)
            && p.query(r#"rumor_members{status="alive"} == 3"#)
                .is_some_and(|v| v.len() == 3)
    });
    eprintln!("prometheus: 3 targets up after {:?}", started.elapsed());

    // Every rule evaluates without error.
    wait_until("every alert rule evaluated", DEADLINE, || {
        let Some(v) = p.api("/api/v1/rules", &[]) else {
            return false;
        };
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
            panic!("alert rule fails to evaluate: {bad}");
        }
        rules.len() == rule_count && rules.iter().all(|r| r["health"] == "ok")
    });

    // Every dashboard query is valid PromQL for this Prometheus.
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(grafana_file()).unwrap()).unwrap();
    for e in grafana_exprs(&dash) {
        let q = grafana_to_promql(&e);
        let v = p
            .api("/api/v1/query", &[("query", &q)])
            .expect("query answered");
        assert_eq!(v["status"], "success", "dashboard query {q}: {v}");
    }

    // The crash.
    c.signal(Signal::SIGKILL);
    c.wait_exit(Duration::from_secs(10));
    let killed = c.http.to_string();
    let crashed = Instant::now();
    wait_until(
        "Prometheus shows the crash: dead = 1 on both survivors, up = 0 for the killed",
        DEADLINE,
        || {
            let dead = r#"rumor_members{job="rumor",status="dead"}"#;
            p.value_where(dead, "node", "prom-a") == Some(1.0)
                && p.value_where(dead, "node", "prom-b") == Some(1.0)
                && p.value_where(r#"up{job="rumor"}"#, "instance", &killed) == Some(0.0)
        },
    );
    eprintln!("prometheus: crash visible after {:?}", crashed.elapsed());
    let up = p.query(r#"up{job="rumor"}"#).unwrap();
    assert_eq!(up.len(), 3, "{up:?}");
    for (m, x) in &up {
        let want = if m["instance"] == killed.as_str() {
            0.0
        } else {
            1.0
        };
        assert_eq!(*x, want, "up of {m}");
    }
    for (n, want) in [("prom-a", 2.0), ("prom-b", 2.0)] {
        assert_eq!(
            p.value_where(r#"rumor_members{status="alive"}"#, "node", n),
            Some(want),
            "alive members in {n}'s view"
        );
    }
    assert_eq!(
        p.value_where("rumor_build_info", "node", "prom-a"),
        Some(1.0)
    );

    // Histograms: the joins' exchanges were counted, buckets consistent.
    let count = p
        .query("sum(rumor_stream_exchange_duration_seconds_count)")
        .and_then(|v| v.first().map(|s| s.1))
        .unwrap_or(0.0);
    assert!(count > 0.0, "stream exchange count {count}");
    let inf = p
        .query(r#"sum(rumor_stream_exchange_duration_seconds_bucket{le="+Inf"})"#)
        .and_then(|v| v.first().map(|s| s.1))
        .unwrap_or(-1.0);
    assert_eq!(inf, count, "+Inf bucket = count");
    // The probes' round trips, and the suspicion that ended in the death.
    for h in [
        "rumor_probe_rtt_seconds_count",
        "rumor_suspicion_to_failure_seconds_count",
    ] {
        let sum = || {
            p.query(&format!("sum({h})"))
                .and_then(|v| v.first().map(|s| s.1))
                .unwrap_or(0.0)
        };
        wait_until(&format!("sum({h}) > 0 in Prometheus"), DEADLINE, || {
            sum() > 0.0
        });
        eprintln!("prometheus: sum({h}) = {}", sum());
    }
    let bytes = p
        .query("sum(rumor_stream_exchange_bytes_count)")
        .and_then(|v| v.first().map(|s| s.1))
        .unwrap_or(0.0);
    assert!(bytes > 0.0, "stream exchange bytes count {bytes}");
    assert!(
        p.query("process_resident_memory_bytes > 0")
            .is_some_and(|v| v.len() == 2),
        "process RSS of the 2 survivors"
    );

    // The alerts for the crash are active (pending: their `for` is longer
    // than this test).
    wait_until(
        "RumorMembersFailed and RumorScrapeDown active",
        DEADLINE,
        || {
            let Some(v) = p.api("/api/v1/alerts", &[]) else {
                return false;
            };
            let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
            let active = |name: &str, label: &str, value: &str| {
                alerts.iter().any(|al| {
                    al["labels"]["alertname"] == name
                        && al["labels"][label] == value
                        && (al["state"] == "pending" || al["state"] == "firing")
                })
            };
            active("RumorMembersFailed", "node", "prom-a")
                && active("RumorMembersFailed", "node", "prom-b")
                && active("RumorScrapeDown", "instance", &killed)
        },
    );
    // No false alarm of the kind a single crash must not raise.
    let v = p.api("/api/v1/alerts", &[]).unwrap();
    for al in v["data"]["alerts"].as_array().unwrap() {
        let name = al["labels"]["alertname"].as_str().unwrap_or("");
        eprintln!("prometheus: alert {name} {} {}", al["state"], al["labels"]);
        assert!(
            ![
                "RumorNodeIsolated",
                "RumorAuthFailures",
                "RumorLabelMismatch",
                "RumorSlowPushPull",
                "RumorClockSkew",
            ]
            .contains(&name),
            "unexpected alert: {al}"
        );
    }

    // promtool lints a survivor's /metrics (histograms included): nothing
    // to say.
    let text = metrics_text(&b);
    assert!(text.contains("rumor_stream_exchange_duration_seconds_bucket"));
    let (ok, out) = promtool(&tool, &["check", "metrics"], Some(&text));
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}"
    );
    drop(p);
    // The TSDB: a few MB per run.
    let _ = std::fs::remove_dir_all(&dir);
}
