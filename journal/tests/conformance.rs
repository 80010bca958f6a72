//! One conformance suite for every journal store: each test below runs against
//! the sled store (in a temporary folder), the in-memory store, and overlays
//! (`store::overlay`) stacked over an in-memory store that must stay empty. The keys
//! used for tampering are written out from `docs/journal-format.md`, so these
//! tests also pin the documented layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::store::overlay::Overlay;
use retrace_journal::store::sled::SledStore;
use retrace_journal::store::{Op, Store};
use retrace_journal::{
    Error, EventLog, EventRecord, ExecutionId, Journal, NewEvent, Options, ProblemKind, Tail,
};

trait Harness: Sync {
    fn open(&self, options: Options) -> EventLog;
    /// Raw access to the store, only while no journal is open on it.
    fn raw(&self) -> Arc<dyn Store>;
}

struct SledHarness(tempfile::TempDir);
impl Harness for SledHarness {
    fn open(&self, options: Options) -> EventLog {
        EventLog::open(self.0.path(), options).unwrap()
    }
    fn raw(&self) -> Arc<dyn Store> {
        Arc::new(SledStore::open(self.0.path()).unwrap())
    }
}

struct MemHarness(MemoryStore);
impl Harness for MemHarness {
    fn open(&self, options: Options) -> EventLog {
        EventLog::in_memory(self.0.clone(), options).unwrap()
    }
    fn raw(&self) -> Arc<dyn Store> {
        Arc::new(self.0.clone())
    }
}

/// Overlays over an in-memory store: every open puts a fresh overlay over
/// the one before, so a test's data ends up spread over several layers (and
/// its deletes and rewrites reach down through them), while the memory store
/// at the bottom is never written at all.
struct OverlayHarness {
    bottom: MemoryStore,
    top: std::sync::Mutex<Arc<dyn Store>>,
}
impl OverlayHarness {
    fn new() -> OverlayHarness {
        let bottom = MemoryStore::new();
        let top: Arc<dyn Store> = Arc::new(Overlay::new(bottom.clone()));
        OverlayHarness {
            bottom,
            top: std::sync::Mutex::new(top),
        }
    }
}
impl Harness for OverlayHarness {
    fn open(&self, options: Options) -> EventLog {
        let mut top = self.top.lock().unwrap();
        let next: Arc<dyn Store> = Arc::new(Overlay::new(top.clone()));
        *top = next.clone();
        EventLog::with_store(next, options).unwrap()
    }
    fn raw(&self) -> Arc<dyn Store> {
        self.top.lock().unwrap().clone()
    }
}
impl Drop for OverlayHarness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.bottom.raw_entries().is_empty(),
                "an overlay wrote to its base"
            );
        }
    }
}

fn id(n: u8) -> ExecutionId {
    ExecutionId::from_bytes([n; 16])
}

fn ev(i: u64) -> NewEvent {
    NewEvent::new(
        format!("kind_{}", i % 5),
        1_000 + i,
        format!("payload {i}").into_bytes(),
    )
}

/// The raw key of the record at `position` (`l` + big-endian position).
fn log_key(position: u64) -> Vec<u8> {
    let mut k = vec![b'l'];
    k.extend_from_slice(&position.to_be_bytes());
    k
}

/// The raw key of an event, found through the journal.
fn record_key(h: &dyn Harness, execution: ExecutionId, seq: u64) -> Vec<u8> {
    let j = h.open(Options::default());
    let position = j.read(execution, seq, 1).unwrap()[0].position;
    log_key(position)
}

async fn append_n(j: &EventLog, execution: ExecutionId, n: u64) {
    let next = j.head(execution).unwrap().map_or(1, |h| h.last_seq + 1);
    j.append(execution, next, (0..n).map(ev).collect())
        .await
        .unwrap();
}

