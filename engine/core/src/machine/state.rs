//! The state of one execution and `apply`, the fold that builds it from
//! events. `apply` is the only code that changes a state: the live engine
//! applies each event as the machine emits it, and replay applies the same
//! events from the journal, so the two cannot drift apart.
//!
//! `apply` never evaluates an expression, reads a definition or decides
//! anything: every value it needs is in the event. This module must never
//! depend on the deciding code (`run` and the layers above it). The fold is
//! split by topic, one function each; `fold` routes every event by name,
//! without a `_` arm.

use std::collections::{BTreeMap, BTreeSet};

use crate::ExecutionId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{ErrorInfo, Event, LimitKey, ParentRef, TaskTimeouts, Thread, present};
// Stored in events, so defined with them; also reachable here, where they
// always were.
pub use super::event::{CompensationReason, FailedStep};

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    /// Stopped by an operator, or by a step with `onFailure: pause`.
    Paused,
    /// Undoing completed steps after a failure or a cancel.
    Compensating,
    /// A compensation failed for good: waits for an operator (retry or skip).
    CompensationFailed,
    Completed,
    Failed,
    /// Failed, and every completed step that declares `compensate` was undone.
    Compensated,
    Cancelled,
    Terminated,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed
                | Status::Failed
                | Status::Compensated
                | Status::Cancelled
                | Status::Terminated
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Compensating => "compensating",
            Status::CompensationFailed => "compensation_failed",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Compensated => "compensated",
            Status::Cancelled => "cancelled",
            Status::Terminated => "terminated",
        }
    }

    /// Every status, for listings and metrics.
    pub const ALL: [Status; 9] = [
        Status::Running,
        Status::Paused,
        Status::Compensating,
        Status::CompensationFailed,
        Status::Completed,
        Status::Failed,
        Status::Compensated,
        Status::Cancelled,
        Status::Terminated,
    ];
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status {s}"))
    }
}

/// What an activation is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "role",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Role {
    /// A step of the workflow.
    Step,
    /// Undoing activation `of` (a completed step with `compensate`).
    Compensation { of: u64 },
    /// A handler workflow run for `error` (an `errorHandlers` entry).
    Handler { error: ErrorInfo },
}

/// Why compensation runs, and what is left to undo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compensation {
    pub reason: CompensationReason,
    /// Activations still to undo, next first (reverse completion order).
    pub pending: Vec<u64>,
    /// The error of the compensation that failed, while waiting for an operator.
    pub failed: Option<ErrorInfo>,
}

/// What a started step is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "for",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Waiting {
    /// Nothing yet (a step between `StepStarted` and what it waits for).
    Starting,
    Task {
        attempt: u32,
        task: String,
        capability: String,
        input: Value,
        timeouts: TaskTimeouts,
        scheduled_at_ms: u64,
    },
    Retry {
        attempt: u32,
        due_at_ms: u64,
    },
    Timer {
        due_at_ms: u64,
    },
    Event {
        name: String,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        correlation: Option<Value>,
        timeout_at_ms: Option<u64>,
    },
    Child {
        child: ExecutionId,
        workflow: String,
        version: String,
        input: Value,
    },
    Branches {
        /// (branch, output) of each branch that has ended. A list, not a
        /// map: integer map keys do not survive serde's internally tagged
        /// enums, and a snapshot must decode to exactly this state.
        outputs: Vec<(usize, Value)>,
    },
    /// A map step's items: see [`Items`].
    Items(Items),
}

/// A map step's items and where each stands.
///
/// The activation runs the items of `todo` in that order (every item, or
/// on a redrive those that did not complete), at most `max_concurrency` at
/// once: `todo[..launched]` have started and `ended` of them have ended,
/// so `launched - ended` are in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Items {
    pub items: Vec<Value>,
    /// One per item.
    pub states: Vec<ItemState>,
    pub todo: Vec<usize>,
    pub launched: usize,
    pub ended: usize,
    /// How many of `todo` failed.
    pub failed: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

impl Items {
    /// The next item to start, if one may start now.
    pub fn next_to_launch(&self) -> Option<usize> {
        let in_flight = self.launched - self.ended;
        let room = self
            .max_concurrency
            .is_none_or(|cap| in_flight < cap as usize);
        if room {
            self.todo.get(self.launched).copied()
        } else {
            None
        }
    }

    /// Whether every item this activation runs has ended.
    pub fn all_ended(&self) -> bool {
        self.ended == self.todo.len()
    }
}

