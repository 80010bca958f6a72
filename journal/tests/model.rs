//! Model-based property test: random appends (right and wrong expected seq)
//! over random streams, with reopens in between, against a trivial
//! reference model. Reading back always equals the model; refused appends
//! change nothing. `PROPTEST_CASES=<n>` runs it longer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{Error, EventLog, Journal, NewEvent, Options, StreamId};

#[derive(Debug, Clone)]
enum Op {
    /// Append `events` to stream `exec`; `seq_skew` 0 is the right seq.
    Append {
        exec: u8,
        events: Vec<(String, Vec<u8>)>,
        seq_skew: i8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            0u8..4,
            prop::collection::vec(("[a-z_]{1,12}", prop::collection::vec(any::<u8>(), 0..64)), 1..6),
            prop_oneof![4 => Just(0i8), 1 => -2i8..=2],
        )
            .prop_map(|(exec, events, seq_skew)| Op::Append { exec, events, seq_skew }),
        1 => Just(Op::Reopen),
    ]
}

type Model = BTreeMap<StreamId, Vec<(String, Vec<u8>, u64)>>;

fn run(ops: Vec<Op>, open: impl Fn() -> EventLog) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut j = open();
        let mut model: Model = BTreeMap::new();
        let mut global: Vec<(StreamId, u64)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Reopen => {
                    drop(j);
                    j = open();
                }
                Op::Append {
                    exec,
                    events,
                    seq_skew,
                } => {
                    let id = StreamId::from_bytes([exec; 16]);
                    let stored = model.entry(id).or_default();
                    let next = stored.len() as u64 + 1;
                    let expected = next as i64 + i64::from(seq_skew);
                    let new: Vec<NewEvent> = events
                        .iter()
                        .map(|(k, p)| NewEvent::new(k.clone(), step as u64, p.clone()))
                        .collect();
                    let result = j.append(id, expected.max(0) as u64, new).await;
                    if expected.max(0) as u64 == next {
                        let a = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(a.first_seq, next);
                        prop_assert_eq!(a.first_position, global.len() as u64 + 1);
                        for (k, p) in events {
                            stored.push((k, p, step as u64));
                            global.push((id, stored.len() as u64));
                        }
                    } else {
                        let refused = matches!(result, Err(Error::SeqConflict { .. }));
                        prop_assert!(refused, "wrong seq accepted: {:?}", result);
                    }
                }
            }
        }
        // Reopen once more and compare everything with the model.
        drop(j);
        let j = open();
        for (id, events) in &model {
            let read = j
                .read(*id, 1, usize::MAX)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got: Vec<_> = read
                .iter()
                .map(|r| (r.kind.clone(), r.payload.clone(), r.recorded_at_ms))
                .collect();
            prop_assert_eq!(&got, events);
        }
        let all = j
            .read_global(1, usize::MAX)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let order: Vec<_> = all.iter().map(|r| (r.stream, r.seq)).collect();
        prop_assert_eq!(order, global);
        let report = j
            .verify()
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(report.is_sound(), "{:?}", report);
        Ok(())
    })
}

/// `PROPTEST_CASES` overrides the default number of cases (an explicit
/// `cases` in the config would otherwise ignore it).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    #[test]
    fn sled_reads_back_what_the_model_holds(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        // Not durable: this test is about contents, the crash test about the disk.
        let options = Options { durable: false, ..Options::default() };
        run(ops, || EventLog::open(dir.path(), options.clone()).unwrap())?;
    }

    #[test]
    fn memory_reads_back_what_the_model_holds(ops in prop::collection::vec(op(), 1..60)) {
        let store = MemoryStore::new();
        run(ops, || EventLog::in_memory(store.clone(), Options::default()).unwrap())?;
    }
}
