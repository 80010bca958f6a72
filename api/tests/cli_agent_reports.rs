//! `retrace agent` sends a task's result again while the server cannot
//! take it for now (`503`: its journal refuses writes for a moment, or the
//! server holding what it names is not known yet, a partition moving
//! between servers on NATS), instead of dropping it and leaving the task
//! claimed until its lease ends. The server here is a stand-in that
//! answers the first two reports `503`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use cli_support::Agent;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_refused_for_now_is_sent_again_until_taken() {
    let reports = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/v1/agents",
            post(|| async { (StatusCode::CREATED, Json(json!({"id": "agent-1"}))) }),
        )
        .route(
            "/v1/tasks/poll",
            post({
                let polls = polls.clone();
                move || async move {
                    let tasks = if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                        json!([{
                            "id": "task-1", "executionId": "e-1", "stepId": "s", "capability": "c",
                            "attempt": 1, "input": {"n": 1}, "leaseMs": 60000
                        }])
                    } else {
                        // Nothing more: the next poll waits a moment, as a
                        // long poll with no task does.
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        json!([])
                    };
                    Json(json!({ "tasks": tasks }))
                }
            }),
        )
        .route(
            "/v1/tasks/task-1/complete",
            post({
                let reports = reports.clone();
                move |Json(body): Json<Value>| async move {
                    assert_eq!(body["output"], json!({"n": 1}));
                    if reports.fetch_add(1, Ordering::SeqCst) < 2 {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(json!({"error": {"code": "storage_unavailable", "message": "not now"}})),
                        )
                    } else {
                        (StatusCode::OK, Json(json!({})))
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut agent = Agent::start(&base, &["--capability", "c"]);
    let said = agent.said("task task-1").await;
    assert!(said.contains("completed"), "{said}");
    assert_eq!(
        reports.load(Ordering::SeqCst),
        3,
        "sent until taken, once taken"
    );
    agent.stop().await;
    server.abort();
}
