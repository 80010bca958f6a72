//! Property test of the pure state machine: random small workflows (tasks
//! with retries, compensations, error routes and `onFailure: pause`, waits,
//! events, parallel branches, map steps) driven by random agent behaviour (success,
//! failure retryable or not, timeout, late duplicates) and random operator
//! commands. After every case:
//!
//! - replay equals live: folding the events from scratch gives the live
//!   state at every seq the engine stood at, and folding on from a snapshot
//!   taken at any of them gives the final state;
//! - a refused trigger changes nothing;
//! - nothing is dispatched while paused or after the end;
//! - a task's result is recorded at most once;
//! - compensation undoes exactly the completed steps that declare it, newest
//!   first;
//! - the execution has ended, or is paused or waiting for an operator with
//!   the reason in its state, or waits for something (a task, timer, event);
//! - with a small history limit as well: the history never holds more
//!   events than the limit (the history bound), and a `history_limit` failure is
//!   its last event.
//!
//! `PROPTEST_CASES=<n>` runs it longer; a failure prints the minimal
//! workflow and schedule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use retrace_core::ExecutionId;
use retrace_core::machine::{
    Ctx, Defaults, Effect, ErrorInfo, Event, ExecutionState, Limits, StartParams, Status, Trigger,
    Versions, apply, error_types, handle, pending_effects, start,
};
use retrace_core::model::Workflow;
use serde_json::{Value, json};

struct NoOtherWorkflows;
impl Versions for NoOtherWorkflows {
    fn latest_version(&self, _: &str) -> Option<String> {
        None
    }
    fn has_version(&self, _: &str, _: &str) -> bool {
        false
    }
    fn limited(&self, _: &str) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
enum Shape {
    Task {
        retries: u32,
        compensate: bool,
        pause: bool,
        route: bool,
    },
    Wait,
    Event,
    Parallel {
        compensate: [bool; 2],
    },
    Map {
        items: usize,
        max_concurrency: Option<u32>,
        tolerated: Option<u64>,
        compensate: bool,
    },
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        5 => (0u32..3, any::<bool>(), prop::bool::weighted(0.2), prop::bool::weighted(0.3))
            .prop_map(|(retries, compensate, pause, route)| Shape::Task { retries, compensate, pause, route }),
        1 => Just(Shape::Wait),
        1 => Just(Shape::Event),
        1 => any::<[bool; 2]>().prop_map(|compensate| Shape::Parallel { compensate }),
        2 => (0usize..5, prop::option::of(1u32..3), prop::option::of(0u64..3), any::<bool>())
            .prop_map(|(items, max_concurrency, tolerated, compensate)| Shape::Map {
                items, max_concurrency, tolerated, compensate,
            }),
    ]
}

fn task(id: &str, retries: u32, compensate: bool) -> Value {
    let mut t = json!({"id": id, "type": "task", "capability": "work"});
    if retries > 0 {
        t["retry"] = json!({"maxAttempts": retries + 1, "interval": 100});
    }
    if compensate {
        t["compensate"] = json!({"capability": "undo"});
    }
    t
}

fn workflow(shapes: &[Shape]) -> Value {
    let mut steps = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let id = format!("s{i}");
        let mut step = match s {
            Shape::Task {
                retries,
                compensate,
                pause,
                route,
            } => {
                let mut t = task(&id, *retries, *compensate);
                if *pause {
                    t["onFailure"] = json!("pause");
                }
                if *route {
                    t["onError"] = json!("recover");
                }
                t
            }
            Shape::Wait => json!({"id": id, "type": "wait", "wait": {"seconds": 5}}),
            Shape::Event => json!({"id": id, "type": "event", "event": {"name": "go"}}),
            Shape::Parallel { compensate } => {
                json!({"id": id, "type": "parallel", "parallel": {"branches": [
                {"name": "a", "steps": [task(&format!("{id}a"), 0, compensate[0])]},
                {"name": "b", "steps": [task(&format!("{id}b"), 1, compensate[1])]}]}})
            }
            Shape::Map {
                items,
                max_concurrency,
                tolerated,
                compensate,
            } => {
                let list: Vec<usize> = (0..*items).collect();
                let mut map = json!({
                    "items": format!("${{ {} }}", json!(list)),
                    "steps": [task(&format!("{id}m"), 1, *compensate)],
                });
                if let Some(n) = max_concurrency {
                    map["maxConcurrency"] = json!(n);
                }
                if let Some(n) = tolerated {
                    map["toleratedFailures"] = json!(n);
                }
                json!({"id": id, "type": "map", "map": map})
            }
        };
        if i + 1 < shapes.len() {
            step["next"] = json!(format!("s{}", i + 1));
        }
        steps.push(step);
    }
    steps.push(json!({"id": "recover", "type": "task", "capability": "transform", "input": "$.error.type"}));
    json!({"name": "random", "steps": steps})
}

