//! What one trigger may use from outside the machine: the clock reading,
//! random bits, other workflows' versions, the engine's defaults and its
//! limits, and how a shared journal places executions.
//!
//! Owns [`Ctx`], the [`Versions`] trait the runtime implements,
//! [`Defaults`] and [`Limits`]. It must never read a clock, draw random
//! numbers or look anything up itself: the runtime fills these in, and
//! whatever the machine decides from them is recorded in events (so replay
//! never needs them).

use super::ids::{Placement, child_id, limits_partition, placed_child_id};
use crate::ExecutionId;
use crate::model::RetryPolicy;

/// What the engine knows of other workflows (for subworkflow steps).
pub trait Versions {
    /// The newest version of `workflow`, if it is defined.
    fn latest_version(&self, workflow: &str) -> Option<String>;
    /// Whether `workflow` has version `version`.
    fn has_version(&self, workflow: &str, version: &str) -> bool;
    /// Whether any version of `workflow` declares limits (`concurrency`,
    /// `rateLimit`): on a shared journal its executions are placed in its
    /// own partition ([`super::ids::limits_partition`]).
    fn limited(&self, workflow: &str) -> bool;
}

/// Engine-wide defaults a definition can override.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub max_transitions: u64,
    pub task_timeout_ms: u64,
    /// Applied to task steps that have no `retry` of their own.
    pub retry: Option<RetryPolicy>,
}

/// How steps without a `retry` of their own are retried, engine-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryStrategy {
    None,
    /// The same interval between every attempt.
    Linear,
    /// The interval doubles after every attempt.
    Exponential,
}

impl Defaults {
    /// Defaults from an orchestrator-style configuration: a strategy, how
    /// many retries after the first attempt, the first interval, and the
    /// default task timeout.
    pub fn with_retry_strategy(
        strategy: RetryStrategy,
        max_retries: u32,
        interval_ms: u64,
        task_timeout_ms: u64,
    ) -> Defaults {
        let retry = match strategy {
            RetryStrategy::None => None,
            RetryStrategy::Linear | RetryStrategy::Exponential => Some(RetryPolicy {
                max_attempts: max_retries.saturating_add(1),
                interval_ms,
                backoff_rate: if strategy == RetryStrategy::Linear {
                    1.0
                } else {
                    2.0
                },
                max_interval_ms: None,
                jitter: 0.0,
                non_retryable: Vec::new(),
            }),
        };
        Defaults {
            task_timeout_ms,
            retry,
            ..Defaults::default()
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            max_transitions: 10_000,
            task_timeout_ms: 300_000,
            retry: None,
        }
    }
}

/// The default of [`Limits::history_events_max`]: 50,000 events, just
/// under Temporal's hard limit of 51,200. A few hundred bytes an event, so
/// at most some tens of megabytes of history per execution, which replays
/// in well under a second; an ordinary workflow records tens of events.
pub const HISTORY_EVENTS_MAX_DEFAULT: u64 = 50_000;

/// Engine-wide limits no definition can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most events one execution's history holds. When any event but
    /// the execution's end would be event number `history_events_max`,
    /// the execution fails instead (`history_limit`), and that failure is
    /// the last event: the history never holds more. Not recorded: the
    /// failure is, so replay never needs the value.
    pub history_events_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            history_events_max: HISTORY_EVENTS_MAX_DEFAULT,
        }
    }
}

/// Everything from outside the machine that one trigger may use.
#[allow(missing_debug_implementations)]
pub struct Ctx<'a> {
    pub now_ms: u64,
    /// Random bits for this trigger (retry jitter); what they decide is
    /// recorded in the events.
    pub entropy: u64,
    pub versions: &'a dyn Versions,
    pub defaults: &'a Defaults,
    pub limits: &'a Limits,
    /// Who asked for this trigger: the access token's name, recorded in
    /// the command events (`by`); `None` without tokens, and for what the
    /// engine does by itself (timers, children, continuations).
    pub by: Option<&'a str>,
    /// The agent that reported a task's result (`name (id)`), recorded in
    /// `task_completed`.
    pub agent: Option<&'a str>,
    /// Why, as whoever asked said: recorded in the command events that
    /// have no reason of their own (resume, retry, skip, redrive, start,
    /// signals).
    pub reason: Option<&'a str>,
    /// How the journal places executions, if several servers share it
    /// (`None`: one server drives them all, and ids need no place).
    pub placement: Option<Placement>,
}

impl Ctx<'_> {
    /// The id of `parent`'s child of step `act`, an execution of
    /// `workflow`: [`child_id`], or on a shared journal, for a workflow
    /// with limits, placed in that workflow's partition.
    pub fn child_id(&self, parent: ExecutionId, act: u64, workflow: &str) -> ExecutionId {
        match &self.placement {
            Some(placement) if self.versions.limited(workflow) => placed_child_id(
                parent,
                act,
                limits_partition(workflow, placement),
                placement,
            ),
            _ => child_id(parent, act),
        }
    }
}
