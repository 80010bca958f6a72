//! The group-commit writer: the only code that writes to the store.
//!
//! One thread takes whatever commands are queued (up to a limit), turns the
//! appends into one atomic store batch, flushes once, and only then moves the
//! committed watermark, acknowledges every append in the group and publishes
//! the new events to live subscribers. Because there is exactly one writer,
//! the expected-`seq` check and the position counter need no locks.
//!
//! After a failed write or flush the writer refuses every further append
//! (fail-stop): it can no longer tell what is on disk, and an acknowledgement
//! must always mean "durable".
//!
//! Owns every write to the store, the position counter and the watermark.
//! It must never acknowledge or publish an event before its group is
//! written (and flushed, when durable), and never block on a reader.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::error::{Error, Result, StorageError};
use crate::fanout::Fanout;
use crate::journal::Appended;
use crate::keys::{self, Head};
use crate::options::Options;
use crate::record::{self, EventRecord, MAX_EVENTS_PER_APPEND, NewEvent, Place};
use crate::recovery::replay_log;
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
    /// The failure that stopped the writer accepting appends.
    poisoned: Option<Arc<Error>>,
    groups_since_checkpoint: u64,
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
            poisoned: None,
            groups_since_checkpoint: 0,
        }
    }

    pub(crate) fn run(mut self) {
        while let Ok(first) = self.commands.recv() {
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
                        let _ = reply.send(self.rebuild_indexes());
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
        // Whatever was acknowledged non-durably reaches the disk on the way out.
        if let Err(e) = self.shared.store.flush() {
            tracing::error!(error = %e, "final journal flush failed");
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
            Command::Flush { reply } => {
                group.must_flush = true;
                group.done.push(reply);
            }
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
        if let Some(why) = &self.poisoned {
            return Err(Error::Poisoned(why.clone()));
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
        if let Some(why) = &self.poisoned {
            return Err(Error::Poisoned(why.clone()));
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
        if group.ops.is_empty() && !group.must_flush && !group.checkpoint_heads {
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
                tracing::error!(error = %e, "journal write failed; refusing further appends");
                let why = Arc::new(e);
                self.poisoned = Some(why.clone());
                self.heads.clear();
                if let Some(first) = group.records.first() {
                    self.next_position = first.position;
                }
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
