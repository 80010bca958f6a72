//! The `Journal` trait: the narrow interface the engine uses, so the sled
//! default can be swapped (or wrapped, e.g. by a fault-injecting journal in
//! tests) without the engine noticing.

use futures::future::BoxFuture;

use crate::{EventRecord, ExecutionId, NewEvent, Result, Subscription, VerifyReport};

/// What an acknowledged append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub execution: ExecutionId,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_position: u64,
    pub last_position: u64,
}

/// The latest state of one execution's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionHead {
    pub execution: ExecutionId,
    pub last_seq: u64,
    pub last_position: u64,
}

/// An opaque state blob stored at a `seq`, so replay can start there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub execution: ExecutionId,
    pub seq: u64,
    pub state: Vec<u8>,
}

/// Where a subscription starts. Both bounds are inclusive; `0` and `1` both
/// mean "from the beginning".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// One execution's events with `seq >= from_seq`.
    Execution {
        execution: ExecutionId,
        from_seq: u64,
    },
    /// Every event with `position >= from_position`, in global order.
    All { from_position: u64 },
}

/// Counters a journal keeps about itself.
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

/// An append-only store of per-execution event streams.
///
/// Promises every implementation keeps (checked by the conformance suite in
/// `journal/tests/conformance.rs`):
/// - `seq` is dense per execution from 1; `position` is dense over the journal
///   from 1 and is the order of commit.
/// - An append is all or nothing, and is refused with `Error::SeqConflict`
///   (writing nothing) unless `expected_seq` is the execution's next `seq`.
/// - A durable journal acknowledges an append only once it is on disk, and a
///   reader never sees an event before it is acknowledged-durable.
/// - A subscription yields every matching event exactly once, in order, the
///   stored part first and then live ones, with no gap at the seam.
pub trait Journal: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `events` as `expected_seq, expected_seq + 1, …` of `execution`.
    fn append(
        &self,
        execution: ExecutionId,
        expected_seq: u64,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Appended>>;

    /// Up to `limit` events of one execution with `seq >= from_seq`, each
    /// checked against its hash chain.
    fn read(&self, execution: ExecutionId, from_seq: u64, limit: usize)
    -> Result<Vec<EventRecord>>;

    /// Up to `limit` events with `position >= from_position`, in global order.
    fn read_global(&self, from_position: u64, limit: usize) -> Result<Vec<EventRecord>>;

    /// The execution's last `seq`, or `None` if it has no events.
    fn head(&self, execution: ExecutionId) -> Result<Option<ExecutionHead>>;

    /// Up to `limit` executions in id order, starting after `after`.
    fn executions(&self, after: Option<ExecutionId>, limit: usize) -> Result<Vec<ExecutionHead>>;

    /// The position of the last acknowledged event (0 when empty).
    fn last_position(&self) -> u64;

    /// Stored events from the given point, then live ones.
    fn subscribe(&self, from: Tail) -> Subscription;

    /// Stores `state` as the snapshot of `execution` at `seq` (which must
    /// exist), replacing older snapshots of it. The request is made when this
    /// is called, ordered after every append already acknowledged; awaiting
    /// the future only waits for its outcome.
    fn put_snapshot(
        &self,
        execution: ExecutionId,
        seq: u64,
        state: Vec<u8>,
    ) -> BoxFuture<'static, Result<()>>;

    /// The newest snapshot of `execution`.
    fn latest_snapshot(&self, execution: ExecutionId) -> Result<Option<Snapshot>>;

    /// Walks every chain and index; appends wait while it runs.
    fn verify(&self) -> BoxFuture<'static, Result<VerifyReport>>;

    /// Rebuilds every derived index from the event records.
    fn rebuild_indexes(&self) -> BoxFuture<'static, Result<()>>;

    /// Returns once everything acknowledged so far is on disk (a no-op for a
    /// durable journal, where that is already true).
    fn flush(&self) -> BoxFuture<'static, Result<()>>;

    fn stats(&self) -> Stats;
}
