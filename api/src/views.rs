//! The JSON shapes the API answers with, built from the engine's types.
//!
//! Owns field names (camelCase), which engine fields are shown, and how
//! times are written (RFC 3339 through [`crate::time`]; durations stay
//! milliseconds). It must never compute anything the engine knows better:
//! every value here is copied or reformatted, not derived from history.

use retrace_engine::ExecutionId;
use retrace_engine::agents::{AgentInfo, AgentStatus, ClaimedTask, Health};
use retrace_engine::limits::HeldBy;
use retrace_engine::machine::{
    Activation, ErrorInfo, Event, ExecutionState, FailedStep, Role, Thread,
};
use retrace_engine::model::Workflow;
use retrace_engine::read::{GlobalEvent, HistoryEvent};
use retrace_engine::runtime::ExecutionSummary;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::schemas::{self, ExecutionStatus};
use crate::time::rfc3339;

/// One event, as the events page and the SSE streams show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventView {
    /// Its place in the execution's history: 1, 2, 3, …
    pub seq: u64,
    /// The event's kind: `execution_started`, `task_completed`, …
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "task_completed")]
    pub kind: &'static str,
    /// When it was recorded (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime)]
    pub at: String,
    /// The event's fields (its JSON without the `type` tag), as the journal
    /// stores them: free JSON whose shape depends on `type`; instants in it
    /// are milliseconds since the Unix epoch (`…AtMs`).
    pub data: Value,
    /// The record's hash-chain link, lowercase hex.
    pub hash: String,
}

impl EventView {
    pub fn new(seq: u64, at_ms: u64, hash: String, event: &Event) -> Self {
        EventView {
            seq,
            kind: event.kind(),
            at: rfc3339(at_ms),
            data: event_data(event),
            hash,
        }
    }

    pub fn from_history(h: &HistoryEvent) -> Self {
        EventView::new(h.seq, h.at_ms, h.hash_hex(), &h.event)
    }
}

/// An event of the engine-wide stream: the same fields, and whose it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalEventView {
    /// The journal-wide position (the stream's `id:`).
    pub position: u64,
    #[schema(value_type = String, format = "uuid")]
    pub execution_id: ExecutionId,
    /// The name of the workflow the execution runs.
    pub workflow: String,
    #[serde(flatten)]
    pub event: EventView,
}

impl GlobalEventView {
    pub fn from_global(g: &GlobalEvent) -> Self {
        GlobalEventView {
            position: g.event.position,
            execution_id: g.execution,
            workflow: g.workflow.clone(),
            event: EventView::from_history(&g.event),
        }
    }
}

/// The event's JSON without its `type` tag (the engine's rendering, which
/// webhook deliveries share).
fn event_data(event: &Event) -> Value {
    retrace_engine::webhooks::payload::event_data(event)
}

/// One line of the execution list.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummaryView {
    #[schema(value_type = String, format = "uuid")]
    pub id: ExecutionId,
    pub workflow: String,
    /// The workflow version it runs (64 hex digits).
    pub version: String,
    #[schema(value_type = ExecutionStatus)]
    pub status: &'static str,
    #[schema(format = DateTime)]
    pub start_time: String,
}

impl From<&ExecutionSummary> for ExecutionSummaryView {
    fn from(s: &ExecutionSummary) -> Self {
        ExecutionSummaryView {
            id: s.id,
            workflow: s.workflow.clone(),
            version: s.version.clone(),
            status: s.status.as_str(),
            start_time: rfc3339(s.started_at_ms),
        }
    }
}

