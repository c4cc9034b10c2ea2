//! Prometheus metrics: the agent's `metrics` recorder and its rendering at
//! `/metrics`.
//!
//! The `rumor` library exports its counters and gauges through the
//! `metrics` facade about once a second, labelled with the node's name
//! (`rumor_members{node,status}`, `rumor_awareness{node}`,
//! `rumor_probes_total{node}`, ...), and records the time and bytes of its
//! TCP requests in histograms; the agent adds `rumor_build_info`, its own
//! families ([`AGENT_FAMILIES`]) and the process's ([`crate::process_metrics`]).
//! Every family's help comes from those tables ([`describe`]).
//!
//! The recorder keeps each series in an atomic (metrics-util's registry
//! with this module's storage) and renders the text format itself. It
//! replaces metrics-exporter-prometheus, whose recorder calibrates a TSC
//! clock when built: up to 200 ms of busy CPU, which on a loaded machine
//! delayed an agent's start by that much. Histograms are classic
//! cumulative buckets, laid out by the name's unit suffix ([`bounds_for`]);
//! a sample costs a few atomic adds and nothing is kept per sample.
//!
//! Per-peer gauges (`rumor_peer_clock_offset_seconds{node,peer}`) are
//! bounded by the membership: a series not set again since the previous
//! render (the agent exports fresh stats before each) belongs to a peer
//! that is no longer a member, and is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use metrics::atomics::AtomicU64;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Label, Metadata, SharedString, Unit,
};
use metrics_util::registry::{Registry, Storage};
use rumor::metrics::{Family, Kind};

/// The agent's build: always 1, labelled with the node and the version.
pub const BUILD_INFO: Family = Family {
    name: "rumor_build_info",
    kind: Kind::Gauge,
    labels: &["node", "version"],
    help: "Always 1; the labels name the node and the version of the rumor agent serving it.",
};

/// Events an event handler never ran for.
pub const EVENT_HANDLER_DROPPED: Family = Family {
    name: "rumor_event_handler_dropped_total",
    kind: Kind::Counter,
    labels: &["node", "reason"],
    help: "Events and queries an event handler never ran for, by reason: backlog_full, lagged (the node's event channel overran), busy (too many query handlers running).",
};

/// Event handler runs killed at the timeout.
pub const EVENT_HANDLER_SLOW: Family = Family {
    name: "rumor_event_handler_slow_total",
    kind: Kind::Counter,
    labels: &["node"],
    help: "Event handler runs killed for running longer than --event-handler-timeout.",
};

/// How long event handler runs took.
pub const EVENT_HANDLER_DURATION: Family = Family {
    name: "rumor_event_handler_duration_seconds",
    kind: Kind::Histogram,
    labels: &["node"],
    help: "Run time of event and query handler commands, from start to exit (or to the kill at the timeout).",
};

/// Refused API requests.
pub const HTTP_REFUSED: Family = Family {
    name: "rumor_http_refused_total",
    kind: Kind::Counter,
    labels: &["reason"],
    help: "HTTP API requests refused, by reason: token_missing, token_wrong, host (a foreign Host on a loopback bind), body_too_large.",
};

/// The families the agent adds to the library's.
pub const AGENT_FAMILIES: &[Family] = &[
    BUILD_INFO,
    EVENT_HANDLER_DROPPED,
    EVENT_HANDLER_SLOW,
    EVENT_HANDLER_DURATION,
    HTTP_REFUSED,
];

/// Bucket bounds of `_seconds` histograms: 0.5 ms to 60 s, about three
/// per decade.
const SECONDS_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Bucket bounds of `_bytes` histograms: 64 B to 16 MiB, by fours.
const BYTES_BOUNDS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Bucket bounds of histograms of plain counts (queue depths, ...).
const COUNT_BOUNDS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

/// The bucket layout of histogram `name`, chosen by its unit suffix.
fn bounds_for(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        SECONDS_BOUNDS
    } else if name.ends_with("_bytes") {
        BYTES_BOUNDS
    } else {
        COUNT_BOUNDS
    }
}

