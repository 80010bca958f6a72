//! `/v1/agents`: register, list, read, heartbeat, unregister.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn an_agent_registers_is_listed_heartbeats_and_unregisters() {
    let s = Server::start().await;
    let (status, body) = s
        .post(
            "/v1/agents",
            json!({"name": "resizer", "capabilities": ["images.resize", "images.crop"], "maxConcurrency": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    let (status, list) = s.get("/v1/agents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
    let (status, agent) = s.get(&format!("/v1/agents/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent["name"], "resizer");
    assert_eq!(
        agent["capabilities"],
        json!(["images.crop", "images.resize"])
    );
    assert_eq!(agent["maxConcurrency"], 4);
    assert_eq!(agent["status"], "online");
    assert!(agent["lastSeen"].as_str().unwrap().ends_with('Z'));
    // Nothing ended yet: full slots, the best score.
    assert_eq!(
        agent["health"],
        json!({"recentTasks": 0, "recentFailures": 0, "recentAverageTaskMs": 0.0,
               "slots": 4, "score": 1.0})
    );

    let (status, beat) = s.post_empty(&format!("/v1/agents/{id}/heartbeat")).await;
    assert_eq!(status, StatusCode::OK, "{beat}");
    assert_eq!(beat["id"], id.as_str());

    let (status, gone) = s.delete(&format!("/v1/agents/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert_eq!(gone["requeued"], json!([]));
    for answer in [
        s.get(&format!("/v1/agents/{id}")).await,
        s.delete(&format!("/v1/agents/{id}")).await,
        s.post_empty(&format!("/v1/agents/{id}/heartbeat")).await,
    ] {
        assert_error(&answer, StatusCode::NOT_FOUND, "unknown_agent");
    }
    assert_eq!(s.get("/v1/agents").await.1["agents"], json!([]));
}

#[tokio::test]
async fn a_registration_that_breaks_a_rule_is_refused() {
    let s = Server::start().await;
    let answer = s
        .post("/v1/agents", json!({"name": "x", "capabilities": []}))
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_registration",
    );
    let answer = s
        .post(
            "/v1/agents",
            json!({"name": "x", "capabilities": ["Not Valid"]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_registration",
    );
    let answer = s
        .post("/v1/agents", json!({"name": "x", "capabilities": "do"}))
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let answer = s
        .post(
            "/v1/agents",
            json!({"name": "x", "capabilities": ["do"], "maxConcurrency": -1}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert_error(
        &s.get("/v1/agents/not-a-uuid").await,
        StatusCode::NOT_FOUND,
        "unknown_agent",
    );
    assert_eq!(s.get("/v1/agents").await.1["agents"], json!([]));
}

#[tokio::test]
async fn a_step_that_requires_an_agent_version_goes_only_to_agents_inside_it() {
    let s = Server::start().await;
    s.define(json!({"name": "resize", "steps": [
        {"id": "thumb", "type": "task", "capability": "img", "agentVersion": ">=2.1"}
    ]}))
    .await;
    let register = |version: &str| {
        json!({"name": format!("v{version}"), "capabilities": ["img"],
               "version": version, "heartbeatTimeoutMs": 5000})
    };
    let (status, old) = s.post("/v1/agents", register("2.0.9")).await;
    assert_eq!(status, StatusCode::CREATED, "{old}");
    let (_, new) = s.post("/v1/agents", register("2.1.0")).await;
    let (_, shown) = s
        .get(&format!("/v1/agents/{}", new["id"].as_str().unwrap()))
        .await;
    assert_eq!(shown["version"], "2.1.0");
    assert_eq!(shown["heartbeatTimeoutMs"], 5000);
    s.start_execution("resize", json!({})).await;
    let poll = |agent: &Value| json!({"agentId": agent["id"], "waitMs": 0});
    let (_, none) = s.post("/v1/tasks/poll", poll(&old)).await;
    assert_eq!(none["tasks"], json!([]), "the old agent may not take it");
    let (_, some) = s.post("/v1/tasks/poll", poll(&new)).await;
    assert_eq!(some["tasks"].as_array().unwrap().len(), 1, "{some}");

    for (bad, says) in [
        (json!({"version": "2.1"}), "not a semantic version"),
        (
            json!({"heartbeatTimeoutMs": 10}),
            "heartbeatTimeoutMs must be 1000",
        ),
    ] {
        let mut body = json!({"name": "x", "capabilities": ["img"]});
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let answer = s.post("/v1/agents", body).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_registration",
        );
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // A requirement that is not one is refused with the definition.
    let (status, refused) = s
        .post(
            "/v1/workflows",
            json!({"name": "bad", "steps": [
                {"id": "a", "type": "task", "capability": "img", "agentVersion": "newest"}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused.to_string().contains("is not a version requirement"),
        "{refused}"
    );
}
