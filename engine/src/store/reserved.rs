//! Events of a reserved stream (schedules, circuit breakers): JSON
//! payloads whose record kind is the event's tag, and the fold that
//! rebuilds a table from them. A kind this build does not know (a later
//! build's) is skipped, never an error.
//!
//! Owns the records' encoding for every such stream. It must never decide
//! anything the events mean (each table's `apply` does).

use retrace_journal::{EventRecord, Journal, NewEvent, StreamId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// An event kept as JSON in a reserved stream.
pub(crate) trait StreamEvent: Serialize + DeserializeOwned {
    /// What the stream is, for errors (`schedules`, `breakers`).
    const STREAM: &'static str;
    /// Every kind this build folds.
    const KINDS: &'static [&'static str];
    fn kind(&self) -> &'static str;
}

pub(crate) fn encode<E: StreamEvent>(event: &E, now_ms: u64) -> Result<NewEvent, Error> {
    let payload = serde_json::to_vec(event).map_err(|source| Error::Codec {
        what: format!("a {} event does not encode", event.kind()),
        source,
    })?;
    Ok(NewEvent::new(event.kind(), now_ms, payload))
}

/// The event a record holds; `None` for a kind a later build added.
pub(crate) fn decode<E: StreamEvent>(record: &EventRecord) -> Result<Option<E>, Error> {
    if !E::KINDS.contains(&record.kind.as_str()) {
        return Ok(None);
    }
    serde_json::from_slice(&record.payload)
        .map(Some)
        .map_err(|source| Error::Codec {
            what: format!(
                "{} event {} ({}) does not decode",
                E::STREAM,
                record.seq,
                record.kind
            ),
            source,
        })
}

/// Folds `stream`'s events after `after_seq` with `apply(seq, recorded at,
/// event)`; an event of an unknown kind is passed as `None`.
pub(crate) async fn fold<E: StreamEvent>(
    journal: &dyn Journal,
    stream: StreamId,
    mut after_seq: u64,
    mut apply: impl FnMut(u64, u64, Option<E>),
) -> Result<(), Error> {
    loop {
        let records = journal.read(stream, after_seq + 1, 256).await?;
        if records.is_empty() {
            return Ok(());
        }
        for r in records {
            apply(r.seq, r.recorded_at_ms, decode(&r)?);
            after_seq = r.seq;
        }
    }
}
