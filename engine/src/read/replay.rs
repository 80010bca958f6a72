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
use crate::machine::{ExecutionState, Progress, StepProgress, apply};
use crate::store::codec::{self, READ_CHUNK};
use crate::store::{is_execution, stream_of};

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
        let mut state = ExecutionState::empty(id);
        let mut progress = Progress::default();
        let mut at_ms = 0;
        while state.seq < until {
            let records = self
                .store
                .journal()
                .read(stream_of(id), state.seq + 1, READ_CHUNK)
                .await?;
            if records.is_empty() {
                break;
            }
            for r in records.iter().take_while(|r| r.seq <= until) {
                let event = codec::decode(r)?;
                progress.observe(&state, &event);
                apply(&mut state, r.seq, r.recorded_at_ms, &event)?;
                at_ms = r.recorded_at_ms;
            }
        }
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
