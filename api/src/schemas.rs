//! Schemas for the OpenAPI document only: engine types the API shows as
//! they serialize (an execution's status, error info, threads), free-JSON
//! bodies (workflow definitions), the error code list, and the metrics JSON
//! (built by hand in `routes::metrics`).
//!
//! Owns how these look in the document. Nothing builds these types; the
//! API's tests check real responses against them. It must never be used to
//! parse or answer a request.

#![allow(dead_code)]

use std::collections::BTreeMap;

use retrace_engine::machine::{Status, StepState as EngineStepState};
use retrace_engine::model::{
    DOCUMENT_BYTES_MAX, DOCUMENT_DEPTH_MAX, EdgeKind, LIMIT_MAX, LIMIT_PERIOD_MS_MAX, NodeKind,
};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::error::Code;

/// An execution's status, as the API writes it (a schema only).
#[derive(Debug)]
pub struct ExecutionStatus;

impl PartialSchema for ExecutionStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An execution's status. `running`, `paused`, `compensating` and \
                 `compensation_failed` have not ended; the others are final \
                 (`failed` may be redriven).",
            ))
            .enum_values(Some(Status::ALL.iter().map(|s| s.as_str())))
            .into()
    }
}

impl ToSchema for ExecutionStatus {}

/// An event kind of executions' histories (a schema only).
#[derive(Debug)]
pub struct EventKind;

impl PartialSchema for EventKind {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An event kind of executions' histories, as `GET \
                 /v1/executions/{id}/events` names them.",
            ))
            .enum_values(Some(retrace_engine::machine::Event::KINDS.iter().copied()))
            .into()
    }
}

impl ToSchema for EventKind {}

/// An instant, as the API writes them: RFC 3339 in UTC with milliseconds
/// (a schema only).
#[derive(Debug)]
pub struct Instant;

impl PartialSchema for Instant {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::DateTime,
            )))
            .description(Some(
                "An instant: RFC 3339 in UTC with milliseconds (`2026-01-31T09:00:00.123Z`).",
            ))
            .into()
    }
}

impl ToSchema for Instant {}

/// A string schema whose values are `names`.
fn names_schema(description: &str, names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(names))
        .into()
}

/// Where a step stands after some events (a schema only).
#[derive(Debug)]
pub struct StepState;

impl PartialSchema for StepState {
    fn schema() -> RefOr<Schema> {
        names_schema(
            "Where a step stands: `running`, waiting for something (`waiting_task`, \
             `waiting_timer`, `waiting_event`, `waiting_retry`, `waiting_child`, \
             `waiting_branches`, or `waiting_operator`: failed and held for a retry or \
             skip), `completed`, `failed`, `compensating`, `compensated` or `skipped`.",
            EngineStepState::ALL.iter().map(|s| s.as_str()),
        )
    }
}

impl ToSchema for StepState {}

/// Where one step stood, and how many times it was entered.
#[derive(Debug, ToSchema)]
pub struct StepProgress {
    state: StepState,
    runs: u64,
}

/// What a node of a workflow's graph stands for (a schema only).
#[derive(Debug)]
pub struct GraphNodeKind;

impl PartialSchema for GraphNodeKind {
    fn schema() -> RefOr<Schema> {
        names_schema(
            "A step's type, or `compensation` (a step's undo) or `handler` (the \
             workflow's error handlers).",
            NodeKind::ALL.iter().map(|k| k.as_str()),
        )
    }
}

impl ToSchema for GraphNodeKind {}

/// How control goes along an edge of a workflow's graph (a schema only).
#[derive(Debug)]
pub struct GraphEdgeKind;

impl PartialSchema for GraphEdgeKind {
    fn schema() -> RefOr<Schema> {
        names_schema(
            "`next`; `decision` (labelled with the branch key) or `default`; `branch` \
             (a parallel step to a branch's first step, labelled with the branch); \
             `on_error`; `compensate`; `handler` (labelled with the error type).",
            EdgeKind::ALL.iter().map(|k| k.as_str()),
        )
    }
}