/// Where one item of a map step stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Not ended (not started, or running).
    Open,
    /// Its flow ended with this result.
    Done(Value),
    /// Its flow failed with this error.
    Failed(ErrorInfo),
}

/// The items of a map step that failed, kept so a redrive or retry of that
/// step runs again only the items that did not complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedMap {
    pub step: String,
    pub thread: Option<Thread>,
    pub items: Vec<Value>,
    pub states: Vec<ItemState>,
}

/// One started step: an activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    pub act: u64,
    pub role: Role,
    pub step: String,
    pub thread: Option<Thread>,
    pub input: Value,
    pub started_at_ms: u64,
    pub waiting: Waiting,
    /// Its tasks' priority, when its step gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// When its step's deadline passes; `None` without one, or once missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at_ms: Option<u64>,
    /// Its tasks' fairness key, when its step gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<String>,
    /// The version its tasks' agents must have, when its step requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// A signal no step was waiting for yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptSignal {
    pub name: String,
    pub payload: Value,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub correlation: Option<Value>,
}

/// A step whose entry waits for the execution to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deferred {
    pub step: String,
    pub thread: Option<Thread>,
    pub from_output: Value,
    /// Its input, when it was known before the entry was deferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// A step completed, in completion order (what compensation will undo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub act: u64,
    pub step: String,
    pub output: Value,
}

/// The figures the API reports for an execution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub step_count: u64,
    pub completed_steps: u64,
    pub task_count: u64,
    pub error_count: u64,
    pub retry_count: u64,
}

/// Everything known about one execution: the fold of its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionState {
    pub id: ExecutionId,
    pub workflow: String,
    pub version: String,
    pub status: Status,
    pub input: Value,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub output: Option<Value>,
    pub error: Option<ErrorInfo>,
    pub variables: BTreeMap<String, Value>,
    pub parent: Option<ParentRef>,
    pub idempotency_key: Option<String>,
    pub max_transitions: u64,
    pub timeout_at_ms: Option<u64>,
    /// How urgent its tasks are, 0 to 9 (from the start).
    #[serde(default)]
    pub priority: u8,
    /// Its tags: the start's, and what its steps set since.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// When the workflow's deadline passes; `None` without one, or once
    /// missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at_ms: Option<u64>,
    /// The workflow's limits it counts under; `None` without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitGate>,
    /// Started steps still waiting, by activation id.
    pub activations: BTreeMap<u64, Box<Activation>>,
    /// The next activation id.
    pub next_act: u64,
    /// Steps entered so far (started or inline), for the transition limit.
    pub transitions: u64,
    pub signals: Vec<KeptSignal>,
    pub deferred: Vec<Deferred>,
    /// Completed steps that may be undone (those `compensable` names),
    /// oldest first.
    pub completed: Vec<Completed>,
    /// The steps that declare `compensate` (from `execution_started`);
    /// `None` for histories that did not record it: every step is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensable: Option<BTreeSet<String>>,
    /// Failed steps an operator may retry or skip, oldest first (paused),
    /// or the one a failed execution would be redriven from.
    pub failed_steps: Vec<FailedStep>,
    /// Map steps that failed, with their items' results, for a redrive
    /// or retry of them (one per step and thread, the latest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_maps: Vec<FailedMap>,
    pub compensation: Option<Compensation>,
    pub metrics: Counts,
    pub started_at_ms: u64,
    pub ended_at_ms: Option<u64>,
    /// The seq of the last event applied.
    pub seq: u64,
}

/// The limits an execution counts under, and whether they let it go yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitGate {
    pub limits: Vec<LimitKey>,
    /// Whether it waits for them: from the start, and again after a
    /// redrive (a failed execution gave its slot back).
    pub waiting: bool,
    /// When they let it go, each time (a start in a rate window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acquired_at_ms: Vec<u64>,
}

impl ExecutionState {
    /// Whether it has work a `Continue` would do: steps deferred to keep
    /// appends small, or map items with room to start.
    pub fn has_deferred_work(&self) -> bool {
        !self.deferred.is_empty()
            || self.activations.values().any(
                |a| matches!(&a.waiting, Waiting::Items(items) if items.next_to_launch().is_some()),
            )
    }

    /// Whether it waits for its workflow's limits (what it would enter is
    /// deferred until they let it go).
    pub fn waiting_for_limit(&self) -> bool {
        self.limits.as_ref().is_some_and(|gate| gate.waiting)
    }
}

