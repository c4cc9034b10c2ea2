//! The agent's HTTP API (JSON in and out) and the routes of the dashboard
//! and `/metrics`. Errors are `{"error": "..."}` with a fitting status.
//!
//! Who may call what (tokens, the dashboard session, the loopback `Host`
//! check) lives in [`crate::http_access`]. The keyring is shown by
//! fingerprints only, never key material; a request body over [`MAX_BODY`]
//! bytes is refused with 413. See docs/http-api.md.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use rumor_core::{Member, MemberState, Tags};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use rumor::{Event, EventFilter, KvChange, MemberEvent, UserEvent};

use crate::cluster::{
    kind_name, resolve_seeds_with, ClusterError, Estimate, KeyringView, KvEntry, SharedCluster,
    Stats,
};
use crate::http_access::{check_read_token, dashboard_page, host_guard, login, Authorized, Reader};

/// Largest request body the API reads, in bytes: room for the largest
/// replicated value (64 KiB) several times over. Larger bodies get 413.
pub const MAX_BODY: usize = 256 * 1024;

/// A declared body over [`MAX_BODY`] but at most this long is read and
/// thrown away before the 413 goes out, so that the client, still sending,
/// reads the answer instead of a connection reset (nginx's "lingering
/// close"). Longer ones are answered at once and the connection is cut.
const DRAIN_MAX: u64 = 4 * MAX_BODY as u64;

/// Longest the drain of [`DRAIN_MAX`] may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The node.
    pub cluster: SharedCluster,
    /// Bearer token of the write endpoints (it also grants reads).
    pub token: Option<Arc<str>>,
    /// Bearer token of the read endpoints (`None`: reads are open).
    pub read_token: Option<Arc<str>>,
    /// Metrics renderer.
    pub metrics: Option<crate::metrics::Handle>,
    /// When each member last changed, as seen here.
    pub changes: Arc<Mutex<HashMap<String, SystemTime>>>,
    /// The last member and user events, replayed by `GET /v1/events?since=`.
    pub history: Arc<crate::history::History>,
    /// The last hour's samples, served by `GET /v1/timeseries` (empty
    /// until [`crate::timeseries::start`] samples into it).
    pub timeseries: Arc<crate::timeseries::TimeSeries>,
    /// Told when `POST /v1/leave` has left: the agent then exits.
    pub on_leave: Option<mpsc::Sender<()>>,
    /// Bound on a graceful leave.
    pub leave_timeout: Duration,
    /// Set once the node is leaving; health then answers 503.
    pub leaving: Arc<std::sync::atomic::AtomicBool>,
    /// Aggregates tracked through this API (`GET /v1/aggregate/{name}`).
    pub aggregates: Arc<Mutex<BTreeSet<String>>>,
    /// Whether the agent has joined (`/v1/health/ready`).
    pub join: Arc<crate::retry_join::JoinState>,
    /// What `GET /v1/info` tells about the agent's settings.
    pub facts: Arc<AgentFacts>,
    /// The `--keyring` file, written back after every keyring change.
    pub keyring_file: Option<Arc<std::path::Path>>,
    /// Name servers for SRV seeds of `POST /v1/join` (`--dns-server`).
    pub dns_servers: Arc<[std::net::SocketAddr]>,
}

/// The agent's settings as `GET /v1/info` shows them (no secrets).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentFacts {
    /// Protocol profile name (`lan`, `wan`, `local`).
    pub profile: Option<String>,
    /// Cluster label.
    pub label: Option<String>,
    /// Gossip bind address.
    pub bind: Option<String>,
    /// HTTP API address.
    pub http: Option<String>,
    /// Number of `--event-handler`s.
    pub event_handlers: usize,
    /// Events waiting per handler before new ones are dropped.
    pub event_handler_backlog: Option<usize>,
    /// Longest one handler run may take, in ms.
    pub event_handler_timeout_ms: Option<u64>,
    /// Bound on a graceful leave, in ms.
    pub leave_timeout_ms: Option<u64>,
    /// Time between two samples of `GET /v1/timeseries`, in ms.
    pub timeseries_interval_ms: Option<u64>,
    /// The data dir (`None`: memory only).
    pub data_dir: Option<String>,
    /// When key-space writes are acknowledged: `always` or `interval(…)`.
    pub sync: Option<String>,
}

