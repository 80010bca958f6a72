//! The engine's side of the journal boundary: the one module that knows
//! records, streams, the codec and the reserved catalog stream.
//!
//! - [`Storage`] says where the journal is; [`Store::open`] opens it (the
//!   sled folder is the embedded default; any [`Journal`] can be given).
//! - [`Store`] turns engine values into journal calls: events of an
//!   execution appended as records, snapshots, the newest state rebuilt from
//!   snapshot + events. [`crate::read`] builds every read on it.
//! - `codec`: events and states to bytes and back; `catalog`: workflow
//!   definitions, kept as events of the reserved stream `CATALOG`;
//!   `tokens`: access tokens, kept as events of the reserved stream
//!   `ACCESS`; `schedules`, `breakers`, `limits`, `webhooks`: the events
//!   of the reserved streams `SCHEDULES`, `BREAKERS`, `LIMITS` and
//!   `WEBHOOKS`.
//!
//! An execution's id names its stream; the nil id names the catalog, the
//! max id the access tokens, the ones below it the schedules, the
//! breakers, the limits and the webhooks, and none
//! of them is ever an execution. Nothing outside this module and `read` sees a record,
//! a stream id or the catalog stream. What only the sled layout has
//! (`verify`, group-commit statistics) is reached through `Store::local`.
//!
//! It must never decide anything about an execution, nor hide a journal
//! error: a read that fails says so.

pub mod breakers;
pub mod catalog;
pub mod codec;
pub mod limits;
pub mod rebuild;
pub(crate) mod reserved;
pub mod schedules;
pub mod tokens;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use retrace_journal::store::holds_journal;
use retrace_journal::store::overlay::Overlay;
use retrace_journal::store::sled::{LOCK_FILE, SledStore};
use retrace_journal::{EventLog, NewEvent, Options, StreamId};

pub use retrace_journal::store::sled::CACHE_BYTES_DEFAULT;
pub use retrace_journal::{
    Delivery, Error as JournalError, Health as StorageHealth, Journal, MIN_FREE_BYTES_DEFAULT,
    Options as JournalOptions, Share, Stats as JournalStats, StorageError,
};

use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{Event, ExecutionState};

/// The stream of workflow definitions (never an execution).
pub(crate) const CATALOG: StreamId = StreamId::NIL;

/// The stream of access tokens (never an execution): the max UUID, which
/// neither v4 nor v7 ids can be.
pub(crate) const ACCESS: StreamId = StreamId::from_bytes([0xff; 16]);

/// The stream of schedules (never an execution): the max UUID less one,
/// which neither v4 nor v7 ids can be either.
pub(crate) const SCHEDULES: StreamId = StreamId::from_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
]);

/// The stream of circuit breakers (never an execution): the max UUID less
/// two.
pub(crate) const BREAKERS: StreamId = StreamId::from_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd,
]);

/// The stream of capability limits and the claims their rate windows
/// count (never an execution): the max UUID less three.
pub(crate) const LIMITS: StreamId = StreamId::from_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc,
]);

/// The stream of webhook subscriptions and their delivery cursors (never
/// an execution): the max UUID less four.
pub(crate) const WEBHOOKS: StreamId = StreamId::from_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb,
]);

/// The records of a home stream (`what`: for errors) that come after
/// `seq`, the last one taken in: those at or before it are skipped, and the
/// rest must follow on from it one by one.
pub(crate) fn past<'a>(
    records: &'a [retrace_journal::EventRecord],
    seq: u64,
    what: &str,
) -> Result<&'a [retrace_journal::EventRecord], Error> {
    let new = &records[records.partition_point(|r| r.seq <= seq)..];
    for (i, r) in new.iter().enumerate() {
        let expected = seq + 1 + i as u64;
        if r.seq != expected {
            return Err(Error::Inconsistent(format!(
                "{what} event {} read where {expected} was next",
                r.seq
            )));
        }
    }
    Ok(new)
}

/// The stream that holds `id`'s history.
pub(crate) fn stream_of(id: ExecutionId) -> StreamId {
    StreamId::from_bytes(*id.as_bytes())
}

/// The execution whose history `stream` is; `None` for the reserved
/// streams (the catalog's, the access tokens', the schedules', the
/// breakers', the limits' and the webhooks').
pub(crate) fn execution_of(stream: StreamId) -> Option<ExecutionId> {
    let reserved = [CATALOG, ACCESS, SCHEDULES, BREAKERS, LIMITS, WEBHOOKS].contains(&stream);
    (!reserved).then(|| ExecutionId::from_bytes(*stream.as_bytes()))
}