/// An event that cannot follow the state it is applied to: the history is
/// damaged or was not written by this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[ENGINE-REPLAY] event {seq} ({kind}) does not fit the execution's state: {why}")]
pub struct ApplyError {
    pub seq: u64,
    pub kind: &'static str,
    pub why: String,
}

impl ExecutionState {
    /// The activation a signal named `name` with `correlation` would reach:
    /// the one waiting for that event whose correlation (if it set one)
    /// equals the signal's. The runtime asks this before delivering a
    /// published event, so delivery and `decide` agree by construction.
    pub fn awaiting_event(&self, name: &str, correlation: Option<&Value>) -> Option<u64> {
        self.activations.values().find_map(|a| match &a.waiting {
            Waiting::Event {
                name: n,
                correlation: c,
                ..
            } if n == name && correlates(c.as_ref(), correlation) => Some(a.act),
            _ => None,
        })
    }
}

impl ExecutionState {
    /// The state before its first event.
    pub fn empty(id: ExecutionId) -> Self {
        ExecutionState {
            id,
            workflow: String::new(),
            version: String::new(),
            status: Status::Running,
            input: Value::Null,
            output: None,
            error: None,
            variables: BTreeMap::new(),
            parent: None,
            idempotency_key: None,
            max_transitions: 0,
            timeout_at_ms: None,
            priority: 0,
            tags: BTreeMap::new(),
            deadline_at_ms: None,
            limits: None,
            activations: BTreeMap::new(),
            next_act: 1,
            transitions: 0,
            signals: Vec::new(),
            deferred: Vec::new(),
            completed: Vec::new(),
            compensable: None,
            failed_steps: Vec::new(),
            failed_maps: Vec::new(),
            compensation: None,
            metrics: Counts::default(),
            started_at_ms: 0,
            ended_at_ms: None,
            seq: 0,
        }
    }

    /// The activation waiting on task `task`.
    pub fn task_activation(&self, task: &str) -> Option<&Activation> {
        self.activations
            .values()
            .find(|a| matches!(&a.waiting, Waiting::Task { task: t, .. } if t == task))
            .map(|a| &**a)
    }

    /// The activation waiting on child `child`.
    pub fn child_activation(&self, child: ExecutionId) -> Option<&Activation> {
        self.activations
            .values()
            .find(|a| matches!(&a.waiting, Waiting::Child { child: c, .. } if *c == child))
            .map(|a| &**a)
    }
}

/// Folds one event (the `seq`-th, recorded at `at_ms`) into the state.
pub fn apply(
    state: &mut ExecutionState,
    seq: u64,
    at_ms: u64,
    event: &Event,
) -> Result<(), ApplyError> {
    let fail = |why: String| ApplyError {
        seq,
        kind: event.kind(),
        why,
    };
    if seq != state.seq + 1 {
        return Err(fail(format!("expected seq {}", state.seq + 1)));
    }
    if state.seq == 0 && !matches!(event, Event::ExecutionStarted { .. }) {
        return Err(fail("the first event must start the execution".into()));
    }
    let redrive = matches!(event, Event::ExecutionRedriven { .. });
    if state.status.is_terminal() && !(redrive && state.status == Status::Failed) {
        return Err(fail("the execution has already ended".into()));
    }
    fold(state, at_ms, event).map_err(fail)?;
    state.seq = seq;
    Ok(())
}

