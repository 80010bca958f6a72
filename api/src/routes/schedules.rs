//! `/v1/schedules`: create, list, read, change (a JSON merge patch over the
//! spec), trigger and delete schedules: workflows the engine starts on a
//! timetable (a cron expression in a time zone, or every so many
//! milliseconds).
//!
//! Owns the schedule bodies and views, and how a patch merges onto a spec
//! (RFC 7396, with `cron` and `everyMs` replacing each other). Every
//! problem of a schedule as given (its shape included) is `422
//! invalid_schedule`, with each problem in `details`, and nothing is
//! recorded. It must never decide when a schedule fires or whether a spec
//! is sound beyond its shape: the engine does.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use retrace_engine::ExecutionId;
use retrace_engine::model::Problem;
use retrace_engine::runtime::Engine;
use retrace_engine::schedules::{
    CATCHUP_WINDOW_MS_DEFAULT, Outcome, Overlap, Recent, Schedule, ScheduleSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Json, OptionalJson, Path};
use crate::routes::commands::NoBody;
use crate::routes::executions::StartedView;
use crate::schemas::{ExecutionStatus, Instant};
use crate::state::AppState;
use crate::strict;
use crate::time::rfc3339;

/// How many fire times a view shows ahead.
pub const NEXT_FIRE_TIMES: usize = 5;

/// A schedule as written: what `POST /v1/schedules` takes, and what a patch
/// is merged onto.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScheduleSpec)]
pub struct SpecBody {
    /// Names the schedule: 1 to 128 characters, letters, digits, `_`, `.`
    /// and `-`, starting with a letter or digit.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )]
    id: String,
    /// The workflow each fire starts (it must be defined).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )]
    workflow: String,
    /// A version to pin (64 lowercase hex digits, which must be defined);
    /// without it, each fire starts the workflow's newest version.
    version: Option<String>,
    /// Each started execution's input: free JSON, checked against the
    /// workflow's `input` schema now; `{}` when left out.
    #[serde(default = "empty_object")]
    #[schema(value_type = Value, required = false)]
    input: Value,
    /// Five fields (minute hour day-of-month month day-of-week, e.g. `0 3 *
    /// * *`) or an alias (`@hourly`, `@daily`, `@weekly`, `@monthly`,
    /// `@yearly`). Give `cron` or `everyMs`, not both.
    cron: Option<String>,
    /// The IANA time zone `cron` is read in (`Europe/Berlin`); UTC when left
    /// out. Only with `cron`.
    timezone: Option<String>,
    /// Fires every this many milliseconds, counted from when the timing was
    /// set (created, or changed by a patch).
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 1000, maximum = 316224000000u64, format = "uint64")]
    every_ms: Option<u64>,
    /// What a fire time does while the execution the schedule started last
    /// still runs: `skip` it (the default), keep one to start when it ends
    /// (`bufferOne`), start anyway (`allow`), or cancel it and start
    /// (`cancelPrevious`).
    #[serde(default)]
    #[schema(value_type = OverlapSchema)]
    overlap: Overlap,
    /// Fire times that passed while the server was down are still fired
    /// (each as `overlap` says) if they are at most this old when it is
    /// back; older ones are recorded as missed, as one range. 1000 to
    /// 31622400000 (366 days); 60000 when left out.
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 1000, maximum = 31622400000u64, format = "uint64")]
    catchup_window_ms: Option<u64>,
    /// A paused schedule fires nothing; resuming does not fire what came
    /// due meanwhile.
    #[serde(default)]
    paused: bool,
    /// The started executions' priority, 0 to 9 (as in a start).
    #[serde(default, deserialize_with = "crate::integer::optional")]
    #[schema(minimum = 0, maximum = 9, format = "uint64")]
    priority: Option<u64>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl SpecBody {
    fn into_spec(self) -> ScheduleSpec {
        ScheduleSpec {
            id: self.id,
            workflow: self.workflow,
            version: self.version,
            input: self.input,
            cron: self.cron,
            timezone: self.timezone,
            every_ms: self.every_ms,
            overlap: self.overlap,
            catchup_window_ms: self.catchup_window_ms.unwrap_or(CATCHUP_WINDOW_MS_DEFAULT),
            paused: self.paused,
            // Out of range either way: the engine names the range.
            priority: self.priority.map(|p| u8::try_from(p).unwrap_or(u8::MAX)),
        }
    }
}

