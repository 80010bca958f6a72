//! The conformance kit: the promises of [`Journal`] as executable cases, so
//! every implementation — the sled [`EventLog`], a networked journal, a
//! wrapper that injects faults — is held to the same tests. Passing every
//! case is what "implements `Journal`" means: the trait's doc states the
//! promises, and each case here checks some of them through the trait alone.
//!
//! [`EventLog`]: crate::EventLog
//!
//! # Using it
//! Depend on this crate with the `testkit` feature (as a dev-dependency),
//! implement [`Harness`] for something that opens your journal, and let
//! [`journal_conformance!`](crate::journal_conformance) write one `#[test]`
//! per case, named after the case, so a failure names the promise broken:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use retrace_journal::store::memory::MemoryStore;
//! # use retrace_journal::testkit::{BoxFuture, Harness};
//! # use retrace_journal::{EventLog, Journal, Options};
//! struct InMemory(MemoryStore);
//! impl Harness for InMemory {
//!     fn open(&self) -> BoxFuture<'_, Arc<dyn Journal>> {
//!         let log = EventLog::in_memory(self.0.clone(), Options::default()).expect("open");
//!         Box::pin(async move { Arc::new(log) as Arc<dyn Journal> })
//!     }
//! }
//! retrace_journal::journal_conformance!(InMemory(MemoryStore::new()));
//! # fn main() {}
//! ```
//!
//! The macro's argument is evaluated once per test, inside the test's tokio
//! runtime (so it may spawn, or `.await`), and must give a harness over an
//! empty journal. Each test runs its case on a two-worker runtime with a
//! time limit, then [`Harness::after_case`], where a backend checks its own
//! invariants on what the case left. To run only some cases, call them
//! yourself: each is a `pub async fn case(h: &dyn Harness)`, run by [`run`].
//!
//! What one layout alone has (the sled journal's `verify`, its index
//! rebuild, its group-commit counters, its reaction to a tampered or failing
//! store) is tested with that layout, not here.
//!
//! Owns the cases. It must never reach past the [`Journal`] trait (no
//! downcasting, no store access): a case that needs more is not a
//! conformance case.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
pub use futures::future::BoxFuture;

use crate::error::Error;
use crate::journal::{Appended, Journal, Snapshot, StreamHead, Tail};
use crate::record::{EventRecord, NewEvent};
use crate::stream::StreamId;
use crate::subscription::Subscription;

/// How a case gets at the journal under test.
pub trait Harness: Send + Sync {
    /// Opens the journal under test.
    ///
    /// Called again once every handle of the journal it returned before has
    /// been dropped (its clones and its subscriptions too), it must open the
    /// same data: that is a restart, and everything acknowledged before it
    /// must still be there. A case never holds two opened journals at once.
    fn open(&self) -> BoxFuture<'_, Arc<dyn Journal>>;

    /// Whether a restart finds the data again. A journal that keeps nothing
    /// across one answers `false`, and the cases skip what they would check
    /// after a restart.
    fn keeps_data_across_restarts(&self) -> bool {
        true
    }

    /// Whether appends to *different* streams commit in the order of the
    /// calls. A journal on a replicated log may have to send an append again
    /// (its leader decided nothing the first time), after appends called
    /// later; appends to one stream always keep their order.
    fn keeps_call_order_across_streams(&self) -> bool {
        true
    }

