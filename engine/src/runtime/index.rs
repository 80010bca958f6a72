//! The runtime's in-memory indexes, derived from executions' states and
//! rebuilt at open: the list of executions with their status, the
//! idempotency keys of starts, and which executions wait for which event.
//!
//! Each index has its own plain mutex, taken for one short operation and
//! never held across an `.await` or while another is held. The journal is
//! the truth: an index may briefly lag it (an execution's first append is
//! visible a moment before its summary), never lead it for long (a key or a
//! waiter registered before a failed append is removed or checked again).
//!
//! It must never decide anything: it only answers "which" and "how many".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use crate::ExecutionId;
use crate::machine::{ExecutionState, Status};

/// What the engine lists about an execution without loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSummary {
    pub id: ExecutionId,
    pub workflow: String,
    pub version: String,
    pub status: Status,
    pub started_at_ms: u64,
}

/// The three indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    summaries: Mutex<BTreeMap<ExecutionId, ExecutionSummary>>,
    idempotency: Mutex<HashMap<String, ExecutionId>>,
    /// Executions waiting for named events: name -> (execution, activation).
    awaiting: Mutex<HashMap<String, HashSet<(ExecutionId, u64)>>>,
}

/// A poisoned index is still a consistent map (every operation is one
/// insert or remove), so a panic elsewhere does not stop the engine.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Index {
    /// Records what `state` says now: its summary and its idempotency key.
    pub(crate) fn record(&self, state: &ExecutionState) {
        lock(&self.summaries).insert(
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
            lock(&self.idempotency).insert(key.clone(), state.id);
        }
    }

    /// How many executions it lists.
    pub(crate) fn len(&self) -> usize {
        lock(&self.summaries).len()
    }

    pub(crate) fn summary(&self, id: ExecutionId) -> Option<ExecutionSummary> {
        lock(&self.summaries).get(&id).cloned()
    }

    pub(crate) fn workflow_of(&self, id: ExecutionId) -> Option<String> {
        lock(&self.summaries).get(&id).map(|s| s.workflow.clone())
    }

    /// Up to `limit` executions in id order after `after`, filtered.
    pub(crate) fn list(
        &self,
        workflow: Option<&str>,
        status: Option<Status>,
        after: Option<ExecutionId>,
        limit: usize,
    ) -> Vec<ExecutionSummary> {
        let summaries = lock(&self.summaries);
        let range = match after {
            Some(a) => summaries.range((Bound::Excluded(a), Bound::Unbounded)),
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

    pub(crate) fn status_counts(&self) -> BTreeMap<Status, u64> {
        let mut counts = BTreeMap::new();
        for s in lock(&self.summaries).values() {
            *counts.entry(s.status).or_insert(0) += 1;
        }
        counts
    }

    /// The execution an idempotency key started.
    pub(crate) fn keyed(&self, key: &str) -> Option<ExecutionId> {
        lock(&self.idempotency).get(key).copied()
    }

    /// Claims `key` for `id` before its start is appended, so two racing
    /// starts with one key cannot both start; `false` if it is taken.
    pub(crate) fn claim_key(&self, key: &str, id: ExecutionId) -> bool {
        let mut keys = lock(&self.idempotency);
        if keys.contains_key(key) {
            return false;
        }
        keys.insert(key.to_owned(), id);
        true
    }

    /// Gives back a key whose start was not appended.
    pub(crate) fn release_key(&self, key: &str) {
        lock(&self.idempotency).remove(key);
    }

    /// Notes that activation `act` of `id` waits for events named `name`.
    pub(crate) fn awaits(&self, name: &str, id: ExecutionId, act: u64) {
        lock(&self.awaiting)
            .entry(name.to_owned())
            .or_default()
            .insert((id, act));
    }

    /// Forgets that wait.
    pub(crate) fn no_longer_awaits(&self, name: &str, id: ExecutionId, act: u64) {
        let mut awaiting = lock(&self.awaiting);
        if let Some(set) = awaiting.get_mut(name) {
            set.remove(&(id, act));
            if set.is_empty() {
                awaiting.remove(name);
            }
        }
    }

    /// The executions some activation of which waits for `name`, in id order.
    pub(crate) fn awaiting(&self, name: &str) -> Vec<ExecutionId> {
        let mut ids: Vec<ExecutionId> = lock(&self.awaiting)
            .get(name)
            .map(|set| set.iter().map(|(e, _)| *e).collect())
            .unwrap_or_default();
        ids.sort();
        ids.dedup();
        ids
    }
}