/// A schedule's spec from a JSON object: every shape problem is an
/// `invalid_schedule` (the engine checks the rest).
fn spec_of(body: Map<String, Value>) -> Result<ScheduleSpec, Error> {
    strict::deserialize::<_, SpecBody>(Value::Object(body))
        .map(SpecBody::into_spec)
        .map_err(|rejected| {
            Error::InvalidSchedule(vec![Problem {
                path: rejected.path,
                message: rejected.error.to_string(),
            }])
        })
}

/// What to change: a JSON merge patch (RFC 7396) over the spec. Each field
/// given replaces the spec's, `null` removes it (back to its default); the
/// result must be a `ScheduleSpec` with the same `id`.
// Only describes the body in the OpenAPI document: the body is read as a
// JSON object, merged, and the result read as a `SpecBody`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = SchedulePatch)]
#[allow(dead_code)]
pub struct PatchSchema {
    /// The schedule's id, if given: it cannot change (`422
    /// invalid_schedule`).
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )]
    id: Option<String>,
    /// Another workflow to start.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )]
    workflow: Option<String>,
    /// Pins a version; `null`: the newest at each fire.
    version: Option<String>,
    /// Merged into the input as a merge patch merges (an object's fields
    /// one by one, `null` removing one); `null`: `{}`.
    #[schema(value_type = Value, required = false)]
    input: Option<Value>,
    /// A new cron expression; it removes `everyMs`.
    cron: Option<String>,
    /// The time zone of `cron`; `null`: UTC.
    timezone: Option<String>,
    /// A new interval; it removes `cron` and `timezone`.
    #[schema(minimum = 1000, maximum = 316224000000u64, format = "uint64")]
    every_ms: Option<u64>,
    /// `null`: `skip`.
    #[schema(value_type = Option<OverlapSchema>)]
    overlap: Option<String>,
    /// `null`: 60000.
    #[schema(minimum = 1000, maximum = 31622400000u64, format = "uint64")]
    catchup_window_ms: Option<u64>,
    /// `true` pauses, `false` resumes (what came due while paused is not
    /// fired).
    paused: Option<bool>,
    /// `null`: none (0).
    #[schema(minimum = 0, maximum = 9, format = "uint64")]
    priority: Option<u64>,
}

/// What a fire time does while the execution the schedule started last
/// still runs.
// Only describes `Overlap` in the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase", as = OverlapPolicy)]
#[allow(dead_code)]
pub enum OverlapSchema {
    Skip,
    BufferOne,
    Allow,
    CancelPrevious,
}

/// What a schedule has done, counted.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScheduleCounts)]
struct CountsView {
    /// Executions started: fire times and triggers.
    #[schema(format = "uint64")]
    fired: u64,
    /// Fire times that started nothing (`overlap: skip`, or `bufferOne` with
    /// one kept already).
    #[schema(format = "uint64")]
    skipped: u64,
    /// Runs of fire times missed outside the catch-up window.
    #[schema(format = "uint64")]
    missed: u64,
    /// Fire times whose execution could not start.
    #[schema(format = "uint64")]
    failed: u64,
}

/// What one fire time (or trigger) did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScheduleRecent)]
struct RecentView {
    /// The fire time; for a trigger, when it was asked for; for missed fire
    /// times, the first of them.
    #[schema(format = DateTime)]
    at: String,
    /// When it was recorded.
    #[schema(format = DateTime)]
    recorded_at: String,
    /// `started` (a fire time started `execution`), `triggered` (started on
    /// request), `skipped`, `buffered` (kept until the running execution
    /// ends), `missed` (through `lastMissed`) or `failed` (see `error`).
    #[schema(value_type = OutcomeSchema)]
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = "uuid", required = false)]
    execution: Option<ExecutionId>,
    /// The started execution's status now, when the server knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = ExecutionStatus, required = false)]
    execution_status: Option<&'static str>,
    /// The last of the missed fire times.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    last_missed: Option<String>,
    /// Why the execution could not start.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
}

