//! Circuit breakers on a running engine: setting and removing them, the
//! gate every task passes before it is handed out, the results that trip
//! them, and the log that records each change of state.
//!
//! Per-agent breakers (`perAgent` settings) are asked by the agent
//! registry instead, through its [`ClaimGate`]: at every claim (an agent
//! whose breaker is open is not given the capability's tasks; past the
//! cool-down it may take one probe), and when a claim ends (a result the
//! runtime stored and settled, a timeout, or no result). The registry
//! calls the gate with its own lock held, and the gate takes the table's:
//! nothing here calls the registry with the table locked. A loop wakes the
//! waiting polls when an agent's cool-down ends, since nothing else
//! happens then.
//!
//! A change of settings is refused whole, appended, then folded. A change
//! of state is made in memory first (a task must not wait for the journal
//! to learn that it fails fast) and recorded right after, in order, by one
//! task that retries while the journal refuses writes; a restart folds the
//! recorded state back. Results are seen after they are stored, so what a
//! breaker counts is history, and a fail-fast is itself a recorded
//! `task_failed` of type `circuit_open` that retries and error routes treat
//! like any failure.
//!
//! On a journal several servers share, a capability's breaker is the
//! home's (see `home`, `dispatch`): tasks for agents pass it there, and a
//! task a server performs itself (`http`, an in-process handler) is asked
//! of it too, when that server knows the capability has a breaker (it
//! follows the breakers stream): the server sends the task's id to the
//! home and performs it once the home lets it go (`Message::Admitted`); a
//! task the home fails fast is failed there and the failure delivered to
//! the execution; results are counted at the home. A capability with no
//! breaker costs nothing of that. Between a breaker being set and a
//! server reading it, that server's tasks of the capability go unasked.
//!
//! Owns the order of those writes. It must never decide a transition
//! (`breakers::breaker` does).

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use super::inbox::{Message, ToHome};
use super::{Engine, Inner};
use crate::ExecutionId;
use crate::agents::{ClaimGate, Outcome};
use crate::breakers::{BreakerEvent, BreakerSettings, BreakerState, Breakers, Gate};
use crate::error::{BreakerError, Error};
use crate::machine::{Effect, ErrorInfo, Trigger, error_types};
use crate::model::check_capability;

/// How long the log waits before appending again after a refused write.
const RETRY_MS: u64 = 1_000;

/// A breaker as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerInfo {
    pub capability: String,
    pub settings: BreakerSettings,
    pub state: BreakerState,
    /// When its state last changed (or it was set).
    pub changed_at_ms: u64,
    pub set_at_ms: u64,
    pub set_by: Option<String>,
    /// Failures within the window now (counted since the server started).
    pub recent_failures: usize,
    /// How many times it has opened.
    pub opened: u64,
    /// With `per_agent` settings, each agent's breaker that there is (made
    /// at its first failure), by name; empty otherwise.
    pub agents: Vec<AgentBreakerInfo>,
}

/// One agent's breaker of a capability, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBreakerInfo {
    /// The agent's name.
    pub agent: String,
    pub state: BreakerState,
    /// When its state last changed (or it was made).
    pub changed_at_ms: u64,
    /// Failures of this agent within the window now.
    pub recent_failures: usize,
    /// How many times it has opened.
    pub opened: u64,
}

/// Where the state changes go to be recorded.
pub(super) type BreakerLog = mpsc::UnboundedSender<BreakerEvent>;