/// Whether `id` can name an execution at all (the nil id is the catalog's,
/// the max id the access tokens').
pub(crate) fn is_execution(id: ExecutionId) -> bool {
    execution_of(stream_of(id)).is_some()
}

/// Where the journal lives.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A sled data folder (created if missing), its journal opened with
    /// `options` (durability, the free-space reserve, the page cache, …).
    Folder { path: PathBuf, options: Options },
    /// A journal the embedder opened (tests wrap one to inject faults).
    Journal(Arc<dyn Journal>),
}

/// The journal under an engine or a reader.
#[derive(Debug, Clone)]
pub struct Store {
    journal: Arc<dyn Journal>,
    /// The sled journal, when this store opened one itself.
    local: Option<EventLog>,
}

impl Store {
    /// Opens the journal `storage` names.
    pub fn open(storage: Storage) -> Result<Store, Error> {
        match storage {
            Storage::Folder { path, options } => {
                let log = EventLog::open(&path, options).map_err(|e| locked(&path, e))?;
                Ok(Store::local(log))
            }
            Storage::Journal(journal) => Ok(Store {
                journal,
                local: None,
            }),
        }
    }

    /// A stopped server's data folder, read-only: whatever opening a journal
    /// writes (the heads it brings up to date) stays in memory. A folder
    /// that holds no journal is refused, never initialised.
    pub fn open_read_only(path: &Path) -> Result<Store, Error> {
        let store = open_key_values(path)?;
        let log = EventLog::with_store(Arc::new(store), Options::default())
            .map_err(|e| locked(path, e))?;
        Ok(Store::local(log))
    }

    fn local(log: EventLog) -> Store {
        Store {
            journal: Arc::new(log.clone()),
            local: Some(log),
        }
    }

    /// The sled journal, when this store opened one (for what only that
    /// layout has: its statistics and its index checks).
    pub fn sled(&self) -> Option<&EventLog> {
        self.local.as_ref()
    }

    pub(crate) fn journal(&self) -> &dyn Journal {
        self.journal.as_ref()
    }

    /// Appends `events` as `first_seq…` of execution `id`, recorded at
    /// `now`. Also says how many bytes their payloads take.
    pub(crate) fn append(
        &self,
        id: ExecutionId,
        first_seq: u64,
        events: &[Event],
        now: u64,
    ) -> Result<(BoxFuture<'static, Result<(), JournalError>>, u64), Error> {
        let records = events
            .iter()
            .map(|e| codec::encode(e, now))
            .collect::<Result<Vec<NewEvent>, _>>()?;
        let bytes = records.iter().map(|r| r.payload.len() as u64).sum();
        let appended = self.journal.append(stream_of(id), first_seq, records);
        Ok((Box::pin(async move { appended.await.map(|_| ()) }), bytes))
    }

    /// Appends a workflow definition's records to the catalog stream from
    /// `seq` on (all or nothing).
    pub(crate) async fn append_definition(
        &self,
        seq: u64,
        events: Vec<NewEvent>,
    ) -> Result<(), Error> {
        self.journal.append(CATALOG, seq, events).await?;
        Ok(())
    }

    /// Appends a token change to the access stream at `seq`.
    pub(crate) async fn append_access(&self, seq: u64, event: NewEvent) -> Result<(), Error> {
        self.journal.append(ACCESS, seq, vec![event]).await?;
        Ok(())
    }

    /// Appends a schedule event to the schedules stream at `seq`.
    pub(crate) async fn append_schedule(
        &self,
        seq: u64,
        event: &crate::schedules::ScheduleEvent,
        now_ms: u64,
    ) -> Result<(), Error> {
        let record = reserved::encode(event, now_ms)?;
        self.journal.append(SCHEDULES, seq, vec![record]).await?;
        Ok(())
    }

    /// Appends a breaker event to the breakers stream at `seq`.
    pub(crate) async fn append_breaker(
        &self,
        seq: u64,
        event: &crate::breakers::BreakerEvent,
        now_ms: u64,
    ) -> Result<(), Error> {
        let record = reserved::encode(event, now_ms)?;
        self.journal.append(BREAKERS, seq, vec![record]).await?;
        Ok(())
    }

    /// Appends limits events to the limits stream, the first at `seq`.
    pub(crate) async fn append_limits(
        &self,
        seq: u64,
        events: &[crate::limits::LimitsEvent],
        now_ms: u64,
    ) -> Result<(), Error> {
        let records = events
            .iter()
            .map(|event| reserved::encode(event, now_ms))
            .collect::<Result<Vec<_>, _>>()?;
        self.journal.append(LIMITS, seq, records).await?;
        Ok(())
    }

