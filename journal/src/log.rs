//! `EventLog`: the journal over a [`Store`] — reads, subscriptions and the
//! handle to the group-commit writer. Every write goes through the one writer
//! thread (see `writer`); reads go straight to the store but never past the
//! committed watermark, so nobody sees an event before it is durable.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::fanout::Fanout;
use crate::keys::{self, Head};
use crate::record::{self, Expect, GENESIS_HASH};
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
    /// Heads of executions written since the last head checkpoint (the
    /// store's `h` entries are older for these).
    pub recent: RwLock<HashMap<ExecutionId, Head>>,
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
        let last_position = recover_heads(store.as_ref())?;
        if last_position == u64::MAX {
            return Err(Error::CorruptIndex(
                "the log's last position is the largest there is; nothing can follow it".into(),
            ));
        }
        let shared = Arc::new(Shared {
            store,
            committed: AtomicU64::new(last_position),
            recent: RwLock::new(HashMap::new()),
            stats: StatCounters::default(),
        });
        let fanout = Arc::new(Fanout::new(options.live_buffer));
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
            .map_err(|e| Error::Storage(format!("cannot start the journal writer: {e}")))?;
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

/// The last position in the log (0 when empty).
pub(crate) fn last_log_position(store: &dyn Store) -> Result<u64> {
    match store.last(&[keys::LOG], &[keys::LOG + 1])? {
        Some((k, _)) => {
            keys::parse_log(&k).ok_or_else(|| Error::CorruptIndex("malformed log key".into()))
        }
        None => Ok(0),
    }
}

/// The position the stored heads are exact up to.
pub(crate) fn heads_through(store: &dyn Store) -> Result<u64> {
    match store.get(keys::META_HEADS)? {
        Some(v) => keys::parse_u64_value(&v, "the heads checkpoint"),
        None => Ok(0),
    }
}

/// Brings the stored heads up to the end of the log (after a crash they lag
/// by at most a few groups), checking the tail's chains on the way. Returns
/// the last position.
fn recover_heads(store: &dyn Store) -> Result<u64> {
    let last = last_log_position(store)?;
    let through = heads_through(store)?;
    if last <= through {
        return Ok(last);
    }
    let heads = replay_log(
        store,
        through.saturating_add(1),
        |id| stored_head(store, id),
        |_| {},
    )?;
    let mut ops: Vec<Op> = heads
        .iter()
        .map(|(id, h)| Op::Put(keys::head(*id), h.encode()))
        .collect();
    ops.push(Op::Put(keys::META_HEADS.to_vec(), keys::u64_value(last)));
    store.apply(ops)?;
    store.flush()?;
    Ok(last)
}

