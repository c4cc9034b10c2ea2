//! Backing up and restoring the key space while the agent runs:
//! `GET /v1/kv-export` streams every entry, tombstones included, one JSON
//! object a line (NDJSON); `POST /v1/kv-import` merges such lines back.
//!
//! ```text
//! {"key":"cfg/a","entry":"AQ...","deleted":false,"value":"on"}
//! ```
//!
//! `entry` is the entry in the wire's encoding (base64): timestamps,
//! siblings and version vectors survive the round trip exactly, so an
//! import merges like a peer's record and never overwrites a newer write.
//! `value` (UTF-8 values of last-write-wins keys) is there for people and
//! ignored on import. The export reads the key space in pages, so a large
//! one streams without stopping the node, and each page is consistent.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rumor::KvEntry;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{body_bytes, ApiError, ApiResult};
use crate::http_access::{Authorized, Reader};

/// Entries read from the node per export page.
const PAGE: usize = 1000;

/// One exported entry, as a line holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    /// The key.
    pub key: String,
    /// The entry, wire-encoded, base64.
    pub entry: String,
    /// Whether the key reads as deleted.
    #[serde(default)]
    pub deleted: bool,
    /// A last-write-wins value that is UTF-8, for people; ignored on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Line {
    /// The line for one entry.
    pub fn of(key: &str, entry: &KvEntry) -> Self {
        Line {
            key: key.to_owned(),
            entry: STANDARD.encode(rumor::core::codec::encode_entry(entry)),
            deleted: entry.is_tombstone(),
            value: entry
                .lww_value()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
        }
    }

    /// The entry back, checked.
    pub fn entry(&self) -> Result<KvEntry, String> {
        let bytes = STANDARD
            .decode(&self.entry)
            .map_err(|e| format!("key {:?}: entry is not base64: {e}", self.key))?;
        rumor::core::codec::decode_entry(&bytes)
            .map_err(|e| format!("key {:?}: entry does not decode: {e}", self.key))
    }
}

/// Parse NDJSON lines into entries; the first bad line is the error (with
/// its line number), and nothing is imported.
pub fn parse_lines(text: &str) -> Result<Vec<(String, KvEntry)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| format!("line {}: {e}", i + 1))?;
        let entry = line.entry().map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push((line.key, entry));
    }
    Ok(out)
}

/// `GET /v1/kv-export`.
pub async fn export(Reader(st): Reader) -> Response {
    let lines = futures_util::stream::unfold(Some(None::<String>), move |after| {
        let cluster = st.cluster.clone();
        async move {
            let after = after?;
            let page = match cluster.kv_export_page(after, PAGE).await {
                Ok(page) => page,
                // The node stopped mid-export: end the stream short; the
                // client sees no final newline-terminated count.
                Err(_) => return None,
            };
            let next = (page.len() == PAGE)
                .then(|| page.last().map(|(k, _)| k.clone()))
                .flatten();
            let mut chunk = Vec::new();
            for (k, e) in &page {
                let mut line = serde_json::to_vec(&Line::of(k, e)).unwrap_or_default();
                line.push(b'\n');
                chunk.extend(line);
            }
            Some((Ok::<_, std::convert::Infallible>(chunk), next.map(Some)))
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// `POST /v1/kv-import`: NDJSON lines as `GET /v1/kv-export` writes them.
pub async fn import(
    Authorized(st): Authorized,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body_bytes(body)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "body is not UTF-8".into()))?;
    let entries = parse_lines(text).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let done = st.cluster.kv_import(entries).await?;
    Ok(Json(json!({
        "applied": done.applied,
        "stale": done.stale,
        "refused": done.refused,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumor::core::kv::{LwwEntry, Timestamp};

    #[test]
    fn lines_round_trip_and_bad_lines_name_themselves() {
        let e = KvEntry::Lww(LwwEntry {
            value: Some(b"on".to_vec()),
            ts: Timestamp::new(1_700_000_000_000_000, 2, "n1"),
        });
        let text = format!(
            "{}\n\n{}\n",
            serde_json::to_string(&Line::of("a", &e)).unwrap(),
            serde_json::to_string(&Line::of("b", &e)).unwrap()
        );
        assert!(text.contains("\"value\":\"on\""));
        let back = parse_lines(&text).unwrap();
        assert_eq!(back, vec![("a".into(), e.clone()), ("b".into(), e)]);
        let err =
            parse_lines(&format!("{text}{{\"key\":\"c\",\"entry\":\"AAAA\"}}\n")).unwrap_err();
        assert!(err.starts_with("line 4:"), "{err}");
        assert!(parse_lines("not json").unwrap_err().starts_with("line 1:"));
    }
}
