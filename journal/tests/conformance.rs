//! The sled journal (`EventLog`) against the conformance kit and against
//! the checks only its layout has. Everything runs over three stores: sled
//! (in a temporary folder), in memory, and overlays (`store::overlay`)
//! stacked over an in-memory store that must stay empty.
//!
//! - With the `testkit` feature, `journal_conformance!` runs every case of
//!   `retrace_journal::testkit` (what any `Journal` must do); after each case
//!   the harness reopens the data and checks what the sled journal promises
//!   beyond the trait: `verify` finds nothing, and positions are dense from 1.
//! - The tests here need the sled layout itself: `verify`, `rebuild_indexes`,
//!   `stats`, the live buffer, tampering with raw keys, head checkpoints, the
//!   folder lock, a failing store. The keys used for tampering are written
//!   out from `docs/journal-format.md`, so these tests also pin the
//!   documented layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as _;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::store::overlay::Overlay;
use retrace_journal::store::sled::SledStore;
use retrace_journal::store::{Op, Store};
use retrace_journal::{
    DefectKind, Error, EventLog, EventRecord, Health, Journal, NewEvent, Options, StorageError,
    StreamId, Tail,
};

/// Opens `EventLog`s over one store, again and again (each open after the
/// last handle of the previous one is dropped is a restart).
trait LogHarness: Sync {
    fn open(&self, options: Options) -> EventLog;
    /// Raw access to the store, only while no journal is open on it.
    fn raw(&self) -> Arc<dyn Store>;
}

struct SledHarness(tempfile::TempDir);
impl SledHarness {
    fn new() -> SledHarness {
        SledHarness(tempfile::tempdir().unwrap())
    }
}
impl LogHarness for SledHarness {
    fn open(&self, options: Options) -> EventLog {
        EventLog::open(self.0.path(), options).unwrap()
    }
    fn raw(&self) -> Arc<dyn Store> {
        Arc::new(SledStore::open(self.0.path()).unwrap())
    }
}

struct MemHarness(MemoryStore);
impl MemHarness {
    fn new() -> MemHarness {
        MemHarness(MemoryStore::new())
    }
}
impl LogHarness for MemHarness {
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
impl LogHarness for OverlayHarness {
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

/// A `LogHarness` as the conformance kit's harness.
#[cfg(feature = "testkit")]
struct Kit<H>(H);

#[cfg(feature = "testkit")]
impl<H: LogHarness + Send> retrace_journal::testkit::Harness for Kit<H> {
    fn open(&self) -> retrace_journal::testkit::BoxFuture<'_, Arc<dyn Journal>> {
        let log = self.0.open(Options::default());
        Box::pin(async move { Arc::new(log) as Arc<dyn Journal> })
    }

    /// What the sled journal promises beyond the trait, on whatever a case
    /// left: the layout verifies, and positions are dense from 1.
    fn after_case(&self) -> retrace_journal::testkit::BoxFuture<'_, ()> {
        Box::pin(async move {
            let j = self.0.open(Options::default());
            let report = j.verify().await.unwrap();
            assert!(report.is_sound(), "{report:?}");
            let all = j.read_global(1, usize::MAX).await.unwrap();
            let n = all.len() as u64;
            assert_eq!(
                all.iter().map(|r| r.position).collect::<Vec<_>>(),
                (1..=n).collect::<Vec<_>>(),
                "positions are dense from 1"
            );
            assert_eq!(j.last_position().await.unwrap(), n);
        })
    }
}