/// A classic histogram: a count per bucket (the last one past every
/// bound), the sum and the count of the samples.
struct Buckets {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// The sum's f64 bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Self {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    /// The series' lines: cumulative `_bucket{le}`, `_sum`, `_count`.
    fn render(&self, name: &str, key: &Key) -> String {
        let mut out = String::new();
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n.load(Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".into(), |b| render_float(*b));
            let labels = render_labels(key, Some(("le", &le)));
            let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
        }
        let labels = render_labels(key, None);
        let sum = render_float(f64::from_bits(self.sum.load(Relaxed)));
        let _ = writeln!(out, "{name}_sum{labels} {sum}");
        // The count as the buckets add up, so that it matches `+Inf` even
        // when a sample lands between the two loads.
        let _ = writeln!(out, "{name}_count{labels} {cumulative}");
        out
    }
}

impl Buckets {
    /// The `q` quantile (0..=1) as Prometheus' `histogram_quantile`
    /// estimates it: linear within the bucket holding the rank, the
    /// highest bound if it falls past every bound; `None` without samples.
    fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, n) in counts.iter().enumerate() {
            let upto = below + n;
            if *n > 0 && upto as f64 >= rank {
                let Some(&upper) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = upto;
        }
        self.bounds.last().copied()
    }
}

impl HistogramFn for Buckets {
    fn record(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < value);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
        self.count.fetch_add(1, Relaxed);
    }
}

/// Atomic counters and gauges, bucketed histograms.
struct AgentStorage;

impl Storage<Key> for AgentStorage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<Buckets>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(AtomicU64::new(0))
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0))
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        Arc::new(Buckets::new(bounds_for(key.name())))
    }
}

/// The recorder's shared state: every series, and the help text by name.
struct Inner {
    registry: Registry<Key, AgentStorage>,
    help: RwLock<HashMap<String, String>>,
    /// Per-peer gauge series set since the last render.
    peers_set: Mutex<HashSet<Key>>,
}

/// Gauge families labelled by peer, pruned to the series set since the
/// previous render.
const PER_PEER: [&str; 1] = [rumor::metrics::PEER_CLOCK_OFFSET];

/// One family as rendered: its type and its series (sort key, lines).
type Rendered = (&'static str, Vec<(String, String)>);

/// The recorder: the `metrics` facade writes into it, `/metrics` renders it.
#[derive(Clone)]
pub struct Handle(Arc<Inner>);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("metrics::Handle")
    }
}

static HANDLE: OnceLock<Option<Handle>> = OnceLock::new();

/// Install the process-wide recorder (once); `None` if another recorder was installed first.
pub fn install() -> Option<Handle> {
    HANDLE
        .get_or_init(|| {
            let handle = Handle::new();
            match metrics::set_global_recorder(handle.clone()) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!("metrics disabled: {e}");
                    None
                }
            }
        })
        .clone()
}