/// What a fire time (or a trigger) did.
// Only describes `RecentView::outcome` in the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase", as = ScheduleOutcome)]
#[allow(dead_code)]
pub enum OutcomeSchema {
    Started,
    Triggered,
    Skipped,
    Buffered,
    Missed,
    Failed,
}

impl RecentView {
    fn new(engine: &Engine, r: &Recent) -> RecentView {
        let mut view = RecentView {
            at: rfc3339(r.at_ms),
            recorded_at: rfc3339(r.recorded_at_ms),
            outcome: "",
            execution: None,
            execution_status: None,
            last_missed: None,
            error: None,
        };
        view.outcome = match &r.outcome {
            Outcome::Started { execution, manual } => {
                view.execution = Some(*execution);
                view.execution_status = engine.summary(*execution).map(|s| s.status.as_str());
                if *manual { "triggered" } else { "started" }
            }
            Outcome::Skipped => "skipped",
            Outcome::Buffered => "buffered",
            Outcome::Missed { last_ms } => {
                view.last_missed = Some(rfc3339(*last_ms));
                "missed"
            }
            Outcome::Failed { error } => {
                view.error = Some(error.clone());
                "failed"
            }
        };
        view
    }
}

/// A schedule: its spec, and what it has done and will do.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Schedule)]
pub struct ScheduleView {
    id: String,
    workflow: String,
    /// The pinned version; absent: the newest at each fire.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    version: Option<String>,
    /// Each started execution's input (free JSON).
    #[schema(value_type = Value)]
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    cron: Option<String>,
    /// The time zone of `cron` (absent: UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = "uint64")]
    every_ms: Option<u64>,
    #[schema(value_type = OverlapSchema)]
    overlap: &'static str,
    #[schema(format = "uint64")]
    catchup_window_ms: u64,
    paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, maximum = 9)]
    priority: Option<u8>,
    #[schema(format = DateTime)]
    created_at: String,
    /// The token that created it (absent without tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    created_by: Option<String>,
    /// When its spec last changed (its creation, at first).
    #[schema(format = DateTime)]
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    updated_by: Option<String>,
    /// The execution it started last.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = "uuid", required = false)]
    last_execution: Option<ExecutionId>,
    /// A fire time kept until `lastExecution` ends (`overlap: bufferOne`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    buffered_fire_time: Option<String>,
    counts: CountsView,
    /// Its next 5 fire times from now (while paused: as if it were not).
    #[schema(value_type = Vec<Instant>)]
    next_fire_times: Vec<String>,
    /// What its last fire times and triggers did, newest first (at most
    /// 20).
    recent: Vec<RecentView>,
}

impl ScheduleView {
    pub fn new(engine: &Engine, s: &Schedule) -> ScheduleView {
        let spec = &s.spec;
        ScheduleView {
            id: spec.id.clone(),
            workflow: spec.workflow.clone(),
            version: spec.version.clone(),
            input: spec.input.clone(),
            cron: spec.cron.clone(),
            timezone: spec.timezone.clone(),
            every_ms: spec.every_ms,
            overlap: spec.overlap.as_str(),
            catchup_window_ms: spec.catchup_window_ms,
            paused: spec.paused,
            priority: spec.priority,
            created_at: rfc3339(s.created_at_ms),
            created_by: s.created_by.clone(),
            updated_at: rfc3339(s.updated_at_ms),
            updated_by: s.updated_by.clone(),
            last_execution: s.last_execution,
            buffered_fire_time: s.buffered_ms.map(rfc3339),
            counts: CountsView {
                fired: s.fired,
                skipped: s.skipped,
                missed: s.missed,
                failed: s.failed,
            },
            next_fire_times: engine
                .upcoming_fires(s, NEXT_FIRE_TIMES)
                .into_iter()
                .map(rfc3339)
                .collect(),
            recent: s
                .recent
                .iter()
                .map(|r| RecentView::new(engine, r))
                .collect(),
        }
    }
}

