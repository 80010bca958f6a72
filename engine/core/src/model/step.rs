//! The compiled step: what the engine reads to run a workflow.
//!
//! Owns the engine-facing types ([`Step`], [`StepKind`], [`RetryPolicy`], ...)
//! with every default applied, every expression compiled and every reference
//! checked. It must never be built from unchecked input; only `compile`
//! makes these, and only as part of a valid [`Workflow`](super::Workflow).
//! Arithmetic the engine needs on them (retry delays, error matching) lives
//! here as pure functions; randomness enters as an argument.

use std::collections::BTreeMap;

use serde_json::Value;

use super::definition::OnFailure;
use super::expr::{Expr, branch_key};
use super::mapping::Mapping;

/// One step of a compiled workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique across the whole workflow, nested branches included.
    pub id: String,
    /// The document's `name`, or the id when it has none.
    pub name: String,
    pub kind: StepKind,
    /// Evaluated into the step's input (task input, child input, ...).
    pub input: Option<Mapping>,
    /// Variable name → mapping, evaluated with `output` = the step's result;
    /// the values are written into `variables`.
    pub output: Option<BTreeMap<String, Mapping>>,
    /// The step after this one, in the same scope; `None` ends the workflow
    /// (or, in a branch, ends the branch).
    pub next: Option<String>,
    pub retry: Option<RetryPolicy>,
    pub timeout: Timeouts,
    /// Where to go when the step fails (after retries), in the same scope.
    pub on_error: Option<String>,
    pub compensate: Option<Compensation>,
    pub on_failure: OnFailure,
    /// Whether the step is top-level or inside a parallel branch.
    pub scope: Scope,
    /// A task step's priority (an integer 0 to 9 when evaluated); without
    /// one, its execution's.
    pub priority: Option<Mapping>,
    /// Milliseconds from the step starting until its deadline is missed
    /// (recorded; the step goes on).
    pub deadline_ms: Option<u64>,
    /// A task step's fairness key (a string when evaluated): its own, else
    /// the workflow's `fairnessKey`.
    pub fairness_key: Option<Mapping>,
    /// A task step's requirement on its agents' version (checked semver).
    pub agent_version: Option<String>,
    /// The tags the step sets on its execution when it completes, each a
    /// mapping read like `output`'s (empty without `tags`).
    pub tags: BTreeMap<String, Mapping>,
}

impl Step {
    /// For a decision step, the step its expression's `value` leads to: the
    /// branch keyed by [`branch_key`], else the default; `None` if neither
    /// (or if this is not a decision).
    pub fn decision_target(&self, value: &Value) -> Option<&str> {
        match &self.kind {
            StepKind::Decision {
                branches, default, ..
            } => branches
                .get(&branch_key(value))
                .or(default.as_ref())
                .map(String::as_str),
            _ => None,
        }
    }
}

/// Where a step lives. `next`, decision targets and `onError` never leave it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// A step of the workflow's own `steps`.
    Top,
    /// A step of branch number `branch` (from 0) of the parallel step `parallel`.
    Branch { parallel: String, branch: usize },
    /// A step of the flow the map step `map` runs for each item.
    Items { map: String },
}

impl Scope {
    /// Where the scope is, for messages: "a branch of parallel step `p`".
    pub fn describe(&self) -> String {
        match self {
            Scope::Top => "the workflow's top level".to_owned(),
            Scope::Branch { parallel, .. } => format!("a branch of parallel step `{parallel}`"),
            Scope::Items { map } => format!("the item steps of map step `{map}`"),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Hand the input to an agent (or a built-in) offering `capability`.
    Task { capability: String },
    /// Evaluate `expression`; go to `branches[branch_key(value)]`, else `default`.
    Decision {
        expression: Expr,
        branches: BTreeMap<String, String>,
        default: Option<String>,
    },
    /// Run every branch; when all have ended, go to `next`.
    Parallel { branches: Vec<Branch> },
    /// Run the flow `each` once per element of the array `items` gives.
    Map(MapSpec),
    /// A durable timer.
    Wait(WaitSpec),
    /// Wait for the external event `name` (whose correlation value, if any,
    /// must equal `correlation` evaluated when the step starts).
    Event {
        name: String,
        correlation: Option<Expr>,
        timeout_ms: Option<u64>,
    },
    /// Start an execution of `workflow` (pinned to `version` if given) with
    /// the step's input; its output is the step's result.
    Subworkflow {
        workflow: String,
        version: Option<String>,
    },
}

/// One branch of a parallel step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub name: String,
    /// The branch's entry: its first step.
    pub start: String,
    /// The ids of the branch's own steps, in declaration order (steps of
    /// parallel steps nested in it are not listed; they have their own branch).
    pub steps: Vec<String>,
}

/// What a map step runs, over what, and how many items may fail.
#[derive(Debug, Clone, PartialEq)]
pub struct MapSpec {
    /// Evaluated when the step starts (like `input`); must give an array.
    pub items: Mapping,
    /// The item flow: its entry is `each.start`, its own steps `each.steps`.
    pub each: Branch,
    /// The most items in flight at once; `None` is no cap.
    pub max_concurrency: Option<u32>,
    /// How many items may fail before the step fails.
    pub tolerated: Tolerance,
}

/// How many failed items a map step tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    /// At most this many (`toleratedFailures`).
    pub count: Option<u64>,
    /// At most this percentage of all items (`toleratedFailurePercent`).
    pub percent: Option<f64>,
}

