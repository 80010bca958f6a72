//! The group-commit writer: the only code that writes to the store.
//!
//! One thread takes whatever commands are queued (up to a limit), turns the
//! appends into one atomic store batch, flushes once, and only then moves the
//! committed watermark, acknowledges every append in the group and publishes
//! the new events to live subscribers. Because there is exactly one writer,
//! the expected-`seq` check and the position counter need no locks.
//!
//! After a failed write or flush (a full disk, say) the writer refuses every
//! further write: it can no longer tell what is on disk, and an
//! acknowledgement must always mean "durable". It is an outage, not the end:
//! every `retry_after_failure` it asks the store to recover; once the store
//! takes writes, whatever reached it past the watermark (never acknowledged)
//! is rolled back, the heads are brought up to the log's end, and appends
//! are taken again. The journal then holds exactly what was acknowledged.
//!
//! The writer also keeps a reserve of free disk (`min_free_bytes`): a group
//! that would start while less is free is refused before anything is
//! written, the same outage, and it ends once half as much again is free
//! (so a disk hovering at the reserve does not flap). So a disk
//! filled by the journal (or by anyone else, slower than the reserve) never
//! reaches the store as a failed write.
//!
//! Owns every write to the store, the position counter and the watermark.
//! It must never acknowledge or publish an event before its group is
//! written (and flushed, when durable), and never block on a reader.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::error::{Error, Result, StorageError};
use crate::fanout::Fanout;
use crate::journal::Appended;
use crate::keys::{self, Head};
use crate::options::Options;
use crate::record::{self, EventRecord, MAX_EVENTS_PER_APPEND, NewEvent, Place};
use crate::recovery::{self, replay_log};
use crate::shared::Shared;
use crate::snapshot;
use crate::store::Op;
use crate::stream::StreamId;
use crate::verify::{self, VerifyReport};

type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Command {
    Append {
        stream: StreamId,
        expected_seq: u64,
        events: Vec<NewEvent>,
        reply: Reply<Appended>,
    },
    Snapshot {
        stream: StreamId,
        seq: u64,
        state: Vec<u8>,
        reply: Reply<()>,
    },
    Flush {
        reply: Reply<()>,
    },
    Verify {
        reply: Reply<VerifyReport>,
    },
    RebuildIndexes {
        reply: Reply<()>,
    },
    Shutdown,
}

/// Most stream heads kept in memory; past it the cache starts over (heads
/// are re-read from the store on demand).
const HEAD_CACHE_MAX: usize = 1 << 20;
/// Heads are written to the store every this many groups...
const HEAD_CHECKPOINT_GROUPS: u64 = 64;
/// ...or as soon as this many streams have unwritten heads. Together they
/// bound how much log a restart re-reads to bring the heads up to date.
const HEAD_CHECKPOINT_DIRTY: usize = 4096;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    fanout: Arc<Fanout>,
    heads: HashMap<StreamId, Head>,
    next_position: u64,
    durable: bool,
    max_group_events: usize,
    /// Set while the store does not take writes.
    outage: Option<Outage>,
    retry_after_failure: Duration,
    min_free_bytes: u64,
    groups_since_checkpoint: u64,
}

/// Why and since when the writer refuses writes, and when it next asks the
/// store to recover.
struct Outage {
    cause: Arc<Error>,
    since: Instant,
    attempts: u64,
    next_attempt: Instant,
}