impl ApiState {
    /// State for `cluster`, keeping the last `history` events; starts the
    /// task that records member changes and events.
    pub fn new(cluster: SharedCluster, token: Option<String>, history: usize) -> Self {
        let changes: Arc<Mutex<HashMap<String, SystemTime>>> = Arc::default();
        let history = Arc::new(crate::history::History::new(history));
        tokio::spawn(record_events(&cluster, changes.clone(), history.clone()));
        ApiState {
            cluster,
            token: token.map(Arc::from),
            read_token: None,
            metrics: crate::metrics::install(),
            changes,
            history,
            timeseries: Arc::new(crate::timeseries::TimeSeries::new(
                crate::timeseries::DEFAULT_INTERVAL,
            )),
            on_leave: None,
            leave_timeout: crate::config::DEFAULT_LEAVE_TIMEOUT,
            leaving: Arc::default(),
            aggregates: Arc::default(),
            join: crate::retry_join::JoinState::joined(),
            facts: Arc::default(),
            keyring_file: None,
            dns_servers: Arc::from([]),
        }
    }
}

/// Record every member and user event of `cluster` in `history` (and when
/// each member last changed in `changes`), in the order the node saw them,
/// until the node stops. Subscribed before the first await, so nothing
/// after the call is missed; if the recorder falls behind the node's
/// channel, the hole is recorded as a `lagged` entry with its size.
fn record_events(
    cluster: &SharedCluster,
    changes: Arc<Mutex<HashMap<String, SystemTime>>>,
    history: Arc<crate::history::History>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let events = cluster.subscribe(EventFilter::MEMBER | EventFilter::USER);
    async move {
        let Ok(mut events) = events else {
            return; // the node has stopped
        };
        loop {
            match events.recv().await {
                Ok(Event::Member(ev)) => {
                    if let Ok(mut map) = changes.lock() {
                        map.insert(ev.member.name.to_string(), ev.at);
                    }
                    history.record("member", event_json(&ev));
                }
                Ok(Event::User(ev)) => history.record("user", user_event_json(&ev)),
                // Clients must learn that the history has a hole here.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    history.record("lagged", json!({ "missed": n }))
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
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

// Size limits of one value or event are 413, a full quota 429; both name
// the limit (`cluster/error.rs` picks the kind from the library's error).
impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let status = match &e {
            ClusterError::Invalid(_) => StatusCode::BAD_REQUEST,
            ClusterError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ClusterError::LimitReached(_) => StatusCode::TOO_MANY_REQUESTS,
            ClusterError::NotFound(_) => StatusCode::NOT_FOUND,
            ClusterError::Conflict(_) => StatusCode::CONFLICT,
            ClusterError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            ClusterError::Storage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ClusterError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

/// The error for a body over [`MAX_BODY`], naming the limit.
fn body_too_large() -> ApiError {
    crate::http_access::refused("body_too_large");
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large: the HTTP API's limit (max_body) is {MAX_BODY} bytes"),
    )
}

pub(crate) fn bad_json(rej: JsonRejection) -> ApiError {
    if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large();
    }
    ApiError(
        rej.status(),
        format!("bad request body: {}", rej.body_text()),
    )
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

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
    pub incarnation: u64,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// When this agent last saw the member change, in ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_ms: Option<u64>,
    /// The member's per-node state as this agent knows it.
    #[serde(default)]
    pub state: BTreeMap<String, String>,
    /// Protocol versions the member speaks, `[min, max]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<[u8; 2]>,
    /// The round trip of this agent's last direct probe of the member
    /// answered in time, ms (`GET /v1/members/{name}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

/// Milliseconds since the epoch.
pub fn epoch_ms(t: SystemTime) -> u64 {
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
        state: BTreeMap::new(),
        protocol: Some([m.protocol.0, m.protocol.1]),
        rtt_ms: None,
    }
}

/// The key of a `/v1/kv/{key}` or `/v1/state/{key}` request: percent-decoded,
/// UTF-8, not empty.
struct Key(String);

impl FromRequestParts<ApiState> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        let what = if parts.uri.path().starts_with("/v1/state/") {
            "state"
        } else {
            "kv"
        };
        let p = Path::<String>::from_request_parts(parts, state).await;
        path_key(p, what).map(Key)
    }
}

/// Header carrying the causal context of a siblings-mode write.
pub const CONTEXT_HEADER: &str = "x-rumor-context";

/// Query of `PUT` and `DELETE /v1/kv/{key}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextQuery {
    /// The causal context from `GET /v1/kv/{key}` (see [`crate::kv_context`]).
    pub context: Option<String>,
}