impl ToSchema for GraphEdgeKind {}

/// A workflow version drawn as a graph.
#[derive(Debug, ToSchema)]
pub struct WorkflowGraph {
    /// Steps in declaration order (a parallel step before its branches'
    /// steps), then one node per step's compensation (id
    /// `<step>~compensate`), then the error handlers' node
    /// (`~errorHandlers`) if there are handlers.
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
}

#[derive(Debug, ToSchema)]
pub struct GraphNode {
    /// The step's id (or a compensation's or the handlers' id, with `~`).
    id: String,
    /// What to write on it: the step's name, a line break, and what it
    /// runs (capability, event, workflow).
    label: String,
    kind: GraphNodeKind,
    /// The parallel step whose branch holds it; `null` at the top.
    #[schema(required = true)]
    parent: Option<String>,
    /// That branch's name; `null` at the top.
    #[schema(required = true)]
    branch: Option<String>,
}

#[derive(Debug, ToSchema)]
pub struct GraphEdge {
    from: String,
    to: String,
    kind: GraphEdgeKind,
    #[schema(required = true)]
    label: Option<String>,
}

impl PartialSchema for Code {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An error's stable code. Each implies the response's status: \
                 `bad_request`, `malformed_json`, `invalid_query`, `invalid_header` 400; \
                 `unauthenticated`, `invalid_signature` 401; `forbidden`, `not_yours`, \
                 `cross_site` 403; \
                 `not_found` and `unknown_*` 404; `method_not_allowed` 405; `timeout` 408; \
                 `wrong_state`, `not_outstanding`, `conflict` 409; \
                 `payload_too_large` 413; `unsupported_media_type` 415; `invalid_*` 422; \
                 `rate_limited` 429; \
                 `internal` 500; `unavailable`, `storage_unavailable` 503.",
            ))
            .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for Code {
    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }
}

/// The `{capability}` path parameter of the routes on one capability
/// (its breaker, its limits), as the engine's capability names are spelled.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only its parameter's schema is used: the path is read as text.
pub struct CapabilityPath {
    /// The capability: 1 to 128 characters, `a-z 0-9` first, then also `_ . : -`.
    #[param(min_length = 1, max_length = 128, pattern = "^[a-z0-9][a-z0-9_.:-]*$")]
    capability: String,
}

/// A start's `tags`: at most 32, each key `A-Z a-z 0-9` first, then also
/// `_ . : / -` (at most 64), each value at most 256 characters with no
/// control or bidirectional character (the engine's `machine::tags`).
pub fn tags_schema() -> Schema {
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"));
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(256))
        .pattern(Some(
            "^[^\\u0000-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u202A-\\u202E\\u2066-\\u2069]*$",
        ));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(
            "Tags to find the execution by (`GET /v1/executions?tag=key:value`): at most 32; \
             keys `A-Z a-z 0-9` first, then also `_ . : / -`, at most 64 characters; values \
             at most 256 characters, with no control or bidirectional character.",
        ))
        .property_names(Some(key))
        .additional_properties(Some(value))
        .max_properties(Some(32))
        .into()
}

/// A workflow definition in JSON (a schema only).
#[derive(Debug)]
pub struct WorkflowDefinition;

