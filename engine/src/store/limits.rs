//! Capability limits in the journal: the events of the reserved stream
//! `LIMITS` (JSON, see `reserved`), and the table rebuilt from them at
//! open. The stream grows by one event per answered poll that claimed
//! tasks of a rate-limited capability, so every `SNAPSHOT_EVERY` events the
//! table (which keeps no more claims than the limits count) is kept as the
//! stream's snapshot, and opening folds only the events after it. A
//! snapshot that does not decode is ignored and the whole stream folded.
//!
//! Owns the records' encoding; never decides a claim.

use retrace_journal::Journal;

use super::LIMITS;
use super::reserved::{self, StreamEvent};
use crate::error::Error;
use crate::limits::{LimitsEvent, LimitsTable};

impl StreamEvent for LimitsEvent {
    const STREAM: &'static str = "limits";
    const KINDS: &'static [&'static str] = &LimitsEvent::KINDS;

    fn kind(&self) -> &'static str {
        LimitsEvent::kind(self)
    }
}

/// Keep the table as a snapshot every this many events.
pub(crate) const SNAPSHOT_EVERY: u64 = 1_000;

/// The snapshot format's version, first in its bytes.
const SNAPSHOT_VERSION: u8 = 1;

pub(crate) fn encode_snapshot(table: &LimitsTable) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![SNAPSHOT_VERSION];
    serde_json::to_writer(&mut bytes, table).map_err(|source| Error::Codec {
        what: "the limits table does not encode".into(),
        source,
    })?;
    Ok(bytes)
}

fn decode_snapshot(bytes: &[u8]) -> Option<LimitsTable> {
    match bytes.split_first() {
        Some((&SNAPSHOT_VERSION, json)) => serde_json::from_slice(json).ok(),
        _ => None,
    }
}

/// Rebuilds the table from its newest snapshot and the events after it.
pub async fn load(journal: &dyn Journal) -> Result<LimitsTable, Error> {
    let snapshot = journal.latest_snapshot(LIMITS).await?;
    let mut table = snapshot
        .and_then(|s| decode_snapshot(&s.state).filter(|t: &LimitsTable| t.seq == s.seq))
        .unwrap_or_default();
    let from = table.seq;
    reserved::fold(journal, LIMITS, from, |seq, at_ms, event| match event {
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
    use crate::limits::CapabilityLimits;

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
        assert_eq!(decode_snapshot(&bytes), Some(table));
        assert_eq!(decode_snapshot(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_snapshot(&[2, b'{', b'}']), None);
    }
}
