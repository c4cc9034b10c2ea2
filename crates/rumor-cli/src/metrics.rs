//! Prometheus metrics: the agent installs a `metrics` recorder and renders
//! it at `/metrics`.
//!
//! The `rumor` library exports its counters and gauges through the
//! `metrics` facade about once a second, labelled with the node's name
//! (`rumor_members{node,state}`, `rumor_awareness{node}`,
//! `rumor_packets_in_total{node}`, ...); the agent adds `rumor_agent_info`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide recorder (once); `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => {
                describe();
                Some(h)
            }
            Err(e) => {
                tracing::warn!("metrics disabled: {e}");
                None
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
        "rumor_refutations_total",
        "Suspicions of this node it refuted."
    );
    metrics::describe_counter!("rumor_deaths_total", "Members declared dead, as seen here.");
}

/// Render every metric as Prometheus text.
pub fn render(handle: &PrometheusHandle, name: &str) -> String {
    metrics::gauge!(
        "rumor_agent_info",
        "name" => name.to_string(),
        "version" => env!("CARGO_PKG_VERSION")
    )
    .set(1.0);
    handle.render()
}
