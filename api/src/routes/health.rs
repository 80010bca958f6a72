//! `/healthz` (the process answers) and `/readyz` (it takes work: the
//! engine is open and the server is not shutting down).
//!
//! Owns only these two answers; it must never do work that could make a
//! probe slow.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

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

/// `GET /readyz`: `200` while serving, `503 unavailable` once shutdown began.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "getReadiness",
    tag = "health",
    summary = "Readiness: the server takes work",
    description = "`503 unavailable` from the moment shutdown begins.",
    responses((status = 200, description = "Serving: `{\"status\":\"ready\"}`.", body = HealthView)),
)]
pub async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    if state.shutdown.is_triggered() {
        return Err(Error::Unavailable("the server is shutting down".into()));
    }
    Ok(axum::Json(HealthView { status: "ready" }))
}
