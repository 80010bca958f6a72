//! `/v1/agents`: register, list, read, heartbeat, unregister.

use reqwest::StatusCode;
use serde_json::json;

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
