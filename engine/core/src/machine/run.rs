//! One trigger being handled: [`Run`], the state it changes, the events it
//! has emitted, and the steps queued to enter.
//!
//! Owns the primitives every other part of deciding is built on: emitting an
//! event (applied to the state at once, through the same fold replay uses,
//! and refused past the engine's history limit: the history bound),
//! looking steps up, refusing, the context expressions see, and scheduling a
//! task attempt. It must never decide what happens next: no routing, no
//! failure handling, no entering of steps; those are in `flow`, `failure`,
//! `compensation`, `commands` and `decide`, which build on this module and
//! never the other way round.

use serde_json::{Value, json};

use super::ctx::Ctx;
use super::event::{Event, TaskTimeouts, Thread};
use super::ids::task_id;
use super::state::{Deferred, ExecutionState, Role, Waiting, apply};
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
    /// Set when [`emit`](Run::emit) held an event back because the history
    /// is full: the trigger stops there, and `decide` ends the execution
    /// with the history-limit failure instead.
    pub(super) history_full: bool,
}

pub(super) type Done = Result<(), Rejection>;

impl<'s, 'w, 'c> Run<'s, 'w, 'c> {
    /// Who asked for this trigger, as command events record it.
    pub(super) fn by(&self) -> Option<String> {
        self.ctx.by.map(str::to_owned)
    }

    /// Why, as whoever asked said.
    pub(super) fn reason(&self) -> Option<String> {
        self.ctx.reason.map(str::to_owned)
    }

    pub(super) fn new(state: &'s mut ExecutionState, wf: &'w Workflow, ctx: &'c Ctx<'c>) -> Self {
        Run {
            state,
            wf,
            ctx,
            events: Vec::new(),
            work: Vec::new(),
            history_full: false,
        }
    }

    /// Records `event`: applies it to the state at once (the fold replay
    /// uses) and keeps it for the append.
    ///
    /// **Invariant: the history bound** (`Limits::history_events_max`):
    /// an event other than the execution's end that would be event number
    /// `history_events_max` (or later) is not recorded. `emit` refuses it
    /// before it changes anything and sets `history_full`; every caller
    /// passes the refusal up (`?`), and `decide` then records the
    /// `history_limit` failure as that event instead. Since every check
    /// that can refuse a trigger runs before its first emit, what the
    /// trigger recorded until then stands, and the history never holds more
    /// than the limit (a limit lowered below a running execution's history
    /// fails it at its next event, the one past it).
    pub(super) fn emit(&mut self, event: Event) -> Done {
        if self.at_history_limit(&event) {
            self.history_full = true;
            return Err(Rejection::Stale("an event past the history limit".into()));
        }
        apply(self.state, self.state.seq + 1, self.ctx.now_ms, &event)?;
        self.events.push(event);
        Ok(())
    }

    /// Whether `event` would take the history to its limit without ending
    /// the execution. The first event (the start) always fits.
    fn at_history_limit(&self, event: &Event) -> bool {
        self.state.seq > 0
            && !event.is_terminal()
            && self.state.seq + 1 >= self.ctx.limits.history_events_max
    }

    /// Whether the history has no room left but for the execution's end.
    pub(super) fn history_at_limit(&self) -> bool {
        self.state.seq + 1 >= self.ctx.limits.history_events_max
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

    /// The context expressions and mappings see, for a step in `thread`.
    ///
    /// In a map step's item flow (at any depth of parallel steps inside
    /// it) it holds the item as `item` and its position as `index`.
    ///
    /// In language 2 it also holds the flat context the orchestrator
    /// specification gives a handler workflow: `workflowName`,
    /// `executionId` and `stepId` from the input the engine starts a
    /// handler with, and `error` falls back to the input's `error` (the
    /// error being handled) while the execution has none of its own.
    pub(super) fn context(&self, output: &Value, thread: Option<Thread>) -> Value {
        let s = &*self.state;
        let mut context = json!({
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
        });
        if self.wf.language().has_dialect()
            && let Value::Object(roots) = &mut context
        {
            let from_input = |key: &str| s.input.get(key).cloned().unwrap_or(Value::Null);
            roots.insert("workflowName".to_owned(), from_input("workflow"));
            roots.insert("executionId".to_owned(), from_input("executionId"));
            roots.insert("stepId".to_owned(), from_input("stepId"));
            if s.error.is_none() {
                roots.insert("error".to_owned(), from_input("error"));
            }
        }
        if let Some((item, index)) = self.item_of(thread)
            && let Value::Object(roots) = &mut context
        {
            roots.insert("item".to_owned(), item.clone());
            roots.insert("index".to_owned(), json!(index));
        }
        context
    }

    /// The map item a step in `thread` runs for: the innermost map step
    /// among the steps whose branches it is in.
    fn item_of(&self, mut thread: Option<Thread>) -> Option<(&Value, usize)> {
        while let Some(t) = thread {
            let a = self.state.activations.get(&t.parallel)?;
            if let Waiting::Items(items) = &a.waiting {
                return items.items.get(t.branch).map(|item| (item, t.branch));
            }
            thread = a.thread;
        }
        None
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
