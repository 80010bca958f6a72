//! Schedules on a simulated clock: fire times, overlap policies, pause,
//! changes, refusals, and the invariant that crashes never fire a fire
//! time twice nor miss one inside the catch-up window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use retrace_engine::clock::Clock;
use retrace_engine::machine::Status;
use retrace_engine::schedules::{Outcome, Schedule, ScheduleSpec};
use serde_json::{Value, json};
use support::{T0, World};

fn spec(v: Value) -> ScheduleSpec {
    serde_json::from_value(v).unwrap()
}

/// Waits (in real time, bounded) until the schedule satisfies `done`: the
/// loop runs on its own task once the simulated clock moves.
async fn until(w: &World, id: &str, done: impl Fn(&Schedule) -> bool) -> Schedule {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(s) = w.engine.schedule(id)
            && done(&s)
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "schedule {id} never got there: {:?}",
            w.engine.schedule(id)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The fire time each execution of `workflow` was started for, from its
/// idempotency key `schedule:<id>:<generation>:<fire ms>`.
async fn fired(w: &World, workflow: &str) -> Vec<u64> {
    let mut times = Vec::new();
    for s in w.engine.executions(Some(workflow), None, None, 100_000) {
        let key = w.engine.state(s.id).await.unwrap().idempotency_key.unwrap();
        times.push(key.rsplit(':').next().unwrap().parse().unwrap());
    }
    times.sort_unstable();
    times
}

async fn noop_workflow(w: &World) {
    w.define(json!({"name": "tick", "steps": [{"id": "a", "type": "task", "capability": "noop"}]}))
        .await;
}

/// Runs until a `go` signal comes.
async fn gated_workflow(w: &World) {
    w.define(json!({"name": "gated",
        "steps": [{"id": "gate", "type": "event", "event": {"name": "go"}}]}))
        .await;
}

#[tokio::test]
async fn an_every_schedule_fires_at_anchor_plus_multiples_and_records_each() {
    let w = World::new().await;
    noop_workflow(&w).await;
    let s = w
        .engine
        .create_schedule(
            spec(json!({"id": "s", "workflow": "tick", "everyMs": 1000, "input": {"n": 1}})),
            Some("ops"),
            None,
        )
        .await
        .unwrap();
    assert_eq!((s.anchor_ms, s.cursor_ms, s.fired), (T0, T0, 0));
    assert_eq!(
        w.engine.upcoming_fires(&s, 3),
        vec![T0 + 1000, T0 + 2000, T0 + 3000]
    );
    w.clock.advance(999);
    w.clock.advance(1);
    until(&w, "s", |s| s.fired == 1).await;
    w.clock.advance(2_500);
    let s = until(&w, "s", |s| s.fired == 3).await;
    assert_eq!(s.cursor_ms, T0 + 3000);
    assert_eq!(
        fired(&w, "tick").await,
        vec![T0 + 1000, T0 + 2000, T0 + 3000]
    );
    let last = s.last_execution.unwrap();
    let state = w.ended(last).await;
    assert_eq!(state.input, json!({"n": 1}));
    assert_eq!(
        state.idempotency_key.as_deref(),
        Some(format!("schedule:s:{}:{}", s.generation, T0 + 3000).as_str())
    );
    assert!(matches!(
        s.recent[0].outcome,
        Outcome::Started { manual: false, .. }
    ));
}

#[tokio::test]
async fn a_cron_schedule_fires_on_the_minute() {
    let w = World::new().await;
    noop_workflow(&w).await;
    // T0 is 22:13:20Z: the next quarter hours are 22:15 and 22:30.
    let s = w
        .engine
        .create_schedule(
            spec(json!({"id": "q", "workflow": "tick", "cron": "*/15 * * * *"})),
            None,
            None,
        )
        .await
        .unwrap();
    let next = w.engine.upcoming_fires(&s, 2);
    assert_eq!(next, vec![1_700_000_100_000, 1_700_001_000_000]);
    w.clock.set(next[0]);
    until(&w, "q", |s| s.fired == 1).await;
    w.clock.set(next[1] + 59_000);
    until(&w, "q", |s| s.fired == 2).await;
    assert_eq!(fired(&w, "tick").await, next);
    // Past the catch-up window, a fire time is recorded as missed.
    w.clock.set(next[1] + 15 * 60_000 + 60_001);
    let s = until(&w, "q", |s| s.missed == 1).await;
    assert_eq!(s.fired, 2);
    assert_eq!(
        s.recent[0].outcome,
        Outcome::Missed {
            last_ms: next[1] + 15 * 60_000
        }
    );
}

#[tokio::test]
async fn overlap_skip_buffer_one_and_cancel_previous_do_what_they_say() {
    let w = World::new().await;
    gated_workflow(&w).await;
    for (id, overlap) in [
        ("skip", "skip"),
        ("buf", "bufferOne"),
        ("cancel", "cancelPrevious"),
    ] {
        w.engine
            .create_schedule(
                spec(json!({"id": id, "workflow": "gated", "everyMs": 1000,
                            "overlap": overlap, "catchupWindowMs": 60_000})),
                None,
                None,
            )
            .await
            .unwrap();
    }
    w.clock.advance(1000);
    for id in ["skip", "buf", "cancel"] {
        until(&w, id, |s| s.fired == 1).await;
    }
    let first = |id: &str| w.engine.schedule(id).unwrap().last_execution.unwrap();
    let (skip1, buf1, cancel1) = (first("skip"), first("buf"), first("cancel"));
    w.clock.advance(1000);
    w.clock.advance(1000);
    let skip = until(&w, "skip", |s| s.skipped == 2).await;
    assert_eq!((skip.fired, skip.last_execution), (1, Some(skip1)));
    // Buffered the first overlap, skipped the second.
    let buf = until(&w, "buf", |s| s.skipped == 1).await;
    assert_eq!(buf.buffered_ms, Some(T0 + 2000));
    assert_eq!(buf.fired, 1);
    // Cancelled the running one each time, and started anew.
    let cancel = until(&w, "cancel", |s| s.fired == 3).await;
    assert_eq!(cancel.skipped, 0);
    assert_eq!(
        w.engine.state(cancel1).await.unwrap().status,
        Status::Cancelled
    );
    // The buffered fire starts when the running execution ends.
    w.engine
        .signal(buf1, "go", json!(null), None)
        .await
        .unwrap();
    let buf = until(&w, "buf", |s| s.fired == 2).await;
    assert_eq!(buf.buffered_ms, None);
    assert_eq!(
        fired(&w, "gated")
            .await
            .iter()
            .filter(|t| **t == T0 + 2000)
            .count(),
        2,
        "the buffered fire time (and cancel's second) started once each"
    );
}

#[tokio::test]
async fn paused_fires_nothing_and_resuming_does_not_catch_up_the_pause() {
    let w = World::new().await;
    noop_workflow(&w).await;
    let mut s = spec(json!({"id": "p", "workflow": "tick", "everyMs": 1000,
                            "catchupWindowMs": 600_000, "paused": true}));
    w.engine
        .create_schedule(s.clone(), None, None)
        .await
        .unwrap();
    w.clock.advance(10_000);
    // A change wakes the loop, which must find nothing to do.
    s.paused = false;
    let resumed = w
        .engine
        .update_schedule(s.clone(), Some("ops"), Some("go"))
        .await
        .unwrap();
    assert_eq!(resumed.cursor_ms, T0 + 10_000);
    assert_eq!(resumed.anchor_ms, T0, "pausing keeps the timing's phase");
    assert_eq!(resumed.updated_by.as_deref(), Some("ops"));
    w.clock.advance(1000);
    until(&w, "p", |s| s.fired == 1).await;
    assert_eq!(fired(&w, "tick").await, vec![T0 + 11_000]);
    // A new timing counts from the change.
    w.clock.advance(500);
    s.every_ms = Some(5_000);
    let retimed = w.engine.update_schedule(s, None, None).await.unwrap();
    assert_eq!(
        (retimed.anchor_ms, retimed.cursor_ms),
        (T0 + 11_500, T0 + 11_500)
    );
    w.clock.advance(5_000);
    until(&w, "p", |s| s.fired == 2).await;
    assert_eq!(fired(&w, "tick").await, vec![T0 + 11_000, T0 + 16_500]);
}

#[tokio::test]
async fn a_trigger_starts_now_and_moves_no_fire_time() {
    let w = World::new().await;
    noop_workflow(&w).await;
    w.engine
        .create_schedule(
            spec(json!({"id": "t", "workflow": "tick", "everyMs": 60_000, "paused": true})),
            None,
            None,
        )
        .await
        .unwrap();
    w.clock.advance(5);
    let (s, started) = w
        .engine
        .trigger_schedule("t", Some("ops"), None)
        .await
        .unwrap();
    assert!(started.created);
    assert_eq!((s.fired, s.cursor_ms), (1, T0));
    assert_eq!(
        s.recent[0].outcome,
        Outcome::Started {
            execution: started.id,
            manual: true
        }
    );
    let key = w
        .engine
        .state(started.id)
        .await
        .unwrap()
        .idempotency_key
        .unwrap();
    assert_eq!(
        key,
        format!("schedule:t:{}:manual:{}", s.generation, T0 + 5)
    );
}

#[tokio::test]
async fn a_deleted_and_recreated_schedule_never_meets_the_old_ones_executions() {
    let w = World::new().await;
    noop_workflow(&w).await;
    let every = spec(json!({"id": "d", "workflow": "tick", "everyMs": 1000}));
    let old = w
        .engine
        .create_schedule(every.clone(), None, None)
        .await
        .unwrap();
    w.clock.advance(1000);
    until(&w, "d", |s| s.fired == 1).await;
    w.engine.delete_schedule("d", None, None).await.unwrap();
    assert!(w.engine.schedule("d").is_err());
    w.clock.advance(1000);
    assert!(
        w.engine.schedule("d").is_err(),
        "a deleted schedule fires nothing"
    );
    // Same id: its fire times' keys carry its own generation, so even a
    // clock set back to an old fire time would start a new execution.
    let new = w.engine.create_schedule(every, None, None).await.unwrap();
    assert_ne!(new.generation, old.generation);
    assert_ne!(new.fire_key(T0 + 1000), old.fire_key(T0 + 1000));
    w.clock.advance(1000);
    until(&w, "d", |s| s.fired == 1).await;
    assert_eq!(fired(&w, "tick").await, vec![T0 + 1000, T0 + 3000]);
}

#[tokio::test]
async fn a_fire_whose_input_is_refused_is_recorded_as_failed_and_the_schedule_goes_on() {
    let w = World::new().await;
    noop_workflow(&w).await;
    w.engine
        .create_schedule(
            spec(json!({"id": "f", "workflow": "tick", "everyMs": 1000})),
            None,
            None,
        )
        .await
        .unwrap();
    // A new version of the workflow wants an input the schedule lacks.
    w.define(
        json!({"name": "tick", "input": {"type": "object", "required": ["x"]},
                    "steps": [{"id": "a", "type": "task", "capability": "noop"}]}),
    )
    .await;
    w.clock.advance(2000);
    let s = until(&w, "f", |s| s.failed == 2).await;
    assert_eq!(s.cursor_ms, T0 + 2000);
    let Outcome::Failed { error } = &s.recent[0].outcome else {
        panic!("{:?}", s.recent)
    };
    assert!(error.contains("input"), "{error}");
}

#[tokio::test]
async fn every_bad_schedule_is_refused_whole_and_records_nothing() {
    let w = World::new().await;
    noop_workflow(&w).await;
    w.define(
        json!({"name": "typed", "input": {"type": "object", "required": ["x"]},
                    "steps": [{"id": "a", "type": "task", "capability": "noop"}]}),
    )
    .await;
    let before = w.engine.read().last_position().await.unwrap();
    for (bad, expected) in [
        (
            json!({"id": "a", "workflow": "tick", "cron": "* * *"}),
            "has 3 fields",
        ),
        (
            json!({"id": "a", "workflow": "tick", "cron": "0 * * * *", "timezone": "Nowhere/City"}),
            "not an IANA time zone",
        ),
        (
            json!({"id": "a", "workflow": "ghost", "everyMs": 1000}),
            "no workflow `ghost` is defined",
        ),
        (
            json!({"id": "a", "workflow": "tick", "version": "nope", "everyMs": 1000}),
            "has no version `nope`",
        ),
        (
            json!({"id": "a", "workflow": "typed", "everyMs": 1000}),
            "input: ",
        ),
        (
            json!({"id": "a", "workflow": "tick", "everyMs": 1000, "catchupWindowMs": 0}),
            "catchupWindowMs",
        ),
        (
            json!({"id": "a b", "workflow": "tick", "everyMs": 1000}),
            "not well-formed",
        ),
    ] {
        let err = w
            .engine
            .create_schedule(spec(bad.clone()), None, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{bad}: {err}");
    }
    let ok = spec(json!({"id": "a", "workflow": "tick", "everyMs": 1000}));
    w.engine
        .create_schedule(ok.clone(), None, None)
        .await
        .unwrap();
    // Positions may have gaps (on NATS), so what was recorded is counted.
    let recorded = w.journal().read_global(before + 1, 10).await.unwrap();
    assert_eq!(recorded.len(), 1, "only the good one was recorded");
    let after_one = recorded[0].position;
    let again = w
        .engine
        .create_schedule(ok.clone(), None, None)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("exists already"), "{again}");
    let mut bad_change = ok;
    bad_change.every_ms = Some(10);
    assert!(
        w.engine
            .update_schedule(bad_change, None, None)
            .await
            .is_err()
    );
    assert!(w.engine.delete_schedule("nope", None, None).await.is_err());
    assert!(w.engine.trigger_schedule("nope", None, None).await.is_err());
    assert_eq!(w.engine.read().last_position().await.unwrap(), after_one);
}

#[tokio::test]
async fn the_audit_lists_schedule_changes_with_who_made_them() {
    let w = World::new().await;
    noop_workflow(&w).await;
    let mut s = spec(json!({"id": "a", "workflow": "tick", "everyMs": 1000, "paused": true}));
    w.engine
        .create_schedule(s.clone(), Some("alice"), Some("nightly"))
        .await
        .unwrap();
    s.paused = false;
    w.engine
        .update_schedule(s, Some("bob"), None)
        .await
        .unwrap();
    w.engine
        .trigger_schedule("a", Some("carol"), None)
        .await
        .unwrap();
    w.engine
        .delete_schedule("a", Some("dave"), None)
        .await
        .unwrap();
    let (entries, _) = w.engine.read().audit(1, 1000, false).await.unwrap();
    let schedule: Vec<_> = entries
        .iter()
        .filter(|e| e.action.starts_with("schedule_"))
        .map(|e| (e.action, e.by.as_deref().unwrap_or("-")))
        .collect();
    assert_eq!(
        schedule,
        vec![
            ("schedule_created", "alice"),
            ("schedule_updated", "bob"),
            ("schedule_triggered", "carol"),
            ("schedule_deleted", "dave"),
        ]
    );
}

/// What happens to the engine between two looks.
#[derive(Debug, Clone)]
enum Op {
    /// Time passes while it runs; it sees the new time.
    Run(u64),
    /// Time passes, and it crashes at whatever point of firing it is.
    RunAndCrash(u64),
    /// It is down for a while, then recovers.
    Down(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..4_000).prop_map(Op::Run),
        2 => (1u64..4_000).prop_map(Op::RunAndCrash),
        1 => (1u64..20_000).prop_map(Op::Down),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: support::cases(64), ..ProptestConfig::default() })]

    /// Invariant 30: each fire time starts at most one execution whatever
    /// crashes, and a fire time is fired exactly when the engine was up at
    /// some instant within its catch-up window after it.
    #[test]
    fn crashes_never_fire_twice_nor_miss_a_fire_inside_the_catchup_window(
        every in 500u64..3_000,
        catchup in 1_000u64..6_000,
        ops in proptest::collection::vec(op(), 1..12),
    ) {
        let every = every * 2; // at least 1 s
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let mut w = World::new().await;
            noop_workflow(&w).await;
            w.engine
                .create_schedule(
                    spec(json!({"id": "s", "workflow": "tick", "everyMs": every,
                                "catchupWindowMs": catchup, "overlap": "allow"})),
                    None,
                    None,
                )
                .await
                .unwrap();
            // Every instant the engine looked at.
            let mut seen = vec![T0];
            let settled = |now: u64| {
                let due = if now >= T0 + every { T0 + (now - T0) / every * every } else { T0 };
                move |s: &Schedule| s.cursor_ms >= due
            };
            for op in ops {
                match op {
                    Op::Run(ms) => {
                        w.clock.advance(ms);
                    }
                    Op::RunAndCrash(ms) => {
                        w.clock.advance(ms);
                        tokio::task::yield_now().await;
                        w.crash_and_recover().await;
                    }
                    Op::Down(ms) => {
                        // The crash freezes the disk; time passes (what the
                        // dead engine still does never reaches that disk);
                        // then an engine opens on it.
                        w.crash_and_recover_after(|clock| clock.advance(ms)).await;
                    }
                }
                let now = w.clock.now_ms();
                until(&w, "s", settled(now)).await;
                seen.push(now);
            }
            let expected: Vec<u64> = (1..)
                .map(|k| T0 + k * every)
                .take_while(|t| *t <= *seen.last().unwrap())
                .filter(|t| seen.iter().any(|u| *t <= *u && *u <= t + catchup))
                .collect();
            let times = fired(&w, "tick").await;
            let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
            for t in &times {
                *counts.entry(*t).or_default() += 1;
            }
            assert!(counts.values().all(|c| *c == 1), "a fire time started twice: {counts:?}");
            assert_eq!(times, expected, "seen at {seen:?}");
        });
    }
}

#[tokio::test]
async fn a_long_schedule_history_recovers_to_the_same_table() {
    let mut w = World::new().await;
    noop_workflow(&w).await;
    w.engine
        .create_schedule(
            spec(json!({"id": "s", "workflow": "tick", "everyMs": 1000,
                        "catchupWindowMs": 2_000_000, "overlap": "allow"})),
            None,
            None,
        )
        .await
        .unwrap();
    // Past the table's snapshot interval (every 1,000 events).
    w.clock.advance(1_050_000);
    let before = until(&w, "s", |s| s.fired == 1_050).await;
    w.engine.shutdown().await.unwrap();
    w.crash_and_recover().await;
    assert_eq!(w.engine.schedule("s").unwrap(), before);
    w.clock.advance(1_000);
    until(&w, "s", |s| s.fired == 1_051).await;
}
