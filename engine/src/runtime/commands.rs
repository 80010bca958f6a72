//! What callers ask of the engine: define workflows, start executions, send
//! them signals and operator commands, and report tasks' results. Each
//! request is checked, turned into a trigger, and driven (see `drive`).
//!
//! It must never change an execution but through a trigger the machine
//! decides on.

use std::sync::Arc;

use serde_json::Value;

use super::Engine;
use super::drive::Asked;
use crate::ExecutionId;
use crate::agents::{AgentId, ClaimedTask};
use crate::error::Error;
use crate::machine::{self, ErrorInfo, ExecutionState, StartParams, StartSignal, Status, Trigger};
use crate::model::{ReferenceKind, Workflow};
use crate::store::catalog::WorkflowVersions;

/// The result of defining a workflow.
#[derive(Debug, Clone)]
pub struct Defined {
    pub workflow: Arc<Workflow>,
    /// `false` when the same document was defined before.
    pub created: bool,
    /// What the definition names that does not exist (yet).
    pub warnings: Vec<Warning>,
}

/// Something in a valid definition that will not work as it stands: it
/// names a workflow that is not defined (workflows may be defined in any
/// order, so this is not a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where in the document, as problems are located (`steps[2]...`).
    pub path: String,
    pub message: String,
}

/// Where a signal went.
#[derive(Debug, Clone)]
pub struct Signalled {
    /// The execution after it.
    pub state: ExecutionState,
    /// The step that took it; `None` when no step waits for it yet, and it
    /// is kept for the first one that will.
    pub reached: Option<Reached>,
}

/// A step a signal was delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub step: String,
    pub activation: u64,
}

/// What a start asks for.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub workflow: String,
    pub version: Option<String>,
    pub input: Value,
    pub idempotency_key: Option<String>,
    /// How urgent its tasks are, 0 (the default) to
    /// [`machine::PRIORITY_MAX`]; a higher one is refused.
    pub priority: Option<u8>,
    /// The execution's tags, by which it can be searched; they must keep
    /// [`machine::tags::check_tags`]' rules (checked before anything is
    /// recorded).
    pub tags: std::collections::BTreeMap<String, String>,
}

/// The result of a start.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: ExecutionId,
    pub status: Status,
    /// `false` when the idempotency key named an execution started before.
    pub created: bool,
}

impl Engine {
    // ----- workflows -----

    /// Defines a workflow from a JSON document.
    pub async fn define_json(&self, document: &[u8]) -> Result<Defined, Error> {
        self.define(Workflow::from_json(document).map_err(Error::InvalidWorkflow)?)
            .await
    }

    /// Defines a workflow from a YAML document.
    pub async fn define_yaml(&self, document: &str) -> Result<Defined, Error> {
        self.define(Workflow::from_yaml(document).map_err(Error::InvalidWorkflow)?)
            .await
    }

    /// What `workflow` names that this engine does not know: each
    /// subworkflow or handler workflow (or pinned version) not defined.
    pub fn warnings(&self, workflow: &Workflow) -> Vec<Warning> {
        let Ok(catalog) = self.read_catalog() else {
            return Vec::new();
        };
        workflow
            .references()
            .into_iter()
            .filter(|r| r.workflow != workflow.name())
            .filter_map(|r| {
                let known = match &r.version {
                    Some(v) => catalog.get(&r.workflow, Some(v)).is_some(),
                    None => catalog.get(&r.workflow, None).is_some(),
                };
                let what = match (&r.version, r.kind) {
                    (Some(v), _) => format!("workflow {} has no version {v}", r.workflow),
                    (None, _) => format!("no workflow {} is defined", r.workflow),
                };
                let effect = match r.kind {
                    ReferenceKind::Subworkflow => {
                        "until it is, this step fails with `unknown_workflow`"
                    }
                    ReferenceKind::ErrorHandler => {
                        "until it is, this handler does not run (the failure is recorded as \
                         `handler_unavailable`)"
                    }
                };
                (!known).then(|| Warning {
                    path: r.path,
                    message: format!("{what} (yet): {effect}"),
                })
            })
            .collect()
    }

    /// Defines a compiled workflow; the same version again is a no-op.
    pub async fn define(&self, workflow: Workflow) -> Result<Defined, Error> {
        self.define_as(workflow, None, None).await
    }

