//! Schedules in the journal: the events of the reserved stream
//! `SCHEDULES` as records (JSON payloads, the event's kind as the record's
//! kind), and the table rebuilt from them at open. The stream grows by one
//! event per fire time, so the table is a [`SnapshotTable`], kept as the
//! stream's snapshot now and then.
//!
//! Owns the records' encoding. It must never decide anything about a
//! schedule (`crate::schedules` does).

use retrace_journal::StreamId;

use super::SCHEDULES;
use super::reserved::{SnapshotTable, StreamEvent};
use crate::schedules::{ScheduleEvent, Schedules};

impl StreamEvent for ScheduleEvent {
    const STREAM: &'static str = "schedules";
    const KINDS: &'static [&'static str] = &ScheduleEvent::KINDS;

    fn kind(&self) -> &'static str {
        ScheduleEvent::kind(self)
    }
}

impl SnapshotTable for Schedules {
    type Event = ScheduleEvent;
    const STREAM: StreamId = SCHEDULES;

    fn seq(&self) -> u64 {
        self.seq
    }

    fn apply(&mut self, seq: u64, at_ms: u64, event: &ScheduleEvent) {
        Schedules::apply(self, seq, at_ms, event);
    }

    fn skip(&mut self, seq: u64) {
        self.seq = seq;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::reserved::{decode_snapshot, encode_snapshot};

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
        assert_eq!(decode_snapshot::<Schedules>(&bytes), Some(table));
        assert_eq!(
            decode_snapshot::<Schedules>(&bytes[..bytes.len() - 1]),
            None
        );
        assert_eq!(decode_snapshot::<Schedules>(&[2, b'{', b'}']), None);
    }
}