async fn appends_read_back_dense_and_in_order(h: &dyn Harness) {
    let j = h.open(Options::default());
    let a = j.append(id(1), 1, vec![ev(0), ev(1)]).await.unwrap();
    assert_eq!(
        (a.first_seq, a.last_seq, a.first_position, a.last_position),
        (1, 2, 1, 2)
    );
    let b = j.append(id(2), 1, vec![ev(2)]).await.unwrap();
    assert_eq!((b.first_seq, b.last_position), (1, 3));
    let c = j.append(id(1), 3, vec![ev(3)]).await.unwrap();
    assert_eq!((c.first_seq, c.first_position), (3, 4));

    let one = j.read(id(1), 1, 100).unwrap();
    assert_eq!(one.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        one.iter().map(|r| r.position).collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert_eq!(one[2].payload, b"payload 3");
    assert_eq!(one[0].recorded_at_ms, 1_000);
    assert_eq!(j.read(id(1), 2, 1).unwrap()[0].seq, 2, "read from any seq");
    assert!(j.read(id(1), 4, 10).unwrap().is_empty());
    assert!(j.read(id(9), 1, 10).unwrap().is_empty());

    let all = j.read_global(1, 100).unwrap();
    assert_eq!(
        all.iter().map(|r| (r.execution, r.seq)).collect::<Vec<_>>(),
        [(id(1), 1), (id(1), 2), (id(2), 1), (id(1), 3)]
    );
    assert_eq!(j.read_global(3, 1).unwrap()[0].execution, id(2));
    assert_eq!(j.last_position(), 4);
    assert_eq!(j.head(id(1)).unwrap().unwrap().last_seq, 3);
    assert_eq!(j.head(id(3)).unwrap(), None);
}

async fn a_wrong_expected_seq_is_refused_and_writes_nothing(h: &dyn Harness) {
    let j = h.open(Options::default());
    append_n(&j, id(1), 3).await;
    for wrong in [0, 1, 3, 5, u64::MAX] {
        match j.append(id(1), wrong, vec![ev(9)]).await {
            Err(Error::SeqConflict {
                expected, actual, ..
            }) => {
                assert_eq!((expected, actual), (wrong, 4));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert!(matches!(
        j.append(id(2), 2, vec![ev(0)]).await,
        Err(Error::SeqConflict { actual: 1, .. })
    ));
    assert_eq!(j.read(id(1), 1, 100).unwrap().len(), 3);
    assert_eq!(j.head(id(2)).unwrap(), None);
    assert_eq!(j.last_position(), 3);
    assert_eq!(j.stats().conflicts, 6);
}

async fn malformed_appends_are_refused_and_write_nothing(h: &dyn Harness) {
    let j = h.open(Options::default());
    assert!(matches!(
        j.append(id(1), 1, vec![]).await,
        Err(Error::InvalidAppend(_))
    ));
    let bad = vec![ev(0), NewEvent::new("", 0, vec![])];
    assert!(matches!(
        j.append(id(1), 1, bad).await,
        Err(Error::InvalidAppend(_))
    ));
    assert_eq!(j.last_position(), 0);
    assert_eq!(j.head(id(1)).unwrap(), None);
    append_n(&j, id(1), 1).await;
}

async fn reopening_keeps_everything(h: &dyn Harness) {
    let before = {
        let j = h.open(Options::default());
        append_n(&j, id(1), 5).await;
        append_n(&j, id(2), 2).await;
        j.read_global(1, 100).unwrap()
    };
    let j = h.open(Options::default());
    assert_eq!(j.read_global(1, 100).unwrap(), before);
    assert_eq!(j.last_position(), 7);
    // The chain continues where it stopped.
    let a = j.append(id(1), 6, vec![ev(6)]).await.unwrap();
    assert_eq!(a.first_position, 8);
    assert!(j.verify().await.unwrap().is_sound());
}

async fn executions_are_listed_in_pages(h: &dyn Harness) {
    let j = h.open(Options::default());
    for n in 1..=5 {
        append_n(&j, id(n), u64::from(n)).await;
    }
    let first = j.executions(None, 2).unwrap();
    assert_eq!(
        first.iter().map(|e| e.execution).collect::<Vec<_>>(),
        [id(1), id(2)]
    );
    let rest = j.executions(Some(id(2)), 10).unwrap();
    assert_eq!(
        rest.iter()
            .map(|e| (e.execution, e.last_seq))
            .collect::<Vec<_>>(),
        [(id(3), 3), (id(4), 4), (id(5), 5)]
    );
}

async fn the_latest_snapshot_is_returned(h: &dyn Harness) {
    let j = h.open(Options::default());
    append_n(&j, id(1), 10).await;
    assert_eq!(j.latest_snapshot(id(1)).unwrap(), None);
    j.put_snapshot(id(1), 4, b"four".to_vec()).await.unwrap();
    j.put_snapshot(id(1), 9, b"nine".to_vec()).await.unwrap();
    let s = j.latest_snapshot(id(1)).unwrap().unwrap();
    assert_eq!((s.seq, s.state.as_slice()), (9, b"nine".as_slice()));
    // A snapshot of events that do not exist is refused.
    assert!(j.put_snapshot(id(1), 11, vec![]).await.is_err());
    assert!(j.put_snapshot(id(2), 1, vec![]).await.is_err());
    assert_eq!(j.latest_snapshot(id(1)).unwrap().unwrap().seq, 9);
    drop(j);
    let j = h.open(Options::default());
    assert_eq!(j.latest_snapshot(id(1)).unwrap().unwrap().state, b"nine");
    assert!(j.verify().await.unwrap().is_sound());
}

async fn verify_names_a_tampered_record(h: &dyn Harness) {
    {
        let j = h.open(Options::default());
        append_n(&j, id(1), 4).await;
        append_n(&j, id(2), 6).await;
        let report = j.verify().await.unwrap();
        assert!(report.is_sound(), "{report:?}");
        assert_eq!((report.executions, report.events), (2, 10));
    }
    let key = record_key(h, id(2), 3);
    {
        let raw = h.raw();
        let mut value = raw.get(&key).unwrap().unwrap();
        // Flip one byte of the payload (the hash is the last 32 bytes).
        let at = value.len() - 33;
        value[at] ^= 1;
        raw.apply(vec![Op::Put(key, value)]).unwrap();
        raw.flush().unwrap();
    }
    let j = h.open(Options::default());
    let report = j.verify().await.unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let p = &report.problems[0];
    assert_eq!((p.execution, p.seq), (id(2), 3));
    assert!(matches!(p.kind, ProblemKind::BrokenRecord(_)));
    // Reading through the damage is refused, never silently accepted.
    assert!(matches!(
        j.read(id(2), 1, 100),
        Err(Error::Corrupt { seq: 3, .. })
    ));
    assert_eq!(j.read(id(2), 1, 2).unwrap().len(), 2);
    assert!(j.read(id(1), 1, 100).is_ok());
}

async fn verify_names_a_missing_record(h: &dyn Harness) {
    {
        let j = h.open(Options::default());
        append_n(&j, id(1), 5).await;
    }
    let key = record_key(h, id(1), 2);
    {
        let raw = h.raw();
        raw.apply(vec![Op::Delete(key)]).unwrap();
        raw.flush().unwrap();
    }
    let j = h.open(Options::default());
    let report = j.verify().await.unwrap();
    let located: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.execution, p.seq))
        .collect();
    assert!(located.contains(&(id(1), 2)), "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.seq == 2 && p.kind == ProblemKind::MissingRecord)
    );
    assert!(j.read(id(1), 1, 10).is_err());
}

async fn indexes_are_rebuilt_from_the_records(h: &dyn Harness) {
    let before = {
        let j = h.open(Options::default());
        append_n(&j, id(1), 3).await;
        append_n(&j, id(2), 3).await;
        append_n(&j, id(1), 2).await;
        j.read_global(1, 100).unwrap()
    };
    {
        // Wipe every derived entry: the sparse index and the heads.
        let raw = h.raw();
        let mut ops = Vec::new();
        for prefix in [b'x', b'h'] {
            for (k, _) in raw.scan(&[prefix], &[prefix + 1], usize::MAX).unwrap() {
                ops.push(Op::Delete(k));
            }
        }
        assert_eq!(ops.len(), 2 + 2);
        raw.apply(ops).unwrap();
        raw.flush().unwrap();
    }
    let j = h.open(Options::default());
    assert!(!j.verify().await.unwrap().is_sound());
    j.rebuild_indexes().await.unwrap();
    assert!(j.verify().await.unwrap().is_sound());
    assert_eq!(j.read_global(1, 100).unwrap(), before);
    assert_eq!(j.last_position(), 8);
    assert_eq!(j.head(id(1)).unwrap().unwrap().last_seq, 5);
    j.append(id(2), 4, vec![ev(0)]).await.unwrap();
}

async fn concurrent_appends_to_different_executions_all_land(h: &dyn Harness) {
    let j = h.open(Options::default());
    let tasks: Vec<_> = (0..64u8)
        .map(|n| {
            let j = j.clone();
            tokio::spawn(async move {
                for seq in 1..=20 {
                    j.append(id(n), seq, vec![ev(seq)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(j.last_position(), 64 * 20);
    for n in 0..64u8 {
        assert_eq!(j.read(id(n), 1, 100).unwrap().len(), 20);
    }
    let positions: Vec<u64> = j
        .read_global(1, 10_000)
        .unwrap()
        .iter()
        .map(|r| r.position)
        .collect();
    assert_eq!(positions, (1..=64 * 20).collect::<Vec<_>>());
    assert!(j.stats().groups < 64 * 20, "appends were group-committed");
    assert!(j.verify().await.unwrap().is_sound());
}

async fn racing_appends_to_one_execution_exactly_one_wins_each_seq(h: &dyn Harness) {
    let j = h.open(Options::default());
    let racers = 8u64;
    let tasks: Vec<_> = (0..racers)
        .map(|who| {
            let j = j.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                let mut next = 1;
                while next <= 50 {
                    let event = NewEvent::new("claim", 0, who.to_le_bytes().to_vec());
                    match j.append(id(1), next, vec![event]).await {
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
        let (who, won) = t.await.unwrap();
        for seq in won {
            assert!(winner_of.insert(seq, who).is_none(), "seq {seq} won twice");
        }
    }
    assert_eq!(
        winner_of.keys().copied().collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    let stored = j.read(id(1), 1, 100).unwrap();
    for r in &stored {
        let who = u64::from_le_bytes(r.payload.as_slice().try_into().unwrap());
        assert_eq!(winner_of[&r.seq], who, "the stored event is the winner's");
    }
}

async fn a_subscriber_started_during_racing_appends_sees_every_event_once(h: &dyn Harness) {
    let j = h.open(Options::default());
    append_n(&j, id(0), 10).await;
    let writers: Vec<_> = (1..=8u8)
        .map(|n| {
            let j = j.clone();
            tokio::spawn(async move {
                for seq in 1..=50 {
                    j.append(id(n), seq, vec![ev(seq)]).await.unwrap();
                }
            })
        })
        .collect();
    // Start while the writers are going.
    tokio::task::yield_now().await;
    let mut all = j.subscribe(Tail::All { from_position: 1 });
    let mut one = j.subscribe(Tail::Execution {
        execution: id(5),
        from_seq: 1,
    });
    let total = 10 + 8 * 50;
    let mut positions = Vec::new();
    while positions.len() < total {
        positions.push(all.next().await.unwrap().unwrap().position);
    }
    assert_eq!(positions, (1..=total as u64).collect::<Vec<_>>());
    let mut seqs = Vec::new();
    while seqs.len() < 50 {
        let r = one.next().await.unwrap().unwrap();
        assert_eq!(r.execution, id(5));
        seqs.push(r.seq);
    }
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    for w in writers {
        w.await.unwrap();
    }
    // Nothing more is pending: the next event is a fresh one.
    j.append(id(5), 51, vec![ev(0)]).await.unwrap();
    assert_eq!(one.next().await.unwrap().unwrap().seq, 51);
    assert_eq!(
        all.next().await.unwrap().unwrap().position,
        total as u64 + 1
    );
}

async fn a_subscriber_from_the_middle_starts_there(h: &dyn Harness) {
    let j = h.open(Options::default());
    append_n(&j, id(1), 10).await;
    let mut s = j.subscribe(Tail::Execution {
        execution: id(1),
        from_seq: 7,
    });
    for want in 7..=10 {
        assert_eq!(s.next().await.unwrap().unwrap().seq, want);
    }
    let mut g = j.subscribe(Tail::All { from_position: 10 });
    assert_eq!(g.next().await.unwrap().unwrap().position, 10);
}

async fn a_slow_subscriber_catches_up_without_loss(h: &dyn Harness) {
    let j = h.open(Options {
        live_buffer: 16,
        ..Options::default()
    });
    let mut s = j.subscribe(Tail::All { from_position: 1 });
    // Park the subscriber on the live queue (the store has nothing yet)...
    assert!(s.next().now_or_never().is_none());
    // ...then append far more than the live buffer while it reads nothing.
    for seq in 1..=200 {
        j.append(id(1), seq, vec![ev(seq)]).await.unwrap();
    }
    let got: Vec<EventRecord> = (&mut s).take(200).map(|r| r.unwrap()).collect().await;
    assert_eq!(
        got.iter().map(|r| r.position).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    assert!(
        s.times_lagged() >= 1,
        "the subscriber was told it fell behind"
    );
}

async fn closing_the_journal_ends_subscriptions(h: &dyn Harness) {
    let j = h.open(Options::default());
    append_n(&j, id(1), 2).await;
    let mut s = j.subscribe(Tail::All { from_position: 1 });
    drop(j);
    assert_eq!(s.next().await.unwrap().unwrap().position, 1);
    assert_eq!(s.next().await.unwrap().unwrap().position, 2);
    assert!(s.next().await.is_none());
}

async fn any_window_of_a_long_history_reads_back(h: &dyn Harness) {
    let j = h.open(Options::default());
    // Interleave two executions so back-links skip over the other's events,
    // and cross several index strides.
    for seq in 1..=300 {
        j.append(id(1), seq, vec![ev(seq)]).await.unwrap();
        j.append(id(2), seq, vec![ev(seq + 1000)]).await.unwrap();
    }
    let all = j.read(id(1), 1, usize::MAX).unwrap();
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
        let window = j.read(id(1), from, limit).unwrap();
        let want: Vec<_> = all
            .iter()
            .filter(|r| r.seq >= from)
            .take(limit)
            .cloned()
            .collect();
        assert_eq!(window, want, "window from {from} limit {limit}");
    }
    assert_eq!(j.read(id(2), 200, 1).unwrap()[0].payload, b"payload 1200");
}

async fn heads_written_after_the_last_checkpoint_are_recovered(h: &dyn Harness) {
    {
        let j = h.open(Options::default());
        for seq in 1..=10 {
            j.append(id(1), seq, vec![ev(seq)]).await.unwrap();
        }
    }
    // Roll the stored heads back as a crash between checkpoints leaves them:
    // exact only up to position 4.
    {
        let raw = h.raw();
        let mut head = 4u64.to_le_bytes().to_vec();
        head.extend_from_slice(&4u64.to_le_bytes());
        let value = raw.get(&log_key(4)).unwrap().unwrap();
        head.extend_from_slice(&value[value.len() - 32..]);
        let mut key = vec![b'h'];
        key.extend_from_slice(id(1).as_bytes());
        raw.apply(vec![
            Op::Put(key, head),
            Op::Put(b"mheads".to_vec(), 4u64.to_le_bytes().to_vec()),
        ])
        .unwrap();
        raw.flush().unwrap();
        assert!(
            retrace_journal::verify_store(raw.as_ref())
                .unwrap()
                .is_sound()
        );
    }
    let j = h.open(Options::default());
    assert_eq!(j.head(id(1)).unwrap().unwrap().last_seq, 10);
    assert_eq!(j.read(id(1), 1, 100).unwrap().len(), 10);
    j.append(id(1), 11, vec![ev(11)]).await.unwrap();
    assert!(j.verify().await.unwrap().is_sound());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sled_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::SledHarness(tempfile::tempdir().unwrap())).await;
                }
            )*
        }
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::MemHarness(super::MemoryStore::new())).await;
                }
            )*
        }
        mod overlay_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::OverlayHarness::new()).await;
                }
            )*
        }
    };
}

