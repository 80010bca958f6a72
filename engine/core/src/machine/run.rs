//! One trigger being handled: [`Run`], the state it changes, the events it
//! has emitted, and the steps queued to enter.
//!
//! Owns the primitives every other part of deciding is built on: emitting an
//! event (applied to the state at once, through the same fold replay uses),
//! looking steps up, refusing, the context expressions see, and scheduling a
//! task attempt. It must never decide what happens next: no routing, no
//! failure handling, no entering of steps; those are in `flow`, `failure`,
//! `compensation`, `commands` and `decide`, which build on this module and
//! never the other way round.

use serde_json::{Value, json};

use super::ctx::Ctx;
use super::event::{Event, TaskTimeouts, Thread};
use super::ids::task_id;
use super::state::{Deferred, ExecutionState, Role, apply};
use super::trigger::Rejection;
use crate::model::{Step, StepKind, Workflow};

/// Capabilities the machine runs itself: pure functions of the step input.
pub const INLINE_CAPABILITIES: [&str; 2] = ["noop", "transform"];

/// A step to enter, with the output of the step that led to it, and its
/// input when that is known already (an operator's retry or a redrive).
pub(super) struct Work {
    pub(super) step: String,
    pub(super) thread: Option<Thread>,
    pub(super) from_output: Value,
    pub(super) input: Option<Value>,
}

impl Work {
    pub(super) fn to(step: impl Into<String>, thread: Option<Thread>, from_output: Value) -> Work {
        Work {
            step: step.into(),
            thread,
            from_output,
            input: None,
        }
    }
}

/// One trigger being handled: the state it changes and the events so far.
pub(super) struct Run<'s, 'w, 'c> {
    pub(super) state: &'s mut ExecutionState,
    pub(super) wf: &'w Workflow,
    pub(super) ctx: &'c Ctx<'c>,
    pub(super) events: Vec<Event>,
    pub(super) work: Vec<Work>,
}

pub(super) type Done = Result<(), Rejection>;

impl<'s, 'w, 'c> Run<'s, 'w, 'c> {
    pub(super) fn new(state: &'s mut ExecutionState, wf: &'w Workflow, ctx: &'c Ctx<'c>) -> Self {
        Run {
            state,
            wf,
            ctx,
            events: Vec::new(),
            work: Vec::new(),
        }
    }

    pub(super) fn emit(&mut self, event: Event) -> Done {
        apply(self.state, self.state.seq + 1, self.ctx.now_ms, &event)?;
        self.events.push(event);
        Ok(())
    }

    pub(super) fn step(&self, id: &str) -> Result<&'w Step, Rejection> {
        self.wf
            .step(id)
            .ok_or_else(|| Rejection::UnknownStep(id.to_string()))
    }

    pub(super) fn refuse(&self, command: &'static str, hint: Option<&'static str>) -> Done {
        Err(Rejection::WrongState {
            command,
            status: self.state.status.as_str(),
            hint,
        })
    }

    /// Queues the steps deferred while paused (or to keep appends small).
    pub(super) fn push_deferred(&mut self, deferred: Vec<Deferred>) {
        for d in deferred.into_iter().rev() {
            self.work.push(Work {
                step: d.step,
                thread: d.thread,
                from_output: d.from_output,
                input: d.input,
            });
        }
    }

    /// The context expressions and mappings see.
    pub(super) fn context(&self, output: &Value) -> Value {
        let s = &*self.state;
        json!({
            "input": s.input,
            "variables": s.variables,
            "output": output,
            "error": s.error,
            "execution": {
                "id": s.id.to_string(),
                "workflow": s.workflow,
                "version": s.version,
                "startedAtMs": s.started_at_ms,
            },
        })
    }

    /// Schedules attempt `attempt` of a task for activation `act`.
    pub(super) fn schedule_task(
        &mut self,
        act: u64,
        step: &Step,
        capability: &str,
        attempt: u32,
        input: Value,
    ) -> Done {
        let timeouts = TaskTimeouts {
            start_to_close_ms: step
                .timeout
                .start_to_close_ms
                .unwrap_or(self.ctx.defaults.task_timeout_ms),
            schedule_to_start_ms: step.timeout.schedule_to_start_ms,
            heartbeat_ms: step.timeout.heartbeat_ms,
        };
        self.emit(Event::TaskScheduled {
            act,
            attempt,
            task: task_id(self.state.id, act, attempt),
            capability: capability.to_string(),
            input,
            timeouts,
        })
    }

    /// The capability a task of this activation runs.
    pub(super) fn capability_of(&self, role: &Role, step: &Step) -> Result<String, Rejection> {
        match (role, &step.kind, &step.compensate) {
            (Role::Compensation { .. }, _, Some(c)) => Ok(c.capability.clone()),
            (Role::Step, StepKind::Task { capability }, _) => Ok(capability.clone()),
            _ => Err(Rejection::UnknownStep(step.id.clone())),
        }
    }

    /// The step and thread of live activation `act`.
    pub(super) fn activation_step(
        &self,
        act: u64,
    ) -> Result<(&'w Step, Option<Thread>), Rejection> {
        let a = self
            .state
            .activations
            .get(&act)
            .ok_or_else(|| Rejection::Stale(format!("activation {act}")))?;
        Ok((self.step(&a.step)?, a.thread))
    }
}
