//! `GET /v1/info` and `rumor info`: this agent at a glance — name,
//! addresses, versions, profile, members by status, encryption and label,
//! its settings, the protocol configuration and stream caps in force (as
//! the node reports them: a SIGHUP's changes show here), and every counter
//! the library keeps (as `/metrics` names them, without the `node` label).

use std::collections::BTreeMap;

use axum::Json;
use serde_json::{json, Value};

use crate::http::{counts, key_fingerprint, ApiResult};
use crate::http_access::Reader;

/// The answer of `GET /v1/info`.
pub async fn info(Reader(st): Reader) -> ApiResult<Json<Value>> {
    let local = st.cluster.local().await?;
    let stats = st.cluster.stats().await?;
    let (protocol, streams) = st.cluster.tuning().await?;
    let keys = st.cluster.keys().ok();
    let key_count = keys.as_ref().map_or(0, |k| k.keys.len());
    let series = match &st.metrics {
        Some(h) => {
            rumor::metrics::export(st.cluster.name(), &stats);
            stats_of(
                &crate::metrics::render(h, st.cluster.name()),
                st.cluster.name(),
            )
        }
        None => BTreeMap::new(),
    };
    let f = &st.facts;
    Ok(Json(json!({
        "name": st.cluster.name(),
        "addr": st.cluster.addr().to_string(),
        "bind": f.bind,
        "http": f.http,
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": { "min": local.protocol.0, "max": local.protocol.1 },
        "incarnation": local.incarnation,
        "profile": f.profile,
        "members": counts(&stats),
        "awareness": stats.awareness,
        "propagation": propagation_json(
            &stats.propagation,
            protocol.gossip_interval,
            st.metrics.as_ref(),
            st.cluster.name(),
        ),
        "encryption": {
            "enabled": key_count > 0,
            "mode": st.cluster.encryption().map(rumor::EncryptionMode::as_str),
            "keys": key_count,
            "primary": keys.as_ref().and_then(|k| k.primary.as_deref()).map(key_fingerprint),
        },
        "label": f.label,
        "tags": *local.tags,
        "config": {
            "event_handlers": f.event_handlers,
            "event_handler_backlog": f.event_handler_backlog,
            "event_handler_timeout_ms": f.event_handler_timeout_ms,
            "leave_timeout_ms": f.leave_timeout_ms,
            "timeseries_interval_ms": f.timeseries_interval_ms,
            "data_dir": f.data_dir,
            "sync": f.sync,
            "protocol": protocol_json(&protocol),
            "limits": limits_json(&protocol.limits, &streams),
        },
        "stats": series,
    })))
}

/// The propagation budget beside the measured 99th percentile of
/// dissemination latency, with what to change when the measurement is over
/// the budget.
pub fn propagation_json(
    b: &rumor_core::budget::PropagationBudget,
    gossip_interval: std::time::Duration,
    metrics: Option<&crate::metrics::Handle>,
    node: &str,
) -> Value {
    let family = rumor::metrics::family::DISSEMINATION_LATENCY.name;
    let measured = metrics.and_then(|h| h.quantile(family, node, 0.99));
    let budget = b.expected().as_secs_f64();
    let advice = match measured {
        None => "no key-space write made elsewhere has arrived since this agent started: nothing measured yet".to_string(),
        Some((p99, _)) if p99 <= budget => "within budget".to_string(),
        Some(_) => format!(
            "over budget: check for packet loss and overloaded members (rumor_awareness,              rumor_udp_send_errors_total); to spread faster lower gossip_interval              (eager rounds wait up to a quarter of it, {} ms now) or raise eager_fanout              ({} members per eager round now)",
            gossip_interval.as_millis(),
            b.eager_fanout
        ),
    };
    json!({
        "members": b.members,
        "budget_seconds": budget,
        "wave_seconds": b.wave.as_secs_f64(),
        "classic_seconds": b.classic.as_secs_f64(),
        "eager_hops": b.eager_hops,
        "eager_fanout": b.eager_fanout,
        "measured_p99_seconds": measured.map(|m| m.0),
        "measured_samples": measured.map_or(0, |m| m.1),
        "advice": advice,
    })
}

