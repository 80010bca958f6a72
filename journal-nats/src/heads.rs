//! What the journal knows of each stream's last event, and which streams
//! exist.
//!
//! A head here is a cache of what the server holds: the writer learns one
//! from every acknowledged append, readers from what they read to the end.
//! A head only ever moves forward, so a reader that finishes after a newer
//! append cannot put an older head back. If another writer appended to a
//! stream (a second node), the cached head is behind: the server refuses
//! the next append built on it, and the writer forgets the head.
//!
//! Owns the two maps. It must never be the source of truth: the stream is.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use retrace_journal::StreamId;
use retrace_journal::record::{GENESIS_HASH, HASH_LEN};

use crate::names::sequence_of;

/// A stream's last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub last_seq: u64,
    pub last_position: u64,
    pub last_hash: [u8; HASH_LEN],
}

impl Head {
    /// A stream with no events.
    pub const EMPTY: Head = Head {
        last_seq: 0,
        last_position: 0,
        last_hash: GENESIS_HASH,
    };

    /// The message sequence of the stream's last append (0 for none): what
    /// the next append expects as the subject's last sequence.
    pub fn last_message(&self) -> u64 {
        sequence_of(self.last_position)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Heads {
    heads: Mutex<HashMap<StreamId, Head>>,
    ids: Mutex<BTreeSet<StreamId>>,
    /// Per stream, a seq and the message holding it (from its snapshot): a
    /// read after that seq starts at that message, not the first.
    marks: Mutex<HashMap<StreamId, (u64, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation is one insert or remove: a panic elsewhere cannot
    // leave a map half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Heads {
    pub fn get(&self, stream: StreamId) -> Option<Head> {
        lock(&self.heads).get(&stream).copied()
    }

    /// Remembers `head` unless a newer one is known.
    pub fn learn(&self, stream: StreamId, head: Head) {
        if head.last_seq == 0 {
            return;
        }
        let mut heads = lock(&self.heads);
        let known = heads.entry(stream).or_insert(head);
        if known.last_seq < head.last_seq {
            *known = head;
        }
        drop(heads);
        self.add_id(stream);
    }

    /// Remembers that `seq` of `stream` is in the message at `message`.
    pub fn mark(&self, stream: StreamId, seq: u64, message: u64) {
        lock(&self.marks).insert(stream, (seq, message));
    }

    /// The message a read of `stream` from `from_seq` can start at, with the
    /// seq it holds: the newest mark before `from_seq`.
    pub fn mark_before(&self, stream: StreamId, from_seq: u64) -> Option<(u64, u64)> {
        lock(&self.marks)
            .get(&stream)
            .copied()
            .filter(|(seq, _)| *seq < from_seq)
    }

    /// Forgets what is known of a stream (another writer moved it on).
    pub fn forget(&self, stream: StreamId) {
        lock(&self.heads).remove(&stream);
    }

    /// Forgets what is known of every stream `of` says yes to (a partition
    /// taken from another server, which appended to its streams).
    pub fn forget_where(&self, of: impl Fn(StreamId) -> bool) {
        lock(&self.heads).retain(|id, _| !of(*id));
    }

    pub fn add_id(&self, stream: StreamId) {
        lock(&self.ids).insert(stream);
    }

    /// Whether `stream` is among the known ids (listed at open, or appended
    /// to since).
    pub fn knows(&self, stream: StreamId) -> bool {
        lock(&self.ids).contains(&stream)
    }

    /// Up to `limit` known stream ids after `after` that `wanted` keeps, in
    /// id order.
    pub fn ids_after_where(
        &self,
        after: Option<StreamId>,
        limit: usize,
        wanted: impl Fn(StreamId) -> bool,
    ) -> Vec<StreamId> {
        let ids = lock(&self.ids);
        let range = match after {
            Some(a) => ids.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => ids.range(..),
        };
        range
            .copied()
            .filter(|id| wanted(*id))
            .take(limit)
            .collect()
    }
}
