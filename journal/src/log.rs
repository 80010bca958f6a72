//! `EventLog`: the journal over a [`Store`] — reads, subscriptions and the
//! handle to the group-commit writer. Every write goes through the one writer
//! thread (see `writer`); reads go straight to the store but never past the
//! committed watermark, so nobody sees an event before it is durable.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{broadcast, oneshot};

use crate::keys::{self, Head};
use crate::record::{self, GENESIS_HASH};
use crate::store::memory::MemoryStore;
use crate::store::sled::SledStore;
use crate::store::{Op, Store};
use crate::writer::{Command, Writer};
use crate::{
    Appended, Error, EventRecord, ExecutionHead, ExecutionId, Journal, NewEvent, Result, Snapshot,
    Stats, Subscription, Tail, VerifyReport, snapshot, subscription,
};

/// How a journal is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Acknowledge appends only after a flush to disk. On unless turned off
    /// (tests and benchmarks that measure everything but the disk).
    pub durable: bool,
    /// Most events one group commit gathers.
    pub max_group_events: usize,
    /// How many live events a subscriber may fall behind before it goes back
    /// to reading the store.
    pub live_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durable: true,
            max_group_events: 16 * 1024,
            live_buffer: 16 * 1024,
        }
    }
}

/// State shared by handles, the writer and subscriptions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    /// Every event with `position <= committed` is fully applied and durable.
    pub committed: AtomicU64,
    pub stats: StatCounters,
}

#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    pub groups: AtomicU64,
    pub events: AtomicU64,
    pub appends: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_nanos: AtomicU64,
    pub conflicts: AtomicU64,
}

/// The journal: a cheap-to-clone handle.
#[derive(Debug, Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    live: broadcast::Sender<Arc<EventRecord>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer finishes what is queued, flushes, and exits.
        let _ = self.commands.send(Command::Shutdown);
        let handle = self.writer.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl EventLog {
    /// Opens (or creates) a sled journal in the folder `path`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<EventLog> {
        let store = SledStore::open(path.as_ref())?;
        Self::with_store(Arc::new(store), options)
    }

    /// A journal over an in-memory store (clones of the store share data, so
    /// dropping the journal and opening another over the same store is a
    /// restart).
    pub fn in_memory(store: MemoryStore, options: Options) -> Result<EventLog> {
        Self::with_store(Arc::new(store), options)
    }

    /// A journal over any store.
    pub fn with_store(store: Arc<dyn Store>, options: Options) -> Result<EventLog> {
        check_format(store.as_ref())?;
        let last_position = match store.last(&[keys::GLOBAL], &[keys::GLOBAL + 1])? {
            Some((k, _)) => keys::parse_global(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed global index key".into()))?,
            None => 0,
        };
        let shared = Arc::new(Shared {
            store,
            committed: AtomicU64::new(last_position),
            stats: StatCounters::default(),
        });
        let (live, _) = broadcast::channel(options.live_buffer.max(16));
        let (commands, rx) = mpsc::channel();
        let writer = Writer::new(
            shared.clone(),
            rx,
            live.clone(),
            last_position + 1,
            &options,
        );
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Storage(format!("cannot start the journal writer: {e}")))?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                shared,
                commands,
                live,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    fn request<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> BoxFuture<'static, Result<T>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.inner.commands.send(make(tx));
        async move {
            sent.map_err(|_| Error::Closed)?;
            rx.await.map_err(|_| Error::Closed)?
        }
        .boxed()
    }
}

fn check_format(store: &dyn Store) -> Result<()> {
    match store.get(keys::META_FORMAT)? {
        Some(v) if v.as_slice() == [record::FORMAT_VERSION] => Ok(()),
        Some(v) => Err(Error::UnsupportedFormat {
            found: v.first().copied().unwrap_or(0),
            supported: record::FORMAT_VERSION,
        }),
        None => {
            store.apply(vec![Op::Put(
                keys::META_FORMAT.to_vec(),
                vec![record::FORMAT_VERSION],
            )])?;
            store.flush()
        }
    }
}

impl Shared {
    pub(crate) fn read(
        &self,
        execution: ExecutionId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        let from_seq = from_seq.max(1);
        let committed = self.committed.load(Ordering::Acquire);
        let mut prev = if from_seq == 1 {
            GENESIS_HASH
        } else {
            match self.store.get(&keys::event(execution, from_seq - 1))? {
                Some(v) => record::stored_hash(&v).ok_or_else(|| Error::Corrupt {
                    execution,
                    seq: from_seq - 1,
                    reason: "record is truncated".into(),
                })?,
                None => return Ok(Vec::new()),
            }
        };
        let from = keys::event(execution, from_seq);
        let to = keys::prefix_end(&from[..17]);
        let mut out = Vec::new();
        for (expected, (k, v)) in (from_seq..).zip(self.store.scan(&from, &to, limit)?) {
            let key = keys::parse_exec_seq(&k).ok_or_else(|| Error::Corrupt {
                execution,
                seq: expected,
                reason: "malformed record key".into(),
            })?;
            if key.1 != expected {
                return Err(Error::Corrupt {
                    execution,
                    seq: expected,
                    reason: format!("record is missing (the next stored seq is {})", key.1),
                });
            }
            let rec = record::decode(key, &v, Some(&prev))?;
            if rec.position > committed {
                break;
            }
            prev = rec.hash;
            out.push(rec);
        }
        Ok(out)
    }

