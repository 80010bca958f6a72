//! Commands on one execution (`pause`, `resume`, `cancel`, `terminate`,
//! `retry`, `skip`, `redrive`) and external events (`signals/{name}` to one
//! execution, `/v1/events/{name}` to every execution waiting on the name).
//!
//! Owns the command bodies and their checks. It must never decide whether a
//! command fits the execution's state: the engine refuses it (`409
//! wrong_state`) and then nothing is journaled.

use axum::extract::State;
use axum::response::IntoResponse;
use retrace_engine::ExecutionId;
use retrace_engine::machine::ExecutionState;
use retrace_engine::runtime::Signalled;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract;
use crate::extract::{OptionalJson, Path, execution_id};
use crate::schemas::ExecutionStatus;
use crate::state::AppState;

/// The longest `reason`, in characters (Unicode scalar values, as JSON
/// Schema's `maxLength` counts them).
pub use crate::auth::REASON_CHARS_MAX;
/// The longest event name, in bytes (the workflow language's limit).
pub const EVENT_NAME_BYTES_MAX: usize = 128;

/// A command's answer: the execution's status after it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CommandResult)]
pub struct CommandView {
    #[schema(value_type = String, format = "uuid")]
    id: ExecutionId,
    #[schema(value_type = ExecutionStatus)]
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
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmptyBody)]
pub struct NoBody {}

/// Why (recorded in the event).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReasonBody)]
pub struct ReasonBody {
    /// At most 1024 characters of free text: line breaks and tabs, but no
    /// other control character (Unicode `Cc`) and no bidirectional control
    /// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069).
    /// Without it the recorded reason says the command came over the HTTP
    /// API.
    #[schema(
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    reason: Option<String>,
}

/// Why, and whether to undo completed steps first.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CancelBody)]
pub struct CancelBody {
    /// At most 1024 characters of free text: line breaks and tabs, but no
    /// other control character (Unicode `Cc`) and no bidirectional control
    /// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069).
    /// Without it the recorded reason says the command came over the HTTP
    /// API.
    #[schema(
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    reason: Option<String>,
    /// With `true`, its completed steps that declare `compensate` are undone
    /// first (newest first).
    #[serde(default)]
    compensate: bool,
}

/// What the skipped step stands for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SkipBody)]
pub struct SkipBody {
    /// Stands for the skipped step's result: free JSON (`null` when left out).
    #[serde(default)]
    output: Value,
}

/// The reason recorded in the event: the caller's, or one saying where the
/// command came from.
fn reason(given: Option<String>, command: &str) -> Result<String, Error> {
    match given {
        Some(r) if r.chars().count() > REASON_CHARS_MAX => Err(Error::InvalidBody(format!(
            "reason must be at most {REASON_CHARS_MAX} characters, not {}",
            r.chars().count()
        ))),
        // Journaled and logged: line breaks and tabs are fine, control and
        // bidirectional characters are refused.
        Some(r) => retrace_engine::model::check_text("reason", &r)
            .map(|()| r)
            .map_err(Error::InvalidBody),
        None => Ok(format!("{command} requested over the HTTP API")),
    }
}

type Answer = Result<axum::Json<CommandView>, Error>;

fn answer(state: ExecutionState) -> Answer {
    Ok(axum::Json(CommandView::from(state)))
}

