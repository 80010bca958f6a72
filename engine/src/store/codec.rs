//! Events to journal records and back, states to snapshots and back, and
//! folding a stored history into a state.
//!
//! Payloads are JSON: the API shows them as they are, and a JSON event read
//! back by a later build with more optional fields still decodes. Public
//! for the fuzz targets and the recovery tests, which check exactly this;
//! the API and the command line never use it (they read through
//! [`crate::read`]).

use retrace_journal::{EventRecord, Journal, NewEvent};

use super::{execution_of, stream_of};
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{Event, ExecutionState, apply};

/// How many events one read of a history takes.
pub(crate) const READ_CHUNK: usize = 1024;

/// The journal record of `event`, recorded at `at_ms`.
pub fn encode(event: &Event, at_ms: u64) -> Result<NewEvent, Error> {
    let payload = serde_json::to_vec(event).map_err(|source| Error::Codec {
        what: format!("event {} does not encode", event.kind()),
        source,
    })?;
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
    serde_json::from_slice(&record.payload).map_err(|source| Error::Undecodable {
        execution: execution_of(record.stream).unwrap_or(ExecutionId::NIL),
        seq: record.seq,
        source,
    })
}

/// Encodes a state for a snapshot.
pub fn encode_state(state: &ExecutionState) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(state).map_err(|source| Error::Codec {
        what: format!("the state of execution {} does not encode", state.id),
        source,
    })
}

/// Decodes a snapshot's state.
pub fn decode_state(bytes: &[u8]) -> Result<ExecutionState, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The newest snapshot of `id` when it can be used: it decodes and sits
/// where it says. A snapshot is an optimisation, so one that cannot be used
/// is reported and the caller folds from the start instead.
pub(crate) async fn usable_snapshot(
    journal: &dyn Journal,
    id: ExecutionId,
) -> Option<ExecutionState> {
    match journal.latest_snapshot(stream_of(id)).await {
        Ok(Some(s)) => match decode_state(&s.state) {
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
    }
}

/// Applies every stored event after `state.seq`, up to seq `until`.
pub async fn fold_from(
    journal: &dyn Journal,
    state: ExecutionState,
    until: u64,
) -> Result<ExecutionState, Error> {
    fold_watched(journal, state, until, |_, _, _| {}).await
}

/// [`fold_from`], showing `watch` each event with the state it is applied
/// to and the time it was recorded, before it is applied.
pub async fn fold_watched(
    journal: &dyn Journal,
    mut state: ExecutionState,
    until: u64,
    mut watch: impl FnMut(&ExecutionState, &Event, u64),
) -> Result<ExecutionState, Error> {
    while state.seq < until {
        let records = journal
            .read(stream_of(state.id), state.seq + 1, READ_CHUNK)
            .await?;
        if records.is_empty() {
            break;
        }
        for r in records.iter().take_while(|r| r.seq <= until) {
            let event = decode(r)?;
            watch(&state, &event, r.recorded_at_ms);
            apply(&mut state, r.seq, r.recorded_at_ms, &event)?;
        }
    }
    Ok(state)
}
