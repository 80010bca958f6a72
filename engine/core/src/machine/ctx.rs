//! What one trigger may use from outside the machine: the clock reading,
//! random bits, other workflows' versions, and the engine's defaults.
//!
//! Owns [`Ctx`], the [`Versions`] trait the runtime implements, and
//! [`Defaults`]. It must never read a clock, draw random numbers or look
//! anything up itself: the runtime fills these in, and whatever the machine
//! decides from them is recorded in events.

use crate::model::RetryPolicy;

/// What the engine knows of other workflows (for subworkflow steps).
pub trait Versions {
    /// The newest version of `workflow`, if it is defined.
    fn latest_version(&self, workflow: &str) -> Option<String>;
    /// Whether `workflow` has version `version`.
    fn has_version(&self, workflow: &str, version: &str) -> bool;
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

/// Everything from outside the machine that one trigger may use.
#[allow(missing_debug_implementations)]
pub struct Ctx<'a> {
    pub now_ms: u64,
    /// Random bits for this trigger (retry jitter); what they decide is
    /// recorded in the events.
    pub entropy: u64,
    pub versions: &'a dyn Versions,
    pub defaults: &'a Defaults,
}
