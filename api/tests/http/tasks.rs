//! `/v1/tasks`: long polls, results, failures, heartbeats — and an execution
//! driven to its end by an agent that only speaks HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn pipeline() -> Value {
    json!({"name": "pipeline", "steps": [
        {"id": "fetch", "type": "task", "capability": "work",
         "input": {"url": "$.input.url"}, "output": {"page": "$.output"}, "next": "parse"},
        {"id": "parse", "type": "task", "capability": "work",
         "input": {"page": "$.variables.page"}, "output": {"parsed": "$.output"}, "next": "store"},
        {"id": "store", "type": "task", "capability": "work",
         "input": {"parsed": "$.variables.parsed"}}]})
}

/// Polls and completes every task with `{"step", "input"}` until stopped.
async fn agent_loop(base: String, agent: String) {
    let client = reqwest::Client::new();
    loop {
        let tasks: Value = client
            .post(format!("{base}/v1/tasks/poll"))
            .json(&json!({"agentId": agent, "waitMs": 1000, "max": 10}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for task in tasks["tasks"].as_array().unwrap() {
            let output = json!({"step": task["stepId"], "input": task["input"]});
            let response = client
                .post(format!(
                    "{base}/v1/tasks/{}/complete",
                    task["id"].as_str().unwrap()
                ))
                .json(&json!({"output": output}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn an_agent_drives_an_execution_to_completion_over_http() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let agent = s.register(&["work"]).await;
    let worker = tokio::spawn(agent_loop(s.base.clone(), agent));
    let id = s
        .start_execution("pipeline", json!({"url": "https://example.invalid"}))
        .await;
    let frames = tokio::time::timeout(PATIENCE, s.stream_to_end(&id))
        .await
        .expect("the execution ends");
    worker.abort();
    assert_eq!(
        frames.last().unwrap().event.as_deref(),
        Some("execution_completed")
    );
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "completed");
    assert_eq!(execution["metrics"]["taskCount"], 3);
    assert_eq!(execution["metrics"]["completedSteps"], 3);
    // Each step's input was built from the step before's output.
    let output = &execution["output"];
    assert_eq!(output["step"], "store");
    assert_eq!(output["input"]["parsed"]["step"], "parse");
    assert_eq!(output["input"]["parsed"]["input"]["page"]["step"], "fetch");
    assert_eq!(
        output["input"]["parsed"]["input"]["page"]["input"]["url"],
        "https://example.invalid"
    );
}

#[tokio::test]
async fn a_polled_task_carries_what_the_agent_needs() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let agent = s.register(&["work"]).await;
    let id = s.start_execution("pipeline", json!({"url": "u"})).await;
    let task = s.claim(&agent).await;
    assert_eq!(task["executionId"], id.as_str());
    assert_eq!(task["stepId"], "fetch");
    assert_eq!(task["capability"], "work");
    assert_eq!(task["attempt"], 1);
    assert_eq!(task["input"], json!({"url": "u"}));
    assert_eq!(task["idempotencyKey"], task["id"]);
    assert!(task["leaseMs"].as_u64().unwrap() > 0);
    let (_, agent_view) = s.get(&format!("/v1/agents/{agent}")).await;
    assert_eq!(agent_view["activeTasks"], 1);
    // Nothing else to claim: a poll that does not wait answers at once.
    let (status, body) = s
        .post("/v1/tasks/poll", json!({"agentId": agent, "waitMs": 0}))
        .await;
    assert_eq!((status, &body["tasks"]), (StatusCode::OK, &json!([])));
}

#[tokio::test]
async fn a_result_is_accepted_once_and_a_second_one_changes_nothing() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let agent = s.register(&["work"]).await;
    s.start_execution("pipeline", json!({})).await;
    let task = s.claim(&agent).await;
    let path = format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap());
    let (status, body) = s.post(&path, json!({"output": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], true);
    let position = s.position().await;
    assert_error(
        &s.post(&path, json!({"output": 2})).await,
        StatusCode::CONFLICT,
        "not_outstanding",
    );
    let fail = format!("/v1/tasks/{}/fail", task["id"].as_str().unwrap());
    assert_error(
        &s.post(&fail, json!({"error": {"type": "x", "message": "late"}}))
            .await,
        StatusCode::CONFLICT,
        "not_outstanding",
    );
    let beat = format!("/v1/tasks/{}/heartbeat", task["id"].as_str().unwrap());
    assert_error(
        &s.post_empty(&beat).await,
        StatusCode::CONFLICT,
        "not_outstanding",
    );
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn a_task_of_an_ended_execution_is_not_outstanding() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let agent = s.register(&["work"]).await;
    let id = s.start_execution("pipeline", json!({})).await;
    let task = s.claim(&agent).await;
    s.post_empty(&format!("/v1/executions/{id}/terminate"))
        .await;
    let position = s.position().await;
    let answer = s
        .post(
            &format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap()),
            json!({"output": 1}),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "not_outstanding");
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn a_failure_goes_to_the_retry_policy() {
    let s = Server::start().await;
    s.define(json!({"name": "flaky", "steps": [
        {"id": "call", "type": "task", "capability": "net",
         "retry": {"maxAttempts": 2, "interval": 0}}]}))
        .await;
    let agent = s.register(&["net"]).await;
    let id = s.start_execution("flaky", json!({})).await;
    let first = s.claim(&agent).await;
    let (status, _) = s
        .post(
            &format!("/v1/tasks/{}/fail", first["id"].as_str().unwrap()),
            json!({"error": {"type": "io", "message": "reset"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let second = s.claim(&agent).await;
    assert_eq!(second["attempt"], 2);
    assert_ne!(second["id"], first["id"]);
    let (status, _) = s
        .post(
            &format!("/v1/tasks/{}/fail", second["id"].as_str().unwrap()),
            json!({"error": {"type": "io", "message": "reset again", "retryable": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "failed");
    assert_eq!(execution["error"]["message"], "reset again");
    assert_eq!(execution["metrics"]["retryCount"], 1);

    for bad in [
        json!({"error": {"type": "", "message": "m"}}),
        json!({"error": {"type": "t"}}),
        json!({"error": "boom"}),
        json!({}),
    ] {
        let answer = s
            .post(
                &format!("/v1/tasks/{}/fail", second["id"].as_str().unwrap()),
                bad,
            )
            .await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
}

#[tokio::test]
async fn a_heartbeat_extends_the_lease_of_the_holder_only() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let holder = s.register(&["work"]).await;
    let other = s.register(&["work"]).await;
    s.start_execution("pipeline", json!({})).await;
    let task = s.claim(&holder).await;
    let path = format!("/v1/tasks/{}/heartbeat", task["id"].as_str().unwrap());
    let (status, body) = s.post(&path, json!({"agentId": holder})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["leaseMs"].as_u64().unwrap() > 0);
    assert!(body["leaseDeadline"].as_str().unwrap().ends_with('Z'));
    let (status, _) = s.post_empty(&path).await;
    assert_eq!(status, StatusCode::OK, "the agent may be left out");
    assert_error(
        &s.post(&path, json!({"agentId": other})).await,
        StatusCode::FORBIDDEN,
        "not_yours",
    );
}

#[tokio::test]
async fn unknown_agents_and_tasks_are_404() {
    let s = Server::start().await;
    let stranger = "0190f3c2-0000-7000-8000-000000000000";
    for body in [
        json!({"agentId": stranger, "waitMs": 0}),
        json!({"agentId": "x"}),
    ] {
        let answer = s.post("/v1/tasks/poll", body).await;
        assert_error(&answer, StatusCode::NOT_FOUND, "unknown_agent");
    }
    let unknown_execution_task = format!("{stranger}.1.1");
    for task in ["nope", unknown_execution_task.as_str()] {
        assert_error(
            &s.post(&format!("/v1/tasks/{task}/complete"), json!({"output": 1}))
                .await,
            StatusCode::NOT_FOUND,
            "unknown_task",
        );
        assert_error(
            &s.post(
                &format!("/v1/tasks/{task}/fail"),
                json!({"error": {"type": "t", "message": "m"}}),
            )
            .await,
            StatusCode::NOT_FOUND,
            "unknown_task",
        );
    }
    assert_error(
        &s.post_empty("/v1/tasks/nope/heartbeat").await,
        StatusCode::NOT_FOUND,
        "unknown_task",
    );
}

#[tokio::test]
async fn a_long_poll_ends_empty_when_the_server_shuts_down() {
    let s = Server::start().await;
    let agent = s.register(&["idle"]).await;
    let poll = {
        let client = s.client.clone();
        let url = s.url("/v1/tasks/poll");
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"agentId": agent, "waitMs": 60_000}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    // Whether the poll is already waiting or arrives after this, it must
    // answer long before its 60 s: a graceful shutdown waits for it.
    s.state.shutdown.trigger();
    let answer = tokio::time::timeout(PATIENCE, poll).await.unwrap().unwrap();
    assert_eq!(answer["tasks"], json!([]));
}

#[tokio::test]
async fn unregistering_an_agent_hands_its_tasks_to_another() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let first = s.register(&["work"]).await;
    s.start_execution("pipeline", json!({})).await;
    let task = s.claim(&first).await;
    let (status, body) = s.delete(&format!("/v1/agents/{first}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["requeued"], json!([task["id"]]));
    let second = s.register(&["work"]).await;
    let again = s.claim(&second).await;
    assert_eq!(again["id"], task["id"], "the same attempt, queued again");
}

#[tokio::test]
async fn a_result_can_claim_the_agents_next_tasks_in_the_same_request() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let agent = s.register(&["work"]).await;
    let id = s.start_execution("pipeline", json!({"url": "u"})).await;
    let mut task = s.claim(&agent).await;
    let mut steps = Vec::new();
    loop {
        steps.push(task["stepId"].as_str().unwrap().to_owned());
        let (status, body) = s
            .post(
                &format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap()),
                json!({"output": steps.len(),
                       "poll": {"agentId": agent, "max": 10, "waitMs": 0}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["accepted"], true);
        // Each result makes the next step's task, claimed by the same answer.
        let tasks = body["tasks"].as_array().unwrap();
        match tasks.as_slice() {
            [] => break,
            [next] => task = next.clone(),
            more => panic!("one task at a time in a sequence, got {more:?}"),
        }
    }
    assert_eq!(steps, ["fetch", "parse", "store"]);
    let (_, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(execution["status"], "completed");
    assert_eq!(execution["output"], json!(3));
}

#[tokio::test]
async fn a_result_whose_poll_names_an_unknown_agent_is_refused_and_records_nothing() {
    let s = Server::start().await;
    s.define(pipeline()).await;
    let agent = s.register(&["work"]).await;
    s.start_execution("pipeline", json!({"url": "u"})).await;
    let task = s.claim(&agent).await;
    let path = format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap());
    let position = s.position().await;
    let nobody = "6f1c3a52-8f0e-4c55-9d2a-4a3b5c6d7e8f";
    let answer = s
        .post(&path, json!({"output": 1, "poll": {"agentId": nobody}}))
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_agent");
    assert_eq!(s.position().await, position, "the result was not recorded");
    // The task is still outstanding: a plain report is taken, and answers
    // no `tasks` field.
    let (status, body) = s.post(&path, json!({"output": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("tasks").is_none(), "{body}");
}

/// A workflow of one task on `work`, with no retries.
fn one_task(name: &str) -> Value {
    json!({"name": name, "steps": [{"id": "t", "type": "task", "capability": "work"}]})
}

#[tokio::test]
async fn a_batch_report_records_each_result_or_failure_on_its_own() {
    let s = Server::start().await;
    s.define(one_task("single")).await;
    let agent = s.register(&["work"]).await;
    let done = s.start_execution("single", json!({})).await;
    let failed = s.start_execution("single", json!({})).await;
    let (status, polled) = s
        .post(
            "/v1/tasks/poll",
            json!({"agentId": agent, "waitMs": PATIENCE.as_millis() as u64, "max": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{polled}");
    let mut ids: Vec<String> = polled["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    while ids.len() < 2 {
        ids.push(s.claim(&agent).await["id"].as_str().unwrap().to_owned());
    }
    let task_of = |execution: &str| {
        ids.iter()
            .find(|t| t.starts_with(execution))
            .unwrap()
            .clone()
    };
    let (ok, bad) = (task_of(&done), task_of(&failed));

    // No reports: refused whole. Both `output` and `error`: that report
    // alone, and nothing recorded.
    let position = s.position().await;
    let none = json!({"reports": []});
    assert_error(
        &s.post("/v1/tasks/report", none).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    let both =
        json!({"reports": [{"id": ok, "output": 1, "error": {"type": "x", "message": "m"}}]});
    let (status, body) = s.post("/v1/tasks/report", both).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["reports"][0]["error"]["code"], "invalid_body",
        "{body}"
    );
    assert_eq!(s.position().await, position);

    let no_task = "0190a1fb-9628-7012-96b6-9bd448d552cf.1.1";
    let (status, body) = s
        .post(
            "/v1/tasks/report",
            json!({"reports": [
                {"id": ok, "output": {"n": 1}},
                {"id": bad, "error": {"type": "broken", "message": "no", "retryable": false}},
                {"id": no_task, "output": 2},
                {"id": "not-a-task"},
            ], "poll": {"agentId": agent, "waitMs": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcomes: Vec<(bool, &str)> = body["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["accepted"].as_bool().unwrap(),
                r["error"]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (true, ""),
            (true, ""),
            (false, "unknown_task"),
            (false, "unknown_task")
        ],
        "{body}"
    );
    assert_eq!(body["tasks"], json!([]));
    let (_, first) = s.get(&format!("/v1/executions/{done}")).await;
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["output"], json!({"n": 1}));
    let (_, second) = s.get(&format!("/v1/executions/{failed}")).await;
    assert_eq!(second["status"], "failed", "{second}");

    // A second report of the same result changes nothing.
    let position = s.position().await;
    let (_, again) = s
        .post(
            "/v1/tasks/report",
            json!({"reports": [{"id": ok, "output": 3}]}),
        )
        .await;
    assert_eq!(
        again["reports"][0]["error"]["code"], "not_outstanding",
        "{again}"
    );
    assert_eq!(s.position().await, position);
}

/// Priorities: a later start of higher priority is served first; a
/// priority out of range is refused and records nothing.
#[tokio::test]
async fn a_higher_priority_is_served_first_and_out_of_range_is_refused() {
    let s = Server::start().await;
    s.define(json!({"name": "urgent", "steps": [
        {"id": "work", "type": "task", "capability": "triage"}]}))
        .await;
    let start = |priority: Value| json!({"workflow": "urgent", "input": {"p": priority.clone()}, "priority": priority});
    let (status, low) = s.post("/v1/executions", start(json!(1))).await;
    assert_eq!(status, StatusCode::CREATED, "{low}");
    let (_, high) = s.post("/v1/executions", start(json!(8))).await;
    let (_, plain) = s
        .post("/v1/executions", json!({"workflow": "urgent"}))
        .await;
    let (_, shown) = s
        .get(&format!("/v1/executions/{}", high["id"].as_str().unwrap()))
        .await;
    assert_eq!(shown["priority"], 8);
    let (_, shown) = s
        .get(&format!("/v1/executions/{}", plain["id"].as_str().unwrap()))
        .await;
    assert_eq!(shown["priority"], 0);
    let agent = s.register(&["triage"]).await;
    let served: Vec<String> = {
        let mut order = Vec::new();
        for _ in 0..3 {
            let (status, polled) = s
                .post(
                    "/v1/tasks/poll",
                    json!({"agentId": agent, "max": 1, "waitMs": 0}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{polled}");
            let task = polled["tasks"][0].clone();
            order.push(task["executionId"].as_str().unwrap().to_owned());
            let (status, _) = s
                .post(
                    &format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap()),
                    json!({"output": 1}),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        order
    };
    let ids = |v: &Value| v["id"].as_str().unwrap().to_owned();
    assert_eq!(served, [ids(&high), ids(&low), ids(&plain)]);
    let before = s.position().await;
    for bad in [json!(10), json!(-1), json!("high"), json!(2.5)] {
        let answer = s.post("/v1/executions", start(bad.clone())).await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
        assert_eq!(
            s.position().await,
            before,
            "priority {bad} recorded something"
        );
    }
}