impl PartialSchema for WorkflowDefinition {
    fn schema() -> RefOr<Schema> {
        let described = |kind: SchemaType, description: &str| {
            ObjectBuilder::new()
                .schema_type(kind)
                .description(Some(description))
        };
        let or_null = |kind: Type| SchemaType::from_iter([kind, Type::Null]);
        let whole = |max: u64, description: &str| {
            described(or_null(Type::Integer), description)
                .minimum(Some(1u64))
                .maximum(Some(max))
        };
        let objects = |kind: SchemaType, description: &str| {
            ArrayBuilder::new()
                .schema_type(kind)
                .items(ObjectBuilder::new().schema_type(Type::Object))
                .description(Some(description))
        };
        let example = serde_json::json!({
            "name": "greet", "version": "1.0.0",
            "steps": [
                {"id": "lookup", "type": "task", "capability": "users.lookup",
                 "input": {"userId": "$.input.userId"}, "output": {"user": "$.output"},
                 "next": "approval"},
                {"id": "approval", "type": "event", "event": {"name": "greeting.approved"}}
            ]
        });
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(format!(
                "A workflow definition in the workflow language (`docs/dsl.md`). The top \
                 level is described here; a step is an object whose fields depend on its \
                 `type`. The engine checks everything else (names, references between \
                 steps, expressions, schemas, ranges) and reports every problem with its \
                 path (`422 invalid_workflow`), so a document of this shape may still be \
                 refused. An explicit `null` is the same as leaving a field out. A \
                 document is at most {DOCUMENT_BYTES_MAX} bytes, with objects and arrays \
                 nested at most {DOCUMENT_DEPTH_MAX} deep (beyond either, one problem at \
                 the empty path says which limit, before the document is parsed further)."
            )))
            .property(
                "name",
                described(
                    Type::String.into(),
                    "The workflow's name: `A-Z a-z 0-9` first, then also `_ . -`.",
                )
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.-]*$")),
            )
            .property(
                "description",
                described(or_null(Type::String), "Free text."),
            )
            .property(
                "version",
                described(
                    or_null(Type::String),
                    "A label for people (`1.0.0`); the version is the content hash.",
                ),
            )
            .property(
                "language",
                whole(
                    2,
                    "The version of the workflow language the document is written in \
                     (`docs/dsl.md`, Language versions): 1, or 2 (the orchestrator \
                     specification's dialect). Left out, the newest (2) is recorded.",
                ),
            )
            .property(
                "input",
                described(
                    SchemaType::AnyValue,
                    "A JSON Schema the input of every execution must match.",
                ),
            )
            .property(
                "output",
                described(
                    SchemaType::AnyValue,
                    "A JSON Schema of the output (checked to be one; not enforced).",
                ),
            )
            .property(
                "steps",
                objects(
                    Type::Array.into(),
                    "At least one step; at most 1000 in all, steps of parallel branches \
                     included.",
                )
                .min_items(Some(1))
                .max_items(Some(1000)),
            )
            .property(
                "start",
                described(or_null(Type::String), "The entry step's id."),
            )
            .property(
                "errorHandlers",
                objects(or_null(Type::Array), "Workflow-wide error handlers."),
            )
            .property(
                "timeoutMs",
                whole(
                    u64::MAX,
                    "Time limit for the whole execution, in milliseconds.",
                ),
            )
            .property(
                "deadlineMs",
                whole(
                    u64::MAX,
                    "A deadline that warns, in milliseconds from the start: passed \
                     before the execution ends, `deadline_missed` is recorded.",
                ),
            )
            .property(
                "fairnessKey",
                described(
                    or_null(Type::String),
                    "The fairness key of every task step that has none of its own: a \
                     mapping (`$.input.tenant`) whose value takes turns with other keys' \
                     tasks of the same priority.",
                ),
            )
            .property(
                "concurrency",
                described(
                    or_null(Type::Object),
                    "At most `limit` executions of this workflow run at once per `key` \
                     (a mapping over the start context; absent: one key for the whole \
                     workflow); the rest wait.",
                )
                .property(
                    "key",
                    described(or_null(Type::String), "Whose execution it is."),
                )
                .property(
                    "limit",
                    whole(LIMIT_MAX, "Executions running at once per key."),
                )
                .required("limit")
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .property(
                "rateLimit",
                described(
                    or_null(Type::Object),
                    "At most `limit` executions of this workflow start per `periodMs` \
                     per `key`; the rest wait.",
                )
                .property(
                    "key",
                    described(or_null(Type::String), "Whose execution it is."),
                )
                .property(
                    "limit",
                    whole(LIMIT_MAX, "Executions starting per period per key."),
                )
                .property(
                    "periodMs",
                    whole(LIMIT_PERIOD_MS_MAX, "The sliding period, in milliseconds."),
                )
                .required("limit")
                .required("periodMs")
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .property(
                "maxTransitions",
                whole(
                    1_000_000,
                    "Cap on step transitions in one execution: at most 1000000.",
                ),
            )
            .property(
                "tags",
                ArrayBuilder::new()
                    .schema_type(or_null(Type::Array))
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("Free labels.")),
            )
            .required("name")
            .required("steps")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .examples([example])
            .into()
    }
}

