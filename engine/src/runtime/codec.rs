//! Events to journal records and back, and rebuilding a state from the
//! journal (newest snapshot, then the events after it).
//!
//! Payloads are JSON: the API shows them as they are, and a JSON event read
//! back by a later build with more optional fields still decodes.

use retrace_journal::{EventRecord, ExecutionId, Journal, NewEvent};

use super::Error;
use crate::machine::{Event, ExecutionState, apply};

/// The journal record of `event`, recorded at `at_ms`.
pub fn encode(event: &Event, at_ms: u64) -> Result<NewEvent, Error> {
    let payload = serde_json::to_vec(event).map_err(|e| Error::Codec(e.to_string()))?;
    // Replay must see exactly the event the machine emitted: every test run
    // checks the round trip of every event it journals.
    #[cfg(debug_assertions)]
    {
        let back: Result<Event, _> = serde_json::from_slice(&payload);
        debug_assert_eq!(back.as_ref().ok(), Some(event), "event does not round-trip");
    }
    Ok(NewEvent::new(event.kind(), at_ms, payload))
}

/// The event a journal record holds.
pub fn decode(record: &EventRecord) -> Result<Event, Error> {
    serde_json::from_slice(&record.payload).map_err(|e| {
        Error::Codec(format!(
            "event {} of execution {} does not decode: {e}",
            record.seq, record.execution
        ))
    })
}

/// Encodes a state for a snapshot.
pub fn encode_state(state: &ExecutionState) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(state).map_err(|e| Error::Codec(e.to_string()))
}

/// How many events a history read takes at once.
const READ_CHUNK: usize = 1024;

/// Rebuilds an execution's state from its newest snapshot (when it decodes)
/// and the events after it. `None` if the execution has no events.
pub fn load_state(journal: &dyn Journal, id: ExecutionId) -> Result<Option<ExecutionState>, Error> {
    // A snapshot is an optimisation: one that cannot be used is reported and
    // the history is folded from the start instead.
    let snapshot = match journal.latest_snapshot(id) {
        Ok(Some(s)) => match serde_json::from_slice::<ExecutionState>(&s.state) {
            Ok(state) if state.seq == s.seq && state.id == id => Some(state),
            Ok(_) => {
                tracing::warn!(execution = %id, seq = s.seq, "snapshot does not match its place; folding from the start");
                None
            }
            Err(e) => {
                tracing::warn!(execution = %id, seq = s.seq, error = %e, "snapshot does not decode; folding from the start");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(execution = %id, error = %e, "snapshot unreadable; folding from the start");
            None
        }
    };
    let state = snapshot.unwrap_or_else(|| ExecutionState::empty(id));
    fold_from(journal, state).map(|s| (s.seq > 0).then_some(s))
}

/// Applies every event after `state.seq`.
pub fn fold_from(
    journal: &dyn Journal,
    mut state: ExecutionState,
) -> Result<ExecutionState, Error> {
    loop {
        let records = journal.read(state.id, state.seq + 1, READ_CHUNK)?;
        if records.is_empty() {
            return Ok(state);
        }
        for r in &records {
            apply(&mut state, r.seq, r.recorded_at_ms, &decode(r)?)?;
        }
    }
}
