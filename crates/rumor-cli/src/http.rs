//! The agent's HTTP API (JSON in and out) and the routes of the dashboard
//! and `/metrics`. Errors are `{"error": "..."}` with a fitting status.
//!
//! Write endpoints (and the keyring listing) need `Authorization: Bearer
//! TOKEN` when the agent runs with `--http-token`. See docs/http-api.md.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use metrics_exporter_prometheus::PrometheusHandle;
use rumor_core::{Member, MemberState, Tags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::cluster::{kind_name, resolve_seeds, ClusterError, MemberEvent, SharedCluster, Stats};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The node.
    pub cluster: SharedCluster,
    /// Bearer token of the write endpoints.
    pub token: Option<Arc<str>>,
    /// Metrics renderer.
    pub metrics: Option<PrometheusHandle>,
    /// When each member last changed, as seen here.
    pub changes: Arc<Mutex<HashMap<String, SystemTime>>>,
    /// Told when `POST /v1/leave` has left: the agent then exits.
    pub on_leave: Option<mpsc::Sender<()>>,
    /// Bound on a graceful leave.
    pub leave_timeout: Duration,
    /// Set once the node is leaving; health then answers 503.
    pub leaving: Arc<std::sync::atomic::AtomicBool>,
}

impl ApiState {
    /// State for `cluster`; starts the task that records member changes.
    pub fn new(cluster: SharedCluster, token: Option<String>) -> Self {
        let changes: Arc<Mutex<HashMap<String, SystemTime>>> = Arc::default();
        let mut events = cluster.subscribe();
        let ch = changes.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if let Ok(mut map) = ch.lock() {
                            map.insert(ev.member.name.to_string(), ev.at);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        ApiState {
            cluster,
            token: token.map(Arc::from),
            metrics: crate::metrics::install(),
            changes,
            on_leave: None,
            leave_timeout: crate::config::DEFAULT_LEAVE_TIMEOUT,
            leaving: Arc::default(),
        }
    }
}

/// An error answer: a status and a message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let status = match &e {
            ClusterError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ClusterError::Invalid(_) => StatusCode::BAD_REQUEST,
            ClusterError::NotFound(_) => StatusCode::NOT_FOUND,
            ClusterError::Conflict(_) => StatusCode::CONFLICT,
            ClusterError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            ClusterError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

fn bad_json(rej: JsonRejection) -> ApiError {
    ApiError(
        rej.status(),
        format!("bad request body: {}", rej.body_text()),
    )
}

type ApiResult<T> = Result<T, ApiError>;

/// A member as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberJson {
    /// Name.
    pub name: String,
    /// Gossip address.
    pub addr: String,
    /// alive, suspect, dead or left.
    pub status: String,
    /// Incarnation.
    pub incarnation: u32,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// When this agent last saw the member change, in ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_ms: Option<u64>,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn member_json(m: &Member, changed: Option<SystemTime>) -> MemberJson {
    MemberJson {
        name: m.name.to_string(),
        addr: m.addr.to_string(),
        status: m.state.as_str().to_string(),
        incarnation: m.incarnation,
        tags: (*m.tags).clone(),
        last_change_ms: changed.map(epoch_ms),
    }
}

