//! Answering queries: the built-in [`INFO`] (this agent's name, address,
//! version and member counts, as JSON) and `--event-handler query:NAME=CMD`
//! handlers, whose stdout is the answer (the payload on stdin; the first
//! handler that takes the query's name answers it). Handler runs are
//! concurrent, at most [`MAX_RUNNING`] at once; a query that finds them all
//! busy is not answered, and counted. A run is bounded by the query's own
//! timeout and by `--event-handler-timeout`, whichever is shorter.

use std::sync::Arc;

use rumor::{Event, IncomingQuery, Subscription};
use serde_json::json;
use tokio::sync::{broadcast, Semaphore};

use super::{run_one, HandlerOptions, HandlerSpec, DROPPED_METRIC};
use crate::cluster::SharedCluster;

/// The built-in query every agent answers with facts about itself.
pub const INFO: &str = "_rumor_info";

/// Query handler runs at once.
pub const MAX_RUNNING: usize = 16;

/// The environment of a query handler run.
fn query_env(q: &IncomingQuery, self_name: &str, self_addr: &str) -> Vec<(String, String)> {
    vec![
        ("RUMOR_EVENT".to_string(), "query".to_string()),
        ("RUMOR_SELF_NAME".to_string(), self_name.to_string()),
        ("RUMOR_SELF_ADDR".to_string(), self_addr.to_string()),
        ("RUMOR_QUERY_NAME".to_string(), q.name.clone()),
        ("RUMOR_QUERY_LTIME".to_string(), q.ltime.to_string()),
        ("RUMOR_QUERY_ORIGIN".to_string(), q.origin.to_string()),
    ]
}

/// This agent's facts, the answer to [`INFO`].
async fn info(cluster: &SharedCluster) -> Vec<u8> {
    let members = match cluster.stats().await {
        Ok(s) => crate::http::counts(&s),
        Err(_) => json!(null),
    };
    json!({
        "name": cluster.name(),
        "addr": cluster.addr().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "members": members,
    })
    .to_string()
    .into_bytes()
}

/// Answer the queries `queries` delivers until the node stops.
pub(super) async fn run(
    cluster: SharedCluster,
    specs: Vec<HandlerSpec>,
    opts: HandlerOptions,
    mut queries: Subscription,
) {
    let running = Arc::new(Semaphore::new(MAX_RUNNING));
    let node = cluster.name().to_string();
    loop {
        let q = match queries.recv().await {
            Ok(Event::Query(q)) => q,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                metrics::counter!(DROPPED_METRIC, "node" => node.clone(), "reason" => "lagged")
                    .increment(n);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if q.name == INFO {
            let answer = info(&cluster).await;
            if let Err(e) = cluster.respond(&q, answer).await {
                tracing::debug!("query {INFO} not answered: {e}");
            }
            continue;
        }
        // Names starting `_rumor_` are built in: never a handler's.
        if q.name.starts_with("_rumor_") {
            continue;
        }
        let Some(spec) = specs.iter().find(|s| s.wants_query(&q.name)) else {
            continue;
        };
        let Ok(permit) = running.clone().try_acquire_owned() else {
            metrics::counter!(DROPPED_METRIC, "node" => node.clone(), "reason" => "busy")
                .increment(1);
            tracing::warn!(query = %q.name, "query not answered: {MAX_RUNNING} query handlers are running already");
            continue;
        };
        let (cluster, command, node) = (cluster.clone(), spec.command.clone(), node.clone());
        tokio::spawn(async move {
            let env = query_env(&q, cluster.name(), &cluster.addr().to_string());
            let what = format!("query {} from {}", q.name, q.origin);
            let timeout = q.timeout.min(opts.timeout);
            let keep = rumor::core::query::MAX_RESPONSE_SIZE;
            if let Some(answer) =
                run_one(&command, env, &q.payload, &what, &node, timeout, keep).await
            {
                if let Err(e) = cluster.respond(&q, answer).await {
                    tracing::warn!(event = what, "query answer not sent: {e}");
                }
            }
            drop(permit);
        });
    }
}
