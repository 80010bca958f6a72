//! Circuit breakers in the journal: the events of the reserved stream
//! `BREAKERS` as records (JSON payloads, the event's kind as the record's
//! kind), and the table rebuilt from them at open.
//!
//! Owns the records' encoding; never decides a transition.

use retrace_journal::{EventRecord, Journal, NewEvent};

use super::BREAKERS;
use crate::breakers::{BreakerEvent, Breakers};
use crate::error::Error;

pub(crate) fn encode(event: &BreakerEvent, now_ms: u64) -> Result<NewEvent, Error> {
    let payload = serde_json::to_vec(event).map_err(|source| Error::Codec {
        what: format!("a {} event does not encode", event.kind()),
        source,
    })?;
    Ok(NewEvent::new(event.kind(), now_ms, payload))
}

/// The event a record holds; `None` for a kind a later build added.
pub(crate) fn decode(record: &EventRecord) -> Result<Option<BreakerEvent>, Error> {
    if !BreakerEvent::KINDS.contains(&record.kind.as_str()) {
        return Ok(None);
    }
    serde_json::from_slice(&record.payload)
        .map(Some)
        .map_err(|source| Error::Codec {
            what: format!(
                "breakers event {} ({}) does not decode",
                record.seq, record.kind
            ),
            source,
        })
}

/// Rebuilds the table from its stream (a few events per breaker change: it
/// stays small).
pub async fn load(journal: &dyn Journal) -> Result<Breakers, Error> {
    let mut table = Breakers::default();
    loop {
        let records = journal.read(BREAKERS, table.seq + 1, 256).await?;
        if records.is_empty() {
            return Ok(table);
        }
        for r in records {
            match decode(&r)? {
                Some(event) => table.apply(r.seq, r.recorded_at_ms, &event),
                None => table.seq = r.seq,
            }
        }
    }
}
