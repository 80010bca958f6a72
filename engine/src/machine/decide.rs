//! `start` and `handle`: turn a trigger into events. Every event is applied
//! to the state the moment it is emitted (through [`apply`], the same fold
//! replay uses), so later decisions in the same trigger see it, and what the
//! live engine holds is by construction what replay rebuilds.
//!
//! Pure: the time, random bits and workflow versions come in through [`Ctx`];
//! nothing here reads a clock, touches IO or knows tokio. A rejected trigger
//! changes nothing: every check that can refuse runs before the first emit.

use std::collections::BTreeMap;

use retrace_journal::ExecutionId;
use serde_json::{Value, json};

use super::event::{ErrorInfo, Event, ParentRef, TaskTimeouts, Thread, error_types};
use super::state::{ApplyError, ExecutionState, Role, Status, Waiting, apply};
use crate::model::{RetryPolicy, Step, StepKind, WaitSpec, Workflow, branch_key};

/// After this many events, one trigger stops entering steps and defers the
/// rest to a `Continue` trigger, so one append never outgrows the journal's
/// limit however long a loop of inline steps runs.
pub const EVENTS_PER_TRIGGER: usize = 1000;

/// Capabilities the machine runs itself: pure functions of the step input.
pub const INLINE_CAPABILITIES: [&str; 2] = ["noop", "transform"];

/// What the engine knows of other workflows (for subworkflow steps).
pub trait Catalog {
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
    pub catalog: &'a dyn Catalog,
    pub defaults: &'a Defaults,
}

/// What can happen to an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    TaskCompleted {
        task: String,
        output: Value,
    },
    TaskFailed {
        task: String,
        error: ErrorInfo,
    },
    TaskTimedOut {
        task: String,
        kind: String,
    },
    /// A timer of activation `act` (0: the workflow's own timeout) is due.
    TimerFired {
        act: u64,
    },
    Signal {
        name: String,
        payload: Value,
        correlation: Option<Value>,
    },
    ChildCompleted {
        child: ExecutionId,
        output: Value,
    },
    ChildFailed {
        child: ExecutionId,
        error: ErrorInfo,
    },
    Pause {
        reason: String,
    },
    Resume,
    /// Enter the steps deferred because one trigger produced enough events.
    Continue,
    /// Retry the held failed step (`onFailure: pause`) or the failed
    /// compensation.
    Retry,
    /// Skip the held failed step, `output` standing for its result, or skip
    /// the failed compensation.
    Skip {
        output: Value,
    },
    /// Reopen a failed execution at the step that failed.
    Redrive,
    /// End the execution; with `compensate`, undo its completed steps first.
    Cancel {
        reason: String,
        compensate: bool,
    },
    Terminate {
        reason: String,
    },
}

impl Trigger {
    /// How an operator would name it (for refusals).
    pub fn command(&self) -> &'static str {
        match self {
            Trigger::TaskCompleted { .. } => "complete a task of",
            Trigger::TaskFailed { .. } => "fail a task of",
            Trigger::TaskTimedOut { .. } => "time out a task of",
            Trigger::TimerFired { .. } => "fire a timer of",
            Trigger::Signal { .. } => "signal",
            Trigger::ChildCompleted { .. } | Trigger::ChildFailed { .. } => "report a child to",
            Trigger::Pause { .. } => "pause",
            Trigger::Resume => "resume",
            Trigger::Continue => "continue",
            Trigger::Retry => "retry",
            Trigger::Skip { .. } => "skip",
            Trigger::Redrive => "redrive",
            Trigger::Cancel { .. } => "cancel",
            Trigger::Terminate { .. } => "terminate",
        }
    }
}

