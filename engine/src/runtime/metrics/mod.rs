//! Counters and latency histograms per workflow, step and capability,
//! observed from the events each trigger commits and from the tasks agents
//! claim. Only numbers: no IO, no exposition format (the API renders these
//! figures), and nothing here feeds back into what an execution does.
//!
//! Every duration goes to two places: an HDR histogram (means and
//! quantiles, for the JSON view) and [`Buckets`] of fixed bounds
//! ([`BUCKET_BOUNDS_MS`]), which add up across servers as Prometheus
//! histograms do.
//!
//! The limits on executions are counted per workflow too: how often an
//! execution was paced (something it did by itself waited for its event
//! budget, exposed as `retrace_execution_pacing_waits_total`), and how many
//! executions failed because their history reached its limit
//! (`retrace_history_limit_failures_total`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;

use crate::agents::{AgentRegistry, ClaimedTask};
use crate::machine::{Event, Status, Waiting, error_types};

mod series;

pub use series::{BUCKET_BOUNDS_MS, Buckets, SeriesFigures};
use series::{Series, step_series};

/// Above this many claims remembered (and twice the tasks outstanding), the
/// claims of tasks no longer outstanding are forgotten.
const CLAIMS_PRUNE_AT: usize = 1024;

/// When a claimed task was claimed, to time it at its result.
#[derive(Debug, Clone)]
struct Claim {
    capability: String,
    claimed_at_ms: u64,
}

#[derive(Debug, Default)]
struct WorkflowSeries {
    started: u64,
    ended: BTreeMap<&'static str, u64>,
    duration: Series,
    /// Execution durations by final status.
    durations: BTreeMap<&'static str, Buckets>,
    steps: BTreeMap<String, Series>,
    paced: u64,
    history_limit_failures: u64,
    deadlines_missed: u64,
    step_deadlines_missed: BTreeMap<String, u64>,
}

/// Figures for one workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowFigures {
    pub started: u64,
    /// Ended executions by final status.
    pub ended: BTreeMap<String, u64>,
    /// Execution durations (count = ended).
    pub duration: SeriesFigures,
    /// Execution durations by final status (each count = `ended` of that
    /// status).
    #[serde(skip)]
    pub durations: BTreeMap<String, Buckets>,
    pub steps: BTreeMap<String, SeriesFigures>,
    /// How many times something an execution did by itself (a
    /// continuation, a due timer) waited for its event budget.
    pub paced: u64,
    /// Executions failed because their history reached the engine's
    /// limit (also counted in `ended`, as `failed`).
    pub history_limit_failures: u64,
    /// Executions that passed the workflow's `deadlineMs` before ending.
    pub deadlines_missed: u64,
    /// Step activations that passed their step's `deadlineMs`, by step.
    pub step_deadlines_missed: BTreeMap<String, u64>,
}

/// Everything the engine counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub workflows: BTreeMap<String, WorkflowFigures>,
    /// Task round trips (scheduled to result) per capability.
    pub capabilities: BTreeMap<String, SeriesFigures>,
    /// Per capability, how long claimed tasks waited in their queue
    /// (scheduled to claimed; count = tasks claimed).
    #[serde(skip)]
    pub queue_wait: BTreeMap<String, Buckets>,
    /// The same waits by the task's priority (0 to 9).
    #[serde(skip)]
    pub queue_wait_by_priority: BTreeMap<u8, Buckets>,
    /// Per capability, how long agents held tasks (claimed to result;
    /// count = results of claimed tasks).
    #[serde(skip)]
    pub run_time: BTreeMap<String, Buckets>,
}

/// The engine's counters.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    workflows: BTreeMap<String, WorkflowSeries>,
    capabilities: BTreeMap<String, Series>,
    queue_wait: BTreeMap<String, Buckets>,
    queue_wait_by_priority: BTreeMap<u8, Buckets>,
    run_time: BTreeMap<String, Buckets>,
    /// Claimed tasks whose result is not recorded yet, by task id.
    claims: HashMap<String, Claim>,
}

