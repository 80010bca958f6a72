//! Invariant 2, through the command line: `retrace replay --json` on a data
//! folder prints, after every event, the state the engine's own fold gives
//! at that seq, and its last line is the live engine's final state. With
//! `--until k` it stops at seq k with the state at k.
//!
//! The journals are the ones the recovery test's generators produce: random
//! workflows with every step type, run to the end by the deterministic
//! world with its scripted agent (timeouts, late and second answers,
//! pauses, cancels, signals). The run's store is copied key by key into a
//! sled data folder, as a stopped server leaves it, and the subcommand's
//! own code (`retrace_api::cli::replay`) reads it back. The machine's
//! property test proves the fold equals the live state at every seq; this
//! test proves the command line shows exactly that fold.
//!
//! `PROPTEST_CASES=<n>` runs more cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use retrace_api::cli::{ReplayArgs, replay};
use retrace_engine::ExecutionId;
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{ExecutionState, apply};
use retrace_engine::read::History;
use retrace_engine::store::{Storage, Store, codec};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::store::sled::SledStore;
use retrace_journal::store::{Op, Store as _};
use retrace_journal::{EventLog, Journal, StreamId};
use retrace_replay_tests::workflows::{Shape, shape, workflows};
use retrace_replay_tests::world::{Answers, Calls, Generation, T0, Violations, start_request};
use serde_json::Value;

/// Runs `main` to its end in the world; the store and every execution's
/// live final state (children included).
async fn live_run(docs: &[Value], seed: u64) -> anyhow::Result<(MemoryStore, Vec<ExecutionState>)> {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let violations: Violations = Arc::new(Mutex::new(Vec::new()));
    let world = Generation::open_with(
        Answers::Agent,
        1,
        &store,
        &clock,
        None,
        seed,
        &calls,
        &violations,
    )
    .await?;
    let engine = world.engine.clone();
    for d in docs {
        engine.define_json(d.to_string().as_bytes()).await?;
    }
    let id = engine.start(start_request("main")).await?.id;
    engine.wait_until_ended(id).await?;
    let mut states = Vec::new();
    for summary in engine.executions(None, None, None, usize::MAX) {
        states.push(engine.state(summary.id).await?);
    }
    Ok((store, states))
}

/// Copies every key of `from` into a sled data folder at `to`.
fn copy_to_folder(from: &MemoryStore, to: &Path) -> anyhow::Result<()> {
    let sled = SledStore::open(to)?;
    let mut start = Vec::new();
    loop {
        // Every key starts with a one-letter prefix (docs/journal-format.md).
        let batch = from.scan(&start, &[0xff], 1024)?;
        let Some((last, _)) = batch.last() else { break };
        start = last.clone();
        start.push(0);
        sled.apply(batch.into_iter().map(|(k, v)| Op::Put(k, v)).collect())?;
    }
    sled.flush()?;
    Ok(())
}

/// The state after each event of `id`, folded from the journal.
async fn folded(journal: &dyn Journal, id: ExecutionId) -> anyhow::Result<Vec<(u64, Value)>> {
    let mut state = ExecutionState::empty(id);
    let mut out = Vec::new();
    let stream = StreamId::from_bytes(*id.as_bytes());
    for r in journal.read(stream, 1, usize::MAX).await? {
        apply(&mut state, r.seq, r.recorded_at_ms, &codec::decode(&r)?)?;
        out.push((r.seq, serde_json::to_value(&state)?));
    }
    Ok(out)
}

/// `retrace replay <folder> <id> --json [--until k]`: (seq, state) per line.
async fn replayed(
    folder: &Path,
    id: ExecutionId,
    until: Option<u64>,
) -> anyhow::Result<Vec<(u64, Value)>> {
    let args = ReplayArgs {
        source: Some(folder.display().to_string()),
        execution: Some(id.to_string()),
        server: None,
        token: Default::default(),
        until,
        json: true,
    };
    let mut out = Vec::new();
    replay(args, &mut out).await?;
    String::from_utf8(out)?
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line)?;
            let seq = v["seq"]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("no seq: {line}"))?;
            Ok((seq, v["state"].take()))
        })
        .collect()
}

fn check(shapes: &[Shape], seed: u64, cut: f64) -> Result<(), TestCaseError> {
    let docs = workflows(shapes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A watchdog, not a wait: a run that does not end is a failure.
        let (store, live) = tokio::time::timeout(Duration::from_secs(20), live_run(&docs, seed))
            .await
            .map_err(|_| TestCaseError::fail("the run did not end"))?
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let journal = EventLog::in_memory(store.duplicate(), Default::default()).unwrap();
        let history = History::new(
            Store::open(Storage::Journal(Arc::new(journal.clone()))).unwrap(),
            None,
        );
        let data = tempfile::tempdir().unwrap();
        copy_to_folder(&store, data.path()).unwrap();
        prop_assert!(!live.is_empty());
        for state in &live {
            let id = state.id;
            let folded = folded(&journal, id).await.unwrap();
            let printed = replayed(data.path(), id, None).await.unwrap();
            prop_assert_eq!(printed.len(), folded.len(), "one line per event of {}", id);
            for ((seq, shown), (fseq, fold)) in printed.iter().zip(&folded) {
                prop_assert_eq!(seq, fseq);
                prop_assert_eq!(shown, fold, "the state after seq {} of {}", seq, id);
            }
            let last = &printed.last().unwrap().1;
            prop_assert_eq!(
                last,
                &serde_json::to_value(state).unwrap(),
                "live state of {}",
                id
            );
            // Recovery's own path (snapshot, then the tail) agrees too.
            let recovered = history.state(id).await.unwrap().unwrap();
            prop_assert_eq!(&recovered, state);
            // --until k stops at k, with the state at k.
            let k = 1 + ((folded.len() - 1) as f64 * cut) as u64;
            let upto = replayed(data.path(), id, Some(k)).await.unwrap();
            prop_assert_eq!(upto.last().map(|(s, _)| *s), Some(k));
            prop_assert_eq!(&upto[..], &folded[..k as usize]);
        }
        Ok(())
    })
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(12), ..ProptestConfig::default() })]

    #[test]
    fn replay_prints_the_fold_at_every_seq_and_ends_at_the_live_state(
        shapes in prop::collection::vec(shape(), 1..6),
        seed in any::<u64>(),
        cut in 0.0f64..1.0,
    ) {
        check(&shapes, seed, cut)?;
    }
}
