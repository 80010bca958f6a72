//! Effects: what a live execution waits on, made to happen.
//!
//! After every trigger (and at recovery, from nothing) the effects the state
//! wants ([`visit_pending`](crate::machine::visit_pending), keys first) are compared with those armed: what is new is
//! performed (a task queued for agents, handed to an in-process handler or
//! performed by the built-in `http` capability (`runtime::http`),
//! a timer armed, an awaited event listened for, a child started, a
//! continuation scheduled), and what is no longer wanted is withdrawn (a
//! task taken back, a listener dropped, a child that runs on cancelled).
//! Children report their end to their parent as a trigger.
//!
//! What an execution does by itself (a continuation, a timer due before its
//! event budget is back in credit, see `pace`) is performed later, by a task
//! of its own that waits for the budget: never by sleeping here, where the
//! execution's owner lock is held.
//!
//! It must never decide what an effect means, nor perform one whose events
//! are not stored: it runs only after `drive` has appended them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use serde_json::Value;
use tokio::time::Instant;

use super::dispatch::task_spec;
use super::drive::{Asked, Live, started_elsewhere};
use super::outage::{self, Wake};
use super::timers::Due;
use super::{Engine, HandlerTask};
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{
    Effect, EffectKey, ErrorInfo, ExecutionState, ParentRef, StartParams, Status, Trigger,
    visit_pending,
};
use crate::model::HTTP_CAPABILITY;

