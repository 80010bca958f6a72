//! `/v1/tasks`: agents long-poll for tasks and report each one's result,
//! failure or liveness.
//!
//! Owns the task bodies, the long poll's end at shutdown, and that with
//! tokens only the token whose agent holds a task reports it. It must never
//! decide what a result means (the engine's machine does) and never accept a
//! result twice: a task that is not outstanding is `409 not_outstanding` and
//! changes nothing.

use axum::extract::State;
use axum::response::IntoResponse;
use retrace_engine::agents::AgentId;
use retrace_engine::machine::{ErrorInfo, task_execution};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Json, OptionalJson, Path, agent_id};
use crate::routes::agents::own_agent;
use crate::state::AppState;
use crate::time::rfc3339;
use crate::views::TaskView;

/// The longest error type an agent may report, in characters (Unicode
/// scalar values, as JSON Schema's `maxLength` counts them).
pub const ERROR_TYPE_CHARS_MAX: usize = 128;

/// A long poll for tasks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PollTasks)]
pub struct PollBody {
    /// The polling agent's id.
    #[schema(format = "uuid")]
    agent_id: String,
    /// How long to wait for a task when none is queued, in milliseconds:
    /// default 30000 (the server's `poll_wait_ms_default`); more than 60000
    /// waits 60000; `0` never waits.
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 0, maximum = 18446744073709551615u64, format = "uint64")]
    wait_ms: Option<u64>,
    /// The most tasks to claim: default 1; more than 100 claims at most 100,
    /// and never more than the agent's free slots; `0` claims none.
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 0, maximum = 18446744073709551615u64, format = "uint64")]
    max: Option<usize>,
}

/// The tasks a poll claimed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskList)]
struct TasksView {
    /// Oldest first; empty when the wait ended with none.
    tasks: Vec<TaskView>,
}

/// `POST /v1/tasks/poll`: claims up to `max` (default 1) tasks, waiting up
/// to `waitMs` for one; an empty list when the wait ends (or the server
/// shuts down).
#[utoipa::path(
    post,
    path = "/v1/tasks/poll",
    operation_id = "pollTasks",
    tag = "tasks",
    summary = "Long-poll for tasks",
    description = "Claims up to `max` tasks for the agent's capabilities, oldest first. \
        If none is queued, waits up to `waitMs` for one, then answers with what it could \
        claim, possibly nothing. When the server shuts down, a waiting poll answers \
        with no tasks. Report each task, or heartbeat it, before its lease runs out, or \
        it times out and the step's retry policy decides.",
    request_body = PollBody,
    responses(
        (status = 200, description = "The tasks claimed (possibly none).", body = TasksView),
    ),
)]
pub async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<PollBody>,
) -> Result<impl IntoResponse, Error> {
    let agent = agent_id(&body.agent_id)?;
    own_agent(&state, &caller, &agent)?;
    let tasks = claim(&state, &agent, &body).await?;
    Ok(axum::Json(TasksView { tasks }))
}

/// The agent of a report's `poll` (the caller's own, registered), checked
/// before anything of the report is recorded.
fn next_poll<'a>(
    state: &AppState,
    caller: &Caller,
    poll: Option<&'a PollBody>,
) -> Result<Option<(AgentId, &'a PollBody)>, Error> {
    let Some(p) = poll else {
        return Ok(None);
    };
    let agent = agent_id(&p.agent_id)?;
    if state.engine.agents().get(&agent).is_none() {
        return Err(Error::UnknownAgent(agent.to_string()));
    }
    own_agent(state, caller, &agent)?;
    Ok(Some((agent, p)))
}

/// Claims tasks for `agent` as `poll` asks (a poll, or a report's `poll`).
async fn claim(state: &AppState, agent: &AgentId, poll: &PollBody) -> Result<Vec<TaskView>, Error> {
    let wait_ms = poll.wait_ms.unwrap_or(state.config.poll_wait_ms_default);
    let max = poll.max.unwrap_or(1);
    // Dropping the poll loses nothing: the registry claims tasks only in the
    // step that returns them.
    let claimed = tokio::select! {
        claimed = state.engine.poll_tasks(agent, wait_ms, max) => claimed?,
        () = state.shutdown.triggered() => Vec::new(),
    };
    Ok(claimed.iter().map(TaskView::from).collect())
}