#[utoipa::path(
    post,
    path = "/v1/executions/{id}/pause",
    operation_id = "pauseExecution",
    tag = "executions",
    summary = "Pause an execution",
    description = "Stops new dispatches; results of tasks already out are still recorded. Refused with `409 wrong_state` when the execution's status \
        does not allow it; then nothing is recorded.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    request_body(
        content = Option<ReasonBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Done: the execution's status after the command.", body = CommandView),
    ),
)]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Answer {
    let id = execution_id(&id)?;
    let reason = reason(body.reason.or_else(|| caller.reason.clone()), "pause")?;
    answer(
        state
            .engine
            .acting_as(caller.name())
            .because(caller.reason())
            .pause(id, &reason)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/executions/{id}/resume",
    operation_id = "resumeExecution",
    tag = "executions",
    summary = "Resume a paused execution",
    description = "Continues an execution an operator paused (one holding a failed step takes `retry` or `skip`). Refused with `409 wrong_state` when the execution's status \
        does not allow it; then nothing is recorded.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    request_body(
        content = Option<NoBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Done: the execution's status after the command.", body = CommandView),
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Answer {
    answer(
        state
            .engine
            .acting_as(caller.name())
            .because(caller.reason())
            .resume(execution_id(&id)?)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/executions/{id}/cancel",
    operation_id = "cancelExecution",
    tag = "executions",
    summary = "Cancel an execution",
    description = "Ends it; with `compensate: true` its completed steps that declare `compensate` are undone first (newest first). Refused with `409 wrong_state` when the execution's status \
        does not allow it; then nothing is recorded.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    request_body(
        content = Option<CancelBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Done: the execution's status after the command.", body = CommandView),
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Answer {
    let id = execution_id(&id)?;
    let reason = reason(body.reason.or_else(|| caller.reason.clone()), "cancel")?;
    answer(
        state
            .engine
            .acting_as(caller.name())
            .because(caller.reason())
            .cancel(id, &reason, body.compensate)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/executions/{id}/terminate",
    operation_id = "terminateExecution",
    tag = "executions",
    summary = "Terminate an execution",
    description = "Ends it at once, without compensation. Refused with `409 wrong_state` when the execution's status \
        does not allow it; then nothing is recorded.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    request_body(
        content = Option<ReasonBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Done: the execution's status after the command.", body = CommandView),
    ),
)]
pub async fn terminate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Answer {
    let id = execution_id(&id)?;
    let reason = reason(body.reason.or_else(|| caller.reason.clone()), "terminate")?;
    answer(
        state
            .engine
            .acting_as(caller.name())
            .because(caller.reason())
            .terminate(id, &reason)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/executions/{id}/retry",
    operation_id = "retryExecution",
    tag = "executions",
    summary = "Retry the failed step a paused execution holds",
    description = "Runs again the failed step a paused execution holds (`onFailure: pause`), or its failed compensation. Refused with `409 wrong_state` when the execution's status \
        does not allow it; then nothing is recorded.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    request_body(
        content = Option<NoBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Done: the execution's status after the command.", body = CommandView),
    ),
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Answer {
    answer(
        state
            .engine
            .acting_as(caller.name())
            .because(caller.reason())
            .retry(execution_id(&id)?)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/executions/{id}/skip",
    operation_id = "skipExecution",
    tag = "executions",
    summary = "Skip the failed step a paused execution holds",
    description = "Skips that step (or failed compensation); `output` stands for its result. Refused with `409 wrong_state` when the execution's status \
        does not allow it; then nothing is recorded.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    request_body(
        content = Option<SkipBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Done: the execution's status after the command.", body = CommandView),
    ),
)]
pub async fn skip(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<SkipBody>,
) -> Answer {
    answer(
        state
            .engine
            .acting_as(caller.name())
            .because(caller.reason())
            .skip(execution_id(&id)?, body.output)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/executions/{id}/redrive",
    operation_id = "redriveExecution",
    tag = "executions",
    summary = "Redrive a failed execution",
    description = "Reopens a failed execution at the step that failed; its history is kept and continues. Refused with `409 wrong_state` when the execution's status \
        does not allow it; then nothing is recorded.",
    params(("id" = String, Path, format = "uuid", description = "The execution's id.")),
    request_body(
        content = Option<NoBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Done: the execution's status after the command.", body = CommandView),
    ),
)]
pub async fn redrive(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Answer {
    answer(
        state
            .engine
            .acting_as(caller.name())
            .because(caller.reason())
            .redrive(execution_id(&id)?)
            .await?,
    )
}

/// An external event's body: both fields may be left out (`null`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExternalEvent)]
pub struct EventBody {
    /// Becomes the waiting step's result: free JSON (`null` when left out).
    #[serde(default)]
    payload: Value,
    /// Free JSON: a step waiting with a correlation takes only an event with
    /// an equal one (a step without a correlation takes any).
    #[schema(value_type = Value, required = false)]
    correlation: Option<Value>,
}

/// Checks an event name by the workflow language's rule: 1 to 128 bytes,
/// `A-Z a-z 0-9` first, then `A-Z a-z 0-9 _ . : / -`.
pub fn check_event_name(name: &str) -> Result<(), Error> {
    // Named as an escape, not echoed into the answer and the log.
    retrace_engine::model::check_name_chars("event name", name).map_err(Error::InvalidBody)?;
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

/// Where a signal went, and the execution's status after it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SignalResult)]
pub struct SignalView {
    #[schema(value_type = String, format = "uuid")]
    id: ExecutionId,
    #[schema(value_type = ExecutionStatus)]
    status: &'static str,
    /// `delivered`: a waiting step took it. `kept`: no step waits for it
    /// yet; the first step that waits for it (with a matching correlation)
    /// will take it.
    #[schema(value_type = String, example = "delivered")]
    outcome: &'static str,
    /// The step that took it (`null` when kept).
    #[schema(required = true)]
    step: Option<String>,
    /// That step's activation (`null` when kept).
    #[schema(required = true)]
    activation: Option<u64>,
}

impl From<Signalled> for SignalView {
    fn from(signalled: Signalled) -> Self {
        let (outcome, step, activation) = match signalled.reached {
            Some(r) => ("delivered", Some(r.step), Some(r.activation)),
            None => ("kept", None, None),
        };
        SignalView {
            id: signalled.state.id,
            status: signalled.state.status.as_str(),
            outcome,
            step,
            activation,
        }
    }
}

/// `POST /v1/executions/{id}/signals/{name}`: delivers the event to this
/// execution (kept until a step waits for it, if none does yet).
#[utoipa::path(
    post,
    path = "/v1/executions/{id}/signals/{name}",
    operation_id = "signalExecution",
    tag = "events",
    summary = "Send an external event to one execution",
    description = "An event sent before any step waits for it is kept, and the first \
        matching step takes it. An execution that has ended answers `409 wrong_state`.",
    params(
        ("id" = String, Path, format = "uuid", description = "The execution's id."),
        ("name" = String, Path, min_length = 1, max_length = 128,
            pattern = "^[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
            description = "The event's name: 1 to 128 characters, `A-Z a-z 0-9` \
            first, then also `_ . : / -` (another name is `422 invalid_body`; a `/` \
            is sent percent-encoded, `%2F`)."),
    ),
    request_body(
        content = Option<EventBody>,
        description = "Every field is optional (`{}`: payload `null`, no correlation). The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "Recorded: whether a waiting step took it \
            (`delivered`, and which) or it is kept for the first step that waits for \
            it (`kept`), and the execution's status after it.", body = SignalView),
    ),
)]
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    event: extract::EventBody<EventBody>,
) -> Result<axum::Json<SignalView>, Error> {
    let id = execution_id(&id)?;
    check_event_name(&name)?;
    let by = event.by(caller.name());
    let body = event.body;
    let signalled = state
        .engine
        .acting_as(by.as_deref())
        .because(caller.reason())
        .signal(id, &name, body.payload, body.correlation)
        .await?;
    Ok(axum::Json(SignalView::from(signalled)))
}

/// Where a published event went.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Delivered)]
pub struct DeliveredView {
    /// The executions that took it (possibly none).
    #[schema(value_type = Vec<String>)]
    delivered: Vec<ExecutionId>,
}

/// One answer merged from the answers of several servers sharing a
/// journal to the same publish (each delivered it to the executions it
/// drives).
pub(crate) fn merge_delivered(answers: &[axum::body::Bytes]) -> Result<Vec<u8>, Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        delivered: Vec<ExecutionId>,
    }
    let mut delivered = Vec::new();
    for answer in answers {
        let answer: Answer = serde_json::from_slice(answer)
            .map_err(|e| Error::Internal(format!("a server answered a publish unread: {e}")))?;
        delivered.extend(answer.delivered);
    }
    delivered.sort();
    delivered.dedup();
    serde_json::to_vec(&DeliveredView { delivered })
        .map_err(|e| Error::Internal(format!("cannot write the merged answer: {e}")))
}