impl Engine {
    /// Sets (or changes) `capability`'s breaker on behalf of `by`. New
    /// settings keep the state it is in, unless they switch `per_agent`:
    /// then it starts closed, with no agent's breaker.
    pub async fn set_breaker(
        &self,
        capability: &str,
        settings: BreakerSettings,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<BreakerInfo, Error> {
        let mut problems = Vec::new();
        if let Err(p) = check_capability(capability) {
            problems.push(p);
        }
        if let Err(p) = settings.check() {
            problems.extend(p);
        }
        if !problems.is_empty() {
            return Err(BreakerError::Invalid(problems).into());
        }
        let event = BreakerEvent::BreakerSet {
            capability: capability.to_owned(),
            settings,
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.record_breaker(&event).await?;
        // An agent's breaker may have gone, or its cool-down shrunk.
        self.inner.agents.wake();
        self.breaker(capability)
    }

    /// Removes `capability`'s breaker on behalf of `by`; its tasks are
    /// handed out again whatever it said. Returns it as it was.
    pub async fn remove_breaker(
        &self,
        capability: &str,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<BreakerInfo, Error> {
        let old = self.breaker(capability)?;
        let event = BreakerEvent::BreakerRemoved {
            capability: capability.to_owned(),
            by: by.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        self.record_breaker(&event).await?;
        self.inner.agents.wake();
        Ok(old)
    }

    /// Every breaker, by capability.
    pub fn breakers(&self) -> Result<Vec<BreakerInfo>, Error> {
        let now = self.inner.clock.now_ms();
        let table = self.lock_breakers()?;
        Ok(table.list().map(|(c, e)| info(&table, c, e, now)).collect())
    }

    pub fn breaker(&self, capability: &str) -> Result<BreakerInfo, Error> {
        let now = self.inner.clock.now_ms();
        let table = self.lock_breakers()?;
        table
            .get(capability)
            .map(|e| info(&table, capability, e, now))
            .ok_or_else(|| BreakerError::Unknown(capability.to_owned()).into())
    }

    /// Whether task `task` of `capability` may be handed out now; if not,
    /// it is failed fast (`circuit_open`) for execution `id`. A capability
    /// with per-agent breakers always lets it: the registry asks the
    /// agent's breaker when an agent claims it.
    pub(super) fn breaker_lets(&self, id: ExecutionId, capability: &str, task: &str) -> bool {
        let now = self.inner.clock.now_ms();
        let gate = match self.lock_breakers() {
            Ok(mut table) => match table.get_mut(capability) {
                Some(entry) if !entry.breaker.settings.per_agent => entry.breaker.gate(task, now),
                _ => Gate::Pass,
            },
            Err(_) => Gate::Pass,
        };
        match gate {
            Gate::Pass => true,
            Gate::Probe(transition) => {
                tracing::info!(capability, task, "circuit breaker half-open: a probe goes");
                self.log_breaker(BreakerEvent::of(capability, None, transition));
                true
            }
            Gate::Refuse => {
                let error = ErrorInfo {
                    retryable: Some(true),
                    ..ErrorInfo::new(
                        error_types::CIRCUIT_OPEN,
                        format!(
                            "the circuit breaker of capability {capability} is open: the task \
                             failed fast, no agent was asked"
                        ),
                    )
                };
                let trigger = Trigger::TaskFailed {
                    task: task.to_owned(),
                    error,
                    retry_after_ms: None,
                };
                let engine = self.clone();
                self.inner
                    .tasks
                    .spawn(async move { engine.deliver(id, trigger).await });
                false
            }
        }
    }

    /// Whether `capability` has a breaker of its own (not one per agent),
    /// as this engine knows: on a shared journal, the home's, followed.
    pub(super) fn has_breaker(&self, capability: &str) -> bool {
        self.lock_breakers().is_ok_and(|table| {
            table
                .get(capability)
                .is_some_and(|e| !e.breaker.settings.per_agent)
        })
    }

    /// Whether task `task` of `capability`, which this engine performs
    /// itself, goes now: its breaker asked here (this is the home, or the
    /// capability has none), or, if the home keeps one, asked there (the
    /// task waits for the home's answer: [`Engine::admitted`]).
    pub(super) fn lets_here(&self, id: ExecutionId, capability: &str, task: &str) -> bool {
        if self.home_work_here(capability) {
            return self.breaker_lets(id, capability, task);
        }
        self.asked_home().insert(task.to_owned());
        self.to_home(
            id,
            ToHome::Admit {
                execution: id,
                task: task.to_owned(),
                capability: capability.to_owned(),
            },
        );
        false
    }

    /// At the home: asks the breaker of a task another server performs,
    /// and tells that server when it may go (a task failed fast is failed
    /// here, the failure delivered to its execution).
    pub(super) fn admit(&self, execution: ExecutionId, task: String, capability: &str) {
        if !self.breaker_lets(execution, capability, &task) {
            return;
        }
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            let message = Message::Admitted { task };
            // Kept in the inbox until taken: a failure to send is NATS
            // down, and the task stays waiting until its execution's
            // server asks again (a recovery re-arms it).
            if let Err(e) = engine.send(execution, &message).await {
                tracing::warn!(%execution, error = %e, "a task let go by its breaker: not sent");
            }
        });
    }

    /// The home let task `task` of execution `id` go: performed, if this
    /// engine asked and its execution still wants it.
    pub(super) async fn admitted(&self, id: ExecutionId, task: &str) {
        if !self.asked_home().remove(task) {
            return;
        }
        let Some(live) = self.live_of(id) else { return };
        let effect = {
            let live = live.lock().await;
            live.armed
                .values()
                .find(|e| matches!(e, Effect::Task { task: t, .. } if t == task))
                .cloned()
        };
        if let Some(effect) = effect {
            self.perform_here(id, &effect);
        }
    }

    /// Forgets that the home was asked about `task` (its execution no
    /// longer wants it, or another server drives it now).
    pub(super) fn no_longer_asked(&self, task: &str) {
        self.asked_home().remove(task);
    }

    fn asked_home(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner
            .asked_home
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A task handed out will have no result (its execution no longer
    /// wants it): if it was its capability breaker's probe, the next task
    /// is, so a half-open breaker never waits for a result that cannot come.
    pub(super) fn breaker_released(&self, capability: &str, task: &str) {
        if let Ok(mut table) = self.lock_breakers()
            && let Some(entry) = table.get_mut(capability)
        {
            entry.breaker.released(task);
        }
    }

    /// A result just recorded, of a task of `capability`: counts for its
    /// breaker (a capability's own; agents' breakers count results when
    /// the registry settles the claim).
    pub(super) fn breaker_counts(&self, capability: &str, task: &str, failed: bool, now: u64) {
        let Ok(mut table) = self.lock_breakers() else {
            return;
        };
        let Some(entry) = table
            .get_mut(capability)
            .filter(|e| !e.breaker.settings.per_agent)
        else {
            return;
        };
        let transition = if failed {
            entry.breaker.failed(task, now)
        } else {
            entry.breaker.succeeded(task)
        };
        drop(table);
        if let Some(transition) = transition {
            tracing::warn!(capability = %capability, ?transition, "circuit breaker changed");
            self.log_breaker(BreakerEvent::of(capability, None, transition));
        }
    }

    fn log_breaker(&self, event: BreakerEvent) {
        if self.inner.breaker_log.send(event).is_err() {
            tracing::warn!("the breaker log has stopped: a breaker change is not recorded");
        }
    }

    /// Appends `event` to the breakers stream and folds it, after whatever
    /// the log is appending.
    async fn record_breaker(&self, event: &BreakerEvent) -> Result<(), Error> {
        let _exclusive = self.inner.changing_breakers.lock().await;
        let now = self.inner.clock.now_ms();
        let seq = self.lock_breakers()?.seq + 1;
        self.inner.store.append_breaker(seq, event, now).await?;
        self.lock_breakers()?.note_recorded(seq, now, event);
        Ok(())
    }

    /// Records the state changes sent to the log, in order, retrying each
    /// while the journal refuses writes.
    pub(super) fn run_breaker_log(&self, mut changes: mpsc::UnboundedReceiver<BreakerEvent>) {
        let weak = Arc::downgrade(&self.inner);
        let clock = self.inner.clock.clone();
        self.inner.tasks.spawn(async move {
            while let Some(event) = changes.recv().await {
                loop {
                    let Some(engine) = super::upgrade(&weak) else {
                        return;
                    };
                    // Only the home records (see `home`): elsewhere (a
                    // breaker of tasks performed here) the state stays in
                    // memory.
                    if !engine.is_home() {
                        tracing::debug!(
                            kind = event.kind(),
                            "breaker change kept here: not the home"
                        );
                        break;
                    }
                    match engine.record_breaker(&event).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, kind = event.kind(),
                                "breaker change not recorded yet; trying again");
                            drop(engine);
                            clock.sleep_until(clock.now_ms() + RETRY_MS).await;
                        }
                    }
                }
            }
        });
    }

    pub(super) fn lock_breakers(&self) -> Result<std::sync::MutexGuard<'_, Breakers>, Error> {
        self.inner.breakers.lock().map_err(|_| Error::Poisoned)
    }