/// Folds `event` into the state, or says why it does not fit. Names every
/// variant (no `_` arm), so a new event must be given a place; each topic's
/// fold then handles its own variants.
fn fold(state: &mut ExecutionState, at_ms: u64, event: &Event) -> Result<(), String> {
    match event {
        Event::ExecutionStarted { .. }
        | Event::Continued
        | Event::ExecutionPaused { .. }
        | Event::ExecutionResumed { .. }
        | Event::ExecutionRedriven { .. }
        | Event::ExecutionCompleted { .. }
        | Event::ExecutionFailed { .. }
        | Event::ExecutionCancelled { .. }
        | Event::ExecutionTerminated { .. } => fold_execution(state, at_ms, event),
        Event::StepStarted { .. }
        | Event::StepDeferred { .. }
        | Event::DecisionMade { .. }
        | Event::StepCompleted { .. }
        | Event::StepFailed { .. }
        | Event::ErrorRouted { .. } => fold_step(state, at_ms, event),
        Event::TaskScheduled { .. }
        | Event::TaskCompleted { .. }
        | Event::TaskFailed { .. }
        | Event::RetryScheduled { .. }
        | Event::TimerStarted { .. }
        | Event::TimerFired { .. } => fold_task_or_timer(state, at_ms, event),
        Event::EventAwaited { .. }
        | Event::SignalReceived { .. }
        | Event::SignalTaken { .. }
        | Event::ChildStarted { .. }
        | Event::ChildCompleted { .. }
        | Event::ChildFailed { .. }
        | Event::ParallelStarted { .. }
        | Event::BranchCompleted { .. } => fold_signal_child_or_branch(state, event),
        Event::MapStarted { .. }
        | Event::ItemStarted { .. }
        | Event::ItemCompleted { .. }
        | Event::ItemFailed { .. } => fold_map(state, event),
        Event::FailureHeld { .. }
        | Event::HeldStepRetried { .. }
        | Event::HeldStepSkipped { .. }
        | Event::HandlerStarted { .. }
        | Event::HandlerFinished { .. }
        | Event::HandlerUnavailable { .. } => fold_held_or_handler(state, at_ms, event),
        Event::CompensationBegan { .. }
        | Event::CompensationStarted { .. }
        | Event::CompensationCompleted { .. }
        | Event::CompensationSkipped { .. }
        | Event::CompensationFailed { .. }
        | Event::CompensationRetried { .. }
        | Event::ExecutionCompensated { .. } => fold_compensation(state, at_ms, event),
        Event::DeadlineMissed {
            act,
            step: _,
            deadline_at_ms,
        } => fold_deadline_missed(state, *act, *deadline_at_ms),
        Event::LimitWaiting { limits } => {
            if state.limits.is_some() {
                return Err("its limits were already recorded".into());
            }
            state.limits = Some(LimitGate {
                limits: limits.clone(),
                waiting: true,
                acquired_at_ms: Vec::new(),
            });
            Ok(())
        }
        Event::LimitAcquired => {
            let Some(gate) = state.limits.as_mut().filter(|g| g.waiting) else {
                return Err("it waits for no limit".into());
            };
            gate.waiting = false;
            gate.acquired_at_ms.push(at_ms);
            // Running, it enters what it deferred now; paused, on resume.
            if state.status == Status::Running {
                state.deferred.clear();
            }
            Ok(())
        }
    }
}

/// A deadline passed: it is no longer pending (nothing else changes).
fn fold_deadline_missed(state: &mut ExecutionState, act: u64, at_ms: u64) -> Result<(), String> {
    let pending = if act == 0 {
        &mut state.deadline_at_ms
    } else {
        match state.activations.get_mut(&act) {
            Some(a) => &mut a.deadline_at_ms,
            None => return Err(format!("activation {act} is not live")),
        }
    };
    if *pending != Some(at_ms) {
        return Err(format!(
            "no deadline at {at_ms} is pending for activation {act}"
        ));
    }
    *pending = None;
    Ok(())
}

/// What a topic's fold answers for an event [`fold`] gave it by mistake.
fn misrouted(event: &Event) -> String {
    format!("{} is not folded here (a bug in the fold)", event.kind())
}

/// The execution as a whole: started, paused, resumed, continued,
/// redriven, ended.
fn fold_execution(state: &mut ExecutionState, at_ms: u64, event: &Event) -> Result<(), String> {
    match event {
        Event::ExecutionStarted {
            workflow,
            version,
            input,
            parent,
            idempotency_key,
            max_transitions,
            timeout_at_ms,
            by: _,
            reason: _,
            priority,
            deadline_at_ms,
            tags,
            compensable,
        } => {
            if state.seq != 0 {
                return Err("the execution was already started".into());
            }
            state.workflow = workflow.clone();
            state.version = version.clone();
            state.input = input.clone();
            state.parent = *parent;
            state.idempotency_key = idempotency_key.clone();
            state.max_transitions = *max_transitions;
            state.timeout_at_ms = *timeout_at_ms;
            state.priority = priority.unwrap_or(0);
            state.deadline_at_ms = *deadline_at_ms;
            state.tags = tags.clone();
            state.compensable = compensable.clone();
            state.started_at_ms = at_ms;
        }
        Event::ExecutionRedriven { .. } => {
            if state.failed_steps.is_empty() {
                return Err("nothing to redrive from".into());
            }
            state.failed_steps.clear();
            state.status = Status::Running;
            state.ended_at_ms = None;
            state.error = None;
            // It gave its slots back when it failed: it waits for them again.
            if let Some(gate) = &mut state.limits {
                gate.waiting = true;
            }
        }
        Event::Continued => {
            if state.status != Status::Running || !state.has_deferred_work() {
                return Err("nothing deferred to continue".into());
            }
            state.deferred.clear();
        }
        Event::ExecutionPaused { .. } => {
            if state.status != Status::Running {
                return Err("only a running execution pauses".into());
            }
            state.status = Status::Paused;
        }
        Event::ExecutionResumed { .. } => {
            if state.status != Status::Paused {
                return Err("only a paused execution resumes".into());
            }
            state.status = Status::Running;
            state.deferred.clear();
        }
        Event::ExecutionCompleted { output } => {
            state.output = Some(output.clone());
            end(state, Status::Completed, at_ms);
        }
        Event::ExecutionFailed { error } => {
            state.error = Some(error.clone());
            end(state, Status::Failed, at_ms);
        }
        Event::ExecutionCancelled { .. } => end(state, Status::Cancelled, at_ms),
        Event::ExecutionTerminated { .. } => end(state, Status::Terminated, at_ms),
        other => return Err(misrouted(other)),
    }
    Ok(())
}

