//! The runtime: the imperative shell around the pure machine, and the only
//! part of the engine with IO.
//!
//! - One owner per live execution: a per-execution async lock held from
//!   deciding through appending, so one execution's triggers are handled one
//!   at a time, in order, and its history can never interleave.
//! - Events go to the journal before their effects happen. After each
//!   trigger the runtime derives what the execution waits on
//!   ([`pending_effects`]) and performs what is new: queue a task, arm a timer,
//!   start a child, listen for an event. Recovery is the same step from an
//!   empty set, so a restarted engine re-arms exactly what a running one had.
//! - Time comes from a [`Clock`] and is passed into the machine, so a
//!   simulated clock makes every run reproducible.

pub mod catalog;
pub mod codec;
mod error;
mod handlers;
pub mod metrics;
pub mod timers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, RwLock, Weak};

use retrace_journal::{EventLog, ExecutionId, Journal, Options, Tail};
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::Instrument;

pub use catalog::{CATALOG_STREAM, Catalog, WorkflowVersions};
pub use error::Error;
pub use handlers::{HandlerTask, TaskHandler};

use crate::agents::{AgentOptions, AgentRegistry, ClaimedTask, Outcome, TaskSpec};
use crate::clock::{Clock, SystemClock};
use crate::machine::{
    self, Ctx, Defaults, Effect, ErrorInfo, Event, ExecutionState, ParentRef, Rejection,
    StartParams, Status, Trigger, pending_effects,
};
use crate::model::Workflow;

/// Where the journal lives.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A sled data folder.
    Folder { path: PathBuf, durable: bool },
    /// A journal the embedder opened (tests wrap one to inject faults).
    Journal(Arc<dyn Journal>),
}

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub storage: Storage,
    pub clock: Arc<dyn Clock>,
    pub defaults: Defaults,
    /// Write a snapshot of an execution every this many events (and when it ends).
    pub snapshot_every: u64,
    pub agents: AgentOptions,
    /// In-process handlers by capability. Given here, they take their tasks
    /// from the start, including those a recovery re-queues; one registered
    /// later with [`Engine::register_handler`] takes only tasks queued after.
    pub handlers: Vec<(String, Arc<dyn TaskHandler>)>,
}

impl EngineConfig {
    /// A durable engine in the folder `path`, on the system clock.
    pub fn folder(path: impl Into<PathBuf>) -> Self {
        EngineConfig {
            storage: Storage::Folder {
                path: path.into(),
                durable: true,
            },
            clock: Arc::new(SystemClock),
            defaults: Defaults::default(),
            snapshot_every: 500,
            agents: AgentOptions::default(),
            handlers: Vec::new(),
        }
    }

    /// An engine over a journal opened elsewhere.
    pub fn journal(journal: Arc<dyn Journal>, clock: Arc<dyn Clock>) -> Self {
        EngineConfig {
            storage: Storage::Journal(journal),
            clock,
            ..EngineConfig::folder("unused")
        }
    }
}

/// The result of defining a workflow.
#[derive(Debug, Clone)]
pub struct Defined {
    pub workflow: Arc<Workflow>,
    /// `false` when the same document was defined before.
    pub created: bool,
}

/// What a start asks for.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub workflow: String,
    pub version: Option<String>,
    pub input: Value,
    pub idempotency_key: Option<String>,
}

/// The result of a start.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: ExecutionId,
    pub status: Status,
    /// `false` when the idempotency key named an execution started before.
    pub created: bool,
}

/// One event of a history, as stored.
#[derive(Debug, Clone)]
pub struct HistoryEvent {
    pub seq: u64,
    pub position: u64,
    pub at_ms: u64,
    pub hash: String,
    pub event: Event,
}

/// What the engine lists about an execution without loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSummary {
    pub id: ExecutionId,
    pub workflow: String,
    pub version: String,
    pub status: Status,
    pub started_at_ms: u64,
}

/// A live execution and what the runtime has armed for it.
#[derive(Debug)]
struct Live {
    state: ExecutionState,
    workflow: Arc<Workflow>,
    /// Keys of the effects performed and still wanted.
    armed: HashMap<String, Effect>,
    /// Events since the last snapshot.
    unsnapshotted: u64,
}

