//! The dashboard at `/`: one static page (HTML, CSS and JavaScript, no build
//! step, no external resources) embedded in the binary. It loads
//! `/v1/members` and `/v1/self`, then follows `/v1/events?since=0`
//! (server-sent events: the agent's kept history, then live) to keep the
//! member table, the event log and the status panel current; it polls
//! `/v1/aggregates` for the panel of tracked aggregates, and
//! `/v1/timeseries` (every sampling interval) for the "Last hour" panel:
//! small inline-SVG charts of members by status, suspicions and failures
//! per minute, bytes per second and events per minute, drawn by the page
//! itself (no chart library), with the propagation budget of `/v1/info`
//! beside them when the agent reports one.
//!
//! Built for large clusters: the member table keeps every member in memory
//! but puts only the rows in view in the DOM (virtual scrolling), with a
//! search box (name, address, tags) and a status filter; an event marks one
//! member changed and one redraw per animation frame updates the visible
//! rows it touched. Clicking a row opens the member's drill-down (its
//! per-node state from `/v1/members/{name}` and its events from the page's
//! log); the key browser lists `/v1/kv?prefix=` in pages and shows one
//! entry from `/v1/kv/{key}`.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
}
