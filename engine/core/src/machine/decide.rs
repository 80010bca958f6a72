//! `start` and `handle`: turn a trigger into events. Every event is applied
//! to the state the moment it is emitted (through [`apply`](super::apply),
//! the same fold replay uses), so later decisions in the same trigger see
//! it, and what the live engine holds is by construction what replay
//! rebuilds.
//!
//! Pure: the time, random bits and workflow versions come in through [`Ctx`];
//! nothing here reads a clock, touches IO or knows tokio. A rejected trigger
//! changes nothing: every check that can refuse runs before the first emit.
//!
//! This is the top of the deciding layers, each built only on those below:
//! `run` (the per-trigger context and its primitives), `compensation`,
//! `failure`, `flow` (entering and completing steps), `commands` (operator
//! commands), then this module, which owns the entry points and what a
//! result from the world (a task, timer, signal or child) means. Nothing
//! below may call into it.

use crate::ExecutionId;
use serde_json::Value;

use super::event::{ErrorInfo, Event, LimitKey, error_types};
use super::run::{Done, Run, Work};
use super::state::{ExecutionState, Role, Status, Waiting};
use crate::model::Workflow;

// What `decide` takes and gives, defined in their own modules and still
// reachable here, where they always were.
pub use super::ctx::{Ctx, Defaults, Limits, RetryStrategy, Versions};
pub use super::flow::EVENTS_PER_TRIGGER;
pub use super::ids::{child_id, task_execution, task_id};
pub use super::run::INLINE_CAPABILITIES;
pub use super::trigger::{Rejection, StartParams, Trigger};

/// Starts execution `id` of `workflow`: the first events and the state after.
pub fn start(
    id: ExecutionId,
    workflow: &Workflow,
    ctx: &Ctx<'_>,
    params: StartParams,
) -> Result<(ExecutionState, Vec<Event>), Rejection> {
    let mut state = ExecutionState::empty(id);
    let events = {
        let mut run = Run::new(&mut state, workflow, ctx);
        let input = params.input;
        run.emit(Event::ExecutionStarted {
            workflow: workflow.name().to_string(),
            version: workflow.version().to_string(),
            input: input.clone(),
            parent: params.parent,
            idempotency_key: params.idempotency_key,
            max_transitions: workflow
                .max_transitions()
                .unwrap_or(ctx.defaults.max_transitions),
            timeout_at_ms: workflow.timeout_ms().map(|t| ctx.now_ms.saturating_add(t)),
            by: ctx.by.map(str::to_owned),
            reason: ctx.reason.map(str::to_owned),
            priority: params.priority.filter(|p| *p > 0),
            deadline_at_ms: workflow.deadline_ms().map(|d| ctx.now_ms.saturating_add(d)),
            tags: params.tags,
            compensable: Some(
                workflow
                    .steps()
                    .filter(|s| s.compensate.is_some())
                    .map(|s| s.id.clone())
                    .collect(),
            ),
        })?;
        // No step waits yet: the signal is kept, and the first step that
        // waits for it takes it.
        if let Some(signal) = params.signal {
            run.emit(Event::SignalReceived {
                name: signal.name,
                payload: signal.payload,
                correlation: signal.correlation,
                act: None,
                by: ctx.by.map(str::to_owned),
                reason: ctx.reason.map(str::to_owned),
            })?;
        }
        let entered = run.wait_for_limits().and_then(|()| {
            if !run.state.status.is_terminal() {
                run.work.push(Work::to(workflow.start(), None, input));
            }
            run.drain()
        });
        run.finish(entered)?
    };
    Ok((state, events))
}

/// Handles one trigger: the events it produces, already applied to `state`.
pub fn handle(
    state: &mut ExecutionState,
    workflow: &Workflow,
    ctx: &Ctx<'_>,
    trigger: Trigger,
) -> Result<Vec<Event>, Rejection> {
    let mut run = Run::new(state, workflow, ctx);
    let handled = run.trigger(trigger).and_then(|()| run.drain());
    run.finish(handled)
}

