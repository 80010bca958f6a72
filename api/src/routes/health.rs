//! `/healthz` (the process answers) and `/readyz` (it takes work: the
//! engine is open and the server is not shutting down).
//!
//! Owns only these two answers; it must never do work that could make a
//! probe slow.

use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use crate::error::Error;
use crate::state::AppState;

/// `GET /healthz`: always `200` while the process serves HTTP.
pub async fn live() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: `200` while serving, `503 unavailable` once shutdown began.
pub async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    if state.shutdown.is_triggered() {
        return Err(Error::Unavailable("the server is shutting down".into()));
    }
    Ok(axum::Json(json!({ "status": "ready" })))
}