/// A task report recorded.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskAccepted)]
struct Accepted {
    id: String,
    /// Always `true` (a refused report is an error response).
    accepted: bool,
    /// With `poll` in the report: the tasks claimed next (possibly none).
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<Vec<TaskView>>,
}

/// Refuses a report on `task` from a caller whose token did not register
/// the agent holding it: `403 not_yours`, or `409 not_outstanding` when no
/// agent holds it. Anyone may report any task when the server has no
/// tokens.
fn own_task(state: &AppState, caller: &Caller, task: &str) -> Result<(), Error> {
    let Some(name) = caller.name() else {
        return Ok(());
    };
    let agents = state.engine.agents();
    let holder = agents.claimed_by(task).and_then(|a| agents.get(&a));
    match holder {
        None => Err(Error::NotOutstanding(format!(
            "task {task} is not held by any agent (claim it with a poll first)"
        ))),
        Some(agent) if agent.token.as_deref() == Some(name) => Ok(()),
        Some(agent) => Err(Error::NotYours(format!(
            "task {task} is held by agent {}, not registered with the token `{name}`",
            agent.id
        ))),
    }
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
fn task_error(id: &str, e: retrace_engine::Error) -> Error {
    match Error::from(e) {
        Error::UnknownExecution(_) => Error::UnknownTask(id.to_owned()),
        Error::WrongState(why) => {
            Error::NotOutstanding(format!("task {id} is not outstanding: {why}"))
        }
        other => other,
    }
}

/// A task's result.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CompleteTask)]
pub struct CompleteBody {
    /// The task's output: free JSON (`null` when left out).
    #[serde(default)]
    output: Value,
    /// Claim the agent's next tasks in the same request, as `POST
    /// /v1/tasks/poll` would with this body, once the result is recorded:
    /// one round trip per task instead of two.
    poll: Option<PollBody>,
}

/// `POST /v1/tasks/{id}/complete` `{"output"}`.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/complete",
    operation_id = "completeTask",
    tag = "tasks",
    summary = "Report a task's result",
    description = "A task that is no longer outstanding (late, duplicate, timed out, \
        withdrawn, or its execution ended) is refused with `409 not_outstanding`, and \
        nothing changes.",
    params(("id" = String, Path, description = "The task's id: `<execution id>.<activation>.<attempt>` \
        (another id names no task: `404 unknown_task`).")),
    request_body(
        content = Option<CompleteBody>,
        description = "Optional: without a body, the output is `null`.",
    ),
    responses(
        (status = 200, description = "Recorded.", body = Accepted),
    ),
)]
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CompleteBody>,
) -> Result<impl IntoResponse, Error> {
    task(&id)?;
    own_task(&state, &caller, &id)?;
    // The poll's agent is checked before anything is recorded.
    let poll = next_poll(&state, &caller, body.poll.as_ref())?;
    state
        .engine
        .acting_as(caller.name())
        .complete_task(&id, body.output)
        .await
        .map_err(|e| task_error(&id, e))?;
    let tasks = match poll {
        Some((agent, p)) => Some(claim(&state, &agent, p).await?),
        None => None,
    };
    Ok(axum::Json(Accepted {
        id,
        accepted: true,
        tasks,
    }))
}

/// A task's failure.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FailTask)]
pub struct FailBody {
    error: ErrorBody,
}

/// What went wrong with a task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TaskError)]
pub struct ErrorBody {
    /// 1 to 128 characters, none of them a control character (Unicode `Cc`)
    /// or a bidirectional control (U+061C, U+200E, U+200F, U+202A to
    /// U+202E, U+2066 to U+2069); retry policies and error routes match on
    /// it.
    #[serde(rename = "type")]
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]*$"
    )]
    kind: String,
    /// Free text, kept as sent, except that control characters (but line
    /// breaks and tabs) and bidirectional controls are written out as
    /// escapes (`\u{202E}`): it often quotes a program's output.
    message: String,
    /// `false` says retrying cannot help.
    retryable: Option<bool>,
}

