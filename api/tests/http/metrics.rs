//! `GET /metrics` (Prometheus text) and `GET /v1/metrics` (JSON) show what
//! the engine did.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::Server;

async fn run_one(server: &Server) -> String {
    server
        .define(json!({"name": "measured", "steps": [
            {"id": "work", "type": "task", "capability": "build"}]}))
        .await;
    let agent = server.register(&["build"]).await;
    let id = server.start_execution("measured", json!({})).await;
    let task = server.claim(&agent).await;
    let (status, _) = server
        .post(
            &format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap()),
            json!({"output": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.stream_to_end(&id).await;
    id
}

#[tokio::test]
async fn prometheus_text_counts_executions_tasks_and_the_journal() {
    let server = Server::start().await;
    run_one(&server).await;
    let open = server.stream("/v1/events/stream", None).await;
    let r = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = r.text().await.unwrap();
    for line in [
        "retrace_executions{status=\"completed\"} 1",
        "retrace_executions{status=\"running\"} 0",
        "retrace_workflow_executions_started_total{workflow=\"measured\"} 1",
        "retrace_workflow_executions_ended_total{workflow=\"measured\",status=\"completed\"} 1",
        "retrace_steps_total{workflow=\"measured\",step=\"work\"} 1",
        "retrace_tasks_total{capability=\"build\"} 1",
        "retrace_task_errors_total{capability=\"build\"} 0",
        "retrace_agents{status=\"online\"} 1",
        "retrace_sse_clients 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("retrace_journal_appends_total "));
    assert!(text.ends_with("# EOF\n"));
    drop(open);
}

#[tokio::test]
async fn json_metrics_show_system_and_workflow_figures() {
    let server = Server::start().await;
    run_one(&server).await;
    let (status, body) = server.get("/v1/metrics").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["system"]["activeWorkflows"], json!(0));
    assert_eq!(body["system"]["totalTasksProcessed"], json!(1));
    assert_eq!(body["system"]["executionsByStatus"]["completed"], json!(1));
    assert_eq!(body["system"]["healthStatus"], json!("healthy"));
    let w = &body["workflows"]["measured"];
    assert_eq!(
        (w["totalExecutions"].clone(), w["successRate"].clone()),
        (json!(1), json!(1.0))
    );
    assert_eq!(w["stepMetrics"]["work"]["count"], json!(1));
    assert_eq!(body["capabilities"]["build"]["count"], json!(1));
}
