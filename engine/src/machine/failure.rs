//! What happens when something fails, and what operators can do about it:
//! retries with backoff, error routes (`onError`, `errorHandlers`), holding
//! a failed step for an operator (`onFailure: pause`), handler workflows,
//! compensation (saga: completed steps undone newest first), and the
//! commands `retry`, `skip`, `redrive` and `cancel`.
//!
//! Like the rest of the machine it only emits events (applied as emitted);
//! every choice — the delay of a retry, what is left to undo — is recorded.

use serde_json::{Value, json};

use super::decide::{Done, INLINE_CAPABILITIES, Rejection, Run, Work, child_id};
use super::event::{ErrorInfo, Event, Thread};
use super::state::{CompensationReason, FailedStep, Role, Status};
use crate::model::{HandlerTarget, OnFailure, Step};

impl Run<'_, '_, '_> {
    /// A task attempt failed: retry it, or fail what it was for.
    pub(super) fn task_failed(&mut self, act: u64, attempt: u32, error: ErrorInfo) -> Done {
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
            let delay_ms = p.delay_ms(attempt, unit);
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
            });
        }
        match thread {
            // An unrouted error in a branch fails the parallel step.
            Some(t) => {
                let Some(parallel) = self.state.activations.get(&t.parallel) else {
                    return Err(Rejection::Stale(format!("activation {}", t.parallel)));
                };
                let (pact, pthread) = (parallel.act, parallel.thread);
                let pstep = self.step(&parallel.step)?;
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

    /// Runs the handler workflow `name` as a child with the error as input;
    /// when it ends, the execution fails with the error.
    fn start_handler(&mut self, name: &str, error: ErrorInfo) -> Done {
        let Some(version) = self.ctx.catalog.latest_version(name) else {
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
            child: child_id(self.state.id, act),
            workflow: name.to_string(),
            version,
            input,
            error,
        })
    }

    pub(super) fn handler_finished(
        &mut self,
        act: u64,
        child: retrace_journal::ExecutionId,
        ok: bool,
        error: ErrorInfo,
    ) -> Done {
        self.emit(Event::HandlerFinished { act, child, ok })?;
        self.fail_execution(error)
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
        })?;
        self.next_compensation()
    }

    /// Completed activations whose step declares `compensate`, newest first.
    fn compensable(&self) -> Vec<u64> {
        self.state
            .completed
            .iter()
            .rev()
            .filter(|c| {
                self.wf
                    .step(&c.step)
                    .is_some_and(|s| s.compensate.is_some())
            })
            .map(|c| c.act)
            .collect()
    }

    /// Starts undoing the next pending activation, or ends the execution
    /// when nothing is left.
    pub(super) fn next_compensation(&mut self) -> Done {
        loop {
            let Some(c) = &self.state.compensation else {
                return Ok(());
            };
            if c.failed.is_some() || self.state.status != Status::Compensating {
                return Ok(());
            }
            let Some(&of) = c.pending.first() else {
                return match c.reason.clone() {
                    CompensationReason::Failed { error } => {
                        self.emit(Event::ExecutionCompensated { error })
                    }
                    CompensationReason::Cancelled { reason } => {
                        self.emit(Event::ExecutionCancelled { reason })
                    }
                };
            };
            let done = self
                .state
                .completed
                .iter()
                .rev()
                .find(|d| d.act == of)
                .cloned();
            let plan = done.and_then(|d| {
                let step = self.wf.step(&d.step)?;
                Some((d, step, step.compensate.as_ref()?))
            });
            let Some((done, step, compensate)) = plan else {
                self.emit(Event::CompensationSkipped { act: 0, of })?;
                continue;
            };
            let act = self.state.next_act;
            let input = match &compensate.input {
                Some(mapping) => mapping.evaluate(&self.context(&done.output)),
                None => Ok(done.output.clone()),
            };
            let input = match input {
                Ok(v) => v,
                Err(e) => {
                    self.emit(Event::CompensationStarted {
                        act,
                        of,
                        step: done.step.clone(),
                        input: Value::Null,
                    })?;
                    let error = ErrorInfo::new(super::event::error_types::EXPRESSION, e.message)
                        .at(&done.step, None);
                    return self.emit(Event::CompensationFailed { act, of, error });
                }
            };
            self.emit(Event::CompensationStarted {
                act,
                of,
                step: done.step.clone(),
                input: input.clone(),
            })?;
            if INLINE_CAPABILITIES.contains(&compensate.capability.as_str()) {
                self.emit(Event::CompensationCompleted {
                    act,
                    of,
                    output: input,
                })?;
                continue;
            }
            let capability = compensate.capability.clone();
            return self.schedule_task(act, step, &capability, 1, input);
        }
    }

    /// `retry`: the held failed step, or the failed compensation.
    pub(super) fn retry(&mut self) -> Done {
        match (self.state.status, self.state.failed_steps.first().cloned()) {
            (Status::Paused, Some(failed)) => {
                let deferred = self.state.deferred.clone();
                self.emit(Event::HeldStepRetried)?;
                if self.state.status == Status::Running {
                    self.push_deferred(deferred);
                }
                self.work.push(Work {
                    step: failed.step,
                    thread: failed.thread,
                    from_output: Value::Null,
                    input: failed.input,
                });
                Ok(())
            }
            (Status::CompensationFailed, _) => {
                self.emit(Event::CompensationRetried)?;
                self.next_compensation()
            }
            (Status::Failed, _) => self.refuse("retry", Some("redrive a failed execution")),
            _ => self.refuse("retry", Some("nothing failed that waits for an operator")),
        }
    }

    /// `skip`: complete the held failed step with `output`, or skip the
    /// failed compensation.
    pub(super) fn skip(&mut self, output: Value) -> Done {
        match (self.state.status, self.state.failed_steps.first().cloned()) {
            (Status::Paused, Some(failed)) => {
                let step = self.step(&failed.step)?;
                let deferred = self.state.deferred.clone();
                self.emit(Event::HeldStepSkipped {
                    output: output.clone(),
                })?;
                if self.state.status == Status::Running {
                    self.push_deferred(deferred);
                }
                let act = self.state.next_act;
                let input = failed.input.unwrap_or(Value::Null);
                self.complete(act, step, failed.thread, Some(input), output)
            }
            (Status::CompensationFailed, _) => {
                let of = self
                    .state
                    .compensation
                    .as_ref()
                    .and_then(|c| c.pending.first().copied())
                    .ok_or_else(|| Rejection::Stale("nothing left to undo".into()))?;
                self.emit(Event::CompensationSkipped { act: 0, of })?;
                self.next_compensation()
            }
            _ => self.refuse("skip", Some("nothing failed that waits for an operator")),
        }
    }

    /// `redrive`: reopen a failed execution at the step that failed,
    /// keeping all its history.
    pub(super) fn redrive(&mut self) -> Done {
        match (self.state.status, self.state.failed_steps.last().cloned()) {
            (Status::Failed, Some(failed)) => {
                self.emit(Event::ExecutionRedriven)?;
                self.work.push(Work {
                    step: failed.step,
                    thread: failed.thread,
                    from_output: Value::Null,
                    input: failed.input,
                });
                Ok(())
            }
            (Status::Failed, None) => self.refuse("redrive", Some("it did not fail at a step")),
            _ => self.refuse("redrive", Some("only a failed execution is redriven")),
        }
    }

    /// `cancel`: end now, or first undo the completed steps.
    pub(super) fn cancel(&mut self, reason: String, compensate: bool) -> Done {
        if self.state.status.is_terminal()
            || matches!(
                self.state.status,
                Status::Compensating | Status::CompensationFailed
            )
        {
            return self.refuse("cancel", None);
        }
        if compensate {
            let pending = self.compensable();
            if !pending.is_empty() {
                self.emit(Event::CompensationBegan {
                    reason: CompensationReason::Cancelled { reason },
                    pending,
                })?;
                return self.next_compensation();
            }
        }
        self.emit(Event::ExecutionCancelled { reason })
    }
}
