//! The runtime's error type.

use retrace_journal::ExecutionId;

use crate::agents::AgentError;
use crate::machine::{ApplyError, Rejection};
use crate::model::DefinitionError;

/// Everything the engine's API can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Journal(#[from] retrace_journal::Error),
    #[error("invalid workflow: {0}")]
    InvalidWorkflow(DefinitionError),
    #[error("no workflow {name}{}", version.as_ref().map(|v| format!(" at version {v}")).unwrap_or_default())]
    UnknownWorkflow {
        name: String,
        version: Option<String>,
    },
    #[error("no execution {0}")]
    UnknownExecution(ExecutionId),
    #[error("no task {0}")]
    UnknownTask(String),
    #[error("the input does not match the workflow's input schema: {}", .0.join("; "))]
    InvalidInput(Vec<String>),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The journal holds an event this engine cannot fold.
    #[error(transparent)]
    Replay(#[from] ApplyError),
    #[error("[ENGINE-CODEC] {0}")]
    Codec(String),
    #[error("an internal lock was poisoned by a panic")]
    Poisoned,
}