/// Why a trigger was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// A result for a task that is not outstanding (late, duplicate, wrong
    /// attempt, or the execution moved on).
    #[error("task {0} is not outstanding")]
    NotOutstanding(String),
    /// A timer or child result that no longer matters.
    #[error("{0} is stale")]
    Stale(String),
    /// A timer that is not due yet.
    #[error("timer of activation {act} is due at {due_at_ms}")]
    NotDue { act: u64, due_at_ms: u64 },
    /// The command makes no sense in the execution's status.
    #[error("cannot {command} an execution that is {status}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    WrongState {
        command: &'static str,
        status: &'static str,
        hint: Option<&'static str>,
    },
    /// The machine produced an event its own fold refused: a bug.
    #[error(transparent)]
    Internal(#[from] ApplyError),
    /// The definition does not have a step the state refers to: the
    /// execution is pinned to another version than the one given.
    #[error("the workflow has no step {0}")]
    UnknownStep(String),
}

/// How a new execution starts.
#[derive(Debug, Clone, Default)]
pub struct StartParams {
    pub input: Value,
    pub parent: Option<ParentRef>,
    pub idempotency_key: Option<String>,
}

/// The id of the child a subworkflow step (or error handler) `act` of
/// `parent` starts: derived, so a crash between recording and starting it
/// cannot start two.
pub fn child_id(parent: ExecutionId, act: u64) -> ExecutionId {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"retrace child");
    hasher.update(parent.as_bytes());
    hasher.update(&act.to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    ExecutionId::from_bytes(id)
}

/// The id (and agents' idempotency key) of attempt `attempt` of `act`.
pub fn task_id(execution: ExecutionId, act: u64, attempt: u32) -> String {
    format!("{execution}.{act}.{attempt}")
}