impl ToSchema for WorkflowDefinition {}

/// A workflow definition in YAML (a schema only).
#[derive(Debug)]
pub struct WorkflowYaml;

impl PartialSchema for WorkflowYaml {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "A workflow definition in the workflow language (`docs/dsl.md`), \
                 written in YAML (UTF-8): a mapping of the same fields as the JSON form, \
                 with the same limits ({DOCUMENT_BYTES_MAX} bytes, nesting at most \
                 {DOCUMENT_DEPTH_MAX} deep). Anything else (an empty body, a scalar, a \
                 sequence) is one problem at the empty path (`422 invalid_workflow`)."
            )))
            .min_length(Some(1))
            .examples([serde_json::Value::String(
                "name: greet\nversion: 1.0.0\nsteps:\n  - id: lookup\n    type: task\n    \
                 capability: users.lookup\n    next: approval\n  - id: approval\n    \
                 type: event\n    event: { name: greeting.approved }\n"
                    .to_owned(),
            )])
            .into()
    }
}

impl ToSchema for WorkflowYaml {}

/// A step or execution error, as `$.error` shows it.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// The error's type: what retry policies and error routes match on.
    #[schema(rename = "type")]
    kind: String,
    message: String,
    /// The step it happened in, when known.
    #[schema(required = false)]
    step: String,
    /// The attempt it happened in, when known.
    #[schema(required = false)]
    attempt: u32,
    /// The agent that reported it, when one did: `<name> (<id>)`.
    #[schema(required = false)]
    agent: String,
    /// `false` when whoever reported it says retrying cannot help.
    #[schema(required = false)]
    retryable: bool,
    /// For `items_failed`: the map step's failed items (the first 100, in
    /// item order).
    #[schema(required = false)]
    items: Vec<FailedItem>,
}

/// One failed item of a map step.
#[derive(Debug, ToSchema)]
pub struct FailedItem {
    /// The item's position, from 0.
    index: u64,
    /// Why its flow failed.
    #[schema(no_recursion)]
    error: ErrorInfo,
}

/// Which parallel branch, or which item of a map step, a step runs in.
#[derive(Debug, ToSchema)]
pub struct Thread {
    /// The activation of the parallel (or map) step.
    parallel: u64,
    /// The branch's index (the item's, in a map step).
    branch: u64,
}

/// A step that failed and waits for an operator (paused by
/// `onFailure: pause`), or marks where a failed execution can be
/// redriven.
#[derive(Debug, ToSchema)]
pub struct FailedStep {
    /// The step's id.
    step: String,
    /// The parallel branch it ran in; `null` at the top level.
    #[schema(required = true)]
    thread: Option<Thread>,
    /// The step's evaluated input: free JSON (absent if it failed
    /// evaluating it).
    #[schema(required = false)]
    input: Value,
    error: ErrorInfo,
}

/// What a current step is: a workflow step, the compensation of a
/// completed one, or an error handler.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum StepRole {
    Step,
    Compensation,
    Handler,
}

/// Whether an agent can take work now: `online` (seen recently, with a
/// free slot), `busy` (every slot it has now taken: its `health.slots`,
/// fewer than `maxConcurrency` while its tasks fail) or `offline` (not seen
/// for 30 s; polling or heartbeating makes it online again).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Busy,
    Offline,
}

/// `GET /v1/metrics`: the engine's figures since the process started.
#[derive(Debug, ToSchema)]
pub struct EngineMetrics {
    system: SystemMetrics,
    /// By workflow name.
    workflows: BTreeMap<String, WorkflowMetrics>,
    /// Task round trips (scheduled to result), by capability.
    capabilities: BTreeMap<String, SeriesFigures>,
    /// The circuit breakers, by capability (capabilities without one are
    /// left out).
    breakers: BTreeMap<String, BreakerFigures>,
}

