//! `POST /v1/query`: ask the cluster a query and stream the acks and
//! answers back as they arrive, one JSON object a line (NDJSON):
//!
//! ```text
//! {"type":"dispatched","ltime":7,"timeout_ms":6400}
//! {"type":"ack","from":"web-1"}
//! {"type":"response","from":"web-1","payload":"up 3 days"}
//! {"type":"done","acks":1,"responses":1}
//! ```
//!
//! A payload that is not UTF-8 comes as `"payload": null` with
//! `"payload_hex"`. Errors found before the query goes out (a pattern that
//! does not compile, a query over 1 KiB) are ordinary JSON errors (400, 413).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rumor::{QueryAnswer, QueryFilter, QueryOptions};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{bad_json, ApiError, ApiResult};
use crate::http_access::Authorized;

/// Body of `POST /v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// The query's name.
    pub name: String,
    /// Payload, text.
    #[serde(default)]
    pub payload: String,
    /// Member-name patterns; a member must match each.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Tag patterns by tag name; a member must have each tag, matching.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// How long to wait for answers (default: the cluster-size rule).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Ask the selected members to ack (default true).
    #[serde(default = "yes")]
    pub ack: bool,
    /// Send each answer through this many other members too.
    #[serde(default)]
    pub relay_factor: u8,
}

fn yes() -> bool {
    true
}

impl QueryBody {
    /// The library's options for this body.
    pub fn options(&self) -> QueryOptions {
        let mut filters: Vec<QueryFilter> =
            self.nodes.iter().cloned().map(QueryFilter::Name).collect();
        filters.extend(self.tags.iter().map(|(k, p)| QueryFilter::Tag {
            key: k.clone(),
            pattern: p.clone(),
        }));
        QueryOptions {
            filters,
            ack: self.ack,
            relay_factor: self.relay_factor,
            timeout: self.timeout_ms.map(Duration::from_millis),
        }
    }
}

/// One answer as an NDJSON line's object.
pub fn answer_json(a: &QueryAnswer) -> Value {
    match a {
        QueryAnswer::Ack { from } => json!({ "type": "ack", "from": from }),
        QueryAnswer::Response { from, payload } => match std::str::from_utf8(payload) {
            Ok(text) => json!({ "type": "response", "from": from, "payload": text }),
            Err(_) => json!({
                "type": "response",
                "from": from,
                "payload": null,
                "payload_hex": payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            }),
        },
    }
}

fn line(v: &Value) -> Result<Vec<u8>, std::convert::Infallible> {
    let mut b = v.to_string().into_bytes();
    b.push(b'\n');
    Ok(b)
}

/// `POST /v1/query`.
pub async fn post_query(
    Authorized(st): Authorized,
    body: Result<Json<QueryBody>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) = body.map_err(bad_json)?;
    if body.name.is_empty() {
        return Err(ApiError(
            axum::http::StatusCode::BAD_REQUEST,
            "name is empty".into(),
        ));
    }
    let options = body.options();
    let stream = st
        .cluster
        .query(body.name, body.payload.into_bytes(), options)
        .await?;
    let first = json!({
        "type": "dispatched",
        "ltime": stream.ltime(),
        "timeout_ms": stream.timeout().as_millis() as u64,
    });
    let lines = futures_util::stream::unfold(
        (Some(first), Some(stream), 0u64, 0u64),
        |(first, stream, acks, answers)| async move {
            if let Some(f) = first {
                return Some((line(&f), (None, stream, acks, answers)));
            }
            let mut s = stream?;
            match s.next().await {
                Some(a) => {
                    let (acks, answers) = match a {
                        QueryAnswer::Ack { .. } => (acks + 1, answers),
                        QueryAnswer::Response { .. } => (acks, answers + 1),
                    };
                    Some((line(&answer_json(&a)), (None, Some(s), acks, answers)))
                }
                None => {
                    let done = json!({ "type": "done", "acks": acks, "responses": answers });
                    Some((line(&done), (None, None, acks, answers)))
                }
            }
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
