//! The JSON shapes the API answers with, built from the engine's types.
//!
//! Owns field names (camelCase), which engine fields are shown, and how
//! times are written (RFC 3339 through [`crate::time`]; durations stay
//! milliseconds). It must never compute anything the engine knows better:
//! every value here is copied or reformatted, not derived from history.

use retrace_engine::agents::{AgentInfo, AgentStatus, ClaimedTask};
use retrace_engine::machine::{
    Activation, ErrorInfo, Event, ExecutionState, FailedStep, Role, Thread,
};
use retrace_engine::model::Workflow;
use retrace_engine::runtime::{ExecutionSummary, HistoryEvent};
use retrace_journal::{EventRecord, ExecutionId};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::time::rfc3339;

/// One event, as the events page and the SSE streams show it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub seq: u64,
    /// The event's kind: `execution_started`, `task_completed`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub at: String,
    /// The event's fields (its JSON without the `type` tag).
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
        EventView::new(h.seq, h.at_ms, h.hash.clone(), &h.event)
    }

    pub fn from_record(r: &EventRecord, event: &Event) -> Self {
        EventView::new(r.seq, r.recorded_at_ms, r.hash_hex(), event)
    }
}

/// An event of the engine-wide stream: the same fields, and whose it is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalEventView {
    /// The journal-wide position (the stream's `id:`).
    pub position: u64,
    pub execution_id: ExecutionId,
    pub workflow: String,
    #[serde(flatten)]
    pub event: EventView,
}

/// The event's JSON without its `type` tag.
fn event_data(event: &Event) -> Value {
    match serde_json::to_value(event) {
        Ok(Value::Object(mut fields)) => {
            fields.remove("type");
            Value::Object(fields)
        }
        Ok(other) => other,
        Err(_) => Value::Object(Map::new()),
    }
}

/// One line of the execution list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummaryView {
    pub id: ExecutionId,
    pub workflow: String,
    pub version: String,
    pub status: &'static str,
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
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    pub id: ExecutionId,
    pub workflow: String,
    pub version: String,
    pub status: &'static str,
    pub input: Value,
    pub output: Value,
    pub error: Option<ErrorInfo>,
    pub variables: Value,
    pub current_steps: Vec<CurrentStep>,
    /// Failed steps an operator may retry or skip (paused), or the one a
    /// failed execution would be redriven from.
    pub failed_steps: Vec<FailedStep>,
    pub start_time: String,
    pub end_time: Option<String>,
    pub metrics: ExecutionMetrics,
    pub parent_id: Option<ExecutionId>,
    pub idempotency_key: Option<String>,
    /// The seq of its last event: where a stream resumes to see what is new.
    pub last_seq: u64,
}

/// A started step still waiting for something.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentStep {
    pub step_id: String,
    pub activation: u64,
    /// `step`, `compensation` or `handler`.
    pub role: &'static str,
    pub thread: Option<Thread>,
    pub start_time: String,
    /// What it waits for: `{"for": "task" | "retry" | "timer" | "event" |
    /// "child" | "branches" | "starting", …}`.
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

/// An execution's figures. `duration` is in milliseconds: up to its end,
/// or up to now while it runs.
#[derive(Debug, Clone, Serialize)]
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
            current_steps: s.activations.values().map(CurrentStep::from).collect(),
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
            last_seq: s.seq,
        }
    }
}

/// A task handed to an agent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    pub execution_id: ExecutionId,
    pub step_id: String,
    pub capability: String,
    pub attempt: u32,
    pub input: Value,
    /// How long the claim lasts from now unless heartbeated: the step's
    /// start-to-close timeout, or its heartbeat interval when that is shorter.
    pub lease_ms: u64,
    pub lease_deadline: String,
    /// When set, the agent must heartbeat the task at least this often.
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
            lease_ms: t.lease_deadline_ms.saturating_sub(t.claimed_at_ms),
            lease_deadline: rfc3339(t.lease_deadline_ms),
            heartbeat_ms: t.spec.heartbeat_ms,
            idempotency_key: t.spec.id.clone(),
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub status: AgentStatus,
    pub active_tasks: u32,
    pub task_count: u64,
    pub success_rate: f64,
    pub average_task_ms: f64,
    pub load_factor: f64,
    pub last_seen: String,
    pub registered_at: String,
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
        }
    }
}

/// A workflow version, without its definition.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub version: String,
    /// The document's own `version` label, if it has one.
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
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowView {
    pub name: String,
    pub version: String,
    pub label: Option<String>,
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
