//! `/healthz` (the process answers) and `/readyz` (it takes work: the
//! engine is open, its journal takes writes, and the server is not shutting
//! down).
//!
//! Owns only these two answers; it must never do work that could make a
//! probe slow.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use retrace_engine::store::StorageHealth;

use crate::error::Error;
use crate::state::AppState;

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `ok` for `/healthz`, `ready` for `/readyz`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// `GET /healthz`: always `200` while the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getLiveness",
    tag = "health",
    summary = "Liveness: the process serves HTTP",
    responses((status = 200, description = "Always, while the process serves HTTP: `{\"status\":\"ok\"}`.", body = HealthView)),
)]
pub async fn live() -> impl IntoResponse {
    axum::Json(HealthView { status: "ok" })
}

/// `GET /readyz`: `200` while serving; `503 unavailable` once shutdown
/// began; `503 storage_unavailable` while the journal's storage refuses
/// writes.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "getReadiness",
    tag = "health",
    summary = "Readiness: the server takes work",
    description = "`503 unavailable` from the moment shutdown begins; `503 storage_unavailable` \
                   (with the reason, and `Retry-After`) while the journal's storage refuses \
                   writes, such as when its disk is full. The server recovers from that on its own.",
    responses((status = 200, description = "Serving: `{\"status\":\"ready\"}`.", body = HealthView)),
)]
pub async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    if state.shutdown.is_triggered() {
        return Err(Error::Unavailable("the server is shutting down".into()));
    }
    if let StorageHealth::Unavailable { since_ms, reason } = state.engine.storage_health() {
        let since = crate::time::rfc3339(since_ms);
        return Err(Error::StorageUnavailable(format!(
            "the journal's storage refuses writes since {since} (free space on the data \
             folder's disk if it is full; the server resumes on its own): {reason}"
        )));
    }
    Ok(axum::Json(HealthView { status: "ready" }))
}