    /// Defines a compiled workflow on behalf of `by` (recorded with it).
    async fn define_as(
        &self,
        workflow: Workflow,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Defined, Error> {
        let warnings = self.warnings(&workflow);
        let _exclusive = self.inner.defining.lock().await;
        self.catalog_caught_up().await?;
        let now = self.inner.clock.now_ms();
        let definition = self.read_catalog()?.definition(&workflow, by, reason, now);
        let Some((seq, events)) = definition else {
            let existing = self
                .read_catalog()?
                .by_version(workflow.version())
                .unwrap_or_else(|| Arc::new(workflow));
            return Ok(Defined {
                workflow: existing,
                created: false,
                warnings,
            });
        };
        let last_seq = seq + events.len() as u64 - 1;
        self.inner.store.append_definition(seq, events).await?;
        let workflow = Arc::new(workflow);
        self.write_catalog()?.defined(workflow.clone(), last_seq);
        Ok(Defined {
            workflow,
            created: true,
            warnings,
        })
    }

    /// A workflow at `version`, or its newest version.
    pub fn workflow(&self, name: &str, version: Option<&str>) -> Option<Arc<Workflow>> {
        self.read_catalog().ok()?.get(name, version)
    }

    /// Every workflow with its versions.
    pub fn workflows(&self) -> Vec<WorkflowVersions> {
        self.read_catalog().map(|c| c.list()).unwrap_or_default()
    }

    // ----- executions -----

    /// Commands as `by` (an access token's name): the events they make
    /// record it. Without tokens, the methods on [`Engine`] itself do the
    /// same as nobody in particular.
    pub fn acting_as(&self, by: Option<&str>) -> Acting<'_> {
        Acting {
            engine: self,
            by: by.map(str::to_owned),
            reason: None,
        }
    }

    /// Starts an execution (see [`Acting::start`]).
    pub async fn start(&self, request: StartRequest) -> Result<Started, Error> {
        self.acting_as(None).start(request).await
    }

    /// Delivers an external event to one execution (see [`Acting::signal`]).
    pub async fn signal(
        &self,
        id: ExecutionId,
        name: &str,
        payload: Value,
        correlation: Option<Value>,
    ) -> Result<Signalled, Error> {
        self.acting_as(None)
            .signal(id, name, payload, correlation)
            .await
    }

    /// Delivers an external event to every execution waiting on it (see
    /// [`Acting::publish`]).
    pub async fn publish(
        &self,
        name: &str,
        payload: Value,
        correlation: Option<Value>,
    ) -> Result<Vec<ExecutionId>, Error> {
        self.acting_as(None)
            .publish(name, payload, correlation)
            .await
    }

    pub async fn pause(&self, id: ExecutionId, reason: &str) -> Result<ExecutionState, Error> {
        self.acting_as(None).pause(id, reason).await
    }

    pub async fn resume(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.acting_as(None).resume(id).await
    }

    pub async fn cancel(
        &self,
        id: ExecutionId,
        reason: &str,
        compensate: bool,
    ) -> Result<ExecutionState, Error> {
        self.acting_as(None).cancel(id, reason, compensate).await
    }

    pub async fn retry(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.acting_as(None).retry(id).await
    }

    pub async fn skip(&self, id: ExecutionId, output: Value) -> Result<ExecutionState, Error> {
        self.acting_as(None).skip(id, output).await
    }

    pub async fn redrive(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.acting_as(None).redrive(id).await
    }

    pub async fn terminate(&self, id: ExecutionId, reason: &str) -> Result<ExecutionState, Error> {
        self.acting_as(None).terminate(id, reason).await
    }

    // ----- tasks -----

    /// Long-polls for tasks on behalf of an agent.
    pub async fn poll_tasks(
        &self,
        agent: &AgentId,
        wait_ms: u64,
        max: usize,
    ) -> Result<Vec<ClaimedTask>, Error> {
        let claimed = self.inner.agents.poll(agent, wait_ms, max).await?;
        if !claimed.is_empty() {
            let tasks: Vec<&str> = claimed.iter().map(|c| c.spec.id.as_str()).collect();
            tracing::debug!(%agent, ?tasks, "tasks claimed");
        }
        // A claim a rate window counts is recorded before the agent hears
        // of it (see `capability_limits`).
        self.record_claims(&claimed).await?;
        // Queue wait and run time are measured from the claim.
        self.inner.metrics.claimed(&claimed, &self.inner.agents);
        Ok(claimed)
    }

