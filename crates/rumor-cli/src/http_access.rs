//! Who may use the HTTP API: the bearer tokens (write, and the optional
//! read token), the dashboard's session cookie, and the `Host` check of a
//! loopback listener (DNS rebinding). The rules, in docs/http-api.md:
//!
//! - writes and the keyring need the write token, when the agent has one;
//! - reads need the read token or the write token, when the agent has a
//!   read token; a browser signed in to the dashboard reads with its cookie;
//! - on a loopback bind, a `Host` that is not a loopback name gets 421.
//!
//! Tokens are compared in constant time; the cookie holds a hash of the
//! token, never the token. Every refusal is counted in
//! `rumor_http_refused_total{reason}` ([`refused`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::{body_bytes, ApiError, ApiResult, ApiState};

/// The counter of refused API requests.
pub const REFUSED_METRIC: &str = crate::metrics::HTTP_REFUSED.name;

/// Count one refused request: `reason` is `token_missing`, `token_wrong`,
/// `host` or `body_too_large`.
pub fn refused(reason: &'static str) {
    metrics::counter!(REFUSED_METRIC, "reason" => reason).increment(1);
}

/// `e`, counted as refused for `reason`.
pub fn refused_with(reason: &'static str, e: ApiError) -> ApiError {
    refused(reason);
    e
}

/// Check the bearer token of a request against the tokens that grant it
/// (`flag` names the agent's flag in the 401 message).
fn check_bearer(headers: &HeaderMap, accepted: &[&Arc<str>], flag: &str) -> ApiResult<()> {
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match got {
        None => Err(refused_with(
            "token_missing",
            ApiError(
                StatusCode::UNAUTHORIZED,
                format!(
                "this endpoint needs Authorization: Bearer <token> (the agent runs with {flag})"
            ),
            ),
        )),
        // Compare with every token, so the time taken does not say which matched.
        Some(t) => {
            let ok = accepted.iter().fold(false, |ok, want| {
                constant_time_eq(t.as_bytes(), want.as_bytes()) | ok
            });
            if ok {
                Ok(())
            } else {
                Err(refused_with(
                    "token_wrong",
                    ApiError(StatusCode::FORBIDDEN, "wrong bearer token".into()),
                ))
            }
        }
    }
}

/// The write check: the write token, when the agent has one.
fn check_token(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    match &state.token {
        None => Ok(()),
        Some(want) => check_bearer(headers, &[want], "--http-token"),
    }
}

/// The read check: the read token or the write token, when the agent has a
/// read token. A
/// browser that signed in to the dashboard ([`login`]) passes with its
/// session cookie instead (reads only).
pub fn check_read_token(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(read) = &state.read_token else {
        return Ok(());
    };
    let accepted: Vec<&Arc<str>> = std::iter::once(read).chain(&state.token).collect();
    if !headers.contains_key(header::AUTHORIZATION) && has_session(headers, &accepted) {
        return Ok(());
    }
    check_bearer(headers, &accepted, "--http-read-token")
}

/// Name of the dashboard's session cookie.
const SESSION_COOKIE: &str = "rumor_session";

/// The session cookie's value for `token`: a hash, so the cookie never
/// holds the token itself and is always cookie-safe text.
fn session_value(token: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"rumor dashboard session\0");
    h.update(token.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the request carries a session cookie made from one of `accepted`.
fn has_session(headers: &HeaderMap, accepted: &[&Arc<str>]) -> bool {
    let wanted: Vec<String> = accepted.iter().map(|t| session_value(t)).collect();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .any(|(_, v)| {
            wanted.iter().fold(false, |ok, w| {
                constant_time_eq(v.as_bytes(), w.as_bytes()) | ok
            })
        })
}

/// The page `/` shows instead of the dashboard when the agent has a read
/// token and the browser has not signed in.
const LOGIN_HTML: &str = "<!doctype html><meta charset=utf-8><title>rumor</title>\
<p>This agent's API needs a token (it runs with --http-read-token).</p>\
<form method=post action=/login><input type=password name=token autofocus \
placeholder=\"read or write token\"> <button>Open the dashboard</button></form>";

/// `GET /`: the dashboard, or the sign-in form when reads need a token and
/// the browser has no session.
pub async fn dashboard_page(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if check_read_token(&st, &headers).is_ok() {
        return crate::dashboard::index().await.into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        LOGIN_HTML,
    )
        .into_response()
}

/// Form of `POST /login`.
#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /login` (form field `token`): with the read or the write token,
/// sets the session cookie (HttpOnly, SameSite=Strict; it grants reads only)
/// and sends the browser to the dashboard.
pub async fn login(State(st): State<ApiState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let form = std::str::from_utf8(&body)
        .ok()
        .and_then(|b| format!("/?{b}").parse::<axum::http::Uri>().ok())
        .and_then(|uri| Query::<LoginForm>::try_from_uri(&uri).ok());
    let Some(Query(form)) = form else {
        return ApiError(
            StatusCode::BAD_REQUEST,
            "expected a form with a token field".into(),
        )
        .into_response();
    };
    if st.read_token.is_none() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    }
    // The form's token is checked as a bearer token would be.
    let mut headers = HeaderMap::new();
    if let Ok(v) = format!("Bearer {}", form.token.trim()).parse() {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Err(e) = check_read_token(&st, &headers) {
        return e.into_response();
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        session_value(form.token.trim())
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response()
}

/// A request that passed the bearer-token check ([`check_token`]): the
/// extractor every write endpoint (and the keyring listing) starts with.
pub struct Authorized(pub ApiState);

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        check_token(state, &parts.headers)?;
        Ok(Authorized(state.clone()))
    }
}

/// A request that passed the read check ([`check_read_token`]): the
/// extractor every read endpoint but `/v1/health` starts with.
pub struct Reader(pub ApiState);

impl FromRequestParts<ApiState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        check_read_token(state, &parts.headers)?;
        Ok(Reader(state.clone()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuse (421) a request to a loopback listener whose `Host` is not a
/// loopback name: a web page whose DNS name was rebound to 127.0.0.1 reaches
/// the API with its own name as `Host`, and is refused here. A request
/// without any `Host` (HTTP/1.0 tools; browsers always send one) passes.
pub async fn host_guard(State(bound): State<SocketAddr>, req: Request, next: Next) -> Response {
    let host = match req.headers().get(header::HOST) {
        Some(h) => Some(h.to_str().unwrap_or("")),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    match host {
        Some(h) if !host_allowed(h, bound) => refused_with("host", ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {:?} is not this agent: on a loopback address the API answers only to localhost or a loopback address such as 127.0.0.1 or [::1] (DNS rebinding protection)",
                h.chars().take(100).collect::<String>()
            ),
        ))
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Whether `host` (a `Host` header: a name or address, with an optional
/// port) names a loopback listener bound at `bound`: `localhost`, a loopback
/// address or the bound address.
pub fn host_allowed(host: &str, bound: SocketAddr) -> bool {
    let host = host.trim();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, tail)) => match tail.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return false,
            },
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == bound.ip(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names() {
        let bound: SocketAddr = "127.0.0.1:7947".parse().unwrap();
        for ok in [
            "localhost",
            "localhost:7947",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:7947",
            "[::1]",
            "[::1]:7947",
            "127.0.0.2:80",
        ] {
            assert!(host_allowed(ok, bound), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7947",
            "localhost.evil.example",
            "10.0.0.1:7947",
            "[::1",
            "[::1]x",
            "[::1]:",
            "localhost:",
            "localhost:x",
            "",
        ] {
            assert!(!host_allowed(bad, bound), "{bad}");
        }
    }
}
