//! Invariant 3: crash at any point, recover, and the outcome is the same as
//! with no crash.
//!
//! Random workflows use every step type (task, decision, parallel, map,
//! wait, event, subworkflow) with retries, error routes and compensations; each
//! task's outcome is fixed by (seed, step, attempt). Tasks are answered by
//! in-process handlers, or by a scripted agent that polls like a remote one
//! and also lets tasks time out, answers late or twice, and pauses,
//! resumes or cancels the execution (with or without compensation); event
//! waits are answered by a broadcast or a signal. A fault-injecting
//! journal kills the engine at its k-th append — before the write is durable,
//! or after it but before the acknowledgement — for k across the whole run.
//! A new engine then recovers from what was stored, the client retries its
//! start with the same idempotency key, and the world goes on. Checked:
//! same final status, output, variables, error and undone steps as the
//! uninterrupted run; every task result recorded at most once; no task
//! whose result was stored before the crash is run again; and no late or
//! second answer is ever accepted.
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
use retrace_engine::read::History;
use retrace_engine::store::{Storage, Store};
use retrace_journal::store::memory::MemoryStore;
use retrace_replay_tests::faulty::CrashPoint;
use retrace_replay_tests::workflows::{Shape, shape, workflows};
use retrace_replay_tests::world::{
    Answers, Calls, Generation, Outcome, T0, Violations, finished_tasks, start_request,
};
use serde_json::Value;

struct Run {
    outcome: Outcome,
    /// The main execution's history.
    history: Vec<Event>,
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

async fn undone_steps(
    engine: &retrace_engine::runtime::Engine,
    id: retrace_engine::ExecutionId,
) -> Vec<String> {
    let mut steps: Vec<String> = engine
        .read()
        .events_until(id, u64::MAX)
        .await
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
async fn run(
    docs: &[Value],
    seed: u64,
    answers: Answers,
    crash: Option<(u64, CrashPoint)>,
) -> anyhow::Result<Run> {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let violations: Violations = Arc::new(Mutex::new(Vec::new()));
    let first = Generation::open_with(
        answers,
        1,
        &store,
        &clock,
        Some(crash.unwrap_or((0, CrashPoint::BeforeFlush))),
        seed,
        &calls,
        &violations,
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
                let store = Store::open(Storage::Journal(Arc::new(j)))?;
                finished_tasks(&History::new(store, None))
                    .await?
                    .into_iter()
                    .collect()
            };
            let second =
                Generation::open_with(answers, 2, &disk, &clock, None, seed, &calls, &violations)
                    .await?;
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
    let violations = violations.lock().unwrap().clone();
    anyhow::ensure!(violations.is_empty(), "{violations:?}");
    let mut o = outcome(&state);
    o.undone = undone_steps(&engine, state.id).await;
    let results = finished_tasks(engine.read()).await?;
    let history = engine
        .read()
        .events_until(state.id, u64::MAX)
        .await?
        .into_iter()
        .map(|h| h.event)
        .collect();
    Ok(Run {
        outcome: o,
        history,
        appends,
        final_state: state,
        results,
    })
}

fn check(
    shapes: &[Shape],
    seed: u64,
    answers: Answers,
    at: f64,
    point: CrashPoint,
) -> Result<(), TestCaseError> {
    let docs = workflows(shapes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A watchdog, not a wait: a run that does not end is a failure.
        let guard = Duration::from_secs(20);
        let reference = tokio::time::timeout(guard, run(&docs, seed, answers, None))
            .await
            .map_err(|_| TestCaseError::fail("the uninterrupted run did not end"))?
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let k = 1 + ((reference.appends as f64) * at) as u64;
        let crashed = tokio::time::timeout(guard, run(&docs, seed, answers, Some((k, point))))
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
        agent in any::<bool>(),
    ) {
        let point = if after_flush { CrashPoint::AfterFlush } else { CrashPoint::BeforeFlush };
        let answers = if agent { Answers::Agent } else { Answers::InProcess };
        check(&shapes, seed, answers, at, point)?;
    }
}

/// The scripted agent's acts do what they say, so the property above
/// really sees timeouts, late and second answers, pauses and cancels: for
/// each act, a seed whose first attempt of `s0` is that act (and whose
/// retry answers), run without a crash.
#[test]
fn each_scripted_act_happens_as_scripted() {
    use retrace_replay_tests::world::{Act, agent_act};
    type Is = fn(&Act) -> bool;
    let kinds: [(&str, Is); 6] = [
        ("time out", |a| matches!(a, Act::TimeOut)),
        ("late", |a| matches!(a, Act::Late(_))),
        ("twice", |a| matches!(a, Act::Twice(_))),
        ("pause", |a| matches!(a, Act::Pause(_))),
        ("cancel, compensate", |a| {
            matches!(a, Act::Cancel { compensate: true })
        }),
        ("cancel", |a| matches!(a, Act::Cancel { compensate: false })),
    ];
    let shapes = [
        Shape::Task {
            retries: 1,
            compensate: true,
            route: false,
        },
        Shape::Task {
            retries: 0,
            compensate: true,
            route: false,
        },
    ];
    let docs = workflows(&shapes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, is) in kinds {
        let seed = (0..100_000u64)
            .find(|&s| {
                is(&agent_act(s, "s0", 1))
                    && matches!(agent_act(s, "s0", 2), Act::Answer(Ok(_)))
                    && matches!(agent_act(s, "s1", 1), Act::Answer(Ok(_)))
            })
            .unwrap();
        let run = rt
            .block_on(async {
                let guard = Duration::from_secs(20);
                tokio::time::timeout(guard, run(&docs, seed, Answers::Agent, None)).await
            })
            .unwrap_or_else(|_| panic!("{name}: the run did not end"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let kinds: Vec<&str> = run.history.iter().map(|e| e.kind()).collect();
        let timed_out = run.history.iter().any(
            |e| matches!(e, Event::TaskFailed { error, attempt: 1, .. } if error.kind == "timeout"),
        );
        let status = run.outcome.status.as_str();
        match name {
            "time out" | "late" => {
                assert!(timed_out, "{name}: {kinds:?}");
                assert_eq!(status, "completed", "{name}");
            }
            "twice" => {
                let completions = kinds.iter().filter(|k| **k == "task_completed").count();
                assert_eq!(completions, 2, "{name}: one per step: {kinds:?}");
                assert_eq!(status, "completed", "{name}");
            }
            "pause" => {
                assert!(kinds.contains(&"execution_paused"), "{name}: {kinds:?}");
                assert!(kinds.contains(&"execution_resumed"), "{name}: {kinds:?}");
                assert_eq!(status, "completed", "{name}");
            }
            _ => {
                assert!(kinds.contains(&"execution_cancelled"), "{name}: {kinds:?}");
                assert!(!kinds.contains(&"task_completed"), "{name}: {kinds:?}");
            }
        }
    }
}
