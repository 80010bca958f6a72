//! Events of a reserved stream (schedules, circuit breakers, capability
//! limits): JSON payloads whose record kind is the event's tag, and the
//! fold that rebuilds a table from them. A kind this build does not know (a
//! later build's) is skipped, never an error.
//!
//! Also the snapshots of the tables whose streams grow by one event per
//! fire time or per claim ([`SnapshotTable`]): every [`SNAPSHOT_EVERY`]
//! events the table is kept as the stream's snapshot (a version byte, then
//! JSON), and opening folds only the events after it. A snapshot is derived
//! data: one that does not decode is ignored and the whole stream folded.
//!
//! Owns the records' and snapshots' encoding for every such stream. It
//! must never decide anything the events mean (each table's `apply` does).

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

/// A table folded from a reserved stream, and kept as its snapshot.
pub(crate) trait SnapshotTable: Serialize + DeserializeOwned + Default {
    type Event: StreamEvent;
    /// The stream it is folded from.
    const STREAM: StreamId;
    /// The seq of the last event folded.
    fn seq(&self) -> u64;
    /// Folds the event stored at `seq`, recorded at `at_ms`.
    fn apply(&mut self, seq: u64, at_ms: u64, event: &Self::Event);
    /// Passes over the event at `seq`, of a kind a later build added.
    fn skip(&mut self, seq: u64);
}

/// Keep a [`SnapshotTable`] as its stream's snapshot every this many events.
pub(crate) const SNAPSHOT_EVERY: u64 = 1_000;

/// The snapshot format's version, first in its bytes.
const SNAPSHOT_VERSION: u8 = 1;

pub(crate) fn encode_snapshot<T: SnapshotTable>(table: &T) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![SNAPSHOT_VERSION];
    serde_json::to_writer(&mut bytes, table).map_err(|source| Error::Codec {
        what: format!("the {} table does not encode", T::Event::STREAM),
        source,
    })?;
    Ok(bytes)
}

pub(crate) fn decode_snapshot<T: SnapshotTable>(bytes: &[u8]) -> Option<T> {
    match bytes.split_first() {
        Some((&SNAPSHOT_VERSION, json)) => serde_json::from_slice(json).ok(),
        _ => None,
    }
}

/// Rebuilds a table from its stream's newest snapshot and the events after it.
pub(crate) async fn load<T: SnapshotTable>(journal: &dyn Journal) -> Result<T, Error> {
    let snapshot = journal.latest_snapshot(T::STREAM).await?;
    let mut table = snapshot
        .and_then(|s| decode_snapshot::<T>(&s.state).filter(|t| t.seq() == s.seq))
        .unwrap_or_default();
    let from = table.seq();
    fold(journal, T::STREAM, from, |seq, at_ms, event| match event {
        Some(event) => table.apply(seq, at_ms, &event),
        None => table.skip(seq),
    })
    .await?;
    Ok(table)
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
