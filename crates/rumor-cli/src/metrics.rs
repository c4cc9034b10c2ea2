//! Prometheus metrics: the agent installs a `metrics` recorder (the facade
//! the `rumor` library reports through) and renders it at `/metrics`.
//!
//! On top of what the library exports, the agent sets `rumor_agent_*`
//! gauges and counters from its node at every scrape: members by status,
//! the awareness score and the protocol counters.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rumor_core::MemberState;

use crate::cluster::SharedCluster;

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
        "rumor_agent_members",
        "Members known to this agent, by status."
    );
    metrics::describe_gauge!(
        "rumor_agent_awareness",
        "Local health awareness score (0 is healthy)."
    );
    metrics::describe_gauge!("rumor_agent_incarnation", "The local member's incarnation.");
    metrics::describe_counter!("rumor_agent_packets_in_total", "Datagrams received.");
    metrics::describe_counter!("rumor_agent_packets_out_total", "Datagrams sent.");
    metrics::describe_counter!("rumor_agent_bytes_in_total", "Datagram bytes received.");
    metrics::describe_counter!("rumor_agent_bytes_out_total", "Datagram bytes sent.");
    metrics::describe_counter!("rumor_agent_probes_total", "Probes started.");
    metrics::describe_counter!("rumor_agent_probe_acks_total", "Probes acknowledged.");
    metrics::describe_counter!(
        "rumor_agent_suspicions_total",
        "Members this node suspected."
    );
    metrics::describe_counter!(
        "rumor_agent_refutations_total",
        "Suspicions of this node it refuted."
    );
    metrics::describe_counter!(
        "rumor_agent_deaths_total",
        "Members declared dead, as seen here."
    );
    metrics::describe_counter!(
        "rumor_agent_decode_errors_total",
        "Undecodable packets dropped."
    );
}

/// Update the agent's gauges from `cluster` and render every metric as text.
pub fn render(handle: &PrometheusHandle, cluster: &SharedCluster) -> String {
    let members = cluster.members();
    for state in [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Dead,
        MemberState::Left,
    ] {
        let n = members.iter().filter(|m| m.state == state).count();
        metrics::gauge!("rumor_agent_members", "status" => state.as_str()).set(n as f64);
    }
    metrics::gauge!("rumor_agent_awareness").set(f64::from(cluster.awareness()));
    metrics::gauge!("rumor_agent_incarnation").set(f64::from(cluster.local().incarnation));
    let s = cluster.stats();
    for (name, v) in [
        ("rumor_agent_packets_in_total", s.packets_in),
        ("rumor_agent_packets_out_total", s.packets_out),
        ("rumor_agent_bytes_in_total", s.bytes_in),
        ("rumor_agent_bytes_out_total", s.bytes_out),
        ("rumor_agent_probes_total", s.probes),
        ("rumor_agent_probe_acks_total", s.probe_acks),
        ("rumor_agent_suspicions_total", s.suspicions),
        ("rumor_agent_refutations_total", s.refutations),
        ("rumor_agent_deaths_total", s.deaths),
        ("rumor_agent_decode_errors_total", s.decode_errors),
    ] {
        metrics::counter!(name).absolute(v);
    }
    handle.render()
}