impl Run<'_, '_, '_> {
    /// The trigger's events, or its refusal; when the history filled up
    /// on the way, the events up to there and the history-limit failure.
    fn finish(mut self, done: super::run::Done) -> Result<Vec<Event>, Rejection> {
        if self.history_full {
            self.history_limit_reached()?;
            return Ok(self.events);
        }
        done.map(|()| self.events)
    }
}

impl Run<'_, '_, '_> {
    /// One function per trigger.
    fn trigger(&mut self, trigger: Trigger) -> Done {
        match trigger {
            Trigger::TaskCompleted { task, output } => self.task_completed(task, output),
            Trigger::TaskFailed {
                task,
                error,
                retry_after_ms,
            } => self.task_result_failed(task, error, retry_after_ms),
            Trigger::TaskTimedOut { task, kind } => self.task_timed_out(task, kind),
            Trigger::TimerFired { act } => self.timer_fired(act),
            Trigger::DeadlinePassed { act } => self.deadline_passed(act),
            Trigger::Signal {
                name,
                payload,
                correlation,
            } => self.signal(name, payload, correlation),
            Trigger::ChildCompleted { child, output } => self.child_completed(child, output),
            Trigger::ChildFailed { child, error } => self.child_failed(child, error),
            Trigger::Pause { reason } => self.pause(reason),
            Trigger::Resume => self.resume(),
            Trigger::Continue => self.continue_deferred(),
            Trigger::LimitAcquired => self.limit_acquired(),
            Trigger::Retry => self.retry(),
            Trigger::Skip { output } => self.skip(output),
            Trigger::Redrive => self.redrive(),
            Trigger::Cancel { reason, compensate } => self.cancel(reason, compensate),
            Trigger::Terminate { reason } => self.terminate(reason),
        }
    }

    /// A new execution of a workflow with limits waits for them: each
    /// one's key for it is recorded (one that cannot be evaluated fails
    /// the execution; the engine checks the keys with the input before
    /// starting, so only an input it never saw can do that).
    fn wait_for_limits(&mut self) -> Done {
        if self.wf.limits().is_empty() {
            return Ok(());
        }
        let context = self.context(&Value::Null, None);
        let mut limits = Vec::new();
        for limit in self.wf.limits() {
            match limit.key_of(&context) {
                Ok(key) => limits.push(LimitKey {
                    name: limit.kind.as_str().to_owned(),
                    key,
                    limit: limit.limit,
                    period_ms: limit.period_ms,
                }),
                Err(message) => {
                    let error = ErrorInfo::new(error_types::EXPRESSION, message);
                    return self.fail_execution(error);
                }
            }
        }
        self.emit(Event::LimitWaiting { limits })
    }

    /// Its limits let it go: what it deferred is entered (now if it runs,
    /// on resume if it is paused).
    fn limit_acquired(&mut self) -> Done {
        if self.state.status.is_terminal() || !self.state.waiting_for_limit() {
            return Err(Rejection::Stale("it waits for no limit".into()));
        }
        let deferred = self.state.deferred.clone();
        let running = self.state.status == Status::Running;
        self.emit(Event::LimitAcquired)?;
        if running {
            self.push_deferred(deferred);
        }
        Ok(())
    }

    /// An outstanding task attempt succeeded.
    fn task_completed(&mut self, task: String, output: Value) -> Done {
        let (act, attempt) = self.outstanding(&task)?;
        self.emit(Event::TaskCompleted {
            act,
            attempt,
            task,
            output: output.clone(),
            agent: self.ctx.agent.map(str::to_owned),
            by: self.by(),
        })?;
        self.activation_done(act, Ok(output))
    }

    /// An outstanding task attempt failed, as its agent (or the engine's
    /// built-in `http`) reports; `retry_after_ms` is the least a retry
    /// must wait, when the performer was told one.
    fn task_result_failed(
        &mut self,
        task: String,
        error: ErrorInfo,
        retry_after_ms: Option<u64>,
    ) -> Done {
        let (act, attempt) = self.outstanding(&task)?;
        self.emit(Event::TaskFailed {
            act,
            attempt,
            task,
            error: error.clone(),
            by: self.by(),
            retry_after_ms,
        })?;
        self.task_failed(act, attempt, error, retry_after_ms)
    }

    /// An outstanding task attempt ran out of time (`kind` says which limit).
    fn task_timed_out(&mut self, task: String, kind: String) -> Done {
        let (act, attempt) = self.outstanding(&task)?;
        let mut error = ErrorInfo::new(
            error_types::TIMEOUT,
            format!("task {task} timed out ({kind})"),
        );
        error.attempt = Some(attempt);
        self.emit(Event::TaskFailed {
            act,
            attempt,
            task,
            error: error.clone(),
            by: None,
            retry_after_ms: None,
        })?;
        self.task_failed(act, attempt, error, None)
    }

    /// An external event: completes the step waiting for it, or is kept.
    fn signal(&mut self, name: String, payload: Value, correlation: Option<Value>) -> Done {
        if self.state.status.is_terminal() {
            return self.refuse("signal", None);
        }
        let act = self.state.awaiting_event(&name, correlation.as_ref());
        self.emit(Event::SignalReceived {
            name,
            payload: payload.clone(),
            correlation,
            act,
            by: self.by(),
            reason: self.reason(),
        })?;
        match act {
            Some(act) => {
                let (step, thread) = self.activation_step(act)?;
                self.complete(act, step, thread, None, payload)
            }
            None => Ok(()),
        }
    }

    /// A child execution (a subworkflow step's, or a handler) completed.
    fn child_completed(&mut self, child: ExecutionId, output: Value) -> Done {
        let act = self.child(child)?;
        if let Some(error) = self.handler_error(act) {
            return self.handler_finished(act, child, true, error);
        }
        self.emit(Event::ChildCompleted {
            act,
            child,
            output: output.clone(),
        })?;
        self.activation_done(act, Ok(output))
    }

    /// A child execution (a subworkflow step's, or a handler) failed.
    fn child_failed(&mut self, child: ExecutionId, error: ErrorInfo) -> Done {
        let act = self.child(child)?;
        if let Some(original) = self.handler_error(act) {
            return self.handler_finished(act, child, false, original);
        }
        self.emit(Event::ChildFailed {
            act,
            child,
            error: error.clone(),
        })?;
        let (step, thread) = self.activation_step(act)?;
        self.step_failed(act, step, thread, error, None)
    }

    /// An activation's task or child succeeded with `output`.
    fn activation_done(&mut self, act: u64, output: Result<Value, ()>) -> Done {
        let Some(a) = self.state.activations.get(&act) else {
            return Err(Rejection::Stale(format!("activation {act}")));
        };
        let (role, thread) = (a.role.clone(), a.thread);
        let step = self.step(&a.step)?;
        match (role, output) {
            (Role::Compensation { of }, Ok(output)) => {
                self.emit(Event::CompensationCompleted { act, of, output })?;
                self.next_compensation()
            }
            (_, Ok(output)) => self.complete(act, step, thread, None, output),
            (_, Err(())) => Ok(()),
        }
    }

    /// A timer of activation `act` (0: the workflow's timeout) is due.
    fn timer_fired(&mut self, act: u64) -> Done {
        if self.state.status.is_terminal() {
            return Err(Rejection::Stale(format!("timer of activation {act}")));
        }
        if matches!(
            self.state.status,
            Status::Paused | Status::CompensationFailed
        ) {
            // Takes effect on resume: the runtime fires it again then.
            return self.refuse("fire a timer of", None);
        }
        if act == 0 {
            return self.workflow_timed_out();
        }
        let now = self.ctx.now_ms;
        let Some(a) = self.state.activations.get(&act) else {
            return Err(Rejection::Stale(format!("timer of activation {act}")));
        };
        let (step, thread, input, role) = (
            self.step(&a.step)?,
            a.thread,
            a.input.clone(),
            a.role.clone(),
        );
        match a.waiting.clone() {
            Waiting::Retry { attempt, due_at_ms } if now >= due_at_ms => {
                self.emit(Event::TimerFired { act })?;
                let capability = self.capability_of(&role, step)?;
                self.schedule_task(act, step, &capability, attempt, input)
            }
            Waiting::Timer { due_at_ms } if now >= due_at_ms => {
                self.emit(Event::TimerFired { act })?;
                // A wait step passes its input on.
                self.complete(act, step, thread, None, input)
            }
            Waiting::Event {
                name,
                timeout_at_ms: Some(due_at_ms),
                ..
            } if now >= due_at_ms => {
                self.emit(Event::TimerFired { act })?;
                let error = ErrorInfo::new(
                    error_types::TIMEOUT,
                    format!("no event {name} arrived in time"),
                );
                self.step_failed(act, step, thread, error, None)
            }
            Waiting::Retry { due_at_ms, .. }
            | Waiting::Timer { due_at_ms }
            | Waiting::Event {
                timeout_at_ms: Some(due_at_ms),
                ..
            } => Err(Rejection::NotDue { act, due_at_ms }),
            _ => Err(Rejection::Stale(format!("timer of activation {act}"))),
        }
    }

    /// A deadline (`deadlineMs` of the workflow, act 0, or of a step) is
    /// due: recorded, and nothing else changes. One that no longer applies
    /// (its step ended, or it was recorded already) is stale.
    fn deadline_passed(&mut self, act: u64) -> Done {
        let (pending, step) = if act == 0 {
            (self.state.deadline_at_ms, None)
        } else {
            match self.state.activations.get(&act) {
                Some(a) => (a.deadline_at_ms, Some(a.step.clone())),
                None => (None, None),
            }
        };
        let Some(due_at_ms) = pending else {
            return Err(Rejection::Stale(format!("deadline of activation {act}")));
        };
        if self.ctx.now_ms < due_at_ms {
            return Err(Rejection::NotDue { act, due_at_ms });
        }
        self.emit(Event::DeadlineMissed {
            act,
            step,
            deadline_at_ms: due_at_ms,
        })?;
        Ok(())
    }

    /// The workflow's own timer (`timeoutMs`, activation 0) is due.
    fn workflow_timed_out(&mut self) -> Done {
        let act = 0;
        let due_at_ms = self
            .state
            .timeout_at_ms
            .ok_or_else(|| Rejection::Stale("workflow timeout".into()))?;
        if self.ctx.now_ms < due_at_ms {
            return Err(Rejection::NotDue { act, due_at_ms });
        }
        if self.state.status == Status::Compensating {
            return Err(Rejection::Stale(
                "workflow timeout while compensating".into(),
            ));
        }
        self.emit(Event::TimerFired { act })?;
        let error = ErrorInfo::new(
            error_types::TIMEOUT,
            "the workflow ran longer than its timeoutMs",
        );
        self.fail_execution(error)
    }

    /// The activation and attempt of outstanding task `task`.
    fn outstanding(&self, task: &str) -> Result<(u64, u32), Rejection> {
        match self.state.task_activation(task) {
            Some(a) => match &a.waiting {
                Waiting::Task { attempt, .. } => Ok((a.act, *attempt)),
                _ => Err(Rejection::NotOutstanding(task.to_string())),
            },
            None => Err(Rejection::NotOutstanding(task.to_string())),
        }
    }

    /// The activation waiting on child `child`.
    fn child(&self, child: ExecutionId) -> Result<u64, Rejection> {
        self.state
            .child_activation(child)
            .map(|a| a.act)
            .ok_or_else(|| Rejection::Stale(format!("child {child}")))
    }

    /// The error a handler activation was started for (`None` for others).
    fn handler_error(&self, act: u64) -> Option<ErrorInfo> {
        match &self.state.activations.get(&act)?.role {
            Role::Handler { error } => Some(error.clone()),
            _ => None,
        }
    }
}