    /// Records a task's result (see [`Acting::complete_task`]).
    pub async fn complete_task(&self, task: &str, output: Value) -> Result<(), Error> {
        self.acting_as(None).complete_task(task, output).await
    }

    /// Records a task's failure (see [`Acting::fail_task`]).
    pub async fn fail_task(&self, task: &str, error: ErrorInfo) -> Result<(), Error> {
        self.acting_as(None).fail_task(task, error).await
    }

    /// The agent holding `task`, as events name it: `name (id)`.
    fn holder(&self, task: &str) -> Option<String> {
        self.inner
            .agents
            .claimed_by(task)
            .and_then(|a| self.inner.agents.get(&a))
            .map(|info| format!("{} ({})", info.name, info.id))
    }

    /// Extends the lease of a claimed task (an agent's heartbeat on it);
    /// with `agent`, refuses a task another agent holds.
    pub fn task_heartbeat(
        &self,
        task: &str,
        agent: Option<&AgentId>,
    ) -> Result<ClaimedTask, Error> {
        Ok(self.inner.agents.task_heartbeat(task, agent)?)
    }
}

/// An engine's commands on behalf of someone (see [`Engine::acting_as`]).
#[derive(Debug, Clone)]
pub struct Acting<'e> {
    engine: &'e Engine,
    by: Option<String>,
    reason: Option<String>,
}

