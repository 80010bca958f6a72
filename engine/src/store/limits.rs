//! Capability limits in the journal: the events of the reserved stream
//! `LIMITS` (JSON, see `reserved`), and the table rebuilt from them at
//! open. The stream grows by one event per answered poll that claimed
//! tasks of a limited capability, so the table (which keeps no more claims
//! than the limits count) is a [`SnapshotTable`], kept as the stream's
//! snapshot now and then.
//!
//! Owns the records' encoding; never decides a claim.

use retrace_journal::StreamId;

use super::LIMITS;
use super::reserved::{SnapshotTable, StreamEvent};
use crate::limits::{LimitsEvent, LimitsTable};

impl StreamEvent for LimitsEvent {
    const STREAM: &'static str = "limits";
    const KINDS: &'static [&'static str] = &LimitsEvent::KINDS;

    fn kind(&self) -> &'static str {
        LimitsEvent::kind(self)
    }
}

impl SnapshotTable for LimitsTable {
    type Event = LimitsEvent;
    const STREAM: StreamId = LIMITS;

    fn seq(&self) -> u64 {
        self.seq
    }

    fn apply(&mut self, seq: u64, at_ms: u64, event: &LimitsEvent) {
        LimitsTable::apply(self, seq, at_ms, event);
    }

    fn skip(&mut self, seq: u64) {
        self.seq = seq;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::limits::CapabilityLimits;
    use crate::store::reserved::{decode_snapshot, encode_snapshot};

    #[test]
    fn a_snapshot_reads_back_and_a_damaged_one_is_ignored() {
        let mut table = LimitsTable::default();
        table.apply(
            1,
            5,
            &LimitsEvent::CapabilityLimitsSet {
                capability: "c".into(),
                limits: CapabilityLimits {
                    concurrency: Some(2),
                    rate_limit: None,
                },
                by: None,
                reason: None,
            },
        );
        let bytes = encode_snapshot(&table).unwrap();
        assert_eq!(decode_snapshot::<LimitsTable>(&bytes), Some(table));
        assert_eq!(
            decode_snapshot::<LimitsTable>(&bytes[..bytes.len() - 1]),
            None
        );
        assert_eq!(decode_snapshot::<LimitsTable>(&[2, b'{', b'}']), None);
    }
}