/// Every schedule.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScheduleList)]
struct ListView {
    /// By id.
    schedules: Vec<ScheduleView>,
}

/// A schedule triggered, and the execution it started.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TriggeredSchedule)]
struct TriggeredView {
    schedule: ScheduleView,
    execution: StartedView,
}

/// `POST /v1/schedules` → `201`.
#[utoipa::path(
    post,
    path = "/v1/schedules",
    operation_id = "createSchedule",
    tag = "schedules",
    summary = "Create a schedule",
    description = "Checks the whole schedule first: its id, timing (`cron`, with an \
        optional `timezone`, or `everyMs`), workflow (which must be defined) and input \
        (against the workflow's `input` schema). Any problem, a field the schema does \
        not name or of the wrong type included, is `422 invalid_schedule` with every \
        problem in `details`, and nothing is recorded; an id in use is `409 conflict`. \
        Each fire starts the workflow with the idempotency key \
        `schedule:<id>:<generation>:<fire time in ms>`, so a fire time starts one \
        execution whatever crashes. The change is journaled, with the token that made \
        it and the `Retrace-Reason` header.",
    request_body = SpecBody,
    responses(
        (status = 201, description = "Created.", body = ScheduleView),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<Map<String, Value>>,
) -> Result<impl IntoResponse, Error> {
    let spec = spec_of(body)?;
    let schedule = state
        .engine
        .create_schedule(spec, caller.name(), caller.reason())
        .await?;
    tracing::info!(schedule = %schedule.spec.id, by = ?caller.name(), "schedule created");
    Ok((
        StatusCode::CREATED,
        axum::Json(ScheduleView::new(&state.engine, &schedule)),
    ))
}

/// `GET /v1/schedules`.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    operation_id = "listSchedules",
    tag = "schedules",
    summary = "List schedules",
    responses(
        (status = 200, description = "Every schedule, by id.", body = ListView),
    ),
)]
pub async fn list(State(state): State<AppState>) -> Result<impl IntoResponse, Error> {
    let schedules = state
        .engine
        .schedules()?
        .iter()
        .map(|s| ScheduleView::new(&state.engine, s))
        .collect();
    Ok(axum::Json(ListView { schedules }))
}

/// `GET /v1/schedules/{id}`.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    operation_id = "getSchedule",
    tag = "schedules",
    summary = "Read one schedule",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "The schedule, its next fire times and what its \
            last ones did.", body = ScheduleView),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let schedule = state.engine.schedule(&id)?;
    Ok(axum::Json(ScheduleView::new(&state.engine, &schedule)))
}

