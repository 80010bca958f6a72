//! [`State`]: the registry's whole state and every operation on it, as plain
//! synchronous code that is told the time.
//!
//! Owns keeping agents and tasks in step: a task is claimed in the queues if
//! and only if its id is in exactly one agent's `claimed` set. It must never
//! read a clock, wait, or wake anyone; the handle in `mod.rs` does that.

use std::collections::{BTreeMap, BTreeSet};

use super::agent::{Agent, AgentId, AgentInfo, AgentOptions};
use super::error::AgentError;
use super::queue::{Entry, Tasks};
use super::task::{ClaimedTask, Expired, Outcome, Settled, TaskSpec, TimeoutKind};
use super::validate;

/// A task taken out of the registry: still queued, or claimed (with the
/// timeout its lease deadline stands for).
#[derive(Debug)]
enum Released {
    Queued(TaskSpec),
    Claimed(ClaimedTask, TimeoutKind),
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) options: AgentOptions,
    agents: BTreeMap<AgentId, Agent>,
    next_agent_seq: u64,
    tasks: Tasks,
}

impl State {
    pub(super) fn new(options: AgentOptions) -> Self {
        State {
            options,
            agents: BTreeMap::new(),
            next_agent_seq: 0,
            tasks: Tasks::default(),
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

    /// Counts a long poll of `id` starting to wait (`waiting`) or ending.
    pub(super) fn poll_waiting(&mut self, id: &AgentId, waiting: bool, now_ms: u64) {
        if let Some(agent) = self.agents.get_mut(id) {
            if waiting {
                agent.polls_waiting += 1;
            } else {
                agent.polls_waiting = agent.polls_waiting.saturating_sub(1);
            }
            agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
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
    /// its free slots), serving order across its capabilities.
    pub(super) fn claim(
        &mut self,
        id: &AgentId,
        max: usize,
        now_ms: u64,
    ) -> Result<Vec<ClaimedTask>, AgentError> {
        let poll_max_tasks = self.options.poll_max_tasks;
        let agent = self
            .agents
            .get_mut(id)
            .ok_or(AgentError::UnknownAgent(*id))?;
        agent.last_seen_ms = agent.last_seen_ms.max(now_ms);
        let limit = max.min(poll_max_tasks).min(agent.free_slots());
        let mut claimed = Vec::new();
        while claimed.len() < limit {
            let next = self
                .tasks
                .next_for(&agent.capabilities, agent.version.as_ref());
            let Some(task_id) = next.map(str::to_owned) else {
                break;
            };
            let Some(claim) = self.tasks.claim(&task_id, *id, now_ms) else {
                break;
            };
            agent.claimed.insert(task_id);
            claimed.push(claim);
        }
        Ok(claimed)
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
                if let Some(agent) = self.agents.get_mut(&claim.agent) {
                    agent.claimed.remove(task_id);
                }
                Released::Claimed(claim, lease_kind)
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
        match self.release(task_id) {
            None => Err(AgentError::NotOutstanding(task_id.to_owned())),
            Some(Released::Queued(_)) => Ok(Settled {
                agent: None,
                duration_ms: None,
            }),
            Some(Released::Claimed(claim, _)) => {
                let held_ms = self.record(&claim, outcome == Outcome::Succeeded, now_ms);
                Ok(Settled {
                    agent: Some(claim.agent),
                    duration_ms: Some(held_ms),
                })
            }
        }
    }

    pub(super) fn withdraw(&mut self, task_id: &str) -> bool {
        self.release(task_id).is_some()
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
                Some(Released::Claimed(claim, kind)) => {
                    self.record(&claim, false, now_ms);
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
}
