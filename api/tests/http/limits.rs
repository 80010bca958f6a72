//! Workflow limits over real HTTP: an execution over its workflow's
//! concurrency limit is started (`201`) and waits, its first step shown
//! waiting for the limit that holds it; it runs once a slot frees. Bad
//! limits are refused with the definition, an input whose key cannot be
//! taken with the start, nothing recorded.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Polls the execution until `done` holds for it.
async fn until(s: &Server, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = s.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{id} never got there: {body}");
        // The interval between polls, not a wait standing in for one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn waits_for(view: &Value, what: &str) -> bool {
    view["currentSteps"]
        .as_array()
        .is_some_and(|steps| steps.iter().any(|s| s["waiting"]["for"] == what))
}

#[tokio::test]
async fn an_execution_over_its_limit_is_started_waits_and_says_what_holds_it() {
    let s = Server::start().await;
    let mut doc = gated_chain("limited", 1);
    doc["concurrency"] = json!({"key": "$.input.account", "limit": 1});
    s.define(doc).await;
    let first = s
        .start_execution("limited", json!({"account": "acme"}))
        .await;
    until(&s, &first, |v| waits_for(v, "event")).await;
    let second = s
        .start_execution("limited", json!({"account": "acme"}))
        .await;
    let other = s
        .start_execution("limited", json!({"account": "initech"}))
        .await;
    until(&s, &other, |v| waits_for(v, "event")).await;

    let (_, view) = s.get(&format!("/v1/executions/{second}")).await;
    assert_eq!(view["status"], "running");
    assert_eq!(
        view["currentSteps"],
        json!([{"stepId": "gate", "activation": 0, "role": "step", "thread": null,
            "startTime": view["startTime"],
            "waiting": {"for": "limit", "name": "concurrency", "key": "acme",
                "limit": 1, "inUse": 1}}])
    );
    let kinds = s.kinds(&second).await;
    assert_eq!(
        kinds,
        ["execution_started", "limit_waiting", "step_deferred"]
    );

    let (status, _) = s
        .post_empty(&format!("/v1/executions/{first}/signals/go"))
        .await;
    assert_eq!(status, StatusCode::OK);
    until(&s, &second, |v| waits_for(v, "event")).await;
    let kinds = s.kinds(&second).await;
    assert_eq!(kinds[3], "limit_acquired");
}

#[tokio::test]
async fn bad_limits_and_inputs_without_a_key_are_refused_with_nothing_recorded() {
    let s = Server::start().await;
    let before = s.position().await;
    let mut doc = gated_chain("limited", 1);
    doc["concurrency"] = json!({"limit": 0});
    doc["rateLimit"] = json!({"key": "$.input.account", "limit": 5});
    let refused = s.post("/v1/workflows", doc).await;
    assert_error(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    );
    let paths: Vec<&str> = refused.1["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["concurrency.limit", "rateLimit.periodMs"]);
    assert_eq!(s.position().await, before);

    let mut doc = gated_chain("limited", 1);
    doc["rateLimit"] = json!({"key": "$.input.account", "limit": 5, "periodMs": 1000});
    s.define(doc).await;
    let before = s.position().await;
    let refused = s
        .post(
            "/v1/executions",
            json!({"workflow": "limited", "input": {"account": ["a", "b"]}}),
        )
        .await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert_eq!(s.position().await, before);
}
