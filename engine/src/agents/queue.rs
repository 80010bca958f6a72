//! [`Tasks`]: every outstanding task, queued per capability or claimed, with
//! one index of deadlines.
//!
//! Owns queue order, claims, leases and deadlines. It must never look at an
//! agent's record or read a clock: the caller says who claims and when, and
//! keeps each agent's set of claimed ids in step.
//!
//! Queue order: tasks put back by [`Tasks::requeue`] (their agent left) come
//! before every other task; within each of those two lanes, by rank, then
//! first enqueued first. A task's rank is `scheduled_at_ms - priority ×
//! AGING_MS_PER_LEVEL`: its effective priority rises by one level for every
//! [`AGING_MS_PER_LEVEL`] it waits, and since every waiting task ages at
//! the same rate, that order never changes while they wait, so it is a
//! plain sorted key. The bound it gives: a task of priority `p` scheduled
//! at `t` is served before any task (of any priority) scheduled after
//! `t + (9 - p) × AGING_MS_PER_LEVEL`, so nothing starves while agents
//! keep taking tasks. An agent offering several capabilities is served in
//! that order across all of them.
//!
//! Fairness: a task with a fairness key (a tenant, a customer) is ranked
//! from its key's *turn* rather than from when it was scheduled. Each key
//! (per capability) has a virtual clock; a task's turn is the later of its
//! scheduled time and that clock, and the clock then moves
//! [`FAIR_TURN_MS`] past the turn. So a burst of `n` tasks of one key
//! takes turns `t, t + 1 s, …, t + (n - 1) s`, and a task of another key
//! scheduled at `t + d` is served after at most about `d / 1 s` of them,
//! not after the whole burst; within one key, tasks keep their order. The
//! aging bound holds with the turn in place of the scheduled time. Tasks
//! with no key rank as before.
//!
//! Versions: a task that requires a version range of its agent
//! (`agentVersion`) is skipped by agents outside it (and by agents that
//! declared no version); the agent takes the first task in order it may.
//! Queues with no such task are served without looking past their head.
//!
//! A claim may also pass over tasks it leaves for a healthier agent (see
//! `state`): [`Tasks::next_for`] is told which to skip, and the task it
//! then takes is the first in order that is not skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::agent::AgentId;
use super::error::AgentError;
use super::task::{ClaimedTask, TaskSpec, TimeoutKind, lease_deadline};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    Requeued,
    Fresh,
}

/// How long a wait is worth one priority level.
pub const AGING_MS_PER_LEVEL: u64 = 10_000;

/// How far one queued task moves its fairness key's next turn.
pub const FAIR_TURN_MS: u64 = 1_000;

/// A task's place in its capability's queue (fields in sort order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct QueueKey {
    lane: Lane,
    /// `scheduled_at_ms - priority × AGING_MS_PER_LEVEL`: lower is served
    /// first.
    rank: i128,
    /// Arrival order; kept through a claim so a requeued task keeps its rank.
    seq: u64,
    /// Not part of the order (`seq` is unique): how long it has waited.
    scheduled_at_ms: u64,
}

impl QueueKey {
    /// Ranked from `turn_ms`: when it was scheduled, or its fairness key's
    /// turn.
    fn new(lane: Lane, spec: &TaskSpec, turn_ms: u64, seq: u64) -> QueueKey {
        let aged = i128::from(spec.priority) * i128::from(AGING_MS_PER_LEVEL);
        QueueKey {
            lane,
            rank: i128::from(turn_ms) - aged,
            seq,
            scheduled_at_ms: spec.scheduled_at_ms,
        }
    }
}

/// One outstanding task.
#[derive(Debug)]
pub(super) enum Entry {
    Queued {
        spec: TaskSpec,
        key: QueueKey,
        /// Schedule-to-start deadline, if any.
        start_by_ms: Option<u64>,
        /// The agent versions that may take it (`spec.agent_version`, parsed).
        requires: Option<semver::VersionReq>,
    },
    Claimed {
        claim: ClaimedTask,
        /// Which timeout `claim.lease_deadline_ms` is.
        lease_kind: TimeoutKind,
        seq: u64,
    },
}