/// Everything shown about one execution.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    #[schema(value_type = String, format = "uuid")]
    pub id: ExecutionId,
    pub workflow: String,
    /// The workflow version it runs (64 hex digits).
    pub version: String,
    #[schema(value_type = ExecutionStatus)]
    pub status: &'static str,
    /// The input it was started with: free JSON (`null` when none was given).
    pub input: Value,
    /// Its output once completed: free JSON (`null` until then).
    pub output: Value,
    /// Why it failed, once it failed; `null` otherwise.
    #[schema(value_type = Option<schemas::ErrorInfo>, required = true)]
    pub error: Option<ErrorInfo>,
    /// The workflow's variables as they stand: free JSON (an object).
    pub variables: Value,
    /// The started steps still waiting for something.
    pub current_steps: Vec<CurrentStep>,
    /// Failed steps an operator may retry or skip (paused), or the one a
    /// failed execution would be redriven from.
    #[schema(value_type = Vec<schemas::FailedStep>)]
    pub failed_steps: Vec<FailedStep>,
    #[schema(format = DateTime)]
    pub start_time: String,
    /// When it ended; `null` while it has not.
    #[schema(format = DateTime, required = true)]
    pub end_time: Option<String>,
    pub metrics: ExecutionMetrics,
    /// The execution that started it as a child; `null` for a top-level one.
    #[schema(value_type = Option<String>, format = "uuid", required = true)]
    pub parent_id: Option<ExecutionId>,
    /// The key it was started with, if any.
    #[schema(required = true)]
    pub idempotency_key: Option<String>,
    /// How urgent its tasks are, 0 to 9 (see starting).
    #[schema(minimum = 0, maximum = 9)]
    pub priority: u8,
    /// Its tags: the start's, and those its steps set since (by which
    /// `GET /v1/executions?tag=key:value` finds it).
    pub tags: std::collections::BTreeMap<String, String>,
    /// The seq of its last event: where a stream resumes to see what is new.
    pub last_seq: u64,
}

/// A started step still waiting for something.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentStep {
    pub step_id: String,
    /// The activation's number within the execution (0 for a step not
    /// entered yet: its execution waits for a limit).
    pub activation: u64,
    /// `step`, `compensation` or `handler`.
    #[schema(value_type = schemas::StepRole)]
    pub role: &'static str,
    /// The parallel branch it runs in; `null` at the top level.
    #[schema(value_type = Option<schemas::Thread>, required = true)]
    pub thread: Option<Thread>,
    #[schema(format = DateTime)]
    pub start_time: String,
    /// What it waits for: `{"for": "task" | "retry" | "timer" | "event" |
    /// "child" | "branches" | "starting" | "limit", …}` with the engine's
    /// details (free JSON beyond `for`; for a limit: its `name`, `key`,
    /// `limit` and, live, `inUse`; a task kept queued by its capability's
    /// limits is shown waiting for the limit, `name` `concurrency` or
    /// `rateLimit` and `key` the capability, with the task's fields).
    pub waiting: Value,
}

impl From<&Activation> for CurrentStep {
    fn from(a: &Activation) -> Self {
        CurrentStep {
            step_id: a.step.clone(),
            activation: a.act,
            role: match a.role {
                Role::Step => "step",
                Role::Compensation { .. } => "compensation",
                Role::Handler { .. } => "handler",
            },
            thread: a.thread,
            start_time: rfc3339(a.started_at_ms),
            waiting: serde_json::to_value(&a.waiting).unwrap_or(Value::Null),
        }
    }
}

/// The started steps, then (while the execution waits for its workflow's
/// limits) the steps it deferred, waiting for the first of its limits.
fn current_steps(s: &ExecutionState) -> Vec<CurrentStep> {
    let mut steps: Vec<CurrentStep> = s
        .activations
        .values()
        .map(|a| CurrentStep::from(&**a))
        .collect();
    if let Some(first) = s
        .limits
        .as_ref()
        .filter(|gate| gate.waiting)
        .and_then(|gate| gate.limits.first())
    {
        for d in &s.deferred {
            steps.push(CurrentStep {
                step_id: d.step.clone(),
                activation: 0,
                role: "step",
                thread: d.thread,
                start_time: rfc3339(s.started_at_ms),
                waiting: serde_json::json!({
                    "for": "limit", "name": first.name, "key": first.key, "limit": first.limit,
                }),
            });
        }
    }
    steps
}

