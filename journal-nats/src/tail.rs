//! Subscriptions: stored events, then live ones, from an ordered consumer
//! (JetStream's own stored-then-live delivery, which resumes by sequence
//! after a reconnect, so there is no gap and no repeat at the seam).
//!
//! A subscription to one stream reads it from its first message, so every
//! record it yields is checked against the hash chain, and skips what is
//! before `from_seq`. One to everything starts at the message holding
//! `from_position`.
//!
//! Once the journal is closed, a subscription gives what was stored then
//! and ends.
//!
//! Owns the consumer of each subscription. It must never yield a record
//! out of order, twice, or unchecked (one stream) / undecoded (everything).

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use retrace_journal::{Subscription, Tail};
use tokio::sync::watch;

use crate::direct::remote;
use crate::envelope::{self, Check};
use crate::heads::Head;
use crate::journal::Reader;
use crate::names::sequence_of;

pub(crate) fn subscribe(reader: Reader, from: Tail, closed: watch::Receiver<()>) -> Subscription {
    let records = async_stream::try_stream! {
        let (filter, start, one) = match from {
            Tail::Stream { stream, .. } => (reader.names.subject(stream), 1, Some(stream)),
            Tail::All { from_position } => {
                (reader.names.all_events(), sequence_of(from_position).max(1), None)
            }
        };
        let deliver_policy = if start <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: start }
        };
        let consumer = reader
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| remote("cannot follow the journal on NATS", e))?;
        // Matching messages not yet delivered: how a closing subscription
        // knows when it has given everything stored.
        let mut pending = consumer.cached_info().num_pending;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| remote("cannot follow the journal on NATS", e))?;
        let mut closed = closed;
        let mut closing = false;
        let mut head = Head::EMPTY;
        loop {
            if closing && pending == 0 {
                break;
            }
            let message = if closing {
                messages.next().await
            } else {
                tokio::select! {
                    message = messages.next() => message,
                    () = journal_closed(&mut closed) => {
                        closing = true;
                        continue;
                    }
                }
            };
            let Some(message) = message else { break };
            let message = message.map_err(|e| remote("lost the journal's tail on NATS", e))?;
            let info = message.info().map_err(|e| {
                retrace_journal::Error::Storage(retrace_journal::StorageError::Remote {
                    action: "a message of the journal's tail has no sequence".into(),
                    source: e,
                })
            })?;
            let sequence = info.stream_sequence;
            pending = info.pending;
            let check = match one {
                Some(stream) => Check::Continues { stream, after: head },
                None => Check::Alone,
            };
            let records = envelope::decode(sequence, &message.payload, check)?;
            if let Some(after) = envelope::head_after(&records) {
                head = after;
            }
            for record in records {
                let wanted = match from {
                    Tail::Stream { from_seq, .. } => record.seq >= from_seq,
                    Tail::All { from_position } => record.position >= from_position,
                };
                if wanted {
                    yield record;
                }
            }
        }
    };
    Subscription::from_stream(records)
}

/// Returns once the journal is closed (its sender dropped).
async fn journal_closed(closed: &mut watch::Receiver<()>) {
    while closed.changed().await.is_ok() {}
}
