//! Retries, error routes, timeouts and operator commands through the
//! runtime, with the simulated clock (no real sleeps).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use retrace_engine::machine::{Event, Status, error_types};
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_failed_task_retries_with_the_configured_backoff() {
    let w = World::new().await;
    w.define(json!({
        "name": "flaky",
        "steps": [{"id": "fetch", "type": "task", "capability": "net",
                   "retry": {"maxAttempts": 3, "interval": 1000, "backoffRate": 2.0}}]
    }))
    .await;
    let agent = w.agent(&["net"]);
    let id = w.start("flaky", json!({})).await;
    let first = w.claim(&agent).await;
    w.fail(&first, "io", "connection reset").await;
    w.clock.advance(999);
    // Not yet: nothing is queued before the delay has passed.
    assert!(w.engine.poll_tasks(&agent, 0, 1).await.unwrap().is_empty());
    w.clock.advance(1);
    let second = w.claim(&agent).await;
    assert_eq!(second.spec.attempt, 2);
    assert_ne!(
        second.spec.id, first.spec.id,
        "each attempt has its own key"
    );
    w.fail(&second, "io", "again").await;
    w.clock.advance(2000);
    let third = w.claim(&agent).await;
    assert_eq!(third.spec.attempt, 3);
    w.complete(&third, json!("ok")).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.metrics.retry_count, 2);
    let delays: Vec<u64> = w
        .engine
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
    assert_eq!(delays, [1000, 2000]);
}

#[tokio::test]
async fn a_non_retryable_error_is_not_retried() {
    let w = World::new().await;
    w.define(json!({
        "name": "strict",
        "steps": [{"id": "charge", "type": "task", "capability": "pay",
                   "retry": {"maxAttempts": 5, "nonRetryable": ["card_declined"]}}]
    }))
    .await;
    let agent = w.agent(&["pay"]);
    let id = w.start("strict", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "card_declined", "no").await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    let e = s.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.step.as_deref(), e.attempt),
        ("card_declined", Some("charge"), Some(1))
    );
    assert_eq!(s.metrics.retry_count, 0);
}

#[tokio::test]
async fn on_error_routes_to_a_step_that_reads_the_error() {
    let w = World::new().await;
    w.define(json!({
        "name": "routed",
        "steps": [
            {"id": "fetch", "type": "task", "capability": "net", "onError": "report", "next": "ok"},
            {"id": "ok", "type": "task", "capability": "noop"},
            {"id": "report", "type": "task", "capability": "transform",
             "input": {"what": "$.error.type", "where": "$.error.step", "why": "$.error.message"}}
        ]
    }))
    .await;
    let agent = w.agent(&["net"]);
    let id = w.start("routed", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "dns", "no such host").await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(
        s.output,
        Some(json!({"what": "dns", "where": "fetch", "why": "no such host"}))
    );
}

#[tokio::test]
async fn a_workflow_error_handler_catches_what_a_step_did_not() {
    let w = World::new().await;
    w.define(json!({
        "name": "handled",
        "errorHandlers": [{"error": "quota", "handler": "wait_quota"}, {"error": "*", "handler": "other"}],
        "steps": [
            task_step("work", "api", None),
            {"id": "wait_quota", "type": "task", "capability": "transform", "input": "quota handler"},
            {"id": "other", "type": "task", "capability": "transform", "input": "other handler"}
        ]
    }))
    .await;
    let agent = w.agent(&["api"]);
    let a = w.start("handled", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "quota", "slow down").await;
    assert_eq!(w.ended(a).await.output, Some(json!("quota handler")));
    let b = w.start("handled", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "boom", "?").await;
    assert_eq!(w.ended(b).await.output, Some(json!("other handler")));
}

