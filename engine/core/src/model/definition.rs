//! The workflow document as the user wrote it: plain data, one Rust field per
//! document field, serialized back with the document's own (camelCase) names.
//!
//! Owns the shape of the document and nothing else. Values here are only
//! *decoded* (see `decode`); whether they make sense together is decided when
//! the document is compiled into a [`Workflow`](super::Workflow). These types
//! must never gain a default that is not in the document: re-serializing one
//! is the canonical form the version hash is taken of, so it must say exactly
//! what was written (absent stays absent, `[]` and absent lists are one thing).
//! The one exception is `language`: a new definition that does not give one
//! is recorded with the newest version of the language (see `language`), so
//! that its meaning is written into the canonical form and the version hash.
//!
//! Mappings (`input`, `output`, `compensate.input`) and JSON Schemas are kept
//! as the raw JSON they were written as.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub use super::limits::{ConcurrencyDefinition, RateLimitDefinition};

/// A whole workflow document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowDefinition {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The document's own version label; the real version is the content hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version of the workflow language the document is written in
    /// (see [`Language`](super::Language)); absent only in a definition
    /// stored before versions existed, which is version 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<u64>,
    /// JSON Schema the execution input must satisfy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// JSON Schema of the execution output (documentation; not enforced here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub steps: Vec<StepDefinition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_handlers: Vec<ErrorHandlerDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A deadline that warns: missed, it is recorded and the execution goes on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The default `fairnessKey` of its task steps (a mapping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<String>,
    /// How many of its executions run at once, per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyDefinition>,
    /// How many of its executions start per period, per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDefinition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// At most [`WorkflowDefinition::MAX_TRANSITIONS_MAX`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_transitions: Option<u64>,
}

impl WorkflowDefinition {
    /// The largest `maxTransitions` a document may ask for: one million.
    ///
    /// Every transition records at least one event (a few hundred bytes on
    /// disk), so a million transitions is twenty times the engine's default
    /// history limit (50,000 events per execution) and already seconds of
    /// replay; work that needs more belongs in child executions
    /// (subworkflows), each with a history of its own. A larger value could
    /// only ever be cut short by the history limit, so it would promise what
    /// the engine does not do. It is far above the engine's default (10,000,
    /// `Defaults::max_transitions`), which a test keeps true.
    pub const MAX_TRANSITIONS_MAX: u64 = 1_000_000;
}

/// The `type` of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    Task,
    Decision,
    Parallel,
    Map,
    Wait,
    Event,
    Subworkflow,
}

impl StepType {
    /// Every step type, in the order the documentation lists them.
    pub const ALL: [StepType; 7] = [
        StepType::Task,
        StepType::Decision,
        StepType::Parallel,
        StepType::Map,
        StepType::Wait,
        StepType::Event,
        StepType::Subworkflow,
    ];

    /// The name written in the document's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Task => "task",
            StepType::Decision => "decision",
            StepType::Parallel => "parallel",
            StepType::Map => "map",
            StepType::Wait => "wait",
            StepType::Event => "event",
            StepType::Subworkflow => "subworkflow",
        }
    }

    /// The step type written as `name`, if there is one.
    pub fn parse(name: &str) -> Option<StepType> {
        StepType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The one field that carries this type's own settings.
    pub fn own_field(self) -> &'static str {
        match self {
            StepType::Task => "capability",
            StepType::Decision => "decision",
            StepType::Parallel => "parallel",
            StepType::Map => "map",
            StepType::Wait => "wait",
            StepType::Event => "event",
            StepType::Subworkflow => "subworkflow",
        }
    }
}

/// One step, of any type; the fields of other types are absent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepDefinition {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub step_type: StepType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<ParallelDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<MapDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subworkflow: Option<SubworkflowDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TimeoutDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensate: Option<CompensateDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// A task step's priority: an integer 0 to 9, or a mapping that gives
    /// one when the step starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Value>,
    /// Milliseconds from the step starting until its deadline is missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// A task step's fairness key: a mapping that gives a string (a
    /// tenant, a customer) when the step starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<String>,
    /// A task step's requirement on the version of the agent that takes its
    /// tasks (a semver requirement such as `>=2.1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Tags the step sets on its execution when it completes: tag keys to
    /// mappings, evaluated like `output`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Value>>,
}

/// `decision`: evaluate `expression`, go to the step named by the matching branch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionDefinition {
    pub expression: String,
    pub branches: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// `parallel`: run every branch, join them all, then go to the step's `next`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParallelDefinition {
    pub branches: Vec<BranchDefinition>,
}

/// One branch of a `parallel` step; its entry is its first step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BranchDefinition {
    pub name: String,
    pub steps: Vec<StepDefinition>,
}

/// `map`: run `steps` once per element of the array `items` evaluates to,
/// at most `maxConcurrency` at a time, then go to the step's `next` with
/// the items' results in item order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapDefinition {
    /// A mapping that must give an array when the step starts.
    pub items: Value,
    /// The flow each item runs; its entry is its first step.
    pub steps: Vec<StepDefinition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerated_failures: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerated_failure_percent: Option<f64>,
}

/// `wait`: a duration or an instant; exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitDefinition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// RFC 3339, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// `event`: wait for a named external event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDefinition {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `subworkflow`: start a child execution and wait for its output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubworkflowDefinition {
    pub workflow: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `retry`, on a step, a compensation or an error handler.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryDefinition {
    pub max_attempts: u32,
    /// Milliseconds before the first retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_rate: Option<f64>,
    /// Milliseconds; the longest wait between two attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub non_retryable: Vec<String>,
}

/// `timeout`: a number of milliseconds (start to close), or the detailed form.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TimeoutDefinition {
    StartToCloseMs(u64),
    Detailed(DetailedTimeout),
}

/// The detailed form of `timeout`; every field in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailedTimeout {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_to_close_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_to_start_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
}

/// `compensate`: the action that undoes a completed step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompensateDefinition {
    pub capability: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryDefinition>,
}

/// One entry of the workflow's `errorHandlers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorHandlerDefinition {
    /// An error type, or `*` for any.
    pub error: String,
    /// A top-level step id, or else a workflow name.
    pub handler: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryDefinition>,
}

/// `onFailure`: what happens to the execution when the step finally fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The execution fails (after compensation); the default.
    #[default]
    Fail,
    /// The execution pauses for an operator to decide.
    Pause,
}

impl OnFailure {
    /// The name written in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Fail => "fail",
            OnFailure::Pause => "pause",
        }
    }
}
