//! The read side: every read the API and the command line make of stored
//! history, as decoded events and states, never as records.
//!
//! [`History`] reads one journal, whether a running engine's (through
//! [`crate::runtime::Engine::read`]) or a stopped server's data folder opened
//! read-only ([`History::open_read_only`], for `retrace replay`, `verify` and
//! `export`). It pages executions and their events, rebuilds states (from a
//! snapshot, or from the first event to check one), and streams one
//! execution or the whole journal, stored events first and then live ones
//! (with, when asked, the circuit breakers' changes). The reserved streams
//! (the catalog, the access tokens, the schedules, the circuit breakers)
//! are never shown as executions; `audit` lists what people changed in
//! them.
//!
//! Positions (the whole journal's order) are what the journal promises:
//! strictly increasing in commit order, possibly with gaps. So every "from
//! here on" is "after the last position seen", never a count.
//!
//! It must never write, and never skip or reorder an event: what it shows is
//! exactly what the journal holds. A record that fails its checks or does
//! not decode is an error naming where it is.

mod audit;
mod chain;
mod limits;
mod names;
mod replay;
mod streams;

use std::collections::BTreeSet;
use std::path::Path;

pub use audit::{AuditEntry, AuditTarget};
pub use chain::ChainCheck;
pub use limits::LimitPeak;
pub use names::{NameLookup, WorkflowNames};
pub use replay::Replayed;
pub use streams::{
    BreakerChange, EventStream, GlobalFilter, GlobalStream, Include, JournalEvent, JournalStream,
};

use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{Event, ExecutionState};
use crate::store::catalog::WorkflowCatalog;
use crate::store::codec::{self, READ_CHUNK};
use crate::store::{Store, execution_of, is_execution, stream_of};

/// One event of an execution's history, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub seq: u64,
    /// Its place in the whole journal.
    pub position: u64,
    pub at_ms: u64,
    /// The hash that chains it to the execution's previous event.
    pub hash: [u8; 32],
    pub event: Event,
}

impl HistoryEvent {
    /// The hash as lowercase hex, as the API shows it.
    pub fn hash_hex(&self) -> String {
        blake3::Hash::from(self.hash).to_hex().to_string()
    }
}

/// An event of the whole journal: an execution's event and which one.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalEvent {
    pub execution: ExecutionId,
    /// The workflow the execution runs.
    pub workflow: String,
    pub event: HistoryEvent,
}

/// An execution as stored: its id and how many events it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredExecution {
    pub id: ExecutionId,
    pub last_seq: u64,
}

/// An execution's newest snapshot, as stored.
#[derive(Debug)]
pub struct StoredSnapshot {
    pub seq: u64,
    /// The state it holds, or why it does not decode.
    pub state: Result<ExecutionState, serde_json::Error>,
}

