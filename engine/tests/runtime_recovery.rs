//! Recovery: drop the engine (everything in memory) at each point where an
//! execution waits — on a task, a timer, an event, inside a parallel, inside
//! a child — reopen it from the journal, and the execution finishes with the
//! same outcome as a run without the interruption. Determinism: folding any
//! finished execution's events from scratch gives its final state exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use retrace_engine::machine::{ExecutionState, Status};
use serde_json::{Value, json};
use support::*;

/// Where the scripted run drops the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Crash {
    Never,
    WaitingOnTask,
    WaitingOnTimer,
    WaitingOnEvent,
    InsideParallel,
    InsideChild,
}

async fn define_all(w: &World) {
    w.define(json!({
        "name": "inner",
        "steps": [{"id": "inner_task", "type": "task", "capability": "inner",
                   "input": {"n": "$.input.n"}}]
    }))
    .await;
    w.define(json!({
        "name": "tour",
        "steps": [
            {"id": "first", "type": "task", "capability": "work", "input": {"n": "$.input.n"},
             "output": {"first": "$.output"}, "next": "nap"},
            {"id": "nap", "type": "wait", "wait": {"seconds": 60}, "next": "gate"},
            {"id": "gate", "type": "event", "event": {"name": "go"},
             "output": {"approval": "$.output"}, "next": "fan"},
            {"id": "fan", "type": "parallel", "next": "call",
             "parallel": {"branches": [
                {"name": "a", "steps": [{"id": "pa", "type": "task", "capability": "work"}]},
                {"name": "b", "steps": [{"id": "pb", "type": "task", "capability": "work"}]}
             ]}, "output": {"fan": "$.output"}},
            {"id": "call", "type": "subworkflow", "subworkflow": {"workflow": "inner"},
             "input": {"n": "$.input.n"}, "output": {"inner": "$.output"}}
        ]
    }))
    .await;
}

/// The agents' answer to a task: derived from the task only, so a task done
/// before and after a crash gets the same answer.
fn answer(step: &str, input: &Value) -> Value {
    json!({"step": step, "saw": input})
}

async fn run(crash: Crash) -> ExecutionState {
    let mut w = World::new().await;
    define_all(&w).await;
    let id = w.start("tour", json!({"n": 7})).await;
    let maybe_crash = |at: Crash| at == crash;

    let agent = w.agent(&["work", "inner"]);
    let t = w.claim(&agent).await;
    if maybe_crash(Crash::WaitingOnTask) {
        w.crash_and_recover().await;
    }
    w.complete(&t, answer(&t.spec.step, &t.spec.input)).await;

    w.wait_for(id, "timer_started").await;
    if maybe_crash(Crash::WaitingOnTimer) {
        w.crash_and_recover().await;
    }
    w.clock.advance(60_000);

    w.wait_for(id, "event_awaited").await;
    if maybe_crash(Crash::WaitingOnEvent) {
        w.crash_and_recover().await;
    }
    w.engine
        .signal(id, "go", json!("approved"), None)
        .await
        .unwrap();

    let agent = w.agent(&["work", "inner"]);
    let mut branch_tasks = w.claim_n(&agent, 2).await;
    branch_tasks.sort_by(|a, b| a.spec.step.cmp(&b.spec.step));
    w.complete(
        &branch_tasks[0],
        answer(&branch_tasks[0].spec.step, &branch_tasks[0].spec.input),
    )
    .await;
    if maybe_crash(Crash::InsideParallel) {
        w.crash_and_recover().await;
    }
    // After a restart the agent simply reports what it finished.
    let b = &branch_tasks[1];
    w.complete(b, answer(&b.spec.step, &b.spec.input)).await;

    let agent = w.agent(&["inner"]);
    let inner = w.claim(&agent).await;
    assert_eq!(inner.spec.step, "inner_task");
    if maybe_crash(Crash::InsideChild) {
        w.crash_and_recover().await;
    }
    w.complete(&inner, answer(&inner.spec.step, &inner.spec.input))
        .await;

    let end = w.ended(id).await;
    check_replay_equals_live(&w, &end).await;
    end
}

/// Determinism: the fold of the stored history from scratch is the state
/// the engine ended with.
async fn check_replay_equals_live(w: &World, end: &ExecutionState) {
    let replayed = w
        .engine
        .read()
        .fold(end.id, u64::MAX)
        .await
        .unwrap()
        .expect("a stored history");
    if &replayed != end {
        let (a, b) = (
            serde_json::to_value(&replayed).unwrap(),
            serde_json::to_value(end).unwrap(),
        );
        for (k, v) in a.as_object().unwrap() {
            assert_eq!(
                Some(v),
                b.get(k),
                "field {k} differs between replay and live"
            );
        }
    }
    assert_eq!(&replayed, end);
    // Snapshots are written behind the events without being waited for; a
    // flush is queued behind them, so once it returns the snapshot is there.
    w.engine.read().store().flush().await.unwrap();
    let snapshot = w
        .engine
        .read()
        .snapshot(end.id)
        .await
        .unwrap()
        .expect("a terminal snapshot");
    assert_eq!(snapshot.seq, end.seq);
}