/// Steps: started, deferred, decided, completed, failed, routed.
fn fold_step(state: &mut ExecutionState, at_ms: u64, event: &Event) -> Result<(), String> {
    match event {
        Event::StepStarted {
            act,
            step,
            thread,
            input,
            priority,
            deadline_at_ms,
            fairness_key,
            agent_version,
        } => {
            if let Some(t) = thread
                && !matches!(
                    state.activations.get(&t.parallel).map(|a| &a.waiting),
                    Some(Waiting::Branches { .. } | Waiting::Items(_))
                )
            {
                return Err(format!(
                    "its branch belongs to activation {}, which is not a live parallel or \
                     map step",
                    t.parallel
                ));
            }
            begin(
                state,
                Activation {
                    act: *act,
                    role: Role::Step,
                    step: step.clone(),
                    thread: *thread,
                    input: input.clone(),
                    started_at_ms: at_ms,
                    waiting: Waiting::Starting,
                    priority: *priority,
                    deadline_at_ms: *deadline_at_ms,
                    fairness_key: fairness_key.clone(),
                    agent_version: agent_version.clone(),
                },
            )?;
            state.transitions += 1;
            state.metrics.step_count += 1;
        }
        Event::StepDeferred {
            step,
            thread,
            from_output,
            input,
        } => state.deferred.push(Deferred {
            step: step.clone(),
            thread: *thread,
            from_output: from_output.clone(),
            input: input.clone(),
        }),
        Event::DecisionMade { act, .. } => {
            inline(state, *act)?;
            state.metrics.completed_steps += 1;
        }
        Event::StepCompleted {
            act,
            step,
            output,
            variables,
            input,
            tags,
            ..
        } => {
            if input.is_some() {
                inline(state, *act)?;
            } else if state.activations.remove(act).is_none() {
                return Err(format!("activation {act} is not live"));
            }
            for (name, value) in variables {
                state.variables.insert(name.clone(), value.clone());
            }
            for (key, value) in tags {
                state.tags.insert(key.clone(), value.clone());
            }
            // Only what may be undone is kept: a long history of steps
            // without `compensate` keeps none of their outputs.
            if state.compensable.as_ref().is_none_or(|c| c.contains(step)) {
                state.completed.push(Completed {
                    act: *act,
                    step: step.clone(),
                    output: output.clone(),
                });
            }
            state.metrics.completed_steps += 1;
        }
        Event::StepFailed { act, .. } => {
            // A step can fail before it started (its input did not evaluate).
            if let Some(a) = state.activations.get(act) {
                if let Waiting::Items(items) = &a.waiting {
                    keep_failed_map(state, *act, items.clone());
                }
                remove_with_descendants(state, *act);
            } else {
                inline(state, *act)?;
            }
            state.metrics.error_count += 1;
        }
        Event::ErrorRouted { error, .. } => {
            state.error = Some(error.clone());
        }
        other => return Err(misrouted(other)),
    }
    Ok(())
}