impl Engine {
    /// Performs the effects the state now needs and drops those it no
    /// longer does.
    pub(super) fn reconcile(&self, live: &mut Live) {
        let id = live.state.id;
        // Keys alone for what is armed already (most of it, after most
        // triggers): an execution with many steps waiting pays a key each,
        // not a copy of each one's input.
        let mut wanted: HashSet<EffectKey<'_>> = HashSet::new();
        let mut new: Vec<(EffectKey<'static>, Effect)> = Vec::new();
        {
            // A map of owned keys is one of borrowed keys (the key type is
            // covariant), so borrowed keys can be looked up in it.
            let armed: &HashMap<EffectKey<'_>, Effect> = &live.armed;
            visit_pending(&live.state, &mut |key, make| {
                if !armed.contains_key(&key) && !wanted.contains(&key) {
                    new.push((key.clone().into_owned(), make()));
                }
                wanted.insert(key);
            });
        }
        let gone: Vec<EffectKey<'static>> = live
            .armed
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        drop(wanted);
        for key in gone {
            if let Some(effect) = live.armed.remove(&key) {
                self.withdraw(&live.state, effect);
            }
        }
        for (key, effect) in new {
            match self.paced_until(live, &effect) {
                Some(at) => self.perform_later(live, at, effect.clone()),
                None => self.perform(id, &effect),
            }
            live.armed.insert(key, effect);
        }
    }

    /// When `effect` may be performed, if it must wait for the execution's
    /// event budget: a continuation, or a timer due before the budget is
    /// back in credit. Everything else goes at once.
    fn paced_until(&self, live: &mut Live, effect: &Effect) -> Option<Instant> {
        if !matches!(effect, Effect::Continue { .. } | Effect::Timer { .. }) {
            return None;
        }
        let now = Instant::now();
        let at = live.pace.as_mut()?.ready_at(self.inner.pacing, now)?;
        match effect {
            Effect::Timer { due_at_ms, .. } => {
                let wait_ms = at.duration_since(now).as_millis() as u64;
                let soon = self.inner.clock.now_ms().saturating_add(wait_ms);
                (*due_at_ms < soon).then_some(at)
            }
            _ => Some(at),
        }
    }

    /// Performs `effect` at `at`, from a task of its own: the execution is
    /// ahead of its event budget (see `pace`). Nothing is held while it
    /// waits, and the engine's shutdown stops the wait.
    fn perform_later(&self, live: &mut Live, at: Instant, effect: Effect) {
        let id = live.state.id;
        self.inner.metrics.paced(&live.state.workflow);
        if !live.paced_logged {
            live.paced_logged = true;
            tracing::info!(execution = %id, workflow = %live.state.workflow,
                events_per_s = self.inner.pacing.events_per_s,
                "execution paced: it records events faster than its budget, so what it \
                 does by itself waits (this only delays it)");
        }
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            engine.perform(id, &effect);
        });
    }

    /// Performs a task this engine handles itself (`http`, or an
    /// in-process handler), its breaker passed.
    pub(super) fn perform_here(&self, id: ExecutionId, effect: &Effect) {
        let Effect::Task {
            task,
            step,
            capability,
            attempt,
            input,
            ..
        } = effect
        else {
            return;
        };
        if capability == HTTP_CAPABILITY {
            return self.perform_http(id, effect);
        }
        let handler = self
            .inner
            .handlers
            .read()
            .ok()
            .and_then(|h| h.get(capability).cloned());
        let Some(handler) = handler else { return };
        let engine = self.clone();
        let task = task.clone();
        let call = HandlerTask {
            task: task.clone(),
            execution: id,
            step: step.clone(),
            capability: capability.clone(),
            attempt: *attempt,
            input: input.clone(),
        };
        self.inner.tasks.spawn(async move {
            let result = match handler.call(call).await {
                Ok(output) => Trigger::TaskCompleted { task, output },
                Err(error) => Trigger::TaskFailed {
                    task,
                    error,
                    retry_after_ms: None,
                },
            };
            // Kept through a storage outage, like a timer.
            engine.deliver(id, result).await;
        });
    }

    /// Undoes an effect the state no longer wants.
    fn withdraw(&self, state: &ExecutionState, effect: Effect) {
        let id = state.id;
        match effect {
            Effect::Task {
                task, capability, ..
            } => {
                if capability == HTTP_CAPABILITY {
                    self.withdraw_http(&task);
                }
                self.no_longer_asked(&task);
                self.unqueue_task(id, &task, &capability);
            }
            Effect::Await {
                act,
                name,
                correlation,
            } => self
                .inner
                .index
                .no_longer_awaits(&name, correlation.as_ref(), id, act),
            // The parent no longer waits for this child: it reported, or the
            // parent moved on (ended, failed, is compensating). A child still
            // running is cancelled, or terminated with a terminated parent;
            // one that has ended refuses, harmlessly.
            Effect::Child { child, .. } => {
                let reason = format!("its parent {id} no longer waits for it");
                let trigger = if state.status == Status::Terminated {
                    Trigger::Terminate { reason }
                } else {
                    Trigger::Cancel {
                        reason,
                        compensate: false,
                    }
                };
                let engine = self.clone();
                self.inner
                    .tasks
                    .spawn(async move { engine.deliver(child, trigger).await });
            }
            // A stale timer firing is refused by the machine.
            Effect::Timer { .. } | Effect::Deadline { .. } | Effect::Continue { .. } => {}
        }
    }

    fn perform(&self, id: ExecutionId, effect: &Effect) {
        match effect {
            // For agents: queued where they poll (see `dispatch`).
            Effect::Task { capability, .. } if !self.handled_here(capability) => {
                if let Some(spec) = task_spec(id, effect.clone(), self.inner.clock.now_ms()) {
                    let recovered = self.inner.recovering.load(Ordering::SeqCst);
                    self.queue_task(spec, recovered);
                }
            }
            Effect::Task {
                task, capability, ..
            } => {
                if self.lets_here(id, capability, task) {
                    self.perform_here(id, effect);
                }
            }
            Effect::Timer { act, due_at_ms } => {
                self.inner.timers.arm(id, *act, *due_at_ms, Due::Timer)
            }
            Effect::Deadline { act, due_at_ms } => {
                self.inner.timers.arm(id, *act, *due_at_ms, Due::Deadline)
            }
            Effect::Continue { .. } => {
                let engine = self.clone();
                self.inner
                    .tasks
                    .spawn(async move { engine.deliver(id, Trigger::Continue).await });
            }
            Effect::Await {
                act,
                name,
                correlation,
            } => self
                .inner
                .index
                .awaits(name, correlation.as_ref(), id, *act),
            Effect::Child {
                act,
                child,
                workflow,
                version,
                input,
                priority,
            } => {
                let engine = self.clone();
                let parent = ParentRef {
                    execution: id,
                    act: *act,
                };
                let (child, priority) = (*child, *priority);
                let (workflow, version, input) = (workflow.clone(), version.clone(), input.clone());
                self.inner.tasks.spawn(async move {
                    engine
                        .start_child(parent, child, workflow, version, input, priority)
                        .await
                });
            }
        }
    }

    /// Starts a child unless it exists (see `ensure_child`); a start refused
    /// by a storage outage is kept for when the journal takes writes.
    pub(super) async fn start_child(
        &self,
        parent: ParentRef,
        child: ExecutionId,
        workflow: String,
        version: String,
        input: Value,
        priority: u8,
    ) {
        // Another server drives the child's partition (see `share`): it
        // starts it.
        let started = if self.owns(child) {
            self.ensure_child(parent, child, &workflow, &version, input.clone(), priority)
                .await
        } else {
            self.start_child_elsewhere(parent, child, &workflow, &version, &input, priority)
                .await
        };
        match started {
            Ok(()) => {}
            Err(e) if outage::is_storage_outage(&e) => self.keep_for_later(Wake::Child {
                parent,
                child,
                workflow,
                version,
                input,
                priority,
            }),
            Err(e) => tracing::warn!(%child, error = %e, "child not started"),
        }
    }

    /// Starts a child unless it exists; if it has ended, tells the parent.
    pub(super) async fn ensure_child(
        &self,
        parent: ParentRef,
        child: ExecutionId,
        workflow: &str,
        version: &str,
        input: Value,
        priority: u8,
    ) -> Result<(), Error> {
        if let Some(state) = self.inner.store.load_state(child).await? {
            if state.status.is_terminal() {
                self.notify_parent(parent, &state);
            }
            return Ok(());
        }
        let wf = self
            .workflow(workflow, Some(version))
            .ok_or_else(|| Error::UnknownWorkflow {
                name: workflow.to_string(),
                version: Some(version.to_string()),
            })?;
        let params = StartParams {
            input,
            parent: Some(parent),
            idempotency_key: None,
            signal: None,
            priority: Some(priority),
            tags: Default::default(),
        };
        match self.start_execution(child, wf, params, Asked::ENGINE).await {
            Ok(_) => Ok(()),
            Err(e) if started_elsewhere(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Tells a parent its child has ended.
    pub(super) fn notify_parent(&self, parent: ParentRef, child: &ExecutionState) {
        let trigger = match child.status {
            Status::Completed => Trigger::ChildCompleted {
                child: child.id,
                output: child.output.clone().unwrap_or(Value::Null),
            },
            status => Trigger::ChildFailed {
                child: child.id,
                error: child.error.clone().unwrap_or_else(|| {
                    ErrorInfo::new(
                        format!("child_{}", status.as_str()),
                        format!("child execution {} was {}", child.id, status.as_str()),
                    )
                }),
            },
        };
        let engine = self.clone();
        self.inner
            .tasks
            .spawn(async move { engine.deliver(parent.execution, trigger).await });
    }
}
