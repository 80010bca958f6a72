//! `EventLog`: the sled journal — the [`Journal`] over a [`Store`] — and the
//! handle to its group-commit writer. Every write goes through the one writer
//! thread (see `writer`); reads go through `Shared`, which never reads past
//! the committed watermark, so nobody sees an event before it is durable.
//!
//! Owns opening (format check, head recovery, starting the writer), the
//! handle's lifetime and the trait's mapping onto the writer and the reads.
//! It must never write to the store itself: every write is a command to the
//! writer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::fanout::Fanout;
use crate::journal::{Appended, Health, Journal, Snapshot, StreamHead, Tail};
use crate::keys::{self, Head};
use crate::options::Options;
use crate::record::{EventRecord, NewEvent};
use crate::recovery;
use crate::shared::{Shared, Stats};
use crate::snapshot;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::sled::SledStore;
use crate::stream::StreamId;
use crate::subscription::Subscription;
use crate::tail;
use crate::verify::VerifyReport;
use crate::writer::{Command, Writer};

/// The sled journal: a cheap-to-clone handle. Dropping the last handle stops
/// the writer (it commits what is queued and flushes first); subscriptions
/// then end.
#[derive(Debug, Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    fanout: Arc<Fanout>,
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
        let store = SledStore::open_with_cache(path.as_ref(), options.cache_bytes)?;
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
        recovery::check_format(store.as_ref())?;
        let last_position = recovery::recover_heads(store.as_ref())?;
        if last_position == u64::MAX {
            return Err(Error::CorruptIndex(
                "the log's last position is the largest there is; nothing can follow it".into(),
            ));
        }
        let shared = Arc::new(Shared::new(store, last_position));
        let fanout = Arc::new(Fanout::new(options.live_buffer, options.live_buffer_bytes));
        let (commands, rx) = mpsc::channel();
        let writer = Writer::new(
            shared.clone(),
            rx,
            fanout.clone(),
            last_position + 1,
            &options,
        );
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("cannot start the journal writer", e))?;
        Ok(EventLog {
            inner: Arc::new(Inner {
                shared,
                commands,
                fanout,
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

impl Journal for EventLog {
    fn append(
        &self,
        stream: StreamId,
        expected_seq: u64,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Appended>> {
        self.request(|reply| Command::Append {
            stream,
            expected_seq,
            events,
            reply,
        })
    }

    fn read(
        &self,
        stream: StreamId,
        from_seq: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>> {
        self.answer(self.inner.shared.read(stream, from_seq, limit))
    }

    fn read_global(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>> {
        self.answer(self.inner.shared.read_global(from_position, limit))
    }

    fn head(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<StreamHead>>> {
        self.answer(self.stream_head(stream))
    }

    fn streams(
        &self,
        after: Option<StreamId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StreamHead>>> {
        self.answer(self.stream_heads(after, limit))
    }

    fn last_position(&self) -> BoxFuture<'_, Result<u64>> {
        ready(Ok(self.inner.shared.committed()))
    }

    fn subscribe(&self, from: Tail) -> Subscription {
        let live = match from {
            Tail::Stream { stream, .. } => self.inner.fanout.subscribe(stream),
            Tail::All { .. } => self.inner.fanout.subscribe_all(),
        };
        tail::tail(self.inner.shared.clone(), live, from)
    }

    fn put_snapshot(
        &self,
        stream: StreamId,
        seq: u64,
        state: Vec<u8>,
    ) -> BoxFuture<'static, Result<()>> {
        self.request(|reply| Command::Snapshot {
            stream,
            seq,
            state,
            reply,
        })
    }

    fn latest_snapshot(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        self.answer(self.newest_snapshot(stream))
    }

    fn flush(&self) -> BoxFuture<'static, Result<()>> {
        self.request(|reply| Command::Flush { reply })
    }

    fn health(&self) -> Health {
        self.inner.shared.health()
    }
}

/// What only the sled layout has: checks and repairs of its key-value
/// indexes, and its group-commit counters.
impl EventLog {
    /// Walks every chain and index; appends wait while it runs.
    pub fn verify(&self) -> BoxFuture<'static, Result<VerifyReport>> {
        self.request(|reply| Command::Verify { reply })
    }

    /// Rebuilds every derived index from the event records.
    pub fn rebuild_indexes(&self) -> BoxFuture<'static, Result<()>> {
        self.request(|reply| Command::RebuildIndexes { reply })
    }

    /// Group-commit counters since the journal was opened.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats.snapshot()
    }

    fn stream_head(&self, stream: StreamId) -> Result<Option<StreamHead>> {
        let h = self.inner.shared.head(stream)?;
        Ok((h.last_seq > 0).then_some(StreamHead {
            stream,
            last_seq: h.last_seq,
            last_position: h.last_position,
        }))
    }

    fn stream_heads(&self, after: Option<StreamId>, limit: usize) -> Result<Vec<StreamHead>> {
        let shared = &self.inner.shared;
        let from = match after {
            Some(id) => keys::prefix_end(&keys::head(id)),
            None => vec![keys::HEAD],
        };
        // The first `limit` of the union of stored and recent heads.
        let mut merged: BTreeMap<StreamId, Head> = BTreeMap::new();
        for (k, v) in shared.store.scan(&from, &[keys::HEAD + 1], limit)? {
            let stream = keys::parse_head_key(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed stream head key".into()))?;
            merged.insert(stream, Head::decode(&v)?);
        }
        let recent = shared.recent()?;
        for (id, h) in recent.iter() {
            if after.is_none_or(|a| *id > a) {
                merged.insert(*id, *h);
            }
        }
        drop(recent);
        Ok(merged
            .into_iter()
            .take(limit)
            .map(|(stream, h)| StreamHead {
                stream,
                last_seq: h.last_seq,
                last_position: h.last_position,
            })
            .collect())
    }

    fn newest_snapshot(&self, stream: StreamId) -> Result<Option<Snapshot>> {
        let from = keys::snapshot(stream, 0);
        let to = keys::prefix_end(&from[..17]);
        match self.inner.shared.store.last(&from, &to)? {
            Some((k, v)) => snapshot::decode(&k, &v).map(Some),
            None => Ok(None),
        }
    }
}

/// A result already at hand, as a journal future.
fn ready<'a, T: Send + 'a>(value: Result<T>) -> BoxFuture<'a, Result<T>> {
    Box::pin(std::future::ready(value))
}

impl EventLog {
    /// A read's answer (a storage failure during an outage is the outage).
    fn answer<'a, T: Send + 'a>(&self, read: Result<T>) -> BoxFuture<'a, Result<T>> {
        ready(self.inner.shared.during_outage(read))
    }
}
