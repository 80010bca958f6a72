//! Webhook subscriptions in the journal: the events of the reserved
//! stream `WEBHOOKS` (JSON, see `reserved`), and the table rebuilt from
//! them at open. The stream grows by one event per delivery, so the table
//! is a [`SnapshotTable`], kept as the stream's snapshot now and then.
//!
//! The stream holds each subscription's signing secret (the engine needs it
//! to sign): it is a reserved stream, never shown by a history, a stream
//! or the audit. Owns the records' encoding; it must never decide a
//! delivery.

use retrace_journal::StreamId;

use super::WEBHOOKS;
use super::reserved::{SnapshotTable, StreamEvent};
use crate::webhooks::{WebhookEvent, Webhooks};

impl StreamEvent for WebhookEvent {
    const STREAM: &'static str = "webhooks";
    const KINDS: &'static [&'static str] = &WebhookEvent::KINDS;

    fn kind(&self) -> &'static str {
        WebhookEvent::kind(self)
    }
}

impl SnapshotTable for Webhooks {
    type Event = WebhookEvent;
    const STREAM: StreamId = WEBHOOKS;

    fn seq(&self) -> u64 {
        self.seq
    }

    fn apply(&mut self, seq: u64, at_ms: u64, event: &WebhookEvent) {
        Webhooks::apply(self, seq, at_ms, event);
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
    use crate::webhooks::{Secret, WebhookSpec};

    #[test]
    fn a_snapshot_reads_back_and_a_damaged_one_is_ignored() {
        let mut table = Webhooks::default();
        table.apply(
            1,
            5,
            &WebhookEvent::WebhookCreated {
                id: "w".into(),
                spec: WebhookSpec {
                    url: "https://e.com/".into(),
                    events: vec!["step_failed".into()],
                    workflow: Some("billing".into()),
                },
                secret: Secret::new("whsec_AAAA".into()),
                after: 3,
                by: None,
                reason: None,
            },
        );
        table.apply(
            2,
            6,
            &WebhookEvent::WebhookDelivered {
                id: "w".into(),
                up_to: 9,
                count: 1,
            },
        );
        let bytes = encode_snapshot(&table).unwrap();
        assert_eq!(decode_snapshot::<Webhooks>(&bytes), Some(table));
        assert_eq!(decode_snapshot::<Webhooks>(&bytes[..bytes.len() - 1]), None);
    }
}
