//! Commands on an execution and external events: each answers with the new
//! status, or `409 wrong_state` and records nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn pause_resume_cancel_and_a_409_for_a_command_that_does_not_fit() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let path = |command: &str| format!("/v1/executions/{id}/{command}");

    let position = s.position().await;
    let answer = s.post_empty(&path("resume")).await;
    assert_error(&answer, StatusCode::CONFLICT, "wrong_state");
    assert_eq!(
        s.position().await,
        position,
        "a refused command records nothing"
    );

    let (status, body) = s.post(&path("pause"), json!({"reason": "lunch"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"id": id, "status": "paused"}));
    let (_, events) = s.get(&format!("/v1/executions/{id}/events?after=1")).await;
    let paused = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "execution_paused")
        .unwrap()
        .clone();
    assert_eq!(paused["data"]["reason"], "lunch");

    let (status, body) = s.post_empty(&path("resume")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("running"))
    );

    let (status, body) = s.post(&path("cancel"), json!({"compensate": false})).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );

    let position = s.position().await;
    for command in ["pause", "resume", "cancel", "terminate", "retry"] {
        let answer = s.post_empty(&path(command)).await;
        assert_error(&answer, StatusCode::CONFLICT, "wrong_state");
    }
    let answer = s.post(&path("skip"), json!({"output": 1})).await;
    assert_error(&answer, StatusCode::CONFLICT, "wrong_state");
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn terminate_ends_an_execution_at_once() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let (status, body) = s
        .post_empty(&format!("/v1/executions/{id}/terminate"))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("terminated"))
    );
    assert_eq!(s.kinds(&id).await.last().unwrap(), "execution_terminated");
}