impl ExecutionView {
    /// Says which limit holds each waiting step now, and how much of it is
    /// in use (the engine knows; the state alone does not). `held`: the
    /// workflow limit a waiting execution waits for. `task_held`: given a
    /// task's id and capability, the capability limit that keeps it
    /// queued, if one does; such a step of a running execution is shown
    /// waiting for that limit, keeping its task's fields.
    pub fn held_by(
        mut self,
        held: Option<HeldBy>,
        task_held: impl Fn(&str, &str) -> Option<HeldBy>,
    ) -> Self {
        let running = self.status == "running";
        for step in &mut self.current_steps {
            match step.waiting.get("for").and_then(Value::as_str) {
                Some("limit") => {
                    if let Some(held) = &held {
                        step.waiting = serde_json::json!({
                            "for": "limit", "name": held.name, "key": held.key,
                            "limit": held.limit, "inUse": held.in_use,
                        });
                    }
                }
                Some("task") if running => {
                    let text = |field: &str| step.waiting.get(field).and_then(Value::as_str);
                    let Some(held) = text("task")
                        .zip(text("capability"))
                        .and_then(|(task, capability)| task_held(task, capability))
                    else {
                        continue;
                    };
                    if let Some(waiting) = step.waiting.as_object_mut() {
                        waiting.insert("for".into(), "limit".into());
                        waiting.insert("name".into(), held.name.into());
                        waiting.insert("key".into(), held.key.into());
                        waiting.insert("limit".into(), held.limit.into());
                        waiting.insert("inUse".into(), held.in_use.into());
                    }
                }
                _ => {}
            }
        }
        self
    }
}

/// An execution's figures. `duration` is in milliseconds: up to its end,
/// or up to now while it runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionMetrics {
    pub duration: u64,
    pub step_count: u64,
    pub completed_steps: u64,
    pub task_count: u64,
    pub error_count: u64,
    pub retry_count: u64,
}

impl ExecutionView {
    pub fn new(s: &ExecutionState, now_ms: u64) -> Self {
        let end_ms = s.ended_at_ms.unwrap_or(now_ms);
        ExecutionView {
            id: s.id,
            workflow: s.workflow.clone(),
            version: s.version.clone(),
            status: s.status.as_str(),
            input: s.input.clone(),
            output: s.output.clone().unwrap_or(Value::Null),
            error: s.error.clone(),
            variables: serde_json::to_value(&s.variables).unwrap_or(Value::Null),
            current_steps: current_steps(s),
            failed_steps: s.failed_steps.clone(),
            start_time: rfc3339(s.started_at_ms),
            end_time: s.ended_at_ms.map(rfc3339),
            metrics: ExecutionMetrics {
                duration: end_ms.saturating_sub(s.started_at_ms),
                step_count: s.metrics.step_count,
                completed_steps: s.metrics.completed_steps,
                task_count: s.metrics.task_count,
                error_count: s.metrics.error_count,
                retry_count: s.metrics.retry_count,
            },
            parent_id: s.parent.map(|p| p.execution),
            idempotency_key: s.idempotency_key.clone(),
            priority: s.priority,
            tags: s.tags.clone(),
            last_seq: s.seq,
        }
    }
}

/// A task handed to an agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// `<execution id>.<activation>.<attempt>`.
    pub id: String,
    #[schema(value_type = String, format = "uuid")]
    pub execution_id: ExecutionId,
    pub step_id: String,
    pub capability: String,
    /// 1 for the first attempt, then one more per retry.
    pub attempt: u32,
    /// The step's evaluated input: free JSON.
    pub input: Value,
    /// How long the claim lasts from now unless heartbeated: the step's
    /// start-to-close timeout, or its heartbeat interval when that is shorter.
    pub lease_ms: u64,
    /// When the claim runs out unless heartbeated.
    #[schema(format = DateTime)]
    pub lease_deadline: String,
    /// When set, the agent must heartbeat the task at least this often.
    #[schema(required = true)]
    pub heartbeat_ms: Option<u64>,
    /// The same for every delivery of this attempt: the task id.
    pub idempotency_key: String,
}