#[tokio::test]
async fn an_unclaimed_or_unfinished_task_times_out_and_retries() {
    let w = World::new().await;
    w.define(json!({
        "name": "slow",
        "steps": [{"id": "job", "type": "task", "capability": "cpu",
                   "timeout": {"startToCloseMs": 10000, "scheduleToStartMs": 5000},
                   "retry": {"maxAttempts": 2, "interval": 100}}]
    }))
    .await;
    let id = w.start("slow", json!({})).await;
    w.wait_for(id, "task_scheduled").await;
    // Nobody claims it within 5 s: schedule-to-start timeout, then a retry.
    w.clock.advance(5_001);
    w.wait_for(id, "retry_scheduled").await;
    w.clock.advance(100);
    let agent = w.agent(&["cpu"]);
    let t = w.claim(&agent).await;
    assert_eq!(t.spec.attempt, 2);
    // Claimed but never finished: start-to-close timeout, out of attempts.
    w.clock.advance(10_001);
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.error.unwrap().kind, error_types::TIMEOUT);
    // The late result is refused.
    assert!(w.engine.complete_task(&t.spec.id, json!(1)).await.is_err());
}

#[tokio::test]
async fn a_workflow_timeout_fails_the_execution() {
    let w = World::new().await;
    w.define(json!({
        "name": "bounded", "timeoutMs": 60000,
        "steps": [{"id": "gate", "type": "event", "event": {"name": "never"}}]
    }))
    .await;
    let id = w.start("bounded", json!({})).await;
    w.wait_for(id, "event_awaited").await;
    w.clock.advance(60_000);
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.error.unwrap().kind, error_types::TIMEOUT);
}

#[tokio::test]
async fn pause_holds_new_dispatches_and_resume_continues() {
    let w = World::new().await;
    w.define(json!({
        "name": "pausable",
        "steps": [task_step("one", "w", Some("two")), task_step("two", "w", None)]
    }))
    .await;
    let agent = w.agent(&["w"]);
    let id = w.start("pausable", json!({})).await;
    let one = w.claim(&agent).await;
    w.engine.pause(id, "operator").await.unwrap();
    // The result of a task already out is still recorded...
    w.complete(&one, json!(1)).await;
    // ...but the next step is not dispatched while paused.
    assert!(w.engine.poll_tasks(&agent, 0, 1).await.unwrap().is_empty());
    let s = w.state(id).await;
    assert_eq!((s.status, s.metrics.completed_steps), (Status::Paused, 1));
    assert!(
        w.engine.pause(id, "again").await.is_err(),
        "pausing twice is refused"
    );
    w.engine.resume(id).await.unwrap();
    let two = w.claim(&agent).await;
    assert_eq!(two.spec.step, "two");
    w.complete(&two, json!(2)).await;
    assert_completed(&w.ended(id).await);
}

#[tokio::test]
async fn a_timer_due_while_paused_takes_effect_on_resume() {
    let w = World::new().await;
    w.define(json!({
        "name": "nap",
        "steps": [{"id": "z", "type": "wait", "wait": {"seconds": 1}}]
    }))
    .await;
    let id = w.start("nap", json!({})).await;
    w.wait_for(id, "timer_started").await;
    w.engine.pause(id, "hold").await.unwrap();
    w.clock.advance(5_000);
    assert_eq!(w.state(id).await.status, Status::Paused);
    w.engine.resume(id).await.unwrap();
    assert_completed(&w.ended(id).await);
}

#[tokio::test]
async fn cancel_and_terminate_end_the_execution_and_withdraw_its_tasks() {
    let w = World::new().await;
    w.define(json!({"name": "c", "steps": [task_step("a", "w", None)]}))
        .await;
    let agent = w.agent(&["w"]);
    let a = w.start("c", json!({})).await;
    let b = w.start("c", json!({})).await;
    w.wait_for(a, "task_scheduled").await;
    w.wait_for(b, "task_scheduled").await;
    w.engine.cancel(a, "not needed", false).await.unwrap();
    w.engine.terminate(b, "stop now").await.unwrap();
    assert_eq!(w.state(a).await.status, Status::Cancelled);
    assert_eq!(w.state(b).await.status, Status::Terminated);
    assert!(
        w.engine.poll_tasks(&agent, 0, 10).await.unwrap().is_empty(),
        "tasks withdrawn"
    );
    assert!(
        w.engine.cancel(a, "again", false).await.is_err(),
        "an ended execution refuses commands"
    );
    assert!(w.engine.resume(b).await.is_err());
}