fn id(n: u8) -> StreamId {
    StreamId::from_bytes([n; 16])
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
async fn record_key(h: &dyn LogHarness, stream: StreamId, seq: u64) -> Vec<u8> {
    let j = h.open(Options::default());
    let position = j.read(stream, seq, 1).await.unwrap()[0].position;
    log_key(position)
}

async fn append_n(j: &EventLog, stream: StreamId, n: u64) {
    let next = j.head(stream).await.unwrap().map_or(1, |h| h.last_seq + 1);
    j.append(stream, next, (0..n).map(ev).collect())
        .await
        .unwrap();
}

/// The sled journal numbers positions densely from 1, in commit order (the
/// kit only asks that they strictly increase), and goes on from there after
/// a restart.
async fn positions_are_dense_from_one(h: &dyn LogHarness) {
    {
        let j = h.open(Options::default());
        assert_eq!(j.last_position().await.unwrap(), 0);
        let a = j.append(id(1), 1, vec![ev(0), ev(1)]).await.unwrap();
        assert_eq!(
            (a.first_seq, a.last_seq, a.first_position, a.last_position),
            (1, 2, 1, 2)
        );
        let b = j.append(id(2), 1, vec![ev(2)]).await.unwrap();
        assert_eq!((b.first_seq, b.last_position), (1, 3));
        let c = j.append(id(1), 3, vec![ev(3)]).await.unwrap();
        assert_eq!((c.first_seq, c.first_position), (3, 4));
        let one = j.read(id(1), 1, 100).await.unwrap();
        assert_eq!(
            one.iter().map(|r| r.position).collect::<Vec<_>>(),
            [1, 2, 4]
        );
        assert_eq!(j.read_global(3, 1).await.unwrap()[0].stream, id(2));
        assert_eq!(j.last_position().await.unwrap(), 4);
        append_n(&j, id(2), 3).await;
        assert_eq!(j.last_position().await.unwrap(), 7);
    }
    let j = h.open(Options::default());
    assert_eq!(j.last_position().await.unwrap(), 7);
    let a = j.append(id(1), 4, vec![ev(6)]).await.unwrap();
    assert_eq!(a.first_position, 8);
    assert!(j.verify().await.unwrap().is_sound());
}

/// Refused appends are counted.
async fn conflicts_are_counted(h: &dyn LogHarness) {
    let j = h.open(Options::default());
    append_n(&j, id(1), 3).await;
    for wrong in [0, 1, 3, 5, u64::MAX] {
        assert!(matches!(
            j.append(id(1), wrong, vec![ev(9)]).await,
            Err(Error::SeqConflict { .. })
        ));
    }
    assert!(matches!(
        j.append(id(2), 2, vec![ev(0)]).await,
        Err(Error::SeqConflict { actual: 1, .. })
    ));
    assert_eq!(j.last_position().await.unwrap(), 3);
    assert_eq!(j.stats().conflicts, 6);
}

/// Concurrent appends are gathered into fewer groups than appends.
async fn concurrent_appends_are_group_committed(h: &dyn LogHarness) {
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
    assert_eq!(j.last_position().await.unwrap(), 64 * 20);
    let positions: Vec<u64> = j
        .read_global(1, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.position)
        .collect();
    assert_eq!(positions, (1..=64 * 20).collect::<Vec<_>>());
    let stats = j.stats();
    assert!(stats.groups < 64 * 20, "appends were group-committed");
    assert_eq!((stats.appends, stats.events), (64 * 20, 64 * 20));
    assert!(j.verify().await.unwrap().is_sound());
}

async fn verify_names_a_tampered_record(h: &dyn LogHarness) {
    {
        let j = h.open(Options::default());
        append_n(&j, id(1), 4).await;
        append_n(&j, id(2), 6).await;
        let report = j.verify().await.unwrap();
        assert!(report.is_sound(), "{report:?}");
        assert_eq!((report.streams, report.events), (2, 10));
    }
    let key = record_key(h, id(2), 3).await;
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
    assert_eq!(report.defects.len(), 1, "{report:?}");
    let p = &report.defects[0];
    assert_eq!((p.stream, p.seq), (id(2), 3));
    assert!(matches!(p.kind, DefectKind::BrokenRecord(_)));
    // Reading through the damage is refused, never silently accepted.
    assert!(matches!(
        j.read(id(2), 1, 100).await,
        Err(Error::Corrupt { seq: 3, .. })
    ));
    assert_eq!(j.read(id(2), 1, 2).await.unwrap().len(), 2);
    assert!(j.read(id(1), 1, 100).await.is_ok());
}

async fn verify_names_a_missing_record(h: &dyn LogHarness) {
    {
        let j = h.open(Options::default());
        append_n(&j, id(1), 5).await;
    }
    let key = record_key(h, id(1), 2).await;
    {
        let raw = h.raw();
        raw.apply(vec![Op::Delete(key)]).unwrap();
        raw.flush().unwrap();
    }
    let j = h.open(Options::default());
    let report = j.verify().await.unwrap();
    let located: Vec<_> = report.defects.iter().map(|p| (p.stream, p.seq)).collect();
    assert!(located.contains(&(id(1), 2)), "{report:?}");
    assert!(
        report
            .defects
            .iter()
            .any(|p| p.seq == 2 && p.kind == DefectKind::MissingRecord)
    );
    assert!(j.read(id(1), 1, 10).await.is_err());
}

async fn indexes_are_rebuilt_from_the_records(h: &dyn LogHarness) {
    let before = {
        let j = h.open(Options::default());
        append_n(&j, id(1), 3).await;
        append_n(&j, id(2), 3).await;
        append_n(&j, id(1), 2).await;
        j.read_global(1, 100).await.unwrap()
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
    assert_eq!(j.read_global(1, 100).await.unwrap(), before);
    assert_eq!(j.last_position().await.unwrap(), 8);
    assert_eq!(j.head(id(1)).await.unwrap().unwrap().last_seq, 5);
    j.append(id(2), 4, vec![ev(0)]).await.unwrap();
}

async fn heads_written_after_the_last_checkpoint_are_recovered(h: &dyn LogHarness) {
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
    assert_eq!(j.head(id(1)).await.unwrap().unwrap().last_seq, 10);
    assert_eq!(j.read(id(1), 1, 100).await.unwrap().len(), 10);
    j.append(id(1), 11, vec![ev(11)]).await.unwrap();
    assert!(j.verify().await.unwrap().is_sound());
}

async fn a_slow_subscriber_catches_up_without_loss(h: &dyn LogHarness) {
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

macro_rules! per_store {
    ($($name:ident),* $(,)?) => {
        mod sled_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::SledHarness::new()).await;
                }
            )*
            #[cfg(feature = "testkit")]
            retrace_journal::journal_conformance!(super::Kit(super::SledHarness::new()));
        }
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::MemHarness::new()).await;
                }
            )*
            #[cfg(feature = "testkit")]
            retrace_journal::journal_conformance!(super::Kit(super::MemHarness::new()));
        }
        mod overlay_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::OverlayHarness::new()).await;
                }
            )*
            #[cfg(feature = "testkit")]
            retrace_journal::journal_conformance!(super::Kit(super::OverlayHarness::new()));
        }
    };
}