/// What a task step waits for: attempts, retries, and timers.
fn fold_task_or_timer(state: &mut ExecutionState, at_ms: u64, event: &Event) -> Result<(), String> {
    match event {
        Event::TaskScheduled {
            act,
            attempt,
            task,
            capability,
            input,
            timeouts,
        } => {
            let a = live(state, *act)?;
            a.waiting = Waiting::Task {
                attempt: *attempt,
                task: task.clone(),
                capability: capability.clone(),
                input: input.clone(),
                timeouts: *timeouts,
                scheduled_at_ms: at_ms,
            };
            state.metrics.task_count += 1;
        }
        Event::TaskCompleted { act, task, .. } | Event::TaskFailed { act, task, .. } => {
            let a = live(state, *act)?;
            match &a.waiting {
                Waiting::Task { task: t, .. } if t == task => a.waiting = Waiting::Starting,
                other => return Err(format!("activation {act} waits for {other:?}")),
            }
            if matches!(event, Event::TaskFailed { .. }) {
                state.metrics.error_count += 1;
            }
        }
        Event::RetryScheduled {
            act,
            attempt,
            due_at_ms,
            ..
        } => {
            let a = live(state, *act)?;
            a.waiting = Waiting::Retry {
                attempt: *attempt,
                due_at_ms: *due_at_ms,
            };
            state.metrics.retry_count += 1;
        }
        Event::TimerStarted { act, due_at_ms } => {
            live(state, *act)?.waiting = Waiting::Timer {
                due_at_ms: *due_at_ms,
            };
        }
        Event::TimerFired { act } => {
            // Workflow timeouts fire on activation 0, which is never live.
            if *act != 0 {
                live(state, *act)?.waiting = Waiting::Starting;
            }
        }
        other => return Err(misrouted(other)),
    }
    Ok(())
}

/// What event, subworkflow and parallel steps wait for: signals, children
/// and branches.
fn fold_signal_child_or_branch(state: &mut ExecutionState, event: &Event) -> Result<(), String> {
    match event {
        Event::EventAwaited {
            act,
            name,
            correlation,
            timeout_at_ms,
        } => {
            live(state, *act)?.waiting = Waiting::Event {
                name: name.clone(),
                correlation: correlation.clone(),
                timeout_at_ms: *timeout_at_ms,
            };
        }
        Event::SignalReceived {
            name,
            payload,
            correlation,
            act,
            by: _,
            reason: _,
        } => match act {
            Some(act) => live(state, *act)?.waiting = Waiting::Starting,
            None => state.signals.push(KeptSignal {
                name: name.clone(),
                payload: payload.clone(),
                correlation: correlation.clone(),
            }),
        },
        Event::SignalTaken { act, index } => {
            if *index >= state.signals.len() {
                return Err(format!("no kept signal {index}"));
            }
            state.signals.remove(*index);
            live(state, *act)?.waiting = Waiting::Starting;
        }
        Event::ChildStarted {
            act,
            child,
            workflow,
            version,
            input,
        } => {
            live(state, *act)?.waiting = Waiting::Child {
                child: *child,
                workflow: workflow.clone(),
                version: version.clone(),
                input: input.clone(),
            };
        }
        Event::ChildCompleted { act, child, .. } | Event::ChildFailed { act, child, .. } => {
            let a = live(state, *act)?;
            match &a.waiting {
                Waiting::Child { child: c, .. } if c == child => a.waiting = Waiting::Starting,
                other => return Err(format!("activation {act} waits for {other:?}")),
            }
        }
        Event::ParallelStarted { act, .. } => {
            live(state, *act)?.waiting = Waiting::Branches {
                outputs: Vec::new(),
            };
        }
        Event::BranchCompleted {
            act,
            branch,
            output,
        } => match &mut live(state, *act)?.waiting {
            Waiting::Branches { outputs } => {
                if outputs.iter().any(|(b, _)| b == branch) {
                    return Err(format!("branch {branch} already ended"));
                }
                outputs.push((*branch, output.clone()));
            }
            other => return Err(format!("activation {act} waits for {other:?}")),
        },
        other => return Err(misrouted(other)),
    }
    Ok(())
}

