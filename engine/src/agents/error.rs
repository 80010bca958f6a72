//! [`AgentError`]: why the registry refused a call.
//!
//! Owns the refusals and their messages. Every refusal leaves the registry
//! exactly as it was; a caller may retry or report it without cleaning up.

use super::agent::AgentId;

/// A call the registry refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No agent is registered under this id (never was, unregistered, or
    /// registered before a restart: registrations live in memory only).
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    /// A registration broke a rule; the message says which.
    #[error("invalid registration: {0}")]
    InvalidRegistration(String),
    /// The task is not (or no longer) outstanding: never queued, already
    /// settled, withdrawn or timed out, or, for a task heartbeat, not claimed.
    #[error("task `{0}` is not outstanding")]
    NotOutstanding(String),
    /// The task is claimed, but by another agent.
    #[error("task `{task}` is not claimed by agent {agent}")]
    NotYours { task: String, agent: AgentId },
}
