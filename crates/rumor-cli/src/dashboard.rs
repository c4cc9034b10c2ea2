//! The dashboard at `/`: one static page (HTML, CSS and JavaScript, no build
//! step) embedded in the binary. It loads `/v1/members` and `/v1/self`, then
//! follows `/v1/events` (server-sent events) to keep the member table, the
//! event log and the status panel current.

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
