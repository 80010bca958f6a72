//! The `Journal` trait: the narrow interface the engine uses, so the sled
//! default can be swapped (or wrapped, e.g. by a fault-injecting journal in
//! tests) without the engine noticing; and the plain values it speaks in.
//!
//! Owns the interface and its promises. It must never name an
//! implementation's layout (keys, indexes, group commits): what only one
//! backend has belongs to that backend.

use std::collections::BTreeSet;

use futures::future::BoxFuture;

use crate::error::Result;
use crate::partition::{Delivery, Share, partition_of};
use crate::record::{EventRecord, NewEvent};
use crate::stream::StreamId;
use crate::subscription::Subscription;

/// What an acknowledged append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub stream: StreamId,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_position: u64,
    pub last_position: u64,
}

/// The latest state of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub stream: StreamId,
    pub last_seq: u64,
    pub last_position: u64,
}

/// An opaque state blob stored at a `seq`, so replay can start there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stream: StreamId,
    pub seq: u64,
    pub state: Vec<u8>,
}

/// Where a subscription starts. Both bounds are inclusive; `0` and `1` both
/// mean "from the beginning".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// One stream's events with `seq >= from_seq`.
    Stream { stream: StreamId, from_seq: u64 },
    /// Every event with `position >= from_position`, in global order.
    All { from_position: u64 },
}

/// An append-only store of per-stream event histories: the boundary between
/// the engine and whatever keeps its events (the sled [`EventLog`] on one
/// machine; a networked store on several).
///
/// [`EventLog`]: crate::EventLog
///
/// Every implementation keeps these promises, and proves it by running the
/// conformance kit (`retrace_journal::testkit`, feature `testkit`):
/// - `seq` is dense per stream, from 1.
/// - `position` orders the whole journal: strictly increasing in commit
///   order, from 1. It may have gaps (a networked store may number other
///   things in between), so a reader resumes with "after the last position I
///   saw", never by counting.
/// - An append is all or nothing, and is refused with `Error::SeqConflict`
///   (writing nothing) unless `expected_seq` is the stream's next `seq`.
/// - A durable journal acknowledges an append only once it will survive a
///   crash, and a reader never sees an event before it is acknowledged.
/// - A subscription yields every matching event exactly once, in order, the
///   stored part first and then live ones, with no gap at the seam.
///
/// Reads are async, so a backend behind a network fits; they borrow the
/// journal for as long as they run. What only one layout has (the sled
/// journal's `verify`, `rebuild_indexes` and group-commit `stats`) is on that
/// implementation, not here.
pub trait Journal: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `events` as `expected_seq, expected_seq + 1, …` of `stream`.
    /// The request is made when this is called (so appends to a stream keep
    /// the order of the calls, and so do appends to different streams unless
    /// the backend says otherwise: a replicated log may resend one); awaiting
    /// the future waits for the acknowledgement.
    fn append(
        &self,
        stream: StreamId,
        expected_seq: u64,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Appended>>;

    /// Up to `limit` events of one stream with `seq >= from_seq`, each
    /// checked against its hash chain.
    fn read(
        &self,
        stream: StreamId,
        from_seq: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>>;

    /// Up to `limit` events with `position >= from_position`, in position
    /// order.
    fn read_global(
        &self,
        from_position: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<EventRecord>>>;

    /// The stream's last `seq`, or `None` if it has no events.
    fn head(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<StreamHead>>>;

    /// Up to `limit` streams in id order, starting after `after`.
    fn streams(
        &self,
        after: Option<StreamId>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StreamHead>>>;

    /// Up to `limit` streams of `partitions` in id order, starting after
    /// `after`: on a shared journal, those whose [`partition_of`] is one of
    /// them (a server taking partitions reads only theirs); on a journal
    /// that is not shared, every stream (it is one partition). The default
    /// pages through [`Journal::streams`]; a backend that knows a stream's
    /// partition before reading its head skips the others' heads.
    ///
    /// [`partition_of`]: crate::partition_of
    fn streams_in<'a>(
        &'a self,
        partitions: &'a BTreeSet<u32>,
        after: Option<StreamId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StreamHead>>> {
        Box::pin(async move {
            let Some(count) = self.share().map(|s| s.partitions) else {
                return self.streams(after, limit).await;
            };
            let mut after = after;
            let mut found = Vec::new();
            while found.len() < limit {
                let page = self.streams(after, limit).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.stream);
                found.extend(
                    page.into_iter()
                        .filter(|h| partitions.contains(&partition_of(h.stream, count))),
                );
            }
            found.truncate(limit);
            Ok(found)
        })
    }

    /// The position of the last acknowledged event (0 when empty).
    fn last_position(&self) -> BoxFuture<'_, Result<u64>>;

    /// Stored events from the given point, then live ones.
    fn subscribe(&self, from: Tail) -> Subscription;

    /// Stores `state` as the snapshot of `stream` at `seq` (which must
    /// exist), replacing older snapshots of it. The request is made when this
    /// is called, ordered after every append already acknowledged; awaiting
    /// the future only waits for its outcome.
    fn put_snapshot(
        &self,
        stream: StreamId,
        seq: u64,
        state: Vec<u8>,
    ) -> BoxFuture<'static, Result<()>>;

    /// The newest snapshot of `stream`.
    fn latest_snapshot(&self, stream: StreamId) -> BoxFuture<'_, Result<Option<Snapshot>>>;

    /// Returns once everything acknowledged so far is durable (a no-op for a
    /// durable journal, where that is already true).
    fn flush(&self) -> BoxFuture<'static, Result<()>>;

    /// Whether the journal takes writes now. A journal whose storage failed
    /// says why until it takes writes again.
    fn health(&self) -> Health {
        Health::Writable
    }

    /// The partitions this server holds, when it shares the journal with
    /// other servers (each appending to its own partitions); `None` when it
    /// may append to every stream.
    fn share(&self) -> Option<Share> {
        None
    }

    /// Sends `message` to the server holding `to`'s partition (a shared
    /// journal): once acknowledged, it arrives in that server's
    /// [`inbox`](Journal::inbox), again and again (there, or at whichever
    /// server holds the partition next) until one is done with it. A
    /// journal that is not shared has no inbox and refuses.
    fn send(&self, to: StreamId, message: Vec<u8>) -> BoxFuture<'static, Result<()>> {
        let _ = (to, message);
        Box::pin(async {
            Err(crate::Error::Storage(
                "this journal is not shared: it has no inbox".into(),
            ))
        })
    }

    /// The messages sent to the streams of the partitions this server
    /// holds, as they arrive; handed out once (`None` afterwards, and for a
    /// journal that is not shared).
    fn inbox(&self) -> Option<tokio::sync::mpsc::Receiver<Delivery>> {
        None
    }
}

/// Whether a journal takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Writable,
    /// Writes are refused ([`Error::Unavailable`](crate::Error::Unavailable))
    /// since `since_ms` (Unix milliseconds) because of `reason`; the journal
    /// retries on its own and resumes when its storage takes writes again.
    Unavailable {
        since_ms: u64,
        reason: String,
    },
}