conformance!(
    appends_read_back_dense_and_in_order,
    a_wrong_expected_seq_is_refused_and_writes_nothing,
    malformed_appends_are_refused_and_write_nothing,
    reopening_keeps_everything,
    executions_are_listed_in_pages,
    the_latest_snapshot_is_returned,
    verify_names_a_tampered_record,
    verify_names_a_missing_record,
    indexes_are_rebuilt_from_the_records,
    concurrent_appends_to_different_executions_all_land,
    racing_appends_to_one_execution_exactly_one_wins_each_seq,
    a_subscriber_started_during_racing_appends_sees_every_event_once,
    a_subscriber_from_the_middle_starts_there,
    a_slow_subscriber_catches_up_without_loss,
    closing_the_journal_ends_subscriptions,
    any_window_of_a_long_history_reads_back,
    heads_written_after_the_last_checkpoint_are_recovered,
);

#[test]
fn a_second_opener_of_a_sled_folder_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EventLog::open(dir.path(), Options::default()).unwrap();
    match EventLog::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert!(path.contains(&*dir.path().to_string_lossy())),
        other => panic!("expected Locked, got {other:?}"),
    }
}

/// A memory store whose flush fails once `failing` is set.
#[derive(Debug)]
struct FlakyStore {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicBool,
}