/// What one group will acknowledge once it is committed.
#[derive(Default)]
struct Group {
    ops: Vec<Op>,
    staged: HashMap<StreamId, Head>,
    appended: Vec<(Reply<Appended>, Appended)>,
    done: Vec<Reply<()>>,
    records: Vec<Arc<EventRecord>>,
    events: usize,
    must_flush: bool,
    /// Write every recent head to the store with this group.
    checkpoint_heads: bool,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        fanout: Arc<Fanout>,
        next_position: u64,
        options: &Options,
    ) -> Writer {
        Writer {
            shared,
            commands,
            fanout,
            heads: HashMap::new(),
            next_position,
            durable: options.durable,
            max_group_events: options.max_group_events.max(1),
            outage: None,
            retry_after_failure: options.retry_after_failure,
            min_free_bytes: options.min_free_bytes,
            groups_since_checkpoint: 0,
        }
    }

    /// The next command; while in an outage, wakes at each retry time to
    /// try the store again even if nobody asks.
    fn next_command(&mut self) -> Option<Command> {
        loop {
            let Some(outage) = &self.outage else {
                return self.commands.recv().ok();
            };
            let wait = outage
                .next_attempt
                .saturating_duration_since(Instant::now());
            match self.commands.recv_timeout(wait) {
                Ok(command) => {
                    self.try_recover();
                    return Some(command);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.try_recover(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    pub(crate) fn run(mut self) {
        while let Some(first) = self.next_command() {
            let mut group = Group::default();
            let mut next = Some(first);
            let mut shutdown = false;
            while let Some(command) = next.take() {
                match command {
                    Command::Shutdown => {
                        shutdown = true;
                        break;
                    }
                    // These need a quiet store: commit what is gathered, then run.
                    Command::Verify { reply } => {
                        group.checkpoint_heads = true;
                        self.commit(std::mem::take(&mut group));
                        let _ = reply.send(verify::verify_store(self.shared.store.as_ref()));
                    }
                    Command::RebuildIndexes { reply } => {
                        self.commit(std::mem::take(&mut group));
                        let rebuilt = match &self.outage {
                            Some(outage) => Err(Error::Unavailable(outage.cause.clone())),
                            None => self.rebuild_indexes(),
                        };
                        let _ = reply.send(rebuilt);
                    }
                    other => self.stage(&mut group, other),
                }
                if group.events < self.max_group_events {
                    next = self.commands.try_recv().ok();
                }
            }
            group.checkpoint_heads |= shutdown;
            self.commit(group);
            if shutdown {
                break;
            }
        }
        if let Some(outage) = &self.outage {
            // Nothing to flush: what was acknowledged was flushed before the
            // failure (a non-durable journal's last acknowledgements were
            // only as durable as ever), and the store refuses writes.
            tracing::warn!(error = %outage.cause,
                "the journal closes while its storage refuses writes; every acknowledged append was stored before the failure");
            return;
        }
        // Whatever was acknowledged non-durably reaches the disk on the way out.
        if let Err(e) = self.shared.store.flush() {
            tracing::error!(error = %e, "final journal flush failed");
        }
    }

    /// Enters an outage after a failed write or flush.
    fn fail(&mut self, cause: Arc<Error>) {
        let now = Instant::now();
        if self.outage.is_none() {
            tracing::error!(error = %cause,
                "journal write failed; writes are refused until the storage takes them again (free space on the data folder's disk if it is full); nothing unacknowledged is kept, and the journal retries every {:?}",
                self.retry_after_failure);
            self.set_outage(Some((unix_ms(), cause.clone())));
        }
        self.outage = Some(Outage {
            cause,
            since: self.outage.as_ref().map_or(now, |o| o.since),
            attempts: self.outage.as_ref().map_or(0, |o| o.attempts),
            next_attempt: now + self.retry_after_failure,
        });
        self.heads.clear();
        self.next_position = self.shared.committed() + 1;
    }

    /// Asks the store to recover if the outage's retry time has come.
    fn try_recover(&mut self) {
        let Some(outage) = &mut self.outage else {
            return;
        };
        let now = Instant::now();
        if now < outage.next_attempt {
            return;
        }
        outage.attempts += 1;
        match self.resume() {
            Ok(rolled_back) => {
                let since = self.outage.take().map_or(now, |o| o.since);
                tracing::info!(outage = ?since.elapsed(), rolled_back,
                    "journal storage takes writes again; appends resume");
                self.set_outage(None);
            }
            Err(e) => {
                if let Some(outage) = &mut self.outage {
                    // Once a minute is enough to say it is still down.
                    let per_minute = (60_000 / self.retry_after_failure.as_millis().max(1)) as u64;
                    if outage.attempts % per_minute.max(1) == 1 {
                        tracing::warn!(error = %e, down_for = ?outage.since.elapsed(),
                            "journal storage still refuses writes");
                    }
                    outage.next_attempt = Instant::now() + self.retry_after_failure;
                }
            }
        }
    }

    /// Makes the store writable again and the journal exactly what was
    /// acknowledged: everything past the watermark (a group whose write or
    /// flush failed) is removed, the heads are brought to the log's end, and
    /// a flushed write proves the store takes writes. Returns how many
    /// unacknowledged records were rolled back.
    fn resume(&mut self) -> Result<u64> {
        let store = self.shared.store.clone();
        // Half the reserve again before resuming, so that a disk hovering
        // at the reserve does not flap between outage and writes.
        self.check_free_space(self.min_free_bytes / 2)?;
        store.recover()?;
        let committed = self.shared.committed();
        let rolled_back = self.roll_back_past(committed)?;
        if recovery::heads_through(store.as_ref())? > committed {
            // The failed group's head checkpoint reached the store: the
            // stored heads are ahead of the log now. Rebuild them from it.
            self.rebuild_indexes()?;
        } else {
            recovery::recover_heads(store.as_ref())?;
        }
        store.apply(vec![Op::Put(
            keys::META_FORMAT.to_vec(),
            vec![record::FORMAT_VERSION],
        )])?;
        store.flush()?;
        self.heads.clear();
        if let Ok(mut recent) = self.shared.recent.write() {
            recent.clear();
        }
        self.groups_since_checkpoint = 0;
        self.next_position = committed + 1;
        Ok(rolled_back)
    }

    /// Deletes the records after position `committed`, their index entries,
    /// and the snapshots of their streams taken past what remains.
    fn roll_back_past(&self, committed: u64) -> Result<u64> {
        let store = self.shared.store.as_ref();
        let past = store.scan(
            &keys::log(committed.saturating_add(1)),
            &[keys::LOG + 1],
            usize::MAX,
        )?;
        if past.is_empty() {
            return Ok(0);
        }
        let mut ops = Vec::new();
        let mut streams = HashMap::new();
        for (key, value) in &past {
            ops.push(Op::Delete(key.clone()));
            if let Some((stream, seq)) = record::peek_place(value) {
                ops.push(Op::Delete(keys::index(stream, seq)));
                let first = streams.entry(stream).or_insert(seq);
                *first = (*first).min(seq);
            }
        }
        for (stream, first_gone) in streams {
            let from = keys::snapshot(stream, first_gone);
            for (k, _) in store.scan(&from, &keys::prefix_end(&from[..17]), usize::MAX)? {
                ops.push(Op::Delete(k));
            }
        }
        store.apply(ops)?;
        store.flush()?;
        Ok(past.len() as u64)
    }

    fn set_outage(&self, outage: Option<(u64, Arc<Error>)>) {
        match self.shared.outage.write() {
            Ok(mut o) => *o = outage,
            Err(e) => *e.into_inner() = outage,
        }
    }

    fn head(&mut self, group: &Group, stream: StreamId) -> Result<Head> {
        if let Some(h) = group.staged.get(&stream) {
            return Ok(*h);
        }
        if let Some(h) = self.heads.get(&stream) {
            return Ok(*h);
        }
        let h = self.shared.head(stream)?;
        if self.heads.len() >= HEAD_CACHE_MAX {
            self.heads.clear();
        }
        self.heads.insert(stream, h);
        Ok(h)
    }

    fn stage(&mut self, group: &mut Group, command: Command) {
        match command {
            Command::Append {
                stream,
                expected_seq,
                events,
                reply,
            } => match self.stage_append(group, stream, expected_seq, events) {
                Ok(appended) => group.appended.push((reply, appended)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Snapshot {
                stream,
                seq,
                state,
                reply,
            } => match self.stage_snapshot(group, stream, seq, &state) {
                Ok(()) => group.done.push(reply),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Flush { reply } => match &self.outage {
                Some(outage) => {
                    let _ = reply.send(Err(Error::Unavailable(outage.cause.clone())));
                }
                None => {
                    group.must_flush = true;
                    group.done.push(reply);
                }
            },
            Command::Verify { .. } | Command::RebuildIndexes { .. } | Command::Shutdown => {
                unreachable!("handled in run")
            }
        }
    }

    fn stage_append(
        &mut self,
        group: &mut Group,
        stream: StreamId,
        expected_seq: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended> {
        if let Some(outage) = &self.outage {
            return Err(Error::Unavailable(outage.cause.clone()));
        }
        if events.is_empty() || events.len() > MAX_EVENTS_PER_APPEND {
            return Err(Error::InvalidAppend(format!(
                "an append carries 1 to {MAX_EVENTS_PER_APPEND} events, got {}",
                events.len()
            )));
        }
        for e in &events {
            record::validate(e)?;
        }
        let head = self.head(group, stream)?;
        let exhausted =
            |what: &str| Error::InvalidAppend(format!("the journal's {what} are exhausted"));
        let next_seq = head
            .last_seq
            .checked_add(1)
            .ok_or_else(|| exhausted("seqs for this stream"))?;
        if expected_seq != next_seq {
            self.shared.stats.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(Error::SeqConflict {
                stream,
                expected: expected_seq,
                actual: next_seq,
            });
        }
        // Positions and seqs stay below u64::MAX, so `+ 1` below cannot overflow.
        let count = events.len() as u64;
        if self
            .next_position
            .checked_add(count)
            .is_none_or(|end| end == u64::MAX)
            || head
                .last_seq
                .checked_add(count)
                .is_none_or(|end| end == u64::MAX)
        {
            return Err(exhausted("positions or seqs"));
        }
        // Encode everything first so a failure leaves the group untouched.
        let mut h = head;
        let mut position = self.next_position;
        let mut ops = Vec::with_capacity(events.len() * 2);
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            let seq = h.last_seq + 1;
            let place = Place {
                stream,
                seq,
                position,
                prev_position: h.last_position,
            };
            let (value, hash) = record::encode(place, &event, &h.last_hash)?;
            ops.push(Op::Put(keys::log(position), value));
            if keys::indexed(seq) {
                ops.push(Op::Put(keys::index(stream, seq), keys::u64_value(position)));
            }
            records.push(Arc::new(EventRecord {
                stream,
                seq,
                position,
                recorded_at_ms: event.recorded_at_ms,
                prev_position: h.last_position,
                kind: event.kind,
                payload: event.payload,
                hash,
                format: record::FORMAT_VERSION,
            }));
            h = Head {
                last_seq: seq,
                last_position: position,
                last_hash: hash,
            };
            position += 1;
        }
        let appended = Appended {
            stream,
            first_seq: head.last_seq + 1,
            last_seq: h.last_seq,
            first_position: self.next_position,
            last_position: h.last_position,
        };
        self.next_position = position;
        group.events += records.len();
        group.ops.extend(ops);
        group.records.extend(records);
        group.staged.insert(stream, h);
        Ok(appended)
    }

    fn stage_snapshot(
        &mut self,
        group: &mut Group,
        stream: StreamId,
        seq: u64,
        state: &[u8],
    ) -> Result<()> {
        if let Some(outage) = &self.outage {
            return Err(Error::Unavailable(outage.cause.clone()));
        }
        let head = self.head(group, stream)?;
        if seq == 0 || seq > head.last_seq {
            return Err(Error::InvalidAppend(format!(
                "snapshot at seq {seq} of stream {stream}, which has {} events",
                head.last_seq
            )));
        }
        // Only the newest snapshot is kept: older ones are superseded.
        let from = keys::snapshot(stream, 0);
        for (k, _) in self
            .shared
            .store
            .scan(&from, &keys::prefix_end(&from[..17]), usize::MAX)?
        {
            group.ops.push(Op::Delete(k));
        }
        group.ops.push(Op::Put(
            keys::snapshot(stream, seq),
            snapshot::encode(seq, state),
        ));
        Ok(())
    }

    fn commit(&mut self, mut group: Group) {
        // In an outage nothing was staged (appends, snapshots and flushes
        // were refused), and heads wait for the store to take writes.
        if self.outage.is_some()
            || (group.ops.is_empty() && !group.must_flush && !group.checkpoint_heads)
        {
            self.reply_all(group);
            return;
        }
        self.groups_since_checkpoint += 1;
        let recent_len = self.shared.recent.read().map_or(0, |r| r.len());
        let checkpoint = group.checkpoint_heads
            || self.groups_since_checkpoint >= HEAD_CHECKPOINT_GROUPS
            || recent_len + group.staged.len() >= HEAD_CHECKPOINT_DIRTY;
        if checkpoint {
            let recent = self
                .shared
                .recent
                .read()
                .map(|r| r.clone())
                .unwrap_or_default();
            for (stream, head) in recent.iter().chain(group.staged.iter()) {
                group.ops.push(Op::Put(keys::head(*stream), head.encode()));
            }
            let through = self.next_position - 1;
            group
                .ops
                .push(Op::Put(keys::META_HEADS.to_vec(), keys::u64_value(through)));
        }
        let result = self.write(std::mem::take(&mut group.ops), group.must_flush);
        match result {
            Ok(()) => {
                if let Some(last) = group.records.last() {
                    self.shared
                        .committed
                        .store(last.position, Ordering::Release);
                }
                if let Ok(mut recent) = self.shared.recent.write() {
                    if checkpoint {
                        recent.clear();
                    } else {
                        recent.extend(group.staged.iter().map(|(k, v)| (*k, *v)));
                    }
                }
                if checkpoint {
                    self.groups_since_checkpoint = 0;
                }
                self.heads.extend(group.staged.drain());
                let stats = &self.shared.stats;
                stats
                    .events
                    .fetch_add(group.records.len() as u64, Ordering::Relaxed);
                stats
                    .appends
                    .fetch_add(group.appended.len() as u64, Ordering::Relaxed);
                self.reply_all(group);
            }
            Err(e) => {
                let why = Arc::new(e);
                self.fail(why.clone());
                let failed = || Error::Storage(StorageError::Write(why.clone()));
                for (reply, _) in group.appended {
                    let _ = reply.send(Err(failed()));
                }
                for reply in group.done {
                    let _ = reply.send(Err(failed()));
                }
            }
        }
    }

    /// Acknowledges a committed group, then shows its events to subscribers.
    fn reply_all(&self, group: Group) {
        for (reply, appended) in group.appended {
            let _ = reply.send(Ok(appended));
        }
        for reply in group.done {
            let _ = reply.send(Ok(()));
        }
        self.fanout.publish(group.records);
    }

    fn write(&self, ops: Vec<Op>, must_flush: bool) -> Result<()> {
        if ops.is_empty() && !must_flush {
            return Ok(());
        }
        let store = &self.shared.store;
        let stats = &self.shared.stats;
        if !ops.is_empty() {
            self.check_free_space(0)?;
            store.apply(ops)?;
            stats.groups.fetch_add(1, Ordering::Relaxed);
        }
        if self.durable || must_flush {
            let started = Instant::now();
            store.flush()?;
            stats.flushes.fetch_add(1, Ordering::Relaxed);
            stats
                .flush_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Refuses when the store's disk has less free space than the reserve
    /// plus `margin` (one `statvfs` per group: microseconds against a
    /// flush's milliseconds).
    fn check_free_space(&self, margin: u64) -> Result<()> {
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        let reserve = self.min_free_bytes.saturating_add(margin);
        match self.shared.store.free_bytes()? {
            Some(free) if free < reserve => {
                Err(Error::Storage(StorageError::LowSpace { free, reserve }))
            }
            _ => Ok(()),
        }
    }

    /// Drops every derived index entry and rebuilds it from the records, in
    /// one atomic batch (so a crash half way leaves the old indexes whole).
    fn rebuild_indexes(&mut self) -> Result<()> {
        let store = self.shared.store.clone();
        let mut ops = Vec::new();
        for prefix in [keys::INDEX, keys::HEAD] {
            for (k, _) in store.scan(&[prefix], &[prefix + 1], usize::MAX)? {
                ops.push(Op::Delete(k));
            }
        }
        let mut last_position = 0;
        let heads = replay_log(
            store.as_ref(),
            1,
            |_| Ok(Head::EMPTY),
            |rec| {
                if keys::indexed(rec.seq) {
                    ops.push(Op::Put(
                        keys::index(rec.stream, rec.seq),
                        keys::u64_value(rec.position),
                    ));
                }
                last_position = rec.position;
            },
        )?;
        for (stream, head) in &heads {
            ops.push(Op::Put(keys::head(*stream), head.encode()));
        }
        ops.push(Op::Put(
            keys::META_HEADS.to_vec(),
            keys::u64_value(last_position),
        ));
        store.apply(ops)?;
        store.flush()?;
        self.heads.clear();
        if let Ok(mut recent) = self.shared.recent.write() {
            recent.clear();
        }
        self.groups_since_checkpoint = 0;
        self.next_position = last_position + 1;
        self.shared
            .committed
            .store(last_position, Ordering::Release);
        Ok(())
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
