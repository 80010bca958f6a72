//! Commands on one execution (`pause`, `resume`, `cancel`, `terminate`,
//! `retry`, `skip`, `redrive`) and external events (`signals/{name}` to one
//! execution, `/v1/events/{name}` to every execution waiting on the name).
//!
//! Owns the command bodies and their checks. It must never decide whether a
//! command fits the execution's state: the engine refuses it (`409
//! wrong_state`) and then nothing is journaled.

use axum::extract::State;
use axum::response::IntoResponse;
use retrace_engine::machine::ExecutionState;
use retrace_journal::ExecutionId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::extract::{OptionalJson, Path, execution_id};
use crate::state::AppState;

/// The longest `reason`, in bytes.
pub const REASON_BYTES_MAX: usize = 1024;
/// The longest event name, in bytes (the workflow language's limit).
pub const EVENT_NAME_BYTES_MAX: usize = 128;

/// A command's answer: the execution's status after it.
#[derive(Debug, Serialize)]
pub struct CommandView {
    id: ExecutionId,
    status: &'static str,
}

impl From<ExecutionState> for CommandView {
    fn from(s: ExecutionState) -> Self {
        CommandView {
            id: s.id,
            status: s.status.as_str(),
        }
    }
}

/// A body with nothing in it (`{}` or no body at all).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    reason: Option<String>,
    #[serde(default)]
    compensate: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipBody {
    #[serde(default)]
    output: Value,
}

/// The reason recorded in the event: the caller's, or one saying where the
/// command came from.
fn reason(given: Option<String>, command: &str) -> Result<String, Error> {
    match given {
        Some(r) if r.len() > REASON_BYTES_MAX => Err(Error::InvalidBody(format!(
            "reason must be at most {REASON_BYTES_MAX} bytes, not {}",
            r.len()
        ))),
        Some(r) => Ok(r),
        None => Ok(format!("{command} requested over the HTTP API")),
    }
}

type Answer = Result<axum::Json<CommandView>, Error>;

fn answer(state: ExecutionState) -> Answer {
    Ok(axum::Json(CommandView::from(state)))
}

pub async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Answer {
    let id = execution_id(&id)?;
    let reason = reason(body.reason, "pause")?;
    answer(state.engine.pause(id, &reason).await?)
}

pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Answer {
    answer(state.engine.resume(execution_id(&id)?).await?)
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Answer {
    let id = execution_id(&id)?;
    let reason = reason(body.reason, "cancel")?;
    answer(state.engine.cancel(id, &reason, body.compensate).await?)
}

pub async fn terminate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Answer {
    let id = execution_id(&id)?;
    let reason = reason(body.reason, "terminate")?;
    answer(state.engine.terminate(id, &reason).await?)
}

pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Answer {
    answer(state.engine.retry(execution_id(&id)?).await?)
}

pub async fn skip(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<SkipBody>,
) -> Answer {
    answer(state.engine.skip(execution_id(&id)?, body.output).await?)
}

pub async fn redrive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Answer {
    answer(state.engine.redrive(execution_id(&id)?).await?)
}

/// An external event's body: both fields may be left out (`null`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    #[serde(default)]
    payload: Value,
    correlation: Option<Value>,
}

/// Checks an event name by the workflow language's rule: 1 to 128 bytes,
/// `A-Z a-z 0-9` first, then `A-Z a-z 0-9 _ . : / -`.
pub fn check_event_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'));
    if first_ok && rest_ok && name.len() <= EVENT_NAME_BYTES_MAX {
        Ok(())
    } else {
        Err(Error::InvalidBody(format!(
            "event name `{name}` is not well-formed: 1 to {EVENT_NAME_BYTES_MAX} bytes, \
             a letter or digit first, then letters, digits, `_`, `.`, `:`, `/` and `-`"
        )))
    }
}

/// `POST /v1/executions/{id}/signals/{name}`: delivers the event to this
/// execution (kept until a step waits for it, if none does yet).
pub async fn signal(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<EventBody>,
) -> Answer {
    let id = execution_id(&id)?;
    check_event_name(&name)?;
    answer(
        state
            .engine
            .signal(id, &name, body.payload, body.correlation)
            .await?,
    )
}

#[derive(Debug, Serialize)]
pub struct DeliveredView {
    delivered: Vec<ExecutionId>,
}

/// `POST /v1/events/{name}`: delivers the event to every execution waiting
/// on `name` whose correlation matches.
pub async fn publish(
    State(state): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<EventBody>,
) -> Result<impl IntoResponse, Error> {
    check_event_name(&name)?;
    let delivered = state
        .engine
        .publish(&name, body.payload, body.correlation)
        .await?;
    Ok(axum::Json(DeliveredView { delivered }))
}