/// The engine: a cheap-to-clone handle.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    defaults: Defaults,
    snapshot_every: u64,
    catalog: RwLock<Catalog>,
    /// Held while a definition is appended, so definitions never race.
    defining: Mutex<()>,
    live: StdMutex<HashMap<ExecutionId, Arc<Mutex<Live>>>>,
    summaries: StdMutex<BTreeMap<ExecutionId, ExecutionSummary>>,
    idempotency: StdMutex<HashMap<String, ExecutionId>>,
    /// Executions waiting for named events: name -> (execution, act).
    awaiting: StdMutex<HashMap<String, HashSet<(ExecutionId, u64)>>>,
    agents: AgentRegistry,
    handlers: RwLock<HashMap<String, Arc<dyn TaskHandler>>>,
    timers: timers::Timers,
    metrics: metrics::Metrics,
    background: StdMutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.background.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl Engine {
    /// Opens the engine: the journal, the catalog, and every unfinished
    /// execution, whose effects are re-armed. Must run inside tokio.
    pub async fn open(config: EngineConfig) -> Result<Engine, Error> {
        let journal: Arc<dyn Journal> = match config.storage {
            Storage::Folder { path, durable } => Arc::new(EventLog::open(
                &path,
                Options {
                    durable,
                    ..Options::default()
                },
            )?),
            Storage::Journal(j) => j,
        };
        let catalog = Catalog::load(journal.as_ref())?;
        let inner = Arc::new(Inner {
            agents: AgentRegistry::new(config.clock.clone(), config.agents),
            journal,
            clock: config.clock,
            defaults: config.defaults,
            snapshot_every: config.snapshot_every.max(1),
            catalog: RwLock::new(catalog),
            defining: Mutex::new(()),
            live: StdMutex::new(HashMap::new()),
            summaries: StdMutex::new(BTreeMap::new()),
            idempotency: StdMutex::new(HashMap::new()),
            awaiting: StdMutex::new(HashMap::new()),
            handlers: RwLock::new(config.handlers.into_iter().collect()),
            timers: timers::Timers::default(),
            metrics: metrics::Metrics::default(),
            background: StdMutex::new(Vec::new()),
        });
        let engine = Engine { inner };
        engine.recover().await?;
        engine.start_background();
        Ok(engine)
    }

    /// Rebuilds every execution from the journal and re-arms the unfinished.
    async fn recover(&self) -> Result<(), Error> {
        let journal = self.inner.journal.clone();
        let mut after = None;
        let mut unfinished = Vec::new();
        loop {
            let heads = journal.executions(after, 1024)?;
            let Some(last) = heads.last() else { break };
            after = Some(last.execution);
            for head in heads {
                if head.execution == CATALOG_STREAM {
                    continue;
                }
                let Some(state) = codec::load_state(journal.as_ref(), head.execution)? else {
                    continue;
                };
                self.index(&state);
                if !state.status.is_terminal() {
                    let workflow = self.workflow_of(&state)?;
                    let live = Arc::new(Mutex::new(Live {
                        state,
                        workflow,
                        armed: HashMap::new(),
                        unsnapshotted: 0,
                    }));
                    self.lock_live().insert(head.execution, live.clone());
                    unfinished.push(live);
                }
            }
        }
        for live in unfinished {
            let mut live = live.lock().await;
            self.reconcile(&mut live);
        }
        Ok(())
    }

    fn start_background(&self) {
        let weak = Arc::downgrade(&self.inner);
        let timers = self.inner.timers.clone();
        let clock = self.inner.clock.clone();
        let timer_task = tokio::spawn(timers.run(clock.clone(), move |execution, act| {
            if let Some(engine) = upgrade(&weak) {
                tokio::spawn(async move {
                    engine.deliver(execution, Trigger::TimerFired { act }).await;
                });
            }
        }));
        let weak = Arc::downgrade(&self.inner);
        let lease_task = tokio::spawn(async move {
            loop {
                let Some(engine) = upgrade(&weak) else { return };
                for expired in engine.inner.agents.expired() {
                    let trigger = Trigger::TaskTimedOut {
                        task: expired.task.id.clone(),
                        kind: expired.kind.to_string(),
                    };
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        engine.deliver(expired.task.execution, trigger).await;
                    });
                }
                let next = engine.inner.agents.next_deadline_ms();
                let now = clock.now_ms();
                drop(engine);
                // Check at the next deadline, and at least every 100 ms of
                // clock time for deadlines that appear in between.
                let at = next.map_or(now + 100, |n| n.min(now + 100));
                clock.sleep_until(at).await;
            }
        });
        if let Ok(mut bg) = self.inner.background.lock() {
            bg.push(timer_task);
            bg.push(lease_task);
        }
    }

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

    /// Defines a compiled workflow; the same version again is a no-op.
    pub async fn define(&self, workflow: Workflow) -> Result<Defined, Error> {
        let _exclusive = self.inner.defining.lock().await;
        let record = self
            .read_catalog()?
            .record(&workflow, self.inner.clock.now_ms());
        let Some((seq, event)) = record else {
            let existing = self
                .read_catalog()?
                .by_version(workflow.version())
                .unwrap_or_else(|| Arc::new(workflow));
            return Ok(Defined {
                workflow: existing,
                created: false,
            });
        };
        self.inner
            .journal
            .append(CATALOG_STREAM, seq, vec![event])
            .await?;
        let workflow = Arc::new(workflow);
        let mut catalog = self.write_catalog()?;
        catalog.insert(workflow.clone());
        catalog.set_seq(seq);
        Ok(Defined {
            workflow,
            created: true,
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

    /// Starts an execution. With an idempotency key already used, returns
    /// that execution instead of starting another.
    pub async fn start(&self, request: StartRequest) -> Result<Started, Error> {
        if let Some(key) = &request.idempotency_key {
            let existing = self.lock_idempotency().get(key).copied();
            if let Some(id) = existing {
                let status = self.summary(id).map_or(Status::Running, |s| s.status);
                return Ok(Started {
                    id,
                    status,
                    created: false,
                });
            }
        }
        let workflow = self
            .workflow(&request.workflow, request.version.as_deref())
            .ok_or_else(|| Error::UnknownWorkflow {
                name: request.workflow.clone(),
                version: request.version.clone(),
            })?;
        workflow
            .check_input(&request.input)
            .map_err(Error::InvalidInput)?;
        let id = ExecutionId::random();
        let params = StartParams {
            input: request.input,
            parent: None,
            idempotency_key: request.idempotency_key,
        };
        let status = self.start_execution(id, workflow, params).await?;
        Ok(Started {
            id,
            status,
            created: true,
        })
    }

    /// Starts execution `id` (also used for children, whose id is derived).
    async fn start_execution(
        &self,
        id: ExecutionId,
        workflow: Arc<Workflow>,
        params: StartParams,
    ) -> Result<Status, Error> {
        let key = params.idempotency_key.clone();
        let now = self.inner.clock.now_ms();
        let (state, events) = {
            let catalog = self.read_catalog()?;
            let ctx = self.ctx(&catalog, now);
            machine::start(id, &workflow, &ctx, params)?
        };
        let live = Arc::new(Mutex::new(Live {
            state,
            workflow,
            armed: HashMap::new(),
            unsnapshotted: 0,
        }));
        let mut guard = live.lock().await;
        // Claim the idempotency key before the append, so two racing starts
        // with the same key cannot both start.
        if let Some(key) = &key {
            let mut keys = self.lock_idempotency();
            if keys.contains_key(key) {
                return Err(Error::Conflict(format!(
                    "idempotency key {key} is being used by a concurrent start"
                )));
            }
            keys.insert(key.clone(), id);
        }
        self.lock_live().insert(id, live.clone());
        if let Err(e) = self.commit(&mut guard, &events, now, &HashMap::new()).await {
            self.lock_live().remove(&id);
            if let Some(key) = &key {
                self.lock_idempotency().remove(key);
            }
            return Err(e);
        }
        Ok(guard.state.status)
    }

    /// The execution's current state (live, or rebuilt from the journal).
    pub async fn state(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        if id == CATALOG_STREAM {
            return Err(Error::UnknownExecution(id));
        }
        if let Some(live) = self.live_of(id) {
            return Ok(live.lock().await.state.clone());
        }
        codec::load_state(self.inner.journal.as_ref(), id)?.ok_or(Error::UnknownExecution(id))
    }

    /// Executions, in id order, optionally filtered.
    pub fn executions(
        &self,
        workflow: Option<&str>,
        status: Option<Status>,
        after: Option<ExecutionId>,
        limit: usize,
    ) -> Vec<ExecutionSummary> {
        let summaries = self.lock_summaries();
        let range = match after {
            Some(a) => summaries.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => summaries.range(..),
        };
        range
            .map(|(_, s)| s)
            .filter(|s| workflow.is_none_or(|w| s.workflow == w))
            .filter(|s| status.is_none_or(|st| s.status == st))
            .take(limit)
            .cloned()
            .collect()
    }

    /// How many executions the engine knows, by status.
    pub fn status_counts(&self) -> BTreeMap<Status, u64> {
        let mut counts = BTreeMap::new();
        for s in self.lock_summaries().values() {
            *counts.entry(s.status).or_insert(0) += 1;
        }
        counts
    }

    pub fn summary(&self, id: ExecutionId) -> Option<ExecutionSummary> {
        self.lock_summaries().get(&id).cloned()
    }

    /// Up to `limit` events of the execution from `from_seq`.
    pub fn history(
        &self,
        id: ExecutionId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, Error> {
        if id == CATALOG_STREAM
            || (self.summary(id).is_none() && self.inner.journal.head(id)?.is_none())
        {
            return Err(Error::UnknownExecution(id));
        }
        let records = self.inner.journal.read(id, from_seq, limit)?;
        records
            .iter()
            .map(|r| {
                Ok(HistoryEvent {
                    seq: r.seq,
                    position: r.position,
                    at_ms: r.recorded_at_ms,
                    hash: r.hash_hex(),
                    event: codec::decode(r)?,
                })
            })
            .collect()
    }

    /// Waits until the execution has ended and returns its final state.
    pub async fn wait_until_ended(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        let mut tail = self.inner.journal.subscribe(Tail::Execution {
            execution: id,
            from_seq: 1,
        });
        // The journal decides what exists: its records are visible a moment
        // before the committing owner updates the engine's index.
        if self.summary(id).is_none() && self.inner.journal.head(id)?.is_none() {
            return Err(Error::UnknownExecution(id));
        }
        while let Some(record) = tail.next().await {
            if codec::decode(&record?)?.is_terminal() {
                // The event is stored; let its owner finish the commit
                // (snapshot, parent, bookkeeping) before answering.
                if let Some(live) = self.live_of(id) {
                    drop(live.lock().await);
                }
                return self.state(id).await;
            }
        }
        Err(Error::Journal(retrace_journal::Error::Closed))
    }

    /// Delivers an external event to one execution.
    pub async fn signal(
        &self,
        id: ExecutionId,
        name: &str,
        payload: Value,
        correlation: Option<Value>,
    ) -> Result<ExecutionState, Error> {
        let trigger = Trigger::Signal {
            name: name.to_string(),
            payload,
            correlation,
        };
        self.drive(id, trigger).await
    }

    /// Delivers an external event to every execution waiting on `name`
    /// whose correlation matches. Returns the executions it reached.
    pub async fn publish(
        &self,
        name: &str,
        payload: Value,
        correlation: Option<Value>,
    ) -> Result<Vec<ExecutionId>, Error> {
        let waiting: Vec<ExecutionId> = {
            let awaiting = self.lock_awaiting();
            let mut ids: Vec<ExecutionId> = awaiting
                .get(name)
                .map(|set| set.iter().map(|(e, _)| *e).collect())
                .unwrap_or_default();
            ids.sort();
            ids.dedup();
            ids
        };
        let mut reached = Vec::new();
        for id in waiting {
            let Some(live) = self.live_of(id) else {
                continue;
            };
            let mut live = live.lock().await;
            let matches = live.state.activations.values().any(|a| {
                matches!(&a.waiting, machine::Waiting::Event { name: n, correlation: c, .. }
                    if n == name && (c.is_none() || c.as_ref() == correlation.as_ref()))
            });
            if !matches {
                continue;
            }
            let trigger = Trigger::Signal {
                name: name.to_string(),
                payload: payload.clone(),
                correlation: correlation.clone(),
            };
            self.drive_locked(&mut live, trigger).await?;
            reached.push(id);
        }
        Ok(reached)
    }

    pub async fn pause(&self, id: ExecutionId, reason: &str) -> Result<ExecutionState, Error> {
        let reason = reason.to_string();
        self.drive(id, Trigger::Pause { reason }).await
    }

    pub async fn resume(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.drive(id, Trigger::Resume).await
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
        self.drive(id, Trigger::Cancel { reason, compensate }).await
    }

    /// Retries the failed step an execution paused on (`onFailure: pause`),
    /// or its failed compensation.
    pub async fn retry(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        self.drive(id, Trigger::Retry).await
    }

    /// Skips the failed step an execution paused on, with `output` as its
    /// result; or skips its failed compensation.
    pub async fn skip(&self, id: ExecutionId, output: Value) -> Result<ExecutionState, Error> {
        self.drive(id, Trigger::Skip { output }).await
    }

    /// Reopens a failed execution at the step that failed; its history is
    /// kept and continues.
    pub async fn redrive(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        if id == CATALOG_STREAM {
            return Err(Error::UnknownExecution(id));
        }
        if self.live_of(id).is_none() {
            let state = codec::load_state(self.inner.journal.as_ref(), id)?
                .ok_or(Error::UnknownExecution(id))?;
            if state.status == Status::Failed {
                let workflow = self.workflow_of(&state)?;
                let live = Arc::new(Mutex::new(Live {
                    state,
                    workflow,
                    armed: HashMap::new(),
                    unsnapshotted: 0,
                }));
                self.lock_live().entry(id).or_insert(live);
            }
        }
        let result = self.drive(id, Trigger::Redrive).await;
        if result.is_err()
            && let Some(live) = self.live_of(id)
            && live.lock().await.state.status.is_terminal()
        {
            self.lock_live().remove(&id);
        }
        result
    }

    pub async fn terminate(&self, id: ExecutionId, reason: &str) -> Result<ExecutionState, Error> {
        let reason = reason.to_string();
        self.drive(id, Trigger::Terminate { reason }).await
    }

    // ----- agents and tasks -----

    /// The agent registry (register, list, heartbeat, poll).
    pub fn agents(&self) -> &AgentRegistry {
        &self.inner.agents
    }

    /// Long-polls for tasks on behalf of an agent.
    pub async fn poll_tasks(
        &self,
        agent: &crate::agents::AgentId,
        wait_ms: u64,
        max: usize,
    ) -> Result<Vec<ClaimedTask>, Error> {
        Ok(self.inner.agents.poll(agent, wait_ms, max).await?)
    }

    /// Records a task's result. A task that is not outstanding is refused
    /// and changes nothing.
    pub async fn complete_task(&self, task: &str, output: Value) -> Result<(), Error> {
        let id = machine::task_execution(task).ok_or_else(|| Error::UnknownTask(task.into()))?;
        let trigger = Trigger::TaskCompleted {
            task: task.to_string(),
            output,
        };
        self.drive(id, trigger).await?;
        Ok(())
    }

    /// Records a task's failure (it retries or routes per the step).
    pub async fn fail_task(&self, task: &str, mut error: ErrorInfo) -> Result<(), Error> {
        let id = machine::task_execution(task).ok_or_else(|| Error::UnknownTask(task.into()))?;
        if error.agent.is_none() {
            error.agent = self
                .inner
                .agents
                .claimed_by(task)
                .and_then(|a| self.inner.agents.get(&a))
                .map(|info| format!("{} ({})", info.name, info.id));
        }
        let trigger = Trigger::TaskFailed {
            task: task.to_string(),
            error,
        };
        self.drive(id, trigger).await?;
        Ok(())
    }

    /// Extends the lease of a claimed task (an agent's heartbeat on it);
    /// with `agent`, refuses a task another agent holds.
    pub fn task_heartbeat(
        &self,
        task: &str,
        agent: Option<&crate::agents::AgentId>,
    ) -> Result<ClaimedTask, Error> {
        Ok(self.inner.agents.task_heartbeat(task, agent)?)
    }

    /// Runs tasks of `capability` in this process instead of handing them
    /// to agents, from now on: tasks already queued for agents stay there
    /// (give handlers in [`EngineConfig::handlers`] to have them from the
    /// start, recovered tasks included).
    pub fn register_handler(&self, capability: &str, handler: Arc<dyn TaskHandler>) {
        if let Ok(mut h) = self.inner.handlers.write() {
            h.insert(capability.to_string(), handler);
        }
    }

    /// Counters and latencies per workflow, step and capability.
    pub fn metrics(&self) -> metrics::Figures {
        self.inner.metrics.figures()
    }

    /// The execution's events from `from_seq` on: stored ones, then live
    /// ones as they are recorded (decode each with [`codec::decode`]).
    pub fn subscribe(&self, id: ExecutionId, from_seq: u64) -> retrace_journal::Subscription {
        self.inner.journal.subscribe(Tail::Execution {
            execution: id,
            from_seq,
        })
    }

    /// The journal under the engine.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.inner.journal
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    // ----- the core loop -----

    /// Handles a trigger for one execution: decide, append, perform.
    async fn drive(&self, id: ExecutionId, trigger: Trigger) -> Result<ExecutionState, Error> {
        let live = self.live_of(id).ok_or_else(|| {
            if self.summary(id).is_some() {
                Error::Rejected(Rejection::WrongState {
                    command: trigger.command(),
                    status: self.summary(id).map_or("ended", |s| s.status.as_str()),
                    hint: None,
                })
            } else {
                Error::UnknownExecution(id)
            }
        })?;
        let mut live = live.lock().await;
        let span = tracing::debug_span!("execution", %id, workflow = %live.state.workflow);
        self.drive_locked(&mut live, trigger)
            .instrument(span)
            .await?;
        Ok(live.state.clone())
    }

    /// Like `drive`, for errors nobody waits on (timers, leases, children).
    async fn deliver(&self, id: ExecutionId, trigger: Trigger) {
        match self.drive(id, trigger).await {
            Ok(_) => {}
            Err(Error::Rejected(r)) => {
                tracing::debug!(execution = %id, reason = %r, "trigger refused")
            }
            Err(e) => tracing::warn!(execution = %id, error = %e, "trigger failed"),
        }
    }

    async fn drive_locked(&self, live: &mut Live, trigger: Trigger) -> Result<(), Error> {
        if live.state.status.is_terminal() && trigger != Trigger::Redrive {
            return Err(Error::Rejected(Rejection::WrongState {
                command: trigger.command(),
                status: live.state.status.as_str(),
                hint: None,
            }));
        }
        let now = self.inner.clock.now_ms();
        let before = metrics::before(&live.state);
        let events = {
            let catalog = self.read_catalog()?;
            let ctx = self.ctx(&catalog, now);
            match machine::handle(&mut live.state, &live.workflow, &ctx, trigger) {
                Ok(events) => events,
                Err(e @ Rejection::Internal(_)) => {
                    drop(catalog);
                    self.reload(live)?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.commit(live, &events, now, &before).await
    }

    /// Appends what the machine decided, then performs its effects.
    async fn commit(
        &self,
        live: &mut Live,
        events: &[Event],
        now: u64,
        before: &HashMap<u64, metrics::Before>,
    ) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let id = live.state.id;
        let first_seq = live.state.seq + 1 - events.len() as u64;
        let records = events
            .iter()
            .map(|e| codec::encode(e, now))
            .collect::<Result<Vec<_>, _>>()?;
        // Listen for awaited events before the append: a subscriber sees
        // `event_awaited` as soon as it is stored and may publish the event
        // at once; `publish` then finds this execution and takes its lock,
        // which waits for this commit. (After a failed append the entry is
        // stale, and `publish` checks the state before delivering.)
        for a in live.state.activations.values() {
            if let machine::Waiting::Event { name, .. } = &a.waiting {
                self.lock_awaiting()
                    .entry(name.clone())
                    .or_default()
                    .insert((id, a.act));
            }
        }
        if let Err(e) = self.inner.journal.append(id, first_seq, records).await {
            // What we hold is ahead of the journal: go back to what is stored.
            self.reload(live)?;
            return Err(e.into());
        }
        for event in events {
            tracing::debug!(kind = event.kind(), "recorded");
        }
        self.inner.metrics.observe(
            &live.state.workflow,
            live.state.started_at_ms,
            now,
            before,
            events,
        );
        self.index(&live.state);
        live.unsnapshotted += events.len() as u64;
        // Results are recorded: settle their tasks with the registry (its
        // agent statistics) before reconcile withdraws what is no longer
        // outstanding. A timed-out task was removed already; that is fine.
        for event in events {
            let settled = match event {
                Event::TaskCompleted { task, .. } => Some((task, Outcome::Succeeded)),
                Event::TaskFailed { task, .. } => Some((task, Outcome::Failed)),
                _ => None,
            };
            if let Some((task, outcome)) = settled {
                let _ = self.inner.agents.settle(task, outcome);
            }
        }
        self.reconcile(live);
        let ended = live.state.status.is_terminal();
        if ended || live.unsnapshotted >= self.inner.snapshot_every {
            live.unsnapshotted = 0;
            let encoded = codec::encode_state(&live.state)?;
            // A snapshot is derived data: nothing waits for it (the journal
            // takes the request when called, after the events it covers).
            let written = self.inner.journal.put_snapshot(id, live.state.seq, encoded);
            tokio::spawn(async move {
                if let Err(e) = written.await {
                    tracing::warn!(execution = %id, error = %e, "snapshot not written");
                }
            });
        }
        if ended {
            self.lock_live().remove(&id);
            if let Some(parent) = live.state.parent {
                self.notify_parent(parent, &live.state);
            }
        }
        Ok(())
    }

    /// Replaces a live state with what the journal holds.
    fn reload(&self, live: &mut Live) -> Result<(), Error> {
        let id = live.state.id;
        live.state = codec::load_state(self.inner.journal.as_ref(), id)?
            .ok_or(Error::UnknownExecution(id))?;
        Ok(())
    }

    /// Performs the effects the state now needs and drops those it no
    /// longer does.
    fn reconcile(&self, live: &mut Live) {
        let id = live.state.id;
        let wanted: HashMap<String, Effect> = pending_effects(&live.state)
            .into_iter()
            .map(|e| (e.key(), e))
            .collect();
        let gone: Vec<(String, Effect)> = live
            .armed
            .iter()
            .filter(|(k, _)| !wanted.contains_key(*k))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        for (key, effect) in gone {
            live.armed.remove(&key);
            match effect {
                Effect::Task { task, .. } => {
                    self.inner.agents.withdraw(&task);
                }
                Effect::Await { act, name, .. } => {
                    if let Some(set) = self.lock_awaiting().get_mut(&name) {
                        set.remove(&(id, act));
                    }
                }
                // The parent no longer waits for this child: it reported, or
                // the parent moved on (ended, failed, is compensating). A
                // child still running is cancelled, or terminated with a
                // terminated parent; one that has ended refuses, harmlessly.
                Effect::Child { child, .. } => {
                    let terminate = live.state.status == Status::Terminated;
                    let engine = self.clone();
                    tokio::spawn(async move {
                        let reason = format!("its parent {id} no longer waits for it");
                        let trigger = if terminate {
                            Trigger::Terminate { reason }
                        } else {
                            Trigger::Cancel {
                                reason,
                                compensate: false,
                            }
                        };
                        engine.deliver(child, trigger).await;
                    });
                }
                // A stale timer firing is refused by the machine.
                Effect::Timer { .. } | Effect::Continue { .. } => {}
            }
        }
        for (key, effect) in wanted {
            if live.armed.contains_key(&key) {
                continue;
            }
            self.perform(id, &effect);
            live.armed.insert(key, effect);
        }
    }

    fn perform(&self, id: ExecutionId, effect: &Effect) {
        match effect.clone() {
            Effect::Task {
                task,
                step,
                capability,
                attempt,
                input,
                timeouts,
                ..
            } => {
                let handler = self
                    .inner
                    .handlers
                    .read()
                    .ok()
                    .and_then(|h| h.get(&capability).cloned());
                match handler {
                    Some(handler) => {
                        let engine = self.clone();
                        let call = HandlerTask {
                            task: task.clone(),
                            execution: id,
                            step,
                            capability,
                            attempt,
                            input,
                        };
                        tokio::spawn(async move {
                            let result = handler.call(call).await;
                            let outcome = match result {
                                Ok(output) => engine.complete_task(&task, output).await,
                                Err(error) => engine.fail_task(&task, error).await,
                            };
                            if let Err(e) = outcome {
                                tracing::debug!(task, error = %e, "handler result refused");
                            }
                        });
                    }
                    None => {
                        self.inner.agents.enqueue(TaskSpec {
                            id: task,
                            execution: id,
                            step,
                            capability,
                            attempt,
                            input,
                            lease_ms: timeouts.start_to_close_ms,
                            schedule_to_start_ms: timeouts.schedule_to_start_ms,
                            heartbeat_ms: timeouts.heartbeat_ms,
                            scheduled_at_ms: self.inner.clock.now_ms(),
                        });
                    }
                }
            }
            Effect::Timer { act, due_at_ms } => self.inner.timers.arm(id, act, due_at_ms),
            Effect::Continue { .. } => {
                let engine = self.clone();
                tokio::spawn(async move { engine.deliver(id, Trigger::Continue).await });
            }
            Effect::Await { act, name, .. } => {
                self.lock_awaiting()
                    .entry(name)
                    .or_default()
                    .insert((id, act));
            }
            Effect::Child {
                act,
                child,
                workflow,
                version,
                input,
            } => {
                let engine = self.clone();
                tokio::spawn(async move {
                    let parent = ParentRef { execution: id, act };
                    if let Err(e) = engine
                        .ensure_child(parent, child, &workflow, &version, input)
                        .await
                    {
                        tracing::warn!(%child, error = %e, "child not started");
                    }
                });
            }
        }
    }

    /// Starts a child unless it exists; if it has ended, tells the parent.
    async fn ensure_child(
        &self,
        parent: ParentRef,
        child: ExecutionId,
        workflow: &str,
        version: &str,
        input: Value,
    ) -> Result<(), Error> {
        if let Some(state) = codec::load_state(self.inner.journal.as_ref(), child)? {
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
        };
        match self.start_execution(child, wf, params).await {
            // Started by someone else in between: fine.
            Ok(_) | Err(Error::Journal(retrace_journal::Error::SeqConflict { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn notify_parent(&self, parent: ParentRef, child: &ExecutionState) {
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
        tokio::spawn(async move { engine.deliver(parent.execution, trigger).await });
    }

    // ----- small helpers -----

    fn ctx<'a>(&'a self, catalog: &'a Catalog, now_ms: u64) -> Ctx<'a> {
        Ctx {
            now_ms,
            entropy: uuid::Uuid::new_v4().as_u64_pair().0,
            catalog,
            defaults: &self.inner.defaults,
        }
    }

    fn workflow_of(&self, state: &ExecutionState) -> Result<Arc<Workflow>, Error> {
        self.read_catalog()?
            .by_version(&state.version)
            .ok_or_else(|| Error::UnknownWorkflow {
                name: state.workflow.clone(),
                version: Some(state.version.clone()),
            })
    }

    fn index(&self, state: &ExecutionState) {
        self.lock_summaries().insert(
            state.id,
            ExecutionSummary {
                id: state.id,
                workflow: state.workflow.clone(),
                version: state.version.clone(),
                status: state.status,
                started_at_ms: state.started_at_ms,
            },
        );
        if let Some(key) = &state.idempotency_key {
            self.lock_idempotency().insert(key.clone(), state.id);
        }
    }

    fn live_of(&self, id: ExecutionId) -> Option<Arc<Mutex<Live>>> {
        self.lock_live().get(&id).cloned()
    }

    fn read_catalog(&self) -> Result<std::sync::RwLockReadGuard<'_, Catalog>, Error> {
        self.inner.catalog.read().map_err(|_| Error::Poisoned)
    }

    fn write_catalog(&self) -> Result<std::sync::RwLockWriteGuard<'_, Catalog>, Error> {
        self.inner.catalog.write().map_err(|_| Error::Poisoned)
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Arc<Mutex<Live>>>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_summaries(&self) -> std::sync::MutexGuard<'_, BTreeMap<ExecutionId, ExecutionSummary>> {
        self.inner
            .summaries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn lock_idempotency(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutionId>> {
        self.inner
            .idempotency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn lock_awaiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<(ExecutionId, u64)>>> {
        self.inner
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<Engine> {
    weak.upgrade().map(|inner| Engine { inner })
}