impl<'e> Acting<'e> {
    /// The same, with why (recorded in the events that have no reason of
    /// their own).
    pub fn because(self, reason: Option<&str>) -> Acting<'e> {
        Acting {
            reason: reason.map(str::to_owned),
            ..self
        }
    }

    pub(super) fn asked(&self) -> Asked<'_> {
        Asked {
            by: self.by.as_deref(),
            agent: None,
            reason: self.reason.as_deref(),
        }
    }

    /// Starts an execution. With an idempotency key already used, returns
    /// that execution instead of starting another.
    pub async fn start(&self, request: StartRequest) -> Result<Started, Error> {
        self.start_with(request, None).await
    }

    /// Signal-with-start: delivers `signal` to the execution the request's
    /// idempotency key names (as [`Acting::signal`] does, `wrong_state`
    /// if it has ended), or starts one with the signal recorded in the
    /// start's own append, before any step runs: kept, and taken by the
    /// first step that waits for it. Either the start and its signal are
    /// both recorded or neither is; racing calls with one key start one
    /// execution (the loser is a `Conflict`, and retrying signals it).
    pub async fn signal_with_start(
        &self,
        request: StartRequest,
        signal: StartSignal,
    ) -> Result<(Started, Signalled), Error> {
        let known = request
            .idempotency_key
            .as_deref()
            .and_then(|key| self.engine.inner.index.keyed(key));
        let started = match known {
            Some(id) => Started {
                id,
                status: Status::Running,
                created: false,
            },
            None => self.start_with(request, Some(signal.clone())).await?,
        };
        // Started before (also by a start that got its key in between):
        // the signal goes to it now.
        if !started.created {
            let signalled = self
                .signal(started.id, &signal.name, signal.payload, signal.correlation)
                .await?;
            let started = Started {
                status: signalled.state.status,
                ..started
            };
            return Ok((started, signalled));
        }
        let state = self.engine.state(started.id).await?;
        let signalled = Signalled {
            state,
            reached: None,
        };
        Ok((started, signalled))
    }

    async fn start_with(
        &self,
        request: StartRequest,
        signal: Option<StartSignal>,
    ) -> Result<Started, Error> {
        let engine = &self.engine;
        if let Some(started) = engine.started_by_key(request.idempotency_key.as_deref()) {
            return Ok(started);
        }
        let workflow = engine.startable(&request)?;
        // Time-ordered (UUIDv7): new executions' keys land together at the
        // end of the journal's key space, and listing by id lists by start.
        let partition =
            engine.start_partition(&request.workflow, request.idempotency_key.as_deref());
        let id = engine.fresh_id(partition)?;
        engine
            .start_with_id(id, workflow, request, signal, self.asked())
            .await
    }

    /// Delivers an external event to one execution: to the step waiting for
    /// it, or kept until a step waits for it. Says which.
    pub async fn signal(
        &self,
        id: ExecutionId,
        name: &str,
        payload: Value,
        correlation: Option<Value>,
    ) -> Result<Signalled, Error> {
        let live = self.engine.live_for(id, "signal")?;
        let mut live = self.engine.lock_fresh(&live).await?;
        // The same question `decide` asks, on the state it will decide on.
        let reached = live
            .state
            .awaiting_event(name, correlation.as_ref())
            .and_then(|act| live.state.activations.get(&act))
            .map(|a| Reached {
                step: a.step.clone(),
                activation: a.act,
            });
        let trigger = Trigger::Signal {
            name: name.to_string(),
            payload,
            correlation,
        };
        self.engine
            .drive_locked(&mut live, trigger, self.asked())
            .await?;
        Ok(Signalled {
            state: live.state.clone(),
            reached,
        })
    }

    /// Delivers an external event to every execution waiting on `name`
    /// whose correlation matches. Returns the executions it reached.
    pub async fn publish(
        &self,
        name: &str,
        payload: Value,
        correlation: Option<Value>,
    ) -> Result<Vec<ExecutionId>, Error> {
        let mut reached = Vec::new();
        for id in self.engine.inner.index.awaiting(name, correlation.as_ref()) {
            let Some(live) = self.engine.live_of(id) else {
                continue;
            };
            let mut live = self.engine.lock_fresh(&live).await?;
            // The index may be a step behind the state: the state decides.
            if live
                .state
                .awaiting_event(name, correlation.as_ref())
                .is_none()
            {
                continue;
            }
            let trigger = Trigger::Signal {
                name: name.to_string(),
                payload: payload.clone(),
                correlation: correlation.clone(),
            };
            self.engine
                .drive_locked(&mut live, trigger, self.asked())
                .await?;
            reached.push(id);
        }
        Ok(reached)
    }

    pub async fn pause(&self, id: ExecutionId, reason: &str) -> Result<ExecutionState, Error> {
        let trigger = Trigger::Pause {
            reason: reason.to_string(),
        };
        self.command(id, trigger).await
    }

    pub async fn resume(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.command(id, Trigger::Resume).await
    }

    /// An operator's command: driven like any trigger, and logged.
    async fn command(&self, id: ExecutionId, trigger: Trigger) -> Result<ExecutionState, Error> {
        let command = trigger.command();
        let reason = match &trigger {
            Trigger::Pause { reason }
            | Trigger::Cancel { reason, .. }
            | Trigger::Terminate { reason } => Some(reason.clone()),
            _ => None,
        };
        let outcome = self.engine.drive(id, trigger, self.asked()).await;
        match &outcome {
            Ok(state) => tracing::info!(execution = %id, command, reason = ?reason, by = ?self.by,
                status = state.status.as_str(), "operator command"),
            Err(e) => tracing::info!(execution = %id, command, error = %e, by = ?self.by,
                "operator command refused"),
        }
        outcome
    }

    /// Cancels the execution; with `compensate`, its completed steps that
    /// declare `compensate` are undone first (newest first).
    pub async fn cancel(
        &self,
        id: ExecutionId,
        reason: &str,
        compensate: bool,
    ) -> Result<ExecutionState, Error> {
        let reason = reason.to_string();
        self.command(id, Trigger::Cancel { reason, compensate })
            .await
    }

    /// Retries the failed step an execution paused on (`onFailure: pause`),
    /// or its failed compensation.
    pub async fn retry(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.command(id, Trigger::Retry).await
    }

    /// Skips the failed step an execution paused on, with `output` as its
    /// result; or skips its failed compensation.
    pub async fn skip(&self, id: ExecutionId, output: Value) -> Result<ExecutionState, Error> {
        self.command(id, Trigger::Skip { output }).await
    }

    /// Reopens a failed execution at the step that failed; its history is
    /// kept and continues.
    pub async fn redrive(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.engine.revive(id).await?;
        let result = self.command(id, Trigger::Redrive).await;
        if result.is_err() {
            self.engine.forget_if_ended(id).await;
        }
        result
    }

    pub async fn terminate(&self, id: ExecutionId, reason: &str) -> Result<ExecutionState, Error> {
        let reason = reason.to_string();
        self.command(id, Trigger::Terminate { reason }).await
    }

    /// Records a task's result, with the agent holding it. A task that is
    /// not outstanding is refused and changes nothing.
    pub async fn complete_task(&self, task: &str, output: Value) -> Result<(), Error> {
        let id = machine::task_execution(task).ok_or_else(|| Error::UnknownTask(task.into()))?;
        let trigger = Trigger::TaskCompleted {
            task: task.to_string(),
            output,
        };
        let agent = self.engine.holder(task);
        // Its execution moved to another server (see `share`).
        if !self.engine.owns(id) {
            return self
                .engine
                .report_elsewhere(id, trigger, agent.as_deref())
                .await;
        }
        let asked = Asked {
            agent: agent.as_deref(),
            ..self.asked()
        };
        self.engine.drive_unseen(id, trigger, asked).await
    }

    /// Records a task's failure (it retries or routes per the step), with
    /// the agent holding it.
    pub async fn fail_task(&self, task: &str, mut error: ErrorInfo) -> Result<(), Error> {
        let id = machine::task_execution(task).ok_or_else(|| Error::UnknownTask(task.into()))?;
        if error.agent.is_none() {
            error.agent = self.engine.holder(task);
        }
        let trigger = Trigger::TaskFailed {
            task: task.to_string(),
            error,
            retry_after_ms: None,
        };
        if !self.engine.owns(id) {
            return self.engine.report_elsewhere(id, trigger, None).await;
        }
        self.engine.drive_unseen(id, trigger, self.asked()).await
    }

    /// Defines a compiled workflow; the same version again is a no-op.
    pub async fn define(&self, workflow: Workflow) -> Result<Defined, Error> {
        self.engine
            .define_as(workflow, self.by.as_deref(), self.reason.as_deref())
            .await
    }
}

