//! `Shared`: the state the sled journal's handles, its writer and its
//! subscriptions share — the store, the committed watermark, the heads
//! written since the last checkpoint, the group-commit counters — and the
//! reads, which never go past the watermark, so nobody sees an event before
//! it is durable.
//!
//! Owns the read path and the watermark's meaning. It must never write to
//! the store or move the watermark (only the writer does), and never hold a
//! lock across a store call that the writer would need.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::journal::Health;
use crate::keys::{self, Head};
use crate::record::{self, EventRecord, Expect, GENESIS_HASH};
use crate::recovery::stored_head;
use crate::store::Store;
use crate::stream::StreamId;

/// State shared by handles, the writer and subscriptions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    /// Every event with `position <= committed` is fully applied and durable.
    pub committed: AtomicU64,
    /// Heads of streams written since the last head checkpoint (the
    /// store's `h` entries are older for these).
    pub recent: RwLock<HashMap<StreamId, Head>>,
    pub stats: StatCounters,
    /// Since when (Unix ms) and why the writer refuses writes; only the
    /// writer sets it.
    pub outage: RwLock<Option<(u64, Arc<Error>)>>,
}

/// Counters the sled journal keeps about its group commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Group commits (one store batch + at most one flush each).
    pub groups: u64,
    /// Events committed.
    pub events: u64,
    /// Appends committed (an append is one caller's batch).
    pub appends: u64,
    /// Flushes performed and the time they took in total.
    pub flushes: u64,
    pub flush_nanos: u64,
    /// Appends refused for a sequence conflict.
    pub conflicts: u64,
}

/// The live counters behind [`Stats`]; the writer bumps them.
#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    pub groups: AtomicU64,
    pub events: AtomicU64,
    pub appends: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_nanos: AtomicU64,
    pub conflicts: AtomicU64,
}

impl StatCounters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            groups: self.groups.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            flush_nanos: self.flush_nanos.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    pub(crate) fn new(store: Arc<dyn Store>, last_position: u64) -> Shared {
        Shared {
            store,
            committed: AtomicU64::new(last_position),
            recent: RwLock::new(HashMap::new()),
            stats: StatCounters::default(),
            outage: RwLock::new(None),
        }
    }

    fn outage(&self) -> Option<(u64, Arc<Error>)> {
        self.outage
            .read()
            .map_or_else(|e| e.into_inner().clone(), |o| o.clone())
    }

    pub(crate) fn health(&self) -> Health {
        match self.outage() {
            None => Health::Writable,
            Some((since_ms, cause)) => Health::Unavailable {
                since_ms,
                reason: cause.to_string(),
            },
        }
    }

    /// A read's outcome, where a storage failure during an outage is the
    /// outage (sled refuses reads of what it has not cached while it is in
    /// its failed state, until the writer reopens it).
    pub(crate) fn during_outage<T>(&self, read: Result<T>) -> Result<T> {
        match read {
            Err(Error::Storage(_)) => match self.outage() {
                Some((_, cause)) => Err(Error::Unavailable(cause)),
                None => read,
            },
            other => other,
        }
    }

    /// The position of the last durable event (0 when empty).
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Up to `limit` events of `stream` from `from_seq`, each checked
    /// against its chain.
    pub(crate) fn read(
        &self,
        stream: StreamId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        let from_seq = from_seq.max(1);
        let head = self.head(stream)?;
        if limit == 0 || head.last_seq < from_seq {
            return Ok(Vec::new());
        }
        let end_seq = head.last_seq.min(from_seq.saturating_add(limit as u64 - 1));
        let corrupt = |seq, reason: &str| Error::corrupt(stream, seq, reason);
        // Start from the nearest indexed seq at or after the end (or the head)
        // and walk back through the records' back-links.
        let (mut seq, mut position) = (head.last_seq, head.last_position);
        if end_seq < head.last_seq {
            let from = keys::index(stream, end_seq);
            let to = keys::prefix_end(&from[..17]);
            if let Some((k, v)) = self.store.scan(&from, &to, 1)?.into_iter().next() {
                let (_, s) = keys::parse_stream_seq(&k)
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
                stream,
                seq: from_seq - 1,
                position: first_prev,
            };
            record::decode(expect, &value, None)?.hash
        };
        let mut out = Vec::with_capacity(found.len());
        for (seq, position, value) in found {
            let expect = Expect::Exactly {
                stream,
                seq,
                position,
            };
            let rec = record::decode(expect, &value, Some(&prev_hash))?;
            prev_hash = rec.hash;
            out.push(rec);
        }
        // Positions grow with seq: nothing past the watermark is durable yet.
        let committed = self.committed();
        out.retain(|r| r.position <= committed);
        Ok(out)
    }

    /// Up to `limit` events from `from_position`, in position order.
    pub(crate) fn read_global(&self, from_position: u64, limit: usize) -> Result<Vec<EventRecord>> {
        let from_position = from_position.max(1);
        let committed = self.committed();
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

    /// The committed head of `stream` (EMPTY when it has no events).
    pub(crate) fn head(&self, stream: StreamId) -> Result<Head> {
        let recent = self.recent()?.get(&stream).copied();
        match recent {
            Some(h) => Ok(h),
            None => stored_head(self.store.as_ref(), stream),
        }
    }

    /// The heads written since the last checkpoint.
    pub(crate) fn recent(&self) -> Result<std::sync::RwLockReadGuard<'_, HashMap<StreamId, Head>>> {
        self.recent
            .read()
            .map_err(|_| Error::Storage("head cache lock poisoned".into()))
    }
}
