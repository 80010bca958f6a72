//! `/v1/executions`: start, list, read one, and page through its events.
//!
//! Owns the request shapes of these endpoints, page sizes and cursors. It
//! must never change an execution except by starting one; commands live in
//! `commands`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use retrace_engine::machine::Status;
use retrace_engine::runtime::StartRequest;
use retrace_journal::ExecutionId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::extract::{Json, Path, Query, execution_id};
use crate::state::{ApiConfig, AppState};
use crate::views::{EventView, ExecutionSummaryView, ExecutionView};

/// The longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    workflow: String,
    version: Option<String>,
    #[serde(default)]
    input: Value,
    idempotency_key: Option<String>,
}

#[derive(Debug, Serialize)]
struct StartedView {
    id: ExecutionId,
    status: &'static str,
    /// `false` when the idempotency key named an execution started before.
    created: bool,
}

/// `POST /v1/executions`: `201` when started, `200` when the idempotency key
/// names an execution started before (same id).
pub async fn start(
    State(state): State<AppState>,
    Json(body): Json<StartBody>,
) -> Result<impl IntoResponse, Error> {
    if let Some(key) = &body.idempotency_key
        && (key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX)
    {
        return Err(Error::InvalidBody(format!(
            "idempotencyKey must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes, not {}",
            key.len()
        )));
    }
    let started = state
        .engine
        .start(StartRequest {
            workflow: body.workflow,
            version: body.version,
            input: body.input,
            idempotency_key: body.idempotency_key,
        })
        .await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let view = StartedView {
        id: started.id,
        status: started.status.as_str(),
        created: started.created,
    };
    Ok((status, axum::Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListView {
    executions: Vec<ExecutionSummaryView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<ExecutionId>,
}

/// A page size from a query: the default when absent, at most the cap.
pub fn page_limit(limit: Option<usize>, config: &ApiConfig) -> Result<usize, Error> {
    match limit {
        None => Ok(config.page_limit_default),
        Some(0) => Err(Error::InvalidQuery("limit must be at least 1".into())),
        Some(n) => Ok(n.min(config.page_limit_max)),
    }
}

/// `GET /v1/executions?workflow=&status=&limit=&cursor=`, in id order (ids
/// are time-ordered, so oldest first).
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, Error> {
    let limit = page_limit(query.limit, &state.config)?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(Error::InvalidQuery)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<ExecutionId>().map_err(|_| {
                Error::InvalidQuery(format!("cursor {c} is not a cursor this API issued"))
            })
        })
        .transpose()?;
    let mut page = state.engine.executions(
        query.workflow.as_deref(),
        status,
        after,
        limit.saturating_add(1),
    );
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|s| s.id)
    } else {
        None
    };
    Ok(axum::Json(ListView {
        executions: page.iter().map(ExecutionSummaryView::from).collect(),
        next_cursor,
    }))
}

/// `GET /v1/executions/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let id = execution_id(&id)?;
    let execution = state.engine.state(id).await?;
    let now_ms = state.engine.clock().now_ms();
    Ok(axum::Json(ExecutionView::new(&execution, now_ms)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct EventsView {
    events: Vec<EventView>,
}

/// `GET /v1/executions/{id}/events?after=<seq>&limit=`: events with
/// `seq > after`, oldest first.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<impl IntoResponse, Error> {
    let id = execution_id(&id)?;
    let limit = page_limit(query.limit, &state.config)?;
    if state.engine.summary(id).is_none() {
        return Err(Error::UnknownExecution(id.to_string()));
    }
    let from_seq = query.after.unwrap_or(0).saturating_add(1);
    let events = state
        .engine
        .history(id, from_seq, limit)?
        .iter()
        .map(EventView::from_history)
        .collect();
    Ok(axum::Json(EventsView { events }))
}