    /// Makes the agent registry ask the agents' breakers, and starts the
    /// loop that wakes its waiting polls when an agent's cool-down ends.
    pub(super) fn run_agent_breakers(&self) {
        let gate = AgentBreakers {
            engine: Arc::downgrade(&self.inner),
        };
        self.inner.agents.set_gate(Some(Arc::new(gate)));
        let weak = Arc::downgrade(&self.inner);
        let clock = self.inner.clock.clone();
        self.inner.tasks.spawn(async move {
            let mut looked_ms = clock.now_ms();
            loop {
                let Some(engine) = super::upgrade(&weak) else {
                    return;
                };
                let now = clock.now_ms();
                let ends: Vec<u64> = match engine.lock_breakers() {
                    Ok(table) => table
                        .all_agents()
                        .filter_map(|(_, _, e)| e.breaker.cool_down_ends_ms())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                if ends.iter().any(|end| *end > looked_ms && *end <= now) {
                    engine.inner.agents.wake();
                }
                looked_ms = now;
                // A breaker opened from now on ends its cool-down at least
                // `MS_MIN` later, so looking that often misses none.
                let next = ends
                    .into_iter()
                    .filter(|end| *end > now)
                    .fold(now.saturating_add(BreakerSettings::MS_MIN), u64::min);
                drop(engine);
                clock.sleep_until(next).await;
            }
        });
    }
}

/// The agent registry's [`ClaimGate`]: each agent's breaker of each
/// capability with per-agent breakers. Holds the engine weakly (the
/// registry is the engine's).
#[derive(Debug)]
struct AgentBreakers {
    engine: Weak<Inner>,
}

impl AgentBreakers {
    /// `f` over the table, or `otherwise` once the engine is gone.
    fn with<T>(&self, otherwise: T, f: impl FnOnce(&Engine, &mut Breakers) -> T) -> T {
        let Some(engine) = super::upgrade(&self.engine) else {
            return otherwise;
        };
        let Ok(mut table) = engine.lock_breakers() else {
            return otherwise;
        };
        f(&engine, &mut table)
    }
}

impl ClaimGate for AgentBreakers {
    fn admits(&self, agent: &str, capability: &str, now_ms: u64) -> bool {
        self.with(true, |_, table| {
            table
                .agent(capability, agent)
                .is_none_or(|e| e.breaker.admits(now_ms))
        })
    }