/// `POST /v1/tasks/{id}/fail` `{"error":{"type","message","retryable"?}}`:
/// the step's retry policy decides what follows.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/fail",
    operation_id = "failTask",
    tag = "tasks",
    summary = "Report a task's failure",
    description = "The step's retry policy decides what follows. A task that is no \
        longer outstanding is refused with `409 not_outstanding`, and nothing changes.",
    params(("id" = String, Path, description = "The task's id: `<execution id>.<activation>.<attempt>` \
        (another id names no task: `404 unknown_task`).")),
    request_body = FailBody,
    responses(
        (status = 200, description = "Recorded.", body = Accepted),
    ),
)]
pub async fn fail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<FailBody>,
) -> Result<impl IntoResponse, Error> {
    task(&id)?;
    own_task(&state, &caller, &id)?;
    let error = error_info(body.error)?;
    state
        .engine
        .acting_as(caller.name())
        .fail_task(&id, error)
        .await
        .map_err(|e| task_error(&id, e))?;
    Ok(axum::Json(Accepted {
        id,
        accepted: true,
        tasks: None,
    }))
}

/// A reported failure as the engine records it, checked.
fn error_info(body: ErrorBody) -> Result<ErrorInfo, Error> {
    let kind = body.kind;
    let chars = kind.chars().count();
    if chars == 0 || chars > ERROR_TYPE_CHARS_MAX {
        return Err(Error::InvalidBody(format!(
            "error.type must be 1 to {ERROR_TYPE_CHARS_MAX} characters, not {chars}"
        )));
    }
    // The type is a name (journaled, logged, matched by retry policies);
    // the message quotes a program's output, so what a log must not show is
    // written out as escapes rather than refused (see `escape_text`).
    retrace_engine::model::check_name_chars("error.type", &kind).map_err(Error::InvalidBody)?;
    let message = retrace_engine::model::escape_text(&body.message).into_owned();
    let mut error = ErrorInfo::new(kind, message);
    error.retryable = body.retryable;
    Ok(error)
}

/// The most reports one `POST /v1/tasks/report` carries.
pub const REPORTS_MAX: usize = 100;

/// Many tasks' results and failures in one request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ReportTasks)]
pub struct ReportBody {
    /// 1 to 100 reports, recorded independently (each may be refused alone).
    #[schema(min_items = 1, max_items = 100)]
    reports: Vec<ReportItem>,
    /// Claim the agent's next tasks once the reports are recorded, as `POST
    /// /v1/tasks/poll` would with this body.
    poll: Option<PollBody>,
}

/// One task's result (`output`) or failure (`error`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TaskReport)]
pub struct ReportItem {
    /// The task's id.
    id: String,
    /// The result: free JSON (`null` when left out). Leave it out with `error`.
    #[serde(default)]
    output: Value,
    /// The failure, instead of a result.
    error: Option<ErrorBody>,
}

/// What became of one report.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskReportOutcome)]
struct ReportOutcome {
    id: String,
    /// `true` when recorded; else `error` says why, and nothing changed.
    accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<ReportError>,
}

/// Why one report was refused: the code and message the single-task
/// endpoints would have answered.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TaskReportError)]
struct ReportError {
    #[schema(value_type = crate::error::Code)]
    code: &'static str,
    message: String,
}

/// The reports' outcomes, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TasksReported)]
struct Reported {
    reports: Vec<ReportOutcome>,
    /// With `poll`: the tasks claimed next (possibly none).
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<Vec<TaskView>>,
}

