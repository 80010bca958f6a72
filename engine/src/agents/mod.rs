//! The agent registry: which agents (workers, in any language) are registered
//! with which capabilities, the queue of tasks per capability, and which agent
//! holds which task until when.
//!
//! Owns registrations, queue order, claims, leases, task heartbeats, and
//! deadlines (schedule-to-start, start-to-close, heartbeat). Agents long-poll
//! [`AgentRegistry::poll`] to claim tasks for their capabilities; the runtime
//! queues tasks with [`AgentRegistry::enqueue`], settles them when it accepts a
//! result, and collects missed deadlines with [`AgentRegistry::expired`].
//!
//! It must never touch the journal, decide what a result or a timeout means
//! for an execution (the runtime and its retry policy do), or know HTTP. Every
//! deadline is measured with the [`Clock`], so tests move a simulated clock
//! and never sleep; only the long-poll wait uses real time, because it is a
//! network wait, not a workflow deadline. Everything here lives in memory: after
//! a restart agents register again and the runtime queues the outstanding
//! tasks again under the same ids.
//!
//! Layout: `state` holds every operation as synchronous code that is told the
//! time; `queue` the tasks and their deadlines; `agent` the agent records and
//! statistics; `validate` the registration rules; `task` and `error` the
//! public types. This file is the cheap-to-clone handle: one lock, the clock,
//! and the wake-ups of waiting polls.
//!
//! A deadline is missed when the clock *reaches* it (`now >= deadline`), so a
//! runtime that sleeps until [`AgentRegistry::next_deadline_ms`] and then calls
//! [`AgentRegistry::expired`] always finds the task due.

mod agent;
mod error;
mod queue;
mod state;
mod task;
mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;

pub use agent::{AgentId, AgentInfo, AgentOptions, AgentStatus};
pub use error::AgentError;
pub use queue::{AGING_MS_PER_LEVEL, FAIR_TURN_MS};
pub use task::{ClaimedTask, Expired, Outcome, Settled, TaskSpec, TimeoutKind};
pub use validate::{
    AgentTraits, CAPABILITIES_MAX, HEARTBEAT_TIMEOUT_MS_MAX, HEARTBEAT_TIMEOUT_MS_MIN,
    MAX_CONCURRENCY_MAX, NAME_CHARS_MAX,
};

use state::State;

/// No poll waits longer than a day whatever the options say, so the wait's
/// end is always a representable instant.
const POLL_WAIT_CEILING_MS: u64 = 86_400_000;

/// The handle to the registry; clones share one registry.
#[derive(Debug, Clone)]
pub struct AgentRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Wakes waiting polls whenever a claim may have become possible: a task
    /// was queued or requeued, or a slot was freed.
    wake: Notify,
}

impl AgentRegistry {
    pub fn new(clock: Arc<dyn Clock>, options: AgentOptions) -> Self {
        AgentRegistry {
            inner: Arc::new(Inner {
                clock,
                state: Mutex::new(State::new(options)),
                wake: Notify::new(),
            }),
        }
    }

    pub fn options(&self) -> AgentOptions {
        self.state().options.clone()
    }

    /// The state, locked. No operation panics halfway through on anything a
    /// caller can send, so a poisoned lock still guards consistent state and
    /// is taken over rather than turning every later call into a panic.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    fn wake_polls(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Registers an agent: a name of 1 to [`NAME_CHARS_MAX`] characters (no
    /// control characters or bidirectional controls), 1 to
    /// [`CAPABILITIES_MAX`] well-formed capabilities (duplicates are
    /// dropped), and 1 to [`MAX_CONCURRENCY_MAX`] slots
    /// (`None`: the default of the options).
    pub fn register(
        &self,
        name: &str,
        capabilities: &[String],
        max_concurrency: Option<u32>,
    ) -> Result<AgentId, AgentError> {
        self.register_with(name, capabilities, max_concurrency, None)
    }

    /// Registers an agent as [`Self::register`] does, bound to the access
    /// token `token` (its name): what the agent does is then the token's.
    pub fn register_with(
        &self,
        name: &str,
        capabilities: &[String],
        max_concurrency: Option<u32>,
        token: Option<&str>,
    ) -> Result<AgentId, AgentError> {
        self.register_as(
            name,
            capabilities,
            max_concurrency,
            token,
            &AgentTraits::default(),
        )
    }

