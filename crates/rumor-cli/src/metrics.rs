//! Prometheus metrics: the agent's `metrics` recorder and its rendering at
//! `/metrics`.
//!
//! The `rumor` library exports its counters and gauges through the
//! `metrics` facade about once a second, labelled with the node's name
//! (`rumor_members{node,state}`, `rumor_awareness{node}`,
//! `rumor_packets_in_total{node}`, ...); the agent adds `rumor_agent_info`.
//!
//! The recorder keeps each series in an atomic (metrics-util's registry)
//! and renders the text format itself. It replaces
//! metrics-exporter-prometheus, whose recorder calibrates a TSC clock when
//! built: up to 200 ms of busy CPU, which on a loaded machine delayed an
//! agent's start by that much. rumor exports no histograms; they are
//! accepted and dropped.
//!
//! Per-peer gauges (`rumor_peer_clock_offset_seconds{node,peer}`) are
//! bounded by the membership: a series not set again since the previous
//! render (the agent exports fresh stats before each) belongs to a peer
//! that is no longer a member, and is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// The recorder's shared state: every series, and the help text by name.
struct Inner {
    registry: Registry<Key, AtomicStorage>,
    help: RwLock<HashMap<String, String>>,
    /// Per-peer gauge series set since the last render.
    peers_set: Mutex<HashSet<Key>>,
}

/// Gauge families labelled by peer, pruned to the series set since the
/// previous render.
const PER_PEER: [&str; 1] = [rumor::metrics::PEER_CLOCK_OFFSET];

/// One metric name's type and its series (rendered labels, rendered value).
type Family = (&'static str, Vec<(String, String)>);

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

fn describe() {
    metrics::describe_gauge!(
        "rumor_agent_info",
        "Always 1; labels name the agent and its version."
    );
    metrics::describe_gauge!("rumor_members", "Members known to the node, by state.");
    metrics::describe_gauge!(
        "rumor_awareness",
        "Local health awareness score (0 is healthy)."
    );
    metrics::describe_counter!("rumor_packets_in_total", "Datagrams received.");
    metrics::describe_counter!("rumor_packets_out_total", "Datagrams sent.");
    metrics::describe_counter!("rumor_probes_total", "Probes started.");
    metrics::describe_counter!("rumor_suspicions_total", "Members this node suspected.");
    metrics::describe_counter!(
        "rumor_probe_stream_pings_total",
        "Probes whose direct ping timed out that also pinged the member over TCP."
    );
    metrics::describe_counter!(
        "rumor_probe_stream_fallback_acks_total",
        "Probes saved by their TCP ping: UDP failed but the stream worked."
    );
    metrics::describe_counter!(
        "rumor_refutations_total",
        "Suspicions of this node it refuted."
    );
    metrics::describe_counter!("rumor_deaths_total", "Members declared dead, as seen here.");
    metrics::describe_gauge!(
        rumor::metrics::PEER_CLOCK_OFFSET,
        "How far each member's clock is ahead of this node's (seconds; negative: behind), measured on key-space sync sessions."
    );
    metrics::describe_counter!(
        "rumor_kv_refused_future_total",
        "Key-space records refused because their timestamp was further ahead of this node's clock than kv max_drift."
    );
}

/// Render every metric as Prometheus text, with `rumor_agent_info` for agent `name`.
pub fn render(handle: &Handle, name: &str) -> String {
    metrics::gauge!(
        "rumor_agent_info",
        "name" => name.to_string(),
        "version" => env!("CARGO_PKG_VERSION")
    )
    .set(1.0);
    handle.render()
}

impl Handle {
    fn new() -> Handle {
        Handle(Arc::new(Inner {
            registry: Registry::atomic(),
            help: RwLock::new(HashMap::new()),
            peers_set: Mutex::new(HashSet::new()),
        }))
    }

    fn set_help(&self, name: KeyName, text: SharedString) {
        if let Ok(mut help) = self.0.help.write() {
            help.insert(name.as_str().to_string(), text.to_string());
        }
    }

    /// Every series in the Prometheus text exposition format (0.0.4),
    /// grouped by metric name, sorted.
    pub fn render(&self) -> String {
        self.prune_peers();
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut add = |key: &Key, kind: &'static str, value: String| {
            families
                .entry(sanitize_name(key.name()))
                .or_insert((kind, Vec::new()))
                .1
                .push((render_labels(key), value));
        };
        self.0.registry.visit_counters(|key, c| {
            add(key, "counter", c.load(Relaxed).to_string());
        });
        self.0.registry.visit_gauges(|key, g| {
            add(key, "gauge", render_float(f64::from_bits(g.load(Relaxed))));
        });
        let help = self.0.help.read().map(|h| h.clone()).unwrap_or_default();
        let mut out = String::new();
        for (name, (kind, mut series)) in families {
            series.sort();
            if let Some(text) = help.get(&name) {
                let text = text.replace('\\', "\\\\").replace('\n', "\\n");
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in series {
                let _ = writeln!(out, "{name}{labels} {value}");
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

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

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

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
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

/// `{k="v",...}` in the key's label order, values escaped; empty without labels.
fn render_labels(key: &Key) -> String {
    let mut out = String::new();
    for (i, label) in key.labels().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let value = label
            .value()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{}=\"{value}\"", sanitize_name(label.key()));
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
            metrics::histogram!("h").record(1.0);
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
}
