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

use serde_json::Value;

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
    /// Executions waiting for named events: name -> its waiters.
    awaiting: Mutex<HashMap<String, Waiters>>,
}

/// The activations waiting for one event name, by the correlation value
/// they wait for, so that a correlated publish finds its execution without
/// looking at every other one parked on the same name.
#[derive(Debug, Default)]
struct Waiters {
    /// Waiting with no correlation value: any publish of the name may reach them.
    any: HashSet<(ExecutionId, u64)>,
    /// Waiting for a scalar value (string, number, bool, null), by its JSON text.
    scalar: HashMap<String, HashSet<(ExecutionId, u64)>>,
    /// Waiting for an object or array: a candidate for every correlated
    /// publish (their JSON text depends on key order; equality does not).
    compound: HashSet<(ExecutionId, u64)>,
}

impl Waiters {
    fn set(&mut self, correlation: Option<&Value>) -> &mut HashSet<(ExecutionId, u64)> {
        match correlation.and_then(scalar_key) {
            Some(key) => self.scalar.entry(key).or_default(),
            None if correlation.is_some() => &mut self.compound,
            None => &mut self.any,
        }
    }

    fn is_empty(&self) -> bool {
        self.any.is_empty() && self.scalar.is_empty() && self.compound.is_empty()
    }
}

/// A scalar value's JSON text (the same for equal scalars); `None` for an
/// object or an array.
fn scalar_key(value: &Value) -> Option<String> {
    match value {
        Value::Object(_) | Value::Array(_) => None,
        scalar => Some(scalar.to_string()),
    }
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

    /// Notes that activation `act` of `id` waits for events named `name`
    /// (with this correlation value, if it names one).
    pub(crate) fn awaits(
        &self,
        name: &str,
        correlation: Option<&Value>,
        id: ExecutionId,
        act: u64,
    ) {
        lock(&self.awaiting)
            .entry(name.to_owned())
            .or_default()
            .set(correlation)
            .insert((id, act));
    }

    /// Forgets that wait.
    pub(crate) fn no_longer_awaits(
        &self,
        name: &str,
        correlation: Option<&Value>,
        id: ExecutionId,
        act: u64,
    ) {
        let mut awaiting = lock(&self.awaiting);
        let Some(waiters) = awaiting.get_mut(name) else {
            return;
        };
        waiters.set(correlation).remove(&(id, act));
        if let Some(key) = correlation.and_then(scalar_key)
            && waiters.scalar.get(&key).is_some_and(HashSet::is_empty)
        {
            waiters.scalar.remove(&key);
        }
        if waiters.is_empty() {
            awaiting.remove(name);
        }
    }

    /// The executions a publish of `name` with `correlation` may reach, in
    /// id order: those waiting with no value, and those waiting for this
    /// one (or for an object or array, which the state then compares). The
    /// state still decides; this only narrows where to ask.
    pub(crate) fn awaiting(&self, name: &str, correlation: Option<&Value>) -> Vec<ExecutionId> {
        let awaiting = lock(&self.awaiting);
        let Some(waiters) = awaiting.get(name) else {
            return Vec::new();
        };
        let mut ids: Vec<ExecutionId> = waiters.any.iter().map(|(e, _)| *e).collect();
        if let Some(value) = correlation {
            if let Some(set) = scalar_key(value).and_then(|key| waiters.scalar.get(&key)) {
                ids.extend(set.iter().map(|(e, _)| *e));
            }
            ids.extend(waiters.compound.iter().map(|(e, _)| *e));
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn id(n: u8) -> ExecutionId {
        format!("00000000-0000-7000-8000-0000000000{n:02x}")
            .parse()
            .expect("an id")
    }

    /// A publish is offered to every waiter it could reach (no value, its
    /// value, or an object or array the state compares) and to no other:
    /// with many executions parked on one name under different values, a
    /// correlated publish looks at its own.
    #[test]
    fn a_correlated_publish_finds_only_the_waiters_it_may_reach() {
        let index = Index::default();
        index.awaits("paid", None, id(1), 1);
        index.awaits("paid", Some(&json!("order-7")), id(2), 1);
        index.awaits("paid", Some(&json!("order-8")), id(3), 1);
        index.awaits("paid", Some(&json!(7)), id(4), 1);
        index.awaits("paid", Some(&json!({"order": 7})), id(5), 1);
        index.awaits("shipped", None, id(6), 1);
        assert_eq!(index.awaiting("paid", None), [id(1)]);
        assert_eq!(
            index.awaiting("paid", Some(&json!("order-7"))),
            [id(1), id(2), id(5)]
        );
        assert_eq!(
            index.awaiting("paid", Some(&json!(7))),
            [id(1), id(4), id(5)]
        );
        assert_eq!(
            index.awaiting("paid", Some(&json!({"order": 7}))),
            [id(1), id(5)]
        );
        assert!(index.awaiting("cancelled", None).is_empty());
        // Forgotten with the value it was noted with; the name goes with
        // its last waiter.
        index.no_longer_awaits("paid", Some(&json!("order-7")), id(2), 1);
        assert_eq!(
            index.awaiting("paid", Some(&json!("order-7"))),
            [id(1), id(5)]
        );
        for (correlation, n) in [
            (None, 1),
            (Some(json!("order-8")), 3),
            (Some(json!(7)), 4),
            (Some(json!({"order": 7})), 5),
        ] {
            index.no_longer_awaits("paid", correlation.as_ref(), id(n), 1);
        }
        assert!(lock(&index.awaiting).get("paid").is_none());
        assert_eq!(index.awaiting("shipped", Some(&json!(1))), [id(6)]);
    }
}