fn check_token(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(want) = &state.token else {
        return Ok(());
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match got {
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs Authorization: Bearer <token> (the agent runs with --http-token)"
                .into(),
        )),
        Some(t) if constant_time_eq(t.as_bytes(), want.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError(StatusCode::FORBIDDEN, "wrong bearer token".into())),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Query of `GET /v1/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only members with this tag, `key=value`.
    pub tag: Option<String>,
}

fn parse_status(s: &str) -> ApiResult<MemberState> {
    match s {
        "alive" => Ok(MemberState::Alive),
        "suspect" => Ok(MemberState::Suspect),
        "dead" | "failed" => Ok(MemberState::Dead),
        "left" => Ok(MemberState::Left),
        other => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown status {other:?}: expected alive, suspect, dead or left"),
        )),
    }
}

async fn members(
    State(st): State<ApiState>,
    q: Result<Query<MembersQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<MemberJson>>> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let status = q.status.as_deref().map(parse_status).transpose()?;
    let tag = match q.tag.as_deref() {
        Some(t) => {
            Some(crate::cli::parse_tag(t).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?)
        }
        None => None,
    };
    let changes = st.changes.lock().map(|m| m.clone()).unwrap_or_default();
    let mut out: Vec<MemberJson> = st
        .cluster
        .members()
        .await?
        .iter()
        .filter(|m| status.is_none_or(|s| m.state == s))
        .filter(|m| {
            tag.as_ref()
                .is_none_or(|(k, v)| m.tags.get(k).is_some_and(|x| x == v))
        })
        .map(|m| member_json(m, changes.get(&*m.name).copied()))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

async fn member(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<MemberJson>> {
    let changed = st.changes.lock().ok().and_then(|m| m.get(&name).copied());
    st.cluster
        .members()
        .await?
        .iter()
        .find(|m| *m.name == *name)
        .map(|m| Json(member_json(m, changed)))
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no member named {name:?}")))
}

fn counts(stats: &Stats) -> Value {
    let m = stats.members;
    json!({ "alive": m.alive, "suspect": m.suspect, "dead": m.dead, "left": m.left })
}

async fn self_info(State(st): State<ApiState>) -> ApiResult<Json<Value>> {
    let local = st.cluster.local().await?;
    let stats = st.cluster.stats().await?;
    let mut v = serde_json::to_value(member_json(&local, None)).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("awareness".into(), json!(stats.awareness));
        o.insert("members".into(), counts(&stats));
        o.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    }
    Ok(Json(v))
}

async fn health(State(st): State<ApiState>) -> Response {
    let stats = match st.cluster.stats().await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let leaving = st.leaving.load(std::sync::atomic::Ordering::Relaxed);
    let body = json!({
        "status": if leaving { "leaving" } else { "ok" },
        "name": st.cluster.name(),
        "awareness": stats.awareness,
        "members": counts(&stats),
    });
    let code = if leaving {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// Body of `POST /v1/join`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// Seeds: `ip:port`, `host:port` or `host`.
    pub addrs: Vec<String>,
}

async fn join(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    check_token(&st, &headers)?;
    let Json(body) = body.map_err(bad_json)?;
    if body.addrs.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "addrs is empty".into()));
    }
    let seeds = resolve_seeds(&body.addrs)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    let n = st.cluster.join(seeds).await?;
    Ok(Json(json!({ "joined": n })))
}

async fn leave(State(st): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    check_token(&st, &headers)?;
    st.leaving.store(true, std::sync::atomic::Ordering::Relaxed);
    st.cluster.leave(st.leave_timeout).await?;
    if let Some(tx) = &st.on_leave {
        let _ = tx.try_send(());
    }
    Ok(Json(json!({ "left": true })))
}

/// Body of `PUT /v1/tags`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    /// Tags to set (others are kept).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys to delete.
    #[serde(default)]
    pub delete: Vec<String>,
}

async fn put_tags(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<TagsBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    check_token(&st, &headers)?;
    let Json(body) = body.map_err(bad_json)?;
    if body.set.is_empty() && body.delete.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "nothing to do: give \"set\" or \"delete\"".into(),
        ));
    }
    if body.set.keys().any(|k| k.is_empty()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a tag key is empty".into(),
        ));
    }
    let mut tags: Tags = (*st.cluster.local().await?.tags).clone();
    for k in &body.delete {
        tags.remove(k);
    }
    tags.extend(body.set);
    st.cluster.set_tags(tags.clone()).await?;
    Ok(Json(json!({ "tags": tags })))
}

/// Body of `POST /v1/event`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// Event name.
    pub name: String,
    /// Payload, text.
    #[serde(default)]
    pub payload: String,
}

async fn post_event(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<EventBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    check_token(&st, &headers)?;
    let Json(body) = body.map_err(bad_json)?;
    if body.name.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "name is empty".into()));
    }
    st.cluster.user_event(&body.name, body.payload.as_bytes())?;
    Ok(Json(json!({ "sent": true })))
}

/// One membership event as the SSE stream and the monitor show it.
pub fn event_json(ev: &MemberEvent) -> Value {
    json!({
        "type": kind_name(ev.kind),
        "time_ms": epoch_ms(ev.at),
        "member": member_json(&ev.member, Some(ev.at)),
    })
}

async fn events(
    State(st): State<ApiState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = st.cluster.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream =
        futures_util::stream::unfold((rx, tick, st), |(mut rx, mut tick, st)| async move {
            let ev = tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => SseEvent::default().event("member").data(event_json(&ev).to_string()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        SseEvent::default().event("lagged").data(json!({ "missed": n }).to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = tick.tick() => {
                                        let Ok(stats) = st.cluster.stats().await else {
                        return None;
                    };
                    let data = json!({
                        "name": st.cluster.name(),
                        "awareness": stats.awareness,
                        "members": counts(&stats),
                        "time_ms": epoch_ms(SystemTime::now()),
                    });
                    SseEvent::default().event("health").data(data.to_string())
                }
            };
            Some((Ok(ev), (rx, tick, st)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn get_keys(State(st): State<ApiState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    check_token(&st, &headers)?;
    let view = st.cluster.keys()?;
    Ok(Json(serde_json::to_value(view).unwrap_or(Value::Null)))
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOpBody {
    /// `install` (default) or `use`.
    #[serde(default)]
    pub op: Option<String>,
    /// The key, hex.
    pub key: String,
}

async fn post_keys(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<KeyOpBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    check_token(&st, &headers)?;
    let Json(body) = body.map_err(bad_json)?;
    match body.op.as_deref().unwrap_or("install") {
        "install" => st.cluster.install_key(&body.key)?,
        "use" => st.cluster.use_key(&body.key)?,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("unknown op {other:?}: expected install or use"),
            ))
        }
    }
    Ok(Json(
        serde_json::to_value(st.cluster.keys()?).unwrap_or(Value::Null),
    ))
}

/// Body of `DELETE /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// The key, hex.
    pub key: String,
}

async fn delete_keys(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    check_token(&st, &headers)?;
    let Json(body) = body.map_err(bad_json)?;
    st.cluster.remove_key(&body.key)?;
    Ok(Json(
        serde_json::to_value(st.cluster.keys()?).unwrap_or(Value::Null),
    ))
}

async fn metrics(State(st): State<ApiState>) -> Response {
    match &st.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            crate::metrics::render(h, st.cluster.name()),
        )
            .into_response(),
        None => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are disabled".into(),
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint (see docs/http-api.md)".into(),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint".into(),
    )
}

/// The whole router: API, metrics and dashboard.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::index))
        .route("/v1/members", get(members))
        .route("/v1/members/{name}", get(member))
        .route("/v1/self", get(self_info))
        .route("/v1/health", get(health))
        .route("/v1/join", axum::routing::post(join))
        .route("/v1/leave", axum::routing::post(leave))
        .route("/v1/tags", axum::routing::put(put_tags))
        .route("/v1/event", axum::routing::post(post_event))
        .route("/v1/events", get(events))
        .route(
            "/v1/keys",
            get(get_keys).post(post_keys).delete(delete_keys),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serve `router` on `listener` until the task is aborted (open event
/// streams never end by themselves, so there is no graceful drain).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}