/// Map steps: their items, each item's start and end.
fn fold_map(state: &mut ExecutionState, event: &Event) -> Result<(), String> {
    match event {
        Event::MapStarted {
            act,
            items,
            max_concurrency,
            redrive,
        } => {
            let a = state
                .activations
                .get(act)
                .ok_or_else(|| format!("activation {act} is not live"))?;
            let (items, states) = if *redrive {
                let at = state
                    .failed_maps
                    .iter()
                    .position(|m| m.step == a.step && m.thread == a.thread)
                    .ok_or_else(|| format!("step {} has no failed items to run again", a.step))?;
                let failed = state.failed_maps.remove(at);
                let states = failed
                    .states
                    .into_iter()
                    .map(|s| match s {
                        ItemState::Done(output) => ItemState::Done(output),
                        ItemState::Open | ItemState::Failed(_) => ItemState::Open,
                    })
                    .collect();
                (failed.items, states)
            } else {
                // A fresh run forgets an earlier failed run of the step.
                let (step, thread) = (a.step.clone(), a.thread);
                state
                    .failed_maps
                    .retain(|m| !(m.step == step && m.thread == thread));
                (items.clone(), vec![ItemState::Open; items.len()])
            };
            let todo = states
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, ItemState::Open))
                .map(|(i, _)| i)
                .collect();
            live(state, *act)?.waiting = Waiting::Items(Items {
                items,
                states,
                todo,
                launched: 0,
                ended: 0,
                failed: 0,
                max_concurrency: *max_concurrency,
            });
        }
        Event::ItemStarted { act, item } => {
            let items = live_items(state, *act)?;
            if items.next_to_launch() != Some(*item) {
                return Err(format!("item {item} is not the next to start"));
            }
            items.launched += 1;
        }
        Event::ItemCompleted { act, item, .. } | Event::ItemFailed { act, item, .. } => {
            let items = live_items(state, *act)?;
            // `todo` is in item order, so a binary search finds it.
            let launched = items.todo[..items.launched].binary_search(item).is_ok();
            match items.states.get(*item) {
                Some(ItemState::Open) if launched => {}
                _ => return Err(format!("item {item} is not running")),
            }
            items.states[*item] = match event {
                Event::ItemCompleted { output, .. } => ItemState::Done(output.clone()),
                Event::ItemFailed { error, .. } => {
                    items.failed += 1;
                    ItemState::Failed(error.clone())
                }
                other => return Err(misrouted(other)),
            };
            items.ended += 1;
        }
        other => return Err(misrouted(other)),
    }
    Ok(())
}

fn live_items(state: &mut ExecutionState, act: u64) -> Result<&mut Items, String> {
    match &mut live(state, act)?.waiting {
        Waiting::Items(items) => Ok(items),
        other => Err(format!("activation {act} waits for {other:?}")),
    }
}

/// Keeps the items of map step activation `act`, which failed, for a
/// redrive or retry of its step.
fn keep_failed_map(state: &mut ExecutionState, act: u64, items: Items) {
    let Some(a) = state.activations.get(&act) else {
        return;
    };
    let (step, thread) = (a.step.clone(), a.thread);
    state
        .failed_maps
        .retain(|m| !(m.step == step && m.thread == thread));
    state.failed_maps.push(FailedMap {
        step,
        thread,
        items: items.items,
        states: items.states,
    });
}

/// Failed steps held for an operator, and handler workflows.
fn fold_held_or_handler(
    state: &mut ExecutionState,
    at_ms: u64,
    event: &Event,
) -> Result<(), String> {
    match event {
        Event::FailureHeld { failed } => {
            state.failed_steps.push(failed.clone());
        }
        Event::HeldStepRetried { .. } | Event::HeldStepSkipped { .. } => {
            if state.failed_steps.is_empty() || state.status != Status::Paused {
                return Err("no failed step is held".into());
            }
            // The oldest first; the execution runs again once none is held.
            state.failed_steps.remove(0);
            if state.failed_steps.is_empty() {
                // Running again: the deferred steps are entered now.
                state.status = Status::Running;
                state.deferred.clear();
            }
        }
        Event::HandlerStarted {
            act,
            child,
            workflow,
            version,
            input,
            error,
        } => {
            begin(
                state,
                Activation {
                    act: *act,
                    role: Role::Handler {
                        error: error.clone(),
                    },
                    step: workflow.clone(),
                    thread: None,
                    input: input.clone(),
                    started_at_ms: at_ms,
                    waiting: Waiting::Child {
                        child: *child,
                        workflow: workflow.clone(),
                        version: version.clone(),
                        input: input.clone(),
                    },
                    priority: None,
                    deadline_at_ms: None,
                    fairness_key: None,
                    agent_version: None,
                },
            )?;
        }
        Event::HandlerFinished { act, .. } => {
            if state.activations.remove(act).is_none() {
                return Err(format!("activation {act} is not live"));
            }
        }
        // A record of what did not happen: the failure that follows changes
        // the state.
        Event::HandlerUnavailable { .. } => {}
        other => return Err(misrouted(other)),
    }
    Ok(())
}

