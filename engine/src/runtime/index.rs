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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    /// When it ended; `None` while it has not.
    pub ended_at_ms: Option<u64>,
    /// Its tags (the start's and its steps').
    pub tags: BTreeMap<String, String>,
}

/// Which executions a list shows, and in which order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub workflow: Option<String>,
    /// In one of these statuses; any when empty.
    pub statuses: Vec<Status>,
    /// With every one of these tags (key, value).
    pub tags: Vec<(String, String)>,
    /// Lowercase hex digits the id starts with (dashes left out); more than
    /// 32 match nothing.
    pub id_prefix: Option<String>,
    /// Started at or after this instant (ms since the Unix epoch).
    pub started_from_ms: Option<u64>,
    /// Started at or before this instant.
    pub started_to_ms: Option<u64>,
    /// Ended at or after this instant (a running execution has not).
    pub ended_from_ms: Option<u64>,
    /// Ended at or before this instant.
    pub ended_to_ms: Option<u64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

impl ListFilter {
    /// A filter nothing passes.
    pub fn nothing() -> ListFilter {
        ListFilter {
            started_from_ms: Some(1),
            started_to_ms: Some(0),
            ..ListFilter::default()
        }
    }

    fn matches(&self, s: &ExecutionSummary) -> bool {
        self.workflow.as_ref().is_none_or(|w| &s.workflow == w)
            && (self.statuses.is_empty() || self.statuses.contains(&s.status))
            && self.started_from_ms.is_none_or(|t| s.started_at_ms >= t)
            && self.started_to_ms.is_none_or(|t| s.started_at_ms <= t)
            && self
                .ended_from_ms
                .is_none_or(|t| s.ended_at_ms.is_some_and(|e| e >= t))
            && self
                .ended_to_ms
                .is_none_or(|t| s.ended_at_ms.is_some_and(|e| e <= t))
            && self
                .tags
                .iter()
                .all(|(k, v)| s.tags.get(k).is_some_and(|found| found == v))
    }
}

/// The id whose hex digits are `prefix` followed by `fill`s (a prefix
/// that is not hex, or too long, gives the nil id: checked by the caller).
fn padded(prefix: &str, fill: char) -> ExecutionId {
    let mut hex: String = prefix.chars().take(32).collect();
    while hex.len() < 32 {
        hex.push(fill);
    }
    hex.parse().unwrap_or(ExecutionId::NIL)
}