#[tokio::test]
async fn every_interruption_point_recovers_to_the_same_outcome() {
    let reference = run(Crash::Never).await;
    assert_eq!(reference.status, Status::Completed, "{:?}", reference.error);
    assert_eq!(
        reference.variables["inner"],
        json!({"step": "inner_task", "saw": {"n": 7}})
    );
    assert_eq!(reference.variables["approval"], json!("approved"));
    assert_eq!(
        reference.variables["fan"],
        // Each branch starts from the parallel step's input, which is by
        // default the previous step's output: the event's payload.
        json!({"a": {"step": "pa", "saw": "approved"}, "b": {"step": "pb", "saw": "approved"}})
    );
    for crash in [
        Crash::WaitingOnTask,
        Crash::WaitingOnTimer,
        Crash::WaitingOnEvent,
        Crash::InsideParallel,
        Crash::InsideChild,
    ] {
        let recovered = run(crash).await;
        assert_eq!(recovered.status, reference.status, "{crash:?}");
        assert_eq!(recovered.output, reference.output, "{crash:?}");
        assert_eq!(recovered.variables, reference.variables, "{crash:?}");
        assert_eq!(recovered.metrics, reference.metrics, "{crash:?}");
    }
}

#[tokio::test]
async fn a_recovered_engine_requeues_outstanding_tasks_with_the_same_ids() {
    let mut w = World::new().await;
    w.define(json!({"name": "one", "steps": [task_step("a", "x", None)]}))
        .await;
    let id = w.start("one", json!({})).await;
    let agent = w.agent(&["x"]);
    let before = w.claim(&agent).await;
    w.crash_and_recover().await;
    let agent = w.agent(&["x"]);
    let after = w.claim(&agent).await;
    assert_eq!(
        after.spec.id, before.spec.id,
        "the idempotency key survives"
    );
    assert_eq!(after.spec.attempt, before.spec.attempt);
    w.complete(&after, json!("done")).await;
    assert_completed(&w.ended(id).await);
    // The first claim's late result is refused: recorded at most once.
    assert!(
        w.engine
            .complete_task(&before.spec.id, json!("again"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn snapshots_bound_recovery_and_agree_with_the_fold() {
    let mut w = World::new().await;
    w.define(json!({
        "name": "long", "maxTransitions": 100000,
        "steps": [
            {"id": "count", "type": "task", "capability": "transform",
             "input": "${ has(variables.n) ? variables.n + 1 : 1 }",
             "output": {"n": "$.output"}, "next": "more"},
            {"id": "more", "type": "decision",
             "decision": {"expression": "variables.n < 1200", "branches": {"true": "count", "false": "gate"}}},
            {"id": "gate", "type": "event", "event": {"name": "finish"}}
        ]
    }))
    .await;
    let id = w.start("long", json!({})).await;
    w.wait_for(id, "event_awaited").await;
    // 2,400 inline steps: more events than one append carries, so the
    // machine yields (`continued`) and the runtime snapshots along the way.
    assert!(w.kinds(id).await.iter().any(|k| k == "continued"));
    let snapshot = w
        .engine
        .read()
        .snapshot(id)
        .await
        .unwrap()
        .expect("a snapshot");
    assert!(snapshot.seq > 1000);
    w.crash_and_recover().await;
    w.engine
        .signal(id, "finish", json!(null), None)
        .await
        .unwrap();
    let end = w.ended(id).await;
    assert_eq!(end.variables["n"], json!(1200));
    check_replay_equals_live(&w, &end).await;
}

#[tokio::test]
async fn definitions_are_immutable_idempotent_and_survive_a_restart() {
    let mut w = World::new().await;
    let doc = json!({"name": "pinned", "steps": [{"id": "a", "type": "task", "capability": "transform", "input": "v1"}]});
    let first = w
        .engine
        .define_json(doc.to_string().as_bytes())
        .await
        .unwrap();
    let again = w
        .engine
        .define_json(doc.to_string().as_bytes())
        .await
        .unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.workflow.version(), again.workflow.version());
    // A new version of the same workflow does not move executions already
    // pinned to the old one.
    w.define(json!({"name": "pinned", "steps": [
        {"id": "gate", "type": "event", "event": {"name": "go"}, "next": "a"},
        {"id": "a", "type": "task", "capability": "transform", "input": "v2"}]}))
        .await;
    let old = w
        .engine
        .start(retrace_engine::runtime::StartRequest {
            workflow: "pinned".into(),
            version: Some(first.workflow.version().to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    let new = w.start("pinned", json!({})).await;
    w.wait_for(new, "event_awaited").await;
    w.crash_and_recover().await;
    let versions = &w.engine.workflows()[0];
    assert_eq!(
        (versions.name.as_str(), versions.versions.len()),
        ("pinned", 2)
    );
    assert_eq!(w.ended(old.id).await.output, Some(json!("v1")));
    w.engine.signal(new, "go", json!(null), None).await.unwrap();
    assert_eq!(w.ended(new).await.output, Some(json!("v2")));
}

#[tokio::test]
async fn a_handler_given_at_open_takes_the_tasks_recovery_requeues() {
    use futures::FutureExt;
    use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, TaskHandler};
    let w = World::new().await;
    w.define(json!({"name": "h", "steps": [task_step("a", "inproc", None)]}))
        .await;
    // No handler yet: the task waits in the agent queue.
    let id = w.start("h", json!(5)).await;
    w.wait_for(id, "task_scheduled").await;
    drop(w.engine);
    let journal =
        retrace_journal::EventLog::in_memory(w.store.duplicate(), Default::default()).unwrap();
    let mut config = EngineConfig::journal(
        std::sync::Arc::new(journal),
        std::sync::Arc::new(w.clock.clone()),
    );
    let handler: std::sync::Arc<dyn TaskHandler> = std::sync::Arc::new(|t: HandlerTask| {
        async move { Ok(json!({"doubled": t.input.as_i64().unwrap() * 2})) }.boxed()
    });
    config.handlers.push(("inproc".into(), handler));
    let engine = Engine::open(config).await.unwrap();
    let end = engine.wait_until_ended(id).await.unwrap();
    assert_eq!(end.output, Some(json!({"doubled": 10})));
}

/// The journal `store` holds, opened as a new process would.
fn reopened(store: &retrace_journal::store::memory::MemoryStore) -> retrace_journal::EventLog {
    retrace_journal::EventLog::in_memory(store.duplicate(), retrace_journal::Options::default())
        .unwrap()
}

/// Rebuilding at open by one scan of the journal gives exactly the states
/// that folding each execution from its own events gives: executions that
/// ended (their snapshot is their head), that wait with a snapshot behind
/// them, and that wait without one.
#[tokio::test]
async fn rebuilding_by_scan_gives_what_rebuilding_by_reads_gives() {
    use retrace_engine::store::rebuild::{Rebuild, rebuild_all};
    let w = World::new().await;
    define_all(&w).await;
    w.define(json!({
        "name": "long", "maxTransitions": 100000,
        "steps": [
            {"id": "count", "type": "task", "capability": "transform",
             "input": "${ has(variables.n) ? variables.n + 1 : 1 }",
             "output": {"n": "$.output"}, "next": "more"},
            {"id": "more", "type": "decision",
             "decision": {"expression": "variables.n < 1200", "branches": {"true": "count", "false": "gate"}}},
            {"id": "gate", "type": "event", "event": {"name": "finish"}}
        ]
    }))
    .await;
    w.define(
        json!({"name": "quick", "steps": [{"id": "n", "type": "task", "capability": "noop"}]}),
    )
    .await;
    let long = w.start("long", json!({})).await;
    let mut ids = vec![long];
    for n in 0..5 {
        ids.push(w.start("quick", json!({"n": n})).await);
        ids.push(w.start("tour", json!({"n": n})).await);
    }
    w.wait_for(long, "event_awaited").await;
    let agent = w.agent(&["work"]);
    let t = w.claim(&agent).await;
    w.complete(&t, answer(&t.spec.step, &t.spec.input)).await;

    let heads: Vec<(retrace_engine::ExecutionId, u64)> = w
        .engine
        .read()
        .all_executions()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.last_seq))
        .collect();
    assert_eq!(heads.len(), ids.len());
    let journal = reopened(&w.store);
    let by_reads = rebuild_all(&journal, &heads, Rebuild::Reads).await.unwrap();
    let by_scan = rebuild_all(&journal, &heads, Rebuild::Scan).await.unwrap();
    let auto = rebuild_all(&journal, &heads, Rebuild::Auto).await.unwrap();
    assert_eq!(by_scan, by_reads);
    assert_eq!(auto, by_reads);
    for (state, (id, last_seq)) in by_scan.iter().zip(&heads) {
        assert_eq!((state.id, state.seq), (*id, *last_seq));
        assert_eq!(state, &w.state(*id).await, "the engine's own state of {id}");
    }
    let ended = by_scan.iter().filter(|s| s.status.is_terminal()).count();
    assert!(ended >= 5, "{ended} ended");
    assert!(by_scan.iter().any(|s| s.status == Status::Running));
}

/// A scan checks each record's chain link as a read does: a record altered
/// on disk is refused both ways, never folded.
#[tokio::test]
async fn an_altered_record_is_refused_by_scan_and_by_reads() {
    use retrace_engine::store::rebuild::{Rebuild, rebuild_all};
    let w = World::new().await;
    w.define(json!({"name": "parked", "steps": [
        {"id": "n", "type": "task", "capability": "noop", "next": "gate"},
        {"id": "gate", "type": "event", "event": {"name": "never"}}
    ]}))
    .await;
    // Waiting, so it has no snapshot: its events are folded.
    let id = w.start("parked", json!({"n": 1})).await;
    let heads = vec![(id, w.state(id).await.seq)];
    // Enough appends after it that opening the journal (which checks the
    // records after its last head checkpoint) does not reach it.
    for n in 0..100 {
        w.start("parked", json!({"n": n})).await;
    }
    let disk = w.store.duplicate();
    // The execution's step_completed record: flip a byte of its payload.
    let (key, mut value) = disk
        .raw_entries()
        .into_iter()
        .find(|(k, v)| {
            k[0] == b'l'
                && v.get(1..17) == Some(id.as_bytes().as_slice())
                && v.windows(14).any(|w| w == b"step_completed")
        })
        .expect("the record");
    let at = value.len() - 40;
    value[at] ^= 0x01;
    disk.raw_put(key, value);
    let journal = reopened(&disk);
    for how in [Rebuild::Reads, Rebuild::Scan] {
        let e = rebuild_all(&journal, &heads, how).await.unwrap_err();
        assert!(e.to_string().contains("JOURNAL-CORRUPT"), "{how:?}: {e}");
    }
}

/// A snapshot is written every `snapshot_every` (500) events unless the
/// events since the last one take fewer bytes than it did: a big state is
/// not written again after every few hundred small events.
#[tokio::test]
async fn a_big_state_is_not_snapshotted_again_after_a_few_small_events() {
    let w = World::new().await;
    // 1,200 rounds of two small steps: ~2,400 events of ~150 bytes, made in
    // triggers of 1,000 events (the machine yields, `continued`); a few
    // hundred bytes of state for the one, 200 KB for the other.
    w.define(json!({
        "name": "many", "maxTransitions": 100000,
        "steps": [
            {"id": "count", "type": "task", "capability": "transform",
             "input": "${ has(variables.n) ? variables.n + 1 : 1 }",
             "output": {"n": "$.output"}, "next": "more"},
            {"id": "more", "type": "decision",
             "decision": {"expression": "variables.n < 1200", "branches": {"true": "count", "false": "gate"}}},
            {"id": "gate", "type": "event", "event": {"name": "go"}}
        ]
    }))
    .await;
    let small = w.start("many", json!({})).await;
    let big = w.start("many", json!({"blob": "x".repeat(200_000)})).await;
    for id in [small, big] {
        w.wait_for(id, "event_awaited").await;
        assert!(w.state(id).await.seq > 2000);
    }
    let read = w.engine.read();
    let seq_of = |s: Option<retrace_engine::read::StoredSnapshot>| s.expect("a snapshot").seq;
    // Both have their first after the first trigger (1,001 events); the
    // small one another after each trigger since, the big one none after
    // ~150 KB of events.
    assert!(seq_of(read.snapshot(small).await.unwrap()) > 2000);
    let big_seq = seq_of(read.snapshot(big).await.unwrap());
    assert!(
        (1000..2000).contains(&big_seq),
        "a 200 KB state was written again after ~150 KB of events (at {big_seq})"
    );
}

/// A graceful shutdown snapshots every unfinished execution with events
/// since its last snapshot, so the next open starts each from there; the
/// state it rebuilds is the one the engine had.
#[tokio::test]
async fn shutdown_snapshots_the_unfinished_and_the_next_open_agrees() {
    let w = World::new().await;
    define_all(&w).await;
    let id = w.start("tour", json!({"n": 1})).await;
    w.wait_for(id, "task_scheduled").await;
    let before = w.state(id).await;
    assert!(before.seq < 500);
    assert!(w.engine.read().snapshot(id).await.unwrap().is_none());
    w.engine.shutdown().await.unwrap();
    let snapshot = w
        .engine
        .read()
        .snapshot(id)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.seq, before.seq);
    assert_eq!(snapshot.state.as_ref().ok(), Some(&before));
    let reopened = open(&w.store.duplicate(), &w.clock).await;
    assert_eq!(
        reopened.read().state(id).await.unwrap().as_ref(),
        Some(&before)
    );
}