    /// Registers an agent as [`Self::register_with`] does, with what it
    /// declares about itself: a version (semver; task steps may require a
    /// range of it) and its heartbeat timeout (from
    /// [`HEARTBEAT_TIMEOUT_MS_MIN`] to [`HEARTBEAT_TIMEOUT_MS_MAX`]).
    pub fn register_as(
        &self,
        name: &str,
        capabilities: &[String],
        max_concurrency: Option<u32>,
        token: Option<&str>,
        traits: &AgentTraits,
    ) -> Result<AgentId, AgentError> {
        let now_ms = self.now_ms();
        let id =
            self.state()
                .register(name, capabilities, max_concurrency, token, traits, now_ms)?;
        tracing::info!(agent = %id, name, capabilities = ?capabilities, token,
            version = traits.version.as_deref(), "agent registered");
        Ok(id)
    }

    /// Removes an agent. The tasks it held go back to the front of their
    /// queues (same spec, same attempt); their ids are returned. Its waiting
    /// polls end with [`AgentError::UnknownAgent`].
    pub fn unregister(&self, id: &AgentId) -> Result<Vec<String>, AgentError> {
        let now_ms = self.now_ms();
        let requeued = self.state().unregister(id, now_ms)?;
        self.wake_polls();
        tracing::info!(agent = %id, requeued = requeued.len(), "agent unregistered");
        Ok(requeued)
    }

    /// Unregisters every agent not seen for at least `idle_ms` (and not
    /// waiting in a poll), requeuing its tasks as [`AgentRegistry::unregister`]
    /// does. Agents that crash never unregister; this keeps them from piling up.
    pub fn forget_idle(&self, idle_ms: u64) -> Vec<(AgentId, Vec<String>)> {
        let now_ms = self.now_ms();
        let forgotten = self.state().forget_idle(idle_ms, now_ms);
        if !forgotten.is_empty() {
            self.wake_polls();
        }
        forgotten
    }

    /// The agent is alive: last seen now.
    pub fn heartbeat(&self, id: &AgentId) -> Result<(), AgentError> {
        let now_ms = self.now_ms();
        self.state().seen(id, now_ms)
    }

    pub fn get(&self, id: &AgentId) -> Option<AgentInfo> {
        let now_ms = self.now_ms();
        self.state().info(id, now_ms)
    }

    /// Every registered agent, in registration order.
    pub fn list(&self) -> Vec<AgentInfo> {
        let now_ms = self.now_ms();
        self.state().list(now_ms)
    }

    /// Queues a task and wakes waiting polls. A task whose id is already
    /// outstanding (queued or claimed) is ignored; returns whether it was queued.
    pub fn enqueue(&self, task: TaskSpec) -> bool {
        let queued = self.state().enqueue(task);
        if queued {
            self.wake_polls();
        }
        queued
    }

    /// The task is no longer wanted (its execution was cancelled or ended):
    /// drops it from its queue or its claim, without touching any statistics.
    /// Returns whether it was outstanding.
    pub fn withdraw(&self, task_id: &str) -> bool {
        let withdrawn = self.state().withdraw(task_id);
        if withdrawn {
            self.wake_polls();
        }
        withdrawn
    }

    /// Claims, without waiting, up to `max` tasks for the agent (see
    /// [`AgentRegistry::poll`] for the limits and the order).
    pub fn claim(&self, agent: &AgentId, max: usize) -> Result<Vec<ClaimedTask>, AgentError> {
        let now_ms = self.now_ms();
        self.state().claim(agent, max, now_ms)
    }

    /// Claims up to `max` tasks whose capability the agent offers, but no more
    /// than the options' `poll_max_tasks` nor its free slots (an agent at
    /// capacity gets none: that is how routing respects load). Oldest
    /// scheduled first across its capabilities, tasks put back by an
    /// unregister before all others.
    ///
    /// If there is nothing to claim, waits up to `wait_ms` (capped by the
    /// options' `poll_wait_max_ms`) of real time for a task or a free slot,
    /// then returns what it could claim, possibly nothing. `max == 0` or
    /// `wait_ms == 0` never waits. A claim lasts until now + `lease_ms`, or
    /// now + `heartbeat_ms` if that is sooner.
    ///
    /// Dropping the future loses nothing: tasks are claimed only in the same
    /// step that returns them. While it waits, the agent counts as seen.
    pub async fn poll(
        &self,
        agent: &AgentId,
        wait_ms: u64,
        max: usize,
    ) -> Result<Vec<ClaimedTask>, AgentError> {
        let wait_ms = wait_ms
            .min(self.options().poll_wait_max_ms)
            .min(POLL_WAIT_CEILING_MS);
        let until = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let mut waiting: Option<WaitingPoll> = None;
        let mut timed_out = false;
        loop {
            // Registered before looking, so a wake-up between the look and
            // the wait is not lost.
            let mut notified = std::pin::pin!(self.inner.wake.notified());
            notified.as_mut().enable();
            let claimed = self.claim(agent, max)?;
            if !claimed.is_empty() || timed_out || wait_ms == 0 || max == 0 {
                return Ok(claimed);
            }
            if waiting.is_none() {
                waiting = Some(WaitingPoll::start(self, *agent));
            }
            timed_out = tokio::time::timeout_at(until, notified).await.is_err();
        }
    }

