//! Circuit breakers over real HTTP: set, read, list, change and remove;
//! every bad setting refused whole with nothing recorded; an unknown one
//! `404`; a breaker that opens on a failure and fails the next task
//! fast, seen in its view and in `/metrics`; and a per-agent one that
//! keeps the failing agent away while another serves, shown per agent.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const FLAKY: &str = "/v1/capabilities/flaky/breaker";

/// `ms` since the Unix epoch of an RFC 3339 instant the API wrote.
fn ms(text: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

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

#[tokio::test]
async fn a_breaker_is_set_read_listed_changed_and_removed() {
    let s = Server::start().await;
    assert_eq!(s.get("/v1/breakers").await.1, json!({"breakers": []}));
    let settings = json!({"failures": 3, "windowMs": 60_000, "coolDownMs": 30_000});
    let (status, set) = s.put(FLAKY, settings).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["capability"], "flaky");
    assert_eq!(set["failures"], 3);
    assert_eq!(set["windowMs"], 60_000);
    assert_eq!(set["coolDownMs"], 30_000);
    assert_eq!(set["state"], "closed");
    assert_eq!(set["recentFailures"], 0);
    assert_eq!(set["opened"], 0);
    assert_eq!(set["perAgent"], false);
    assert_eq!(set["changedAt"], set["setAt"]);
    for absent in ["openedAt", "setBy", "agents"] {
        assert!(set.get(absent).is_none(), "{absent}: {set}");
    }

    let (status, shown) = s.get(FLAKY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, set);
    let (status, listed) = s.get("/v1/breakers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!({"breakers": [set]}));

    // Changed: the new settings, the state kept; listed by capability.
    let (status, changed) = s
        .put(
            FLAKY,
            json!({"failures": 10.0, "windowMs": 1e3, "coolDownMs": 86_400_000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (
            &changed["failures"],
            &changed["windowMs"],
            &changed["coolDownMs"]
        ),
        (&json!(10), &json!(1000), &json!(86_400_000))
    );
    assert_eq!(changed["state"], "closed");
    assert!(ms(&changed["setAt"]) >= ms(&set["setAt"]));
    let (status, other) = s
        .put(
            "/v1/capabilities/billing:charge/breaker",
            json!({"failures": 1, "windowMs": 1000, "coolDownMs": 1000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    let (_, listed) = s.get("/v1/breakers").await;
    let order: Vec<&str> = listed["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["capability"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["billing:charge", "flaky"]);

    // Removed: answered as it was, then gone.
    let (status, removed) = s.delete(FLAKY).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["failures"], 10);
    assert_error(
        &s.get(FLAKY).await,
        StatusCode::NOT_FOUND,
        "unknown_breaker",
    );
    let (_, listed) = s.get("/v1/breakers").await;
    assert_eq!(listed["breakers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_bad_setting_is_refused_whole_and_records_nothing() {
    let s = Server::start().await;
    let base = json!({"failures": 3, "windowMs": 60_000, "coolDownMs": 30_000});
    let with = |change: Value| {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let position = s.position().await;
    for (path, body, says) in [
        (
            FLAKY,
            with(json!({"failures": 0})),
            "failures must be 1 to 1000",
        ),
        (
            FLAKY,
            with(json!({"failures": 1001})),
            "failures must be 1 to 1000",
        ),
        (
            FLAKY,
            with(json!({"windowMs": 999})),
            "windowMs must be 1000 to 86400000",
        ),
        (
            FLAKY,
            with(json!({"windowMs": 86_400_001})),
            "windowMs must be 1000 to 86400000",
        ),
        (
            FLAKY,
            with(json!({"coolDownMs": 0})),
            "coolDownMs must be 1000 to 86400000",
        ),
        (
            "/v1/capabilities/Flaky/breaker",
            base.clone(),
            "capability `Flaky` is not well-formed",
        ),
        (
            "/v1/capabilities/-flaky/breaker",
            base.clone(),
            "capability `-flaky` is not well-formed",
        ),
        (
            FLAKY,
            with(json!({"failures": null})),
            "missing field `failures`",
        ),
        (FLAKY, with(json!({"windowMs": "60000"})), "invalid type"),
        (FLAKY, with(json!({"failures": 1.5})), "invalid type"),
        (FLAKY, with(json!({"coolDownMs": -1})), "invalid value"),
        (
            FLAKY,
            with(json!({"cooldownMs": 1000})),
            "unknown field `cooldownMs`",
        ),
        (FLAKY, with(json!({"perAgent": "yes"})), "invalid type"),
        (FLAKY, with(json!({"perAgent": 1})), "invalid type"),
    ] {
        let answer = s.put(path, body.clone()).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_breaker");
        let error = &answer.1["error"];
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid breaker ("),
            "{path} {body}: {message}"
        );
        let details = error["details"].to_string();
        assert!(details.contains(says), "{path} {body}: {details}");
    }
    // A wrong type names its field.
    let answer = s.put(FLAKY, with(json!({"windowMs": "60000"}))).await;
    assert_eq!(answer.1["error"]["details"][0]["path"], "windowMs");
    let answer = s.put(FLAKY, with(json!({"perAgent": "true"}))).await;
    assert_eq!(answer.1["error"]["details"][0]["path"], "perAgent");
    // Several problems at once, each in `details`.
    let answer = s
        .put(
            "/v1/capabilities/-x/breaker",
            json!({"failures": 0, "windowMs": 1, "coolDownMs": 1}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_breaker");
    assert_eq!(answer.1["error"]["message"], "invalid breaker (4 problems)");
    assert_eq!(answer.1["error"]["details"].as_array().unwrap().len(), 4);
    // Not an object, not JSON, not said to be JSON: as everywhere.
    let answer = s.put(FLAKY, json!([3, 60_000, 30_000])).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let response = s
        .client
        .put(s.url(FLAKY))
        .header("content-type", "application/json")
        .body("{\"failures\":")
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
        .put(s.url(FLAKY))
        .body(base.to_string())
        .send()
        .await
        .unwrap();
    assert_error(
        &crate::support::answer(response).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    assert_eq!(s.position().await, position, "a refusal recorded something");
    assert_eq!(s.get("/v1/breakers").await.1, json!({"breakers": []}));
}

#[tokio::test]
async fn an_unknown_breaker_is_404_and_removing_it_records_nothing() {
    let s = Server::start().await;
    let position = s.position().await;
    for answer in [
        s.get("/v1/capabilities/nobody/breaker").await,
        s.delete("/v1/capabilities/nobody/breaker").await,
        // Not even a capability: no breaker either.
        s.get("/v1/capabilities/No%20Body/breaker").await,
    ] {
        assert_error(&answer, StatusCode::NOT_FOUND, "unknown_breaker");
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("has no circuit breaker"), "{message}");
    }
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn an_open_breaker_fails_the_next_task_fast_as_circuit_open() {
    let s = Server::start().await;
    s.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let (status, set) = s
        .put(
            FLAKY,
            json!({"failures": 1, "windowMs": 60_000, "coolDownMs": 3_600_000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");

    // One failure opens it.
    let agent = s.register(&["flaky"]).await;
    let first = s.start_execution("call", json!({})).await;
    let task = s.claim(&agent).await;
    let task_id = task["id"].as_str().unwrap();
    let (status, failed) = s
        .post(
            &format!("/v1/tasks/{task_id}/fail"),
            json!({"error": {"type": "upstream_down", "message": "502 from upstream"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    let open = until(&s, FLAKY, |b| b["opened"] == 1).await;
    assert_eq!(open["state"], "open", "{open}");
    assert!(ms(&open["openedAt"]) >= ms(&set["setAt"]), "{open}");
    let ended = until(&s, &format!("/v1/executions/{first}"), |e| {
        e["status"] == "failed"
    })
    .await;
    assert_eq!(ended["error"]["type"], "upstream_down", "{ended}");

    // The next task of the capability fails fast: no agent is asked.
    let second = s.start_execution("call", json!({})).await;
    let ended = until(&s, &format!("/v1/executions/{second}"), |e| {
        !matches!(e["status"].as_str(), Some("running" | "paused"))
    })
    .await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["type"], "circuit_open", "{ended}");
    let message = ended["error"]["message"].as_str().unwrap();
    assert!(message.contains("flaky"), "{message}");
    assert!(s.kinds(&second).await.contains(&"task_failed".to_owned()));
    let (status, polled) = s
        .post("/v1/tasks/poll", json!({"agentId": agent, "waitMs": 0}))
        .await;
    assert_eq!(status, StatusCode::OK, "{polled}");
    assert_eq!(polled["tasks"], json!([]), "{polled}");

    // Still open, opened once: a fail-fast is not a failure that counts.
    let (_, still) = s.get(FLAKY).await;
    assert_eq!(still["state"], "open", "{still}");
    assert_eq!(still["opened"], 1, "{still}");

    // `/metrics` and `/v1/metrics` say so.
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "retrace_breaker_state{capability=\"flaky\"} 1",
        "retrace_breaker_opened_total{capability=\"flaky\"} 1",
        "# TYPE retrace_breaker_state gauge",
        "# TYPE retrace_breaker_opened_total counter",
    ] {
        assert!(lines.contains(&expected), "no `{expected}` in:\n{text}");
    }
    let (_, metrics) = s.get("/v1/metrics").await;
    assert_eq!(metrics["breakers"]["flaky"]["state"], "open", "{metrics}");
    assert_eq!(metrics["breakers"]["flaky"]["opened"], 1, "{metrics}");

    // Removed: its tasks go to agents again.
    let (status, removed) = s.delete(FLAKY).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["state"], "open");
    let third = s.start_execution("call", json!({})).await;
    let task = s.claim(&agent).await;
    assert!(task["id"].as_str().unwrap().starts_with(&third), "{task}");
}

/// Registers an agent called `name` offering `flaky`; its id.
async fn named(s: &Server, name: &str) -> String {
    let (status, body) = s
        .post(
            "/v1/agents",
            json!({"name": name, "capabilities": ["flaky"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_per_agent_breaker_is_set_shown_and_counted_per_agent() {
    let s = Server::start().await;
    s.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let (status, set) = s
        .put(
            FLAKY,
            json!({"failures": 1, "windowMs": 60_000, "coolDownMs": 3_600_000, "perAgent": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["perAgent"], true);
    assert_eq!(set["agents"], json!([]));
    assert_eq!(set["state"], "closed");

    // `bad` fails once: its breaker opens, not the capability's.
    let bad = named(&s, "bad").await;
    let first = s.start_execution("call", json!({})).await;
    let task = s.claim(&bad).await;
    let task_id = task["id"].as_str().unwrap();
    let (status, failed) = s
        .post(
            &format!("/v1/tasks/{task_id}/fail"),
            json!({"error": {"type": "upstream_down", "message": "502 from upstream"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    let shown = until(&s, FLAKY, |b| b["agents"][0]["opened"] == 1).await;
    assert_eq!(shown["state"], "closed", "{shown}");
    assert_eq!(shown["opened"], 0, "{shown}");
    let agent = &shown["agents"][0];
    assert_eq!(agent["name"], "bad", "{shown}");
    assert_eq!(agent["state"], "open", "{shown}");
    assert!(ms(&agent["openedAt"]) >= ms(&set["setAt"]), "{shown}");
    assert!(agent["changedAt"].is_string(), "{shown}");
    assert_eq!(
        agent["recentFailures"], 0,
        "cleared when it opened: {shown}"
    );
    let (_, listed) = s.get("/v1/breakers").await;
    assert_eq!(listed["breakers"][0], shown);
    until(&s, &format!("/v1/executions/{first}"), |e| {
        e["status"] == "failed"
    })
    .await;

    // Its health counts the failure: a twentieth off its slots (rounded
    // up: still 10) and its score.
    let (_, health) = s.get(&format!("/v1/agents/{bad}")).await;
    assert_eq!(health["health"]["recentTasks"], 1, "{health}");
    assert_eq!(health["health"]["recentFailures"], 1, "{health}");
    assert_eq!(health["health"]["slots"], 10, "{health}");
    let score = health["health"]["score"].as_f64().unwrap();
    assert!(score > 0.5 && score <= 0.95, "{health}");

    // The next task is not failed fast: `bad` is given none, `good` takes it.
    let second = s.start_execution("call", json!({})).await;
    let (status, polled) = s
        .post("/v1/tasks/poll", json!({"agentId": bad, "waitMs": 0}))
        .await;
    assert_eq!(status, StatusCode::OK, "{polled}");
    assert_eq!(polled["tasks"], json!([]), "{polled}");
    let good = named(&s, "good").await;
    let task = s.claim(&good).await;
    assert!(task["id"].as_str().unwrap().starts_with(&second), "{task}");
    assert!(!s.kinds(&second).await.contains(&"task_failed".to_owned()));

    // `/metrics` and `/v1/metrics` count it per agent.
    let text = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "retrace_breaker_state{capability=\"flaky\"} 0",
        "retrace_breaker_state{capability=\"flaky\",agent=\"bad\"} 1",
        "retrace_breaker_opened_total{capability=\"flaky\",agent=\"bad\"} 1",
    ] {
        assert!(lines.contains(&expected), "no `{expected}` in:\n{text}");
    }
    let (_, metrics) = s.get("/v1/metrics").await;
    assert_eq!(
        metrics["breakers"]["flaky"]["agents"]["bad"],
        json!({"state": "open", "opened": 1, "recentFailures": 0}),
        "{metrics}"
    );

    // One breaker for the capability again: the agents' are gone.
    let (status, one) = s
        .put(
            FLAKY,
            json!({"failures": 1, "windowMs": 60_000, "coolDownMs": 3_600_000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["perAgent"], false);
    assert!(one.get("agents").is_none(), "{one}");
    let (_, metrics) = s.get("/v1/metrics").await;
    assert!(
        metrics["breakers"]["flaky"].get("agents").is_none(),
        "{metrics}"
    );
}
