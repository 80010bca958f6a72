//! Capability limits over real HTTP: set, read, list, change and remove;
//! every bad body refused whole with nothing recorded; an unknown one
//! `404`; the server's configuration's limits in force until the API sets
//! some, and again once those are removed; and a concurrency limit of 1
//! that keeps a second task queued, its step shown waiting for the limit,
//! until the first is completed, counted in `/metrics`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use retrace_api::ApiConfig;
use retrace_engine::limits::CapabilityLimits;
use serde_json::{Value, json};

use crate::support::*;

const RESIZE: &str = "/v1/capabilities/images.resize/limits";

/// Polls `GET path` until `done` holds for the answer; the answer.
async fn until(s: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never got there: {body}");
        // The interval between polls, not a wait standing in for one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `waiting` of the execution's only current step.
fn waiting(execution: &Value) -> &Value {
    let steps = execution["currentSteps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{execution}");
    &steps[0]["waiting"]
}

async fn metrics_text(s: &Server) -> String {
    s.client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn limits_are_set_read_listed_changed_and_removed() {
    let s = Server::start().await;
    assert_eq!(s.get("/v1/limits").await.1, json!({"capabilities": []}));
    let (status, set) = s
        .put(
            RESIZE,
            json!({"concurrency": 4, "rateLimit": {"limit": 100, "periodMs": 60_000}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["capability"], "images.resize");
    assert_eq!(set["concurrency"], 4);
    assert_eq!(set["rateLimit"], json!({"limit": 100, "periodMs": 60_000}));
    assert_eq!(set["source"], "api");
    assert!(set["setAt"].is_string(), "{set}");
    assert!(set.get("setBy").is_none(), "no tokens, no setBy: {set}");
    for zero in ["running", "inWindow", "queued"] {
        assert_eq!(set[zero], 0, "{zero}: {set}");
    }

    let (status, shown) = s.get(RESIZE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, set);
    assert_eq!(
        s.get("/v1/limits").await.1,
        json!({"capabilities": [set.clone()]})
    );

    // Changed: only what is given now is in force.
    let (status, changed) = s
        .put(
            RESIZE,
            json!({"rateLimit": {"limit": 1e1, "periodMs": 1000.0}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert!(changed.get("concurrency").is_none(), "{changed}");
    assert_eq!(changed["rateLimit"], json!({"limit": 10, "periodMs": 1000}));
    let (status, other) = s
        .put(
            "/v1/capabilities/billing:charge/limits",
            json!({"concurrency": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    let (_, listed) = s.get("/v1/limits").await;
    let order: Vec<&str> = listed["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["capability"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["billing:charge", "images.resize"]);

    // Removed: `204`, then gone.
    let (status, removed) = s.delete(RESIZE).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{removed}");
    assert_eq!(removed, Value::Null);
    assert_error(
        &s.get(RESIZE).await,
        StatusCode::NOT_FOUND,
        "unknown_limits",
    );
    assert_error(
        &s.delete(RESIZE).await,
        StatusCode::NOT_FOUND,
        "unknown_limits",
    );
    let (_, listed) = s.get("/v1/limits").await;
    assert_eq!(listed["capabilities"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_bad_body_is_refused_whole_and_records_nothing() {
    let s = Server::start().await;
    let position = s.position().await;
    for (path, body, says) in [
        (
            RESIZE,
            json!({"concurrency": 0}),
            "concurrency: must be from 1 to 100000, not 0",
        ),
        (
            RESIZE,
            json!({"concurrency": 100_001}),
            "concurrency: must be from 1 to 100000, not 100001",
        ),
        (
            RESIZE,
            json!({"rateLimit": {"limit": 0, "periodMs": 1000}}),
            "rateLimit.limit: must be from 1 to 100000, not 0",
        ),
        (
            RESIZE,
            json!({"rateLimit": {"limit": 5, "periodMs": 0}}),
            "rateLimit.periodMs: must be from 1",
        ),
        (RESIZE, json!({}), "give `concurrency`, `rateLimit` or both"),
        (
            "/v1/capabilities/Images/limits",
            json!({"concurrency": 1}),
            "capability `Images` is not well-formed",
        ),
        (
            "/v1/capabilities/-images/limits",
            json!({"concurrency": 1}),
            "capability `-images` is not well-formed",
        ),
        (
            RESIZE,
            json!({"concurrency": 1, "burst": 2}),
            "unknown field `burst`",
        ),
        (RESIZE, json!({"concurrency": "4"}), "invalid type"),
        (RESIZE, json!({"concurrency": 1.5}), "invalid type"),
        (RESIZE, json!({"concurrency": -1}), "invalid value"),
        (RESIZE, json!({"rateLimit": 100}), "invalid type"),
        (
            RESIZE,
            json!({"rateLimit": {"limit": 100}}),
            "missing field `periodMs`",
        ),
        (
            RESIZE,
            json!({"rateLimit": {"limit": 100, "periodms": 1000}}),
            "unknown field `periodms`",
        ),
    ] {
        let answer = s.put(path, body.clone()).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_limits");
        let error = &answer.1["error"];
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid limits ("),
            "{path} {body}: {message}"
        );
        let details = error["details"].to_string();
        assert!(details.contains(says), "{path} {body}: {details}");
    }
    // A wrong type names its field.
    let answer = s.put(RESIZE, json!({"concurrency": "4"})).await;
    assert_eq!(answer.1["error"]["details"][0]["path"], "concurrency");
    let answer = s
        .put(
            RESIZE,
            json!({"rateLimit": {"limit": "5", "periodMs": 1000}}),
        )
        .await;
    assert_eq!(answer.1["error"]["details"][0]["path"], "rateLimit.limit");
    // Several problems at once, each in `details`.
    let answer = s
        .put(
            "/v1/capabilities/-x/limits",
            json!({"concurrency": 0, "rateLimit": {"limit": 0, "periodMs": 0}}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_limits");
    assert_eq!(answer.1["error"]["message"], "invalid limits (4 problems)");
    assert_eq!(answer.1["error"]["details"].as_array().unwrap().len(), 4);
    // Not an object, not JSON, not said to be JSON: as everywhere.
    let answer = s.put(RESIZE, json!([1])).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let response = s
        .client
        .put(s.url(RESIZE))
        .header("content-type", "application/json")
        .body("{\"concurrency\":")
        .send()
        .await
        .unwrap();
    assert_error(
        &crate::support::answer(response).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    let response = s
        .client
        .put(s.url(RESIZE))
        .body("{\"concurrency\":1}")
        .send()
        .await
        .unwrap();
    assert_error(
        &crate::support::answer(response).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_eq!(s.position().await, position, "a refusal recorded something");
    assert_eq!(s.get("/v1/limits").await.1, json!({"capabilities": []}));
}

#[tokio::test]
async fn unknown_limits_are_404_and_removing_them_records_nothing() {
    let s = Server::start().await;
    let position = s.position().await;
    for answer in [
        s.get("/v1/capabilities/nobody/limits").await,
        s.delete("/v1/capabilities/nobody/limits").await,
        // Not even a capability: no limits either.
        s.get("/v1/capabilities/No%20Body/limits").await,
    ] {
        assert_error(&answer, StatusCode::NOT_FOUND, "unknown_limits");
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("has no limits"), "{message}");
    }
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn the_configurations_limits_hold_until_the_api_sets_some_and_again_once_removed() {
    let configured = CapabilityLimits {
        concurrency: Some(2),
        rate_limit: None,
    };
    let s = Server::with_configs(ApiConfig::default(), move |mut engine| {
        engine.capability_limits = BTreeMap::from([("images.resize".to_owned(), configured)]);
        engine
    })
    .await;
    let (status, shown) = s.get(RESIZE).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(
        shown,
        json!({"capability": "images.resize", "concurrency": 2, "source": "config",
            "running": 0, "inWindow": 0, "queued": 0})
    );
    assert_eq!(
        s.get("/v1/limits").await.1,
        json!({"capabilities": [shown.clone()]})
    );
    // The configuration's cannot be removed.
    let position = s.position().await;
    let refused = s.delete(RESIZE).await;
    assert_error(&refused, StatusCode::NOT_FOUND, "unknown_limits");
    let message = refused.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("configuration"), "{message}");
    assert_eq!(s.position().await, position);

    // The API's win while they are set.
    let (status, set) = s.put(RESIZE, json!({"concurrency": 8})).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        (&set["concurrency"], &set["source"]),
        (&json!(8), &json!("api"))
    );
    assert_eq!(s.get(RESIZE).await.1, set);
    let (status, _) = s.delete(RESIZE).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(RESIZE).await.1, shown);
}

#[tokio::test]
async fn a_task_over_the_concurrency_limit_stays_queued_and_says_what_holds_it() {
    let s = Server::start().await;
    s.define(json!({"name": "resize", "steps": [
        {"id": "resize", "type": "task", "capability": "images.resize"}]}))
        .await;
    let (status, set) = s
        .put(
            RESIZE,
            json!({"concurrency": 1, "rateLimit": {"limit": 100, "periodMs": 3_600_000}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let (status, registered) = s
        .post(
            "/v1/agents",
            json!({"name": "resizer", "capabilities": ["images.resize"], "maxConcurrency": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let agent = registered["id"].as_str().unwrap().to_owned();

    let first = s.start_execution("resize", json!({"n": 1})).await;
    let second = s.start_execution("resize", json!({"n": 2})).await;
    let queued = until(&s, RESIZE, |l| l["queued"] == 2).await;
    assert_eq!(queued["running"], 0, "{queued}");

    // The agent has room for ten; the capability for one.
    let (status, polled) = s
        .post(
            "/v1/tasks/poll",
            json!({"agentId": agent, "waitMs": PATIENCE.as_millis() as u64, "max": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{polled}");
    let tasks = polled["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{polled}");
    let task = tasks[0]["id"].as_str().unwrap().to_owned();
    assert!(task.starts_with(&first), "the older task first: {task}");
    let (status, polled) = s
        .post(
            "/v1/tasks/poll",
            json!({"agentId": agent, "waitMs": 0, "max": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{polled}");
    assert_eq!(polled["tasks"], json!([]), "{polled}");

    // The claimed task's step waits for its task; the other's for the
    // limit, with its task's fields kept.
    let (_, running) = s.get(&format!("/v1/executions/{first}")).await;
    assert_eq!(waiting(&running)["for"], "task", "{running}");
    let (_, held) = s.get(&format!("/v1/executions/{second}")).await;
    assert_eq!(held["status"], "running", "{held}");
    let w = waiting(&held);
    assert_eq!(w["for"], "limit", "{held}");
    assert_eq!(w["name"], "concurrency", "{held}");
    assert_eq!(w["key"], "images.resize", "{held}");
    assert_eq!(w["limit"], 1, "{held}");
    assert_eq!(w["inUse"], 1, "{held}");
    assert_eq!(w["capability"], "images.resize", "{held}");
    assert_eq!(w["attempt"], 1, "{held}");
    assert!(w["task"].as_str().unwrap().starts_with(&second), "{held}");
    assert!(
        !s.kinds(&second).await.contains(&"task_failed".to_owned()),
        "held, not failed"
    );
    let (_, limits) = s.get(RESIZE).await;
    assert_eq!(
        (&limits["running"], &limits["inWindow"], &limits["queued"]),
        (&json!(1), &json!(1), &json!(1)),
        "{limits}"
    );
    let text = metrics_text(&s).await;
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "# TYPE retrace_capability_tasks_running gauge",
        "# TYPE retrace_capability_claims_in_window gauge",
        "retrace_capability_tasks_running{capability=\"images.resize\"} 1",
        "retrace_capability_claims_in_window{capability=\"images.resize\"} 1",
    ] {
        assert!(lines.contains(&expected), "no `{expected}` in:\n{text}");
    }

    // The first completed, the second is claimed.
    let (status, done) = s
        .post(
            &format!("/v1/tasks/{task}/complete"),
            json!({"output": {"ok": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let next = s.claim(&agent).await;
    assert!(next["id"].as_str().unwrap().starts_with(&second), "{next}");
    let (_, now) = s.get(&format!("/v1/executions/{second}")).await;
    assert_eq!(waiting(&now)["for"], "task", "{now}");
    until(&s, &format!("/v1/executions/{first}"), |e| {
        e["status"] == "completed"
    })
    .await;
    let (_, limits) = s.get(RESIZE).await;
    assert_eq!(
        (&limits["running"], &limits["inWindow"], &limits["queued"]),
        (&json!(1), &json!(2), &json!(0)),
        "{limits}"
    );
    let text = metrics_text(&s).await;
    assert!(
        text.lines()
            .any(|l| l == "retrace_capability_claims_in_window{capability=\"images.resize\"} 2"),
        "{text}"
    );
}