/// Where a circuit breaker stands (only describes the views' `state` in
/// the OpenAPI document).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case", as = BreakerState)]
#[allow(dead_code)]
pub enum BreakerStateSchema {
    Closed,
    Open,
    HalfOpen,
}

/// One capability's circuit breaker.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct BreakerFigures {
    #[schema(value_type = BreakerStateSchema)]
    state: String,
    /// Times it has opened, as recorded.
    opened: u64,
    /// Task failures within its window now (counted since the server
    /// started).
    recent_failures: u64,
    /// With `perAgent` breakers: each agent's, by agent name (absent
    /// otherwise).
    #[schema(nullable = false)]
    agents: Option<BTreeMap<String, AgentBreakerFigures>>,
}

/// One agent's breaker of a capability.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AgentBreakerFigures {
    #[schema(value_type = BreakerStateSchema)]
    state: String,
    /// Times it has opened, as recorded.
    opened: u64,
    /// Failures of the agent's tasks within the window now (counted since
    /// the server started).
    recent_failures: u64,
}

/// The whole engine's figures.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SystemMetrics {
    /// Executions that have not ended.
    active_workflows: u64,
    /// Executions by status (statuses with none are left out).
    executions_by_status: BTreeMap<String, u64>,
    /// Task results and failures recorded.
    total_tasks_processed: u64,
    /// Task failures over results and failures (0 before any).
    error_rate: f64,
    /// Mean task round trip, in milliseconds.
    avg_task_latency: f64,
    /// Agents not offline.
    active_agents: u64,
    /// Tasks waiting for an agent, by capability.
    queue_sizes: BTreeMap<String, u64>,
    /// How long the longest-waiting queued task has waited, in
    /// milliseconds, by capability (capabilities with none queued are left
    /// out).
    queue_oldest_age_ms: BTreeMap<String, u64>,
    /// Open SSE streams.
    sse_clients: u64,
    journal: JournalMetrics,
    health_status: HealthStatus,
}

/// The journal's writes.
#[derive(Debug, ToSchema)]
pub struct JournalMetrics {
    /// Appends committed.
    appends: u64,
    /// Events committed.
    events: u64,
    /// Flushes to disk.
    flushes: u64,
}

/// `degraded` once shutdown began.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Degraded,
}

/// One workflow's figures.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct WorkflowMetrics {
    workflow_name: String,
    /// Executions started.
    total_executions: u64,
    /// Executions started and not ended.
    active_executions: u64,
    /// Completed over ended (0 before any ended).
    success_rate: f64,
    /// Ended otherwise than completed, over ended.
    error_rate: f64,
    /// Mean duration of ended executions, in milliseconds.
    average_duration: f64,
    /// Times an execution waited for its event budget.
    paced: u64,
    /// Executions failed for reaching the history limit.
    history_limit_failures: u64,
    /// Executions that passed the workflow's `deadlineMs` before ending.
    deadlines_missed: u64,
    /// Step activations that passed their step's `deadlineMs`, by step id
    /// (steps with none left out).
    step_deadlines_missed: BTreeMap<String, u64>,
    /// By step id.
    step_metrics: BTreeMap<String, StepMetrics>,
}

/// One step's figures.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct StepMetrics {
    /// Completions.
    count: u64,
    /// Mean duration, in milliseconds.
    average_duration: f64,
    /// Failures over completions and failures.
    error_rate: f64,
    /// Retries over completions.
    retry_rate: f64,
}

/// What one series reports: results, failures, retries and latencies
/// (milliseconds).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct SeriesFigures {
    count: u64,
    errors: u64,
    retries: u64,
    mean_ms: f64,
    p50_ms: u64,
    p99_ms: u64,
}

/// One frame of an execution's event stream (a schema only).
#[derive(Debug)]
pub struct ExecutionEventFrame;