impl From<&ClaimedTask> for TaskView {
    fn from(t: &ClaimedTask) -> Self {
        TaskView {
            id: t.spec.id.clone(),
            execution_id: t.spec.execution,
            step_id: t.spec.step.clone(),
            capability: t.spec.capability.clone(),
            attempt: t.spec.attempt,
            input: t.spec.input.clone(),
            // What the doc says it is, from the spec: not a difference of
            // two clock readings, which drifts with when they were taken.
            lease_ms: t.lease_ms(),
            lease_deadline: rfc3339(t.lease_deadline_ms),
            heartbeat_ms: t.spec.heartbeat_ms,
            idempotency_key: t.spec.id.clone(),
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    /// Deduplicated and sorted.
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    #[schema(value_type = schemas::AgentStatus)]
    pub status: AgentStatus,
    /// Tasks it holds now.
    pub active_tasks: u32,
    /// Tasks it held that ended: settled or timed out.
    pub task_count: u64,
    /// Succeeded / `taskCount` (timeouts count as failures); `1.0` when none.
    pub success_rate: f64,
    /// Mean time from claim to settle or timeout; `0.0` when none.
    pub average_task_ms: f64,
    /// `activeTasks / maxConcurrency`, in `0..=1`.
    pub load_factor: f64,
    /// Its last poll, heartbeat or task heartbeat; now while it is waiting in
    /// a long poll.
    #[schema(format = DateTime)]
    pub last_seen: String,
    #[schema(format = DateTime)]
    pub registered_at: String,
    /// The name of the access token it registered with (absent on a server
    /// without tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub token: Option<String>,
    /// The version it declared (absent if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub version: Option<String>,
    /// How long it may stay silent before it is shown `offline`: its own,
    /// else the server's default.
    pub heartbeat_timeout_ms: u64,
    /// Its recent results, its effective slots and its routing score.
    pub health: HealthView,
}

impl From<AgentInfo> for AgentView {
    fn from(a: AgentInfo) -> Self {
        AgentView {
            id: a.id.to_string(),
            name: a.name,
            capabilities: a.capabilities,
            max_concurrency: a.max_concurrency,
            status: a.status,
            active_tasks: a.active_tasks,
            task_count: a.task_count,
            success_rate: a.success_rate,
            average_task_ms: a.average_task_ms,
            load_factor: a.load_factor,
            last_seen: rfc3339(a.last_seen_ms),
            registered_at: rfc3339(a.registered_at_ms),
            token: a.token,
            version: a.version,
            heartbeat_timeout_ms: a.heartbeat_timeout_ms,
            health: (&a.health).into(),
        }
    }
}

/// A workflow version, without its definition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionView {
    /// The hex BLAKE3 hash of the canonical definition (64 digits).
    pub version: String,
    /// The document's own `version` label, if it has one.
    #[schema(required = true)]
    pub label: Option<String>,
}

impl From<&Workflow> for VersionView {
    fn from(w: &Workflow) -> Self {
        VersionView {
            version: w.version().to_owned(),
            label: w.label().map(str::to_owned),
        }
    }
}

/// A workflow version with its canonical definition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkflowView {
    pub name: String,
    /// The hex BLAKE3 hash of the canonical definition (64 digits).
    pub version: String,
    /// The document's own `version` label, if it has one.
    #[schema(required = true)]
    pub label: Option<String>,
    /// The canonical form of the definition: free JSON in the workflow
    /// language (`docs/dsl.md`).
    pub definition: Value,
}

impl From<&Workflow> for WorkflowView {
    fn from(w: &Workflow) -> Self {
        WorkflowView {
            name: w.name().to_owned(),
            version: w.version().to_owned(),
            label: w.label().map(str::to_owned),
            definition: serde_json::from_str(w.canonical_json())
                .unwrap_or_else(|_| Value::String(w.canonical_json().to_owned())),
        }
    }
}

/// How well an agent has done lately, and what routing makes of it (see
/// `docs/api.md`, *Routing by health*).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AgentHealth)]
pub struct HealthView {
    /// The ended tasks (settled or timed out) the figures below are over:
    /// its last 20, fewer at first.
    #[schema(minimum = 0, maximum = 20, format = "uint32")]
    recent_tasks: u32,
    /// How many of them failed (a timeout is a failure).
    #[schema(minimum = 0, maximum = 20, format = "uint32")]
    recent_failures: u32,
    /// Mean time from claim to result or timeout over them; `0.0` when
    /// none.
    #[schema(minimum = 0)]
    recent_average_task_ms: f64,
    /// How many tasks it may hold at once now: `max(1, ceil(maxConcurrency
    /// × (1 - recentFailures / 20)))`.
    #[schema(minimum = 1, maximum = 10000, format = "uint32")]
    slots: u32,
    /// Routing's score: `(1 - recentFailures / 20) / (1 +
    /// recentAverageTaskMs / 1000) × free slots / slots`. A claim passes a
    /// task over for a waiting agent whose score is more than 1.5 times
    /// its own.
    #[schema(minimum = 0, maximum = 1)]
    score: f64,
}

impl From<&Health> for HealthView {
    fn from(h: &Health) -> Self {
        HealthView {
            recent_tasks: h.recent_tasks,
            recent_failures: h.recent_failures,
            recent_average_task_ms: h.recent_average_task_ms,
            slots: h.slots,
            score: h.score,
        }
    }
}
