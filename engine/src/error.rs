//! The engine's error type: what its API, its read side and its storage
//! can refuse or fail with. Underlying errors are kept as sources, never
//! flattened into text.

use std::path::PathBuf;

use crate::ExecutionId;
use crate::agents::AgentError;
use crate::machine::{ApplyError, Rejection};
use crate::model::DefinitionError;
use retrace_journal::Error as JournalError;

/// Everything the engine's API can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Journal(#[from] JournalError),
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
    /// A start's tags break their rules (nothing recorded).
    #[error("invalid tags: {}", .0.join("; "))]
    InvalidTags(Vec<String>),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A token change refused (nothing recorded).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A breaker change refused (nothing recorded).
    #[error(transparent)]
    Breaker(#[from] BreakerError),
    /// A capability limits change refused (nothing recorded).
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// A schedule change refused (nothing recorded).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A webhook subscription refused, or one that does not exist.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    /// The journal holds an event this engine cannot fold.
    #[error(transparent)]
    Replay(#[from] ApplyError),
    /// An event or a state that does not encode, or a stored one that does
    /// not decode.
    #[error("[ENGINE-CODEC] {what}: {source}")]
    Codec {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A stored event of an execution that does not decode: where it is.
    #[error("[ENGINE-CODEC] event {seq} of execution {execution} does not decode: {source}")]
    Undecodable {
        execution: ExecutionId,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    /// A path given as a data folder that is not one.
    #[error("{} is not a retrace data folder ({why})", .path.display())]
    NotADataFolder { path: PathBuf, why: String },
    /// A data folder another process (a running server) holds.
    #[error("the data folder {} is in use by another process", .path.display())]
    Locked {
        path: PathBuf,
        #[source]
        source: JournalError,
    },
    /// Stored history that contradicts itself (a bug, or a damaged journal).
    #[error("[ENGINE-HISTORY] {0}")]
    Inconsistent(String),
    #[error("an internal lock was poisoned by a panic")]
    Poisoned,
    /// The built-in `http` capability's client cannot be built (its TLS
    /// setup failed).
    #[error("the http capability's client cannot be built: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The engine is shutting down and takes no more work.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Why a breaker change is refused (nothing is recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakerError {
    /// Every problem of the breaker as given.
    #[error("invalid breaker: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("capability `{0}` has no circuit breaker")]
    Unknown(String),
}

/// Why a capability limits change is refused (nothing is recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// Every problem of the limits as given.
    #[error("invalid limits: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("capability `{0}` has no limits")]
    Unknown(String),
}

/// Why a schedule change is refused (nothing is recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Every problem of the schedule as given.
    #[error("invalid schedule: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("a schedule with id `{0}` exists already")]
    Exists(String),
    #[error("no schedule `{0}`")]
    Unknown(String),
}

/// Why a token change is refused (nothing is recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("a token named `{0}` exists already (revoked tokens keep their names)")]
    Exists(String),
    #[error("no token named `{0}`")]
    Unknown(String),
    #[error("the token `{0}` is revoked already")]
    Revoked(String),
}

/// A webhook subscription refused (nothing recorded), or one that does
/// not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Every problem of the spec, each naming its field.
    #[error("invalid webhook: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("no webhook `{0}`")]
    Unknown(String),
}
