//! Where the writer publishes committed events: one channel for the whole
//! journal, and one per execution that has subscribers, so a subscriber to
//! one execution is woken only by that execution's events (a thousand
//! subscribers to different executions cost one send per event, not a
//! thousand).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::{EventRecord, ExecutionId};

type Sender = broadcast::Sender<Arc<EventRecord>>;

/// Buffer of one execution's channel. Small on purpose: a channel is made
/// per subscribed execution, and a subscriber that falls behind catches up
/// from the store anyway.
const PER_EXECUTION_BUFFER: usize = 256;

#[derive(Debug)]
pub(crate) struct Fanout {
    all: Sender,
    per_execution: Mutex<HashMap<ExecutionId, Sender>>,
}

impl Fanout {
    pub(crate) fn new(capacity: usize) -> Fanout {
        Fanout {
            all: broadcast::channel(capacity.max(16)).0,
            per_execution: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn subscribe_all(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.all.subscribe()
    }

    pub(crate) fn subscribe(
        &self,
        execution: ExecutionId,
    ) -> broadcast::Receiver<Arc<EventRecord>> {
        let mut map = self.per_execution.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(execution)
            .or_insert_with(|| broadcast::channel(PER_EXECUTION_BUFFER).0)
            .subscribe()
    }

    /// Publishes a committed group, in order.
    pub(crate) fn publish(&self, records: Vec<Arc<EventRecord>>) {
        let mut map = self.per_execution.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            if !map.is_empty()
                && let Some(tx) = map.get(&record.execution)
                && tx.send(record.clone()).is_err()
            {
                // Its last subscriber is gone (checked under the same lock
                // subscribe takes, so no new one can be missed).
                map.remove(&record.execution);
            }
            // No subscriber at all is not an error.
            let _ = self.all.send(record);
        }
    }
}
