//! What happens when something fails: a task attempt retried with backoff,
//! a step's error routed (`onError`, `errorHandlers`), held for an operator
//! (`onFailure: pause`), handed to a handler workflow, or failing the parallel
//! step or the execution (which compensates first when it can).
//!
//! Owns the retry decision (which policy applies, the delay with its jitter,
//! at least a `Retry-After` the failure carries, recorded in
//! `retry_scheduled`) and the order in which a failure looks for
//! somewhere to go. Built on `run` and `compensation`. It must never enter a
//! step itself: a route only queues the target for `flow` to enter.

use serde_json::{Value, json};

use super::event::{
    CompensationReason, ErrorInfo, Event, FAILED_ITEMS_SHOWN, FailedItem, FailedItems, FailedStep,
    Thread, error_types,
};
use super::run::{Done, Run, Work};
use super::state::{ItemState, Role, Status, Waiting};
use super::trigger::Rejection;
use crate::ExecutionId;
use crate::model::{HandlerTarget, OnFailure, Step, StepKind};

impl Run<'_, '_, '_> {
    /// A task attempt failed: retry it, or fail what it was for. A retry
    /// waits the policy's delay, or `retry_after_ms` when that is longer
    /// (the performer was told to wait at least so long: an HTTP
    /// `Retry-After`); it never makes a retry of an error the policy would
    /// not retry.
    pub(super) fn task_failed(
        &mut self,
        act: u64,
        attempt: u32,
        error: ErrorInfo,
        retry_after_ms: Option<u64>,
    ) -> Done {
        let Some(a) = self.state.activations.get(&act) else {
            return Err(Rejection::Stale(format!("activation {act}")));
        };
        let (role, thread) = (a.role.clone(), a.thread);
        let step = self.step(&a.step)?;
        // A step's own policy, else the policy of the error handler that
        // would catch this error, else the engine's default. A compensation
        // has its own policy.
        let policy = match &role {
            Role::Compensation { .. } => step.compensate.as_ref().and_then(|c| c.retry.as_ref()),
            _ => step.retry.as_ref().or_else(|| {
                self.wf
                    .error_handler_for(&error.kind)
                    .and_then(|h| h.retry.as_ref())
            }),
        }
        .or(self.ctx.defaults.retry.as_ref());
        let retry = policy.filter(|p| {
            error.retryable != Some(false)
                && p.is_retryable(&error.kind)
                && p.allows_another(attempt)
        });
        if let Some(p) = retry {
            let unit = (self.ctx.entropy >> 11) as f64 / (1u64 << 53) as f64;
            let delay_ms = p.delay_ms(attempt, unit).max(retry_after_ms.unwrap_or(0));
            return self.emit(Event::RetryScheduled {
                act,
                attempt: attempt + 1,
                delay_ms,
                due_at_ms: self.ctx.now_ms.saturating_add(delay_ms),
            });
        }
        let error = error.at(&step.id, Some(attempt));
        match role {
            Role::Compensation { of } => self.emit(Event::CompensationFailed { act, of, error }),
            _ => self.step_failed(act, step, thread, error, Some(attempt)),
        }
    }

    /// A step failed for good (no retry left): route the error, hold it for
    /// an operator, or fail upwards.
    pub(super) fn step_failed(
        &mut self,
        act: u64,
        step: &Step,
        thread: Option<Thread>,
        error: ErrorInfo,
        attempt: Option<u32>,
    ) -> Done {
        let error = error.at(&step.id, attempt);
        let input = self.state.activations.get(&act).map(|a| a.input.clone());
        self.emit(Event::StepFailed {
            act,
            step: step.id.clone(),
            thread,
            error: error.clone(),
        })?;
        let handler = if thread.is_none() {
            self.wf
                .error_handler_for(&error.kind)
                .map(|h| h.handler.clone())
        } else {
            None
        };
        let route = step.on_error.clone().or(match &handler {
            Some(HandlerTarget::Step(s)) => Some(s.clone()),
            _ => None,
        });
        if let Some(to) = route {
            self.emit(Event::ErrorRouted {
                step: step.id.clone(),
                to: to.clone(),
                error,
            })?;
            self.work.push(Work::to(to, thread, Value::Null));
            return Ok(());
        }
        let failed = FailedStep {
            step: step.id.clone(),
            thread,
            input,
            error: error.clone(),
        };
        if step.on_failure == OnFailure::Pause {
            self.emit(Event::FailureHeld { failed })?;
            if self.state.status == Status::Paused {
                // Paused already (by an operator, or by another failure).
                return Ok(());
            }
            return self.emit(Event::ExecutionPaused {
                reason: format!("step {} failed ({}): retry or skip it", step.id, error.kind),
                by: None,
            });
        }
        match thread {
            // An unrouted error in a branch fails the parallel step; in a
            // map item, the item.
            Some(t) => {
                let Some(parallel) = self.state.activations.get(&t.parallel) else {
                    return Err(Rejection::Stale(format!("activation {}", t.parallel)));
                };
                let (pact, pthread) = (parallel.act, parallel.thread);
                let pstep = self.step(&parallel.step)?;
                if let Waiting::Items(_) = parallel.waiting {
                    return self.item_failed(pact, pstep, t.branch, error);
                }
                self.step_failed(pact, pstep, pthread, error, None)
            }
            None => {
                // Where a redrive would start again.
                self.emit(Event::FailureHeld { failed })?;
                match handler {
                    Some(HandlerTarget::Workflow(name)) => self.start_handler(&name, error),
                    _ => self.fail_execution(error),
                }
            }
        }
    }

    /// Item `item` of map step activation `act` failed: the step fails
    /// when more items failed than it tolerates (its items still running
    /// are dropped with it), else the item's end is counted.
    fn item_failed(&mut self, act: u64, step: &Step, item: usize, error: ErrorInfo) -> Done {
        self.emit(Event::ItemFailed { act, item, error })?;
        let StepKind::Map(spec) = &step.kind else {
            return Err(Rejection::UnknownStep(step.id.clone()));
        };
        let Some(a) = self.state.activations.get(&act) else {
            return Err(Rejection::Stale(format!("activation {act}")));
        };
        let Waiting::Items(items) = &a.waiting else {
            return Err(Rejection::Stale(format!(
                "activation {act} is not a map step"
            )));
        };
        if !spec.tolerated.exceeded(items.failed, items.items.len()) {
            return self.map_progressed(act);
        }
        let failed: Vec<FailedItem> = items
            .states
            .iter()
            .enumerate()
            .filter_map(|(index, s)| match s {
                ItemState::Failed(error) => Some(FailedItem {
                    index,
                    error: error.clone(),
                }),
                _ => None,
            })
            .take(FAILED_ITEMS_SHOWN)
            .collect();
        let error = ErrorInfo {
            items: Some(Box::new(FailedItems(failed))),
            ..ErrorInfo::new(
                error_types::ITEMS_FAILED,
                format!(
                    "{} of {} items failed, more than map step `{}` tolerates",
                    items.failed,
                    items.items.len(),
                    step.id
                ),
            )
        };
        let thread = a.thread;
        self.step_failed(act, step, thread, error, None)
    }

    /// Runs the handler workflow `name` as a child with the error as input;
    /// when it ends, the execution fails with the error.
    fn start_handler(&mut self, name: &str, error: ErrorInfo) -> Done {
        let Some(version) = self.ctx.versions.latest_version(name) else {
            // Never silent: the history says the handler did not run, and why.
            self.emit(Event::HandlerUnavailable {
                workflow: name.to_string(),
                error: ErrorInfo::new(
                    error_types::UNKNOWN_WORKFLOW,
                    format!(
                        "no workflow {name} is defined: the error handler for {} did not run",
                        error.kind
                    ),
                ),
            })?;
            return self.fail_execution(error);
        };
        let act = self.state.next_act;
        let input = json!({
            "error": error,
            "workflow": self.state.workflow,
            "executionId": self.state.id.to_string(),
            "stepId": error.step,
        });
        self.emit(Event::HandlerStarted {
            act,
            child: self.ctx.child_id(self.state.id, act, name),
            workflow: name.to_string(),
            version,
            input,
            error,
        })
    }

    /// The handler workflow started for `error` ended (`ok` or not): the
    /// execution fails with the error it handled.
    pub(super) fn handler_finished(
        &mut self,
        act: u64,
        child: ExecutionId,
        ok: bool,
        error: ErrorInfo,
    ) -> Done {
        self.emit(Event::HandlerFinished { act, child, ok })?;
        self.fail_execution(error)
    }

    /// The history is full (see `Run::emit`): the execution fails with a
    /// `history_limit` error as its last event.
    ///
    /// Nothing else runs: no `onError` route or error handler (a route
    /// would carry on the very loop the limit stops, and a handler workflow
    /// adds events of its own), no `onFailure: pause`, and no compensation.
    /// Undoing costs events in proportion to what was done (in a loop over a
    /// compensable step, one undo per iteration, each a task that may fail
    /// and be retried), so no fixed room can be kept for it, and undoing
    /// only some steps would break compensation's promise (every completed
    /// step that declares it, newest first). The history stays whole, so an
    /// operator sees where it stopped.
    pub(super) fn history_limit_reached(&mut self) -> Done {
        let limit = self.ctx.limits.history_events_max;
        let error = ErrorInfo::new(
            error_types::HISTORY_LIMIT,
            format!(
                "the execution's history reached the engine's limit of {limit} events, so \
                 it failed without error routes or compensation; a loop that never ends? \
                 The limit is the server's max_history_events (retrace serve \
                 --max-history-events)"
            ),
        );
        self.work.clear();
        self.emit(Event::ExecutionFailed { error })
    }

    /// The execution fails with `error`: after undoing what it can, if any
    /// completed step declares `compensate`.
    pub(super) fn fail_execution(&mut self, error: ErrorInfo) -> Done {
        let pending = self.compensable();
        if pending.is_empty() {
            return self.emit(Event::ExecutionFailed { error });
        }
        self.emit(Event::CompensationBegan {
            reason: CompensationReason::Failed { error },
            pending,
            by: None,
        })?;
        self.next_compensation()
    }
}
