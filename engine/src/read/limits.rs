//! How far each concurrency limit was used, from the whole journal: the
//! proof that a limit was never exceeded (invariant 33) is a walk over
//! what was stored, in position order, not a look at the limiter's memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::History;
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::Event;

/// One workflow's concurrency key, and the most of its executions that held
/// a slot at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitPeak {
    pub workflow: String,
    pub key: String,
    /// The lowest limit any of its executions declared.
    pub limit: u32,
    pub peak: usize,
}

impl History {
    /// Every concurrency key's peak over the journal: an execution takes a
    /// slot at `limit_acquired` and gives it back at its end.
    pub async fn limit_peaks(&self) -> Result<Vec<LimitPeak>, Error> {
        let mut key_of: HashMap<ExecutionId, (String, String)> = HashMap::new();
        let mut holding: HashSet<ExecutionId> = HashSet::new();
        let mut counts: BTreeMap<(String, String), (u32, usize, usize)> = BTreeMap::new();
        let mut names = self.names();
        let mut from = 0;
        loop {
            let (events, next) = self.global_events(from, 1_000, &mut names).await?;
            for e in &events {
                match &e.event.event {
                    Event::LimitWaiting { limits } => {
                        if let Some(c) = limits.iter().find(|l| l.name == "concurrency") {
                            let gauge = (e.workflow.clone(), c.key.clone());
                            let entry = counts.entry(gauge.clone()).or_insert((c.limit, 0, 0));
                            entry.0 = entry.0.min(c.limit);
                            key_of.insert(e.execution, gauge);
                        }
                    }
                    Event::LimitAcquired => {
                        if let Some(gauge) = key_of.get(&e.execution)
                            && holding.insert(e.execution)
                            && let Some((_, now, peak)) = counts.get_mut(gauge)
                        {
                            *now += 1;
                            *peak = (*peak).max(*now);
                        }
                    }
                    Event::ExecutionCompleted { .. }
                    | Event::ExecutionFailed { .. }
                    | Event::ExecutionCancelled { .. }
                    | Event::ExecutionTerminated { .. }
                    | Event::ExecutionCompensated { .. } => {
                        if holding.remove(&e.execution)
                            && let Some(gauge) = key_of.get(&e.execution)
                            && let Some((_, now, _)) = counts.get_mut(gauge)
                        {
                            *now = now.saturating_sub(1);
                        }
                    }
                    _ => {}
                }
            }
            match next {
                Some(n) if n > from => from = n,
                _ => break,
            }
        }
        Ok(counts
            .into_iter()
            .map(|((workflow, key), (limit, _, peak))| LimitPeak {
                workflow,
                key,
                limit,
                peak,
            })
            .collect())
    }
}