#[derive(Debug, Clone)]
enum Action {
    Complete(usize),
    Fail {
        which: usize,
        retryable: bool,
    },
    TimeOut(usize),
    /// Report the result of a task that is no longer outstanding.
    Late,
    FireTimer,
    Signal,
    Pause,
    Resume,
    Cancel {
        compensate: bool,
    },
    Terminate,
    Retry,
    Skip,
    Redrive,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (0usize..4).prop_map(Action::Complete),
        4 => (0usize..4, any::<bool>()).prop_map(|(which, retryable)| Action::Fail { which, retryable }),
        1 => (0usize..4).prop_map(Action::TimeOut),
        1 => Just(Action::Late),
        3 => Just(Action::FireTimer),
        2 => Just(Action::Signal),
        1 => Just(Action::Pause),
        2 => Just(Action::Resume),
        1 => any::<bool>().prop_map(|compensate| Action::Cancel { compensate }),
        1 => Just(Action::Terminate),
        2 => Just(Action::Retry),
        1 => Just(Action::Skip),
        1 => Just(Action::Redrive),
    ]
}

struct Recorded {
    state: ExecutionState,
    events: Vec<(u64, Event)>,
    completed_tasks: Vec<String>,
    /// The live state after every trigger (its `seq` says where it stands).
    checkpoints: Vec<ExecutionState>,
}

fn tasks_of(state: &ExecutionState) -> Vec<String> {
    let mut tasks: Vec<String> = pending_effects(state)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Task { task, .. } => Some(task),
            _ => None,
        })
        .collect();
    tasks.sort();
    tasks
}

