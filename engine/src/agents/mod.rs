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
//! statistics; `health` an agent's recent results, effective slots and
//! score; `gate` what may keep an agent from a capability (per-agent
//! circuit breakers, kept by the runtime); `validate` the registration
//! rules; `task` and `error` the public types. This file is the
//! cheap-to-clone handle: one lock, the clock, and the wake-ups of waiting
//! polls.
//!
//! A deadline is missed when the clock *reaches* it (`now >= deadline`), so a
//! runtime that sleeps until [`AgentRegistry::next_deadline_ms`] and then calls
//! [`AgentRegistry::expired`] always finds the task due.
//!
//! # Routing by health
//!
//! Every figure below is over an agent's last [`HEALTH_WINDOW_TASKS`] (20)
//! ended tasks (settled or timed out; a timeout is a failure): `n` of them,
//! `f` failed, held `h` ms in all (claim to end). A fresh registration
//! starts with none. A task it has not had yet counts as a success, so the
//! rate is `r = (20 - f) / 20`: each recent failure takes a twentieth off,
//! and one failure of a fresh agent barely counts.
//!
//! - **Effective slots**: `slots = max(1, ceil(maxConcurrency × r))`. An
//!   agent never claims past its effective slots: one that failed ten of
//!   its last twenty holds half as many at once, one that failed them all
//!   one at a time, and it gets its slots back as successes push the
//!   failures out of the window.
//! - **Score**: `score = r × speed × free / slots`, with `speed = 1 / (1 +
//!   (h / n) / 1000)` (1 when `n = 0`: a task held a second on average
//!   halves it) and `free` its effective slots not taken. With `n > 0`
//!   that is `(20 - f) · 1000n · free / (20 · (1000n + h) · slots)`; with
//!   `n = 0`, `free / slots`. It is in `0..=1`, compared as an exact
//!   fraction.
//! - **Clearly better**: a score more than 1.5 times another
//!   ([`CLEARLY_BETTER`]). Any positive score is clearly better than 0.
//! - **Deferral**: a claim by agent A passes over a queued task T of
//!   capability C (A gets nothing for it now; a waiting poll keeps
//!   waiting) exactly when the set B of *other* agents that are waiting in
//!   a poll, offer C, may take T (inside its `agentVersion` range, and let
//!   by the gate), have a free effective slot, and have a score clearly
//!   better than A's, is not empty, and the tasks of C queued now are no
//!   more than the sum over B of `min(free slots, what its waiting polls
//!   would take)`. So A still takes what the better agents cannot, and
//!   the agent with the best score among those that could take T never
//!   passes it over.
//! - **No task stranded**: when an agent some claim passed a task over for
//!   stops waiting or takes tasks itself, and whenever a claim ends, the
//!   waiting polls look again; so a queued task is never left while an
//!   agent that could take it waits in a poll.
//!
//! The figures are in [`AgentInfo::health`]. Nothing here depends on
//! time passing: a score changes only when a claim starts or ends.

mod agent;
mod caps;
mod error;
mod gate;
mod health;
mod queue;
mod state;
mod task;
mod validate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::limits::CapabilityLimits;