impl Engine {
    /// The execution idempotency key `key` started, answered as a start
    /// that created nothing.
    pub(super) fn started_by_key(&self, key: Option<&str>) -> Option<Started> {
        let id = self.inner.index.keyed(key?)?;
        let status = self.summary(id).map_or(Status::Running, |s| s.status);
        Some(Started {
            id,
            status,
            created: false,
        })
    }

    /// The workflow `request` starts, once the request passes every check
    /// a start makes before anything is recorded (the version exists, the
    /// input fits it and its limits' keys, the tags are well formed).
    pub(super) fn startable(&self, request: &StartRequest) -> Result<Arc<Workflow>, Error> {
        let workflow = self
            .workflow(&request.workflow, request.version.as_deref())
            .ok_or_else(|| Error::UnknownWorkflow {
                name: request.workflow.clone(),
                version: request.version.clone(),
            })?;
        workflow
            .check_input(&request.input)
            .map_err(Error::InvalidInput)?;
        machine::tags::check_tags(&request.tags).map_err(Error::InvalidTags)?;
        Ok(workflow)
    }

    /// Starts execution `id` of `workflow` (checked by [`Engine::startable`])
    /// as `request` asks; one that exists already (a start sent twice) is
    /// the one asked for.
    pub(super) async fn start_with_id(
        &self,
        id: ExecutionId,
        workflow: Arc<Workflow>,
        request: StartRequest,
        signal: Option<StartSignal>,
        asked: Asked<'_>,
    ) -> Result<Started, Error> {
        let params = StartParams {
            input: request.input,
            parent: None,
            idempotency_key: request.idempotency_key,
            signal,
            priority: request.priority,
            tags: request.tags,
        };
        match self.start_execution(id, workflow, params, asked).await {
            Ok(status) => Ok(Started {
                id,
                status,
                created: true,
            }),
            Err(e) if super::drive::started_elsewhere(&e) => Ok(Started {
                id,
                status: self.summary(id).map_or(Status::Running, |s| s.status),
                created: false,
            }),
            Err(e) => Err(e),
        }
    }
}