fn run(shapes: &[Shape], actions: &[Action], limits: Limits) -> Result<Recorded, TestCaseError> {
    let wf = Workflow::from_json(workflow(shapes).to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("generated workflow invalid: {e}")))?;
    let defaults = Defaults::default();
    let catalog = NoOtherWorkflows;
    let mut now = 1_000_000u64;
    let id = ExecutionId::from_bytes([9; 16]);
    let ctx = |now: u64, entropy: u64| Ctx {
        now_ms: now,
        entropy,
        versions: &catalog,
        defaults: &defaults,
        limits: &limits,
        by: None,
        agent: None,
        reason: None,
        placement: None,
    };
    let (mut state, first) = start(
        id,
        &wf,
        &ctx(now, 0),
        StartParams {
            input: json!({}),
            ..Default::default()
        },
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut events: Vec<(u64, Event)> = first.into_iter().map(|e| (now, e)).collect();
    let mut finished_tasks: Vec<String> = Vec::new();
    let mut completed_tasks = Vec::new();
    let mut checkpoints = vec![state.clone()];
    for (n, a) in actions.iter().enumerate() {
        let tasks = tasks_of(&state);
        let pick = |i: usize| tasks.get(i % tasks.len().max(1)).cloned();
        let trigger = match a {
            Action::Complete(i) => pick(*i).map(|task| Trigger::TaskCompleted {
                task,
                output: json!({"n": n}),
            }),
            Action::Fail { which, retryable } => pick(*which).map(|task| {
                let mut error = ErrorInfo::new("broke", "random failure");
                error.retryable = Some(*retryable);
                // Now and then the performer was told when to retry.
                let retry_after_ms = (n % 3 == 0).then_some(n as u64 * 250);
                Trigger::TaskFailed {
                    task,
                    error,
                    retry_after_ms,
                }
            }),
            Action::TimeOut(i) => pick(*i).map(|task| Trigger::TaskTimedOut {
                task,
                kind: "start_to_close".into(),
            }),
            Action::Late => finished_tasks
                .last()
                .cloned()
                .map(|task| Trigger::TaskCompleted {
                    task,
                    output: json!("late"),
                }),
            Action::FireTimer => {
                let due = pending_effects(&state)
                    .into_iter()
                    .filter_map(|e| match e {
                        Effect::Timer { act, due_at_ms } => Some((due_at_ms, act)),
                        _ => None,
                    })
                    .min();
                due.map(|(at, act)| {
                    now = now.max(at);
                    Trigger::TimerFired { act }
                })
            }
            Action::Signal => Some(Trigger::Signal {
                name: "go".into(),
                payload: json!("signal"),
                correlation: None,
            }),
            Action::Pause => Some(Trigger::Pause {
                reason: "test".into(),
            }),
            Action::Resume => Some(Trigger::Resume),
            Action::Cancel { compensate } => Some(Trigger::Cancel {
                reason: "test".into(),
                compensate: *compensate,
            }),
            Action::Terminate => Some(Trigger::Terminate {
                reason: "test".into(),
            }),
            Action::Retry => Some(Trigger::Retry),
            Action::Skip => Some(Trigger::Skip {
                output: json!("skipped"),
            }),
            Action::Redrive => Some(Trigger::Redrive),
        };
        let Some(trigger) = trigger else { continue };
        now += 10;
        let before = state.clone();
        match handle(
            &mut state,
            &wf,
            &ctx(now, (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            trigger.clone(),
        ) {
            Ok(new) => {
                for e in &new {
                    if let Event::TaskCompleted { task, .. } | Event::TaskFailed { task, .. } = e {
                        if matches!(e, Event::TaskCompleted { .. }) {
                            completed_tasks.push(task.clone());
                        }
                        finished_tasks.push(task.clone());
                    }
                }
                events.extend(new.into_iter().map(|e| (now, e)));
                checkpoints.push(state.clone());
            }
            Err(r) => {
                prop_assert_eq!(
                    &state,
                    &before,
                    "refused {:?} ({}) but the state changed",
                    trigger,
                    r
                );
            }
        }
    }
    Ok(Recorded {
        state,
        events,
        completed_tasks,
        checkpoints,
    })
}

fn check(shapes: &[Shape], actions: &[Action], limits: Limits) -> Result<(), TestCaseError> {
    let wf_json = workflow(shapes);
    let wf = Workflow::from_json(wf_json.to_string().as_bytes()).unwrap();
    let r = run(shapes, actions, limits)?;

    // The history bound: the history never holds more than the limit, and a
    // history-limit failure is its last event.
    prop_assert!(
        r.events.len() as u64 <= limits.history_events_max,
        "{} events, limit {}",
        r.events.len(),
        limits.history_events_max
    );
    if let Some(i) = r.events.iter().position(|(_, e)| {
        matches!(e, Event::ExecutionFailed { error } if error.kind == error_types::HISTORY_LIMIT)
    }) {
        prop_assert_eq!(i + 1, r.events.len(), "events after the history-limit failure");
    }

    // Replay equals live, and nothing is dispatched while paused or after the end.
    let mut replayed = ExecutionState::empty(r.state.id);
    for (i, (at, e)) in r.events.iter().enumerate() {
        if let Event::TaskScheduled { .. }
        | Event::TimerStarted { .. }
        | Event::ChildStarted { .. } = e
        {
            prop_assert!(
                matches!(replayed.status, Status::Running | Status::Compensating),
                "{} dispatched while {:?}",
                e.kind(),
                replayed.status
            );
        }
        if let Event::CompensationBegan { pending, .. } = e {
            // Exactly the completed steps that declare compensate, newest
            // first, as the history so far says.
            let expected: Vec<u64> = r.events[..i]
                .iter()
                .rev()
                .filter_map(|(_, e)| match e {
                    Event::StepCompleted { act, step, .. }
                        if wf.step(step).is_some_and(|s| s.compensate.is_some()) =>
                    {
                        Some(*act)
                    }
                    _ => None,
                })
                .collect();
            prop_assert_eq!(pending, &expected);
        }
        // The state keeps the outputs of steps that may be undone, and of
        // no other.
        prop_assert!(
            replayed
                .completed
                .iter()
                .all(|c| wf.step(&c.step).is_some_and(|s| s.compensate.is_some())),
            "the state keeps the output of a step that declares no compensate"
        );
        apply(&mut replayed, i as u64 + 1, *at, e)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    prop_assert_eq!(&replayed, &r.state, "replay differs from live");

    // At every point the live engine stood, the fold of the events so far is
    // its state; and from a snapshot of any of those points (encoded as the
    // runtime stores it), folding the rest gives the final state.
    for live in &r.checkpoints {
        let mut folded = ExecutionState::empty(live.id);
        for (i, (at, e)) in r.events.iter().take(live.seq as usize).enumerate() {
            apply(&mut folded, i as u64 + 1, *at, e)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert_eq!(
            &folded,
            live,
            "replay to seq {} differs from live",
            live.seq
        );
        let bytes = serde_json::to_vec(live).unwrap();
        let mut resumed: ExecutionState = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(&resumed, live, "a snapshot does not round-trip");
        for (i, (at, e)) in r.events.iter().enumerate().skip(live.seq as usize) {
            apply(&mut resumed, i as u64 + 1, *at, e)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert_eq!(
            &resumed,
            &r.state,
            "folding on from the snapshot at seq {} differs",
            live.seq
        );
    }

    // Undone in the order pending named, each once.
    let began: Option<Vec<u64>> = r.events.iter().find_map(|(_, e)| match e {
        Event::CompensationBegan { pending, .. } => Some(pending.clone()),
        _ => None,
    });
    if let Some(pending) = began {
        let undone: Vec<u64> =
            r.events
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::CompensationCompleted { of, .. }
                    | Event::CompensationSkipped { of, .. } => Some(*of),
                    _ => None,
                })
                .collect();
        prop_assert_eq!(&undone[..], &pending[..undone.len()], "undone out of order");
    }

    // A task's result is recorded at most once.
    let mut seen = r.completed_tasks.clone();
    seen.sort();
    let before = seen.len();
    seen.dedup();
    prop_assert_eq!(seen.len(), before, "a task completed twice");

    // Ended, or stopped for a reason in the state, or waiting for something.
    let s = &r.state;
    let explained = s.status.is_terminal()
        || s.status == Status::Paused
        || (s.status == Status::CompensationFailed
            && s.compensation.as_ref().is_some_and(|c| c.failed.is_some()))
        || !pending_effects(s).is_empty();
    prop_assert!(
        explained,
        "stuck: {:?} with nothing to wait for: {:#?}",
        s.status,
        s
    );
    if s.status == Status::Paused && s.failed_steps.is_empty() {
        let paused_by_operator = r
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::ExecutionPaused { .. }));
        prop_assert!(paused_by_operator, "paused without a pause event");
    }
    Ok(())
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
    #![proptest_config(ProptestConfig { cases: cases(400), ..ProptestConfig::default() })]

    #[test]
    fn random_outcomes_and_commands_keep_the_invariants(
        shapes in prop::collection::vec(shape(), 1..6),
        actions in prop::collection::vec(action(), 0..40),
    ) {
        check(&shapes, &actions, Limits::default())?;
    }

    #[test]
    fn a_small_history_limit_keeps_the_invariants_and_is_never_exceeded(
        shapes in prop::collection::vec(shape(), 1..6),
        actions in prop::collection::vec(action(), 0..40),
        history_events_max in 2u64..40,
    ) {
        check(&shapes, &actions, Limits { history_events_max })?;
    }
}