    pub(crate) fn read_global(&self, from_position: u64, limit: usize) -> Result<Vec<EventRecord>> {
        let from_position = from_position.max(1);
        let committed = self.committed.load(Ordering::Acquire);
        if from_position > committed {
            return Ok(Vec::new());
        }
        let want = limit.min((committed - from_position + 1) as usize);
        let mut out = Vec::with_capacity(want);
        for (k, v) in self.store.scan(
            &keys::global(from_position),
            &keys::global(committed + 1),
            want,
        )? {
            let position = keys::parse_global(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed global index key".into()))?;
            let expected = from_position + out.len() as u64;
            if position != expected {
                return Err(Error::CorruptIndex(format!(
                    "global position {expected} is missing"
                )));
            }
            let (execution, seq) = keys::parse_global_value(&v)?;
            let value = self
                .store
                .get(&keys::event(execution, seq))?
                .ok_or_else(|| Error::Corrupt {
                    execution,
                    seq,
                    reason: format!("global position {position} points at a missing record"),
                })?;
            let rec = record::decode((execution, seq), &value, None)?;
            if rec.position != position {
                return Err(Error::Corrupt {
                    execution,
                    seq,
                    reason: format!(
                        "record says position {}, the index says {position}",
                        rec.position
                    ),
                });
            }
            out.push(rec);
        }
        Ok(out)
    }

    pub(crate) fn head(&self, execution: ExecutionId) -> Result<Head> {
        match self.store.get(&keys::head(execution))? {
            Some(v) => Head::decode(&v),
            None => Ok(Head::EMPTY),
        }
    }
}

impl Journal for EventLog {
    fn append(
        &self,
        execution: ExecutionId,
        expected_seq: u64,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Appended>> {
        self.request(|reply| Command::Append {
            execution,
            expected_seq,
            events,
            reply,
        })
    }

    fn read(
        &self,
        execution: ExecutionId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        self.inner.shared.read(execution, from_seq, limit)
    }

    fn read_global(&self, from_position: u64, limit: usize) -> Result<Vec<EventRecord>> {
        self.inner.shared.read_global(from_position, limit)
    }

    fn head(&self, execution: ExecutionId) -> Result<Option<ExecutionHead>> {
        let h = self.inner.shared.head(execution)?;
        Ok((h.last_seq > 0).then_some(ExecutionHead {
            execution,
            last_seq: h.last_seq,
            last_position: h.last_position,
        }))
    }

    fn executions(&self, after: Option<ExecutionId>, limit: usize) -> Result<Vec<ExecutionHead>> {
        let from = match after {
            Some(id) => keys::prefix_end(&keys::head(id)),
            None => vec![keys::HEAD],
        };
        let mut out = Vec::new();
        for (k, v) in self
            .inner
            .shared
            .store
            .scan(&from, &[keys::HEAD + 1], limit)?
        {
            let execution = keys::parse_head_key(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed execution head key".into()))?;
            let h = Head::decode(&v)?;
            out.push(ExecutionHead {
                execution,
                last_seq: h.last_seq,
                last_position: h.last_position,
            });
        }
        Ok(out)
    }

    fn last_position(&self) -> u64 {
        self.inner.shared.committed.load(Ordering::Acquire)
    }

    fn subscribe(&self, from: Tail) -> Subscription {
        subscription::tail(self.inner.shared.clone(), self.inner.live.subscribe(), from)
    }

    fn put_snapshot(
        &self,
        execution: ExecutionId,
        seq: u64,
        state: Vec<u8>,
    ) -> BoxFuture<'static, Result<()>> {
        self.request(|reply| Command::Snapshot {
            execution,
            seq,
            state,
            reply,
        })
    }

    fn latest_snapshot(&self, execution: ExecutionId) -> Result<Option<Snapshot>> {
        let from = keys::snapshot(execution, 0);
        let to = keys::prefix_end(&from[..17]);
        match self.inner.shared.store.last(&from, &to)? {
            Some((k, v)) => snapshot::decode(&k, &v).map(Some),
            None => Ok(None),
        }
    }

    fn verify(&self) -> BoxFuture<'static, Result<VerifyReport>> {
        self.request(|reply| Command::Verify { reply })
    }

    fn rebuild_indexes(&self) -> BoxFuture<'static, Result<()>> {
        self.request(|reply| Command::RebuildIndexes { reply })
    }

    fn flush(&self) -> BoxFuture<'static, Result<()>> {
        self.request(|reply| Command::Flush { reply })
    }

    fn stats(&self) -> Stats {
        let s = &self.inner.shared.stats;
        Stats {
            groups: s.groups.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            appends: s.appends.load(Ordering::Relaxed),
            flushes: s.flushes.load(Ordering::Relaxed),
            flush_nanos: s.flush_nanos.load(Ordering::Relaxed),
            conflicts: s.conflicts.load(Ordering::Relaxed),
        }
    }
}