/// Register the help text of every family (the library's, the agent's,
/// the process's) with the installed recorder.
fn describe() {
    rumor::metrics::describe();
    for f in AGENT_FAMILIES
        .iter()
        .chain(crate::process_metrics::FAMILIES)
    {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
}

/// Render every metric as Prometheus text, with `rumor_build_info` for
/// node `node` and the process's metrics.
pub fn render(handle: &Handle, node: &str) -> String {
    let key = Key::from_parts(
        BUILD_INFO.name,
        vec![
            Label::new("node", node.to_string()),
            Label::new("version", env!("CARGO_PKG_VERSION")),
        ],
    );
    handle
        .0
        .registry
        .get_or_create_gauge(&key, |g| g.store(1f64.to_bits(), Relaxed));
    handle.render_with(&crate::process_metrics::read())
}

impl Handle {
    fn new() -> Handle {
        Handle(Arc::new(Inner {
            registry: Registry::new(AgentStorage),
            help: RwLock::new(HashMap::new()),
            peers_set: Mutex::new(HashSet::new()),
        }))
    }

    fn set_help(&self, name: KeyName, text: SharedString) {
        if let Ok(mut help) = self.0.help.write() {
            help.insert(name.as_str().to_string(), text.to_string());
        }
    }

    /// The `q` quantile of histogram `name` of node `node` (as
    /// `histogram_quantile` would estimate it from its buckets), and how
    /// many samples it holds; `None` if it has none.
    pub fn quantile(&self, name: &str, node: &str, q: f64) -> Option<(f64, u64)> {
        let mut found = None;
        self.0.registry.visit_histograms(|key, h| {
            let ours =
                key.name() == name && key.labels().any(|l| l.key() == "node" && l.value() == node);
            if ours {
                let count = h.counts.iter().map(|c| c.load(Relaxed)).sum();
                found = h.quantile(q).map(|v| (v, count));
            }
        });
        found
    }

    /// Every series in the Prometheus text exposition format (0.0.4),
    /// grouped by metric name, sorted.
    #[cfg(test)]
    pub fn render(&self) -> String {
        self.render_with(&[])
    }

    /// Every series and the unlabelled `extra` ones, grouped by metric
    /// name, sorted.
    fn render_with(&self, extra: &[(Family, f64)]) -> String {
        self.prune_peers();
        let mut families: BTreeMap<String, Rendered> = BTreeMap::new();
        let mut add = |name: String, kind: &'static str, sort: String, lines: String| {
            families
                .entry(name)
                .or_insert((kind, Vec::new()))
                .1
                .push((sort, lines));
        };
        let line = |name: &str, labels: &str, value: String| format!("{name}{labels} {value}\n");
        self.0.registry.visit_counters(|key, c| {
            let (name, labels) = (sanitize_name(key.name()), render_labels(key, None));
            let l = line(&name, &labels, c.load(Relaxed).to_string());
            add(name, "counter", labels, l);
        });
        self.0.registry.visit_gauges(|key, g| {
            let (name, labels) = (sanitize_name(key.name()), render_labels(key, None));
            let l = line(
                &name,
                &labels,
                render_float(f64::from_bits(g.load(Relaxed))),
            );
            add(name, "gauge", labels, l);
        });
        self.0.registry.visit_histograms(|key, h| {
            let name = sanitize_name(key.name());
            let lines = h.render(&name, key);
            add(name, "histogram", render_labels(key, None), lines);
        });
        for (f, v) in extra {
            add(
                f.name.into(),
                f.kind.as_str(),
                String::new(),
                line(f.name, "", render_float(*v)),
            );
        }
        let help = self.0.help.read().map(|h| h.clone()).unwrap_or_default();
        let mut out = String::new();
        for (name, (kind, mut series)) in families {
            series.sort();
            if let Some(text) = help.get(&name) {
                let text = text.replace('\\', "\\\\").replace('\n', "\\n");
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (_, lines) in series {
                out.push_str(&lines);
            }
        }
        out
    }
}

impl Handle {
    /// Drop per-peer series not set since the previous render.
    fn prune_peers(&self) {
        let mut set = self.0.peers_set.lock().unwrap_or_else(|p| p.into_inner());
        self.0
            .registry
            .retain_gauges(|key, _| !PER_PEER.contains(&key.name()) || set.contains(key));
        set.clear();
    }
}

/// The handle is also the recorder installed in the `metrics` facade.
impl metrics::Recorder for Handle {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, text: SharedString) {
        self.set_help(name, text);
    }

    fn describe_gauge(&self, name: KeyName, _: Option<Unit>, text: SharedString) {
        self.set_help(name, text);
    }

    fn describe_histogram(&self, name: KeyName, _: Option<Unit>, text: SharedString) {
        self.set_help(name, text);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self.0.registry.get_or_create_counter(key, Arc::clone);
        Counter::from_arc(c)
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        if PER_PEER.contains(&key.name()) {
            let mut set = self.0.peers_set.lock().unwrap_or_else(|p| p.into_inner());
            set.insert(key.clone());
        }
        let g = self.0.registry.get_or_create_gauge(key, Arc::clone);
        Gauge::from_arc(g)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let h = self.0.registry.get_or_create_histogram(key, Arc::clone);
        Histogram::from_arc(h)
    }
}

/// A metric or label name with every character Prometheus does not allow replaced by `_`.
fn sanitize_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok =
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `{k="v",...}` in the key's label order then `extra`, values escaped;
/// empty without labels.
fn render_labels(key: &Key, extra: Option<(&str, &str)>) -> String {
    let mut out = String::new();
    let labels = key.labels().map(|l| (l.key(), l.value())).chain(extra);
    for (i, (k, v)) in labels.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let value = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{}=\"{value}\"", sanitize_name(k));
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

