//! The events of an execution: the only thing the journal stores about it.
//! Every decision the machine makes — a retry delay, a branch taken, a child
//! id, the version a subworkflow resolved to — is recorded here, so replay
//! never decides anything again. Adding a variant forces every `match` on
//! events to decide what it means (no `_` arms in the fold).
//!
//! Owns the events and every type stored in them ([`ErrorInfo`],
//! [`FailedStep`], [`CompensationReason`], ...), with their serde shapes: a
//! recorded journal is read forever, so a shape here never changes. It must
//! never depend on the state or the deciding code: both are built on the
//! events, not the other way round.

use std::collections::{BTreeMap, BTreeSet};

use crate::ExecutionId;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Reads an optional JSON value so that a present `null` is `Some(Null)`:
/// with `skip_serializing_if = "Option::is_none"` this makes `Option<Value>`
/// round-trip exactly (plain serde reads `null` back as `None`, and a
/// decoded event must equal the one the machine emitted).
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Which parallel branch a step runs in (`None` at the top level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Thread {
    /// The activation of the parallel step.
    pub parallel: u64,
    pub branch: usize,
}

/// A step or execution error, as `$.error` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `false` when whoever reported it says retrying cannot help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// A map step's failed items (the first [`FAILED_ITEMS_SHOWN`], in item
    /// order), when too many of them failed.
    /// Boxed, so an error stays small where there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Box<FailedItems>>,
}

/// A map step's failed items, as its error lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FailedItems(pub Vec<FailedItem>);

/// One failed item of a map step, as its error lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedItem {
    pub index: usize,
    pub error: ErrorInfo,
}

/// How many failed items a map step's error lists at most; the message
/// says how many failed in all.
pub const FAILED_ITEMS_SHOWN: usize = 100;

impl ErrorInfo {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind: kind.into(),
            message: message.into(),
            step: None,
            attempt: None,
            agent: None,
            retryable: None,
            items: None,
        }
    }

    pub(crate) fn at(mut self, step: &str, attempt: Option<u32>) -> Self {
        self.step.get_or_insert_with(|| step.to_string());
        if self.attempt.is_none() {
            self.attempt = attempt;
        }
        self
    }
}

/// Error types the engine itself raises.
pub mod error_types {
    /// A mapping or expression failed to evaluate.
    pub const EXPRESSION: &str = "expression_error";
    /// A decision's value matched no branch and there is no default.
    pub const NO_BRANCH: &str = "no_matching_branch";
    /// A task, event wait or the whole workflow ran out of time.
    pub const TIMEOUT: &str = "timeout";
    /// The execution took more step transitions than allowed.
    pub const TRANSITION_LIMIT: &str = "transition_limit";
    /// A subworkflow names a workflow the engine does not know.
    pub const UNKNOWN_WORKFLOW: &str = "unknown_workflow";
    /// The execution's history reached the engine's limit on events.
    pub const HISTORY_LIMIT: &str = "history_limit";
    /// The task's capability has an open circuit breaker: it failed fast,
    /// with no agent asked (retryable, and routable, like any error).
    pub const CIRCUIT_OPEN: &str = "circuit_open";
    /// More of a map step's items failed than it tolerates.
    pub const ITEMS_FAILED: &str = "items_failed";
}

/// One limit of its workflow an execution counts under: which (`name`:
/// `concurrency` or `rateLimit`), its key for this execution, and the
/// limit as the execution's version declared it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitKey {
    pub name: String,
    pub key: String,
    pub limit: u32,
    /// For `rateLimit`: the period its starts are counted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
}

/// The parent of a child execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub execution: ExecutionId,
    pub act: u64,
}

/// Task timeouts as scheduled (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskTimeouts {
    pub start_to_close_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_to_start_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
}

/// A step that failed and waits for an operator (paused by
/// `onFailure: pause`) or marks where a failed execution can be redriven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedStep {
    pub step: String,
    pub thread: Option<Thread>,
    /// The step's evaluated input (absent if it failed evaluating it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub input: Option<Value>,
    pub error: ErrorInfo,
}

/// Why compensation runs (in `compensation_began`, and in the state while
/// it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum CompensationReason {
    Failed { error: ErrorInfo },
    Cancelled { reason: String },
}