per_store!(
    positions_are_dense_from_one,
    conflicts_are_counted,
    concurrent_appends_are_group_committed,
    verify_names_a_tampered_record,
    verify_names_a_missing_record,
    indexes_are_rebuilt_from_the_records,
    a_slow_subscriber_catches_up_without_loss,
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

/// A memory store whose flush fails once `failing` is set, on a disk with
/// `free` bytes free.
#[derive(Debug)]
struct FlakyStore {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicBool,
    free: std::sync::atomic::AtomicU64,
}

impl FlakyStore {
    fn new() -> FlakyStore {
        FlakyStore {
            inner: MemoryStore::new(),
            failing: false.into(),
            free: u64::MAX.into(),
        }
    }
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
    fn free_bytes(&self) -> retrace_journal::Result<Option<u64>> {
        Ok(Some(self.free.load(std::sync::atomic::Ordering::SeqCst)))
    }
}

/// Waits (by looking, not by guessing a time) until the writer's retry
/// has found the store writable again.
async fn until_writable(j: &EventLog) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while j.health() != Health::Writable {
        assert!(std::time::Instant::now() < deadline, "{:?}", j.health());
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Invariant: an acknowledgement means durable, across a storage outage. A
/// failed flush puts the journal in an outage (every write refused, the
/// reason reported by `health`); once the store takes writes again the
/// journal resumes on its own, holding exactly what was acknowledged: the
/// record whose flush failed was never acknowledged and is rolled back.
#[tokio::test]
async fn after_a_failed_flush_writes_are_refused_until_the_store_recovers() {
    let store = Arc::new(FlakyStore::new());
    let options = Options {
        retry_after_failure: std::time::Duration::from_millis(1),
        ..Options::default()
    };
    let j = EventLog::with_store(store.clone(), options).unwrap();
    j.append(id(1), 1, vec![ev(1)]).await.unwrap();
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    match j.append(id(1), 2, vec![ev(2)]).await {
        Err(e @ Error::Storage(StorageError::Write(_))) => {
            // The store's own error is kept as the source.
            let cause = e.source().and_then(|s| s.source()).unwrap();
            assert!(cause.to_string().contains("injected flush failure"), "{e}");
            assert!(e.to_string().starts_with("[JOURNAL-STORAGE] "), "{e}");
        }
        other => panic!("expected the group's storage error, got {other:?}"),
    }
    // The unflushed event reached the store but is not shown to readers.
    assert!(!store.inner.raw_entries().is_empty());
    assert_eq!(j.read(id(1), 1, 10).await.unwrap().len(), 1);
    assert_eq!(j.last_position().await.unwrap(), 1);
    match j.health() {
        Health::Unavailable { reason, .. } => {
            assert!(reason.contains("injected flush failure"), "{reason}")
        }
        Health::Writable => panic!("the journal says it takes writes"),
    }
    // While the store fails, every write is refused with the cause.
    match j.append(id(1), 2, vec![ev(2)]).await {
        Err(e @ Error::Unavailable(_)) => {
            assert!(e.to_string().starts_with("[JOURNAL-UNAVAILABLE] "), "{e}");
            assert!(e.to_string().contains("injected flush failure"), "{e}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        j.append(id(2), 1, vec![ev(2)]).await,
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(
        j.put_snapshot(id(1), 1, vec![]).await,
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(j.flush().await, Err(Error::Unavailable(_))));
    // The disk is back: the journal resumes on its own.
    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    until_writable(&j).await;
    // What the store itself holds now, read through a read-only overlay: the
    // record whose flush failed is gone.
    let stored =
        EventLog::with_store(Arc::new(Overlay::new(store.clone())), Options::default()).unwrap();
    assert_eq!(stored.last_position().await.unwrap(), 1);
    assert_eq!(stored.head(id(1)).await.unwrap().unwrap().last_seq, 1);
    drop(stored);
    let appended = j.append(id(1), 2, vec![ev(3)]).await.unwrap();
    assert_eq!(appended.first_position, 2);
    let events = j.read(id(1), 1, 10).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        vec![ev(1).payload, ev(3).payload],
        "the unacknowledged event is gone, the new one in its place"
    );
    assert_eq!(j.read_global(1, 10).await.unwrap().len(), 2);
    let report = j.verify().await.unwrap();
    assert!(report.defects.is_empty(), "{:?}", report.defects);
    assert_eq!(report.events, 2);
}

/// Invariant: the disk never fills under the store. While its disk has less
/// free space than the reserve, a write is refused before anything reaches
/// the store (the journal unavailable, saying why); writes resume on their
/// own once the reserve and half as much again is free.
#[tokio::test]
async fn writes_are_refused_while_the_disk_is_below_its_reserve() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(FlakyStore::new());
    let options = Options {
        retry_after_failure: std::time::Duration::from_millis(1),
        min_free_bytes: 1000,
        ..Options::default()
    };
    let j = EventLog::with_store(store.clone(), options).unwrap();
    j.append(id(1), 1, vec![ev(1)]).await.unwrap();
    let before = store.inner.raw_entries();
    store.free.store(999, SeqCst);
    match j.append(id(1), 2, vec![ev(2)]).await {
        Err(Error::Storage(StorageError::Write(cause))) => assert!(
            matches!(
                *cause,
                Error::Storage(StorageError::LowSpace {
                    free: 999,
                    reserve: 1000
                })
            ),
            "{cause}"
        ),
        other => panic!("expected the reserve's refusal, got {other:?}"),
    }
    assert_eq!(
        store.inner.raw_entries(),
        before,
        "nothing reached the store"
    );
    match j.health() {
        Health::Unavailable { reason, .. } => assert!(reason.contains("in reserve"), "{reason}"),
        Health::Writable => panic!("the journal says it takes writes"),
    }
    // At the reserve, but not half as much again: still refused.
    store.free.store(1400, SeqCst);
    assert!(matches!(
        j.append(id(1), 2, vec![ev(2)]).await,
        Err(Error::Unavailable(_))
    ));
    store.free.store(1500, SeqCst);
    until_writable(&j).await;
    j.append(id(1), 2, vec![ev(2)]).await.unwrap();
    assert_eq!(j.read(id(1), 1, 10).await.unwrap().len(), 2);
}
