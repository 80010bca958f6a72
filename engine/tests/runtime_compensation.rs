//! Compensation (saga), operator commands and cascades through the runtime
//! on the simulated clock: one test per behaviour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::sync::Arc;

use retrace_engine::machine::{ErrorInfo, Event, Status};
use serde_json::{Value, json};
use support::*;

fn undoable(id: &str, next: Option<&str>) -> Value {
    let mut step = json!({"id": id, "type": "task", "capability": "do",
                          "compensate": {"capability": "undo", "input": {"undo": "$.output.did"}}});
    if let Some(n) = next {
        step["next"] = json!(n);
    }
    step
}

/// The order in which compensations completed (by the step they undid).
async fn undone(w: &World, id: retrace_engine::ExecutionId) -> Vec<String> {
    w.engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            Event::CompensationStarted { step, .. } => Some(step),
            _ => None,
        })
        .collect()
}

/// An agent that does every "do" (but fails `failing`) and every "undo"
/// (but fails the undo of `undo_failing`).
fn saga_agent(
    w: &World,
    failing: &'static str,
    undo_failing: &'static str,
) -> tokio::task::JoinHandle<()> {
    spawn_agent(
        &w.engine,
        &["do", "undo"],
        Arc::new(move |t| {
            if t.spec.capability == "undo" {
                if t.spec.input["undo"] == json!(undo_failing) {
                    return Err(ErrorInfo::new("undo_broke", "cannot undo"));
                }
                return Ok(json!({"undid": t.spec.input["undo"]}));
            }
            if t.spec.step == failing {
                let mut e = ErrorInfo::new("boom", "failed for good");
                e.retryable = Some(false);
                return Err(e);
            }
            Ok(json!({"did": t.spec.step}))
        }),
    )
}

#[tokio::test]
async fn an_unhandled_failure_undoes_completed_steps_newest_first() {
    let w = World::new().await;
    w.define(json!({"name": "saga", "steps": [
        undoable("a", Some("b")), undoable("b", Some("plain")),
        task_step("plain", "do", Some("c")), undoable("c", Some("d")), undoable("d", None)]}))
        .await;
    let _agent = saga_agent(&w, "d", "");
    let id = w.start("saga", json!({})).await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Compensated);
    assert_eq!(
        s.error.as_ref().unwrap().kind,
        "boom",
        "the failure is kept"
    );
    // d failed (never completed); plain has no compensate.
    assert_eq!(undone(&w, id).await, ["c", "b", "a"]);
    assert_eq!(s.compensation.unwrap().pending, Vec::<u64>::new());
}

#[tokio::test]
async fn compensation_follows_completion_order_across_parallel_branches() {
    let w = World::new().await;
    w.define(json!({"name": "par_saga", "steps": [
        undoable("first", Some("fan")),
        {"id": "fan", "type": "parallel", "next": "last", "parallel": {"branches": [
            {"name": "x", "steps": [undoable("x1", None)]},
            {"name": "y", "steps": [undoable("y1", None)]}]}},
        task_step("last", "do", None)]}))
        .await;
    let agent = w.agent(&["do"]);
    let id = w.start("par_saga", json!({})).await;
    let first = w.claim(&agent).await;
    w.complete(&first, json!({"did": "first"})).await;
    let mut branch = w.claim_n(&agent, 2).await;
    branch.sort_by(|a, b| b.spec.step.cmp(&a.spec.step));
    // y1 completes before x1.
    for t in &branch {
        w.complete(t, json!({"did": t.spec.step})).await;
    }
    let last = w.claim(&agent).await;
    let undoer = spawn_agent(&w.engine, &["undo"], Arc::new(|t| Ok(t.spec.input.clone())));
    w.fail(&last, "fatal", "no").await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Compensated);
    // The parallel step itself has no compensate; its branches' steps do.
    assert_eq!(undone(&w, id).await, ["x1", "y1", "first"]);
    undoer.abort();
}