impl Entry {
    fn deadline_ms(&self) -> Option<u64> {
        match self {
            Entry::Queued { start_by_ms, .. } => *start_by_ms,
            Entry::Claimed { claim, .. } => Some(claim.lease_deadline_ms),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Tasks {
    entries: HashMap<String, Entry>,
    /// Queued task ids per capability, in serving order. No empty queue is kept.
    queues: BTreeMap<String, BTreeMap<QueueKey, String>>,
    /// `(deadline, task id)` of every outstanding task that has one.
    deadlines: BTreeSet<(u64, String)>,
    /// Each fairness key's next turn, per capability. A key whose turn has
    /// passed ranks nothing later, so it is forgotten now and then.
    turns: HashMap<(String, String), u64>,
    /// How many queued tasks of each capability require an agent version.
    versioned: HashMap<String, usize>,
    /// How many tasks of each capability are claimed (no zero kept).
    claimed: HashMap<String, usize>,
    next_seq: u64,
}

impl Tasks {
    /// Queued plus claimed.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Queues `spec` unless a task with its id is outstanding; true if queued.
    pub(super) fn enqueue(&mut self, spec: TaskSpec) -> bool {
        if self.entries.contains_key(&spec.id) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let start_by_ms = spec
            .schedule_to_start_ms
            .map(|ms| spec.scheduled_at_ms.saturating_add(ms));
        let turn_ms = self.turn(&spec);
        self.insert_queued(spec, Lane::Fresh, turn_ms, seq, start_by_ms);
        true
    }

    /// When `spec` gets its turn, and its key's next turn after it.
    fn turn(&mut self, spec: &TaskSpec) -> u64 {
        let Some(key) = &spec.fairness_key else {
            return spec.scheduled_at_ms;
        };
        let now_ms = spec.scheduled_at_ms;
        if self.turns.len() > 1_024 + 2 * self.entries.len() {
            self.turns.retain(|_, next| *next > now_ms);
        }
        let next = self
            .turns
            .entry((spec.capability.clone(), key.clone()))
            .or_insert(0);
        let turn = (*next).max(now_ms);
        *next = turn.saturating_add(FAIR_TURN_MS);
        turn
    }

    /// Puts a claim taken from [`Tasks::take`] back at the front of its
    /// queue, same spec and attempt. Its schedule-to-start window, if any,
    /// starts again at `now_ms`: the task did start in time once.
    pub(super) fn requeue(&mut self, claim: ClaimedTask, seq: u64, now_ms: u64) {
        let start_by_ms = claim
            .spec
            .schedule_to_start_ms
            .map(|ms| now_ms.saturating_add(ms));
        let turn_ms = claim.spec.scheduled_at_ms;
        self.insert_queued(claim.spec, Lane::Requeued, turn_ms, seq, start_by_ms);
    }

    fn insert_queued(
        &mut self,
        spec: TaskSpec,
        lane: Lane,
        turn_ms: u64,
        seq: u64,
        start_by_ms: Option<u64>,
    ) {
        let key = QueueKey::new(lane, &spec, turn_ms, seq);
        self.queues
            .entry(spec.capability.clone())
            .or_default()
            .insert(key, spec.id.clone());
        // A requirement the definition checked; one that does not parse
        // (a journal from elsewhere) is no requirement.
        let requires = spec
            .agent_version
            .as_deref()
            .and_then(|r| semver::VersionReq::parse(r).ok());
        if requires.is_some() {
            *self.versioned.entry(spec.capability.clone()).or_default() += 1;
        }
        if let Some(at_ms) = start_by_ms {
            self.deadlines.insert((at_ms, spec.id.clone()));
        }
        let id = spec.id.clone();
        self.entries.insert(
            id,
            Entry::Queued {
                spec,
                key,
                start_by_ms,
                requires,
            },
        );
    }

    /// The id of the queued task to serve next among `capabilities` to an
    /// agent of `version`, passing over the ids in `skip`.
    pub(super) fn next_for(
        &self,
        capabilities: &BTreeSet<String>,
        version: Option<&semver::Version>,
        skip: &BTreeSet<String>,
    ) -> Option<&str> {
        capabilities
            .iter()
            .filter_map(|capability| {
                let queue = self.queues.get(capability)?;
                if skip.is_empty() && self.versioned.get(capability).is_none_or(|n| *n == 0) {
                    return queue.first_key_value();
                }
                queue
                    .iter()
                    .find(|(_, id)| !skip.contains(*id) && self.accepts(id, version))
            })
            .min_by_key(|(key, _)| **key)
            .map(|(_, id)| id.as_str())
    }

    /// Whether an agent of `version` may take the queued task `id`.
    fn accepts(&self, id: &str, version: Option<&semver::Version>) -> bool {
        match self.entries.get(id) {
            Some(Entry::Queued {
                requires: Some(requires),
                ..
            }) => version.is_some_and(|v| requires.matches(v)),
            _ => true,
        }
    }

    /// The capability of the queued task `id` and the agent versions that
    /// may take it (`None` inside: any).
    pub(super) fn queued(&self, id: &str) -> Option<(&str, Option<&semver::VersionReq>)> {
        match self.entries.get(id) {
            Some(Entry::Queued { spec, requires, .. }) => {
                Some((spec.capability.as_str(), requires.as_ref()))
            }
            _ => None,
        }
    }

    /// How many tasks of `capability` are queued.
    pub(super) fn queue_len(&self, capability: &str) -> usize {
        self.queues.get(capability).map_or(0, BTreeMap::len)
    }

    /// Claims the queued task `id` for `agent` at `now_ms`; `None` if it is
    /// not queued.
    pub(super) fn claim(&mut self, id: &str, agent: AgentId, now_ms: u64) -> Option<ClaimedTask> {
        let Some(Entry::Queued { .. }) = self.entries.get(id) else {
            return None;
        };
        let Some(Entry::Queued { spec, key, .. }) = self.take(id) else {
            return None;
        };
        let (lease_deadline_ms, lease_kind) = lease_deadline(&spec, now_ms);
        let claim = ClaimedTask {
            spec,
            agent,
            claimed_at_ms: now_ms,
            lease_deadline_ms,
        };
        self.insert_claimed(claim.clone(), lease_kind, key.seq);
        Some(claim)
    }

    fn insert_claimed(&mut self, claim: ClaimedTask, lease_kind: TimeoutKind, seq: u64) {
        *self
            .claimed
            .entry(claim.spec.capability.clone())
            .or_default() += 1;
        let id = claim.spec.id.clone();
        self.deadlines.insert((claim.lease_deadline_ms, id.clone()));
        self.entries.insert(
            id,
            Entry::Claimed {
                claim,
                lease_kind,
                seq,
            },
        );
    }

    /// Extends the claim on `id` from `now_ms` as a fresh claim would be.
    /// With `agent`, only that agent's claim may be extended.
    pub(super) fn extend(
        &mut self,
        id: &str,
        agent: Option<&AgentId>,
        now_ms: u64,
    ) -> Result<ClaimedTask, AgentError> {
        match self.entries.get(id) {
            Some(Entry::Claimed { claim, .. }) => match agent {
                Some(agent) if *agent != claim.agent => {
                    return Err(AgentError::NotYours {
                        task: id.to_owned(),
                        agent: *agent,
                    });
                }
                _ => {}
            },
            _ => return Err(AgentError::NotOutstanding(id.to_owned())),
        }
        let Some(Entry::Claimed { mut claim, seq, .. }) = self.take(id) else {
            return Err(AgentError::NotOutstanding(id.to_owned()));
        };
        let (lease_deadline_ms, lease_kind) = lease_deadline(&claim.spec, now_ms);
        claim.lease_deadline_ms = lease_deadline_ms;
        self.insert_claimed(claim.clone(), lease_kind, seq);
        Ok(claim)
    }

    /// The agent holding `id`, if it is claimed.
    pub(super) fn claimed_by(&self, id: &str) -> Option<AgentId> {
        match self.entries.get(id) {
            Some(Entry::Claimed { claim, .. }) => Some(claim.agent),
            _ => None,
        }
    }

    /// Removes the outstanding task `id`, queued or claimed, from every index.
    pub(super) fn take(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        if let Some(at_ms) = entry.deadline_ms() {
            self.deadlines.remove(&(at_ms, id.to_owned()));
        }
        if let Entry::Queued {
            spec,
            key,
            requires,
            ..
        } = &entry
        {
            if let Some(queue) = self.queues.get_mut(&spec.capability) {
                queue.remove(key);
                if queue.is_empty() {
                    self.queues.remove(&spec.capability);
                }
            }
            if requires.is_some()
                && let Some(n) = self.versioned.get_mut(&spec.capability)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.versioned.remove(&spec.capability);
                }
            }
        }
        if let Entry::Claimed { claim, .. } = &entry
            && let Some(n) = self.claimed.get_mut(&claim.spec.capability)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.claimed.remove(&claim.spec.capability);
            }
        }
        Some(entry)
    }

    /// The ids of every task queued or claimed.
    pub(super) fn ids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Whether task `id` is queued or claimed.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// How many tasks of `capability` are claimed now.
    pub(super) fn claimed_of(&self, capability: &str) -> usize {
        self.claimed.get(capability).copied().unwrap_or(0)
    }

    /// Ids of the tasks whose deadline is at or before `now_ms`, earliest first.
    pub(super) fn due(&self, now_ms: u64) -> Vec<String> {
        self.deadlines
            .iter()
            .take_while(|(at_ms, _)| *at_ms <= now_ms)
            .map(|(_, id)| id.clone())
            .collect()
    }

    pub(super) fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(at_ms, _)| *at_ms)
    }

    /// Queued tasks per capability (capabilities with none are absent).
    pub(super) fn queue_sizes(&self) -> impl Iterator<Item = (&String, usize)> {
        self.queues
            .iter()
            .map(|(capability, queue)| (capability, queue.len()))
    }

    /// When the longest-waiting queued task of each non-empty queue was
    /// scheduled (a look at every queued task: rank is not age).
    pub(super) fn oldest_queued(&self) -> impl Iterator<Item = (&String, u64)> {
        self.queues.iter().filter_map(|(capability, queue)| {
            let oldest = queue.keys().map(|k| k.scheduled_at_ms).min()?;
            Some((capability, oldest))
        })
    }
}