/// `PATCH /v1/schedules/{id}`: a JSON merge patch over the spec.
#[utoipa::path(
    patch,
    path = "/v1/schedules/{id}",
    operation_id = "updateSchedule",
    tag = "schedules",
    summary = "Change a schedule (pause, resume, retime, …)",
    description = "A JSON merge patch (RFC 7396) over the schedule's spec (as \
        `ScheduleSpec` writes it): each field given replaces the spec's, `null` removes \
        it (back to its default), and `input` is merged field by field. Giving `cron` \
        removes `everyMs`; giving `everyMs` removes `cron` and `timezone`. `id` cannot \
        change. `{\"paused\": true}` pauses, `{\"paused\": false}` resumes (what came due \
        while paused is not fired). The result is checked as a new schedule is (`422 \
        invalid_schedule`, nothing recorded); a new timing counts from now. A patch that \
        changes nothing records nothing.",
    params(("id" = String, Path, description = "The schedule's id.")),
    request_body(
        description = "A JSON merge patch (`application/merge-patch+json`, or \
            `application/json`).",
        content(
            (PatchSchema = "application/merge-patch+json"),
            (PatchSchema = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "The schedule as it is now.", body = ScheduleView),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(patch): Json<Map<String, Value>>,
) -> Result<impl IntoResponse, Error> {
    let current = state.engine.schedule(&id)?;
    let spec = spec_of(merged(&current.spec, patch)?)?;
    if spec == current.spec {
        return Ok(axum::Json(ScheduleView::new(&state.engine, &current)));
    }
    let schedule = state
        .engine
        .update_schedule(spec, caller.name(), caller.reason())
        .await?;
    tracing::info!(schedule = %schedule.spec.id, by = ?caller.name(), "schedule changed");
    Ok(axum::Json(ScheduleView::new(&state.engine, &schedule)))
}

/// `spec` as JSON with `patch` merged in (RFC 7396), `cron` and `everyMs`
/// replacing each other.
fn merged(spec: &ScheduleSpec, patch: Map<String, Value>) -> Result<Map<String, Value>, Error> {
    if let Some(id) = patch.get("id")
        && id.as_str() != Some(spec.id.as_str())
    {
        return Err(Error::InvalidSchedule(vec![Problem {
            path: "id".into(),
            message: format!(
                "a schedule's id cannot change (this one is `{}`; create another \
                 schedule instead)",
                spec.id
            ),
        }]));
    }
    let mut target = match serde_json::to_value(spec) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) | Err(_) => {
            return Err(Error::Internal(format!(
                "the schedule {} does not serialize as an object",
                spec.id
            )));
        }
    };
    let given = |name: &str| patch.get(name).is_some_and(|v| !v.is_null());
    if given("cron") {
        target.remove("everyMs");
    }
    if given("everyMs") {
        target.remove("cron");
        target.remove("timezone");
    }
    merge(&mut target, patch);
    Ok(target)
}

/// RFC 7396 on objects: each member of `patch` replaces the target's,
/// `null` removes it, and an object is merged into an object.
fn merge(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (name, value) in patch {
        match value {
            Value::Null => {
                target.remove(&name);
            }
            Value::Object(inner) => {
                let mut into = match target.remove(&name) {
                    Some(Value::Object(fields)) => fields,
                    _ => Map::new(),
                };
                merge(&mut into, inner);
                target.insert(name, Value::Object(into));
            }
            value => {
                target.insert(name, value);
            }
        }
    }
}

