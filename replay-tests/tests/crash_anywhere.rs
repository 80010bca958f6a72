//! Invariant 3: crash at any point, recover, and the outcome is the same as
//! with no crash.
//!
//! Random workflows use every step type (task, decision, parallel, wait,
//! event, subworkflow) with retries, error routes and compensations; each
//! task's outcome is fixed by (seed, step, attempt). A fault-injecting
//! journal kills the engine at its k-th append — before the write is durable,
//! or after it but before the acknowledgement — for k across the whole run.
//! A new engine then recovers from what was stored, the client retries its
//! start with the same idempotency key, and the world goes on. Checked:
//! same final status, output, variables, error and undone steps as the
//! uninterrupted run; every task result recorded at most once; and no task
//! whose result was stored before the crash is run again.
//!
//! `PROPTEST_CASES=<n>` runs more cases; a failure prints the minimal
//! workflow, seed and crash point.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{Event, ExecutionState};
use retrace_journal::store::memory::MemoryStore;
use retrace_replay_tests::faulty::CrashPoint;
use retrace_replay_tests::world::{Calls, Generation, Outcome, T0, finished_tasks, start_request};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Shape {
    Task {
        retries: u32,
        compensate: bool,
        route: bool,
    },
    Wait,
    Event,
    Parallel,
    Decision,
    Child,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        4 => (0u32..3, any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(retries, compensate, route)| Shape::Task { retries, compensate, route }),
        1 => Just(Shape::Wait),
        1 => Just(Shape::Event),
        1 => Just(Shape::Parallel),
        1 => Just(Shape::Decision),
        1 => Just(Shape::Child),
    ]
}

fn task(id: &str, retries: u32, compensate: bool) -> Value {
    let mut t = json!({"id": id, "type": "task", "capability": "work", "output": {id: "$.output"}});
    if retries > 0 {
        t["retry"] = json!({"maxAttempts": retries + 1, "interval": 250, "backoffRate": 2});
    }
    if compensate {
        t["compensate"] = json!({"capability": "undo", "retry": {"maxAttempts": 5}});
    }
    t
}

fn workflows(shapes: &[Shape]) -> Vec<Value> {
    let child = json!({"name": "helper", "steps": [task("h1", 2, false)]});
    let mut steps = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let id = format!("s{i}");
        let mut step = match s {
            Shape::Task {
                retries,
                compensate,
                route,
            } => {
                let mut t = task(&id, *retries, *compensate);
                if *route {
                    t["onError"] = json!("recover");
                }
                t
            }
            Shape::Wait => json!({"id": id, "type": "wait", "wait": {"seconds": 30}}),
            Shape::Event => json!({"id": id, "type": "event", "event": {"name": "go"}}),
            Shape::Parallel => json!({"id": id, "type": "parallel", "parallel": {"branches": [
                {"name": "a", "steps": [task(&format!("{id}a"), 1, true)]},
                {"name": "b", "steps": [task(&format!("{id}b"), 2, false)]}]}}),
            Shape::Decision => json!({"id": id, "type": "decision", "decision": {
                "expression": "input.flag", "branches": {"true": format!("{id}t")},
                "default": "recover"}}),
            Shape::Child => {
                json!({"id": id, "type": "subworkflow", "subworkflow": {"workflow": "helper"}})
            }
        };
        let next = (i + 1 < shapes.len()).then(|| format!("s{}", i + 1));
        if let Shape::Decision = s {
            // The decision's branch step carries on.
            let mut t = task(&format!("{id}t"), 1, false);
            if let Some(n) = &next {
                t["next"] = json!(n);
            }
            steps.push(step);
            steps.push(t);
            continue;
        }
        if let Some(n) = next {
            step["next"] = json!(n);
        }
        steps.push(step);
    }
    steps.push(
        json!({"id": "recover", "type": "task", "capability": "transform", "input": "recovered"}),
    );
    vec![child, json!({"name": "main", "steps": steps})]
}

struct Run {
    outcome: Outcome,
    appends: u64,
    final_state: ExecutionState,
    results: Vec<String>,
}

async fn define(engine: &retrace_engine::runtime::Engine, docs: &[Value]) -> anyhow::Result<()> {
    for d in docs {
        engine.define_json(d.to_string().as_bytes()).await?;
    }
    Ok(())
}