    /// Extends the claim on a task from now, as a fresh claim would last.
    /// With `agent`, refuses a task claimed by another agent
    /// ([`AgentError::NotYours`]); a task not claimed is
    /// [`AgentError::NotOutstanding`]. The holder counts as seen.
    pub fn task_heartbeat(
        &self,
        task_id: &str,
        agent: Option<&AgentId>,
    ) -> Result<ClaimedTask, AgentError> {
        let now_ms = self.now_ms();
        self.state().task_heartbeat(task_id, agent, now_ms)
    }

    /// The runtime accepted a result for the task: removes it (queued or
    /// claimed) and counts it in the holder's statistics.
    /// [`AgentError::NotOutstanding`] if it is not outstanding (unknown,
    /// settled, withdrawn or expired), and then nothing changes.
    pub fn settle(&self, task_id: &str, outcome: Outcome) -> Result<Settled, AgentError> {
        let now_ms = self.now_ms();
        let settled = self.state().settle(task_id, outcome, now_ms)?;
        if settled.agent.is_some() {
            self.wake_polls();
        }
        Ok(settled)
    }

    /// The agent holding the task, if it is claimed.
    pub fn claimed_by(&self, task_id: &str) -> Option<AgentId> {
        self.state().claimed_by(task_id)
    }

    /// Removes and returns every task whose deadline the clock has reached,
    /// earliest deadline first: a claim past its lease
    /// ([`TimeoutKind::StartToClose`], or [`TimeoutKind::Heartbeat`] when the
    /// heartbeat interval is what ran out), a queued task past
    /// `scheduled_at_ms + schedule_to_start_ms`
    /// ([`TimeoutKind::ScheduleToStart`]). A timed-out claim frees its slot and
    /// counts as a failure of its agent.
    pub fn expired(&self) -> Vec<Expired> {
        let now_ms = self.now_ms();
        let expired = self.state().expired(now_ms);
        if expired.iter().any(|e| e.agent.is_some()) {
            self.wake_polls();
        }
        expired
    }

    /// The earliest deadline of any outstanding task: when to call
    /// [`AgentRegistry::expired`] next.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.state().next_deadline_ms()
    }

    /// Queued (unclaimed) tasks per capability. Every capability a registered
    /// agent offers is present, at 0 if nothing waits for it.
    pub fn queue_sizes(&self) -> BTreeMap<String, usize> {
        self.state().queue_sizes()
    }

    /// When the longest-waiting queued task of each capability was
    /// scheduled, in ms since the Unix epoch (capabilities with none queued
    /// are left out).
    pub fn oldest_queued(&self) -> BTreeMap<String, u64> {
        self.state().oldest_queued()
    }

    /// Tasks queued or claimed.
    pub fn outstanding(&self) -> usize {
        self.state().outstanding()
    }
}

/// Marks an agent as waiting in a poll for as long as it lives, so a long
/// poll (up to a minute) never shows a live agent as offline. Ends on drop,
/// which also covers a poll future dropped mid-wait.
#[derive(Debug)]
struct WaitingPoll {
    registry: AgentRegistry,
    agent: AgentId,
}

impl WaitingPoll {
    fn start(registry: &AgentRegistry, agent: AgentId) -> Self {
        let now_ms = registry.now_ms();
        registry.state().poll_waiting(&agent, true, now_ms);
        WaitingPoll {
            registry: registry.clone(),
            agent,
        }
    }
}

impl Drop for WaitingPoll {
    fn drop(&mut self) {
        let now_ms = self.registry.now_ms();
        self.registry
            .state()
            .poll_waiting(&self.agent, false, now_ms);
    }
}
