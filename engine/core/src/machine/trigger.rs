//! What can happen to an execution, and how the machine refuses it.
//!
//! Owns [`Trigger`] (the input of [`handle`](super::handle)), [`Rejection`]
//! (its refusals, whose texts operators and clients read) and
//! [`StartParams`]. It only describes: it must never decide anything, nor
//! depend on the code that does.

use crate::ExecutionId;
use std::collections::BTreeMap;

use serde_json::Value;

use super::event::{ErrorInfo, ParentRef};
use super::state::ApplyError;

/// What can happen to an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    TaskCompleted {
        task: String,
        output: Value,
    },
    TaskFailed {
        task: String,
        error: ErrorInfo,
        /// The least time a retry must wait (an HTTP `Retry-After`), when
        /// the performer was told one; recorded in `task_failed`.
        retry_after_ms: Option<u64>,
    },
    TaskTimedOut {
        task: String,
        kind: String,
    },
    /// A timer of activation `act` (0: the workflow's own timeout) is due.
    TimerFired {
        act: u64,
    },
    /// The deadline of activation `act` (0: the workflow's own) is due.
    DeadlinePassed {
        act: u64,
    },
    Signal {
        name: String,
        payload: Value,
        correlation: Option<Value>,
    },
    ChildCompleted {
        child: ExecutionId,
        output: Value,
    },
    ChildFailed {
        child: ExecutionId,
        error: ErrorInfo,
    },
    Pause {
        reason: String,
    },
    Resume,
    /// Enter the steps deferred because one trigger produced enough events.
    Continue,
    /// Its workflow's limits let it go (the runtime's limiter decides).
    LimitAcquired,
    /// Retry the held failed step (`onFailure: pause`) or the failed
    /// compensation.
    Retry,
    /// Skip the held failed step, `output` standing for its result, or skip
    /// the failed compensation.
    Skip {
        output: Value,
    },
    /// Reopen a failed execution at the step that failed.
    Redrive,
    /// End the execution; with `compensate`, undo its completed steps first.
    Cancel {
        reason: String,
        compensate: bool,
    },
    Terminate {
        reason: String,
    },
}

impl Trigger {
    /// How an operator would name it (for refusals).
    pub fn command(&self) -> &'static str {
        match self {
            Trigger::TaskCompleted { .. } => "complete a task of",
            Trigger::TaskFailed { .. } => "fail a task of",
            Trigger::TaskTimedOut { .. } => "time out a task of",
            Trigger::TimerFired { .. } => "fire a timer of",
            Trigger::DeadlinePassed { .. } => "pass a deadline of",
            Trigger::Signal { .. } => "signal",
            Trigger::ChildCompleted { .. } | Trigger::ChildFailed { .. } => "report a child to",
            Trigger::Pause { .. } => "pause",
            Trigger::Resume => "resume",
            Trigger::Continue => "continue",
            Trigger::LimitAcquired => "let through a limit",
            Trigger::Retry => "retry",
            Trigger::Skip { .. } => "skip",
            Trigger::Redrive => "redrive",
            Trigger::Cancel { .. } => "cancel",
            Trigger::Terminate { .. } => "terminate",
        }
    }
}

/// Why a trigger was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// A result for a task that is not outstanding (late, duplicate, wrong
    /// attempt, or the execution moved on).
    #[error("task {0} is not outstanding")]
    NotOutstanding(String),
    /// A timer or child result that no longer matters.
    #[error("{0} is stale")]
    Stale(String),
    /// A timer that is not due yet.
    #[error("timer of activation {act} is due at {due_at_ms}")]
    NotDue { act: u64, due_at_ms: u64 },
    /// The command makes no sense in the execution's status.
    #[error("cannot {command} an execution that is {status}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    WrongState {
        command: &'static str,
        status: &'static str,
        hint: Option<&'static str>,
    },
    /// The machine produced an event its own fold refused: a bug.
    #[error(transparent)]
    Internal(#[from] ApplyError),
    /// The definition does not have a step the state refers to: the
    /// execution is pinned to another version than the one given.
    #[error("the workflow has no step {0}")]
    UnknownStep(String),
}

/// How a new execution starts.
#[derive(Debug, Clone, Default)]
pub struct StartParams {
    pub input: Value,
    pub parent: Option<ParentRef>,
    pub idempotency_key: Option<String>,
    /// Signal-with-start: an external event recorded right after the start,
    /// in the same append, before any step runs; kept for the first step
    /// that waits for it, as a signal sent before that step is.
    pub signal: Option<StartSignal>,
    /// How urgent its tasks are, 0 to 9 (`None`: 0); checked by the caller
    /// ([`PRIORITY_MAX`]).
    pub priority: Option<u8>,
    /// The execution's tags; checked by the caller
    /// ([`check_tags`](super::tags::check_tags)).
    pub tags: BTreeMap<String, String>,
}

/// The highest priority: 0 (the default) to this.
pub const PRIORITY_MAX: u8 = 9;

/// The signal a start carries.
#[derive(Debug, Clone, PartialEq)]
pub struct StartSignal {
    pub name: String,
    pub payload: Value,
    pub correlation: Option<Value>,
}