    /// Runs after every case, once the case has dropped every handle: the
    /// place for the backend's own checks of the data the case left (the
    /// sled journal's tests run its `verify` here). Panics if they fail.
    fn after_case(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The longest a whole case may take.
pub const CASE_LIMIT: Duration = Duration::from_secs(300);
/// The longest a case waits for one event from a subscription.
pub const EVENT_WAIT: Duration = Duration::from_secs(60);

/// Runs one case (or anything) on a fresh two-worker tokio runtime, failing
/// if it takes longer than [`CASE_LIMIT`]. What the macro's tests call.
pub fn run(case: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the case");
    runtime.block_on(async {
        if tokio::time::timeout(CASE_LIMIT, case).await.is_err() {
            panic!(
                "the case did not finish within {CASE_LIMIT:?}: an acknowledgement or an event never came"
            );
        }
    });
}

/// Writes one `#[test]` per conformance case, each named after its case, for
/// the [`Harness`](crate::testkit::Harness) the argument makes (evaluated
/// afresh in every test): `retrace_journal::journal_conformance!(MyHarness::new());`.
/// See [`testkit`](crate::testkit) for a whole example.
#[macro_export]
macro_rules! journal_conformance {
    ($harness:expr $(,)?) => {
        $crate::__journal_conformance_cases! {
            ($harness)
            appends_read_back_dense_and_in_order
            a_wrong_expected_seq_is_refused_and_writes_nothing
            malformed_appends_are_refused_and_write_nothing
            reopening_keeps_everything
            streams_are_listed_in_pages
            streams_in_lists_the_streams_of_some_partitions
            the_latest_snapshot_is_returned
            a_snapshot_reads_back_as_it_was_put
            concurrent_appends_to_different_streams_all_land
            racing_appends_to_one_stream_exactly_one_wins_each_seq
            appends_keep_the_order_of_the_calls
            a_subscriber_started_during_racing_appends_sees_every_event_once
            a_subscriber_from_the_middle_starts_there
            a_subscription_resumes_right_after_a_given_position
            tails_from_zero_and_from_one_both_start_at_the_beginning
            a_subscriber_that_reads_nothing_for_a_while_loses_nothing
            closing_the_journal_ends_subscriptions
            any_window_of_a_long_history_reads_back
            read_global_pages_through_everything_in_position_order
            last_position_follows_every_acknowledged_append
            flush_returns_and_keeps_everything
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __journal_conformance_cases {
    (($harness:expr) $($case:ident)*) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::run(async {
                    let harness = $harness;
                    $crate::testkit::$case(&harness).await;
                    $crate::testkit::Harness::after_case(&harness).await;
                });
            }
        )*
    };
}

// ---------------------------------------------------------------- helpers

/// Stream `n`: the id `[n; 16]`, so ids sort as their numbers do.
pub fn stream(n: u8) -> StreamId {
    StreamId::from_bytes([n; 16])
}

/// Event `i`: kind `kind_{i % 5}`, recorded at `1000 + i`, payload
/// `payload {i}`.
pub fn event(i: u64) -> NewEvent {
    NewEvent::new(
        format!("kind_{}", i % 5),
        1_000 + i,
        format!("payload {i}").into_bytes(),
    )
}

/// Appends `n` events at the end of `s`.
async fn append_n(j: &dyn Journal, s: StreamId, n: u64) -> Appended {
    let next = j.head(s).await.expect("head").map_or(1, |h| h.last_seq + 1);
    j.append(s, next, (0..n).map(event).collect())
        .await
        .expect("append at the end of a stream")
}

/// The next event of a subscription, or a panic naming what went wrong.
async fn next_event(sub: &mut Subscription, what: &str) -> EventRecord {
    match tokio::time::timeout(EVENT_WAIT, sub.next()).await {
        Ok(Some(Ok(record))) => record,
        Ok(Some(Err(e))) => panic!("{what}: the subscription failed: {e}"),
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: no event within {EVENT_WAIT:?}"),
    }
}

/// Whether a subscription has nothing to give right now (one poll).
fn has_nothing_yet(sub: &mut Subscription) -> bool {
    sub.next().now_or_never().is_none()
}

fn positions(records: &[EventRecord]) -> Vec<u64> {
    records.iter().map(|r| r.position).collect()
}

fn seqs(records: &[EventRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn places(records: &[EventRecord]) -> Vec<(StreamId, u64)> {
    records.iter().map(|r| (r.stream, r.seq)).collect()
}

/// Positions are at least 1 and strictly increasing (gaps allowed).
fn assert_strictly_increasing(positions: &[u64], what: &str) {
    if let Some(first) = positions.first() {
        assert!(
            *first >= 1,
            "{what}: position {first} (positions start at 1)"
        );
    }
    for w in positions.windows(2) {
        assert!(
            w[0] < w[1],
            "{what}: positions must strictly increase, got {} then {}",
            w[0],
            w[1]
        );
    }
}

async fn read_all(j: &dyn Journal, s: StreamId) -> Vec<EventRecord> {
    j.read(s, 1, usize::MAX).await.expect("read a whole stream")
}

async fn read_everything(j: &dyn Journal) -> Vec<EventRecord> {
    j.read_global(1, usize::MAX)
        .await
        .expect("read the whole journal")
}

// ------------------------------------------------------------------ cases

/// Appends get dense seqs per stream and increasing positions across
/// streams; `read`, `read_global`, `head` and `last_position` agree with the
/// acknowledgements.
pub async fn appends_read_back_dense_and_in_order(h: &dyn Harness) {
    let j = h.open().await;
    let a = j
        .append(stream(1), 1, vec![event(0), event(1)])
        .await
        .expect("append to a new stream");
    assert_eq!((a.stream, a.first_seq, a.last_seq), (stream(1), 1, 2));
    assert!(
        1 <= a.first_position && a.first_position < a.last_position,
        "{a:?}"
    );
    let b = j
        .append(stream(2), 1, vec![event(2)])
        .await
        .expect("append to another stream");
    assert_eq!((b.first_seq, b.last_seq), (1, 1));
    assert_eq!(b.first_position, b.last_position, "one event, one position");
    assert!(b.first_position > a.last_position, "commit order: {b:?}");
    let c = j
        .append(stream(1), 3, vec![event(3)])
        .await
        .expect("append to the first stream again");
    assert_eq!((c.first_seq, c.last_seq), (3, 3));
    assert!(c.first_position > b.last_position, "commit order: {c:?}");

    let one = read_all(&*j, stream(1)).await;
    assert_eq!(seqs(&one), [1, 2, 3]);
    assert_eq!(
        positions(&one),
        [a.first_position, a.last_position, c.first_position]
    );
    assert!(one.iter().all(|r| r.stream == stream(1)));
    assert_eq!(one[2].payload, b"payload 3");
    assert_eq!(one[2].kind, "kind_3");
    assert_eq!(one[0].recorded_at_ms, 1_000);
    let from_two = j.read(stream(1), 2, 1).await.expect("read from seq 2");
    assert_eq!(seqs(&from_two), [2], "read from any seq, up to the limit");
    assert!(j.read(stream(1), 4, 10).await.expect("read").is_empty());
    assert!(j.read(stream(9), 1, 10).await.expect("read").is_empty());

    let all = j.read_global(1, 100).await.expect("read_global");
    assert_eq!(
        places(&all),
        [
            (stream(1), 1),
            (stream(1), 2),
            (stream(2), 1),
            (stream(1), 3)
        ]
    );
    assert_eq!(
        positions(&all),
        [
            a.first_position,
            a.last_position,
            b.first_position,
            c.first_position
        ]
    );
    assert_eq!(all[3], one[2], "both reads give the same record");
    let at_b = j
        .read_global(b.first_position, 1)
        .await
        .expect("read_global");
    assert_eq!(places(&at_b), [(stream(2), 1)]);
    assert_eq!(
        j.last_position().await.expect("last_position"),
        c.last_position
    );
    assert_eq!(
        j.head(stream(1)).await.expect("head"),
        Some(StreamHead {
            stream: stream(1),
            last_seq: 3,
            last_position: c.last_position,
        })
    );
    assert_eq!(j.head(stream(3)).await.expect("head"), None);
}

/// An append whose `expected_seq` is not the stream's next seq is refused
/// with `SeqConflict` naming both, and writes nothing.
pub async fn a_wrong_expected_seq_is_refused_and_writes_nothing(h: &dyn Harness) {
    let j = h.open().await;
    let first = append_n(&*j, stream(1), 3).await;
    for wrong in [0, 1, 3, 5, u64::MAX] {
        match j.append(stream(1), wrong, vec![event(9)]).await {
            Err(Error::SeqConflict {
                stream: s,
                expected,
                actual,
            }) => assert_eq!((s, expected, actual), (stream(1), wrong, 4)),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert!(matches!(
        j.append(stream(2), 2, vec![event(0)]).await,
        Err(Error::SeqConflict { actual: 1, .. })
    ));
    assert_eq!(read_all(&*j, stream(1)).await.len(), 3);
    assert_eq!(j.head(stream(2)).await.expect("head"), None);
    assert_eq!(
        j.last_position().await.expect("last_position"),
        first.last_position
    );
}

/// An empty append, or one with a malformed event among good ones, is
/// refused with `InvalidAppend` and writes nothing.
pub async fn malformed_appends_are_refused_and_write_nothing(h: &dyn Harness) {
    let j = h.open().await;
    assert!(matches!(
        j.append(stream(1), 1, vec![]).await,
        Err(Error::InvalidAppend(_))
    ));
    let bad = vec![event(0), NewEvent::new("", 0, vec![])];
    assert!(matches!(
        j.append(stream(1), 1, bad).await,
        Err(Error::InvalidAppend(_))
    ));
    assert_eq!(j.last_position().await.expect("last_position"), 0);
    assert_eq!(j.head(stream(1)).await.expect("head"), None);
    assert!(read_everything(&*j).await.is_empty());
    assert!(j.streams(None, 10).await.expect("streams").is_empty());
    let a = append_n(&*j, stream(1), 1).await;
    assert_eq!(a.first_seq, 1, "a refused append used up no seq");
}

/// Everything acknowledged is there after a restart, and the streams go on
/// where they stopped.
pub async fn reopening_keeps_everything(h: &dyn Harness) {
    if !h.keeps_data_across_restarts() {
        return;
    }
    let (before, last) = {
        let j = h.open().await;
        append_n(&*j, stream(1), 5).await;
        let last = append_n(&*j, stream(2), 2).await;
        (read_everything(&*j).await, last)
    };
    assert_eq!(before.len(), 7);
    let j = h.open().await;
    assert_eq!(read_everything(&*j).await, before);
    assert_eq!(
        j.last_position().await.expect("last_position"),
        last.last_position
    );
    assert_eq!(
        j.head(stream(1)).await.expect("head").map(|h| h.last_seq),
        Some(5)
    );
    let a = j
        .append(stream(1), 6, vec![event(6)])
        .await
        .expect("the stream goes on where it stopped");
    assert!(a.first_position > last.last_position, "{a:?}");
    assert_eq!(seqs(&read_all(&*j, stream(1)).await), [1, 2, 3, 4, 5, 6]);
}

/// `streams` lists streams with events in id order, in pages that start
/// after a given id (which need not exist), agreeing with `head`.
pub async fn streams_are_listed_in_pages(h: &dyn Harness) {
    let j = h.open().await;
    for n in 1..=5 {
        append_n(&*j, stream(n), u64::from(n)).await;
    }
    let first = j.streams(None, 2).await.expect("streams");
    assert_eq!(
        first.iter().map(|s| s.stream).collect::<Vec<_>>(),
        [stream(1), stream(2)]
    );
    let rest = j.streams(Some(stream(2)), 10).await.expect("streams");
    assert_eq!(
        rest.iter()
            .map(|s| (s.stream, s.last_seq))
            .collect::<Vec<_>>(),
        [(stream(3), 3), (stream(4), 4), (stream(5), 5)]
    );
    for listed in first.iter().chain(&rest) {
        assert_eq!(j.head(listed.stream).await.expect("head"), Some(*listed));
    }
    assert!(
        j.streams(Some(stream(5)), 10)
            .await
            .expect("streams")
            .is_empty()
    );
    assert!(j.streams(None, 0).await.expect("streams").is_empty());
    // After an id with no events of its own: from the next one that has some.
    let mut between = [2u8; 16];
    between[15] = 3;
    let next = j
        .streams(Some(StreamId::from_bytes(between)), 1)
        .await
        .expect("streams");
    assert_eq!(
        next.iter().map(|s| s.stream).collect::<Vec<_>>(),
        [stream(3)]
    );
}

/// `streams_in` lists, in pages, the streams of some partitions: on a
/// shared journal those whose `partition_of` is one of them, on one that
/// is not shared every stream; each as `head` has it.
pub async fn streams_in_lists_the_streams_of_some_partitions(h: &dyn Harness) {
    let j = h.open().await;
    for n in 1..=12 {
        append_n(&*j, stream(n), 1).await;
    }
    let count = j.share().map(|s| s.partitions);
    let partitions: BTreeSet<u32> = [stream(1), stream(2)]
        .into_iter()
        .map(|s| count.map_or(0, |c| crate::partition_of(s, c)))
        .collect();
    let expected: Vec<StreamId> = (1..=12)
        .map(stream)
        .filter(|s| count.is_none_or(|c| partitions.contains(&crate::partition_of(*s, c))))
        .collect();
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = j.streams_in(&partitions, after, 1).await.expect("streams");
        assert!(page.len() <= 1, "{page:?}");
        let Some(last) = page.last() else { break };
        after = Some(last.stream);
        assert_eq!(j.head(last.stream).await.expect("head"), Some(*last));
        listed.push(last.stream);
    }
    assert_eq!(listed, expected);
}

/// The newest snapshot is the one returned; a snapshot of events that do
/// not exist is refused; snapshots survive a restart.
pub async fn the_latest_snapshot_is_returned(h: &dyn Harness) {
    let j = h.open().await;
    append_n(&*j, stream(1), 10).await;
    assert_eq!(j.latest_snapshot(stream(1)).await.expect("snapshot"), None);
    j.put_snapshot(stream(1), 4, b"four".to_vec())
        .await
        .expect("put_snapshot");
    j.put_snapshot(stream(1), 9, b"nine".to_vec())
        .await
        .expect("put_snapshot");
    let s = j
        .latest_snapshot(stream(1))
        .await
        .expect("snapshot")
        .expect("a snapshot was put");
    assert_eq!((s.seq, s.state.as_slice()), (9, b"nine".as_slice()));
    // A snapshot of events that do not exist is refused.
    assert!(j.put_snapshot(stream(1), 11, vec![]).await.is_err());
    assert!(j.put_snapshot(stream(2), 1, vec![]).await.is_err());
    let kept = j.latest_snapshot(stream(1)).await.expect("snapshot");
    assert_eq!(kept.map(|s| s.seq), Some(9));
    if !h.keeps_data_across_restarts() {
        return;
    }
    drop(j);
    let j = h.open().await;
    let after = j.latest_snapshot(stream(1)).await.expect("snapshot");
    assert_eq!(after.map(|s| s.state), Some(b"nine".to_vec()));
}

/// `put_snapshot` then `latest_snapshot` gives back exactly what was put,
/// per stream; the put is ordered after every acknowledged append.
pub async fn a_snapshot_reads_back_as_it_was_put(h: &dyn Harness) {
    let j = h.open().await;
    let a = append_n(&*j, stream(1), 3).await;
    // Right after the acknowledgement, its last seq can be snapshotted.
    j.put_snapshot(stream(1), a.last_seq, b"three".to_vec())
        .await
        .expect("put_snapshot at the seq just acknowledged");
    let three = Snapshot {
        stream: stream(1),
        seq: 3,
        state: b"three".to_vec(),
    };
    assert_eq!(
        j.latest_snapshot(stream(1)).await.expect("snapshot"),
        Some(three.clone())
    );
    // Streams' snapshots are their own; an empty state is a state.
    append_n(&*j, stream(2), 1).await;
    j.put_snapshot(stream(2), 1, vec![])
        .await
        .expect("put_snapshot");
    assert_eq!(
        j.latest_snapshot(stream(2)).await.expect("snapshot"),
        Some(Snapshot {
            stream: stream(2),
            seq: 1,
            state: vec![],
        })
    );
    assert_eq!(
        j.latest_snapshot(stream(1)).await.expect("snapshot"),
        Some(three)
    );
    // A newer one replaces it, whatever its size.
    append_n(&*j, stream(1), 2).await;
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    j.put_snapshot(stream(1), 5, big.clone())
        .await
        .expect("put_snapshot");
    let newest = j.latest_snapshot(stream(1)).await.expect("snapshot");
    assert_eq!(newest.map(|s| (s.seq, s.state)), Some((5, big)));
    // Seq 0 is no event.
    assert!(
        j.put_snapshot(stream(1), 0, b"zero".to_vec())
            .await
            .is_err()
    );
    let kept = j.latest_snapshot(stream(1)).await.expect("snapshot");
    assert_eq!(kept.map(|s| s.seq), Some(5));
    assert_eq!(j.latest_snapshot(stream(3)).await.expect("snapshot"), None);
}

/// Appends from many tasks to many streams all land, each stream dense,
/// the whole in strictly increasing positions.
pub async fn concurrent_appends_to_different_streams_all_land(h: &dyn Harness) {
    let j = h.open().await;
    let tasks: Vec<_> = (0..64u8)
        .map(|n| {
            let j = j.clone();
            tokio::spawn(async move {
                for seq in 1..=20 {
                    j.append(stream(n), seq, vec![event(seq)])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("an appending task");
    }
    let all = read_everything(&*j).await;
    assert_eq!(all.len(), 64 * 20);
    assert_strictly_increasing(&positions(&all), "read_global");
    assert_eq!(
        j.last_position().await.expect("last_position"),
        all[all.len() - 1].position
    );
    for n in 0..64u8 {
        let events = read_all(&*j, stream(n)).await;
        assert_eq!(seqs(&events), (1..=20).collect::<Vec<_>>());
    }
}

/// Tasks racing to append the same seqs of one stream: each seq is won by
/// exactly one, every loser is told the next seq, and what is stored is the
/// winner's.
pub async fn racing_appends_to_one_stream_exactly_one_wins_each_seq(h: &dyn Harness) {
    let j = h.open().await;
    let racers = 8u64;
    let tasks: Vec<_> = (0..racers)
        .map(|who| {
            let j = j.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                let mut next = 1;
                while next <= 50 {
                    let claim = NewEvent::new("claim", 0, who.to_le_bytes().to_vec());
                    match j.append(stream(1), next, vec![claim]).await {
                        Ok(a) => {
                            won.push(a.first_seq);
                            next = a.last_seq + 1;
                        }
                        Err(Error::SeqConflict { actual, .. }) => next = actual,
                        Err(e) => panic!("{e}"),
                    }
                }
                (who, won)
            })
        })
        .collect();
    let mut winner_of: BTreeMap<u64, u64> = BTreeMap::new();
    for t in tasks {
        let (who, won) = t.await.expect("a racing task");
        for seq in won {
            assert!(winner_of.insert(seq, who).is_none(), "seq {seq} won twice");
        }
    }
    assert_eq!(
        winner_of.keys().copied().collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    let stored = read_all(&*j, stream(1)).await;
    assert_eq!(stored.len(), 50);
    for r in &stored {
        let who = u64::from_le_bytes(
            r.payload
                .as_slice()
                .try_into()
                .expect("a claim holds 8 bytes"),
        );
        assert_eq!(winner_of[&r.seq], who, "the stored event is the winner's");
    }
}

/// An append's request is made when `append` is called, so appends made one
/// after another and only then awaited all fit, committed in call order.
pub async fn appends_keep_the_order_of_the_calls(h: &dyn Harness) {
    let j = h.open().await;
    let pending: Vec<_> = (1..=20)
        .map(|seq| j.append(stream(1), seq, vec![event(seq)]))
        .collect();
    let mut acknowledged = Vec::new();
    for (seq, append) in (1..=20).zip(pending) {
        let a = append.await.expect("appends made in order all fit");
        assert_eq!(a.first_seq, seq);
        acknowledged.push(a.first_position);
    }
    assert_strictly_increasing(&acknowledged, "appends in call order");
    if !h.keeps_call_order_across_streams() {
        return;
    }
    // Across streams too.
    let x = j.append(stream(2), 1, vec![event(1)]);
    let y = j.append(stream(1), 21, vec![event(21)]);
    let z = j.append(stream(2), 2, vec![event(2)]);
    let (x, y, z) = (
        x.await.expect("append"),
        y.await.expect("append"),
        z.await.expect("append"),
    );
    assert_strictly_increasing(
        &[
            acknowledged[19],
            x.first_position,
            y.first_position,
            z.first_position,
        ],
        "appends to two streams in call order",
    );
    assert_eq!(
        seqs(&read_all(&*j, stream(1)).await),
        (1..=21).collect::<Vec<_>>()
    );
}

/// Subscriptions started while appends race see every event exactly once,
/// in order, across the stored/live seam, and then the next fresh event.
pub async fn a_subscriber_started_during_racing_appends_sees_every_event_once(h: &dyn Harness) {
    let j = h.open().await;
    append_n(&*j, stream(0), 10).await;
    let writers: Vec<_> = (1..=8u8)
        .map(|n| {
            let j = j.clone();
            tokio::spawn(async move {
                for seq in 1..=50 {
                    j.append(stream(n), seq, vec![event(seq)])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    // Start while the writers are going.
    tokio::task::yield_now().await;
    let mut all = j.subscribe(Tail::All { from_position: 1 });
    let mut one = j.subscribe(Tail::Stream {
        stream: stream(5),
        from_seq: 1,
    });
    let total = 10 + 8 * 50;
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        seen.push(next_event(&mut all, "the whole journal").await);
    }
    assert_strictly_increasing(&positions(&seen), "subscription to everything");
    let mut seqs_seen = Vec::new();
    while seqs_seen.len() < 50 {
        let r = next_event(&mut one, "stream 5").await;
        assert_eq!(r.stream, stream(5));
        seqs_seen.push(r.seq);
    }
    assert_eq!(seqs_seen, (1..=50).collect::<Vec<_>>());
    for w in writers {
        w.await.expect("an appending task");
    }
    assert_eq!(
        seen,
        read_everything(&*j).await,
        "the subscription gave exactly what is stored"
    );
    // Nothing more is pending: the next event is a fresh one.
    let fresh = j
        .append(stream(5), 51, vec![event(0)])
        .await
        .expect("append");
    assert_eq!(next_event(&mut one, "stream 5").await.seq, 51);
    assert_eq!(
        next_event(&mut all, "the whole journal").await.position,
        fresh.first_position
    );
}

/// A subscription from a seq or a position in the middle starts exactly
/// there.
pub async fn a_subscriber_from_the_middle_starts_there(h: &dyn Harness) {
    let j = h.open().await;
    append_n(&*j, stream(1), 10).await;
    let mut s = j.subscribe(Tail::Stream {
        stream: stream(1),
        from_seq: 7,
    });
    for want in 7..=10 {
        assert_eq!(next_event(&mut s, "from seq 7").await.seq, want);
    }
    let tenth = read_everything(&*j).await[9].clone();
    let mut g = j.subscribe(Tail::All {
        from_position: tenth.position,
    });
    assert_eq!(next_event(&mut g, "from the tenth position").await, tenth);
}

/// "After the last position I saw" is how a reader resumes: a subscription
/// from `position + 1` (or `seq + 1`) gives exactly what follows it, then
/// what is appended next.
pub async fn a_subscription_resumes_right_after_a_given_position(h: &dyn Harness) {
    let j = h.open().await;
    for i in 0..30u64 {
        let n = (i % 3) as u8 + 1;
        append_n(&*j, stream(n), 1).await;
    }
    let stored = read_everything(&*j).await;
    assert_eq!(stored.len(), 30);
    for cut in [0, 1, 14, 28] {
        let seen = stored[cut].position;
        let mut s = j.subscribe(Tail::All {
            from_position: seen + 1,
        });
        for want in &stored[cut + 1..] {
            let got = next_event(&mut s, "resumed subscription").await;
            assert_eq!(&got, want, "resuming after position {seen}");
        }
    }
    let last = stored[29].position;
    let mut after_all = j.subscribe(Tail::All {
        from_position: last + 1,
    });
    let mut after_six = j.subscribe(Tail::Stream {
        stream: stream(2),
        from_seq: 7,
    });
    for want in 7..=10 {
        assert_eq!(
            next_event(&mut after_six, "stream 2 from 7").await.seq,
            want
        );
    }
    assert!(
        has_nothing_yet(&mut after_all),
        "nothing follows the last position yet"
    );
    assert!(
        has_nothing_yet(&mut after_six),
        "nothing follows seq 10 yet"
    );
    let fresh = j
        .append(stream(2), 11, vec![event(11)])
        .await
        .expect("append");
    let next = next_event(&mut after_all, "after the last position").await;
    assert_eq!(
        (next.position, next.stream, next.seq),
        (fresh.first_position, stream(2), 11)
    );
    assert_eq!(next_event(&mut after_six, "stream 2").await, next);
}

/// `Tail` bounds are inclusive, and 0 and 1 both mean "from the beginning".
pub async fn tails_from_zero_and_from_one_both_start_at_the_beginning(h: &dyn Harness) {
    let j = h.open().await;
    append_n(&*j, stream(2), 2).await;
    append_n(&*j, stream(1), 3).await;
    let first = read_everything(&*j).await[0].clone();
    for from in [0, 1] {
        let mut all = j.subscribe(Tail::All {
            from_position: from,
        });
        assert_eq!(
            next_event(&mut all, "everything from the start").await,
            first
        );
        let mut one = j.subscribe(Tail::Stream {
            stream: stream(1),
            from_seq: from,
        });
        let r = next_event(&mut one, "stream 1 from the start").await;
        assert_eq!((r.stream, r.seq), (stream(1), 1));
    }
}

/// Subscribers that read nothing while many events are appended lose none
/// of them (however the backend buffers, it must not drop or block).
pub async fn a_subscriber_that_reads_nothing_for_a_while_loses_nothing(h: &dyn Harness) {
    const BATCH: u64 = 1_000;
    const BATCHES: u64 = 20;
    let j = h.open().await;
    let mut all = j.subscribe(Tail::All { from_position: 1 });
    let mut one = j.subscribe(Tail::Stream {
        stream: stream(1),
        from_seq: 1,
    });
    // Park both on what is live (there is nothing stored yet)...
    assert!(has_nothing_yet(&mut all) && has_nothing_yet(&mut one));
    // ...then append far more than any sensible live buffer, reading nothing.
    for b in 0..BATCHES {
        let first = b * BATCH + 1;
        let events = (first..first + BATCH).map(event).collect();
        j.append(stream(1), first, events).await.expect("append");
    }
    let total = (BATCH * BATCHES) as usize;
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        seen.push(next_event(&mut all, "a slow subscriber to everything").await);
    }
    assert_eq!(seen, read_everything(&*j).await);
    let mut seqs_seen = Vec::with_capacity(total);
    while seqs_seen.len() < total {
        seqs_seen.push(
            next_event(&mut one, "a slow subscriber to one stream")
                .await
                .seq,
        );
    }
    assert_eq!(seqs_seen, (1..=total as u64).collect::<Vec<_>>());
}

/// Once every handle of the journal is dropped, a subscription gives what
/// was stored and then ends.
pub async fn closing_the_journal_ends_subscriptions(h: &dyn Harness) {
    let j = h.open().await;
    let a = append_n(&*j, stream(1), 2).await;
    let mut s = j.subscribe(Tail::All { from_position: 1 });
    drop(j);
    assert_eq!(
        next_event(&mut s, "after close").await.position,
        a.first_position
    );
    assert_eq!(
        next_event(&mut s, "after close").await.position,
        a.last_position
    );
    let end = tokio::time::timeout(EVENT_WAIT, s.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the subscription ends once the journal is closed"
    );
}

/// Every window (`from_seq`, `limit`) of a long history interleaved with
/// another stream's reads back as that slice of the whole.
pub async fn any_window_of_a_long_history_reads_back(h: &dyn Harness) {
    let j = h.open().await;
    for seq in 1..=300 {
        j.append(stream(1), seq, vec![event(seq)])
            .await
            .expect("append");
        j.append(stream(2), seq, vec![event(seq + 1000)])
            .await
            .expect("append");
    }
    let all = read_all(&*j, stream(1)).await;
    assert_eq!(all.len(), 300);
    for (from, limit) in [
        (1, 1),
        (1, 128),
        (127, 3),
        (128, 1),
        (129, 200),
        (250, 100),
        (300, 5),
        (301, 5),
    ] {
        let window = j.read(stream(1), from, limit).await.expect("read");
        let want: Vec<_> = all
            .iter()
            .filter(|r| r.seq >= from)
            .take(limit)
            .cloned()
            .collect();
        assert_eq!(window, want, "window from {from} limit {limit}");
    }
    let two = j.read(stream(2), 200, 1).await.expect("read");
    assert_eq!(two[0].payload, b"payload 1200");
}

/// `read_global` gives events in commit order with strictly increasing
/// positions, and paging by "after the last position seen" reaches all.
pub async fn read_global_pages_through_everything_in_position_order(h: &dyn Harness) {
    let j = h.open().await;
    let mut committed: Vec<(StreamId, u64)> = Vec::new();
    for round in 0..10u64 {
        for n in 1..=3u8 {
            let size = (round + u64::from(n)) % 4 + 1;
            let a = append_n(&*j, stream(n), size).await;
            committed.extend((a.first_seq..=a.last_seq).map(|seq| (stream(n), seq)));
        }
    }
    let all = read_everything(&*j).await;
    assert_eq!(places(&all), committed, "read_global is commit order");
    assert_strictly_increasing(&positions(&all), "read_global");
    for page in [1, 3, 7] {
        let mut from = 1;
        let mut paged = Vec::new();
        loop {
            let chunk = j.read_global(from, page).await.expect("read_global");
            let Some(last) = chunk.last() else { break };
            assert!(chunk.len() <= page, "a page holds at most its limit");
            from = last.position + 1;
            paged.extend(chunk);
        }
        assert_eq!(paged, all, "pages of {page}");
    }
    for r in &all {
        let same = j.read(r.stream, r.seq, 1).await.expect("read");
        assert_eq!(same.first(), Some(r), "stream {} seq {}", r.stream, r.seq);
    }
    assert!(j.read_global(1, 0).await.expect("read_global").is_empty());
    let beyond = all[all.len() - 1].position + 1;
    assert!(
        j.read_global(beyond, 10)
            .await
            .expect("read_global")
            .is_empty()
    );
}

/// `last_position` is 0 when empty, then the last acknowledged event's
/// position, unmoved by refused appends, and the same after a restart.
pub async fn last_position_follows_every_acknowledged_append(h: &dyn Harness) {
    let j = h.open().await;
    assert_eq!(j.last_position().await.expect("last_position"), 0);
    let mut last = 0;
    for (n, size) in [(1u8, 1u64), (2, 3), (1, 2), (3, 1)] {
        let a = append_n(&*j, stream(n), size).await;
        assert!(a.first_position > last, "{a:?} after {last}");
        assert_eq!(
            j.last_position().await.expect("last_position"),
            a.last_position
        );
        last = a.last_position;
    }
    assert!(j.append(stream(1), 99, vec![event(0)]).await.is_err());
    assert!(j.append(stream(1), 4, vec![]).await.is_err());
    assert_eq!(j.last_position().await.expect("last_position"), last);
    let everything = read_everything(&*j).await;
    assert_eq!(everything.last().map(|r| r.position), Some(last));
    if !h.keeps_data_across_restarts() {
        return;
    }
    drop(j);
    let j = h.open().await;
    assert_eq!(j.last_position().await.expect("last_position"), last);
    let a = append_n(&*j, stream(2), 1).await;
    assert!(a.first_position > last, "{a:?} after a restart at {last}");
    assert_eq!(
        j.last_position().await.expect("last_position"),
        a.last_position
    );
}

/// `flush` returns (on an empty journal too) and changes nothing; what was
/// acknowledged before it is there after a restart.
pub async fn flush_returns_and_keeps_everything(h: &dyn Harness) {
    let j = h.open().await;
    j.flush().await.expect("flush an empty journal");
    append_n(&*j, stream(1), 3).await;
    j.flush().await.expect("flush");
    let a = append_n(&*j, stream(2), 2).await;
    j.flush().await.expect("flush");
    j.flush().await.expect("flush twice");
    let before = read_everything(&*j).await;
    assert_eq!(before.len(), 5);
    assert_eq!(
        j.last_position().await.expect("last_position"),
        a.last_position
    );
    if !h.keeps_data_across_restarts() {
        return;
    }
    drop(j);
    let j = h.open().await;
    assert_eq!(read_everything(&*j).await, before);
}