#[tokio::test]
async fn a_failed_compensation_waits_for_an_operator_then_retry_or_skip() {
    let w = World::new().await;
    w.define(json!({"name": "stuck", "steps": [
        undoable("a", Some("b")), undoable("b", Some("c")), undoable("c", None)]}))
        .await;
    let agent = saga_agent(&w, "c", "b");
    let id = w.start("stuck", json!({})).await;
    w.wait_for(id, "compensation_failed").await;
    let s = w.state(id).await;
    assert_eq!(s.status, Status::CompensationFailed);
    let c = s.compensation.unwrap();
    assert_eq!(c.failed.unwrap().kind, "undo_broke");
    assert_eq!(c.pending.len(), 2, "b and a are left to undo");
    // Retry fails again (the agent still cannot undo b)...
    w.engine.retry(id).await.unwrap();
    w.wait_for_count(id, "compensation_failed", 2).await;
    // ...so the operator skips it, and a is undone.
    w.engine.skip(id, json!(null)).await.unwrap();
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Compensated);
    assert!(
        w.kinds(id)
            .await
            .contains(&"compensation_skipped".to_string())
    );
    assert_eq!(undone(&w, id).await, ["b", "b", "a"]);
    agent.abort();
}

#[tokio::test]
async fn cancel_with_compensation_undoes_then_ends_cancelled() {
    let w = World::new().await;
    w.define(json!({"name": "cancellable", "steps": [
        undoable("a", Some("wait")), {"id": "wait", "type": "event", "event": {"name": "never"}}]}))
        .await;
    let _agent = saga_agent(&w, "", "");
    let with = w.start("cancellable", json!({})).await;
    let without = w.start("cancellable", json!({})).await;
    w.wait_for(with, "event_awaited").await;
    w.wait_for(without, "event_awaited").await;
    w.engine
        .cancel(with, "changed my mind", true)
        .await
        .unwrap();
    w.engine
        .cancel(without, "changed my mind", false)
        .await
        .unwrap();
    let s = w.ended(with).await;
    assert_eq!(s.status, Status::Cancelled);
    assert_eq!(undone(&w, with).await, ["a"]);
    assert_eq!(w.ended(without).await.status, Status::Cancelled);
    assert!(undone(&w, without).await.is_empty());
}

#[tokio::test]
async fn on_failure_pause_holds_the_step_for_retry_or_skip() {
    let w = World::new().await;
    w.define(json!({"name": "manual", "steps": [
        {"id": "risky", "type": "task", "capability": "do", "onFailure": "pause",
         "output": {"result": "$.output"}, "next": "after"},
        {"id": "after", "type": "task", "capability": "transform", "input": "$.variables.result"}]}))
    .await;
    let agent = w.agent(&["do"]);
    // Retry path.
    let a = w.start("manual", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "flaky", "down").await;
    let s = w.state(a).await;
    assert_eq!(s.status, Status::Paused);
    assert_eq!(s.failed_steps[0].step, "risky");
    assert!(
        w.engine.resume(a).await.is_err(),
        "resume is refused: retry or skip"
    );
    w.engine.retry(a).await.unwrap();
    let again = w.claim(&agent).await;
    assert_eq!(again.spec.step, "risky");
    w.complete(&again, json!("second time lucky")).await;
    assert_eq!(w.ended(a).await.output, Some(json!("second time lucky")));
    // Skip path: the operator's output stands for the step's result.
    let b = w.start("manual", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "flaky", "down").await;
    w.wait_for(b, "execution_paused").await;
    w.engine.skip(b, json!("from the operator")).await.unwrap();
    let s = w.ended(b).await;
    assert_eq!(s.output, Some(json!("from the operator")));
    assert!(w.engine.skip(b, json!(1)).await.is_err());
}

#[tokio::test]
async fn redrive_reopens_a_failed_execution_at_the_failed_step() {
    let mut w = World::new().await;
    w.define(json!({"name": "redrivable", "steps": [
        task_step("one", "do", Some("two")), task_step("two", "do", None)]}))
        .await;
    let agent = w.agent(&["do"]);
    let id = w.start("redrivable", json!({})).await;
    let one = w.claim(&agent).await;
    w.complete(&one, json!(1)).await;
    let two = w.claim(&agent).await;
    w.fail(&two, "bad", "the service was down").await;
    let failed = w.ended(id).await;
    assert_eq!(failed.status, Status::Failed);
    let history_before = w.kinds(id).await;
    assert!(
        w.engine.retry(id).await.is_err(),
        "retry is for paused executions"
    );
    // Even after a restart.
    w.crash_and_recover().await;
    let agent = w.agent(&["do"]);
    w.engine.redrive(id).await.unwrap();
    let two_again = w.claim(&agent).await;
    assert_eq!(two_again.spec.step, "two");
    assert_ne!(two_again.spec.id, two.spec.id);
    w.complete(&two_again, json!(2)).await;
    w.wait_for(id, "execution_completed").await;
    let s = w.state(id).await;
    assert_eq!(
        (s.status, s.output.clone()),
        (Status::Completed, Some(json!(2)))
    );
    let history = w.kinds(id).await;
    assert_eq!(
        &history[..history_before.len()],
        &history_before[..],
        "history is kept"
    );
    assert!(history.contains(&"execution_redriven".to_string()));
    assert!(
        w.engine.redrive(id).await.is_err(),
        "only a failed execution redrives"
    );
}