/// The causal context a `PUT` or `DELETE /v1/kv/{key}` carries, from the
/// `X-Rumor-Context` header or the `context` query parameter (not both).
struct WriteContext(Option<rumor::VersionVector>);

impl FromRequestParts<ApiState> for WriteContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &ApiState) -> ApiResult<Self> {
        let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
        let header = match parts.headers.get(CONTEXT_HEADER) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| bad("the X-Rumor-Context header is not text".into()))?
                    .to_owned(),
            ),
            None => None,
        };
        let Query(q) =
            Query::<ContextQuery>::try_from_uri(&parts.uri).map_err(|e| bad(e.body_text()))?;
        let token = match (header, q.context) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "give the context once: the X-Rumor-Context header or ?context=, not both"
                        .into(),
                ))
            }
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return Ok(WriteContext(None)),
        };
        crate::kv_context::decode(&token)
            .map(|vv| WriteContext(Some(vv)))
            .map_err(bad)
    }
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
    Reader(st): Reader,
    q: Result<Query<MembersQuery>, QueryRejection>,
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
    let mut states = st.cluster.states().await?;
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
        .map(|m| {
            let mut j = member_json(m, changes.get(&*m.name).copied());
            j.state = states.remove(&*m.name).unwrap_or_default();
            j
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

async fn member(Reader(st): Reader, Path(name): Path<String>) -> ApiResult<Json<MemberJson>> {
    let changed = st.changes.lock().ok().and_then(|m| m.get(&name).copied());
    let mut states = st.cluster.states().await?;
    let rtt = st.cluster.member_rtt(&name).await?;
    st.cluster
        .members()
        .await?
        .iter()
        .find(|m| *m.name == *name)
        .map(|m| {
            let mut j = member_json(m, changed);
            j.state = states.remove(&name).unwrap_or_default();
            j.rtt_ms = rtt.map(|d| d.as_secs_f64() * 1e3);
            Json(j)
        })
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no member named {name:?}")))
}

/// Members by status, as JSON.
pub fn counts(stats: &Stats) -> Value {
    let m = stats.members;
    json!({ "alive": m.alive, "suspect": m.suspect, "dead": m.dead, "left": m.left })
}

async fn self_info(Reader(st): Reader) -> ApiResult<Json<Value>> {
    let local = st.cluster.local().await?;
    let stats = st.cluster.stats().await?;
    let mut j = member_json(&local, None);
    j.state = st
        .cluster
        .states()
        .await?
        .remove(&*local.name)
        .unwrap_or_default();
    let mut v = serde_json::to_value(j).unwrap_or(Value::Null);
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

/// `GET /v1/health/live`: 200 while the agent process serves requests,
/// whatever the cluster looks like (a liveness probe restarts what fails it).
async fn health_live(State(st): State<ApiState>) -> Response {
    let leaving = st.leaving.load(std::sync::atomic::Ordering::Relaxed);
    let body = json!({
        "status": "live",
        "name": st.cluster.name(),
        "leaving": leaving,
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /v1/health/ready`: 200 when the agent has joined and is not
/// isolated, else 503 with `"status"` saying why: `leaving`, `not joined`
/// (`"reason"`: the last join failure) or `isolated` (other members are
/// known but none is alive).
async fn health_ready(State(st): State<ApiState>) -> Response {
    let stats = match st.cluster.stats().await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let leaving = st.leaving.load(std::sync::atomic::Ordering::Relaxed);
    let m = &stats.members;
    // Others: every member but this one, left ones excepted (they meant to go).
    let alive_others = m.alive.saturating_sub(1);
    let others = alive_others + m.suspect + m.dead;
    if alive_others > 0 {
        st.join.set_joined();
    }
    let (status, reason) = if leaving {
        ("leaving", "the agent is leaving the cluster".to_string())
    } else if !st.join.is_joined() {
        let why = st
            .join
            .reason()
            .unwrap_or_else(|| "not joined yet".to_string());
        ("not joined", why)
    } else if others > 0 && alive_others == 0 {
        (
            "isolated",
            format!("{others} other member(s) known, none of them alive"),
        )
    } else {
        ("ready", String::new())
    };
    let mut body = json!({
        "status": status,
        "name": st.cluster.name(),
        "awareness": stats.awareness,
        "members": counts(&stats),
    });
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        body["reason"] = json!(reason);
        StatusCode::SERVICE_UNAVAILABLE
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
    Authorized(st): Authorized,
    body: Result<Json<JoinBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(bad_json)?;
    if body.addrs.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "addrs is empty".into()));
    }
    let seeds = resolve_seeds_with(&body.addrs, &st.dns_servers)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    let n = st.cluster.join(seeds).await?;
    st.join.set_joined();
    Ok(Json(json!({ "joined": n })))
}

async fn leave(Authorized(st): Authorized) -> ApiResult<Json<Value>> {
    st.leaving.store(true, std::sync::atomic::Ordering::Relaxed);
    st.cluster.leave(st.leave_timeout).await?;
    if let Some(tx) = &st.on_leave {
        let _ = tx.try_send(());
    }
    Ok(Json(json!({ "left": true })))
}

/// Body of `POST /v1/force-leave`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceLeaveBody {
    /// The member to mark left.
    pub name: String,
    /// Have every member forget it at once (no tombstone).
    #[serde(default)]
    pub prune: bool,
    /// Also for a member seen alive (it refutes if it is).
    #[serde(default)]
    pub force: bool,
}

async fn force_leave(
    Authorized(st): Authorized,
    body: Result<Json<ForceLeaveBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(b) = body.map_err(bad_json)?;
    if b.name.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "name is empty".into()));
    }
    st.cluster
        .force_leave(b.name.clone(), b.prune, b.force)
        .await?;
    tracing::info!(member = %b.name, prune = b.prune, force = b.force, "force-leave");
    Ok(Json(
        json!({ "name": b.name, "left": true, "pruned": b.prune }),
    ))
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
    Authorized(st): Authorized,
    body: Result<Json<TagsBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
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
    Authorized(st): Authorized,
    body: Result<Json<EventBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(bad_json)?;
    if body.name.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "name is empty".into()));
    }
    let ltime = st
        .cluster
        .user_event(body.name, body.payload.into_bytes())
        .await?;
    Ok(Json(json!({ "sent": true, "ltime": ltime })))
}

/// One user event as the SSE stream and the monitor show it. The payload
/// is text (bytes that are not UTF-8 are replaced by U+FFFD).
pub fn user_event_json(ev: &UserEvent) -> Value {
    json!({
        "type": "user",
        "name": ev.name,
        "payload": String::from_utf8_lossy(&ev.payload),
        "origin": &*ev.origin,
        "ltime": ev.ltime,
        "time_ms": epoch_ms(ev.at),
    })
}

/// One membership event as the SSE stream and the monitor show it.
pub fn event_json(ev: &MemberEvent) -> Value {
    json!({
        "type": kind_name(ev.kind),
        "time_ms": epoch_ms(ev.at),
        "member": member_json(&ev.member, Some(ev.at)),
    })
}

/// `GET /v1/events`: `since` (or a reconnecting client's `Last-Event-ID`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Replay the kept events numbered above this first (0: all kept).
    pub since: Option<u64>,
}

/// Where a client's replay starts: its `Last-Event-ID` (a reconnect), else
/// `?since=`, else nowhere (live only).
fn replay_from(
    q: Result<Query<EventsQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> ApiResult<Option<u64>> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{} (since is an event id: 0 or more)", e.body_text()),
        )
    })?;
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "Last-Event-ID must be an event id (0 or more)".into(),
                )
            }),
        None => Ok(q.since),
    }
}

/// The SSE form of a recorded event: its id, name and JSON.
fn recorded_sse(ev: &crate::history::Recorded) -> SseEvent {
    SseEvent::default()
        .id(ev.id.to_string())
        .event(ev.kind)
        .data(ev.data.clone())
}

async fn events(
    Reader(st): Reader,
    q: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let replay = st.history.replay(replay_from(q, &headers)?);
    let mut first: VecDeque<SseEvent> = replay.past.iter().map(|e| recorded_sse(e)).collect();
    if replay.missed > 0 {
        first.push_front(lagged(replay.missed));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold(
        (first, replay.live, tick, st),
        |(mut first, mut live, mut tick, st)| async move {
            if let Some(ev) = first.pop_front() {
                return Some((Ok(ev), (first, live, tick, st)));
            }
            let ev = tokio::select! {
                r = live.recv() => match r {
                    Ok(ev) => recorded_sse(&ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => lagged(n),
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
            Some((Ok(ev), (first, live, tick, st)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn lagged(n: u64) -> SseEvent {
    SseEvent::default()
        .event("lagged")
        .data(json!({ "missed": n }).to_string())
}

/// A key from the path: percent-decoded, UTF-8, 1 to 256 bytes.
fn path_key(p: Result<Path<String>, PathRejection>, what: &str) -> ApiResult<String> {
    let Path(key) = p.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "bad {what} key in the path (keys are UTF-8): {}",
                e.body_text()
            ),
        )
    })?;
    if key.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("empty {what} key"),
        ));
    }
    Ok(key)
}

/// A value as JSON: `value` holds the text when it is UTF-8; otherwise it
/// is null and `value_hex` holds the bytes.
fn value_fields(obj: &mut serde_json::Map<String, Value>, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            obj.insert("value".into(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(t) => {
                obj.insert("value".into(), json!(t));
            }
            Err(_) => {
                obj.insert("value".into(), Value::Null);
                obj.insert("value_hex".into(), json!(crate::kv_context::hex(b)));
            }
        },
    }
}

/// One replicated entry as the API shows it.
pub fn kv_json(key: &str, entry: &KvEntry) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("key".into(), json!(key));
    match entry {
        KvEntry::Lww(e) => {
            o.insert("mode".into(), json!("lww"));
            value_fields(&mut o, e.value.as_deref());
            o.insert("writer".into(), json!(&*e.ts.node));
            o.insert("time_us".into(), json!(e.ts.wall));
        }
        KvEntry::Siblings(s) => {
            o.insert("mode".into(), json!("siblings"));
            let values: Vec<Value> = s
                .values()
                .map(|v| {
                    let mut m = serde_json::Map::new();
                    value_fields(&mut m, Some(v));
                    Value::Object(m)
                })
                .collect();
            o.insert("values".into(), Value::Array(values));
            o.insert(
                "context".into(),
                json!(crate::kv_context::encode(s.context())),
            );
        }
    }
    Value::Object(o)
}

async fn kv_get(Reader(st): Reader, Key(key): Key) -> ApiResult<Json<Value>> {
    match st.cluster.kv_get(key.clone()).await? {
        Some(e) => Ok(Json(kv_json(&key, &e))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no key {key:?}"))),
    }
}

/// The body, or the error for a body that could not be read (413 over [`MAX_BODY`]).
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large()
        } else {
            ApiError(e.status(), format!("bad request body: {}", e.body_text()))
        }
    })
}

/// Write or delete `key`, in the causal context `read` when given
/// (siblings-mode keys need one; last-write-wins keys ignore it).
async fn kv_write(
    st: &ApiState,
    key: String,
    value: Option<Vec<u8>>,
    read: Option<rumor::VersionVector>,
) -> ApiResult<()> {
    match read {
        Some(read) => st.cluster.kv_write_in_context(key, value, read).await?,
        None => st.cluster.kv_write(key, value).await?,
    }
    Ok(())
}

async fn kv_put(
    Authorized(st): Authorized,
    Key(key): Key,
    WriteContext(read): WriteContext,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body_bytes(body)?;
    kv_write(&st, key.clone(), Some(body.to_vec()), read).await?;
    Ok(Json(json!({ "key": key, "written": true })))
}

async fn kv_delete(
    Authorized(st): Authorized,
    Key(key): Key,
    WriteContext(read): WriteContext,
) -> ApiResult<Json<Value>> {
    kv_write(&st, key.clone(), None, read).await?;
    Ok(Json(json!({ "key": key, "deleted": true })))
}

/// Query of `GET /v1/kv` and `GET /v1/kv-watch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixQuery {
    /// Only keys starting with this (all when absent).
    #[serde(default)]
    pub prefix: String,
}

fn prefix_of(q: Result<Query<PrefixQuery>, QueryRejection>) -> ApiResult<String> {
    q.map(|Query(q)| q.prefix)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn kv_list(
    Reader(st): Reader,
    q: Result<Query<PrefixQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let prefix = prefix_of(q)?;
    let list: Vec<Value> = st
        .cluster
        .kv_scan(prefix)
        .await?
        .iter()
        .map(|(k, e)| kv_json(k, e))
        .collect();
    Ok(Json(Value::Array(list)))
}

/// One key change as `GET /v1/kv-watch` shows it.
pub fn kv_change_json(ch: &KvChange) -> Value {
    let mut v = kv_json(&ch.key, &ch.new);
    if let Value::Object(o) = &mut v {
        o.insert("deleted".into(), json!(ch.new.is_tombstone()));
        o.insert("time_ms".into(), json!(epoch_ms(ch.at)));
    }
    v
}

async fn kv_watch(
    Reader(st): Reader,
    q: Result<Query<PrefixQuery>, QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let prefix = prefix_of(q)?;
    let rx = st.cluster.subscribe(EventFilter::KV)?;
    let stream = futures_util::stream::unfold((rx, prefix), |(mut rx, prefix)| async move {
        loop {
            let ev = match rx.recv().await {
                Ok(Event::Kv(ch)) if ch.key.starts_with(&prefix) => SseEvent::default()
                    .event("kv")
                    .data(kv_change_json(&ch).to_string()),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                    .event("lagged")
                    .data(json!({ "missed": n }).to_string()),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok(ev), (rx, prefix)));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn state_put(
    Authorized(st): Authorized,
    Key(key): Key,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body_bytes(body)?;
    let value = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "a state value is text: the body is not UTF-8".into(),
        )
    })?;
    let tracked = st.aggregates.lock().is_ok_and(|a| a.contains(&key));
    if tracked {
        if let Ok(x) = value.trim().parse::<f64>() {
            if !x.is_finite() {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{key:?} is aggregated: its value must be a finite number, got {value:?}"
                    ),
                ));
            }
        }
    }
    st.cluster
        .state_write(key.clone(), Some(value.clone()))
        .await?;
    Ok(Json(json!({ "key": key, "value": value })))
}

async fn state_delete(Authorized(st): Authorized, Key(key): Key) -> ApiResult<Json<Value>> {
    st.cluster.state_write(key.clone(), None).await?;
    Ok(Json(json!({ "key": key, "deleted": true })))
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// An aggregate estimate as the API shows it (non-finite numbers as null).
pub fn estimate_json(name: &str, e: &Estimate) -> Value {
    json!({
        "name": name,
        "avg": finite(e.avg),
        "sum": finite(e.sum),
        "count": finite(e.count),
        "min": finite(e.min),
        "max": finite(e.max),
        "change": finite(e.change),
        "converged": e.converged,
        "epoch": e.epoch,
    })
}

async fn aggregate(
    Reader(st): Reader,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let name = path_key(name, "aggregate")?;
    st.cluster.track_aggregate(name.clone()).await?;
    if let Ok(mut a) = st.aggregates.lock() {
        a.insert(name.clone());
    }
    Ok(match st.cluster.aggregate(name.clone()).await? {
        Some(e) => Json(estimate_json(&name, &e)).into_response(),
        None => (
            StatusCode::ACCEPTED,
            Json(json!({ "name": name, "pending": true })),
        )
            .into_response(),
    })
}

async fn aggregates(Reader(st): Reader) -> ApiResult<Json<Value>> {
    let names: Vec<String> = st
        .aggregates
        .lock()
        .map(|a| a.iter().cloned().collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(match st.cluster.aggregate(name.clone()).await? {
            Some(e) => estimate_json(&name, &e),
            None => json!({ "name": name, "pending": true }),
        });
    }
    Ok(Json(Value::Array(out)))
}

/// A key's fingerprint: the first 8 bytes of SHA-256 over a fixed label and
/// the key's 32 bytes, as 16 hex digits. It names a key without revealing
/// any of it (`rumor keys fingerprint KEY` computes it offline). `hex` is a
/// key as the node holds it (64 hex digits); anything else is hashed as text.
pub fn key_fingerprint(hex: &str) -> String {
    match hex.parse::<rumor::Key>() {
        Ok(key) => key.fingerprint(),
        Err(_) => rumor::keyring::fingerprint_of(hex.as_bytes()),
    }
}

/// The keyring as the API shows it: fingerprints only, never key material.
pub fn keys_json(view: &KeyringView) -> Value {
    let keys: Vec<String> = view.keys.iter().map(|k| key_fingerprint(k)).collect();
    json!({
        "primary": view.primary.as_deref().map(key_fingerprint),
        "keys": keys,
    })
}

async fn get_keys(Authorized(st): Authorized) -> ApiResult<Json<Value>> {
    Ok(Json(keys_json(&st.cluster.keys()?)))
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
    Authorized(st): Authorized,
    body: Result<Json<KeyOpBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(bad_json)?;
    let op = body.op.unwrap_or_else(|| "install".into());
    if op != "install" && op != "use" {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown op {op:?}: expected install or use"),
        ));
    }
    let op = crate::keyring_sync::KeyOp {
        op,
        key: Some(body.key),
    };
    let view = crate::keyring_sync::apply(&st.cluster, st.keyring_file.as_deref(), &op)?;
    Ok(Json(keys_json(&view)))
}

/// Body of `DELETE /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// The key, hex.
    pub key: String,
}

async fn delete_keys(
    Authorized(st): Authorized,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(bad_json)?;
    let op = crate::keyring_sync::KeyOp {
        op: "remove".into(),
        key: Some(body.key),
    };
    let view = crate::keyring_sync::apply(&st.cluster, st.keyring_file.as_deref(), &op)?;
    Ok(Json(keys_json(&view)))
}

async fn metrics(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    // Prometheus sends a bearer token with `authorization: {credentials: ...}`.
    if let Err(e) = check_read_token(&st, &headers) {
        return e.into_response();
    }
    match &st.metrics {
        Some(h) => {
            // The library exports once a second; a scrape reads the node now.
            if let Ok(stats) = st.cluster.stats().await {
                rumor::metrics::export(st.cluster.name(), &stats);
            }
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                crate::metrics::render(h, st.cluster.name()),
            )
                .into_response()
        }
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
        .route("/", get(dashboard_page))
        .route("/login", axum::routing::post(login))
        .route("/v1/members", get(members))
        .route("/v1/members/{name}", get(member))
        .route("/v1/self", get(self_info))
        .route("/v1/info", get(crate::info::info))
        .route("/v1/health", get(health))
        .route("/v1/health/live", get(health_live))
        .route("/v1/health/ready", get(health_ready))
        .route("/v1/join", axum::routing::post(join))
        .route("/v1/leave", axum::routing::post(leave))
        .route("/v1/force-leave", axum::routing::post(force_leave))
        .route("/v1/tags", axum::routing::put(put_tags))
        .route("/v1/event", axum::routing::post(post_event))
        .route("/v1/events", get(events))
        .route("/v1/timeseries", get(crate::timeseries::get))
        .route(
            "/v1/query",
            axum::routing::post(crate::http_query::post_query),
        )
        .route("/v1/kv", get(kv_list))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/kv-watch", get(kv_watch))
        .route("/v1/kv-export", get(crate::kv_backup::export))
        .route(
            "/v1/kv-import",
            axum::routing::post(crate::kv_backup::import),
        )
        .route(
            "/v1/state/{*key}",
            axum::routing::put(state_put).delete(state_delete),
        )
        .route("/v1/aggregate/{name}", get(aggregate))
        .route("/v1/aggregates", get(aggregates))
        .route(
            "/v1/keys",
            get(get_keys).post(post_keys).delete(delete_keys),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .with_state(state)
}

/// Answer 413 to a request whose `Content-Length` is over [`MAX_BODY`]
/// before any handler runs, after draining up to [`DRAIN_MAX`] of it (see
/// there). Bodies without a length are cut at the limit by the extractors.
async fn refuse_large_bodies(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(len) = declared.filter(|&n| n > MAX_BODY as u64) else {
        return next.run(req).await;
    };
    if len <= DRAIN_MAX {
        use futures_util::StreamExt;
        let mut data = req.into_body().into_data_stream();
        let drain = async {
            let mut read = 0u64;
            while let Some(Ok(chunk)) = data.next().await {
                read += chunk.len() as u64;
                if read > DRAIN_MAX {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    body_too_large().into_response()
}

/// Serve `router` on `listener` until the task is aborted (open event
/// streams never end by themselves, so there is no graceful drain). On a
/// loopback listener every request first passes [`host_guard`].
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let router = if local.ip().is_loopback() {
        router.layer(axum::middleware::from_fn_with_state(local, host_guard))
    } else {
        router
    };
    axum::serve(listener, router).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_hide_the_key() {
        let key = "01".repeat(32);
        let fp = key_fingerprint(&key);
        assert_eq!(fp.len(), 16);
        assert!(!key.contains(&fp[..8]), "{fp}");
        assert_eq!(fp, key_fingerprint(&key));
        assert_ne!(fp, key_fingerprint(&"02".repeat(32)));
        let v = keys_json(&KeyringView {
            primary: Some(key.clone()),
            keys: vec![key.clone()],
        });
        assert!(!v.to_string().contains(&key[..16]), "{v}");
        assert_eq!(v["primary"], v["keys"][0]);
    }
}