    fn claiming(&self, agent: &str, capability: &str, task: &str, now_ms: u64) -> bool {
        self.with(true, |engine, table| {
            let Some(entry) = table.agent_mut(capability, agent) else {
                return true;
            };
            match entry.breaker.gate(task, now_ms) {
                Gate::Pass => true,
                Gate::Probe(transition) => {
                    tracing::info!(
                        capability,
                        agent,
                        task,
                        "an agent's circuit breaker is half-open: it takes a probe"
                    );
                    engine.log_breaker(BreakerEvent::of(capability, Some(agent), transition));
                    true
                }
                Gate::Refuse => false,
            }
        })
    }

    fn ended(
        &self,
        agent: &str,
        capability: &str,
        task: &str,
        outcome: Option<Outcome>,
        now_ms: u64,
    ) {
        self.with((), |engine, table| {
            let transition = match outcome {
                Some(Outcome::Failed) => table
                    .agent_or_new(capability, agent, now_ms)
                    .and_then(|e| e.breaker.failed(task, now_ms)),
                Some(Outcome::Succeeded) => table
                    .agent_mut(capability, agent)
                    .and_then(|e| e.breaker.succeeded(task)),
                None => {
                    if let Some(e) = table.agent_mut(capability, agent) {
                        e.breaker.released(task);
                    }
                    None
                }
            };
            if let Some(transition) = transition {
                tracing::warn!(
                    capability,
                    agent,
                    ?transition,
                    "an agent's circuit breaker changed"
                );
                engine.log_breaker(BreakerEvent::of(capability, Some(agent), transition));
            }
        });
    }
}

fn info(table: &Breakers, capability: &str, e: &crate::breakers::Entry, now: u64) -> BreakerInfo {
    let agents = table
        .agents_of(capability)
        .map(|(agent, a)| AgentBreakerInfo {
            agent: agent.clone(),
            state: a.breaker.state,
            changed_at_ms: a.changed_at_ms,
            recent_failures: a.breaker.recent_failures(now),
            opened: a.opened,
        })
        .collect();
    BreakerInfo {
        capability: capability.to_owned(),
        settings: e.breaker.settings,
        state: e.breaker.state,
        changed_at_ms: e.changed_at_ms,
        set_at_ms: e.set_at_ms,
        set_by: e.set_by.clone(),
        recent_failures: e.breaker.recent_failures(now),
        opened: e.opened,
        agents,
    }
}