    /// Appends a webhooks event to the webhooks stream at `seq`.
    pub(crate) async fn append_webhook(
        &self,
        seq: u64,
        event: &crate::webhooks::WebhookEvent,
        now_ms: u64,
    ) -> Result<(), Error> {
        let record = reserved::encode(event, now_ms)?;
        self.journal.append(WEBHOOKS, seq, vec![record]).await?;
        Ok(())
    }

    /// Asks the journal to keep a reserved stream's table as the stream's
    /// snapshot (at the table's seq).
    pub(crate) fn put_table_snapshot<T: reserved::SnapshotTable>(
        &self,
        table: &T,
    ) -> Result<BoxFuture<'static, Result<(), JournalError>>, Error> {
        let encoded = reserved::encode_snapshot(table)?;
        Ok(self.journal.put_snapshot(T::STREAM, table.seq(), encoded))
    }

    /// Asks the journal to keep `state` as a snapshot (ordered after every
    /// append already acknowledged). Also says how many bytes it takes.
    pub(crate) fn put_snapshot(
        &self,
        state: &ExecutionState,
    ) -> Result<(BoxFuture<'static, Result<(), JournalError>>, u64), Error> {
        let encoded = codec::encode_state(state)?;
        let bytes = encoded.len() as u64;
        let written = self
            .journal
            .put_snapshot(stream_of(state.id), state.seq, encoded);
        Ok((written, bytes))
    }

    /// Everything acknowledged so far is durable once this returns.
    pub async fn flush(&self) -> Result<(), Error> {
        Ok(self.journal.flush().await?)
    }

    /// The execution's newest state: its newest snapshot (when one decodes
    /// and fits) and the events after it. `None` if it has no events.
    pub(crate) async fn load_state(
        &self,
        id: ExecutionId,
    ) -> Result<Option<ExecutionState>, Error> {
        if !is_execution(id) {
            return Ok(None);
        }
        let state = codec::usable_snapshot(self.journal(), id).await;
        let state = state.unwrap_or_else(|| ExecutionState::empty(id));
        let state = codec::fold_from(self.journal(), state, u64::MAX).await?;
        Ok((state.seq > 0).then_some(state))
    }
}

/// Checks that `path` is a data folder before anything opens it, so that a
/// mistyped path is reported instead of becoming a new, empty journal.
pub fn check_data_folder(path: &Path) -> Result<(), Error> {
    let not = |why: String| Error::NotADataFolder {
        path: path.to_owned(),
        why,
    };
    if !path.is_dir() {
        return Err(not("there is no such folder".into()));
    }
    if !path.join(LOCK_FILE).is_file() {
        return Err(not(format!("it has no {LOCK_FILE}")));
    }
    Ok(())
}

/// The key-value store of a stopped server's data folder, read-only, with no
/// journal over it yet.
fn open_key_values(path: &Path) -> Result<Overlay<SledStore>, Error> {
    check_data_folder(path)?;
    let store = SledStore::open(path).map_err(|e| locked(path, e))?;
    if !holds_journal(&store)? {
        return Err(Error::NotADataFolder {
            path: path.to_owned(),
            why: "it holds no journal (no format key)".into(),
        });
    }
    Ok(Overlay::new(store))
}

/// What the check below the events found in a data folder.
#[derive(Debug, Clone, Default)]
pub struct FolderReport {
    /// Event records checked.
    pub events: u64,
    /// Hash chains walked (one per execution, and the catalog's).
    pub chains: u64,
    pub defects: Vec<FolderDefect>,
}

/// One defect: where (the nil id for the catalog's stream), and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderDefect {
    pub execution: ExecutionId,
    pub seq: u64,
    pub what: String,
}

/// What `retrace verify` checks below the events: every hash chain and
/// index of a stopped server's data folder, read-only, and then (when the
/// journal opens over it) a store to replay its executions from. A journal
/// refuses to open over a damaged tail; the report says what is wrong then.
pub fn verify_folder(path: &Path) -> Result<(FolderReport, Result<Store, Error>), Error> {
    let store = open_key_values(path)?;
    let report = retrace_journal::verify_store(&store)?;
    let report = FolderReport {
        events: report.events,
        chains: report.streams,
        defects: report
            .defects
            .iter()
            .map(|d| FolderDefect {
                execution: execution_of(d.stream).unwrap_or(ExecutionId::NIL),
                seq: d.seq,
                what: d.to_string(),
            })
            .collect(),
    };
    let opened = EventLog::with_store(Arc::new(store), Options::default())
        .map(Store::local)
        .map_err(Error::from);
    Ok((report, opened))
}

fn locked(path: &Path, e: JournalError) -> Error {
    match e {
        JournalError::Locked { .. } => Error::Locked {
            path: path.to_owned(),
            source: e,
        },
        e => Error::Journal(e),
    }
}
