//! [`State`]: the registry's whole state and every operation on it, as plain
//! synchronous code that is told the time.
//!
//! Owns keeping agents and tasks in step: a task is claimed in the queues if
//! and only if its id is in exactly one agent's `claimed` set; and routing
//! by health: which tasks a claim leaves for a healthier waiting agent, and
//! when that means the waiting polls must look again. It must never read a
//! clock, wait, or wake anyone; the handle in `mod.rs` does that, when an
//! operation here says so.
//!
//! Deferral (the rule in the module doc of `agents`): a claim by agent A
//! passes over a queued task T of capability C when the agents B that are
//! waiting in a poll, offer C, may take T (its version range; the gate),
//! have a free slot, and whose score clearly beats A's, could take every
//! queued task of C between them (each B counting its free slots, at most
//! what its waiting polls would take). Each such B is marked `counted_on`;
//! when a counted-on agent stops waiting or takes tasks, the operation
//! says to wake the polls, so a task passed over is looked at again. The
//! agent with the best score among those that could take T never passes
//! it over, so T is never left while an agent that could take it waits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::agent::{Agent, AgentId, AgentInfo, AgentOptions};
use super::caps::{CapabilityStanding, Caps};
use super::error::AgentError;
use super::gate::ClaimGate;
use super::queue::{Entry, Tasks};
use super::task::{ClaimedTask, Expired, Outcome, Settled, TaskSpec, TimeoutKind};
use super::validate;

/// A task taken out of the registry: still queued, or claimed (with the
/// timeout its lease deadline stands for, and the holder's name if it is
/// still registered).
#[derive(Debug)]
enum Released {
    Queued(TaskSpec),
    Claimed(ClaimedTask, TimeoutKind, Option<String>),
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) options: AgentOptions,
    agents: BTreeMap<AgentId, Agent>,
    next_agent_seq: u64,
    tasks: Tasks,
    gate: Option<Arc<dyn ClaimGate>>,
    /// Capabilities' limits across all agents.
    pub(super) caps: Caps,
}

impl State {
    pub(super) fn new(options: AgentOptions) -> Self {
        State {
            options,
            agents: BTreeMap::new(),
            next_agent_seq: 0,
            tasks: Tasks::default(),
            gate: None,
            caps: Caps::default(),
        }
    }

    pub(super) fn set_gate(&mut self, gate: Option<Arc<dyn ClaimGate>>) {
        self.gate = gate;
    }

    /// Whether the gate lets `agent` take tasks of `capability` now.
    fn admits(&self, agent: &str, capability: &str, now_ms: u64) -> bool {
        self.gate
            .as_ref()
            .is_none_or(|gate| gate.admits(agent, capability, now_ms))
    }

    /// Tells the gate that `agent`'s claim on `claim` ended.
    fn ended(
        &self,
        agent: Option<&str>,
        claim: &ClaimedTask,
        outcome: Option<Outcome>,
        now_ms: u64,
    ) {
        if let (Some(gate), Some(agent)) = (&self.gate, agent) {
            gate.ended(
                agent,
                &claim.spec.capability,
                &claim.spec.id,
                outcome,
                now_ms,
            );
        }
    }

    fn agent_mut(&mut self, id: &AgentId) -> Result<&mut Agent, AgentError> {
        self.agents.get_mut(id).ok_or(AgentError::UnknownAgent(*id))
    }

    pub(super) fn register(
        &mut self,
        name: &str,
        capabilities: &[String],
        max_concurrency: Option<u32>,
        token: Option<&str>,
        traits: &validate::AgentTraits,
        now_ms: u64,
    ) -> Result<AgentId, AgentError> {
        let mut registration = validate::check(
            name,
            capabilities,
            max_concurrency,
            self.options.max_concurrency_default,
        )?;
        (registration.version, registration.heartbeat_timeout_ms) = validate::check_traits(traits)?;
        let mut id = AgentId::random();
        while self.agents.contains_key(&id) {
            id = AgentId::random();
        }
        let seq = self.next_agent_seq;
        self.next_agent_seq += 1;
        let agent = Agent::new(seq, registration, token.map(str::to_owned), now_ms);
        self.agents.insert(id, agent);
        Ok(id)
    }

