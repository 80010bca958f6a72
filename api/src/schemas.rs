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

use retrace_engine::machine::Status;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
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

impl PartialSchema for Code {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An error's stable code. Each implies the response's status: \
                 `bad_request`, `malformed_json`, `invalid_query`, `invalid_header` 400; \
                 `not_found` and `unknown_*` 404; `method_not_allowed` 405; `timeout` 408; \
                 `wrong_state`, `not_outstanding`, `not_yours`, `conflict` 409; \
                 `payload_too_large` 413; `unsupported_media_type` 415; `invalid_*` 422; \
                 `internal` 500; `unavailable` 503.",
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

/// A workflow definition in JSON (a schema only).
#[derive(Debug)]
pub struct WorkflowDefinition;

impl PartialSchema for WorkflowDefinition {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A workflow definition in the workflow language (`docs/dsl.md`): \
                 free JSON here, checked by the engine, which reports every problem \
                 with its path (`422 invalid_workflow`).",
            ))
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
            .description(Some(
                "A workflow definition in the workflow language (`docs/dsl.md`), \
                 written in YAML (UTF-8).",
            ))
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
}

/// Which parallel branch a step runs in.
#[derive(Debug, ToSchema)]
pub struct Thread {
    /// The activation of the parallel step.
    parallel: u64,
    /// The branch's index.
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
/// free slot), `busy` (every slot taken) or `offline` (not seen for 30 s;
/// polling or heartbeating makes it online again).
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
