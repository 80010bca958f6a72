//! A journal that crashes: it passes everything to an inner journal until
//! its k-th append, which it loses (a crash before the write is durable) or
//! makes durable without telling the caller (a crash after the flush, before
//! the acknowledgement). From then on it refuses every write, as a dead
//! process writes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;
use retrace_journal::{
    Appended, Error, EventRecord, Journal, NewEvent, Result, Snapshot, StreamHead, StreamId,
    Subscription, Tail,
};
use tokio::sync::Notify;

/// When the crash happens, relative to the k-th append's flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    BeforeFlush,
    AfterFlush,
}

#[derive(Debug)]
pub struct FaultyJournal {
    inner: Arc<dyn Journal>,
    /// Crash at this append (1-based); 0 never.
    crash_at: u64,
    point: CrashPoint,
    appends: AtomicU64,
    flag: Arc<CrashFlag>,
}

#[derive(Debug, Default)]
struct CrashFlag {
    /// No write gets through any more.
    dying: AtomicBool,
    /// The crash is complete: whatever reached the store is all there is.
    crashed: AtomicBool,
    notify: Notify,
}

impl CrashFlag {
    fn crash(&self) {
        self.dying.store(true, Ordering::SeqCst);
        self.crashed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

impl FaultyJournal {
    pub fn new(inner: Arc<dyn Journal>, crash_at: u64, point: CrashPoint) -> Arc<Self> {
        Arc::new(FaultyJournal {
            inner,
            crash_at,
            point,
            appends: AtomicU64::new(0),
            flag: Arc::new(CrashFlag::default()),
        })
    }

    /// How many appends were attempted.
    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::SeqCst)
    }

    pub fn has_crashed(&self) -> bool {
        self.flag.crashed.load(Ordering::SeqCst)
    }

    /// Completes once the crash has happened.
    pub async fn crashed(&self) {
        loop {
            let notified = self.flag.notify.notified();
            if self.has_crashed() {
                return;
            }
            notified.await;
        }
    }

    fn dead() -> Error {
        Error::Storage("simulated crash: the process is gone".into())
    }
}

impl Journal for FaultyJournal {
    fn append(
        &self,
        stream: StreamId,
        expected_seq: u64,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Appended>> {
        if self.flag.dying.load(Ordering::SeqCst) {
            return async { Err(Self::dead()) }.boxed();
        }
        let n = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if n != self.crash_at {
            return self.inner.append(stream, expected_seq, events);
        }
        match self.point {
            CrashPoint::BeforeFlush => {
                self.flag.crash();
                async { Err(Self::dead()) }.boxed()
            }
            CrashPoint::AfterFlush => {
                self.flag.dying.store(true, Ordering::SeqCst);
                let write = self.inner.append(stream, expected_seq, events);
                let flag = self.flag.clone();
                async move {
                    // Durable, but the acknowledgement never arrives.
                    let _ = write.await;
                    flag.crash();
                    Err(Self::dead())
                }
                .boxed()
            }
        }
    }

    fn read(
        &self,
        stream: StreamId,
        from_seq: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>> {
        self.inner.read(stream, from_seq, limit)
    }

    fn read_global(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>> {
        self.inner.read_global(from_position, limit)
    }

    fn head(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<StreamHead>>> {
        self.inner.head(stream)
    }

    fn streams(
        &self,
        after: Option<StreamId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StreamHead>>> {
        self.inner.streams(after, limit)
    }

    fn last_position(&self) -> BoxFuture<'_, Result<u64>> {
        self.inner.last_position()
    }

    fn subscribe(&self, from: Tail) -> Subscription {
        self.inner.subscribe(from)
    }

    fn put_snapshot(
        &self,
        stream: StreamId,
        seq: u64,
        state: Vec<u8>,
    ) -> BoxFuture<'static, Result<()>> {
        if self.flag.dying.load(Ordering::SeqCst) {
            return async { Err(Self::dead()) }.boxed();
        }
        self.inner.put_snapshot(stream, seq, state)
    }

    fn latest_snapshot(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<Snapshot>>> {
        self.inner.latest_snapshot(stream)
    }

    fn flush(&self) -> BoxFuture<'static, Result<()>> {
        self.inner.flush()
    }
}
