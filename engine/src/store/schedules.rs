//! Schedules in the journal: the events of the reserved stream
//! `SCHEDULES` as records (JSON payloads, the event's kind as the record's
//! kind), and the table rebuilt from them at open. The stream grows by one
//! event per fire time, so every `SNAPSHOT_EVERY` events the table is kept
//! as the stream's snapshot, and opening folds only the events after it.
//! A snapshot is derived data: one that does not decode is ignored and the
//! whole stream folded instead.
//!
//! Owns the records' encoding. It must never decide anything about a
//! schedule (`crate::schedules` does).

use retrace_journal::Journal;

use super::SCHEDULES;
use super::reserved::{self, StreamEvent};
use crate::error::Error;
use crate::schedules::{ScheduleEvent, Schedules};

impl StreamEvent for ScheduleEvent {
    const STREAM: &'static str = "schedules";
    const KINDS: &'static [&'static str] = &ScheduleEvent::KINDS;

    fn kind(&self) -> &'static str {
        ScheduleEvent::kind(self)
    }
}

/// Keep the table as a snapshot every this many events.
pub(crate) const SNAPSHOT_EVERY: u64 = 1_000;

/// The snapshot format's version, first in its bytes.
const SNAPSHOT_VERSION: u8 = 1;

pub(crate) fn encode_snapshot(table: &Schedules) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![SNAPSHOT_VERSION];
    serde_json::to_writer(&mut bytes, table).map_err(|source| Error::Codec {
        what: "the schedules table does not encode".into(),
        source,
    })?;
    Ok(bytes)
}

fn decode_snapshot(bytes: &[u8]) -> Option<Schedules> {
    match bytes.split_first() {
        Some((&SNAPSHOT_VERSION, json)) => serde_json::from_slice(json).ok(),
        _ => None,
    }
}

/// Rebuilds the table from its newest snapshot and the events after it.
pub async fn load(journal: &dyn Journal) -> Result<Schedules, Error> {
    let snapshot = journal.latest_snapshot(SCHEDULES).await?;
    let mut table = snapshot
        .and_then(|s| decode_snapshot(&s.state).filter(|t: &Schedules| t.seq == s.seq))
        .unwrap_or_default();
    let from = table.seq;
    reserved::fold(journal, SCHEDULES, from, |seq, at_ms, event| match event {
        Some(event) => table.apply(seq, at_ms, &event),
        None => table.seq = seq,
    })
    .await?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_snapshot_reads_back_and_a_damaged_one_is_ignored() {
        let mut table = Schedules::default();
        let spec = serde_json::from_value(serde_json::json!(
            {"id": "s", "workflow": "w", "everyMs": 1000}
        ))
        .unwrap();
        table.apply(
            1,
            5,
            &ScheduleEvent::ScheduleCreated {
                spec,
                by: None,
                reason: None,
            },
        );
        table.apply(
            2,
            1_005,
            &ScheduleEvent::ScheduleSkipped {
                id: "s".into(),
                at_ms: 1_005,
            },
        );
        let bytes = encode_snapshot(&table).unwrap();
        assert_eq!(decode_snapshot(&bytes), Some(table));
        assert_eq!(decode_snapshot(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_snapshot(&[2, b'{', b'}']), None);
    }
}
