//! One execution replayed from its first event to any event: the state
//! after it, exactly as `retrace replay --until` folds it, and where each
//! step stands then (time travel, in the dashboard and `GET
//! /v1/executions/{id}/replay`).
//!
//! Owns that fold. It must never start from a snapshot (what is shown is
//! what the events say) and never fold with anything but `apply`.

use std::collections::BTreeMap;

use super::History;
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{ExecutionState, Progress, StepProgress};
use crate::store::codec;
use crate::store::is_execution;

/// An execution as it stood after one of its events.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The state after the last event folded (`state.seq`).
    pub state: ExecutionState,
    /// Each step entered by then, and where it stood.
    pub steps: BTreeMap<String, StepProgress>,
    /// When the last event folded was recorded.
    pub at_ms: u64,
}

impl History {
    /// The execution folded from its first event through event `until` (or
    /// its last, if it has fewer); `None` if it has no events.
    pub async fn replay(&self, id: ExecutionId, until: u64) -> Result<Option<Replayed>, Error> {
        if !is_execution(id) {
            return Ok(None);
        }
        let mut progress = Progress::default();
        let mut at_ms = 0;
        let state = codec::fold_watched(
            self.store.journal(),
            ExecutionState::empty(id),
            until,
            |before, event, recorded_at_ms| {
                progress.observe(before, event);
                at_ms = recorded_at_ms;
            },
        )
        .await?;
        if state.seq == 0 {
            return Ok(None);
        }
        let steps = progress.steps(&state);
        Ok(Some(Replayed {
            state,
            steps,
            at_ms,
        }))
    }
}