/// `POST /v1/schedules/{id}/trigger` → `201`.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/trigger",
    operation_id = "triggerSchedule",
    tag = "schedules",
    summary = "Start a schedule's workflow now",
    description = "Starts the workflow as a fire would (its version, input and \
        priority), now, whether the schedule is paused or its last execution still \
        runs; no fire time moves. The execution's idempotency key is \
        `schedule:<id>:<generation>:manual:<ms>`. Journaled with the token that asked \
        and the `Retrace-Reason` header.",
    params(("id" = String, Path, description = "The schedule's id.")),
    request_body(
        content = Option<NoBody>,
        description = "Nothing: `{}`, or no body at all (still with `Content-Type: application/json`).",
    ),
    responses(
        (status = 201, description = "Started: the schedule as it is now, and the \
            execution.", body = TriggeredView),
    ),
)]
pub async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<impl IntoResponse, Error> {
    let (schedule, started) = state
        .engine
        .trigger_schedule(&id, caller.name(), caller.reason())
        .await?;
    tracing::info!(schedule = %id, execution = %started.id, by = ?caller.name(),
        "schedule triggered");
    let view = TriggeredView {
        schedule: ScheduleView::new(&state.engine, &schedule),
        execution: StartedView::from(&started),
    };
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// `DELETE /v1/schedules/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    operation_id = "deleteSchedule",
    tag = "schedules",
    summary = "Delete a schedule",
    description = "It fires no more; executions it started run on. Its id may be used \
        again (a new schedule under it never meets the old one's executions). Journaled \
        with the token that asked and the `Retrace-Reason` header.",
    params(("id" = String, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Deleted: the schedule as it was.", body = ScheduleView),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let schedule = state
        .engine
        .delete_schedule(&id, caller.name(), caller.reason())
        .await?;
    tracing::info!(schedule = %id, by = ?caller.name(), "schedule deleted");
    Ok(axum::Json(ScheduleView::new(&state.engine, &schedule)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use retrace_engine::schedules::spec::{CATCHUP_WINDOW_MS_MAX, EVERY_MS_MAX};
    use serde_json::json;

    use super::*;

    fn spec(extra: Value) -> ScheduleSpec {
        let mut body = json!({"id": "s", "workflow": "w"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        spec_of(body.as_object().unwrap().clone()).unwrap()
    }

    fn patched(base: &ScheduleSpec, patch: Value) -> Result<ScheduleSpec, Error> {
        spec_of(merged(base, patch.as_object().unwrap().clone())?)
    }

    #[test]
    fn the_documented_ranges_are_the_engines() {
        // The schema attributes above must be literals.
        assert_eq!(EVERY_MS_MAX, 316_224_000_000);
        assert_eq!(CATCHUP_WINDOW_MS_MAX, 31_622_400_000);
        assert_eq!(CATCHUP_WINDOW_MS_DEFAULT, 60_000);
    }

    #[test]
    fn a_body_reads_as_the_engines_spec_with_its_defaults() {
        let s = spec(json!({"everyMs": 5000.0, "priority": 3}));
        assert_eq!(s.every_ms, Some(5000));
        assert_eq!(s.priority, Some(3));
        assert_eq!(s.input, json!({}));
        assert_eq!(s.overlap, Overlap::Skip);
        assert_eq!(s.catchup_window_ms, CATCHUP_WINDOW_MS_DEFAULT);
        assert_eq!(spec(json!({"priority": 300})).priority, Some(u8::MAX));
        for bad in [
            json!({"id": "s", "workflow": "w", "evryMs": 1}),
            json!({"id": "s", "workflow": "w", "everyMs": "1"}),
            json!({"id": "s", "workflow": "w", "overlap": "sometimes"}),
            json!({"id": "s"}),
        ] {
            let e = spec_of(bad.as_object().unwrap().clone()).unwrap_err();
            assert!(matches!(e, Error::InvalidSchedule(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn a_patch_merges_and_cron_and_every_replace_each_other() {
        let base = spec(json!({"cron": "0 3 * * *", "timezone": "Europe/Berlin",
            "input": {"a": 1, "b": 2}, "priority": 4}));
        let every = patched(&base, json!({"everyMs": 60000})).unwrap();
        assert_eq!(
            (every.cron, every.timezone, every.every_ms),
            (None, None, Some(60000))
        );
        let cron = patched(&spec(json!({"everyMs": 1000})), json!({"cron": "@hourly"})).unwrap();
        assert_eq!(
            (cron.cron.as_deref(), cron.every_ms),
            (Some("@hourly"), None)
        );
        let p = patched(
            &base,
            json!({"input": {"b": null, "c": 3}, "priority": null,
            "paused": true, "id": "s"}),
        )
        .unwrap();
        assert_eq!(p.input, json!({"a": 1, "c": 3}));
        assert_eq!((p.priority, p.paused), (None, true));
        assert_eq!(p.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(
            patched(&base, json!({"input": null})).unwrap().input,
            json!({})
        );
        for bad in [
            json!({"id": "t"}),
            json!({"id": null}),
            json!({"workflow": null}),
            json!({"paused": "yes"}),
            json!({"nope": 1}),
        ] {
            let e = patched(&base, bad.clone()).unwrap_err();
            assert!(matches!(e, Error::InvalidSchedule(_)), "{bad}: {e}");
        }
        // Both given: both kept, for the engine to refuse.
        let both = patched(&base, json!({"everyMs": 1000, "cron": "@daily"})).unwrap();
        assert!(both.cron.is_some() && both.every_ms.is_some());
    }
}
