//! The built-in `http` capability through the API: a workflow defined,
//! started and streamed over HTTP whose task the engine performs itself
//! against a server of the test's own (axum on `127.0.0.1:0`), with a
//! secret that reaches that server but no answer, event or stream of the
//! API; and a literal input of the wrong shape refused when it is defined.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use retrace_api::ApiConfig;
use retrace_engine::http::{AddressPolicy, HttpOptions, Secrets};
use retrace_engine::runtime::EngineConfig;
use serde_json::json;

use crate::support::*;

const SECRET: &str = "api-s3cr3t-7Hq2Lm9Xv";

/// A server that answers every request with the headers it got, as JSON
/// and in `x-seen-authorization`; the headers of each request, logged.
async fn echo_server() -> (String, Arc<Mutex<Vec<BTreeMap<String, String>>>>) {
    let seen: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
    let log = seen.clone();
    let router = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let log = log.clone();
        async move {
            let headers: BTreeMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            log.lock().unwrap().push(headers.clone());
            let authorization = headers.get("authorization").cloned().unwrap_or_default();
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .header("x-seen-authorization", authorization)
                .body(axum::body::Body::from(
                    json!({"ok": true, "headers": headers}).to_string(),
                ))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn server_with_http() -> Server {
    Server::with_configs(ApiConfig::default(), |engine| EngineConfig {
        http: HttpOptions {
            policy: AddressPolicy::parse(&["127.0.0.1/32".to_owned()], &[]).unwrap(),
            secrets: Secrets::from_sources([("API_TOKEN".to_owned(), SECRET.to_owned())], [])
                .unwrap(),
            ..HttpOptions::default()
        },
        ..engine
    })
    .await
}

#[tokio::test]
async fn an_http_task_is_performed_by_the_engine_and_shown_like_any_task() {
    let s = server_with_http().await;
    let (base, seen) = echo_server().await;
    s.define(json!({"name": "call_out", "steps": [
        {"id": "call", "type": "task", "capability": "http",
         "input": {"method": "GET", "url": format!("{base}/status"),
                   "headers": {"Authorization": "Bearer ${ secret('API_TOKEN') }"}},
         "output": {"answer": "$.output.body"}}
    ]}))
    .await;
    let id = s.start_execution("call_out", json!({})).await;
    let frames = s.stream_to_end(&id).await;
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| f.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        kinds
            .windows(2)
            .any(|w| w == ["task_scheduled", "task_completed"]),
        "{kinds:?}"
    );
    let completed = frames
        .iter()
        .map(Frame::json)
        .find(|e| e["type"] == "task_completed")
        .unwrap();
    assert_eq!(completed["data"]["agent"], "http (built-in)", "{completed}");

    let (status, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["output"]["status"], 200, "{execution}");
    assert_eq!(
        execution["output"]["headers"]["x-seen-authorization"],
        "Bearer [redacted]"
    );
    assert_eq!(
        execution["variables"]["answer"]["headers"]["authorization"],
        "Bearer [redacted]"
    );

    // The value went out, and nothing the API shows holds it.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(seen[0]["idempotency-key"], format!("{id}.1"));
    let (_, events) = s
        .get(&format!("/v1/executions/{id}/events?limit=1000"))
        .await;
    for shown in [
        execution.to_string(),
        events.to_string(),
        frames
            .iter()
            .map(|f| f.data.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    ] {
        assert!(!shown.contains(SECRET), "{shown}");
    }
    assert!(events.to_string().contains("secret('API_TOKEN')"));
}

#[tokio::test]
async fn a_literal_input_of_the_wrong_shape_is_refused_when_defined() {
    let s = server_with_http().await;
    let position = s.position().await;
    let answer = s
        .post(
            "/v1/workflows",
            json!({"name": "bad_call", "steps": [
                {"id": "call", "type": "task", "capability": "http",
                 "input": {"method": "GRAB", "url": "ftp://example.com/",
                           "headers": {"Authorization": "Bearer ${ secret(TOKEN) }"}}}
            ]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    );
    let details: Vec<(String, String)> = answer.1["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_owned(),
                d["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let paths: Vec<&str> = details.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        // The malformed reference is found as the header's template is
        // read (language 2), before the shape of the literal parts.
        [
            "steps[0].input.headers.Authorization",
            "steps[0].input.method",
            "steps[0].input.url",
        ],
        "{details:?}"
    );
    assert!(details[2].1.contains("must be an http:// or https:// URL"));
    assert!(
        details[0]
            .1
            .contains("does not complete a secret reference")
    );
    assert_eq!(s.position().await, position, "nothing recorded");
}

#[tokio::test]
async fn a_failed_request_carries_its_type_retryability_and_retry_after() {
    let s = server_with_http().await;
    let router = axum::Router::new().fallback(|| async {
        axum::response::Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body(axum::body::Body::from("slow down"))
            .unwrap()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    s.define(json!({"name": "limited", "steps": [
        {"id": "call", "type": "task", "capability": "http",
         "input": {"method": "POST", "url": format!("http://{addr}/"), "body": {"n": 1}}}
    ]}))
    .await;
    let id = s.start_execution("limited", json!({})).await;
    let frames = s.stream_to_end(&id).await;
    let failed = frames
        .iter()
        .map(Frame::json)
        .find(|e| e["type"] == "task_failed")
        .unwrap();
    let failed = &failed["data"];
    assert_eq!(failed["retryAfterMs"], 7000, "{failed}");
    assert_eq!(failed["error"]["type"], "http_429");
    assert_eq!(failed["error"]["retryable"], true);
    assert_eq!(failed["error"]["agent"], "http (built-in)");
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(
        execution["status"], "failed",
        "no retry policy: one attempt"
    );
}