/// Reads of one journal.
#[derive(Clone)]
pub struct History {
    store: Store,
    /// Names executions' workflows without reading their first event (a
    /// running engine's index); `None` offline.
    lookup: Option<NameLookup>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl History {
    pub fn new(store: Store, lookup: Option<NameLookup>) -> History {
        History { store, lookup }
    }

    /// The history in a stopped server's data folder, read-only.
    pub fn open_read_only(path: &Path) -> Result<History, Error> {
        Ok(History::new(Store::open_read_only(path)?, None))
    }

    /// The store it reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Up to `limit` stored executions in id order, after `after`.
    pub async fn executions(
        &self,
        after: Option<ExecutionId>,
        limit: usize,
    ) -> Result<Vec<StoredExecution>, Error> {
        self.executions_of(None, after, limit).await
    }

    /// The same, of `partitions` only (`None`: of all).
    async fn executions_of(
        &self,
        partitions: Option<&BTreeSet<u32>>,
        after: Option<ExecutionId>,
        limit: usize,
    ) -> Result<Vec<StoredExecution>, Error> {
        let mut after = after.map(stream_of);
        let mut found = Vec::new();
        // The catalog's stream sorts first; skipping it may leave a page
        // one short, so read on until it is full or the journal ends.
        while found.len() < limit {
            let journal = self.store.journal();
            let heads = match partitions {
                Some(partitions) => {
                    journal
                        .streams_in(partitions, after, limit - found.len())
                        .await?
                }
                None => journal.streams(after, limit - found.len()).await?,
            };
            let Some(last) = heads.last() else { break };
            after = Some(last.stream);
            found.extend(heads.iter().filter_map(|h| {
                execution_of(h.stream).map(|id| StoredExecution {
                    id,
                    last_seq: h.last_seq,
                })
            }));
        }
        Ok(found)
    }

    /// Every stored execution, in id order.
    pub async fn all_executions(&self) -> Result<Vec<StoredExecution>, Error> {
        self.all_executions_of(None).await
    }

    /// Every stored execution of `partitions` of a journal several servers
    /// share (of a journal that is not shared: every one), in id order.
    /// Only their heads are read, where the journal can tell.
    pub async fn all_executions_in(
        &self,
        partitions: &BTreeSet<u32>,
    ) -> Result<Vec<StoredExecution>, Error> {
        self.all_executions_of(Some(partitions)).await
    }

    async fn all_executions_of(
        &self,
        partitions: Option<&BTreeSet<u32>>,
    ) -> Result<Vec<StoredExecution>, Error> {
        let mut all = Vec::new();
        loop {
            let page = self
                .executions_of(
                    partitions,
                    all.last().map(|e: &StoredExecution| e.id),
                    READ_CHUNK,
                )
                .await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// The execution's last seq; `None` if it has no events.
    pub async fn last_seq(&self, id: ExecutionId) -> Result<Option<u64>, Error> {
        if !is_execution(id) {
            return Ok(None);
        }
        let head = self.store.journal().head(stream_of(id)).await?;
        Ok(head.map(|h| h.last_seq))
    }

    /// Up to `limit` events of the execution with `seq >= from_seq`. A page
    /// ends before an event that does not decode; reading from that event
    /// fails, naming it. An execution with no events is unknown.
    pub async fn events(
        &self,
        id: ExecutionId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, Error> {
        if !is_execution(id) {
            return Err(Error::UnknownExecution(id));
        }
        let records = self
            .store
            .journal()
            .read(stream_of(id), from_seq, limit)
            .await?;
        if records.is_empty() && self.last_seq(id).await?.is_none() {
            return Err(Error::UnknownExecution(id));
        }
        let mut events = Vec::with_capacity(records.len());
        for record in &records {
            match codec::decode(record) {
                Ok(event) => events.push(HistoryEvent {
                    seq: record.seq,
                    position: record.position,
                    at_ms: record.recorded_at_ms,
                    hash: record.hash,
                    event,
                }),
                Err(e) if events.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(events)
    }

    /// Every event of the execution with `seq <= until`, oldest first.
    pub async fn events_until(
        &self,
        id: ExecutionId,
        until: u64,
    ) -> Result<Vec<HistoryEvent>, Error> {
        let mut all: Vec<HistoryEvent> = Vec::new();
        let mut from = 1;
        while from <= until {
            let page = self.events(id, from, READ_CHUNK).await?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            all.extend(page.into_iter().filter(|e| e.seq <= until));
        }
        Ok(all)
    }

    /// The execution's newest state, from its newest usable snapshot and the
    /// events after it; `None` if it has no events.
    pub async fn state(&self, id: ExecutionId) -> Result<Option<ExecutionState>, Error> {
        self.store.load_state(id).await
    }

    /// The state after event `until`, folded from the first event (no
    /// snapshot is trusted); `None` if the execution has no events.
    pub async fn fold(&self, id: ExecutionId, until: u64) -> Result<Option<ExecutionState>, Error> {
        if !is_execution(id) {
            return Ok(None);
        }
        let state =
            codec::fold_from(self.store.journal(), ExecutionState::empty(id), until).await?;
        Ok((state.seq > 0).then_some(state))
    }

    /// The execution's newest snapshot as stored (checked by `verify`).
    pub async fn snapshot(&self, id: ExecutionId) -> Result<Option<StoredSnapshot>, Error> {
        if !is_execution(id) {
            return Ok(None);
        }
        let stored = self.store.journal().latest_snapshot(stream_of(id)).await?;
        Ok(stored.map(|s| StoredSnapshot {
            seq: s.seq,
            state: codec::decode_state(&s.state),
        }))
    }

    /// Up to `limit` events of the whole journal with `position >=
    /// from_position`, in position order, with the position to read from
    /// next (`None` at the end). Catalog records are skipped.
    pub async fn global_events(
        &self,
        from_position: u64,
        limit: usize,
        names: &mut WorkflowNames,
    ) -> Result<(Vec<GlobalEvent>, Option<u64>), Error> {
        let records = self
            .store
            .journal()
            .read_global(from_position, limit)
            .await?;
        let next = records.last().map(|r| r.position + 1);
        let mut events = Vec::with_capacity(records.len());
        for record in &records {
            let Some(execution) = execution_of(record.stream) else {
                continue;
            };
            let event = codec::decode(record)?;
            let workflow = names.workflow(self, execution, &event).await?;
            events.push(GlobalEvent {
                execution,
                workflow,
                event: HistoryEvent {
                    seq: record.seq,
                    position: record.position,
                    at_ms: record.recorded_at_ms,
                    hash: record.hash,
                    event,
                },
            });
        }
        Ok((events, next))
    }

    /// The position of the newest acknowledged event (0 when empty): a
    /// stream from here shows only what comes next.
    pub async fn last_position(&self) -> Result<u64, Error> {
        Ok(self.store.journal().last_position().await?)
    }

    /// The workflow definitions the journal holds.
    pub async fn workflows(&self) -> Result<WorkflowCatalog, Error> {
        WorkflowCatalog::load(self.store.journal()).await
    }

    /// Names executions' workflows for a stream or a page of the journal.
    pub fn names(&self) -> WorkflowNames {
        WorkflowNames::new(self.lookup.clone())
    }
}