impl Store for FlakyStore {
    fn get(&self, key: &[u8]) -> retrace_journal::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> retrace_journal::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(from, to, limit)
    }
    fn last(&self, from: &[u8], to: &[u8]) -> retrace_journal::Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.inner.last(from, to)
    }
    fn apply(&self, ops: Vec<Op>) -> retrace_journal::Result<()> {
        self.inner.apply(ops)
    }
    fn flush(&self) -> retrace_journal::Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Storage("injected flush failure".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn after_a_failed_flush_nothing_more_is_acknowledged() {
    let store = Arc::new(FlakyStore {
        inner: MemoryStore::new(),
        failing: false.into(),
    });
    let j = EventLog::with_store(store.clone(), Options::default()).unwrap();
    j.append(id(1), 1, vec![ev(1)]).await.unwrap();
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        j.append(id(1), 2, vec![ev(2)]).await,
        Err(Error::Storage(_))
    ));
    // The unflushed event is not shown to readers.
    assert_eq!(j.read(id(1), 1, 10).unwrap().len(), 1);
    assert_eq!(j.last_position(), 1);
    // Fail-stop: even with the disk back, the journal refuses to guess.
    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        j.append(id(1), 2, vec![ev(2)]).await,
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(
        j.append(id(2), 1, vec![ev(2)]).await,
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(
        j.put_snapshot(id(1), 1, vec![]).await,
        Err(Error::Poisoned(_))
    ));
}
