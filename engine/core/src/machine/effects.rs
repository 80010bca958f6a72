//! What the runtime must do for an execution, derived from its state alone:
//! the same function serves a live execution after each trigger and a
//! recovered one after a restart, so recovery re-arms exactly what a running
//! engine would have armed. It must never change the state or decide
//! anything: it only reads.

use std::borrow::Cow;

use crate::ExecutionId;
use serde_json::Value;

use super::event::TaskTimeouts;
use super::state::{ExecutionState, Status, Waiting};

/// One thing the runtime must see to. Its [`key`](Effect::key) identifies it
/// across triggers, so the runtime performs each once.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Hand a task to an agent or an in-process handler.
    Task {
        task: String,
        act: u64,
        step: String,
        capability: String,
        attempt: u32,
        input: Value,
        timeouts: TaskTimeouts,
        /// The execution's priority, 0 to 9.
        priority: u8,
        /// Whose turn it is among tasks of the same priority (see the
        /// agents' queue).
        fairness_key: Option<String>,
        /// The version its agent must have (a semver requirement).
        agent_version: Option<String>,
    },
    /// Fire `TimerFired { act }` at `due_at_ms` (act 0: the workflow timeout).
    Timer { act: u64, due_at_ms: u64 },
    /// Deliver `DeadlinePassed { act }` at `due_at_ms` (act 0: the
    /// workflow's deadline). Paused or not: a deadline is wall-clock time.
    Deadline { act: u64, due_at_ms: u64 },
    /// Deliver events named `name` (whose correlation matches) to this execution.
    Await {
        act: u64,
        name: String,
        correlation: Option<Value>,
    },
    /// Deliver `Trigger::Continue`: steps were deferred to keep appends small.
    Continue { seq: u64 },
    /// Make sure the child runs (start it if it does not exist yet).
    Child {
        act: u64,
        child: ExecutionId,
        workflow: String,
        version: String,
        input: Value,
        /// The parent's priority, which the child inherits.
        priority: u8,
    },
}

/// What identifies an effect across triggers: two effects with equal keys
/// are the same, so the runtime performs each once. Borrowed from the
/// state while the runtime compares what is wanted with what is armed;
/// owned (`'static`) for what it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EffectKey<'a> {
    Task(Cow<'a, str>),
    Timer { act: u64, due_at_ms: u64 },
    Deadline { act: u64, due_at_ms: u64 },
    Await { act: u64, name: Cow<'a, str> },
    Child(ExecutionId),
    Continue(u64),
}

impl EffectKey<'_> {
    /// The key with nothing borrowed.
    pub fn into_owned(self) -> EffectKey<'static> {
        match self {
            EffectKey::Task(task) => EffectKey::Task(Cow::Owned(task.into_owned())),
            EffectKey::Timer { act, due_at_ms } => EffectKey::Timer { act, due_at_ms },
            EffectKey::Deadline { act, due_at_ms } => EffectKey::Deadline { act, due_at_ms },
            EffectKey::Await { act, name } => EffectKey::Await {
                act,
                name: Cow::Owned(name.into_owned()),
            },
            EffectKey::Child(child) => EffectKey::Child(child),
            EffectKey::Continue(seq) => EffectKey::Continue(seq),
        }
    }
}

impl Effect {
    /// A stable identity for the effect.
    pub fn key(&self) -> EffectKey<'_> {
        match self {
            Effect::Task { task, .. } => EffectKey::Task(Cow::Borrowed(task)),
            Effect::Timer { act, due_at_ms } => EffectKey::Timer {
                act: *act,
                due_at_ms: *due_at_ms,
            },
            Effect::Deadline { act, due_at_ms } => EffectKey::Deadline {
                act: *act,
                due_at_ms: *due_at_ms,
            },
            Effect::Await { act, name, .. } => EffectKey::Await {
                act: *act,
                name: Cow::Borrowed(name),
            },
            Effect::Child { child, .. } => EffectKey::Child(*child),
            Effect::Continue { seq } => EffectKey::Continue(*seq),
        }
    }
}