pub use agent::{AgentId, AgentInfo, AgentOptions, AgentStatus};
pub use caps::CapabilityStanding;
pub use error::AgentError;
pub use gate::ClaimGate;
pub use health::{CLEARLY_BETTER, HEALTH_LATENCY_UNIT_MS, HEALTH_WINDOW_TASKS, Health};
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
    /// was queued or requeued, a slot was freed, an agent a claim left a
    /// task for stopped waiting or took tasks, or the gate's answer changed.
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

    /// Sets what may keep agents from their capabilities (`None`:
    /// nothing). The gate is asked with the registry locked: see
    /// [`ClaimGate`].
    pub fn set_gate(&self, gate: Option<Arc<dyn ClaimGate>>) {
        self.state().set_gate(gate);
        self.wake_polls();
    }

    /// Waiting polls look again: for a gate whose answer changed from no to
    /// yes by itself (a cool-down passed, a setting removed).
    pub fn wake(&self) {
        self.wake_polls();
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
        let now_ms = self.now_ms();
        let withdrawn = self.state().withdraw(task_id, now_ms);
        if withdrawn {
            self.wake_polls();
        }
        withdrawn
    }

    /// Claims, without waiting, up to `max` tasks for the agent (see
    /// [`AgentRegistry::poll`] for the limits and the order).
    pub fn claim(&self, agent: &AgentId, max: usize) -> Result<Vec<ClaimedTask>, AgentError> {
        let now_ms = self.now_ms();
        let (claimed, wake) = self.state().claim(agent, max, now_ms)?;
        if wake {
            self.wake_polls();
        }
        Ok(claimed)
    }

    /// Claims up to `max` tasks whose capability the agent offers, but no more
    /// than the options' `poll_max_tasks` nor its free effective slots (an
    /// agent at capacity gets none: that is how routing respects load).
    /// Oldest scheduled first across its capabilities, tasks put back by an
    /// unregister before all others; capabilities the gate keeps it from
    /// are left out, and tasks that healthier waiting agents can take are
    /// passed over (see the module doc).
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
                waiting = Some(WaitingPoll::start(self, *agent, max));
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

    /// Sets (or with `None` removes) `capability`'s limits across all
    /// agents; polls look again.
    pub fn set_capability_limits(&self, capability: &str, limits: Option<CapabilityLimits>) {
        self.state().caps.set(capability, limits);
        self.wake_polls();
    }

    /// Claims of `capability` recorded before a restart (their instants,
    /// oldest first): its rate window starts with them.
    pub fn seed_capability_claims(&self, capability: &str, claims: impl IntoIterator<Item = u64>) {
        self.state().caps.seed(capability, claims);
    }

    /// Queues a task claimed before a restart and still outstanding: an
    /// agent may still be working on it, so it holds a slot of its capability's concurrency
    /// limit until it is claimed again, settled or withdrawn, or
    /// `until_ms` (when its lease would have run out).
    pub fn enqueue_recovered(&self, task: TaskSpec, until_ms: u64) -> bool {
        let (capability, id) = (task.capability.clone(), task.id.clone());
        let mut state = self.state();
        let queued = state.enqueue(task);
        if queued {
            state.caps.phantom(&capability, &id, until_ms);
        }
        drop(state);
        if queued {
            self.wake_polls();
        }
        queued
    }

    /// Whether claims of `capability` count in a rate window (the runtime
    /// records them before the agent hears of them).
    pub fn rate_limited(&self, capability: &str) -> bool {
        self.state().caps.rate_limited(capability)
    }

    /// The limits `capability` has in the registry.
    pub fn capability_limits(&self, capability: &str) -> Option<CapabilityLimits> {
        self.state().caps.limits(capability)
    }

    /// Where `capability` stands under its limits now, and how many of its
    /// tasks are queued.
    pub fn capability_standing(&self, capability: &str) -> (CapabilityStanding, usize) {
        let now_ms = self.now_ms();
        let mut state = self.state();
        (
            state.capability_standing(capability, now_ms),
            state.queued_of(capability),
        )
    }

    /// When a full rate window next has room (polls waiting on it must
    /// look again then).
    pub fn next_capability_room_ms(&self) -> Option<u64> {
        let now_ms = self.now_ms();
        self.state().caps.next_room_ms(now_ms)
    }

    /// Puts claims back at the front of their queues (same attempt): the
    /// runtime could not record them, so no agent may have them.
    pub fn give_back(&self, task_ids: &[String]) {
        let now_ms = self.now_ms();
        self.state().give_back(task_ids, now_ms);
        self.wake_polls();
    }

    /// Whether task `id` is queued or claimed.
    pub fn is_outstanding(&self, id: &str) -> bool {
        self.state().is_outstanding(id)
    }

    /// Tasks queued or claimed.
    pub fn outstanding(&self) -> usize {
        self.state().outstanding()
    }

    /// The ids of the tasks queued or claimed.
    pub fn outstanding_ids(&self) -> Vec<String> {
        self.state().outstanding_ids()
    }
}

/// Marks an agent as waiting in a poll for as long as it lives, so a long
/// poll (up to a minute) never shows a live agent as offline, and so other
/// agents' claims may leave tasks for it. Ends on drop, which also covers a
/// poll future dropped mid-wait; if a claim left a task for the agent, the
/// other polls then look again.
#[derive(Debug)]
struct WaitingPoll {
    registry: AgentRegistry,
    agent: AgentId,
    max: usize,
}

impl WaitingPoll {
    fn start(registry: &AgentRegistry, agent: AgentId, max: usize) -> Self {
        let now_ms = registry.now_ms();
        registry.state().poll_waiting(&agent, true, max, now_ms);
        WaitingPoll {
            registry: registry.clone(),
            agent,
            max,
        }
    }
}

impl Drop for WaitingPoll {
    fn drop(&mut self) {
        let now_ms = self.registry.now_ms();
        let wake = self
            .registry
            .state()
            .poll_waiting(&self.agent, false, self.max, now_ms);
        if wake {
            self.registry.wake_polls();
        }
    }
}