/// What the runtime knew of an activation before a trigger.
#[derive(Debug, Clone)]
pub(crate) struct Before {
    pub step: String,
    pub started_at_ms: u64,
    pub task: Option<(String, u64)>,
}

pub(crate) fn before(state: &crate::machine::ExecutionState) -> HashMap<u64, Before> {
    state
        .activations
        .values()
        .map(|a| {
            let task = match &a.waiting {
                Waiting::Task {
                    capability,
                    scheduled_at_ms,
                    ..
                } => Some((capability.clone(), *scheduled_at_ms)),
                _ => None,
            };
            (
                a.act,
                Before {
                    step: a.step.clone(),
                    started_at_ms: a.started_at_ms,
                    task,
                },
            )
        })
        .collect()
}

impl Recorder {
    /// Counts what one committed trigger did. `before` holds the activations
    /// as they were before it; `started_at_ms` is the execution's start.
    pub(crate) fn observe(
        &self,
        workflow: &str,
        started_at_ms: u64,
        now_ms: u64,
        before: &HashMap<u64, Before>,
        events: &[Event],
    ) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        if !inner.workflows.contains_key(workflow) {
            inner
                .workflows
                .insert(workflow.to_string(), WorkflowSeries::default());
        }
        let Some(wf) = inner.workflows.get_mut(workflow) else {
            return;
        };
        let since = |t: u64| now_ms.saturating_sub(t);
        for event in events {
            match event {
                Event::ExecutionStarted { .. } => wf.started += 1,
                Event::StepCompleted {
                    act, step, input, ..
                } => {
                    let ms = match (input, before.get(act)) {
                        (None, Some(b)) => since(b.started_at_ms),
                        _ => 0,
                    };
                    step_series(&mut wf.steps, step).record(ms);
                }
                Event::DecisionMade { step, .. } => {
                    step_series(&mut wf.steps, step).record(0);
                }
                Event::DeadlineMissed { step: None, .. } => wf.deadlines_missed += 1,
                Event::DeadlineMissed {
                    step: Some(step), ..
                } => *wf.step_deadlines_missed.entry(step.clone()).or_default() += 1,
                Event::StepFailed { step, .. } => {
                    step_series(&mut wf.steps, step).errors += 1;
                }
                Event::RetryScheduled { act, .. } => {
                    if let Some(b) = before.get(act) {
                        step_series(&mut wf.steps, &b.step).retries += 1;
                        if let Some((capability, _)) = &b.task {
                            inner
                                .capabilities
                                .entry(capability.clone())
                                .or_default()
                                .retries += 1;
                        }
                    }
                }
                Event::TaskCompleted { act, task, .. } | Event::TaskFailed { act, task, .. } => {
                    if let Some(claim) = inner.claims.remove(task) {
                        inner
                            .run_time
                            .entry(claim.capability)
                            .or_default()
                            .record(since(claim.claimed_at_ms));
                    }
                    if let Some((capability, scheduled_at_ms)) =
                        before.get(act).and_then(|b| b.task.clone())
                    {
                        let series = inner.capabilities.entry(capability).or_default();
                        series.record(since(scheduled_at_ms));
                        if matches!(event, Event::TaskFailed { .. }) {
                            series.errors += 1;
                        }
                    }
                }
                Event::ExecutionCompleted { .. }
                | Event::ExecutionFailed { .. }
                | Event::ExecutionCancelled { .. }
                | Event::ExecutionTerminated { .. } => {
                    if let Event::ExecutionFailed { error } = event
                        && error.kind == error_types::HISTORY_LIMIT
                    {
                        wf.history_limit_failures += 1;
                    }
                    let status = match event {
                        Event::ExecutionCompleted { .. } => Status::Completed,
                        Event::ExecutionFailed { .. } => Status::Failed,
                        Event::ExecutionCancelled { .. } => Status::Cancelled,
                        _ => Status::Terminated,
                    };
                    *wf.ended.entry(status.as_str()).or_default() += 1;
                    wf.duration.record(since(started_at_ms));
                    wf.durations
                        .entry(status.as_str())
                        .or_default()
                        .record(since(started_at_ms));
                    if status == Status::Failed {
                        wf.duration.errors += 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// Counts one pacing of an execution of `workflow`: something it did by
    /// itself waits for its event budget.
    pub(crate) fn paced(&self, workflow: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        match inner.workflows.get_mut(workflow) {
            Some(wf) => wf.paced += 1,
            None => {
                let wf = WorkflowSeries {
                    paced: 1,
                    ..WorkflowSeries::default()
                };
                inner.workflows.insert(workflow.to_string(), wf);
            }
        }
    }

    /// Counts tasks an agent claimed: how long each waited in its queue;
    /// its run time is counted at its result. `registry` is where they were
    /// claimed (to forget claims that ended without a result).
    pub fn claimed(&self, tasks: &[ClaimedTask], registry: &AgentRegistry) {
        if tasks.is_empty() {
            return;
        }
        let outstanding = registry.outstanding();
        let remembered: Vec<String> = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            for task in tasks {
                let capability = &task.spec.capability;
                let waited = task.claimed_at_ms.saturating_sub(task.spec.scheduled_at_ms);
                match inner.queue_wait.get_mut(capability) {
                    Some(buckets) => buckets.record(waited),
                    None => {
                        let mut buckets = Buckets::default();
                        buckets.record(waited);
                        inner.queue_wait.insert(capability.clone(), buckets);
                    }
                }
                inner
                    .queue_wait_by_priority
                    .entry(task.spec.priority)
                    .or_default()
                    .record(waited);
                inner.claims.insert(
                    task.spec.id.clone(),
                    Claim {
                        capability: capability.clone(),
                        claimed_at_ms: task.claimed_at_ms,
                    },
                );
            }
            // A task withdrawn (its execution cancelled, its step skipped)
            // has no result: forget such claims now and then, against the
            // registry, so they cannot pile up.
            if inner.claims.len() <= CLAIMS_PRUNE_AT.max(2 * outstanding) {
                return;
            }
            inner.claims.keys().cloned().collect()
        };
        let gone: Vec<String> = remembered
            .into_iter()
            .filter(|task| registry.claimed_by(task).is_none())
            .collect();
        if let Ok(mut inner) = self.inner.lock() {
            for task in &gone {
                inner.claims.remove(task);
            }
        }
    }

    /// A copy of every figure.
    pub fn figures(&self) -> Figures {
        let Ok(inner) = self.inner.lock() else {
            return Figures::default();
        };
        Figures {
            workflows: inner
                .workflows
                .iter()
                .map(|(name, w)| {
                    (
                        name.clone(),
                        WorkflowFigures {
                            started: w.started,
                            ended: w.ended.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                            duration: w.duration.figures(),
                            durations: w
                                .durations
                                .iter()
                                .map(|(k, b)| (k.to_string(), b.clone()))
                                .collect(),
                            steps: w
                                .steps
                                .iter()
                                .map(|(k, s)| (k.clone(), s.figures()))
                                .collect(),
                            paced: w.paced,
                            history_limit_failures: w.history_limit_failures,
                            deadlines_missed: w.deadlines_missed,
                            step_deadlines_missed: w.step_deadlines_missed.clone(),
                        },
                    )
                })
                .collect(),
            capabilities: inner
                .capabilities
                .iter()
                .map(|(k, s)| (k.clone(), s.figures()))
                .collect(),
            queue_wait_by_priority: inner.queue_wait_by_priority.clone(),
            queue_wait: inner.queue_wait.clone(),
            run_time: inner.run_time.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
