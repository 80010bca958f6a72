//! `/v1/tasks`: agents long-poll for tasks and report each one's result,
//! failure or liveness.
//!
//! Owns the task bodies and the long poll's end at shutdown. It must never
//! decide what a result means (the engine's machine does) and never accept a
//! result twice: a task that is not outstanding is `409 not_outstanding` and
//! changes nothing.

use axum::extract::State;
use axum::response::IntoResponse;
use retrace_engine::machine::{ErrorInfo, task_execution};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::extract::{Json, OptionalJson, Path, agent_id};
use crate::state::AppState;
use crate::time::rfc3339;
use crate::views::TaskView;

/// The longest error type an agent may report, in bytes.
pub const ERROR_TYPE_BYTES_MAX: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollBody {
    agent_id: String,
    wait_ms: Option<u64>,
    max: Option<usize>,
}

#[derive(Debug, Serialize)]
struct TasksView {
    tasks: Vec<TaskView>,
}

/// `POST /v1/tasks/poll`: claims up to `max` (default 1) tasks, waiting up
/// to `waitMs` for one; an empty list when the wait ends (or the server
/// shuts down).
pub async fn poll(
    State(state): State<AppState>,
    Json(body): Json<PollBody>,
) -> Result<impl IntoResponse, Error> {
    let agent = agent_id(&body.agent_id)?;
    let wait_ms = body.wait_ms.unwrap_or(state.config.poll_wait_ms_default);
    let max = body.max.unwrap_or(1);
    // Dropping the poll loses nothing: the registry claims tasks only in the
    // step that returns them.
    let claimed = tokio::select! {
        claimed = state.engine.poll_tasks(&agent, wait_ms, max) => claimed?,
        () = state.shutdown.triggered() => Vec::new(),
    };
    let tasks = claimed.iter().map(TaskView::from).collect();
    Ok(axum::Json(TasksView { tasks }))
}

#[derive(Debug, Serialize)]
struct Accepted {
    id: String,
    accepted: bool,
}

/// The task id, if it can name a task at all.
fn task(id: &str) -> Result<(), Error> {
    match task_execution(id) {
        Some(_) => Ok(()),
        None => Err(Error::UnknownTask(id.to_owned())),
    }
}

/// Engine refusals, as a task's caller should see them: a task of an
/// execution that is gone or ended is simply not outstanding.
fn task_error(id: &str, e: retrace_engine::runtime::Error) -> Error {
    match Error::from(e) {
        Error::UnknownExecution(_) => Error::UnknownTask(id.to_owned()),
        Error::WrongState(why) => {
            Error::NotOutstanding(format!("task {id} is not outstanding: {why}"))
        }
        other => other,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    #[serde(default)]
    output: Value,
}

/// `POST /v1/tasks/{id}/complete` `{"output"}`.
pub async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CompleteBody>,
) -> Result<impl IntoResponse, Error> {
    task(&id)?;
    state
        .engine
        .complete_task(&id, body.output)
        .await
        .map_err(|e| task_error(&id, e))?;
    Ok(axum::Json(Accepted { id, accepted: true }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    message: String,
    retryable: Option<bool>,
}

/// `POST /v1/tasks/{id}/fail` `{"error":{"type","message","retryable"?}}`:
/// the step's retry policy decides what follows.
pub async fn fail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<FailBody>,
) -> Result<impl IntoResponse, Error> {
    task(&id)?;
    let kind = body.error.kind;
    if kind.is_empty() || kind.len() > ERROR_TYPE_BYTES_MAX {
        return Err(Error::InvalidBody(format!(
            "error.type must be 1 to {ERROR_TYPE_BYTES_MAX} bytes, not {}",
            kind.len()
        )));
    }
    let mut error = ErrorInfo::new(kind, body.error.message);
    error.retryable = body.error.retryable;
    state
        .engine
        .fail_task(&id, error)
        .await
        .map_err(|e| task_error(&id, e))?;
    Ok(axum::Json(Accepted { id, accepted: true }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatBody {
    /// When given, a task claimed by another agent is refused (`not_yours`).
    agent_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Extended {
    id: String,
    lease_ms: u64,
    lease_deadline: String,
}

/// `POST /v1/tasks/{id}/heartbeat`: extends the claim as a fresh claim
/// would last.
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<HeartbeatBody>,
) -> Result<impl IntoResponse, Error> {
    task(&id)?;
    let agent = body.agent_id.as_deref().map(agent_id).transpose()?;
    let claim = state.engine.agents().task_heartbeat(&id, agent.as_ref())?;
    let now_ms = state.engine.clock().now_ms();
    Ok(axum::Json(Extended {
        id,
        lease_ms: claim.lease_deadline_ms.saturating_sub(now_ms),
        lease_deadline: rfc3339(claim.lease_deadline_ms),
    }))
}