/// Reads the log from position `from` to its end, decoding every record and
/// checking its chain link and back-link against its execution's head
/// (`head_before` gives the head as of `from`); calls `each` with every
/// record. Returns the heads of the executions it saw. Stops at the first
/// broken record with `Error::Corrupt` naming it.
pub(crate) fn replay_log(
    store: &dyn Store,
    from: u64,
    head_before: impl Fn(ExecutionId) -> Result<Head>,
    mut each: impl FnMut(&EventRecord),
) -> Result<HashMap<ExecutionId, Head>> {
    let mut heads: HashMap<ExecutionId, Head> = HashMap::new();
    let mut next = keys::log(from);
    loop {
        let chunk = store.scan(&next, &[keys::LOG + 1], 4096)?;
        let Some((last_key, _)) = chunk.last() else {
            return Ok(heads);
        };
        next = keys::prefix_end(last_key);
        for (k, v) in chunk {
            let position = keys::parse_log(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed log key".into()))?;
            let (execution, seq) = record::peek_place(&v).ok_or_else(|| Error::Corrupt {
                execution: ExecutionId::NIL,
                seq: 0,
                reason: format!("record at position {position} is truncated"),
            })?;
            let prev = match heads.get(&execution) {
                Some(h) => *h,
                None => head_before(execution)?,
            };
            let next_seq = prev.last_seq.checked_add(1).ok_or_else(|| Error::Corrupt {
                execution,
                seq,
                reason: "the execution's head is at the largest seq there is".into(),
            })?;
            let expect = Expect::Exactly {
                execution,
                seq: next_seq,
                position,
            };
            let rec = record::decode(expect, &v, Some(&prev.last_hash))?;
            if rec.prev_position != prev.last_position {
                return Err(Error::Corrupt {
                    execution,
                    seq,
                    reason: "back-link does not point at the previous event".into(),
                });
            }
            each(&rec);
            heads.insert(
                execution,
                Head {
                    last_seq: rec.seq,
                    last_position: position,
                    last_hash: rec.hash,
                },
            );
        }
    }
}

pub(crate) fn stored_head(store: &dyn Store, execution: ExecutionId) -> Result<Head> {
    match store.get(&keys::head(execution))? {
        Some(v) => Head::decode(&v),
        None => Ok(Head::EMPTY),
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
        let head = self.head(execution)?;
        if limit == 0 || head.last_seq < from_seq {
            return Ok(Vec::new());
        }
        let end_seq = head.last_seq.min(from_seq.saturating_add(limit as u64 - 1));
        let corrupt = |seq, reason: &str| Error::Corrupt {
            execution,
            seq,
            reason: reason.to_string(),
        };
        // Start from the nearest indexed seq at or after the end (or the head)
        // and walk back through the records' back-links.
        let (mut seq, mut position) = (head.last_seq, head.last_position);
        if end_seq < head.last_seq {
            let from = keys::index(execution, end_seq);
            let to = keys::prefix_end(&from[..17]);
            if let Some((k, v)) = self.store.scan(&from, &to, 1)?.into_iter().next() {
                let (_, s) = keys::parse_exec_seq(&k)
                    .ok_or_else(|| Error::CorruptIndex("malformed index key".into()))?;
                if s <= head.last_seq {
                    seq = s;
                    position = keys::parse_u64_value(&v, "an index entry")?;
                }
            }
        }
        let mut found: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        loop {
            let value = self
                .store
                .get(&keys::log(position))?
                .ok_or_else(|| corrupt(seq, "record is missing"))?;
            let prev = record::peek_prev_position(&value)
                .ok_or_else(|| corrupt(seq, "record is truncated"))?;
            if seq <= end_seq {
                found.push((seq, position, value));
            }
            if seq == from_seq {
                break;
            }
            if prev == 0 || prev >= position {
                return Err(corrupt(seq, "back-link does not point at an earlier event"));
            }
            seq -= 1;
            position = prev;
        }
        found.reverse();
        // Decode forwards, checking every link of the chain.
        let mut prev_hash = if from_seq == 1 {
            GENESIS_HASH
        } else {
            let first_prev = record::peek_prev_position(&found[0].2).unwrap_or(0);
            let value = self
                .store
                .get(&keys::log(first_prev))?
                .ok_or_else(|| corrupt(from_seq - 1, "record is missing"))?;
            let expect = Expect::Exactly {
                execution,
                seq: from_seq - 1,
                position: first_prev,
            };
            record::decode(expect, &value, None)?.hash
        };
        let mut out = Vec::with_capacity(found.len());
        for (seq, position, value) in found {
            let expect = Expect::Exactly {
                execution,
                seq,
                position,
            };
            let rec = record::decode(expect, &value, Some(&prev_hash))?;
            prev_hash = rec.hash;
            out.push(rec);
        }
        // Positions grow with seq: nothing past the watermark is durable yet.
        let committed = self.committed.load(Ordering::Acquire);
        out.retain(|r| r.position <= committed);
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
        let chunk = self
            .store
            .scan(&keys::log(from_position), &keys::log(committed + 1), want)?;
        for (expected, (k, v)) in (from_position..).zip(chunk) {
            let position = keys::parse_log(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed log key".into()))?;
            if position != expected {
                return Err(Error::CorruptIndex(format!(
                    "log position {expected} is missing"
                )));
            }
            out.push(record::decode(Expect::Position(position), &v, None)?);
        }
        Ok(out)
    }

    /// The committed head of `execution` (EMPTY when it has no events).
    pub(crate) fn head(&self, execution: ExecutionId) -> Result<Head> {
        let recent = self
            .recent
            .read()
            .map_err(|_| Error::Storage("head cache lock poisoned".into()))?
            .get(&execution)
            .copied();
        match recent {
            Some(h) => Ok(h),
            None => stored_head(self.store.as_ref(), execution),
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
        let shared = &self.inner.shared;
        let from = match after {
            Some(id) => keys::prefix_end(&keys::head(id)),
            None => vec![keys::HEAD],
        };
        // The first `limit` of the union of stored and recent heads.
        let mut merged: BTreeMap<ExecutionId, Head> = BTreeMap::new();
        for (k, v) in shared.store.scan(&from, &[keys::HEAD + 1], limit)? {
            let execution = keys::parse_head_key(&k)
                .ok_or_else(|| Error::CorruptIndex("malformed execution head key".into()))?;
            merged.insert(execution, Head::decode(&v)?);
        }
        let recent = shared
            .recent
            .read()
            .map_err(|_| Error::Storage("head cache lock poisoned".into()))?;
        for (id, h) in recent.iter() {
            if after.is_none_or(|a| *id > a) {
                merged.insert(*id, *h);
            }
        }
        drop(recent);
        Ok(merged
            .into_iter()
            .take(limit)
            .map(|(execution, h)| ExecutionHead {
                execution,
                last_seq: h.last_seq,
                last_position: h.last_position,
            })
            .collect())
    }

    fn last_position(&self) -> u64 {
        self.inner.shared.committed.load(Ordering::Acquire)
    }

    fn subscribe(&self, from: Tail) -> Subscription {
        let live = match from {
            Tail::Execution { execution, .. } => self.inner.fanout.subscribe(execution),
            Tail::All { .. } => self.inner.fanout.subscribe_all(),
        };
        subscription::tail(self.inner.shared.clone(), live, from)
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
