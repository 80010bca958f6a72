//! The task types the registry exchanges with the runtime and with agents:
//! what is queued ([`TaskSpec`]), what an agent holds ([`ClaimedTask`]), and
//! how a task leaves ([`Expired`], [`Settled`]).
//!
//! Owns only data and the lease rule ([`lease_deadline`]); it must never
//! read a clock, so every time here is a value someone passed in.

use std::fmt;

use crate::ExecutionId;
use serde::{Deserialize, Serialize};

use super::agent::AgentId;

/// One attempt of one task step, as the runtime queues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Unique task id, also the agent's idempotency key. Opaque here.
    pub id: String,
    pub execution: ExecutionId,
    pub step: String,
    /// Only agents offering this capability may claim the task.
    pub capability: String,
    pub attempt: u32,
    pub input: serde_json::Value,
    /// Start-to-close: a claim (or a task heartbeat) lasts this long.
    pub lease_ms: u64,
    /// The task must be claimed within this long after `scheduled_at_ms`.
    pub schedule_to_start_ms: Option<u64>,
    /// If set, a claimed task must be heartbeated at least this often.
    pub heartbeat_ms: Option<u64>,
    /// When the runtime scheduled this attempt.
    pub scheduled_at_ms: u64,
    /// Its execution's priority, 0 to 9: with the time it has waited, where
    /// it stands in its queue (see `queue`).
    #[serde(default)]
    pub priority: u8,
    /// Whose turn it is among tasks of the same priority: tasks with one key
    /// take turns with other keys' (see `queue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<String>,
    /// The versions of agents that may take it (a semver requirement);
    /// `None`: any agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// A task an agent holds, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedTask {
    pub spec: TaskSpec,
    pub agent: AgentId,
    pub claimed_at_ms: u64,
    /// The claim times out when the clock reaches this instant, unless a
    /// task heartbeat extends it first.
    pub lease_deadline_ms: u64,
}

impl ClaimedTask {
    /// How long a claim (fresh, or just heartbeated) lasts: the heartbeat
    /// interval when it is the shorter, else the lease.
    pub fn lease_ms(&self) -> u64 {
        match self.spec.heartbeat_ms {
            Some(heartbeat_ms) if heartbeat_ms < self.spec.lease_ms => heartbeat_ms,
            _ => self.spec.lease_ms,
        }
    }
}

/// Which deadline a task missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutKind {
    /// Nobody claimed the task in time.
    ScheduleToStart,
    /// The claim's lease ran out.
    StartToClose,
    /// The claiming agent stopped heartbeating the task.
    Heartbeat,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::ScheduleToStart => "schedule_to_start",
            TimeoutKind::StartToClose => "start_to_close",
            TimeoutKind::Heartbeat => "heartbeat",
        })
    }
}

/// A task removed because it missed a deadline; the runtime's retry policy
/// decides what happens next.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expired {
    pub task: TaskSpec,
    /// The agent that held it; `None` for a schedule-to-start timeout.
    pub agent: Option<AgentId>,
    pub kind: TimeoutKind,
}

/// How a task whose result the runtime accepted ended, for agent statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// What settling a task released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    /// The agent that held the task; `None` if it was still queued.
    pub agent: Option<AgentId>,
    /// How long the agent held it; `None` if it was still queued.
    pub duration_ms: Option<u64>,
}

/// The deadline of a claim (or task heartbeat) made at `now_ms`, and the
/// timeout it would be: `now + heartbeat_ms` ([`TimeoutKind::Heartbeat`]) when
/// that is strictly sooner than `now + lease_ms`, else `now + lease_ms`
/// ([`TimeoutKind::StartToClose`]).
pub(super) fn lease_deadline(spec: &TaskSpec, now_ms: u64) -> (u64, TimeoutKind) {
    match spec.heartbeat_ms {
        Some(heartbeat_ms) if heartbeat_ms < spec.lease_ms => {
            (now_ms.saturating_add(heartbeat_ms), TimeoutKind::Heartbeat)
        }
        _ => (
            now_ms.saturating_add(spec.lease_ms),
            TimeoutKind::StartToClose,
        ),
    }
}