    /// Removes the agent; its claims go back to the front of their queues.
    /// Returns their ids in their new queue order.
    pub(super) fn unregister(
        &mut self,
        id: &AgentId,
        now_ms: u64,
    ) -> Result<Vec<String>, AgentError> {
        let agent = self
            .agents
            .remove(id)
            .ok_or(AgentError::UnknownAgent(*id))?;
        let mut claims = Vec::with_capacity(agent.claimed.len());
        for task_id in &agent.claimed {
            if let Some(Entry::Claimed { claim, seq, .. }) = self.tasks.take(task_id) {
                self.ended(Some(&agent.name), &claim, None, now_ms);
                claims.push((claim, seq));
            }
        }
        claims.sort_by_key(|(claim, seq)| (claim.spec.scheduled_at_ms, *seq));
        let ids = claims
            .iter()
            .map(|(claim, _)| claim.spec.id.clone())
            .collect();
        for (claim, seq) in claims {
            self.tasks.requeue(claim, seq, now_ms);
        }
        Ok(ids)
    }

    /// Unregisters every agent not seen for at least `idle_ms` and not
    /// waiting in a poll; returns each with the ids of its requeued tasks.
    pub(super) fn forget_idle(&mut self, idle_ms: u64, now_ms: u64) -> Vec<(AgentId, Vec<String>)> {
        let idle: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, agent)| {
                agent.polls_waiting == 0 && now_ms.saturating_sub(agent.last_seen_ms) >= idle_ms
            })
            .map(|(id, _)| *id)
            .collect();
        idle.into_iter()
            .filter_map(|id| Some((id, self.unregister(&id, now_ms).ok()?)))
            .collect()
    }

    pub(super) fn seen(&mut self, id: &AgentId, now_ms: u64) -> Result<(), AgentError> {
        let agent = self.agent_mut(id)?;
        agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
        Ok(())
    }

    /// Counts a long poll of `id` that would take up to `max` tasks
    /// starting to wait (`waiting`) or ending. Returns whether the waiting
    /// polls must look again: a poll of an agent another claim counted on
    /// ended.
    pub(super) fn poll_waiting(
        &mut self,
        id: &AgentId,
        waiting: bool,
        max: usize,
        now_ms: u64,
    ) -> bool {
        let max = max.min(self.options.poll_max_tasks);
        let Some(agent) = self.agents.get_mut(id) else {
            return false;
        };
        agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
        if waiting {
            agent.polls_waiting += 1;
            agent.waiting_max = agent.waiting_max.saturating_add(max);
            false
        } else {
            agent.polls_waiting = agent.polls_waiting.saturating_sub(1);
            agent.waiting_max = agent.waiting_max.saturating_sub(max);
            std::mem::take(&mut agent.counted_on)
        }
    }

    pub(super) fn info(&self, id: &AgentId, now_ms: u64) -> Option<AgentInfo> {
        let agent = self.agents.get(id)?;
        Some(agent.info(*id, &self.options, now_ms))
    }

    pub(super) fn list(&self, now_ms: u64) -> Vec<AgentInfo> {
        let mut agents: Vec<(&AgentId, &Agent)> = self.agents.iter().collect();
        agents.sort_by_key(|(_, agent)| agent.seq);
        agents
            .into_iter()
            .map(|(id, agent)| agent.info(*id, &self.options, now_ms))
            .collect()
    }

    pub(super) fn enqueue(&mut self, task: TaskSpec) -> bool {
        self.tasks.enqueue(task)
    }

    /// Claims for `id` up to `max` tasks (and no more than the poll limit and
    /// its free slots), serving order across the capabilities the gate lets
    /// it take, passing over the tasks it leaves for healthier waiting
    /// agents. Also returns whether the waiting polls must look again (it
    /// took tasks while another claim counted on it).
    pub(super) fn claim(
        &mut self,
        id: &AgentId,
        max: usize,
        now_ms: u64,
    ) -> Result<(Vec<ClaimedTask>, bool), AgentError> {
        let poll_max_tasks = self.options.poll_max_tasks;
        let agent = self
            .agents
            .get_mut(id)
            .ok_or(AgentError::UnknownAgent(*id))?;
        agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
        let limit = max.min(poll_max_tasks).min(agent.free_slots());
        if limit == 0 {
            return Ok((Vec::new(), false));
        }
        let name = agent.name.clone();
        let version = agent.version.clone();
        let mut capabilities = agent.capabilities.clone();
        capabilities.retain(|capability| self.admits(&name, capability, now_ms));
        let mut passed_over = BTreeSet::new();
        let mut claimed = Vec::new();
        while claimed.len() < limit {
            let next = self
                .tasks
                .next_for(&capabilities, version.as_ref(), &passed_over);
            let Some(task_id) = next.map(str::to_owned) else {
                break;
            };
            let Some((capability, requires)) = self.tasks.queued(&task_id) else {
                break;
            };
            let (capability, requires) = (capability.to_owned(), requires.cloned());
            if self.defers(id, &capability, requires.as_ref(), now_ms) {
                passed_over.insert(task_id);
                continue;
            }
            // The capability's limits across all agents: none of its tasks
            // in this claim once one has no room.
            let tasks = &self.tasks;
            let claimed_of = || tasks.claimed_of(&capability);
            if !self.caps.room(&capability, &task_id, claimed_of, now_ms) {
                capabilities.remove(&capability);
                continue;
            }
            if let Some(gate) = &self.gate
                && !gate.claiming(&name, &capability, &task_id, now_ms)
            {
                capabilities.remove(&capability);
                continue;
            }
            let Some(claim) = self.tasks.claim(&task_id, *id, now_ms) else {
                break;
            };
            self.caps.claimed(&capability, &task_id, now_ms);
            if let Some(agent) = self.agents.get_mut(id) {
                agent.claimed.insert(task_id);
            }
            claimed.push(claim);
        }
        let wake = !claimed.is_empty()
            && self
                .agents
                .get_mut(id)
                .is_some_and(|agent| std::mem::take(&mut agent.counted_on));
        Ok((claimed, wake))
    }

    /// Whether agent `id` leaves a queued task of `capability` (taken by
    /// agents of `requires`) for healthier agents waiting in a poll (the
    /// rule in the module doc); marks them counted on when it does.
    fn defers(
        &mut self,
        id: &AgentId,
        capability: &str,
        requires: Option<&semver::VersionReq>,
        now_ms: u64,
    ) -> bool {
        let Some(claimer) = self.agents.get(id) else {
            return false;
        };
        let score = claimer.score();
        let mut better = Vec::new();
        let mut room = 0usize;
        for (other_id, other) in &self.agents {
            if other_id == id
                || other.polls_waiting == 0
                || !other.capabilities.contains(capability)
                || requires.is_some_and(|r| other.version.as_ref().is_none_or(|v| !r.matches(v)))
            {
                continue;
            }
            let free = other.free_slots();
            if free == 0
                || !other.score().clearly_beats(score)
                || !self.admits(&other.name, capability, now_ms)
            {
                continue;
            }
            room = room.saturating_add(free.min(other.waiting_max));
            better.push(*other_id);
        }
        if better.is_empty() || self.tasks.queue_len(capability) > room {
            return false;
        }
        for other_id in better {
            if let Some(other) = self.agents.get_mut(&other_id) {
                other.counted_on = true;
            }
        }
        true
    }

    pub(super) fn task_heartbeat(
        &mut self,
        task_id: &str,
        agent: Option<&AgentId>,
        now_ms: u64,
    ) -> Result<ClaimedTask, AgentError> {
        let claim = self.tasks.extend(task_id, agent, now_ms)?;
        if let Some(holder) = self.agents.get_mut(&claim.agent) {
            holder.last_seen_ms = holder.last_seen_ms.max(now_ms);
        }
        Ok(claim)
    }

    /// Removes the outstanding task `task_id`, releasing its agent's slot.
    fn release(&mut self, task_id: &str) -> Option<Released> {
        Some(match self.tasks.take(task_id)? {
            Entry::Queued { spec, .. } => Released::Queued(spec),
            Entry::Claimed {
                claim, lease_kind, ..
            } => {
                let name = self.agents.get_mut(&claim.agent).map(|agent| {
                    agent.claimed.remove(task_id);
                    agent.name.clone()
                });
                Released::Claimed(claim, lease_kind, name)
            }
        })
    }

    fn record(&mut self, claim: &ClaimedTask, succeeded: bool, now_ms: u64) -> u64 {
        let held_ms = now_ms.saturating_sub(claim.claimed_at_ms);
        if let Some(agent) = self.agents.get_mut(&claim.agent) {
            agent.record(succeeded, held_ms);
        }
        held_ms
    }

    pub(super) fn settle(
        &mut self,
        task_id: &str,
        outcome: Outcome,
        now_ms: u64,
    ) -> Result<Settled, AgentError> {
        let released = self.release(task_id);
        self.caps_gone(released.as_ref(), task_id);
        match released {
            None => Err(AgentError::NotOutstanding(task_id.to_owned())),
            Some(Released::Queued(_)) => Ok(Settled {
                agent: None,
                duration_ms: None,
            }),
            Some(Released::Claimed(claim, _, name)) => {
                let held_ms = self.record(&claim, outcome == Outcome::Succeeded, now_ms);
                self.ended(name.as_deref(), &claim, Some(outcome), now_ms);
                Ok(Settled {
                    agent: Some(claim.agent),
                    duration_ms: Some(held_ms),
                })
            }
        }
    }

    pub(super) fn withdraw(&mut self, task_id: &str, now_ms: u64) -> bool {
        let released = self.release(task_id);
        self.caps_gone(released.as_ref(), task_id);
        match released {
            None => false,
            Some(Released::Queued(_)) => true,
            Some(Released::Claimed(claim, _, name)) => {
                self.ended(name.as_deref(), &claim, None, now_ms);
                true
            }
        }
    }

    /// A task that will never run again frees the slot it held since a
    /// restart, if it held one.
    fn caps_gone(&mut self, released: Option<&Released>, task_id: &str) {
        let capability = match released {
            Some(Released::Queued(spec)) => &spec.capability,
            Some(Released::Claimed(claim, ..)) => &claim.spec.capability,
            None => return,
        };
        self.caps.gone(capability, task_id);
    }

    /// Where `capability` stands under its limits.
    pub(super) fn capability_standing(
        &mut self,
        capability: &str,
        now_ms: u64,
    ) -> CapabilityStanding {
        let claimed = self.tasks.claimed_of(capability);
        self.caps.standing(capability, None, claimed, now_ms)
    }

    /// Tasks of `capability` queued now.
    pub(super) fn queued_of(&self, capability: &str) -> usize {
        self.tasks.queue_len(capability)
    }

    /// Puts claims the runtime could not record back at the front of
    /// their queues, their agents' slots freed.
    pub(super) fn give_back(&mut self, task_ids: &[String], now_ms: u64) {
        for task_id in task_ids {
            if let Some(Entry::Claimed { claim, seq, .. }) = self.tasks.take(task_id) {
                let name = self.agents.get_mut(&claim.agent).map(|agent| {
                    agent.claimed.remove(task_id);
                    agent.name.clone()
                });
                self.ended(name.as_deref(), &claim, None, now_ms);
                self.tasks.requeue(claim, seq, now_ms);
            }
        }
    }

    pub(super) fn is_outstanding(&self, task_id: &str) -> bool {
        self.tasks.contains(task_id)
    }

    pub(super) fn claimed_by(&self, task_id: &str) -> Option<AgentId> {
        self.tasks.claimed_by(task_id)
    }

    pub(super) fn expired(&mut self, now_ms: u64) -> Vec<Expired> {
        let due = self.tasks.due(now_ms);
        let mut expired = Vec::with_capacity(due.len());
        for task_id in due {
            match self.release(&task_id) {
                None => {}
                Some(Released::Queued(spec)) => expired.push(Expired {
                    task: spec,
                    agent: None,
                    kind: TimeoutKind::ScheduleToStart,
                }),
                Some(Released::Claimed(claim, kind, name)) => {
                    self.record(&claim, false, now_ms);
                    self.ended(name.as_deref(), &claim, Some(Outcome::Failed), now_ms);
                    expired.push(Expired {
                        task: claim.spec,
                        agent: Some(claim.agent),
                        kind,
                    });
                }
            }
        }
        expired
    }

    pub(super) fn next_deadline_ms(&self) -> Option<u64> {
        self.tasks.next_deadline_ms()
    }

    /// Queued tasks per capability, every capability of a registered agent
    /// included (at 0 when nothing waits for it).
    pub(super) fn queue_sizes(&self) -> BTreeMap<String, usize> {
        let offered: BTreeSet<&String> = self
            .agents
            .values()
            .flat_map(|agent| agent.capabilities.iter())
            .collect();
        let mut sizes: BTreeMap<String, usize> = offered
            .into_iter()
            .map(|capability| (capability.clone(), 0))
            .collect();
        for (capability, size) in self.tasks.queue_sizes() {
            sizes.insert(capability.clone(), size);
        }
        sizes
    }

    /// When the longest-waiting queued task of each capability was
    /// scheduled (capabilities with none queued are left out).
    pub(super) fn oldest_queued(&self) -> BTreeMap<String, u64> {
        self.tasks
            .oldest_queued()
            .map(|(capability, at)| (capability.clone(), at))
            .collect()
    }

    pub(super) fn outstanding(&self) -> usize {
        self.tasks.len()
    }

    pub(super) fn outstanding_ids(&self) -> Vec<String> {
        self.tasks.ids()
    }
}
