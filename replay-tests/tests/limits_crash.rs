//! Invariant 33: a workflow's concurrency limit is never exceeded, also
//! across a crash at any journal append.
//!
//! Executions of a workflow limited per key (`concurrency: {key, limit}`)
//! each wait for an event; the world sends it to the running ones in an
//! order drawn from the seed, until all have ended. A fault-injecting
//! journal kills the engine at its k-th append, before the write is
//! durable or after it but before the acknowledgement, for k across the
//! whole run; a new engine recovers from what was stored, the client
//! retries its starts with the same idempotency keys, and the world goes
//! on. Checked on the whole journal in position order: no key ever had
//! more holders than its limit, every execution completed, and each took
//! its slot exactly once.
//!
//! `PROPTEST_CASES=<n>` runs more cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use retrace_engine::ExecutionId;
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{Event, Status, Waiting};
use retrace_engine::runtime::{Engine, EngineConfig, StartRequest};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Journal, Options};
use retrace_replay_tests::faulty::{CrashPoint, FaultyJournal};
use serde_json::json;

const T0: u64 = 1_700_000_000_000;

struct Case {
    /// Each execution's key.
    keys: Vec<u8>,
    limit: u64,
    seed: u64,
}

async fn open(
    store: &MemoryStore,
    clock: &SimClock,
    crash: Option<(u64, CrashPoint)>,
) -> (Engine, Option<Arc<FaultyJournal>>) {
    let log: Arc<dyn Journal> =
        Arc::new(EventLog::in_memory(store.clone(), Options::default()).unwrap());
    let (journal, faulty): (Arc<dyn Journal>, _) = match crash {
        Some((k, point)) => {
            let f = FaultyJournal::new(log, k, point);
            (f.clone(), Some(f))
        }
        None => (log, None),
    };
    let config = EngineConfig::journal(journal, Arc::new(clock.clone()));
    (Engine::open(config).await.unwrap(), faulty)
}

/// Defines the workflow, starts every execution (again: the keys make a
/// retry find the first), and sends `go` to running ones until all ended.
async fn world(engine: &Engine, case: &Case) -> anyhow::Result<Vec<ExecutionId>> {
    let doc = json!({"name": "limited",
        "concurrency": {"key": "$.input.k", "limit": case.limit},
        "steps": [{"id": "gate", "type": "event", "event": {"name": "go"}}]});
    engine.define_json(doc.to_string().as_bytes()).await?;
    let mut ids = Vec::new();
    for (i, k) in case.keys.iter().enumerate() {
        let started = engine
            .start(StartRequest {
                workflow: "limited".into(),
                input: json!({"k": k}),
                idempotency_key: Some(format!("e{i}")),
                ..StartRequest::default()
            })
            .await?;
        ids.push(started.id);
    }
    let mut draw = case.seed;
    loop {
        let mut running = Vec::new();
        let mut ended = 0;
        for id in &ids {
            let state = engine.state(*id).await?;
            if state.status.is_terminal() {
                ended += 1;
            } else if state
                .activations
                .values()
                .any(|a| matches!(a.waiting, Waiting::Event { .. }))
            {
                running.push(*id);
            }
        }
        if ended == ids.len() {
            return Ok(ids);
        }
        if running.is_empty() {
            // The limiter's loop lets the next one go on its own task.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        draw = draw.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let pick = running[(draw >> 33) as usize % running.len()];
        engine.signal(pick, "go", json!({}), None).await?;
    }
}

/// Runs the case, crashing at `crash`; returns how many appends the first
/// engine attempted and the engine that finished.
async fn run(case: &Case, crash: Option<(u64, CrashPoint)>) -> (u64, Engine, Vec<ExecutionId>) {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let (engine, faulty) = open(
        &store,
        &clock,
        Some(crash.unwrap_or((0, CrashPoint::BeforeFlush))),
    )
    .await;
    let faulty = faulty.expect("wrapped");
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            r = world(&engine, case) => r.ok(),
            () = faulty.crashed() => None,
        }
    })
    .await
    .expect("the run never ended");
    let appends = faulty.appends();
    match done {
        Some(ids) if !faulty.has_crashed() => (appends, engine, ids),
        _ => {
            // The process is gone: freeze what reached the store, recover.
            drop(engine);
            let disk = store.duplicate();
            let (engine, _) = open(&disk, &clock, None).await;
            let ids = tokio::time::timeout(Duration::from_secs(60), world(&engine, case))
                .await
                .expect("the recovered run never ended")
                .unwrap();
            (appends, engine, ids)
        }
    }
}

async fn check(engine: &Engine, ids: &[ExecutionId], case: &Case) -> Result<(), TestCaseError> {
    for peak in engine.read().limit_peaks().await.unwrap() {
        prop_assert!(
            peak.peak <= case.limit as usize,
            "key {} had {} holders, over its limit {}",
            peak.key,
            peak.peak,
            case.limit
        );
    }
    for id in ids {
        let state = engine.state(*id).await.unwrap();
        prop_assert_eq!(state.status, Status::Completed);
        let acquired = engine
            .read()
            .events_until(*id, u64::MAX)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event == Event::LimitAcquired)
            .count();
        prop_assert_eq!(
            acquired,
            1,
            "execution {} took its slot {} times",
            id,
            acquired
        );
    }
    Ok(())
}

fn cases() -> impl Strategy<Value = (Vec<u8>, u64, u64, u64, bool)> {
    (
        prop::collection::vec(0u8..3, 2..7),
        1u64..3,
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_concurrency_limit_is_never_exceeded_across_a_crash_at_any_append(
        (keys, limit, seed, at, after_flush) in cases()
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let case = Case { keys, limit, seed };
            let (appends, engine, ids) = run(&case, None).await;
            check(&engine, &ids, &case).await?;
            let k = 1 + at % appends;
            let point = if after_flush { CrashPoint::AfterFlush } else { CrashPoint::BeforeFlush };
            let (_, engine, ids) = run(&case, Some((k, point))).await;
            check(&engine, &ids, &case).await
        })?;
    }
}