/// `POST /v1/events/{name}`: delivers the event to every execution waiting
/// on `name` whose correlation matches.
#[utoipa::path(
    post,
    path = "/v1/events/{name}",
    operation_id = "publishEvent",
    tag = "events",
    summary = "Publish an external event to every waiting execution",
    description = "Delivers to every execution with a step waiting on `name` whose \
        correlation matches (a step without a correlation takes any). Unlike a signal, \
        it is not kept for executions that wait for it later. The name `stream` cannot \
        be published this way (`GET /v1/events/stream` is the engine-wide stream).",
    params(
        ("name" = String, Path, min_length = 1, max_length = 128,
            pattern = "^(?!stream$)[A-Za-z0-9][A-Za-z0-9_.:/-]*$",
            description = "The event's name: 1 to 128 characters, `A-Z a-z 0-9` \
            first, then also `_ . : / -` (another name is `422 invalid_body`; a `/` \
            is sent percent-encoded, `%2F`), and not `stream` (`POST \
            /v1/events/stream` is `405`: that path is the engine-wide stream's)."),
    ),
    request_body(
        content = Option<EventBody>,
        description = "Every field is optional (`{}`: payload `null`, no correlation). The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "The executions it was delivered to.", body = DeliveredView),
    ),
)]
pub async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    event: extract::EventBody<EventBody>,
) -> Result<impl IntoResponse, Error> {
    check_event_name(&name)?;
    let by = event.by(caller.name());
    let body = event.body;
    let covered = crate::covered::Covered::begin(&state.engine);
    let delivered = state
        .engine
        .acting_as(by.as_deref())
        .because(caller.reason())
        .publish(&name, body.payload, body.correlation)
        .await?;
    Ok((
        covered.end(&state.engine),
        axum::Json(DeliveredView { delivered }),
    ))
}