#[tokio::test]
async fn cancel_with_compensate_undoes_completed_steps() {
    let s = Server::start().await;
    s.define(json!({"name": "undoable", "steps": [
        {"id": "book", "type": "task", "capability": "noop",
         "compensate": {"capability": "noop"}, "next": "gate"},
        {"id": "gate", "type": "event", "event": {"name": "go"}}]}))
        .await;
    let id = s.start_execution("undoable", json!({})).await;
    let (status, body) = s
        .post(
            &format!("/v1/executions/{id}/cancel"),
            json!({"compensate": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        s.kinds(&id)
            .await
            .contains(&"compensation_began".to_owned())
    );
}

#[tokio::test]
async fn a_failed_step_held_by_on_failure_pause_is_retried_or_skipped() {
    let s = Server::start().await;
    s.define(json!({"name": "manual", "steps": [
        {"id": "risky", "type": "task", "capability": "do", "onFailure": "pause"}]}))
        .await;
    let agent = s.register(&["do"]).await;
    let fail = json!({"error": {"type": "flaky", "message": "down", "retryable": false}});

    // Retry: the step runs again.
    let a = s.start_execution("manual", json!({})).await;
    let task = s.claim(&agent).await;
    let (status, _) = s
        .post(
            &format!("/v1/tasks/{}/fail", task["id"].as_str().unwrap()),
            fail.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, execution) = s.get(&format!("/v1/executions/{a}")).await;
    assert_eq!(execution["status"], "paused");
    assert_eq!(execution["failedSteps"][0]["step"], "risky");
    let answer = s.post_empty(&format!("/v1/executions/{a}/resume")).await;
    assert_error(&answer, StatusCode::CONFLICT, "wrong_state");
    let (status, body) = s.post_empty(&format!("/v1/executions/{a}/retry")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("running"))
    );
    let again = s.claim(&agent).await;
    assert_eq!(again["stepId"], "risky");
    assert_ne!(again["id"], task["id"], "a new task");

    // Skip: the operator's output stands for the step's result.
    let b = s.start_execution("manual", json!({})).await;
    let task = s.claim(&agent).await;
    assert_eq!(task["executionId"], b.as_str());
    s.post(
        &format!("/v1/tasks/{}/fail", task["id"].as_str().unwrap()),
        fail,
    )
    .await;
    let (status, body) = s
        .post(
            &format!("/v1/executions/{b}/skip"),
            json!({"output": "by hand"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    let (_, execution) = s.get(&format!("/v1/executions/{b}")).await;
    assert_eq!(execution["output"], "by hand");
}

#[tokio::test]
async fn redrive_reopens_a_failed_execution() {
    let s = Server::start().await;
    s.define(json!({"name": "fragile", "steps": [
        {"id": "one", "type": "task", "capability": "do"}]}))
        .await;
    let agent = s.register(&["do"]).await;
    let id = s.start_execution("fragile", json!({})).await;
    let task = s.claim(&agent).await;
    s.post(
        &format!("/v1/tasks/{}/fail", task["id"].as_str().unwrap()),
        json!({"error": {"type": "bad", "message": "no"}}),
    )
    .await;
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "failed");
    assert_eq!(execution["error"]["type"], "bad");
    let (status, body) = s.post_empty(&format!("/v1/executions/{id}/redrive")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("running"))
    );
    let again = s.claim(&agent).await;
    s.post(
        &format!("/v1/tasks/{}/complete", again["id"].as_str().unwrap()),
        json!({"output": 7}),
    )
    .await;
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(
        (execution["status"].as_str(), &execution["output"]),
        (Some("completed"), &json!(7))
    );
    let answer = s.post_empty(&format!("/v1/executions/{id}/redrive")).await;
    assert_error(&answer, StatusCode::CONFLICT, "wrong_state");
}

#[tokio::test]
async fn a_signal_reaches_its_execution_with_its_payload() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let (status, body) = s
        .post(
            &format!("/v1/executions/{id}/signals/go"),
            json!({"payload": {"approved": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed");
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["output"], json!({"approved": true}));

    let position = s.position().await;
    let answer = s
        .post_empty(&format!("/v1/executions/{id}/signals/go"))
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "wrong_state");
    let answer = s
        .post_empty(&format!("/v1/executions/{id}/signals/{}", "%20bad"))
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let answer = s
        .post(
            &format!("/v1/executions/{id}/signals/go"),
            json!({"payload": 1, "extra": 2}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn a_published_event_reaches_every_waiting_execution_that_matches() {
    let s = Server::start().await;
    s.define(json!({"name": "approval", "steps": [
        {"id": "wait", "type": "event",
         "event": {"name": "expense.approved", "correlation": "input.expenseId"}}]}))
        .await;
    let first = s.start_execution("approval", json!({"expenseId": 1})).await;
    let second = s.start_execution("approval", json!({"expenseId": 2})).await;
    let (status, body) = s
        .post(
            "/v1/events/expense.approved",
            json!({"payload": {"by": "ann"}, "correlation": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["delivered"], json!([second]));
    let (_, execution) = s.get(&format!("/v1/executions/{second}")).await;
    assert_eq!(execution["status"], "completed");
    let (_, execution) = s.get(&format!("/v1/executions/{first}")).await;
    assert_eq!(execution["status"], "running");
    let (_, body) = s
        .post("/v1/events/expense.approved", json!({"correlation": 2}))
        .await;
    assert_eq!(body["delivered"], json!([]), "nobody waits any more");
    let answer = s.post("/v1/events/-bad", json!({})).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}

#[tokio::test]
async fn a_signal_answers_whether_a_step_took_it_or_it_is_kept() {
    let s = Server::start().await;
    // Waits for `go` at once.
    s.define(gated_chain("gated", 1)).await;
    let waiting = s.start_execution("gated", json!({})).await;
    let (status, body) = s
        .post(
            &format!("/v1/executions/{waiting}/signals/go"),
            json!({"payload": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "delivered");
    assert_eq!(body["step"], "gate");
    assert_eq!(body["activation"], 1);
    assert_eq!(body["status"], "completed");

    // A task comes first: nobody waits for `go` yet, so it is kept...
    s.define(json!({"name": "later", "steps": [
        {"id": "work", "type": "task", "capability": "work", "next": "gate"},
        {"id": "gate", "type": "event", "event": {"name": "go"}}]}))
        .await;
    let agent = s.register(&["work"]).await;
    let early = s.start_execution("later", json!({})).await;
    let (status, body) = s
        .post(&format!("/v1/executions/{early}/signals/go"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "kept");
    assert_eq!(body["step"], Value::Null);
    assert_eq!(body["status"], "running");
    // ...and the gate takes it when it starts.
    let task = s.claim(&agent).await;
    s.post(
        &format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    let (_, execution) = s.get(&format!("/v1/executions/{early}")).await;
    assert_eq!(execution["status"], "completed");
}

/// Signal-with-start: a key that names no execution starts one with the
/// signal recorded in its first append, before any step; the same key then
/// signals that execution; an ended one is `409`. Bad input records nothing.
#[tokio::test]
async fn signal_with_start_starts_once_then_signals_what_the_key_names() {
    let s = Server::start().await;
    s.define(json!({"name": "two_gates", "steps": [
        {"id": "first", "type": "event", "event": {"name": "go"}, "next": "second"},
        {"id": "second", "type": "event", "event": {"name": "go"}}
    ]}))
    .await;
    let call = |payload: Value| {
        json!({"workflow": "two_gates", "input": {"n": 1}, "idempotencyKey": "order-7",
               "signal": {"name": "go", "payload": payload}})
    };
    let (status, first) = s
        .post("/v1/executions/signal-with-start", call(json!("one")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["created"], true);
    assert_eq!(first["outcome"], "kept");
    assert_eq!(first["status"], "running");
    let id = first["id"].as_str().unwrap().to_owned();
    // The signal is in the start's append, before the first step: which took it.
    let kinds = s.kinds(&id).await;
    assert_eq!(
        kinds[..5],
        [
            "execution_started",
            "signal_received",
            "step_started",
            "event_awaited",
            "signal_taken"
        ]
    );
    let (status, second) = s
        .post("/v1/executions/signal-with-start", call(json!("two")))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["id"], id.as_str());
    assert_eq!(second["created"], false);
    assert_eq!(second["outcome"], "delivered");
    assert_eq!(second["step"], "second");
    assert_eq!(second["status"], "completed");
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["output"], "two");
    // Ended: refused, nothing recorded.
    let before = s.position().await;
    let ended = s
        .post("/v1/executions/signal-with-start", call(json!("three")))
        .await;
    assert_error(&ended, StatusCode::CONFLICT, "wrong_state");
    assert_eq!(s.position().await, before);
    for (bad, status, code) in [
        (
            json!({"workflow": "two_gates", "signal": {"name": "go"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"workflow": "two_gates", "idempotencyKey": "k2", "signal": {"name": " go"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"workflow": "two_gates", "idempotencyKey": "", "signal": {"name": "go"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"workflow": "nobody", "idempotencyKey": "k3", "signal": {"name": "go"}}),
            StatusCode::NOT_FOUND,
            "unknown_workflow",
        ),
    ] {
        let answer = s
            .post("/v1/executions/signal-with-start", bad.clone())
            .await;
        assert_error(&answer, status, code);
        assert_eq!(s.position().await, before, "{bad} recorded something");
    }
}

/// An event name with a secret is taken only signed: not through
/// signal-with-start, which starts nothing then.
#[tokio::test]
async fn signal_with_start_refuses_a_name_that_must_be_signed() {
    let config = retrace_api::ApiConfig {
        event_secrets: retrace_api::webhook::Secrets::parse(&["go=whsec_c2VjcmV0".to_owned()])
            .unwrap(),
        ..Default::default()
    };
    let s = Server::with_config(config).await;
    s.define(gated_chain("gated", 1)).await;
    let before = s.position().await;
    let answer = s
        .post(
            "/v1/executions/signal-with-start",
            json!({"workflow": "gated", "idempotencyKey": "k", "signal": {"name": "go"}}),
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_signature");
    assert_eq!(s.position().await, before);
}