/// One event of an execution's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    ExecutionStarted {
        workflow: String,
        version: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentRef>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        max_transitions: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at_ms: Option<u64>,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// How urgent its tasks are, 0 (the default, left out) to 9:
        /// agents are served by priority, aged by waiting (`agents`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<u8>,
        /// When the workflow's `deadlineMs` passes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_at_ms: Option<u64>,
        /// The execution's tags, as the start gave them.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tags: BTreeMap<String, String>,
        /// The steps that declare `compensate`: the state keeps the output
        /// of these alone, for their undoing. Absent from histories written
        /// before it was recorded, whose states keep every output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compensable: Option<BTreeSet<String>>,
    },
    /// A step that waits for something began (inline steps never start: they
    /// only complete).
    StepStarted {
        act: u64,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<Thread>,
        input: Value,
        /// Its tasks' priority, when the step gives one (a task step's
        /// `priority`); otherwise they have the execution's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<u8>,
        /// When the step's `deadlineMs` passes, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_at_ms: Option<u64>,
        /// Its tasks' fairness key (a task step's `fairnessKey`, evaluated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fairness_key: Option<String>,
        /// The version its tasks' agents must have (a task step's
        /// `agentVersion`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_version: Option<String>,
    },
    /// A deadline passed before what it was set on ended: activation
    /// `act`'s step (act 0: the whole execution, `step` absent). Recorded
    /// for people and metrics; nothing else changes.
    DeadlineMissed {
        act: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        deadline_at_ms: u64,
    },
    TaskScheduled {
        act: u64,
        attempt: u32,
        task: String,
        capability: String,
        input: Value,
        timeouts: TaskTimeouts,
    },
    TaskCompleted {
        act: u64,
        attempt: u32,
        task: String,
        output: Value,
        /// The agent that reported it (`name (id)`), when one held it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    TaskFailed {
        act: u64,
        attempt: u32,
        task: String,
        error: ErrorInfo,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The least time the next attempt must wait, when whoever
        /// performed the task was told so (an HTTP `Retry-After`): a retry
        /// then waits the longer of its policy's delay and this. Absent
        /// otherwise, and in histories written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The next attempt of a failed task, after `delay_ms` (jitter included).
    RetryScheduled {
        act: u64,
        attempt: u32,
        delay_ms: u64,
        due_at_ms: u64,
    },
    TimerStarted {
        act: u64,
        due_at_ms: u64,
    },
    TimerFired {
        act: u64,
    },
    EventAwaited {
        act: u64,
        name: String,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        correlation: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at_ms: Option<u64>,
    },
    /// An external event arrived; `act` is the step it completed, or `None`
    /// if no step waited for it yet (it is kept until one does).
    SignalReceived {
        name: String,
        payload: Value,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        correlation: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        act: Option<u64>,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A kept signal (number `index` among those kept) was taken by `act`.
    SignalTaken {
        act: u64,
        index: usize,
    },
    ChildStarted {
        act: u64,
        child: ExecutionId,
        workflow: String,
        version: String,
        input: Value,
    },
    /// A parallel step opened its branches.
    ParallelStarted {
        act: u64,
        branches: usize,
    },
    ChildCompleted {
        act: u64,
        child: ExecutionId,
        output: Value,
    },
    ChildFailed {
        act: u64,
        child: ExecutionId,
        error: ErrorInfo,
    },
    /// The execution is paused: entering `step` waits for the resume.
    StepDeferred {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<Thread>,
        from_output: Value,
        /// The input the step is entered with when it is known already (an
        /// operator's retry of a held step): kept, not evaluated again.
        /// Absent in histories written before it was recorded, where the
        /// entry evaluates the step's input as it did then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    DecisionMade {
        act: u64,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<Thread>,
        value: String,
        target: String,
    },
    /// A step finished: `output` is its result, `variables` what its output
    /// mapping wrote. `input` is present for inline steps (they never started).
    StepCompleted {
        act: u64,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<Thread>,
        output: Value,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        variables: BTreeMap<String, Value>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        input: Option<Value>,
        /// The tags its `tags` mapping set on the execution.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        tags: BTreeMap<String, String>,
    },
    StepFailed {
        act: u64,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<Thread>,
        error: ErrorInfo,
    },
    /// A failed step's error sent the execution to step `to` (`$.error`).
    ErrorRouted {
        step: String,
        to: String,
        error: ErrorInfo,
    },
    BranchCompleted {
        act: u64,
        branch: usize,
        output: Value,
    },
    /// A map step took its items: the array its `items` gave, recorded
    /// once here and never again, and how many may run at once. On a
    /// redrive or retry of a map step that failed, `items` is empty and
    /// `redrive` is set: the step takes the items and results of its failed
    /// run, and runs again only the items that did not complete.
    MapStarted {
        act: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_concurrency: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redrive: bool,
    },
    /// Item `item` of map step `act` starts its flow (with the item as the
    /// first step's `$.output`).
    ItemStarted {
        act: u64,
        item: usize,
    },
    /// Item `item`'s flow ended: `output` is the result of its last step.
    ItemCompleted {
        act: u64,
        item: usize,
        output: Value,
    },
    /// Item `item`'s flow failed with an error nothing in it routed.
    ItemFailed {
        act: u64,
        item: usize,
        error: ErrorInfo,
    },
    /// A step failed with `onFailure: pause` (the execution pauses next), or
    /// failed the execution: what an operator can retry, skip or redrive.
    FailureHeld {
        failed: FailedStep,
    },
    /// An operator retries the held failed step.
    HeldStepRetried {
        /// Who asked (the access token's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator skips the held failed step; `output` stands for its result.
    HeldStepSkipped {
        output: Value,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator reopens a failed execution at the step that failed.
    ExecutionRedriven {
        /// Who asked (the access token's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Undoing begins: `pending` lists the activations to undo, next first.
    CompensationBegan {
        reason: CompensationReason,
        pending: Vec<u64>,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Activation `act` undoes activation `of` (of step `step`).
    CompensationStarted {
        act: u64,
        of: u64,
        step: String,
        input: Value,
    },
    CompensationCompleted {
        act: u64,
        of: u64,
        output: Value,
    },
    /// A compensation failed for good; the execution waits for an operator.
    CompensationFailed {
        act: u64,
        of: u64,
        error: ErrorInfo,
    },
    /// An operator retries the failed compensation.
    CompensationRetried {
        /// Who asked (the access token's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator skips undoing `of` (`act` is the failed compensation, or 0).
    CompensationSkipped {
        act: u64,
        of: u64,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A handler workflow starts for an error nobody in the workflow routed.
    HandlerStarted {
        act: u64,
        child: ExecutionId,
        workflow: String,
        version: String,
        input: Value,
        error: ErrorInfo,
    },
    HandlerFinished {
        act: u64,
        child: ExecutionId,
        ok: bool,
    },
    /// The handler workflow for an error nobody routed is not defined, so
    /// it did not run (`error` says so, type `unknown_workflow`); the
    /// execution fails with the error it was to handle.
    HandlerUnavailable {
        workflow: String,
        error: ErrorInfo,
    },
    ExecutionCompensated {
        error: ErrorInfo,
    },
    /// The deferred steps are entered now (after a resume, or after one
    /// trigger produced as many events as one append should carry).
    Continued,
    /// The execution waits for its workflow's limits before its first
    /// step, which is deferred meanwhile.
    LimitWaiting {
        limits: Vec<LimitKey>,
    },
    /// Its limits let it go: from now it counts against each (a
    /// concurrency slot until it ends, a start in its rate window), and
    /// what it deferred is entered (once it runs, if it is paused).
    LimitAcquired,
    ExecutionPaused {
        reason: String,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    ExecutionResumed {
        /// Who asked (the access token's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why, as the caller said (`Retrace-Reason`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ExecutionCompleted {
        output: Value,
    },
    ExecutionFailed {
        error: ErrorInfo,
    },
    ExecutionCancelled {
        reason: String,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    ExecutionTerminated {
        reason: String,
        /// Who asked: the access token's name (absent without tokens, and
        /// for what the engine did by itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
}

impl Event {
    /// Every event type, as [`Event::kind`] names them (what a webhook
    /// subscription may ask for).
    pub const KINDS: [&'static str; 49] = [
        "execution_started",
        "step_started",
        "deadline_missed",
        "task_scheduled",
        "task_completed",
        "task_failed",
        "retry_scheduled",
        "timer_started",
        "timer_fired",
        "event_awaited",
        "signal_received",
        "signal_taken",
        "child_started",
        "parallel_started",
        "child_completed",
        "child_failed",
        "step_deferred",
        "decision_made",
        "step_completed",
        "step_failed",
        "error_routed",
        "branch_completed",
        "map_started",
        "item_started",
        "item_completed",
        "item_failed",
        "failure_held",
        "held_step_retried",
        "held_step_skipped",
        "execution_redriven",
        "compensation_began",
        "compensation_started",
        "compensation_completed",
        "compensation_failed",
        "compensation_retried",
        "compensation_skipped",
        "handler_started",
        "handler_finished",
        "handler_unavailable",
        "execution_compensated",
        "continued",
        "limit_waiting",
        "limit_acquired",
        "execution_paused",
        "execution_resumed",
        "execution_completed",
        "execution_failed",
        "execution_cancelled",
        "execution_terminated",
    ];

    /// The event's type name, as stored in the journal record's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ExecutionStarted { .. } => "execution_started",
            Event::StepStarted { .. } => "step_started",
            Event::DeadlineMissed { .. } => "deadline_missed",
            Event::TaskScheduled { .. } => "task_scheduled",
            Event::TaskCompleted { .. } => "task_completed",
            Event::TaskFailed { .. } => "task_failed",
            Event::RetryScheduled { .. } => "retry_scheduled",
            Event::TimerStarted { .. } => "timer_started",
            Event::TimerFired { .. } => "timer_fired",
            Event::EventAwaited { .. } => "event_awaited",
            Event::SignalReceived { .. } => "signal_received",
            Event::SignalTaken { .. } => "signal_taken",
            Event::ChildStarted { .. } => "child_started",
            Event::ParallelStarted { .. } => "parallel_started",
            Event::ChildCompleted { .. } => "child_completed",
            Event::ChildFailed { .. } => "child_failed",
            Event::StepDeferred { .. } => "step_deferred",
            Event::DecisionMade { .. } => "decision_made",
            Event::StepCompleted { .. } => "step_completed",
            Event::StepFailed { .. } => "step_failed",
            Event::ErrorRouted { .. } => "error_routed",
            Event::BranchCompleted { .. } => "branch_completed",
            Event::MapStarted { .. } => "map_started",
            Event::ItemStarted { .. } => "item_started",
            Event::ItemCompleted { .. } => "item_completed",
            Event::ItemFailed { .. } => "item_failed",
            Event::FailureHeld { .. } => "failure_held",
            Event::HeldStepRetried { .. } => "held_step_retried",
            Event::HeldStepSkipped { .. } => "held_step_skipped",
            Event::ExecutionRedriven { .. } => "execution_redriven",
            Event::CompensationBegan { .. } => "compensation_began",
            Event::CompensationStarted { .. } => "compensation_started",
            Event::CompensationCompleted { .. } => "compensation_completed",
            Event::CompensationFailed { .. } => "compensation_failed",
            Event::CompensationRetried { .. } => "compensation_retried",
            Event::CompensationSkipped { .. } => "compensation_skipped",
            Event::HandlerStarted { .. } => "handler_started",
            Event::HandlerFinished { .. } => "handler_finished",
            Event::HandlerUnavailable { .. } => "handler_unavailable",
            Event::ExecutionCompensated { .. } => "execution_compensated",
            Event::Continued => "continued",
            Event::LimitWaiting { .. } => "limit_waiting",
            Event::LimitAcquired => "limit_acquired",
            Event::ExecutionPaused { .. } => "execution_paused",
            Event::ExecutionResumed { .. } => "execution_resumed",
            Event::ExecutionCompleted { .. } => "execution_completed",
            Event::ExecutionFailed { .. } => "execution_failed",
            Event::ExecutionCancelled { .. } => "execution_cancelled",
            Event::ExecutionTerminated { .. } => "execution_terminated",
        }
    }

    /// Whether the execution ends with this event.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::ExecutionCompleted { .. }
                | Event::ExecutionFailed { .. }
                | Event::ExecutionCompensated { .. }
                | Event::ExecutionCancelled { .. }
                | Event::ExecutionTerminated { .. }
        )
    }
}

#[cfg(test)]
mod kinds_tests {
    use super::Event;

    /// `KINDS` lists exactly the names `kind` gives: a variant added to
    /// `kind` and not to `KINDS` fails here.
    #[test]
    fn kinds_lists_every_kind_once() {
        let source = include_str!("event.rs");
        let body = source
            .split("pub fn kind(&self) -> &'static str {")
            .nth(1)
            .and_then(|rest| rest.split("pub fn is_terminal").next())
            .unwrap_or_default();
        let mut named: Vec<&str> = body
            .split("=> \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        named.sort_unstable();
        let mut listed = Event::KINDS.to_vec();
        listed.sort_unstable();
        let before = listed.len();
        listed.dedup();
        assert_eq!(listed.len(), before, "a kind is listed twice");
        assert_eq!(listed, named);
        assert!(Event::KINDS.contains(&Event::Continued.kind()));
    }
}
