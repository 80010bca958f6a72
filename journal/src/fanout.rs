//! Where the writer publishes committed events: one channel for the whole
//! journal, and one per stream that has subscribers, so a subscriber to
//! one stream is woken only by that stream's events (a thousand
//! subscribers to different streams cost one send per event, not a
//! thousand).
//!
//! Owns the channels. It must never block the writer (a full channel drops
//! the oldest event for a lagging subscriber, who catches up from the store)
//! and never publish anything the writer has not committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::record::EventRecord;
use crate::stream::StreamId;

type Sender = broadcast::Sender<Arc<EventRecord>>;

/// Buffer of one stream's channel. Small on purpose: a channel is made
/// per subscribed stream, and a subscriber that falls behind catches up
/// from the store anyway.
const PER_STREAM_BUFFER: usize = 256;

#[derive(Debug)]
pub(crate) struct Fanout {
    all: Sender,
    per_stream: Mutex<HashMap<StreamId, Sender>>,
}

impl Fanout {
    pub(crate) fn new(capacity: usize) -> Fanout {
        Fanout {
            all: broadcast::channel(capacity.max(16)).0,
            per_stream: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn subscribe_all(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.all.subscribe()
    }

    pub(crate) fn subscribe(&self, stream: StreamId) -> broadcast::Receiver<Arc<EventRecord>> {
        let mut map = self.per_stream.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(stream)
            .or_insert_with(|| broadcast::channel(PER_STREAM_BUFFER).0)
            .subscribe()
    }

    /// Publishes a committed group, in order.
    pub(crate) fn publish(&self, records: Vec<Arc<EventRecord>>) {
        let mut map = self.per_stream.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            if !map.is_empty()
                && let Some(tx) = map.get(&record.stream)
                && tx.send(record.clone()).is_err()
            {
                // Its last subscriber is gone (checked under the same lock
                // subscribe takes, so no new one can be missed).
                map.remove(&record.stream);
            }
            // No subscriber at all is not an error.
            let _ = self.all.send(record);
        }
    }
}