fn outcome(state: &ExecutionState) -> Outcome {
    Outcome {
        status: state.status.as_str().to_string(),
        output: state.output.clone(),
        variables: state.variables.clone(),
        error_type: state.error.as_ref().map(|e| e.kind.clone()),
        undone: Vec::new(),
    }
}

fn undone_steps(
    engine: &retrace_engine::runtime::Engine,
    id: retrace_journal::ExecutionId,
) -> Vec<String> {
    let mut steps: Vec<String> = engine
        .history(id, 1, usize::MAX)
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            Event::CompensationStarted { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    steps.sort();
    steps
}

/// One run of the world, crashing at `crash` if given.
async fn run(docs: &[Value], seed: u64, crash: Option<(u64, CrashPoint)>) -> anyhow::Result<Run> {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let first = Generation::open(
        1,
        &store,
        &clock,
        Some(crash.unwrap_or((0, CrashPoint::BeforeFlush))),
        seed,
        &calls,
    )
    .await?;
    let faulty = first.faulty.clone().expect("wrapped");
    let engine = first.engine.clone();
    let attempt = async {
        define(&engine, docs).await?;
        let id = engine.start(start_request("main")).await?.id;
        anyhow::Ok(engine.wait_until_ended(id).await?)
    };
    let ended = tokio::select! {
        r = attempt => r.ok(),
        _ = faulty.crashed() => None,
    };
    let appends = faulty.appends();
    let (state, engine, _keep) = match ended {
        Some(state) if !faulty.has_crashed() => (state, engine, first),
        _ => {
            // The process is gone: freeze what reached the store, recover.
            drop(engine);
            drop(first);
            let disk = store.duplicate();
            let stored_results: BTreeSet<String> = {
                let j = retrace_journal::EventLog::in_memory(disk.duplicate(), Default::default())?;
                finished_tasks(&j)?.into_iter().collect()
            };
            let second = Generation::open(2, &disk, &clock, None, seed, &calls).await?;
            define(&second.engine, docs).await?;
            let id = second.engine.start(start_request("main")).await?.id;
            let state = second.engine.wait_until_ended(id).await?;
            // No task whose result was stored before the crash runs again.
            let again: Vec<String> = calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(generation, task)| *generation == 2 && stored_results.contains(task))
                .map(|(_, t)| t.clone())
                .collect();
            anyhow::ensure!(
                again.is_empty(),
                "tasks with stored results ran again: {again:?}"
            );
            let engine = second.engine.clone();
            (state, engine, second)
        }
    };
    let mut o = outcome(&state);
    o.undone = undone_steps(&engine, state.id);
    let results = finished_tasks(engine.journal().as_ref())?;
    Ok(Run {
        outcome: o,
        appends,
        final_state: state,
        results,
    })
}

fn check(shapes: &[Shape], seed: u64, at: f64, point: CrashPoint) -> Result<(), TestCaseError> {
    let docs = workflows(shapes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A watchdog, not a wait: a run that does not end is a failure.
        let guard = Duration::from_secs(20);
        let reference = tokio::time::timeout(guard, run(&docs, seed, None))
            .await
            .map_err(|_| TestCaseError::fail("the uninterrupted run did not end"))?
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let k = 1 + ((reference.appends as f64) * at) as u64;
        let crashed = tokio::time::timeout(guard, run(&docs, seed, Some((k, point))))
            .await
            .map_err(|_| {
                TestCaseError::fail(format!("no end after a crash at append {k} ({point:?})"))
            })?
            .map_err(|e| TestCaseError::fail(format!("crash at append {k} ({point:?}): {e}")))?;
        prop_assert_eq!(
            &crashed.outcome,
            &reference.outcome,
            "crash at append {} ({:?}) of {} changed the outcome",
            k,
            point,
            reference.appends
        );
        let mut results = crashed.results.clone();
        results.sort();
        let n = results.len();
        results.dedup();
        prop_assert_eq!(results.len(), n, "a task result was recorded twice");
        prop_assert!(crashed.final_state.status.is_terminal());
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
    #![proptest_config(ProptestConfig { cases: cases(24), ..ProptestConfig::default() })]

    #[test]
    fn a_crash_anywhere_recovers_to_the_same_outcome(
        shapes in prop::collection::vec(shape(), 1..6),
        seed in any::<u64>(),
        at in 0.0f64..1.0,
        after_flush in any::<bool>(),
    ) {
        let point = if after_flush { CrashPoint::AfterFlush } else { CrashPoint::BeforeFlush };
        check(&shapes, seed, at, point)?;
    }
}
