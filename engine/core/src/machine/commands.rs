//! Commands: what an operator asks of an execution (`pause`, `resume`,
//! `retry`, `skip`, `redrive`, `cancel`, `terminate`), and `continue`, the
//! runtime's request to enter steps deferred to keep appends small.
//!
//! Owns when each command is allowed (and the refusal, with a hint, when
//! not) and what it records. Built on `run`, `compensation` and `flow`. It
//! must never be reached by a task, timer, signal or child result: those are
//! handled in `decide`. A refused command emits nothing.

use serde_json::Value;

use super::event::{CompensationReason, Event};
use super::run::{Done, Run, Work};
use super::state::Status;
use super::trigger::Rejection;

impl Run<'_, '_, '_> {
    /// `pause`: a running execution stops entering steps.
    pub(super) fn pause(&mut self, reason: String) -> Done {
        match self.state.status {
            Status::Running => self.emit(Event::ExecutionPaused {
                reason,
                by: self.by(),
            }),
            _ => self.refuse("pause", None),
        }
    }

    /// `resume`: a paused execution (no failure held) enters what it deferred.
    pub(super) fn resume(&mut self) -> Done {
        match self.state.status {
            Status::Paused if !self.state.failed_steps.is_empty() => {
                self.refuse("resume", Some("a failed step is held: retry or skip it"))
            }
            Status::Paused => {
                let deferred = self.state.deferred.clone();
                self.emit(Event::ExecutionResumed {
                    by: self.by(),
                    reason: self.reason(),
                })?;
                self.push_deferred(deferred);
                Ok(())
            }
            _ => self.refuse("resume", None),
        }
    }

    /// `continue`: enter the steps deferred because one trigger produced as
    /// many events as one append should carry.
    pub(super) fn continue_deferred(&mut self) -> Done {
        match self.state.status {
            // Deferred for a limit, the limiter's grant enters them.
            Status::Running
                if self.state.has_deferred_work() && !self.state.waiting_for_limit() =>
            {
                let deferred = self.state.deferred.clone();
                self.emit(Event::Continued)?;
                self.push_deferred(deferred);
                Ok(())
            }
            _ => Err(Rejection::Stale("nothing deferred".into())),
        }
    }

    /// `retry`: the held failed step, or the failed compensation.
    pub(super) fn retry(&mut self) -> Done {
        match (self.state.status, self.state.failed_steps.first().cloned()) {
            (Status::Paused, Some(failed)) => {
                let deferred = self.state.deferred.clone();
                self.emit(Event::HeldStepRetried {
                    by: self.by(),
                    reason: self.reason(),
                })?;
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
                self.emit(Event::CompensationRetried {
                    by: self.by(),
                    reason: self.reason(),
                })?;
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
                    by: self.by(),
                    reason: self.reason(),
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
                self.emit(Event::CompensationSkipped {
                    act: 0,
                    of,
                    by: self.by(),
                    reason: self.reason(),
                })?;
                self.next_compensation()
            }
            _ => self.refuse("skip", Some("nothing failed that waits for an operator")),
        }
    }

    /// `redrive`: reopen a failed execution at the step that failed,
    /// keeping all its history.
    pub(super) fn redrive(&mut self) -> Done {
        if self.state.status == Status::Failed && self.history_at_limit() {
            // Its next event would be past the limit: the redrive could
            // only fail again (see `Run::emit`).
            return self.refuse(
                "redrive",
                Some("its history is at the engine's limit: raise max_history_events first"),
            );
        }
        match (self.state.status, self.state.failed_steps.last().cloned()) {
            (Status::Failed, Some(failed)) => {
                self.emit(Event::ExecutionRedriven {
                    by: self.by(),
                    reason: self.reason(),
                })?;
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
                    by: self.by(),
                })?;
                return self.next_compensation();
            }
        }
        self.emit(Event::ExecutionCancelled {
            reason,
            by: self.by(),
        })
    }

    /// `terminate`: end now, whatever is running.
    pub(super) fn terminate(&mut self, reason: String) -> Done {
        if self.state.status.is_terminal() {
            return self.refuse("terminate", None);
        }
        self.emit(Event::ExecutionTerminated {
            reason,
            by: self.by(),
        })
    }
}
