//! Counters and latency histograms per workflow, step and capability,
//! observed from the events each trigger commits. Only numbers: no IO, and
//! nothing here feeds back into what an execution does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::machine::{Event, Status, Waiting};

/// The series of `step`, allocating its name only the first time.
fn step_series<'a>(steps: &'a mut BTreeMap<String, Series>, step: &str) -> &'a mut Series {
    if !steps.contains_key(step) {
        steps.insert(step.to_string(), Series::default());
    }
    steps.get_mut(step).expect("inserted just above")
}

/// One series: how many, how many failed or retried, and how long (ms).
#[derive(Debug, Clone)]
struct Series {
    count: u64,
    errors: u64,
    retries: u64,
    latency_ms: Histogram<u64>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            count: 0,
            errors: 0,
            retries: 0,
            // 1 ms to 30 days at 2 significant digits: constant, valid bounds.
            latency_ms: Histogram::new_with_bounds(1, 30 * 86_400_000, 2)
                .expect("constant histogram bounds are valid"),
        }
    }
}

impl Series {
    fn record(&mut self, ms: u64) {
        self.count += 1;
        self.latency_ms.saturating_record(ms.max(1));
    }

    fn figures(&self) -> SeriesFigures {
        let q = |p| {
            if self.latency_ms.is_empty() {
                0
            } else {
                // The bucket's lowest value: what was recorded, where the
                // bucket is exact.
                self.latency_ms
                    .lowest_equivalent(self.latency_ms.value_at_quantile(p))
            }
        };
        SeriesFigures {
            count: self.count,
            errors: self.errors,
            retries: self.retries,
            mean_ms: if self.latency_ms.is_empty() {
                0.0
            } else {
                self.latency_ms.mean()
            },
            p50_ms: q(0.5),
            p99_ms: q(0.99),
        }
    }
}

/// What one series reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesFigures {
    pub count: u64,
    pub errors: u64,
    pub retries: u64,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub p99_ms: u64,
}

#[derive(Debug, Default)]
struct WorkflowSeries {
    started: u64,
    ended: BTreeMap<&'static str, u64>,
    duration: Series,
    steps: BTreeMap<String, Series>,
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
    pub steps: BTreeMap<String, SeriesFigures>,
}

/// Everything the engine counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub workflows: BTreeMap<String, WorkflowFigures>,
    /// Task round trips (scheduled to result) per capability.
    pub capabilities: BTreeMap<String, SeriesFigures>,
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
                Event::TaskCompleted { act, .. } | Event::TaskFailed { act, .. } => {
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
                    let status = match event {
                        Event::ExecutionCompleted { .. } => Status::Completed,
                        Event::ExecutionFailed { .. } => Status::Failed,
                        Event::ExecutionCancelled { .. } => Status::Cancelled,
                        _ => Status::Terminated,
                    };
                    *wf.ended.entry(status.as_str()).or_default() += 1;
                    wf.duration.record(since(started_at_ms));
                    if status == Status::Failed {
                        wf.duration.errors += 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// A copy of every figure.
    pub fn figures(&self) -> Figures {
        let Ok(inner) = self.inner.lock() else {
            return Figures {
                workflows: BTreeMap::new(),
                capabilities: BTreeMap::new(),
            };
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
                            steps: w
                                .steps
                                .iter()
                                .map(|(k, s)| (k.clone(), s.figures()))
                                .collect(),
                        },
                    )
                })
                .collect(),
            capabilities: inner
                .capabilities
                .iter()
                .map(|(k, s)| (k.clone(), s.figures()))
                .collect(),
        }
    }
}
