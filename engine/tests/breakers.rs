//! Circuit breakers on a simulated clock: failures within the window open
//! one, its tasks then fail fast with `circuit_open` (recorded, retried like
//! any error), a probe after the cool-down decides, and the state survives
//! a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use retrace_engine::breakers::{BreakerSettings, BreakerState};
use retrace_engine::machine::{ErrorInfo, Event, Status, error_types};
use retrace_engine::runtime::BreakerInfo;
use serde_json::json;
use support::*;

async fn until(w: &World, done: impl Fn(&BreakerInfo) -> bool) -> BreakerInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let b = w.engine.breaker("flaky").unwrap();
        if done(&b) {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got there: {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The error types of the execution's task failures, in order.
async fn failures(w: &World, id: retrace_engine::ExecutionId) -> Vec<String> {
    w.engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::TaskFailed { error, .. } => Some(error.kind),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_breaker_opens_fails_fast_probes_and_closes() {
    let mut w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky",
         "retry": {"maxAttempts": 10, "interval": 1000, "backoffRate": 1}}]}))
        .await;
    let settings = BreakerSettings {
        failures: 2,
        window_ms: 60_000,
        cool_down_ms: 10_000,
    };
    let set = w
        .engine
        .set_breaker("flaky", settings, Some("ops"), None)
        .await
        .unwrap();
    assert_eq!(set.state, BreakerState::Closed);
    assert_eq!(set.set_by.as_deref(), Some("ops"));

    // Two failures within the window open it.
    let agent = w.agent(&["flaky"]);
    let first = w.start("call", json!({})).await;
    for _ in 0..2 {
        let task = w.claim(&agent).await;
        w.engine
            .fail_task(&task.spec.id, ErrorInfo::new("boom", "down"))
            .await
            .unwrap();
        w.clock.advance(1_000);
    }
    let open = until(&w, |b| b.opened == 1).await;
    assert!(matches!(open.state, BreakerState::Open { .. }));

    // The retry that came due fails fast: no agent is asked.
    w.wait_for_count(first, "task_failed", 3).await;
    assert_eq!(
        failures(&w, first).await,
        ["boom", "boom", error_types::CIRCUIT_OPEN]
    );
    assert!(w.engine.poll_tasks(&agent, 0, 1).await.unwrap().is_empty());

    // Open survives a crash (it is recorded).
    w.crash_and_recover().await;
    assert!(matches!(
        w.engine.breaker("flaky").unwrap().state,
        BreakerState::Open { .. }
    ));
    // After the cool-down the next attempt is the probe; it succeeds and
    // closes the breaker.
    w.clock.advance(10_000);
    let agent = w.agent(&["flaky"]);
    let probe = w.claim(&agent).await;
    let half = until(&w, |b| b.state == BreakerState::HalfOpen).await;
    assert_eq!(half.opened, 1);
    w.complete(&probe, json!({"ok": true})).await;
    // The probe's success closes it (at the same simulated instant as it
    // half-opened, so wait for the state, not a later change).
    let closed = until(&w, |b| b.state == BreakerState::Closed).await;
    assert_eq!(closed.recent_failures, 0);
    let ended = w.ended(first).await;
    assert_eq!(ended.status, Status::Completed);
    let kinds = failures(&w, first).await;
    assert!(
        kinds
            .iter()
            .filter(|k| *k == error_types::CIRCUIT_OPEN)
            .count()
            >= 1,
        "{kinds:?}"
    );

    // Removing it hands everything out again; bad settings change nothing.
    assert!(
        w.engine
            .set_breaker(
                "flaky",
                BreakerSettings {
                    failures: 0,
                    ..settings
                },
                None,
                None
            )
            .await
            .is_err()
    );
    w.engine.remove_breaker("flaky", None, None).await.unwrap();
    assert!(w.engine.breaker("flaky").is_err());
    assert!(w.engine.breakers().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_probe_opens_it_again() {
    let w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let settings = BreakerSettings {
        failures: 1,
        window_ms: 60_000,
        cool_down_ms: 5_000,
    };
    w.engine
        .set_breaker("flaky", settings, None, None)
        .await
        .unwrap();
    let agent = w.agent(&["flaky"]);
    w.start("call", json!({})).await;
    let task = w.claim(&agent).await;
    w.engine
        .fail_task(&task.spec.id, ErrorInfo::new("boom", "down"))
        .await
        .unwrap();
    until(&w, |b| b.opened == 1).await;
    // Failing fast: an execution started now fails at once, routed by no
    // error handler, with a `circuit_open` error.
    let refused = w.start("call", json!({})).await;
    let state = w.ended(refused).await;
    assert_eq!(state.error.unwrap().kind, error_types::CIRCUIT_OPEN);
    w.clock.advance(5_000);
    let probing = w.start("call", json!({})).await;
    let probe = w.claim(&agent).await;
    assert_eq!(probe.spec.execution, probing);
    w.engine
        .fail_task(&probe.spec.id, ErrorInfo::new("boom", "still down"))
        .await
        .unwrap();
    let again = until(&w, |b| b.opened == 2).await;
    assert!(matches!(again.state, BreakerState::Open { .. }));
}

#[tokio::test]
async fn the_audit_lists_who_set_and_removed_a_breaker_and_not_its_own_changes() {
    let w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let settings = BreakerSettings {
        failures: 1,
        window_ms: 60_000,
        cool_down_ms: 5_000,
    };
    w.engine
        .set_breaker("flaky", settings, Some("alice"), Some("flapping"))
        .await
        .unwrap();
    let agent = w.agent(&["flaky"]);
    w.start("call", json!({})).await;
    let task = w.claim(&agent).await;
    w.engine
        .fail_task(&task.spec.id, ErrorInfo::new("boom", "down"))
        .await
        .unwrap();
    until(&w, |b| b.opened == 1).await;
    w.engine
        .remove_breaker("flaky", Some("bob"), None)
        .await
        .unwrap();
    let (entries, _) = w.engine.read().audit(1, 1000, false).await.unwrap();
    let breaker: Vec<_> = entries
        .iter()
        .filter(|e| e.action.starts_with("breaker_"))
        .map(|e| (e.action, e.by.clone(), e.detail.clone()))
        .collect();
    assert_eq!(
        breaker,
        vec![
            (
                "breaker_set",
                Some("alice".to_string()),
                Some("1 failures in 60000 ms, cool-down 5000 ms: flapping".to_string())
            ),
            ("breaker_removed", Some("bob".to_string()), None),
        ]
    );
}
