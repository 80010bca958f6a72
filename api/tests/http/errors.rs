//! Bad requests get the documented status and code in the one JSON error
//! shape — the framework's own rejections included — and record nothing.

use reqwest::StatusCode;
use retrace_api::ApiConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn malformed_json_is_400_and_records_nothing() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let position = s.position().await;
    for path in [
        "/v1/executions".to_owned(),
        "/v1/agents".to_owned(),
        "/v1/tasks/poll".to_owned(),
        format!("/v1/executions/{id}/pause"),
        format!("/v1/executions/{id}/signals/go"),
        "/v1/events/go".to_owned(),
    ] {
        // Each is broken before any field could be judged.
        for body in ["{", "not json", "{,}", "{\"", "[1,"] {
            let answer = s.post_raw(&path, "application/json", body).await;
            assert_error(&answer, StatusCode::BAD_REQUEST, "malformed_json");
        }
    }
    assert_eq!(s.position().await, position);
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "running");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_422_and_records_nothing() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let position = s.position().await;
    let cases = [
        ("/v1/executions".to_owned(), json!({"workflow": 5})),
        ("/v1/executions".to_owned(), json!({"input": {}})),
        (
            "/v1/executions".to_owned(),
            json!({"workflow": "gated", "inputs": {}}),
        ),
        ("/v1/executions".to_owned(), json!(["gated"])),
        (
            format!("/v1/executions/{id}/cancel"),
            json!({"compensate": "yes"}),
        ),
        (format!("/v1/executions/{id}/pause"), json!({"reason": 3})),
        (format!("/v1/executions/{id}/resume"), json!({"now": true})),
        (
            "/v1/tasks/poll".to_owned(),
            json!({"agentId": "a", "waitMs": -5}),
        ),
    ];
    for (path, body) in cases {
        let answer = s.post(&path, body.clone()).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let position = s.position().await;
    let start = json!({"workflow": "gated"}).to_string();
    let answer = s
        .post_raw("/v1/executions", "text/plain", start.clone())
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // What `curl -d` sends: a form is never read as JSON (a web page could
    // send one cross-origin), and the message tells the curl user the fix.
    let answer = s
        .post_raw(
            "/v1/executions",
            "application/x-www-form-urlencoded",
            start.clone(),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--json")),
        "{}",
        answer.1
    );
    let answer = s
        .post_raw(&format!("/v1/executions/{id}/pause"), "text/plain", "{}")
        .await;
    assert_error(
        &answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // No Content-Type at all.
    let response = s
        .client
        .post(s.url("/v1/executions"))
        .body(start)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let s = Server::start().await;
    // (`/` is the dashboard's page; its files are only those it embeds.)
    for path in [
        "/ui/nothing.js",
        "/ui",
        "/v1",
        "/v1/nothing",
        "/v2/executions",
        "/v1/executions/x/y/z",
    ] {
        assert_error(&s.get(path).await, StatusCode::NOT_FOUND, "not_found");
    }
    let response = s
        .client
        .delete(s.url("/v1/executions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_error(
        &s.post_empty("/healthz").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &s.get("/v1/tasks/poll").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn unknown_ids_are_404_and_record_nothing() {
    let s = Server::start().await;
    let absent = "0190f3c2-0000-7000-8000-000000000000";
    // The nil id is where the engine keeps workflow definitions: not an
    // execution either.
    let nil = "00000000-0000-0000-0000-000000000000";
    s.define(inline_chain("defined", 1)).await;
    let position = s.position().await;
    for id in [absent, "not-an-id", nil] {
        for path in [
            format!("/v1/executions/{id}"),
            format!("/v1/executions/{id}/events"),
            format!("/v1/executions/{id}/events/stream"),
        ] {
            assert_error(
                &s.get(&path).await,
                StatusCode::NOT_FOUND,
                "unknown_execution",
            );
        }
        for command in [
            "pause",
            "resume",
            "cancel",
            "terminate",
            "retry",
            "skip",
            "redrive",
            "signals/go",
        ] {
            let answer = s
                .post_empty(&format!("/v1/executions/{id}/{command}"))
                .await;
            assert_error(&answer, StatusCode::NOT_FOUND, "unknown_execution");
        }
    }
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn a_bad_last_event_id_is_400() {
    let s = Server::start().await;
    s.define(inline_chain("quick", 1)).await;
    let id = s.start_execution("quick", json!({})).await;
    for path in [
        format!("/v1/executions/{id}/events/stream"),
        "/v1/events/stream".to_owned(),
    ] {
        let response = s
            .client
            .get(s.url(&path))
            .header("last-event-id", "seven")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_header");
    }
}

/// A server whose body limit is small enough to cross with one write.
async fn small_limit() -> Server {
    Server::with_config(ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    })
    .await
}

fn oversized_start() -> String {
    json!({"workflow": "w", "input": "x".repeat(1100)}).to_string()
}

#[tokio::test]
async fn an_oversized_body_is_413_and_records_nothing() {
    let s = small_limit().await;
    let position = s.position().await;
    for path in ["/v1/executions", "/v1/workflows", "/v1/events/go"] {
        let answer = s
            .post_raw(path, "application/json", oversized_start())
            .await;
        assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn an_oversized_chunked_body_is_413_too() {
    let s = small_limit().await;
    let position = s.position().await;
    let addr = s.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = oversized_start();
    let request = format!(
        "POST /v1/executions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, socket.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn a_large_body_under_the_limit_is_accepted() {
    let s = Server::start().await;
    s.define(inline_chain("big", 1)).await;
    let input = "x".repeat(512 * 1024);
    let (status, body) = s
        .post("/v1/executions", json!({"workflow": "big", "input": input}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(ApiConfig::default().max_body_bytes, 1024 * 1024);
}

#[tokio::test]
async fn health_and_readiness() {
    let s = Server::start().await;
    assert_eq!(
        s.get("/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        s.get("/readyz").await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
    s.state.shutdown.trigger();
    assert_error(
        &s.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert_eq!(s.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn cors_is_off_unless_configured() {
    let s = Server::start().await;
    let response = s
        .client
        .get(s.url("/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let s = Server::with_config(ApiConfig {
        cors_origins: vec!["https://app.example".parse().unwrap()],
        ..ApiConfig::default()
    })
    .await;
    let response = s
        .client
        .get(s.url("/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

/// A JSON array where an object is expected is refused, not read as the
/// object's fields in order, and records nothing.
#[tokio::test]
async fn an_array_for_a_start_is_422_and_starts_nothing() {
    let s = Server::start().await;
    s.define(inline_chain("base", 1)).await;
    let position = s.position().await;
    let answer = s
        .post(
            "/v1/executions",
            json!(["base", null, {"via": "array"}, "arr-key"]),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("expected an object"), "{message}");
    assert_eq!(s.position().await, position);
    let (_, list) = s.get("/v1/executions").await;
    assert_eq!(list["executions"], json!([]), "{list}");
}

#[tokio::test]
async fn an_array_for_a_task_result_is_422_and_accepts_nothing() {
    let s = Server::start().await;
    s.define(json!({"name": "one", "steps": [
        {"id": "call", "type": "task", "capability": "work"}]}))
        .await;
    let agent = s.register(&["work"]).await;
    s.start_execution("one", json!({})).await;
    let task = s.claim(&agent).await;
    let task_id = task["id"].as_str().unwrap();
    let position = s.position().await;
    let complete = format!("/v1/tasks/{task_id}/complete");
    let fail = format!("/v1/tasks/{task_id}/fail");
    let heartbeat = format!("/v1/tasks/{task_id}/heartbeat");
    let cases = [
        // At the top level.
        (complete.clone(), json!([["x", false, -180]])),
        (complete.clone(), json!([1, null])),
        (fail.clone(), json!([["t", "m", true]])),
        (heartbeat.clone(), json!([agent])),
        // Nested: a struct inside a struct, and inside an option.
        (
            complete.clone(),
            json!({"output": 1, "poll": [agent, 0, 1]}),
        ),
        (fail.clone(), json!({"error": ["t", "m", true]})),
        // Other values where an object is expected.
        (complete.clone(), json!("output")),
        (complete.clone(), json!(7)),
        (complete.clone(), json!(true)),
        (complete.clone(), json!({"output": 1, "poll": "now"})),
    ];
    for (path, body) in cases {
        let answer = s.post(&path, body.clone()).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("expected an object"), "{body}: {message}");
    }
    assert_eq!(s.position().await, position, "no result was recorded");
    // The task is still outstanding: the documented shape is taken.
    let (status, body) = s.post(&complete, json!({"output": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn arrays_for_any_body_are_422_and_record_nothing() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let agent = s.register(&["work"]).await;
    let position = s.position().await;
    let agents_before = s.get("/v1/agents").await.1;
    let cases = [
        ("/v1/agents".to_owned(), json!(["a", ["work"], 1])),
        ("/v1/tasks/poll".to_owned(), json!([agent, 0, 1])),
        (format!("/v1/executions/{id}/pause"), json!(["why"])),
        (format!("/v1/executions/{id}/cancel"), json!(["why", true])),
        (format!("/v1/executions/{id}/terminate"), json!(["why"])),
        (format!("/v1/executions/{id}/skip"), json!([1])),
        (format!("/v1/executions/{id}/signals/go"), json!([1, null])),
        ("/v1/events/go".to_owned(), json!([1, null])),
        (format!("/v1/agents/{agent}/heartbeat"), json!([])),
        (format!("/v1/executions/{id}/resume"), json!([])),
    ];
    for (path, body) in cases {
        let answer = s.post(&path, body.clone()).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("expected an object"),
            "{path} {body}: {message}"
        );
    }
    assert_eq!(s.position().await, position);
    assert_eq!(s.get("/v1/agents").await.1, agents_before);
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "running");
}
