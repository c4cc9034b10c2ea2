//! `rumor query`: ask the cluster through the local agent's
//! `POST /v1/query` and print each ack and answer as it arrives, then the
//! totals. Patterns are checked here first: one that does not compile is a
//! usage error (exit 2) before anything is sent.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use crate::cli::QueryArgs;
use crate::client::Client;
use crate::config::parse_duration;
use crate::member_filter::{compile, BadFilter};

/// The request body for `args`, with its patterns checked.
fn body(args: &QueryArgs) -> Result<Value> {
    for n in &args.nodes {
        compile("--node", n)?;
    }
    let mut tags = BTreeMap::new();
    for t in &args.tags {
        let Some((k, p)) = t.split_once('=') else {
            return Err(BadFilter(format!("--tag {t:?}: expected KEY=REGEX")).into());
        };
        compile("--tag", p)?;
        tags.insert(k.to_string(), p.to_string());
    }
    let mut b = json!({
        "name": args.name,
        "payload": args.payload.clone().unwrap_or_default(),
        "nodes": args.nodes,
        "tags": tags,
        "ack": !args.no_ack,
        "relay_factor": args.relay_factor,
    });
    if let Some(t) = &args.timeout {
        let d = parse_duration(t).map_err(|e| anyhow!("--timeout {t:?}: {e}"))?;
        if d.is_zero() {
            bail!("--timeout must be above zero");
        }
        b["timeout_ms"] = json!(d.as_millis() as u64);
    }
    Ok(b)
}

/// One line of the agent's stream as `rumor query` prints it.
pub fn line_text(v: &Value) -> Option<String> {
    let from = v["from"].as_str().unwrap_or("?");
    match v["type"].as_str()? {
        "dispatched" => Some(format!(
            "query dispatched (waiting up to {:.1} s)",
            v["timeout_ms"].as_f64().unwrap_or(0.0) / 1000.0
        )),
        "ack" => Some(format!("ack from {from}")),
        "response" => {
            let payload = match (v["payload"].as_str(), v["payload_hex"].as_str()) {
                (Some(t), _) => t.trim_end_matches('\n').to_string(),
                (None, Some(h)) => format!("0x{h}"),
                _ => String::new(),
            };
            Some(format!("response from {from}: {payload}"))
        }
        "done" => Some(format!(
            "total acks: {}, total responses: {}",
            v["acks"], v["responses"]
        )),
        _ => None,
    }
}

/// `rumor query`.
pub fn query(args: &QueryArgs) -> Result<()> {
    let body = body(args)?;
    let client = Client::with_timeout(&args.client, None);
    let reader = client.post_streaming("/v1/query", body)?;
    let mut out = std::io::stdout().lock();
    for l in reader.lines() {
        let l = l.map_err(|e| anyhow!("the agent's answer broke off: {e}"))?;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&l).map_err(|e| anyhow!("bad line from the agent: {e}"))?;
        if args.json {
            writeln!(out, "{v}")?;
        } else if let Some(text) = line_text(&v) {
            writeln!(out, "{text}")?;
        }
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let t = |v: Value| line_text(&v).unwrap();
        assert_eq!(t(json!({"type":"ack","from":"a"})), "ack from a");
        assert_eq!(
            t(json!({"type":"response","from":"a","payload":"up\n"})),
            "response from a: up"
        );
        assert_eq!(
            t(json!({"type":"response","from":"a","payload":null,"payload_hex":"ff"})),
            "response from a: 0xff"
        );
        assert_eq!(
            t(json!({"type":"done","acks":2,"responses":1})),
            "total acks: 2, total responses: 1"
        );
    }
}