/// `POST /v1/tasks/report` `{"reports": [{"id", "output"} | {"id", "error"}], "poll"?}`.
#[utoipa::path(
    post,
    path = "/v1/tasks/report",
    operation_id = "reportTasks",
    tag = "tasks",
    summary = "Report many tasks' results and failures at once",
    description = "Each report is what `POST /v1/tasks/{id}/complete` (with `output`) or \
        `POST /v1/tasks/{id}/fail` (with `error`) takes, and is recorded or refused on its \
        own: the answer lists each one's outcome in order, with the code and message the \
        single-task endpoint would have answered (`not_outstanding`, `unknown_task`, \
        `not_yours`, ...; `invalid_body` for a report with both `output` and `error`). \
        Reports of different executions are recorded concurrently, so the journal commits \
        them together. No reports, more than 100, or an ill-formed error type is `422 \
        invalid_body` for the whole body, and nothing is recorded.",
    request_body = ReportBody,
    responses(
        (status = 200, description = "Every report's outcome.", body = Reported),
    ),
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ReportBody>,
) -> Result<impl IntoResponse, Error> {
    let count = body.reports.len();
    if count == 0 || count > REPORTS_MAX {
        return Err(Error::InvalidBody(format!(
            "reports must hold 1 to {REPORTS_MAX} reports, not {count}"
        )));
    }
    let poll = next_poll(&state, &caller, body.poll.as_ref())?;
    let acting = state.engine.acting_as(caller.name());
    // What the document states of a report (an error type's length and
    // characters) is checked for all of them first: one that breaks it
    // refuses the whole body. Both `output` and `error` refuses that report.
    let mut checked = Vec::with_capacity(count);
    for item in body.reports {
        let outcome = match item.error {
            Some(_) if !item.output.is_null() => Err(Error::InvalidBody(format!(
                "report of task {}: give `output` or `error`, not both",
                item.id
            ))),
            Some(e) => Ok(Err(error_info(e)?)),
            None => Ok(Ok(item.output)),
        };
        checked.push((item.id, outcome));
    }
    let recorded = checked.into_iter().map(|(id, outcome)| {
        let (state, caller, acting) = (&state, &caller, &acting);
        async move {
            let done = async {
                let outcome = outcome?;
                task(&id)?;
                own_task(state, caller, &id)?;
                match outcome {
                    Ok(output) => acting.complete_task(&id, output).await,
                    Err(error) => acting.fail_task(&id, error).await,
                }
                .map_err(|e| task_error(&id, e))
            }
            .await;
            match done {
                Ok(()) => ReportOutcome {
                    id,
                    accepted: true,
                    error: None,
                },
                Err(e) => ReportOutcome {
                    error: Some(ReportError {
                        code: e.code().as_str(),
                        message: e.to_string(),
                    }),
                    id,
                    accepted: false,
                },
            }
        }
    });
    let reports = futures::future::join_all(recorded).await;
    let tasks = match poll {
        Some((agent, p)) => Some(claim(&state, &agent, p).await?),
        None => None,
    };
    Ok(axum::Json(Reported { reports, tasks }))
}

/// Who heartbeats a task.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = TaskHeartbeat)]
pub struct HeartbeatBody {
    /// When given, a task claimed by another agent is refused (`not_yours`).
    #[schema(format = "uuid")]
    agent_id: Option<String>,
}

/// A claim extended.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TaskLease)]
struct Extended {
    id: String,
    /// How long the claim lasts from now.
    lease_ms: u64,
    #[schema(format = DateTime)]
    lease_deadline: String,
}

/// `POST /v1/tasks/{id}/heartbeat`: extends the claim as a fresh claim
/// would last.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/heartbeat",
    operation_id = "heartbeatTask",
    tag = "tasks",
    summary = "Keep a task's claim",
    description = "Extends the claim as a fresh claim would last. A task that is not \
        (or no longer) claimed is `409 not_outstanding`; with `agentId`, a task held by \
        another agent is `403 not_yours`.",
    params(("id" = String, Path, description = "The task's id: `<execution id>.<activation>.<attempt>` \
        (another id names no task: `404 unknown_task`).")),
    request_body(
        content = Option<HeartbeatBody>,
        description = "Every field is optional: `{}` will do. The body may also be empty, still with `Content-Type: application/json`.",
    ),
    responses(
        (status = 200, description = "The claim, extended.", body = Extended),
    ),
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<HeartbeatBody>,
) -> Result<impl IntoResponse, Error> {
    task(&id)?;
    own_task(&state, &caller, &id)?;
    let agent = body.agent_id.as_deref().map(agent_id).transpose()?;
    let claim = state.engine.agents().task_heartbeat(&id, agent.as_ref())?;
    // The claim's own length, not the deadline less a later reading of the
    // clock (which a millisecond's tick in between made 299999).
    Ok(axum::Json(Extended {
        id,
        lease_ms: claim.lease_ms(),
        lease_deadline: rfc3339(claim.lease_deadline_ms),
    }))
}
