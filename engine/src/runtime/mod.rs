//! The runtime: the imperative shell around the pure machine, and the only
//! part of the engine with IO. [`Engine`] is its facade; each job has a
//! module:
//!
//! - `drive`: one trigger of one execution: decide, append, then hand over
//!   to `effects`. One owner per live execution: a per-execution async lock
//!   held from deciding through appending, so one execution's triggers are
//!   handled one at a time, in order, and its history never interleaves.
//! - `effects`: after each trigger, what the execution now waits on
//!   ([`pending_effects`](crate::machine::pending_effects)) is compared with
//!   what is armed, and what is new is performed (queue a task, arm a timer,
//!   start a child, listen for an event). Recovery (`recover`) is the same
//!   step from an empty set, so a restarted engine re-arms exactly what a
//!   running one had.
//! - `index`: the in-memory lists derived from states (summaries,
//!   idempotency keys, awaited events).
//! - `tasks`: every background task, owned, stopped and awaited at shutdown.
//! - `waiters`: callers waiting for an execution to end.
//! - `timers`, `metrics`, `handlers`: the timer wheel, the counters, and
//!   in-process task handlers.
//! - `schedules`: schedule changes and the loop that fires them.
//! - `limits`: the limiter fed with limited executions' states, and the
//!   loop that lets waiting ones go (`limit_acquired`).
//! - `pace`: each execution's budget of events per second, which what it
//!   does by itself (continuations, due timers) waits for.
//! - `http`: the built-in `http` capability's tasks, performed on tasks of
//!   their own (bounded in number) and reported as an agent would.
//! - `webhooks`: webhook subscriptions, and one loop per subscription that
//!   delivers its events from its recorded cursor, signed, in order.
//! - Reads of stored history go through [`crate::read::History`]
//!   ([`Engine::read`]); the journal itself is behind [`crate::store`].
//!
//! Events go to the journal before their effects happen. Time comes from a
//! [`Clock`] and is passed into the machine, so a simulated clock makes
//! every run reproducible.

mod breakers;
mod capability_limits;
mod commands;
mod dispatch;
mod drive;
mod effects;
mod handlers;
mod home;
mod http;
mod inbox;
mod index;
mod limits;
pub mod metrics;
mod outage;
mod pace;
mod recover;
mod schedules;
mod share;
mod tasks;
pub mod timers;
mod tokens;
mod waiters;
mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, RwLock};

use tokio::sync::Mutex;

pub use breakers::{AgentBreakerInfo, BreakerInfo};
pub use capability_limits::{CapabilityLimitsInfo, LimitsSource};
pub use commands::{Acting, Defined, Reached, Signalled, StartRequest, Started, Warning};
pub use handlers::{HandlerTask, TaskHandler};
pub use index::{ExecutionSummary, ListFilter};
pub use pace::Pacing;
pub use recover::AGENT_FORGET_MS;
pub use webhooks::{Retrying, WebhookInfo};

pub use crate::store::catalog::WorkflowVersions;

use crate::limits::CapabilityLimits;

use crate::agents::{AgentOptions, AgentRegistry};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::machine::{Defaults, ExecutionState, Limits};
use crate::read::History;
use crate::store::catalog::WorkflowCatalog;
use crate::store::tokens::Tokens;
use crate::store::{JournalStats, Storage, Store};
use crate::{ExecutionId, read};
use drive::Live;
use recover::upgrade;

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub storage: Storage,
    pub clock: Arc<dyn Clock>,
    pub defaults: Defaults,
    /// Limits no definition can change: the most events an execution's
    /// history holds (`history_limit` failure past it).
    pub limits: Limits,
    /// Each execution's budget of events per second (see [`Pacing`]).
    pub pacing: Pacing,
    /// Write a snapshot of an execution every this many events (and when it ends).
    pub snapshot_every: u64,
    pub agents: AgentOptions,
    /// Capabilities' limits from the server's configuration (those set
    /// through the API win over them).
    pub capability_limits: BTreeMap<String, CapabilityLimits>,
    /// In-process handlers by capability. Given here, they take their tasks
    /// from the start, including those a recovery re-queues; one registered
    /// later with [`Engine::register_handler`] takes only tasks queued after.
    pub handlers: Vec<(String, Arc<dyn TaskHandler>)>,
    /// The built-in `http` capability: how many requests at once, the
    /// largest response, the outbound address policy, the secrets.
    pub http: crate::http::HttpOptions,
    /// Outbound webhooks: how long and how often a delivery is tried (their
    /// address policy is `http`'s).
    pub webhooks: crate::webhooks::WebhookOptions,
    /// How the executions are rebuilt as the engine opens (by default, one
    /// pass over the journal when most of it is needed).
    pub rebuild: crate::store::rebuild::Rebuild,
}