/// The execution a task id belongs to.
pub fn task_execution(task: &str) -> Option<ExecutionId> {
    task.split('.').next()?.parse().ok()
}

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
        })?;
        run.work.push(Work::to(workflow.start(), None, input));
        run.run()?;
        run.events
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
    run.trigger(trigger)?;
    run.run()?;
    Ok(run.events)
}

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
    fn new(state: &'s mut ExecutionState, wf: &'w Workflow, ctx: &'c Ctx<'c>) -> Self {
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

    /// Enters queued steps until the execution waits or ends.
    fn run(&mut self) -> Done {
        while let Some(work) = self.work.pop() {
            if self.state.status.is_terminal() {
                break;
            }
            // A branch whose parallel step has ended meanwhile (it failed
            // while this entry was deferred) has nothing left to do.
            if let Some(t) = work.thread
                && !self.state.activations.contains_key(&t.parallel)
            {
                continue;
            }
            if self.state.status != Status::Running || self.events.len() >= EVENTS_PER_TRIGGER {
                self.emit(Event::StepDeferred {
                    step: work.step,
                    thread: work.thread,
                    from_output: work.from_output,
                })?;
                continue;
            }
            self.enter(work)?;
        }
        Ok(())
    }

    /// Queues the steps deferred while paused (or to keep appends small).
    pub(super) fn push_deferred(&mut self, deferred: Vec<super::state::Deferred>) {
        for d in deferred.into_iter().rev() {
            self.work.push(Work::to(d.step, d.thread, d.from_output));
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

    fn enter(&mut self, work: Work) -> Done {
        let step = self.step(&work.step)?;
        let thread = work.thread;
        let act = self.state.next_act;
        if self.state.transitions >= self.state.max_transitions {
            let error = ErrorInfo::new(
                error_types::TRANSITION_LIMIT,
                format!(
                    "the execution entered {} steps, its limit (maxTransitions); a loop that never ends?",
                    self.state.transitions
                ),
            )
            .at(&step.id, None);
            return self.fail_execution(error);
        }
        // Building the context clones input and variables: only when the
        // step has something to evaluate.
        let needs_context = (work.input.is_none() && step.input.is_some())
            || matches!(
                &step.kind,
                StepKind::Decision { .. }
                    | StepKind::Event {
                        correlation: Some(_),
                        ..
                    }
            );
        let context = if needs_context {
            self.context(&work.from_output)
        } else {
            Value::Null
        };
        let input = match (work.input, &step.input) {
            (Some(input), _) => input,
            (None, Some(mapping)) => match mapping.evaluate(&context) {
                Ok(v) => v,
                Err(e) => {
                    let error = ErrorInfo::new(error_types::EXPRESSION, e.message);
                    return self.step_failed(act, step, thread, error, None);
                }
            },
            (None, None) => work.from_output.clone(),
        };
        let started = |input: &Value| Event::StepStarted {
            act,
            step: step.id.clone(),
            thread,
            input: input.clone(),
        };
        match &step.kind {
            StepKind::Task { capability } if INLINE_CAPABILITIES.contains(&capability.as_str()) => {
                self.complete(act, step, thread, Some(input.clone()), input)
            }
            StepKind::Task { capability } => {
                self.emit(started(&input))?;
                self.schedule_task(act, step, capability, 1, input)
            }
            StepKind::Decision { expression, .. } => {
                let value = match expression.evaluate(&context) {
                    Ok(v) => v,
                    Err(e) => {
                        let error = ErrorInfo::new(error_types::EXPRESSION, e.message);
                        return self.step_failed(act, step, thread, error, None);
                    }
                };
                let Some(target) = step.decision_target(&value) else {
                    let error = ErrorInfo::new(
                        error_types::NO_BRANCH,
                        format!("no branch for value {} and no default", branch_key(&value)),
                    );
                    return self.step_failed(act, step, thread, error, None);
                };
                self.emit(Event::DecisionMade {
                    act,
                    step: step.id.clone(),
                    thread,
                    value: branch_key(&value),
                    target: target.to_string(),
                })?;
                self.work.push(Work::to(target, thread, work.from_output));
                Ok(())
            }
            StepKind::Parallel { branches } => {
                self.emit(started(&input))?;
                self.emit(Event::ParallelStarted {
                    act,
                    branches: branches.len(),
                })?;
                if branches.is_empty() {
                    return self.complete(act, step, thread, None, json!({}));
                }
                // Pushed in reverse so branch 0 is entered first.
                for (branch, b) in branches.iter().enumerate().rev() {
                    let thread = Some(Thread {
                        parallel: act,
                        branch,
                    });
                    self.work
                        .push(Work::to(b.start.clone(), thread, input.clone()));
                }
                Ok(())
            }
            StepKind::Wait(spec) => {
                let due_at_ms = match spec {
                    WaitSpec::Seconds(s) => self.ctx.now_ms.saturating_add(s.saturating_mul(1000)),
                    WaitSpec::UntilMs(t) => *t,
                };
                self.emit(started(&input))?;
                self.emit(Event::TimerStarted { act, due_at_ms })
            }
            StepKind::Event {
                name,
                correlation,
                timeout_ms,
            } => {
                let correlation = match correlation {
                    Some(expr) => match expr.evaluate(&context) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            let error = ErrorInfo::new(error_types::EXPRESSION, e.message);
                            return self.step_failed(act, step, thread, error, None);
                        }
                    },
                    None => None,
                };
                self.emit(started(&input))?;
                let timeout_at_ms = timeout_ms.map(|t| self.ctx.now_ms.saturating_add(t));
                self.emit(Event::EventAwaited {
                    act,
                    name: name.clone(),
                    correlation: correlation.clone(),
                    timeout_at_ms,
                })?;
                // A signal that came before the step: take the oldest match.
                let kept = self.state.signals.iter().position(|s| {
                    &s.name == name && correlates(correlation.as_ref(), s.correlation.as_ref())
                });
                if let Some(index) = kept {
                    let payload = self.state.signals[index].payload.clone();
                    self.emit(Event::SignalTaken { act, index })?;
                    return self.complete(act, step, thread, None, payload);
                }
                Ok(())
            }
            StepKind::Subworkflow { workflow, version } => {
                let version = match version {
                    Some(v) if self.ctx.catalog.has_version(workflow, v) => Some(v.clone()),
                    Some(_) => None,
                    None => self.ctx.catalog.latest_version(workflow),
                };
                let Some(version) = version else {
                    let error = ErrorInfo::new(
                        error_types::UNKNOWN_WORKFLOW,
                        format!("no workflow {workflow} (at the version asked for) is defined"),
                    );
                    return self.step_failed(act, step, thread, error, None);
                };
                self.emit(started(&input))?;
                self.emit(Event::ChildStarted {
                    act,
                    child: child_id(self.state.id, act),
                    workflow: workflow.clone(),
                    version,
                    input,
                })
            }
        }
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

    /// Completes a step with `output`: output mapping, then onwards.
    pub(super) fn complete(
        &mut self,
        act: u64,
        step: &Step,
        thread: Option<Thread>,
        inline_input: Option<Value>,
        output: Value,
    ) -> Done {
        let mut variables = BTreeMap::new();
        if let Some(mappings) = &step.output {
            let context = self.context(&output);
            for (name, mapping) in mappings {
                match mapping.evaluate(&context) {
                    Ok(v) => {
                        variables.insert(name.clone(), v);
                    }
                    Err(e) => {
                        let error = ErrorInfo::new(
                            error_types::EXPRESSION,
                            format!("output {name}: {}", e.message),
                        );
                        return self.step_failed(act, step, thread, error, None);
                    }
                }
            }
        }
        self.emit(Event::StepCompleted {
            act,
            step: step.id.clone(),
            thread,
            output: output.clone(),
            variables,
            input: inline_input,
        })?;
        match &step.next {
            Some(next) => {
                self.work.push(Work::to(next.clone(), thread, output));
                Ok(())
            }
            None => self.thread_ended(thread, output),
        }
    }

    /// A thread ran out of steps: the execution or a branch is done.
    fn thread_ended(&mut self, thread: Option<Thread>, output: Value) -> Done {
        let Some(t) = thread else {
            return self.emit(Event::ExecutionCompleted { output });
        };
        self.emit(Event::BranchCompleted {
            act: t.parallel,
            branch: t.branch,
            output,
        })?;
        let Some(parallel) = self.state.activations.get(&t.parallel) else {
            return Err(Rejection::Stale(format!("activation {}", t.parallel)));
        };
        let step = self.step(&parallel.step)?;
        let (StepKind::Parallel { branches }, Waiting::Branches { outputs }) =
            (&step.kind, &parallel.waiting)
        else {
            return Err(Rejection::UnknownStep(step.id.clone()));
        };
        if outputs.len() < branches.len() {
            return Ok(());
        }
        // Each branch's output under the branch's name.
        let joined: serde_json::Map<String, Value> = branches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    b.name.clone(),
                    outputs
                        .iter()
                        .find(|(b, _)| *b == i)
                        .map_or(Value::Null, |(_, o)| o.clone()),
                )
            })
            .collect();
        let parent_thread = parallel.thread;
        self.complete(t.parallel, step, parent_thread, None, Value::Object(joined))
    }

    fn trigger(&mut self, trigger: Trigger) -> Done {
        let status = self.state.status;
        match trigger {
            Trigger::TaskCompleted { task, output } => {
                let (act, attempt) = self.outstanding(&task)?;
                self.emit(Event::TaskCompleted {
                    act,
                    attempt,
                    task,
                    output: output.clone(),
                })?;
                self.activation_done(act, Ok(output))
            }
            Trigger::TaskFailed { task, error } => {
                let (act, attempt) = self.outstanding(&task)?;
                self.emit(Event::TaskFailed {
                    act,
                    attempt,
                    task,
                    error: error.clone(),
                })?;
                self.task_failed(act, attempt, error)
            }
            Trigger::TaskTimedOut { task, kind } => {
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
                })?;
                self.task_failed(act, attempt, error)
            }
            Trigger::TimerFired { act } => self.timer_fired(act),
            Trigger::Signal {
                name,
                payload,
                correlation,
            } => {
                if status.is_terminal() {
                    return self.refuse("signal", None);
                }
                let waiting = self.state.activations.values().find(|a| {
                    matches!(&a.waiting, Waiting::Event { name: n, correlation: c, .. }
                        if *n == name && correlates(c.as_ref(), correlation.as_ref()))
                });
                let act = waiting.map(|a| a.act);
                self.emit(Event::SignalReceived {
                    name,
                    payload: payload.clone(),
                    correlation,
                    act,
                })?;
                match act {
                    Some(act) => {
                        let (step, thread) = self.activation_step(act)?;
                        self.complete(act, step, thread, None, payload)
                    }
                    None => Ok(()),
                }
            }
            Trigger::ChildCompleted { child, output } => {
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
            Trigger::ChildFailed { child, error } => {
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
            Trigger::Pause { reason } => match status {
                Status::Running => self.emit(Event::ExecutionPaused { reason }),
                _ => self.refuse("pause", None),
            },
            Trigger::Resume => match status {
                Status::Paused if !self.state.failed_steps.is_empty() => {
                    self.refuse("resume", Some("a failed step is held: retry or skip it"))
                }
                Status::Paused => {
                    let deferred = self.state.deferred.clone();
                    self.emit(Event::ExecutionResumed)?;
                    self.push_deferred(deferred);
                    Ok(())
                }
                _ => self.refuse("resume", None),
            },
            Trigger::Continue => match status {
                Status::Running if !self.state.deferred.is_empty() => {
                    let deferred = self.state.deferred.clone();
                    self.emit(Event::Continued)?;
                    self.push_deferred(deferred);
                    Ok(())
                }
                _ => Err(Rejection::Stale("nothing deferred".into())),
            },
            Trigger::Retry => self.retry(),
            Trigger::Skip { output } => self.skip(output),
            Trigger::Redrive => self.redrive(),
            Trigger::Cancel { reason, compensate } => self.cancel(reason, compensate),
            Trigger::Terminate { reason } if !status.is_terminal() => {
                self.emit(Event::ExecutionTerminated { reason })
            }
            Trigger::Terminate { .. } => self.refuse("terminate", None),
        }
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

    fn timer_fired(&mut self, act: u64) -> Done {
        let now = self.ctx.now_ms;
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
            let due_at_ms = self
                .state
                .timeout_at_ms
                .ok_or_else(|| Rejection::Stale("workflow timeout".into()))?;
            if now < due_at_ms {
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
            return self.fail_execution(error);
        }
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

    /// The capability a task of this activation runs.
    pub(super) fn capability_of(&self, role: &Role, step: &Step) -> Result<String, Rejection> {
        match (role, &step.kind, &step.compensate) {
            (Role::Compensation { .. }, _, Some(c)) => Ok(c.capability.clone()),
            (Role::Step, StepKind::Task { capability }, _) => Ok(capability.clone()),
            _ => Err(Rejection::UnknownStep(step.id.clone())),
        }
    }

    fn outstanding(&self, task: &str) -> Result<(u64, u32), Rejection> {
        match self.state.task_activation(task) {
            Some(a) => match &a.waiting {
                Waiting::Task { attempt, .. } => Ok((a.act, *attempt)),
                _ => Err(Rejection::NotOutstanding(task.to_string())),
            },
            None => Err(Rejection::NotOutstanding(task.to_string())),
        }
    }

    fn child(&self, child: ExecutionId) -> Result<u64, Rejection> {
        self.state
            .child_activation(child)
            .map(|a| a.act)
            .ok_or_else(|| Rejection::Stale(format!("child {child}")))
    }

    fn handler_error(&self, act: u64) -> Option<ErrorInfo> {
        match &self.state.activations.get(&act)?.role {
            Role::Handler { error } => Some(error.clone()),
            _ => None,
        }
    }

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

/// Whether a signal's correlation value satisfies a waiter's.
fn correlates(waiter: Option<&Value>, signal: Option<&Value>) -> bool {
    match waiter {
        None => true,
        Some(w) => signal == Some(w),
    }
}
