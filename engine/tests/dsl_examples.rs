//! The failure-semantics examples of `docs/dsl.md`, run: each workflow is
//! taken from the document by its name (so the document cannot drift from
//! what the engine does), then driven through the scenario its text
//! describes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::sync::Arc;

use retrace_engine::machine::{ErrorInfo, Event, Status};
use serde_json::{Value, json};
use support::*;

async fn delays(w: &World, id: retrace_engine::ExecutionId) -> Vec<u64> {
    w.engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            Event::RetryScheduled { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn retry_backoff() {
    let w = World::new().await;
    w.define(from_docs("retry_backoff")).await;
    let agent = w.agent(&["http.get"]);
    let id = w.start("retry_backoff", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "io", "reset").await;
    w.clock.advance(1000);
    let t = w.claim(&agent).await;
    w.fail(&t, "io", "reset").await;
    w.clock.advance(2000);
    let t = w.claim(&agent).await;
    w.complete(&t, json!("page")).await;
    assert_completed(&w.ended(id).await);
    assert_eq!(delays(&w, id).await, [1000, 2000]);
}

#[tokio::test]
async fn slow_job() {
    let w = World::new().await;
    w.define(from_docs("slow_job")).await;
    let id = w.start("slow_job", json!({})).await;
    w.wait_for(id, "task_scheduled").await;
    w.clock.advance(5_000);
    w.wait_for(id, "retry_scheduled").await;
    assert_eq!(delays(&w, id).await, [100]);
    w.clock.advance(100);
    let agent = w.agent(&["cpu"]);
    let t = w.claim(&agent).await;
    assert_eq!(t.spec.attempt, 2);
    w.complete(&t, json!(1)).await;
    assert_completed(&w.ended(id).await);
}

#[tokio::test]
async fn route_errors() {
    let w = World::new().await;
    w.define(from_docs("route_errors")).await;
    w.define(json!({"name": "global_error_handler", "steps": [{"id": "log", "type": "task", "capability": "noop"}]})).await;
    let agent = w.agent(&["api.call", "api.use"]);

    let a = w.start("route_errors", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "bad_request", "missing field").await;
    assert_eq!(
        w.ended(a).await.output,
        Some(json!({"failed": "call", "because": "missing field"}))
    );

    let b = w.start("route_errors", json!({})).await;
    let t = w.claim(&agent).await;
    w.complete(&t, json!(1)).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "quota_exceeded", "slow down").await;
    assert_eq!(w.ended(b).await.output, Some(json!("later")));

    let c = w.start("route_errors", json!({})).await;
    let t = w.claim(&agent).await;
    w.complete(&t, json!(1)).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "unexpected", "??").await;
    let s = w.ended(c).await;
    assert_eq!(s.status, Status::Failed);
    assert!(w.kinds(c).await.contains(&"handler_finished".to_string()));
}

#[tokio::test]
async fn book_trip() {
    let w = World::new().await;
    w.define(from_docs("book_trip")).await;
    let _agent = spawn_agent(
        &w.engine,
        &[
            "flights.reserve",
            "hotels.reserve",
            "payments.charge",
            "flights.cancel",
            "hotels.cancel",
        ],
        Arc::new(|t| match t.spec.capability.as_str() {
            "payments.charge" => Err(ErrorInfo::new("card_declined", "declined")),
            "flights.reserve" => Ok(json!({"booking": "F1"})),
            "hotels.reserve" => Ok(json!({"booking": "H1"})),
            _ => Ok(json!({"cancelled": t.spec.input["booking"]})),
        }),
    );
    let id = w.start("book_trip", json!({})).await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Compensated);
    assert_eq!(s.metrics.retry_count, 0, "card_declined is not retried");
    let undone: Vec<Value> = w
        .engine
        .read()
        .events(id, 1, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            Event::CompensationCompleted { output, .. } => Some(output),
            _ => None,
        })
        .collect();
    assert_eq!(
        undone,
        [json!({"cancelled": "H1"}), json!({"cancelled": "F1"})]
    );

    // The same workflow, cancelled with compensation while it charges.
    let w = World::new().await;
    w.define(from_docs("book_trip")).await;
    let agent = w.agent(&["flights.reserve", "hotels.reserve", "payments.charge"]);
    let undo = spawn_agent(
        &w.engine,
        &["flights.cancel", "hotels.cancel"],
        Arc::new(|t| Ok(t.spec.input.clone())),
    );
    let id = w.start("book_trip", json!({})).await;
    for booking in ["F9", "H9"] {
        let t = w.claim(&agent).await;
        w.complete(&t, json!({"booking": booking})).await;
    }
    w.wait_for_count(id, "task_scheduled", 3).await;
    w.engine
        .cancel(id, "customer changed plans", true)
        .await
        .unwrap();
    assert_eq!(w.ended(id).await.status, Status::Cancelled);
    undo.abort();
}

#[tokio::test]
async fn manual_gate() {
    let w = World::new().await;
    w.define(from_docs("manual_gate")).await;
    let agent = w.agent(&["shipping.send"]);
    let id = w.start("manual_gate", json!({})).await;
    let t = w.claim(&agent).await;
    w.fail(&t, "carrier_down", "no pickups today").await;
    assert_eq!(w.state(id).await.status, Status::Paused);
    w.engine.retry(id).await.unwrap();
    let t = w.claim(&agent).await;
    w.complete(&t, json!("tracking 42")).await;
    assert_eq!(
        w.ended(id).await.output,
        Some(json!({"shipped": "tracking 42"}))
    );
}