impl EngineConfig {
    /// A durable engine in the folder `path`, on the system clock.
    pub fn folder(path: impl Into<PathBuf>) -> Self {
        EngineConfig {
            storage: Storage::Folder {
                path: path.into(),
                options: crate::store::JournalOptions::default(),
            },
            clock: Arc::new(SystemClock),
            defaults: Defaults::default(),
            limits: Limits::default(),
            pacing: Pacing::default(),
            snapshot_every: 500,
            agents: AgentOptions::default(),
            capability_limits: BTreeMap::new(),
            handlers: Vec::new(),
            http: crate::http::HttpOptions::default(),
            webhooks: crate::webhooks::WebhookOptions::default(),
            rebuild: crate::store::rebuild::Rebuild::Auto,
        }
    }

    /// An engine over a journal opened elsewhere.
    pub fn journal(journal: Arc<dyn crate::store::Journal>, clock: Arc<dyn Clock>) -> Self {
        EngineConfig {
            storage: Storage::Journal(journal),
            clock,
            ..EngineConfig::folder("unused")
        }
    }
}

/// The engine: a cheap-to-clone handle.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What the engine's handles share.
///
/// Lock policy, for every field below:
/// - `live`'s per-execution `tokio::sync::Mutex<Live>` is the only lock held
///   across an `.await` (deciding, appending and reconciling one trigger).
///   At most one of them is held at a time by any task.
/// - `defining` (async) is held across the append of one definition; no
///   other lock is taken while it is held but `catalog` briefly.
///   `changing_tokens` is the same for token changes and `tokens`.
///   `changing_schedules` is held across one schedule change, or one pass
///   of the loop that fires schedules (which starts and cancels executions
///   meanwhile, taking their owner locks one at a time; no execution's
///   trigger ever takes it).
///   `changing_webhooks` is held across one webhooks event's append (a
///   subscription made or deleted, a delivery settled), with `webhooks`
///   taken briefly; never across a delivery.
/// - Every other lock (`live`'s map, `catalog`, `tokens`, `handlers`, the indexes,
///   the timer wheel, the agent registry, the limiter) is a plain mutex or rwlock taken
///   for one short operation: never held across an `.await`, and never
///   while taking another plain lock. One exception: a claim in the agent
///   registry asks the agents' circuit breakers (`breakers`, through the
///   registry's gate) with the registry locked; so the registry's lock is
///   always taken before `breakers`, never the other way round.
#[derive(Debug)]
struct Inner {
    store: Store,
    history: History,
    clock: Arc<dyn Clock>,
    defaults: Defaults,
    limits: Limits,
    pacing: Pacing,
    snapshot_every: u64,
    /// Every defined workflow version (read by every trigger).
    catalog: RwLock<WorkflowCatalog>,
    /// Held while a definition is appended, so definitions never race.
    defining: Mutex<()>,
    /// Every access token (read by every authenticated request).
    tokens: RwLock<Tokens>,
    /// Held while a token change is appended, so they never race.
    changing_tokens: Mutex<()>,
    /// Every schedule.
    schedules: RwLock<crate::schedules::Schedules>,
    /// Held while schedule events are decided and appended (a change, or
    /// one pass of the loop that fires), so they never race.
    changing_schedules: Mutex<()>,
    /// Wakes the loop that fires schedules.
    schedules_changed: Arc<tokio::sync::Notify>,
    /// Every circuit breaker (asked by every task handed out).
    breakers: StdMutex<crate::breakers::Breakers>,
    /// Held while one breaker event is appended, so they never race.
    changing_breakers: Mutex<()>,
    /// Breaker state changes waiting to be recorded, in order.
    breaker_log: breakers::BreakerLog,
    /// Tasks this engine performs itself whose breaker it asked of the
    /// home (on a shared journal, see `breakers`): performed when the
    /// home lets them go.
    asked_home: StdMutex<std::collections::HashSet<String>>,
    /// Capabilities' limits set through the API, and the claims their
    /// rate windows count, as recorded.
    limits_table: StdMutex<crate::limits::LimitsTable>,
    /// Held while limits events are appended, so they never race.
    changing_limits: Mutex<()>,
    /// Capabilities' limits from the server's configuration.
    config_limits: BTreeMap<String, CapabilityLimits>,
    /// Wakes the loop that wakes polls when a rate window has room.
    capability_rooms: Arc<tokio::sync::Notify>,
    /// Every webhook subscription and its recorded cursor.
    webhooks: StdMutex<crate::webhooks::Webhooks>,
    /// Held while a webhooks event is appended, so they never race.
    changing_webhooks: Mutex<()>,
    /// The webhooks' client, settings, loops and retries under way.
    deliveries: Arc<webhooks::Deliveries>,
    /// Set while recovery re-queues outstanding tasks (each holds a slot
    /// of its capability's concurrency limit until claimed again).
    recovering: std::sync::atomic::AtomicBool,
    /// Every limited execution's standing under its workflow's limits.
    limiter: StdMutex<crate::limits::Limiter>,
    /// Wakes the loop that lets waiting executions go.
    limits_changed: Arc<tokio::sync::Notify>,
    /// The executions that have not ended, each behind its owner lock.
    live: StdMutex<HashMap<ExecutionId, Arc<Mutex<Live>>>>,
    index: index::Index,
    /// Callers waiting for executions to end.
    waiters: waiters::Waiters,
    agents: AgentRegistry,
    handlers: RwLock<HashMap<String, Arc<dyn TaskHandler>>>,
    /// The built-in `http` capability's client, turns and requests under
    /// way (its own plain lock, for one insert or removal).
    http: http::HttpTasks,
    timers: timers::Timers,
    metrics: metrics::Recorder,
    tasks: tasks::Tasks,
    /// Wake-ups that failed while the journal refused writes.
    kept: outage::Kept,
    /// The partitions whose executions this engine drives, when it shares
    /// the journal with other servers.
    owned: share::Owned,
    /// Messages about tasks for the home, sent in order (see `dispatch`).
    outbox: dispatch::Outbox,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.cancel();
    }
}