impl PartialSchema for ExecutionEventFrame {
    fn schema() -> RefOr<Schema> {
        frame(
            "One Server-Sent Events frame of an execution's stream, as its fields: \
             `id` (the event's `seq`), `event` (the event's type) and `data` (the \
             event as JSON, exactly as the events page shows it: `EventView`). A \
             journal error ends the stream with a frame whose `event` is `error` and \
             whose `data` is an `ErrorBody`.",
            &["EventView"],
        )
    }
}

impl ToSchema for ExecutionEventFrame {}

/// One frame of the engine-wide event stream (a schema only).
#[derive(Debug)]
pub struct GlobalEventFrame;

impl PartialSchema for GlobalEventFrame {
    fn schema() -> RefOr<Schema> {
        frame(
            "One Server-Sent Events frame of the engine-wide stream, as its fields: \
             `id` (the event's position in the whole journal), `event` (the event's \
             type) and `data` (the events-page JSON plus `position`, `executionId` and \
             `workflow`: `GlobalEventView`); with `include=breakers`, also a circuit \
             breaker's change, whose `event` starts with `breaker_` and whose `data` is a \
             `BreakerChangeView`. A journal error ends the stream with a frame whose \
             `event` is `error` and whose `data` is an `ErrorBody`.",
            &["GlobalEventView", "BreakerChangeView"],
        )
    }
}

impl ToSchema for GlobalEventFrame {}

/// An SSE frame: an event whose `data` is the JSON of component `view`, or
/// the error frame that ends a stream. OpenAPI 3.1 describes a
/// `text/event-stream` response by the schema of one frame, read as an
/// object of its fields (`id`, `event`, `data`, `retry`), as OpenAPI 3.2's
/// `itemSchema` does; `data` is JSON text, so its schema is a
/// `contentSchema` (JSON Schema 2020-12, written through the extensions
/// map: the builder has no field for it).
fn frame(description: &str, views: &[&str]) -> RefOr<Schema> {
    let json_text = |schema: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/json")
            .extensions(Some(Extensions::from_iter([(
                "contentSchema",
                serde_json::json!({"$ref": format!("#/components/schemas/{schema}")}),
            )])))
            .build()
    };
    let event = |view: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$"))
                    .description(Some(
                        "The frame's `id:`: resume after it with `Last-Event-ID`.",
                    )),
            )
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[a-z_]+$"))
                    .description(Some(
                        "The event's type (`execution_started`, `task_completed`, …).",
                    )),
            )
            .property("data", json_text(view))
            .required("id")
            .required("event")
            .required("data")
    };
    let error = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["error"])),
        )
        .property("data", json_text("ErrorBody"))
        .required("event")
        .required("data");
    views
        .iter()
        .fold(AnyOfBuilder::new(), |frames, view| frames.item(event(view)))
        .item(error)
        .description(Some(description))
        .into()
}

/// A capability, as the workflow language spells it (a schema only).
#[derive(Debug)]
pub struct Capability;

impl PartialSchema for Capability {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A capability: 1 to 128 characters, `a-z 0-9` first, then also \
                 `_ . : -` (`users.lookup`, `billing:charge`).",
            ))
            .min_length(Some(1))
            .max_length(Some(128))
            .pattern(Some("^[a-z0-9][a-z0-9_.:-]*$"))
            .into()
    }
}

impl ToSchema for Capability {}

/// The `Last-Event-ID` header: the last `id:` a client saw, or empty (as
/// if it were not sent).
pub fn last_event_id() -> Schema {
    let id = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::Custom("uint64".to_owned())))
        .minimum(Some(0u64))
        .maximum(Some(u64::MAX));
    let empty = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(0));
    AnyOfBuilder::new()
        .item(id)
        .item(empty)
        .description(Some(
            "The last `id:` received: the stream starts with the event after it. \
             Wins over `?after=`. An empty value is as if there were none; any other \
             that is not a whole number up to 18446744073709551615 is `400 \
             invalid_header`.",
        ))
        .build()
        .into()
}