impl Tolerance {
    /// Whether `failed` failures out of `items` are more than tolerated.
    /// Neither bound given tolerates none; with both, exceeding either is
    /// too many.
    pub fn exceeded(&self, failed: usize, items: usize) -> bool {
        let failed_u = failed as u64;
        match (self.count, self.percent) {
            (None, None) => failed > 0,
            (count, percent) => {
                count.is_some_and(|c| failed_u > c)
                    || percent.is_some_and(|p| failed as f64 * 100.0 > p * items as f64)
            }
        }
    }
}

/// How long a wait step waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitSpec {
    /// This many seconds after the step starts.
    Seconds(u64),
    /// Until this instant, in milliseconds since the Unix epoch (UTC).
    UntilMs(u64),
}

/// When to try a failed step again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: 1 means no retry.
    pub max_attempts: u32,
    /// Wait before the first retry (default [`RetryPolicy::INTERVAL_MS_DEFAULT`]).
    pub interval_ms: u64,
    /// Each further wait is this many times the last (default 2.0; at least 1.0).
    pub backoff_rate: f64,
    /// No wait is longer than this.
    pub max_interval_ms: Option<u64>,
    /// Fraction of each wait that is random, 0.0 (default) to 1.0.
    pub jitter: f64,
    /// Error types that are never retried.
    pub non_retryable: Vec<String>,
}

impl RetryPolicy {
    /// `interval` when the document does not say.
    pub const INTERVAL_MS_DEFAULT: u64 = 1_000;
    /// `backoffRate` when the document does not say.
    pub const BACKOFF_RATE_DEFAULT: f64 = 2.0;

    /// Whether a step that has failed `failed_attempts` times may run again.
    pub fn allows_another(&self, failed_attempts: u32) -> bool {
        failed_attempts < self.max_attempts
    }

    /// Whether an error of type `error_type` may be retried at all.
    pub fn is_retryable(&self, error_type: &str) -> bool {
        !self.non_retryable.iter().any(|t| t == error_type)
    }

    /// The wait before the next attempt after `failed_attempts` failures
    /// (at least 1). `unit` is a random number in `[0, 1)` chosen by the
    /// caller and recorded, so replay computes the same delay:
    /// `base = min(interval × rate^(failed_attempts − 1), maxInterval)`, and
    /// the delay is `base × (1 − jitter × unit)`.
    pub fn delay_ms(&self, failed_attempts: u32, unit: f64) -> u64 {
        let exponent = i32::try_from(failed_attempts.saturating_sub(1)).unwrap_or(i32::MAX);
        let mut base = self.interval_ms as f64 * self.backoff_rate.powi(exponent);
        if let Some(max) = self.max_interval_ms {
            base = base.min(max as f64);
        }
        let unit = unit.clamp(0.0, 1.0);
        let delay = base * (1.0 - self.jitter * unit);
        // `as` saturates: an overflowing base becomes u64::MAX.
        delay.max(0.0).round() as u64
    }
}

/// Time limits on one attempt of a step, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// From the attempt starting to its result.
    pub start_to_close_ms: Option<u64>,
    /// From the attempt being queued to an agent claiming it.
    pub schedule_to_start_ms: Option<u64>,
    /// Longest silence between an agent's heartbeats.
    pub heartbeat_ms: Option<u64>,
}

/// The action that undoes a completed step.
#[derive(Debug, Clone, PartialEq)]
pub struct Compensation {
    pub capability: String,
    /// Evaluated with `output` = the output of the step being undone.
    pub input: Option<Mapping>,
    pub retry: Option<RetryPolicy>,
}

/// One entry of the workflow's `errorHandlers`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorHandler {
    /// An error type, or `*` for any.
    pub error: String,
    pub handler: HandlerTarget,
    pub retry: Option<RetryPolicy>,
}

impl ErrorHandler {
    /// Whether this handler handles errors of type `error_type`.
    pub fn matches(&self, error_type: &str) -> bool {
        self.error == "*" || self.error == error_type
    }
}

/// What an error handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerTarget {
    /// A top-level step of this workflow.
    Step(String),
    /// Another workflow, by name, started with the error.
    Workflow(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(interval_ms: u64, backoff_rate: f64, max: Option<u64>, jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            interval_ms,
            backoff_rate,
            max_interval_ms: max,
            jitter,
            non_retryable: vec!["Fatal".to_owned()],
        }
    }

    #[test]
    fn delays_grow_by_the_rate_up_to_the_cap() {
        let retry = policy(1_000, 2.0, Some(5_000), 0.0);
        let delays: Vec<u64> = (1..=5).map(|n| retry.delay_ms(n, 0.5)).collect();
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 5_000, 5_000]);
    }

    #[test]
    fn jitter_takes_a_random_share_off() {
        let retry = policy(1_000, 1.0, None, 0.5);
        assert_eq!(retry.delay_ms(1, 0.0), 1_000);
        assert_eq!(retry.delay_ms(1, 0.5), 750);
        assert_eq!(retry.delay_ms(1, 1.0), 500);
    }

    #[test]
    fn huge_delays_saturate() {
        let retry = policy(u64::MAX, 10.0, None, 0.0);
        assert_eq!(retry.delay_ms(u32::MAX, 0.0), u64::MAX);
    }

    #[test]
    fn attempts_and_error_types_limit_retries() {
        let retry = policy(1, 1.0, None, 0.0);
        assert!(retry.allows_another(4));
        assert!(!retry.allows_another(5));
        assert!(retry.is_retryable("Timeout"));
        assert!(!retry.is_retryable("Fatal"));
    }
}
