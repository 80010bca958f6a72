//! `POST /v1/executions/signal-with-start`: one request that signals the
//! execution an idempotency key names, or starts it with the signal
//! recorded in its first append.
//!
//! Owns that request's body and answer, and checks them whole before the
//! engine records anything. It must never deliver a signal whose name has a
//! secret: those are taken only signed, on the signal route.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use retrace_engine::machine::StartSignal;
use retrace_engine::runtime::StartRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::Json;
use crate::routes::commands::{SignalView, check_event_name};
use crate::routes::executions::{check_idempotency_key, priority};
use crate::state::AppState;

/// The signal a signal-with-start delivers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StartSignal)]
pub struct SignalSpec {
    /// The event's name: 1 to 128 characters, `A-Z a-z 0-9` first, then
    /// also `_ . : / -`.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
    )]
    name: String,
    /// Becomes the waiting step's result: free JSON (`null` when left out).
    #[serde(default)]
    payload: Value,
    /// Free JSON: a step waiting with a correlation takes only an event with
    /// an equal one.
    #[schema(value_type = Value, required = false)]
    correlation: Option<Value>,
}

/// What to start, unless its key names an execution already, and the
/// signal to deliver either way.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = SignalWithStart)]
pub struct SignalWithStartBody {
    /// The workflow's name, as in a start.
    workflow: String,
    /// A version (64 lowercase hex digits); without it, the newest.
    version: Option<String>,
    /// The input of a new execution: free JSON, checked against the
    /// workflow's `input` schema; `null` when left out.
    #[serde(default)]
    input: Value,
    /// Names the execution: the one started with this key before, or the
    /// one this request starts. 1 to 256 characters, none of them a control
    /// character or a bidirectional control.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    idempotency_key: String,
    signal: SignalSpec,
    /// A new execution's tags, as in a start.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::tags_schema)]
    tags: Option<std::collections::BTreeMap<String, String>>,
    /// A new execution's priority, as in a start (0 to 9).
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 0, maximum = 9, format = "uint64")]
    priority: Option<u64>,
}

/// Where a signal-with-start went: the signal's answer (for a new
/// execution always `kept`, since it is recorded before any step runs),
/// and whether this request started the execution.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SignalWithStartResult)]
struct SignalWithStartView {
    /// `true` when this request started the execution (the signal recorded
    /// with its start); `false` when the key named one started before.
    created: bool,
    #[serde(flatten)]
    signal: SignalView,
}

/// `POST /v1/executions/signal-with-start`.
#[utoipa::path(
    post,
    path = "/v1/executions/signal-with-start",
    operation_id = "signalWithStart",
    tag = "executions",
    summary = "Signal an execution, starting it first if its key names none",
    description = "The execution the idempotency key names gets the signal, as \
        `POST /v1/executions/{id}/signals/{name}` would deliver it (`409 wrong_state` \
        if it has ended). If the key names none, the workflow is started with the key, \
        and the signal is recorded in the start's own append, before any step runs: \
        kept, and taken by the first step that waits for it. So the start and the \
        signal are recorded together or not at all, and a retry with the same key \
        never starts a second execution. An event name with a secret \
        (`--event-secret`) is refused here (`401 invalid_signature`): send it signed \
        to the signal route.",
    request_body = SignalWithStartBody,
    responses(
        (status = 201, description = "Started, with the signal recorded at its start.",
            body = SignalWithStartView),
        (status = 200, description = "The key named an execution started before: the \
            signal went to it.", body = SignalWithStartView),
    ),
)]
pub async fn signal_with_start(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<SignalWithStartBody>,
) -> Result<impl IntoResponse, Error> {
    // Everything is checked before anything is recorded.
    let key = body.idempotency_key;
    check_idempotency_key(&key)?;
    let signal = body.signal;
    check_event_name(&signal.name)?;
    let priority = priority(body.priority)?;
    if state.config.event_secrets.key(&signal.name).is_some() {
        return Err(Error::InvalidSignature(format!(
            "events named `{}` are taken only signed, and a signal-with-start is not: \
             start the execution, then send the event signed to \
             POST /v1/executions/{{id}}/signals/{}",
            signal.name, signal.name
        )));
    }
    let (started, signalled) = state
        .engine
        .acting_as(caller.name())
        .because(caller.reason())
        .signal_with_start(
            StartRequest {
                workflow: body.workflow,
                version: body.version,
                input: body.input,
                idempotency_key: Some(key),
                priority,
                tags: body.tags.unwrap_or_default(),
            },
            StartSignal {
                name: signal.name,
                payload: signal.payload,
                correlation: signal.correlation,
            },
        )
        .await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let view = SignalWithStartView {
        created: started.created,
        signal: SignalView::from(signalled),
    };
    Ok((status, axum::Json(view)))
}