/// Undoing completed steps, and the end it leads to.
fn fold_compensation(state: &mut ExecutionState, at_ms: u64, event: &Event) -> Result<(), String> {
    match event {
        Event::CompensationBegan {
            reason,
            pending,
            by: _,
        } => {
            state.status = Status::Compensating;
            state.activations.clear();
            state.deferred.clear();
            state.compensation = Some(Compensation {
                reason: reason.clone(),
                pending: pending.clone(),
                failed: None,
            });
        }
        Event::CompensationStarted {
            act,
            of,
            step,
            input,
        } => {
            begin(
                state,
                Activation {
                    act: *act,
                    role: Role::Compensation { of: *of },
                    step: step.clone(),
                    thread: None,
                    input: input.clone(),
                    started_at_ms: at_ms,
                    waiting: Waiting::Starting,
                    priority: None,
                    deadline_at_ms: None,
                    fairness_key: None,
                    agent_version: None,
                },
            )?;
        }
        Event::CompensationCompleted { act, of, .. }
        | Event::CompensationSkipped { act, of, .. } => {
            if let Event::CompensationCompleted { .. } = event
                && state.activations.remove(act).is_none()
            {
                return Err(format!("activation {act} is not live"));
            }
            let c = state
                .compensation
                .as_mut()
                .ok_or_else(|| "not compensating".to_string())?;
            if c.pending.first() != Some(of) {
                return Err(format!("activation {of} is not next to undo"));
            }
            c.pending.remove(0);
            c.failed = None;
            state.status = Status::Compensating;
        }
        Event::CompensationFailed { act, error, .. } => {
            if state.activations.remove(act).is_none() {
                return Err(format!("activation {act} is not live"));
            }
            let c = state
                .compensation
                .as_mut()
                .ok_or_else(|| "not compensating".to_string())?;
            c.failed = Some(error.clone());
            state.status = Status::CompensationFailed;
            state.metrics.error_count += 1;
        }
        Event::CompensationRetried { .. } => {
            if state.status != Status::CompensationFailed {
                return Err("no compensation failed".into());
            }
            if let Some(c) = state.compensation.as_mut() {
                c.failed = None;
            }
            state.status = Status::Compensating;
        }
        Event::ExecutionCompensated { error } => {
            state.error = Some(error.clone());
            end(state, Status::Compensated, at_ms);
        }
        other => return Err(misrouted(other)),
    }
    Ok(())
}

/// Starts an activation: it must take the next activation id.
fn begin(state: &mut ExecutionState, activation: Activation) -> Result<(), String> {
    if activation.act != state.next_act {
        return Err(format!("expected activation {}", state.next_act));
    }
    state.next_act += 1;
    state
        .activations
        .insert(activation.act, Box::new(activation));
    Ok(())
}

fn live(state: &mut ExecutionState, act: u64) -> Result<&mut Activation, String> {
    state
        .activations
        .get_mut(&act)
        .map(|a| &mut **a)
        .ok_or_else(|| format!("activation {act} is not live"))
}

/// An inline step takes the next activation id without ever being live.
fn inline(state: &mut ExecutionState, act: u64) -> Result<(), String> {
    if act != state.next_act {
        return Err(format!("expected activation {}", state.next_act));
    }
    state.next_act += 1;
    state.transitions += 1;
    state.metrics.step_count += 1;
    Ok(())
}

/// Removes activation `act` and every activation inside its branches (a
/// failed parallel step takes its unfinished branches with it).
fn remove_with_descendants(state: &mut ExecutionState, act: u64) {
    // An activation inside a branch started after its parallel step (ids
    // only grow), so one pass in id order finds every descendant.
    let mut gone = std::collections::BTreeSet::from([act]);
    for a in state.activations.range(act..).map(|(_, a)| a) {
        if a.thread.is_some_and(|t| gone.contains(&t.parallel)) {
            gone.insert(a.act);
        }
    }
    for a in gone {
        state.activations.remove(&a);
    }
}

fn end(state: &mut ExecutionState, status: Status, at_ms: u64) {
    state.status = status;
    state.ended_at_ms = Some(at_ms);
    state.activations.clear();
}

/// Whether a signal's correlation value satisfies a waiter's: a waiter that
/// names none takes any signal of its event, one that names a value takes
/// only a signal with that value.
pub(crate) fn correlates(waiter: Option<&Value>, signal: Option<&Value>) -> bool {
    match waiter {
        None => true,
        Some(w) => signal == Some(w),
    }
}