/// Everything the execution currently waits on. Empty once it has ended.
/// While paused, nothing new is dispatched: tasks already scheduled stay
/// out, timers wait for the resume.
pub fn pending_effects(state: &ExecutionState) -> Vec<Effect> {
    let mut out = Vec::new();
    visit_pending(state, &mut |key, make| {
        let effect = make();
        debug_assert_eq!(effect.key(), key, "a key that is not its effect's");
        out.push(effect);
    });
    out
}

/// [`pending_effects`], each given as its key and a way to build it, so a
/// caller that already has an effect (most of them, after most triggers)
/// pays for its key alone: no input is copied, no string allocated.
pub fn visit_pending<'a>(
    state: &'a ExecutionState,
    f: &mut dyn FnMut(EffectKey<'a>, &dyn Fn() -> Effect),
) {
    if state.status.is_terminal() {
        return;
    }
    let paused = state.status == Status::Paused;
    if let (Some(due_at_ms), false) = (state.timeout_at_ms, paused) {
        let timer = Effect::Timer { act: 0, due_at_ms };
        f(timer.key().into_owned(), &|| timer.clone());
    }
    if let Some(due_at_ms) = state.deadline_at_ms {
        let deadline = Effect::Deadline { act: 0, due_at_ms };
        f(deadline.key().into_owned(), &|| deadline.clone());
    }
    // Waiting for its workflow's limits is not an effect: the runtime's
    // limiter reads the limits from the state itself.
    if state.status == Status::Running && state.has_deferred_work() && !state.waiting_for_limit() {
        let seq = state.seq;
        f(EffectKey::Continue(seq), &|| Effect::Continue { seq });
    }
    for a in state.activations.values() {
        let act = a.act;
        if let Some(due_at_ms) = a.deadline_at_ms {
            f(EffectKey::Deadline { act, due_at_ms }, &|| {
                Effect::Deadline { act, due_at_ms }
            });
        }
        match &a.waiting {
            Waiting::Starting | Waiting::Branches { .. } | Waiting::Items(_) => {}
            Waiting::Task {
                attempt,
                task,
                capability,
                input,
                timeouts,
                ..
            } => f(EffectKey::Task(Cow::Borrowed(task)), &|| Effect::Task {
                task: task.clone(),
                act,
                step: a.step.clone(),
                capability: capability.clone(),
                attempt: *attempt,
                input: input.clone(),
                timeouts: *timeouts,
                priority: a.priority.unwrap_or(state.priority),
                fairness_key: a.fairness_key.clone(),
                agent_version: a.agent_version.clone(),
            }),
            Waiting::Retry { due_at_ms, .. } | Waiting::Timer { due_at_ms } => {
                if !paused {
                    let due_at_ms = *due_at_ms;
                    f(EffectKey::Timer { act, due_at_ms }, &|| Effect::Timer {
                        act,
                        due_at_ms,
                    });
                }
            }
            Waiting::Event {
                name,
                correlation,
                timeout_at_ms,
            } => {
                let key = EffectKey::Await {
                    act,
                    name: Cow::Borrowed(name),
                };
                f(key, &|| Effect::Await {
                    act,
                    name: name.clone(),
                    correlation: correlation.clone(),
                });
                if let (Some(due_at_ms), false) = (*timeout_at_ms, paused) {
                    f(EffectKey::Timer { act, due_at_ms }, &|| Effect::Timer {
                        act,
                        due_at_ms,
                    });
                }
            }
            Waiting::Child {
                child,
                workflow,
                version,
                input,
            } => f(EffectKey::Child(*child), &|| Effect::Child {
                act,
                child: *child,
                workflow: workflow.clone(),
                version: version.clone(),
                input: input.clone(),
                priority: state.priority,
            }),
        }
    }
}