/// The `[protocol]` table's settings in force; durations in ms.
pub fn protocol_json(c: &rumor_core::Config) -> Value {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    json!({
        "membership": c.membership.as_str(),
        "probe_interval_ms": ms(c.probe_interval),
        "probe_timeout_ms": ms(c.probe_timeout),
        "indirect_checks": c.indirect_checks,
        "probe_stream_fallback": c.probe_stream_fallback,
        "probe_retry": c.probe_retry,
        "stall_grace_ms": ms(c.stall_grace),
        "retransmit_mult": c.retransmit_mult,
        "suspicion_mult": c.suspicion_mult,
        "suspicion_max_mult": c.suspicion_max_mult,
        "gossip_interval_ms": ms(c.gossip_interval),
        "gossip_nodes": c.gossip_nodes,
        "gossip_to_the_dead_ms": ms(c.gossip_to_the_dead),
        "push_pull_interval_ms": ms(c.push_pull_interval),
        "tombstone_timeout_ms": ms(c.tombstone_timeout),
        "state_sync_interval_ms": ms(c.state_sync_interval),
        "kv_sync_interval_ms": ms(c.kv_sync_interval),
        "aggregate_interval_ms": ms(c.aggregate_interval),
        "aggregate_epoch_ms": ms(c.aggregate_epoch),
        "kv_siblings_prefixes": c
            .kv
            .prefix_modes
            .iter()
            .filter(|(_, m)| *m == rumor_core::kv::Mode::Siblings)
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>(),
    })
}

/// The `[limits]` table's settings in force: the core's bounds and the
/// transport's stream caps.
pub fn limits_json(l: &rumor_core::Limits, s: &rumor::builder::StreamLimits) -> Value {
    json!({
        "max_members": l.max_members,
        "max_pending_members": l.max_pending_members,
        "max_pending_per_sender": l.max_pending_per_sender,
        "max_state_keys_per_owner": l.max_state_keys_per_owner,
        "max_state_bytes_per_owner": l.max_state_bytes_per_owner,
        "max_kv_keys": l.max_kv_keys,
        "max_kv_bytes": l.max_kv_bytes,
        "max_broadcasts": l.max_broadcasts,
        "max_streams": s.max_streams,
        "max_streams_per_source": s.max_streams_per_source,
        "stream_preauth_budget": s.stream_preauth_budget,
    })
}

/// The series of node `node` in Prometheus text: `name` or
/// `name{other="labels"}` → value, the `node` label taken out; without
/// `rumor_build_info` and the histograms' buckets (their `_sum` and
/// `_count` stay).
pub fn stats_of(text: &str, node: &str) -> BTreeMap<String, Value> {
    let own = format!(
        "node=\"{}\"",
        node.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    );
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if name == crate::metrics::BUILD_INFO.name || name.ends_with("_bucket") {
            continue;
        }
        let key = match series.split_once('{') {
            None => series.to_string(),
            Some((name, labels)) => {
                let labels = labels.trim_end_matches('}');
                if labels.contains("node=\"") && !labels.contains(&own) {
                    continue;
                }
                let rest: Vec<&str> = split_labels(labels)
                    .into_iter()
                    .filter(|l| *l != own)
                    .collect();
                if rest.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}{{{}}}", rest.join(","))
                }
            }
        };
        let v = match value.parse::<u64>() {
            Ok(n) => json!(n),
            Err(_) => value
                .parse::<f64>()
                .map(|x| json!(x))
                .unwrap_or(Value::Null),
        };
        out.insert(key, v);
    }
    out
}

/// `a="x",b="y,z"` → `["a=\"x\"", "b=\"y,z\""]` (commas inside quotes kept).
fn split_labels(labels: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        out.push(&labels[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_series_without_the_node_label() {
        let text = "# TYPE rumor_members gauge\n\
            rumor_members{node=\"a\",status=\"alive\"} 3\n\
            rumor_members{node=\"b\",status=\"alive\"} 9\n\
            rumor_probes_total{node=\"a\"} 12\n\
            rumor_build_info{node=\"a\",version=\"1\"} 1\n\
            rumor_t_seconds_bucket{node=\"a\",le=\"+Inf\"} 2\n\
            rumor_t_seconds_count{node=\"a\"} 2\n\
            rumor_x{node=\"a\",why=\"p,q\"} 0.5\n";
        let s = stats_of(text, "a");
        assert_eq!(s.get("rumor_members{status=\"alive\"}"), Some(&json!(3)));
        assert_eq!(s.get("rumor_t_seconds_count"), Some(&json!(2)));
        assert_eq!(s.get("rumor_probes_total"), Some(&json!(12)));
        assert_eq!(s.get("rumor_x{why=\"p,q\"}"), Some(&json!(0.5)));
        assert_eq!(s.len(), 4, "{s:?}");
    }
}