#[tokio::test]
async fn terminating_or_cancelling_a_parent_does_the_same_to_its_children() {
    let w = World::new().await;
    w.define(json!({"name": "kid", "steps": [{"id": "wait", "type": "event", "event": {"name": "never"}}]})).await;
    w.define(json!({"name": "mum", "steps": [
        {"id": "call", "type": "subworkflow", "subworkflow": {"workflow": "kid"}}]}))
        .await;
    let a = w.start("mum", json!({})).await;
    let b = w.start("mum", json!({})).await;
    let (ca, cb) = (
        retrace_engine::machine::child_id(a, 1),
        retrace_engine::machine::child_id(b, 1),
    );
    w.wait_for(ca, "event_awaited").await;
    w.wait_for(cb, "event_awaited").await;
    w.engine.terminate(a, "stop").await.unwrap();
    w.engine.cancel(b, "stop", false).await.unwrap();
    assert_eq!(w.ended(ca).await.status, Status::Terminated);
    assert_eq!(w.ended(cb).await.status, Status::Cancelled);
}

#[tokio::test]
async fn a_missed_heartbeat_times_out_and_the_error_names_the_agent() {
    let w = World::new().await;
    w.define(json!({"name": "long", "steps": [
        {"id": "crunch", "type": "task", "capability": "cpu", "onError": "report",
         "timeout": {"startToCloseMs": 60000, "heartbeatMs": 5000}},
        {"id": "report", "type": "task", "capability": "transform", "input": "$.error"}]}))
        .await;
    let agent = w.agent(&["cpu"]);
    let id = w.start("long", json!({})).await;
    let t = w.claim(&agent).await;
    for _ in 0..3 {
        w.clock.advance(4_000);
        w.engine
            .agents()
            .task_heartbeat(&t.spec.id, Some(&agent))
            .unwrap();
    }
    assert_eq!(
        w.state(id).await.status,
        Status::Running,
        "heartbeats keep it alive"
    );
    w.clock.advance(5_001);
    let s = w.ended(id).await;
    let e = s.output.unwrap();
    assert_eq!(e["type"], json!("timeout"));
    assert!(e["message"].as_str().unwrap().contains("heartbeat"), "{e}");
}

#[tokio::test]
async fn a_failure_report_carries_the_agent_that_reported_it() {
    let w = World::new().await;
    w.define(json!({"name": "who", "steps": [
        {"id": "x", "type": "task", "capability": "cpu", "onError": "report"},
        {"id": "report", "type": "task", "capability": "transform", "input": "$.error.agent"}]}))
        .await;
    let agent = w.agent(&["cpu"]);
    let id = w.start("who", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "oops", "x").await;
    let who = w.ended(id).await.output.unwrap();
    assert!(who.as_str().unwrap().contains(&agent.to_string()), "{who}");
}

#[tokio::test]
async fn engine_wide_retry_defaults_apply_to_steps_without_their_own() {
    use retrace_engine::machine::{Defaults, RetryStrategy};
    let store = retrace_journal::store::memory::MemoryStore::new();
    let clock = retrace_engine::clock::SimClock::new(T0);
    let journal = retrace_journal::EventLog::in_memory(store, Default::default()).unwrap();
    let mut config =
        retrace_engine::runtime::EngineConfig::journal(Arc::new(journal), Arc::new(clock.clone()));
    config.defaults = Defaults::with_retry_strategy(RetryStrategy::Linear, 2, 500, 60_000);
    let engine = retrace_engine::runtime::Engine::open(config).await.unwrap();
    engine
        .define_json(
            json!({"name": "d", "steps": [task_step("x", "cpu", None)]})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
    let _skip = spawn_time_skipper(&engine, &clock);
    let _agent = spawn_agent(
        &engine,
        &["cpu"],
        Arc::new(|_| Err(ErrorInfo::new("e", "always"))),
    );
    let id = engine
        .start(retrace_engine::runtime::StartRequest {
            workflow: "d".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let s = engine.wait_until_ended(id).await.unwrap();
    assert_eq!((s.status, s.metrics.retry_count), (Status::Failed, 2));
    let delays: Vec<u64> = engine
        .read()
        .events(id, 1, 100)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            Event::RetryScheduled { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [500, 500], "linear: the same interval each time");
}