/// Whether a range with these bounds is one a `BTreeMap` takes (it panics
/// on a start after its end, or equal and both excluded).
fn range_is_ordered(low: &Bound<ExecutionId>, high: &Bound<ExecutionId>) -> bool {
    match (low, high) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

/// The three indexes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    summaries: Mutex<Listing>,
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

/// The executions' summaries by id, and the ids by tag and by status, so
/// that a list filtered by a tag or a status walks only the executions that
/// have it (the smallest such set), not every execution.
#[derive(Debug, Default)]
struct Listing {
    by_id: BTreeMap<ExecutionId, ExecutionSummary>,
    by_tag: HashMap<(String, String), BTreeSet<ExecutionId>>,
    by_status: HashMap<Status, BTreeSet<ExecutionId>>,
}

impl Listing {
    /// Puts `summary` in, in place of what it said before.
    fn insert(&mut self, summary: ExecutionSummary) {
        let id = summary.id;
        self.remove(id);
        for tag in &summary.tags {
            self.by_tag
                .entry((tag.0.clone(), tag.1.clone()))
                .or_default()
                .insert(id);
        }
        self.by_status.entry(summary.status).or_default().insert(id);
        self.by_id.insert(id, summary);
    }

    /// Takes `id` out, with its tags and status.
    fn remove(&mut self, id: ExecutionId) {
        let Some(old) = self.by_id.remove(&id) else {
            return;
        };
        for tag in old.tags {
            if let Some(ids) = self.by_tag.get_mut(&tag) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_tag.remove(&tag);
                }
            }
        }
        if let Some(ids) = self.by_status.get_mut(&old.status) {
            ids.remove(&id);
        }
    }

    /// The ids a filter's tags and statuses allow, as the smallest set
    /// among them (several statuses: their sets each); `None` when the
    /// filter names neither, or when that set is not smaller than all.
    fn candidates(&self, filter: &ListFilter) -> Option<Vec<&BTreeSet<ExecutionId>>> {
        static NONE: BTreeSet<ExecutionId> = BTreeSet::new();
        let mut options: Vec<Vec<&BTreeSet<ExecutionId>>> = filter
            .tags
            .iter()
            .map(|tag| vec![self.by_tag.get(tag).unwrap_or(&NONE)])
            .collect();
        if !filter.statuses.is_empty() {
            let mut statuses = filter.statuses.clone();
            statuses.sort();
            statuses.dedup();
            options.push(
                statuses
                    .iter()
                    .map(|st| self.by_status.get(st).unwrap_or(&NONE))
                    .collect(),
            );
        }
        let size = |sets: &Vec<&BTreeSet<ExecutionId>>| sets.iter().map(|s| s.len()).sum::<usize>();
        options
            .into_iter()
            .min_by_key(size)
            .filter(|sets| size(sets) < self.by_id.len())
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
        lock(&self.summaries).insert(ExecutionSummary {
            id: state.id,
            workflow: state.workflow.clone(),
            version: state.version.clone(),
            status: state.status,
            started_at_ms: state.started_at_ms,
            ended_at_ms: state.ended_at_ms,
            tags: state.tags.clone(),
        });
        if let Some(key) = &state.idempotency_key {
            lock(&self.idempotency).insert(key.clone(), state.id);
        }
    }

    /// Forgets every execution `theirs` picks (another server drives them
    /// now): its summary, its idempotency key, its waits for events; how
    /// many.
    pub(crate) fn forget_where(&self, theirs: impl Fn(ExecutionId) -> bool) -> usize {
        let mut listing = lock(&self.summaries);
        let ids: Vec<ExecutionId> = listing
            .by_id
            .keys()
            .copied()
            .filter(|id| theirs(*id))
            .collect();
        for id in &ids {
            listing.remove(*id);
        }
        drop(listing);
        lock(&self.idempotency).retain(|_, id| !theirs(*id));
        lock(&self.awaiting).retain(|_, waiters| {
            waiters.any.retain(|(id, _)| !theirs(*id));
            waiters.compound.retain(|(id, _)| !theirs(*id));
            waiters.scalar.retain(|_, set| {
                set.retain(|(id, _)| !theirs(*id));
                !set.is_empty()
            });
            !waiters.is_empty()
        });
        ids.len()
    }

    /// How many executions it lists.
    pub(crate) fn len(&self) -> usize {
        lock(&self.summaries).by_id.len()
    }

    pub(crate) fn summary(&self, id: ExecutionId) -> Option<ExecutionSummary> {
        lock(&self.summaries).by_id.get(&id).cloned()
    }

    pub(crate) fn workflow_of(&self, id: ExecutionId) -> Option<String> {
        lock(&self.summaries)
            .by_id
            .get(&id)
            .map(|s| s.workflow.clone())
    }

    /// Up to `limit` executions in id order (newest first if the filter
    /// says so) after `after`, filtered.
    pub(crate) fn list(
        &self,
        filter: &ListFilter,
        after: Option<ExecutionId>,
        limit: usize,
    ) -> Vec<ExecutionSummary> {
        // Longer than an id: no id starts so.
        if filter.id_prefix.as_ref().is_some_and(|p| p.len() > 32) {
            return Vec::new();
        }
        let summaries = lock(&self.summaries);
        // An id prefix is a range of ids: from the prefix padded with 0s
        // to the prefix padded with fs.
        let (mut low, mut high) = match &filter.id_prefix {
            Some(prefix) => (
                Bound::Included(padded(prefix, '0')),
                Bound::Included(padded(prefix, 'f')),
            ),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        // The cursor narrows the range on the side the list moves to.
        if let Some(a) = after {
            if filter.newest_first {
                high = match high {
                    Bound::Included(h) if h < a => Bound::Included(h),
                    Bound::Excluded(h) if h <= a => Bound::Excluded(h),
                    _ => Bound::Excluded(a),
                };
            } else {
                low = match low {
                    Bound::Included(l) if l > a => Bound::Included(l),
                    Bound::Excluded(l) if l >= a => Bound::Excluded(l),
                    _ => Bound::Excluded(a),
                };
            }
        }
        if !range_is_ordered(&low, &high) {
            return Vec::new();
        }
        let keep = |s: &&ExecutionSummary| filter.matches(s);
        let Some(sets) = summaries.candidates(filter) else {
            let range = summaries.by_id.range((low, high)).map(|(_, s)| s);
            return if filter.newest_first {
                range.rev().filter(keep).take(limit).cloned().collect()
            } else {
                range.filter(keep).take(limit).cloned().collect()
            };
        };
        // Each set's first `limit` kept executions in the list's order; the
        // list's first `limit` are among them.
        let mut found: Vec<&ExecutionSummary> = Vec::new();
        for set in sets {
            let ids = set.range((low, high));
            let summaries = |id: &ExecutionId| summaries.by_id.get(id);
            if filter.newest_first {
                found.extend(ids.rev().filter_map(summaries).filter(keep).take(limit));
            } else {
                found.extend(ids.filter_map(summaries).filter(keep).take(limit));
            }
        }
        found.sort_by_key(|s| s.id);
        if filter.newest_first {
            found.reverse();
        }
        found.into_iter().take(limit).cloned().collect()
    }

    pub(crate) fn status_counts(&self) -> BTreeMap<Status, u64> {
        let mut counts = BTreeMap::new();
        for (status, ids) in &lock(&self.summaries).by_status {
            if !ids.is_empty() {
                counts.insert(*status, ids.len() as u64);
            }
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

    fn summary(n: u8, started_at_ms: u64, workflow: &str, status: Status) -> ExecutionSummary {
        ExecutionSummary {
            id: id(n),
            workflow: workflow.to_owned(),
            version: "v".to_owned(),
            status,
            started_at_ms,
            ended_at_ms: None,
            tags: BTreeMap::new(),
        }
    }

    proptest::proptest! {
        /// The list is the naive answer: every summary the filter keeps,
        /// sorted by id (reversed for newest first), after the cursor,
        /// cut at the limit, so an id prefix and a cursor narrow a range
        /// and never lose or repeat an execution.
        #[test]
        fn a_list_is_the_filtered_summaries_in_order(
            rows in proptest::collection::vec((0u8..64, 0u64..50, 0usize..2, 0usize..3, 0usize..3), 0..40),
            tag in proptest::option::of(0usize..3),
            wanted in proptest::collection::vec(0usize..3, 0..3),
            prefix in proptest::option::of("([0-3][0-9a-f]?)?"),
            workflow in proptest::option::of(0usize..2),
            from in proptest::option::of(0u64..50),
            to in proptest::option::of(0u64..50),
            newest_first in proptest::bool::ANY,
            after in proptest::option::of(0u8..64),
            limit in 1usize..8,
        ) {
            let names = ["a", "b"];
            let statuses = [Status::Running, Status::Completed, Status::Failed];
            let tags = [("tier", "gold"), ("tier", "silver"), ("team", "gold")];
            let index = Index::default();
            let mut all = BTreeMap::new();
            // An id seen again is the same execution, changed: its status
            // and tags move in the index.
            for (n, at, w, st, t) in rows {
                let mut s = summary(n, at, names[w], statuses[st]);
                if let Some((k, v)) = tags.get(t) {
                    s.tags.insert((*k).to_owned(), (*v).to_owned());
                }
                all.insert(s.id, s.clone());
                lock(&index.summaries).insert(s);
            }
            // Ids here differ in their last two hex digits (`nn`): the
            // prefix is the 30 they share and up to both of those.
            let prefix = prefix.map(|p| format!("000000000000700080000000000000{p}"));
            let filter = ListFilter {
                workflow: workflow.map(|w| names[w].to_owned()),
                id_prefix: prefix.clone(),
                started_from_ms: from,
                started_to_ms: to,
                newest_first,
                statuses: wanted.iter().map(|w| statuses[*w]).collect(),
                tags: tag
                    .map(|t| (tags[t].0.to_owned(), tags[t].1.to_owned()))
                    .into_iter()
                    .collect(),
                ..ListFilter::default()
            };
            let after = after.map(id);
            let mut expected: Vec<ExecutionSummary> = all
                .values()
                .filter(|s| filter.matches(s))
                .filter(|s| prefix.as_ref().is_none_or(|p| s.id.to_string().replace('-', "").starts_with(p.as_str())))
                .cloned()
                .collect();
            if newest_first {
                expected.reverse();
            }
            let expected: Vec<ExecutionSummary> = expected
                .into_iter()
                .filter(|s| after.is_none_or(|a| if newest_first { s.id < a } else { s.id > a }))
                .take(limit)
                .collect();
            proptest::prop_assert_eq!(index.list(&filter, after, limit), expected);
        }
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