impl Engine {
    /// Opens the engine: the journal, the catalog, and every unfinished
    /// execution, whose effects are re-armed. Must run inside tokio.
    pub async fn open(config: EngineConfig) -> Result<Engine, Error> {
        let store = Store::open(config.storage)?;
        let catalog = WorkflowCatalog::load(store.journal()).await?;
        let tokens = Tokens::load(store.journal()).await?;
        let schedules =
            crate::store::reserved::load::<crate::schedules::Schedules>(store.journal()).await?;
        let breakers = crate::store::breakers::load(store.journal()).await?;
        capability_limits::check_config(&config.capability_limits)?;
        let limits_table =
            crate::store::reserved::load::<crate::limits::LimitsTable>(store.journal()).await?;
        let http = http::HttpTasks::new(&config.http, config.clock.clone())?;
        let webhooks =
            crate::store::reserved::load::<crate::webhooks::Webhooks>(store.journal()).await?;
        let deliveries = Arc::new(webhooks::Deliveries::new(&config.http, config.webhooks)?);
        let (breaker_log, breaker_changes) = tokio::sync::mpsc::unbounded_channel();
        let rebuild = config.rebuild;
        let share = store.journal().share();
        let (outbox, to_home) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let lookup: read::NameLookup =
                Arc::new(move |id| weak.upgrade().and_then(|inner| inner.index.workflow_of(id)));
            Inner {
                history: History::new(store.clone(), Some(lookup)),
                store,
                agents: AgentRegistry::new(config.clock.clone(), config.agents),
                clock: config.clock,
                defaults: config.defaults,
                limits: config.limits,
                pacing: config.pacing,
                snapshot_every: config.snapshot_every.max(1),
                catalog: RwLock::new(catalog),
                defining: Mutex::new(()),
                tokens: RwLock::new(tokens),
                changing_tokens: Mutex::new(()),
                schedules: RwLock::new(schedules),
                changing_schedules: Mutex::new(()),
                schedules_changed: Arc::new(tokio::sync::Notify::new()),
                breakers: StdMutex::new(breakers),
                changing_breakers: Mutex::new(()),
                breaker_log,
                asked_home: StdMutex::new(std::collections::HashSet::new()),
                limits_table: StdMutex::new(limits_table),
                changing_limits: Mutex::new(()),
                config_limits: config.capability_limits,
                capability_rooms: Arc::new(tokio::sync::Notify::new()),
                webhooks: StdMutex::new(webhooks),
                changing_webhooks: Mutex::new(()),
                deliveries,
                recovering: std::sync::atomic::AtomicBool::new(false),
                limiter: StdMutex::new(crate::limits::Limiter::default()),
                limits_changed: Arc::new(tokio::sync::Notify::new()),
                live: StdMutex::new(HashMap::new()),
                index: index::Index::default(),
                waiters: waiters::Waiters::default(),
                handlers: RwLock::new(config.handlers.into_iter().collect()),
                http,
                timers: timers::Timers::default(),
                metrics: metrics::Recorder::default(),
                tasks: tasks::Tasks::default(),
                kept: outage::Kept::default(),
                owned: share::Owned::new(share),
                outbox,
            }
        });
        let engine = Engine { inner };
        let started = std::time::Instant::now();
        engine.load_capability_limits();
        engine.recover(rebuild).await?;
        let live = engine.lock_live().len();
        tracing::info!(
            executions = engine.inner.index.len(),
            unfinished = live,
            workflows = engine.workflows().len(),
            ms = started.elapsed().as_millis() as u64,
            "engine opened: executions recovered"
        );
        engine.start_background();
        engine.follow_share();
        engine.follow_home();
        engine.run_inbox();
        engine.run_outbox(to_home);
        if let Some(share) = &engine.inner.owned.share
            && engine.is_home()
        {
            engine.became_home(share.partitions);
        }
        engine.run_schedules();
        engine.run_breaker_log(breaker_changes);
        engine.run_agent_breakers();
        engine.run_limits();
        engine.run_capability_rooms();
        engine.run_webhooks();
        engine.watch_agents();
        Ok(engine)
    }

    /// Stops every background task (timers, lease checks, deliveries,
    /// in-process handlers) and waits for them, then makes sure everything
    /// acknowledged is durable. Commands still work afterwards, but nothing
    /// more happens on its own: call this last.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.inner.tasks.shutdown().await;
        self.snapshot_live().await;
        match self.inner.store.flush().await {
            Err(e) if outage::is_storage_outage(&e) => {
                let kept = self.inner.kept.len();
                tracing::warn!(error = %e, kept_wake_ups = kept,
                    "stopping while the journal's storage refuses writes: every acknowledged \
                     append was on disk before the failure (writes are durable by default), and \
                     what was refused was never acknowledged; the next start carries on from the journal");
                Ok(())
            }
            other => other,
        }
    }

    /// Snapshots every unfinished execution that has events since its last
    /// snapshot, so the next open (a planned restart, an upgrade) loads
    /// each from its snapshot instead of replaying its history. Derived
    /// data: one that cannot be written is reported and skipped.
    async fn snapshot_live(&self) {
        if let crate::store::StorageHealth::Unavailable { reason, .. } =
            self.inner.store.journal().health()
        {
            tracing::warn!(%reason, "no snapshots at shutdown: the journal takes no writes");
            return;
        }
        let live: Vec<Arc<Mutex<Live>>> = self.lock_live().values().cloned().collect();
        let mut written = Vec::new();
        let mut failed: Option<String> = None;
        for live in live {
            let mut live = live.lock().await;
            if live.stale || live.unsnapshotted == 0 {
                continue;
            }
            match self.inner.store.put_snapshot(&live.state) {
                Ok((write, _)) => {
                    live.unsnapshotted = 0;
                    written.push(write);
                }
                Err(e) => failed = failed.or(Some(e.to_string())),
            }
        }
        let count = written.len();
        let mut not_written = 0;
        for write in written {
            if let Err(e) = write.await {
                not_written += 1;
                failed = failed.or(Some(e.to_string()));
            }
        }
        // One line, however many: a snapshot is derived data, and the next
        // open replays what has none.
        match failed {
            Some(error) => tracing::warn!(written = count - not_written, %error,
                "some snapshots at shutdown not written; the next open replays those executions"),
            None if count > 0 => {
                tracing::info!(executions = count, "snapshots written at shutdown")
            }
            None => {}
        }
    }

    /// Reads of the stored history: pages of events, streams, states as
    /// of any event, the whole journal in order.
    pub fn read(&self) -> &History {
        &self.inner.history
    }

    /// The sled journal's group-commit counters (`None` over another
    /// journal).
    pub fn journal_stats(&self) -> Option<JournalStats> {
        self.inner.store.sled().map(|log| log.stats())
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The agent registry (register, list, heartbeat, poll).
    pub fn agents(&self) -> &AgentRegistry {
        &self.inner.agents
    }

    /// Counters and latencies per workflow, step and capability.
    pub fn metrics(&self) -> metrics::Figures {
        self.inner.metrics.figures()
    }

    /// Runs tasks of `capability` in this process instead of handing them
    /// to agents, from now on: tasks already queued for agents stay there
    /// (give handlers in [`EngineConfig::handlers`] to have them from the
    /// start, recovered tasks included). Not `http`: the engine performs
    /// that capability itself, whatever handler is registered for it.
    pub fn register_handler(&self, capability: &str, handler: Arc<dyn TaskHandler>) {
        if let Ok(mut h) = self.inner.handlers.write() {
            h.insert(capability.to_string(), handler);
        }
    }

    // ----- what the engine holds in memory -----

    /// The execution's current state (live, or rebuilt from the journal).
    pub async fn state(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        if let Some(live) = self.live_of(id) {
            return Ok(self.lock_fresh(&live).await?.state.clone());
        }
        self.inner
            .store
            .load_state(id)
            .await?
            .ok_or(Error::UnknownExecution(id))
    }

    /// Executions, in id order, optionally filtered.
    pub fn executions(
        &self,
        workflow: Option<&str>,
        status: Option<crate::machine::Status>,
        after: Option<ExecutionId>,
        limit: usize,
    ) -> Vec<ExecutionSummary> {
        let filter = ListFilter {
            workflow: workflow.map(str::to_owned),
            statuses: status.into_iter().collect(),
            ..ListFilter::default()
        };
        self.inner.index.list(&filter, after, limit)
    }

    /// Up to `limit` executions the filter keeps, after `after` in the
    /// filter's order.
    pub fn executions_where(
        &self,
        filter: &ListFilter,
        after: Option<ExecutionId>,
        limit: usize,
    ) -> Vec<ExecutionSummary> {
        self.inner.index.list(filter, after, limit)
    }

    /// How many executions the engine knows, by status.
    pub fn status_counts(&self) -> std::collections::BTreeMap<crate::machine::Status, u64> {
        self.inner.index.status_counts()
    }

    pub fn summary(&self, id: ExecutionId) -> Option<ExecutionSummary> {
        self.inner.index.summary(id)
    }

    /// The execution's state once it has ended, or `None` if it is still
    /// running when `wait` has passed (start-and-wait).
    pub async fn wait_for_end(
        &self,
        id: ExecutionId,
        wait: std::time::Duration,
    ) -> Result<Option<ExecutionState>, Error> {
        let ended = self.inner.waiters.register(id);
        let summary = self.summary(id).ok_or(Error::UnknownExecution(id))?;
        if summary.status.is_terminal() {
            drop(ended);
            self.inner.waiters.forget_gone(id);
            let state = self.state(id).await?;
            // A redrive may have reopened it in between: then it runs.
            return Ok(state.status.is_terminal().then_some(state));
        }
        match tokio::time::timeout(wait, ended).await {
            Ok(Ok(state)) => Ok(Some(state)),
            // The wait ran out (or the engine let go of its waiters).
            Ok(Err(_)) | Err(_) => {
                self.inner.waiters.forget_gone(id);
                Ok(None)
            }
        }
    }

    /// Waits until the execution has ended and returns its final state.
    pub async fn wait_until_ended(&self, id: ExecutionId) -> Result<ExecutionState, Error> {
        loop {
            let ended = self.inner.waiters.register(id);
            if self.summary(id).is_none() {
                // The journal decides what exists: its records are visible a
                // moment before the committing owner records the summary.
                if self.read().last_seq(id).await?.is_none() {
                    return Err(Error::UnknownExecution(id));
                }
            } else if self.summary(id).is_some_and(|s| s.status.is_terminal()) {
                drop(ended);
                self.inner.waiters.forget_gone(id);
                let state = self.state(id).await?;
                // A redrive may have reopened it in between: wait on.
                if state.status.is_terminal() {
                    return Ok(state);
                }
                continue;
            }
            match ended.await {
                Ok(state) => return Ok(state),
                // The engine let go of its waiters (it is being dropped).
                Err(_) => return Err(Error::ShuttingDown),
            }
        }
    }

    // ----- small helpers the modules share -----

    fn live_of(&self, id: ExecutionId) -> Option<Arc<Mutex<Live>>> {
        self.lock_live().get(&id).cloned()
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Arc<Mutex<Live>>>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_catalog(&self) -> Result<std::sync::RwLockReadGuard<'_, WorkflowCatalog>, Error> {
        self.inner.catalog.read().map_err(|_| Error::Poisoned)
    }

    fn write_catalog(&self) -> Result<std::sync::RwLockWriteGuard<'_, WorkflowCatalog>, Error> {
        self.inner.catalog.write().map_err(|_| Error::Poisoned)
    }
}
