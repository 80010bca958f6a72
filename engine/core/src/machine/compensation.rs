//! Compensation (saga): undoing completed steps that declare `compensate`,
//! the most recently completed first, one at a time, and ending the
//! execution when nothing is left to undo.
//!
//! Owns which activations are compensable and how the next one is undone
//! (its input mapping, an inline capability, or a task with the
//! compensation's own retry policy). Built on `run` only. It must never
//! decide *whether* to compensate: a failure (`failure`) or a cancel
//! (`commands`) begins it, and an operator's retry or skip moves it on.

use serde_json::Value;

use super::event::{CompensationReason, ErrorInfo, Event, error_types};
use super::run::{Done, INLINE_CAPABILITIES, Run};
use super::state::Status;

impl Run<'_, '_, '_> {
    /// Completed activations whose step declares `compensate`, newest first.
    pub(super) fn compensable(&self) -> Vec<u64> {
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
                    // Asked for by whoever `compensation_began` names.
                    CompensationReason::Cancelled { reason } => {
                        self.emit(Event::ExecutionCancelled { reason, by: None })
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
                self.emit(Event::CompensationSkipped {
                    act: 0,
                    of,
                    by: None,
                    reason: None,
                })?;
                continue;
            };
            let act = self.state.next_act;
            let input = match &compensate.input {
                Some(mapping) => mapping.evaluate(&self.context(&done.output, None)),
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
                    let error =
                        ErrorInfo::new(error_types::EXPRESSION, e.message).at(&done.step, None);
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
}