/// A sample value as Prometheus writes it (`+Inf`, `-Inf`, `NaN`).
fn render_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_grouped_typed_and_escaped() {
        let handle = Handle::new();
        metrics::with_local_recorder(&handle, || {
            metrics::describe_counter!("x_total", "Things\ncounted.");
            metrics::counter!("x_total", "node" => "b").absolute(7);
            metrics::counter!("x_total", "node" => "a\"q\\").increment(2);
            metrics::counter!("x_total", "node" => "a\"q\\").increment(3);
            metrics::gauge!("g-1").set(-1.5);
            metrics::gauge!("inf").set(f64::INFINITY);
        });
        assert_eq!(
            handle.render(),
            "# TYPE g_1 gauge\ng_1 -1.5\n\
             # TYPE inf gauge\ninf +Inf\n\
             # HELP x_total Things\\ncounted.\n# TYPE x_total counter\n\
             x_total{node=\"a\\\"q\\\\\"} 5\nx_total{node=\"b\"} 7\n"
        );
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = Buckets::new(SECONDS_BOUNDS);
        assert_eq!(b.quantile(0.99), None);
        // 0.05 < x <= 0.1 for 100 samples: the p99 is 99 % of the way up.
        for _ in 0..100 {
            b.record(0.07);
        }
        let p99 = b.quantile(0.99).unwrap_or_default();
        assert!((p99 - 0.0995).abs() < 1e-9, "{p99}");
        // One sample past every bound: the p100 is the highest bound.
        b.record(1000.0);
        assert_eq!(b.quantile(1.0), Some(60.0));
        assert!(b.quantile(0.5).is_some_and(|v| v > 0.05 && v <= 0.1));
    }

    #[test]
    fn histograms_render_cumulative_buckets_by_unit() {
        let handle = Handle::new();
        metrics::with_local_recorder(&handle, || {
            metrics::describe_histogram!("t_seconds", "Time.");
            let h = metrics::histogram!("t_seconds", "node" => "a");
            for v in [0.0002, 0.003, 0.003, 100.0, f64::NAN] {
                h.record(v);
            }
            metrics::histogram!("s_bytes").record(300.0);
            // A bound is inclusive: a sample equal to it is counted in it.
            metrics::histogram!("u_bytes").record(1024.0);
        });
        let text = handle.render();
        let has = |line: &str| text.lines().any(|l| l == line);
        for line in [
            "# TYPE s_bytes histogram",
            "s_bytes_bucket{le=\"256\"} 0",
            "s_bytes_bucket{le=\"1024\"} 1",
            "s_bytes_bucket{le=\"16777216\"} 1",
            "s_bytes_sum 300",
            "s_bytes_count 1",
            "u_bytes_bucket{le=\"256\"} 0",
            "u_bytes_bucket{le=\"1024\"} 1",
            "# HELP t_seconds Time.",
            "# TYPE t_seconds histogram",
            "t_seconds_bucket{node=\"a\",le=\"0.0005\"} 1",
            "t_seconds_bucket{node=\"a\",le=\"0.0025\"} 1",
            "t_seconds_bucket{node=\"a\",le=\"0.005\"} 3",
            "t_seconds_bucket{node=\"a\",le=\"60\"} 3",
            "t_seconds_bucket{node=\"a\",le=\"+Inf\"} 4",
            "t_seconds_count{node=\"a\"} 4",
        ] {
            assert!(has(line), "{line} missing from:\n{text}");
        }
        let sum = text
            .lines()
            .find_map(|l| l.strip_prefix("t_seconds_sum{node=\"a\"} "))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(sum.is_some_and(|s| (s - 100.0062).abs() < 1e-9), "{text}");
    }

    #[test]
    fn a_peer_gauge_not_set_again_is_dropped_at_the_next_render() {
        let handle = Handle::new();
        let name = rumor::metrics::PEER_CLOCK_OFFSET;
        let set = |peers: &[&str]| {
            metrics::with_local_recorder(&handle, || {
                for p in peers {
                    metrics::gauge!(name, "node" => "a", "peer" => p.to_string()).set(1.5);
                }
                metrics::gauge!("rumor_awareness", "node" => "a").set(0.0);
            })
        };
        set(&["b", "c"]);
        let text = handle.render();
        assert!(
            text.contains("peer=\"b\"") && text.contains("peer=\"c\""),
            "{text}"
        );
        // c is reaped: the next export sets b only.
        set(&["b"]);
        let text = handle.render();
        assert!(
            text.contains("peer=\"b\"") && !text.contains("peer=\"c\""),
            "{text}"
        );
        assert!(
            text.contains("rumor_awareness"),
            "other gauges stay: {text}"
        );
    }

    /// Labels a family may carry: the HTTP API's vocabulary.
    const LABELS: &[&str] = &[
        "node", "status", "type", "limit", "reason", "peer", "version", "le", "estimate",
    ];

    /// What breaks the conventions in rendered Prometheus text: a family
    /// without HELP or TYPE, a counter not named `..._total` (or another
    /// kind named so), bytes or seconds not named by their unit suffix, a
    /// label outside [`LABELS`], a histogram without its `+Inf` bucket,
    /// sum and count.
    fn convention_problems(text: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut help: HashMap<&str, &str> = HashMap::new();
        let mut kind: HashMap<&str, &str> = HashMap::new();
        let mut samples: Vec<(&str, &str)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                help.insert(name, text);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap_or((rest, ""));
                kind.insert(name, k);
            } else if !line.is_empty() {
                let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
                let (name, labels) = series.split_once('{').unwrap_or((series, ""));
                samples.push((name, labels.trim_end_matches('}')));
            }
        }
        let mut families: HashSet<&str> = HashSet::new();
        for (name, labels) in &samples {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    let base = name.strip_suffix(s)?;
                    (kind.get(base) == Some(&"histogram")).then_some(base)
                })
                .unwrap_or(name);
            families.insert(family);
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let key = pair.split('=').next().unwrap_or(pair);
                if !LABELS.contains(&key) || (key == "le" && !name.ends_with("_bucket")) {
                    problems.push(format!("{name}: label {key} is not in the vocabulary"));
                }
            }
        }
        for family in families {
            match help.get(family) {
                Some(text) if !text.trim().is_empty() => {}
                _ => problems.push(format!("{family}: no # HELP")),
            }
            let Some(&k) = kind.get(family) else {
                problems.push(format!("{family}: no # TYPE"));
                continue;
            };
            if (k == "counter") != family.ends_with("_total") {
                problems.push(format!(
                    "{family}: a {k}, and `_total` is for counters only"
                ));
            }
            let base = family.strip_suffix("_total").unwrap_or(family);
            let text = help.get(family).copied().unwrap_or("").to_lowercase();
            let bytes = family.contains("byte") || text.starts_with("bytes");
            if bytes && !base.ends_with("_bytes") {
                problems.push(format!("{family}: counts bytes, not named `_bytes`"));
            }
            let seconds = family.contains("second") || text.contains("in seconds");
            if seconds && !base.ends_with("_seconds") {
                problems.push(format!("{family}: counts seconds, not named `_seconds`"));
            }
            if k == "histogram" {
                for part in ["_bucket", "_sum", "_count"] {
                    let want = format!("{family}{part}");
                    if !samples.iter().any(|(n, _)| *n == want) {
                        problems.push(format!("{family}: histogram without {want}"));
                    }
                }
                let inf = format!("{family}_bucket");
                if !samples
                    .iter()
                    .any(|(n, l)| *n == inf && l.contains("le=\"+Inf\""))
                {
                    problems.push(format!("{family}: histogram without its +Inf bucket"));
                }
            }
        }
        problems.sort();
        problems
    }

    /// One sample of family `f`, each of its labels set to `x`.
    fn sample(f: &Family) {
        let labels: Vec<Label> = f.labels.iter().map(|l| Label::new(*l, "x")).collect();
        let key = Key::from_parts(f.name, labels);
        let meta = Metadata::new(module_path!(), metrics::Level::INFO, None);
        metrics::with_recorder(|r| match f.kind {
            Kind::Counter => r.register_counter(&key, &meta).increment(1),
            Kind::Gauge => r.register_gauge(&key, &meta).set(1.0),
            Kind::Histogram => r.register_histogram(&key, &meta).record(0.01),
        });
    }

    #[test]
    fn every_family_has_help_type_a_conventional_name_and_known_labels() {
        let handle = Handle::new();
        let text = metrics::with_local_recorder(&handle, || {
            describe();
            let mut stats = rumor::Stats::default();
            let skew = rumor_core::kv::Skew::measure(0, 5, 10, rumor_core::Instant::ZERO);
            stats.clock_skew.insert("p".into(), skew.expect("a sample"));
            rumor::metrics::export("n", &stats);
            // What the export does not set: histograms, the agent's own.
            let others = rumor::metrics::FAMILIES
                .iter()
                .filter(|f| f.kind == Kind::Histogram)
                .chain(AGENT_FAMILIES);
            for f in others {
                sample(f);
            }
            render(&handle, "n")
        });
        assert_eq!(convention_problems(&text), Vec::<String>::new(), "{text}");
        for f in rumor::metrics::FAMILIES
            .iter()
            .chain(AGENT_FAMILIES)
            .chain(crate::process_metrics::FAMILIES)
        {
            #[cfg(not(target_os = "linux"))]
            if f.name.starts_with("process_") {
                continue;
            }
            assert!(
                text.contains(&format!("# TYPE {} {}\n", f.name, f.kind.as_str())),
                "{} not rendered",
                f.name
            );
        }
    }

    #[test]
    fn a_family_without_help_or_by_other_conventions_is_caught() {
        let handle = Handle::new();
        let text = metrics::with_local_recorder(&handle, || {
            describe();
            metrics::counter!("rumor_undocumented_total", "node" => "n").increment(1);
            metrics::describe_counter!("rumor_bytes_in", "Bytes received.");
            metrics::counter!("rumor_bytes_in", "name" => "n").increment(1);
            metrics::describe_gauge!("rumor_wait", "Time waited, in seconds.");
            metrics::gauge!("rumor_wait_total").set(1.0);
            handle.render()
        });
        assert_eq!(
            convention_problems(&text),
            [
                "rumor_bytes_in: a counter, and `_total` is for counters only",
                "rumor_bytes_in: counts bytes, not named `_bytes`",
                "rumor_bytes_in: label name is not in the vocabulary",
                "rumor_undocumented_total: no # HELP",
                "rumor_wait_total: a gauge, and `_total` is for counters only",
                "rumor_wait_total: no # HELP",
            ]
        );
    }

    /// Every family: the library's, the agent's, the process's.
    fn all_families() -> impl Iterator<Item = &'static Family> {
        rumor::metrics::FAMILIES
            .iter()
            .chain(AGENT_FAMILIES)
            .chain(crate::process_metrics::FAMILIES)
    }

    #[test]
    fn the_docs_list_every_family_as_declared_and_name_no_other() {
        let ops = include_str!("../../../docs/operations.md");
        let api = include_str!("../../../docs/http-api.md");
        let mut listed = Vec::new();
        for f in all_families() {
            let labels = if f.labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", f.labels.join(","))
            };
            let row = format!(
                "| `{}{labels}` | {} | {} |",
                f.name,
                f.kind.as_str(),
                f.help
            );
            assert!(
                ops.contains(&row),
                "docs/operations.md lacks the row:\n{row}"
            );
            listed.push(f.name);
        }
        let rows = ops
            .lines()
            .filter(|l| l.starts_with("| `rumor_") || l.starts_with("| `process_"));
        assert_eq!(rows.count(), listed.len(), "a row for no family");
        // Every series name the docs mention in code spans is a family's
        // (or its histogram's parts).
        for (doc, text) in [("operations.md", ops), ("http-api.md", api)] {
            for span in text.split('`').skip(1).step_by(2) {
                let name: String = span
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let series = name.starts_with("rumor_") || name.starts_with("process_");
                // The dashboard's cookie is the one such name that is no series.
                if !series || name == "rumor_session" {
                    continue;
                }
                if span[name.len()..].starts_with('*') {
                    let some = listed.iter().any(|f| f.starts_with(&name));
                    assert!(some, "{doc} names `{span}`: no such families");
                    continue;
                }
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| listed.contains(b))
                    .unwrap_or(&name);
                assert!(
                    listed.contains(&base),
                    "{doc} names `{span}`: no such family"
                );
            }
        }
    }
}
