//! `/v1/executions`: start (with idempotency keys and input schemas), list
//! with filters and cursors, read one, page through its events.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn starting_answers_201_with_the_id_and_status() {
    let s = Server::start().await;
    s.define(inline_chain("quick", 2)).await;
    let (status, body) = s
        .post(
            "/v1/executions",
            json!({"workflow": "quick", "input": {"x": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["created"], true);
    let id = body["id"].as_str().unwrap();
    let (status, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["id"], id);
    assert_eq!(execution["workflow"], "quick");
    assert_eq!(execution["status"], "completed");
    assert_eq!(execution["input"], json!({"x": 1}));
    assert_eq!(execution["output"], json!({"x": 1}));
    assert_eq!(execution["error"], Value::Null);
    assert!(execution["endTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(execution["currentSteps"], json!([]));
    let metrics = &execution["metrics"];
    for field in [
        "duration",
        "stepCount",
        "completedSteps",
        "taskCount",
        "errorCount",
        "retryCount",
    ] {
        assert!(metrics[field].is_u64(), "metrics.{field} in {metrics}");
    }
    assert_eq!(metrics["completedSteps"], 2);
}

#[tokio::test]
async fn a_version_can_be_pinned_and_unknown_ones_are_404() {
    let s = Server::start().await;
    let v1 = s.define(inline_chain("pinned", 1)).await;
    s.define(inline_chain("pinned", 2)).await;
    let (status, body) = s
        .post(
            "/v1/executions",
            json!({"workflow": "pinned", "version": v1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, execution) = s
        .get(&format!("/v1/executions/{}", body["id"].as_str().unwrap()))
        .await;
    assert_eq!(execution["version"], v1.as_str());
    let position = s.position().await;
    let answer = s
        .post(
            "/v1/executions",
            json!({"workflow": "pinned", "version": "nope"}),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_workflow");
    let answer = s
        .post("/v1/executions", json!({"workflow": "absent"}))
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_workflow");
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_execution() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let start = json!({"workflow": "gated", "idempotencyKey": "order-42"});
    let (status, first) = s.post("/v1/executions", start.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let position = s.position().await;
    let (status, again) = s.post("/v1/executions", start).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["created"], false);
    assert_eq!(again["status"], "running");
    assert_eq!(
        s.position().await,
        position,
        "the second start recorded nothing"
    );
    let (_, list) = s.get("/v1/executions").await;
    assert_eq!(list["executions"].as_array().unwrap().len(), 1);
    let (_, execution) = s
        .get(&format!("/v1/executions/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(execution["idempotencyKey"], "order-42");
    let answer = s
        .post(
            "/v1/executions",
            json!({"workflow": "gated", "idempotencyKey": ""}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}

#[tokio::test]
async fn input_is_checked_against_the_workflows_schema() {
    let s = Server::start().await;
    let mut doc = inline_chain("typed", 1);
    doc["input"] = json!({"type": "object", "required": ["n"],
                          "properties": {"n": {"type": "integer"}}});
    s.define(doc).await;
    let position = s.position().await;
    let answer = s
        .post(
            "/v1/executions",
            json!({"workflow": "typed", "input": {"n": "x"}}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert_eq!(answer.1["error"]["details"][0]["path"], "/n");
    assert_eq!(s.position().await, position);
    let (status, _) = s
        .post(
            "/v1/executions",
            json!({"workflow": "typed", "input": {"n": 3}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_list_filters_and_pages_with_a_cursor() {
    let s = Server::start().await;
    s.define(inline_chain("done", 1)).await;
    s.define(gated_chain("waiting", 1)).await;
    let mut done = Vec::new();
    for _ in 0..5 {
        done.push(s.start_execution("done", json!({})).await);
    }
    let waiting = s.start_execution("waiting", json!({})).await;

    let mut seen = Vec::new();
    let mut path = "/v1/executions?workflow=done&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for e in page["executions"].as_array().unwrap() {
            assert_eq!(e["workflow"], "done");
            assert_eq!(e["status"], "completed");
            assert!(e["startTime"].as_str().unwrap().ends_with('Z'));
            seen.push(e["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v1/executions?workflow=done&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, done, "every execution once, oldest first");

    let (_, running) = s.get("/v1/executions?status=running").await;
    let ids: Vec<&str> = running["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [waiting.as_str()]);
    assert_eq!(running["nextCursor"], Value::Null);

    for bad in [
        "/v1/executions?status=sleeping",
        "/v1/executions?limit=0",
        "/v1/executions?limit=many",
        "/v1/executions?cursor=nope",
        "/v1/executions?colour=red",
    ] {
        assert_error(&s.get(bad).await, StatusCode::BAD_REQUEST, "invalid_query");
    }
}

/// The ids a list path answers, after checking it answered 200.
async fn listed(s: &Server, path: &str) -> (Vec<String>, Value) {
    let (status, page) = s.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {page}");
    let ids = page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page["nextCursor"].clone())
}

#[tokio::test]
async fn the_list_goes_newest_first_and_filters_by_id_prefix_and_start_time() {
    let s = Server::start().await;
    s.define(inline_chain("done", 1)).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(s.start_execution("done", json!({})).await);
    }
    // Newest first, paged with the same cursor rule.
    let (first, cursor) = listed(&s, "/v1/executions?order=newest&limit=3").await;
    let mut newest: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(first, newest[..3]);
    let cursor = cursor.as_str().unwrap().to_owned();
    let (rest, end) = listed(
        &s,
        &format!("/v1/executions?order=newest&limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest, newest.split_off(3));
    assert_eq!(end, Value::Null);
    // An id prefix, with or without dashes, in either case.
    let whole = &ids[2];
    for prefix in [whole.as_str(), &whole[..13], &whole[..13].to_uppercase()] {
        let (found, _) = listed(&s, &format!("/v1/executions?idPrefix={prefix}")).await;
        assert!(found.contains(whole), "{prefix}: {found:?}");
        assert!(
            found.iter().all(|f| f.starts_with(&whole[..13])),
            "{found:?}"
        );
    }
    let (longer, _) = listed(&s, &format!("/v1/executions?idPrefix={}0", "f".repeat(32))).await;
    assert!(longer.is_empty(), "{longer:?}");
    let (dashes, _) = listed(&s, "/v1/executions?idPrefix=--").await;
    assert_eq!(dashes.len(), ids.len());
    // Start times: everything started from the third one's start on.
    let (_, third) = s.get(&format!("/v1/executions/{}", ids[2])).await;
    let at = third["startTime"].as_str().unwrap();
    let (from, _) = listed(&s, &format!("/v1/executions?startedFrom={at}")).await;
    assert!(from.contains(&ids[2]) && from.contains(&ids[3]), "{from:?}");
    let (to, _) = listed(&s, &format!("/v1/executions?startedTo={at}")).await;
    assert!(to.contains(&ids[0]) && to.contains(&ids[2]), "{to:?}");
    let (none, _) = listed(&s, "/v1/executions?startedTo=1999-01-01T00:00:00Z").await;
    assert!(none.is_empty(), "{none:?}");
    // Before 1970: a start of the range bounds nothing; an end leaves nothing.
    let (all, _) = listed(&s, "/v1/executions?startedFrom=1900-01-01T00:00:00Z").await;
    assert_eq!(all.len(), ids.len(), "{all:?}");
    let (none, _) = listed(&s, "/v1/executions?startedTo=0307-09-19T14:30:31.0-15:00").await;
    assert!(none.is_empty(), "{none:?}");
    for bad in [
        "/v1/executions?order=random",
        "/v1/executions?idPrefix=xyz",
        "/v1/executions?idPrefix=",
        "/v1/executions?startedFrom=yesterday",
    ] {
        assert_error(&s.get(bad).await, StatusCode::BAD_REQUEST, "invalid_query");
    }
}

/// Time travel: the execution and its steps after any event, as folding
/// the first `until` events gives them.
#[tokio::test]
async fn replay_shows_the_execution_and_its_steps_after_any_event() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 2)).await;
    let id = s.start_execution("gated", json!({"n": 1})).await;
    // Waiting at the gate: execution_started, step_started, event_awaited.
    let (status, now) = s.get(&format!("/v1/executions/{id}/replay")).await;
    assert_eq!(status, StatusCode::OK, "{now}");
    assert_eq!(now["until"], 3);
    assert_eq!(now["execution"]["status"], "running");
    assert_eq!(
        now["steps"],
        json!({"gate": {"state": "waiting_event", "runs": 1}})
    );
    let (status, _) = s
        .post(
            &format!("/v1/executions/{id}/signals/go"),
            json!({"payload": {"k": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, end) = s.get(&format!("/v1/executions/{id}/replay")).await;
    assert_eq!(end["execution"]["status"], "completed");
    for step in ["gate", "s0", "s1"] {
        assert_eq!(end["steps"][step]["state"], "completed", "{end}");
    }
    let (_, now) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(end["until"], now["lastSeq"]);
    assert_eq!(end["execution"]["output"], now["output"]);
    // Back in time: after the first event, nothing was entered yet.
    let (_, first) = s.get(&format!("/v1/executions/{id}/replay?until=1")).await;
    assert_eq!(first["until"], 1);
    assert_eq!(first["execution"]["status"], "running");
    assert_eq!(first["execution"]["input"], json!({"n": 1}));
    assert_eq!(first["steps"], json!({}));
    // Past the end is the end.
    let (_, past) = s
        .get(&format!("/v1/executions/{id}/replay?until=1000"))
        .await;
    assert_eq!(past["until"], end["until"]);
    for bad in ["until=0", "until=x", "at=3"] {
        assert_error(
            &s.get(&format!("/v1/executions/{id}/replay?{bad}")).await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        );
    }
    let nobody = "00000000-0000-7000-8000-000000000001";
    assert_error(
        &s.get(&format!("/v1/executions/{nobody}/replay")).await,
        StatusCode::NOT_FOUND,
        "unknown_execution",
    );
}

#[tokio::test]
async fn a_waiting_execution_shows_its_current_steps() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let (status, execution) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(execution["status"], "running");
    assert_eq!(execution["endTime"], Value::Null);
    assert_eq!(execution["output"], Value::Null);
    let steps = execution["currentSteps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{execution}");
    assert_eq!(steps[0]["stepId"], "gate");
    assert_eq!(steps[0]["role"], "step");
    assert_eq!(steps[0]["waiting"]["for"], "event");
    assert_eq!(steps[0]["waiting"]["name"], "go");
    assert!(steps[0]["startTime"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn the_events_page_shows_each_event_once_in_order() {
    let s = Server::start().await;
    s.define(inline_chain("chain", 5)).await;
    let id = s.start_execution("chain", json!({"k": "v"})).await;
    let (status, all) = s.get(&format!("/v1/executions/{id}/events")).await;
    assert_eq!(status, StatusCode::OK);
    let events = all["events"].as_array().unwrap();
    assert_eq!(events.len(), 7);
    let first = &events[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["type"], "execution_started");
    assert_eq!(first["data"]["workflow"], "chain");
    assert_eq!(first["data"]["input"], json!({"k": "v"}));
    assert!(
        first["data"].get("type").is_none(),
        "the tag is `type`, not data"
    );
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
    let at = first["at"].as_str().unwrap();
    assert!(
        at.len() == 24 && at.ends_with('Z'),
        "RFC 3339 with ms: {at}"
    );
    assert_eq!(events[6]["type"], "execution_completed");

    let (_, page) = s
        .get(&format!("/v1/executions/{id}/events?after=2&limit=3"))
        .await;
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(page["events"][0], events[2], "pages agree with the whole");
    let (_, past) = s.get(&format!("/v1/executions/{id}/events?after=7")).await;
    assert_eq!(past["events"], json!([]));
}

/// A workflow of one task on capability `work`.
fn one_task(name: &str) -> Value {
    json!({"name": name, "steps": [{"id": "t", "type": "task", "capability": "work"}]})
}

#[tokio::test]
async fn start_and_wait_answers_once_the_execution_has_ended() {
    let s = Server::start().await;
    s.define(one_task("waited")).await;
    let agent = s.register(&["work"]).await;
    let request = s.client.post(s.url("/v1/executions")).json(
        &json!({"workflow": "waited", "input": {"n": 1}, "waitMs": PATIENCE.as_millis() as u64}),
    );
    let started = tokio::spawn(async move { request.send().await.unwrap() });
    // The task exists only once the start is recorded; the start's answer
    // waits for its result.
    let task = s.claim(&agent).await;
    let (status, body) = s
        .post(
            &format!("/v1/tasks/{}/complete", task["id"].as_str().unwrap()),
            json!({"output": {"done": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = started.await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["created"], true);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"], json!({"done": true}));
    // The execution as GET shows it, plus `created`.
    let (_, shown) = s
        .get(&format!("/v1/executions/{}", body["id"].as_str().unwrap()))
        .await;
    let mut without_created = body.clone();
    without_created.as_object_mut().unwrap().remove("created");
    assert_eq!(without_created, shown);
}

#[tokio::test]
async fn start_and_wait_answers_202_with_the_running_execution_when_the_wait_runs_out() {
    let s = Server::start().await;
    s.define(one_task("unanswered")).await;
    let (status, body) = s
        .post(
            "/v1/executions",
            json!({"workflow": "unanswered", "waitMs": 20}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "running");
    assert_eq!(body["created"], true);
    assert_eq!(body["currentSteps"][0]["stepId"], "t");
}

#[tokio::test]
async fn start_and_wait_with_a_known_key_answers_with_that_execution() {
    let s = Server::start().await;
    s.define(inline_chain("keyed", 2)).await;
    let first = json!({"workflow": "keyed", "idempotencyKey": "k1", "waitMs": 0});
    let (status, one) = s.post("/v1/executions", first.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{one}");
    assert_eq!(one["status"], "completed");
    let position = s.position().await;
    let (status, again) = s.post("/v1/executions", first).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["id"], one["id"]);
    assert_eq!(again["output"], one["output"]);
    assert_eq!(s.position().await, position, "nothing new was started");
}

#[tokio::test]
async fn a_wait_over_the_limit_is_refused_before_anything_starts() {
    let s = Server::start().await;
    s.define(inline_chain("patient", 1)).await;
    let position = s.position().await;
    let answer = s
        .post(
            "/v1/executions",
            json!({"workflow": "patient", "waitMs": 60_001}),
        )
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("60000")
    );
    assert_eq!(s.position().await, position);
}

/// A workflow that tags its execution from its input and from a step's
/// result, then waits for an event (so it can be left running).
fn tagging(name: &str) -> Value {
    json!({"name": name, "steps": [
        {"id": "score", "type": "task", "capability": "transform",
         "input": {"grade": "$.input.grade"},
         "tags": {"grade": "$.output.grade", "stage": "scored"}, "next": "hold"},
        {"id": "hold", "type": "event", "event": {"name": "go"}}
    ]})
}

#[tokio::test]
async fn executions_are_tagged_at_the_start_and_by_steps_and_found_by_tag_status_and_end() {
    let s = Server::start().await;
    s.define(tagging("tagged")).await;
    s.define(inline_chain("done", 1)).await;
    let start = |grade: &str, customer: &str| {
        json!({"workflow": "tagged", "input": {"grade": grade},
               "tags": {"customer": customer, "team/region": "eu:1"}})
    };
    let (status, a) = s.post("/v1/executions", start("A", "acme")).await;
    assert_eq!(status, StatusCode::CREATED, "{a}");
    let a = a["id"].as_str().unwrap().to_owned();
    let (_, b) = s.post("/v1/executions", start("B", "acme")).await;
    let b = b["id"].as_str().unwrap().to_owned();
    let (_, c) = s.post("/v1/executions", start("A", "globex")).await;
    let c = c["id"].as_str().unwrap().to_owned();
    let done = s.start_execution("done", json!({})).await;

    let (_, shown) = s.get(&format!("/v1/executions/{a}")).await;
    assert_eq!(
        shown["tags"],
        json!({"customer": "acme", "team/region": "eu:1", "grade": "A", "stage": "scored"})
    );
    let (found, _) = listed(&s, "/v1/executions?tag=customer:acme").await;
    assert_eq!(found, [a.clone(), b.clone()]);
    let (found, _) = listed(&s, "/v1/executions?tag=grade:A").await;
    assert_eq!(found, [a.clone(), c.clone()]);
    // The first `:` ends the key.
    let (found, _) = listed(&s, "/v1/executions?tag=team/region:eu:1&order=newest").await;
    assert_eq!(found, [c.clone(), b.clone(), a.clone()]);
    let (found, _) = listed(&s, "/v1/executions?tag=customer:initech").await;
    assert!(found.is_empty());
    // Given more than once, every one of them.
    let (found, _) = listed(&s, "/v1/executions?tag=customer:acme&tag=grade:A").await;
    assert_eq!(found, [a.as_str()]);
    let (found, _) = listed(&s, "/v1/executions?tag=grade:A&tag=customer:globex").await;
    assert_eq!(found, [c.as_str()]);
    // Several statuses; and by the end.
    let (found, _) = listed(&s, "/v1/executions?status=completed,running").await;
    assert_eq!(found.len(), 4);
    let (found, _) = listed(&s, "/v1/executions?status=completed").await;
    assert_eq!(found, [done.as_str()]);
    let (found, _) = listed(&s, "/v1/executions?endedFrom=1970-01-01T00:00:00Z").await;
    assert_eq!(found, [done.as_str()], "only ended executions have an end");
    let (found, _) = listed(&s, "/v1/executions?endedTo=1970-01-01T00:00:00Z").await;
    assert!(found.is_empty());

    // Bad tags and bad filters are refused, and nothing is recorded.
    let before = s.position().await;
    for tags in [
        json!({"-bad": "x"}),
        json!({"k": "a\u{202E}b"}),
        json!({"k": "v".repeat(257)}),
        json!(
            (0..33)
                .map(|n| (format!("k{n}"), json!("v")))
                .collect::<serde_json::Map<_, _>>()
        ),
    ] {
        let answer = s
            .post(
                "/v1/executions",
                json!({"workflow": "tagged", "input": {"grade": "A"}, "tags": tags}),
            )
            .await;
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
    for query in [
        "tag=nokey",
        "tag=:v",
        "status=running,nope",
        "endedFrom=yesterday",
    ] {
        let answer = s.get(&format!("/v1/executions?{query}")).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_query");
    }
    assert_eq!(s.position().await, before);
}

#[tokio::test]
async fn a_step_whose_tag_does_not_evaluate_to_a_value_fails_with_an_expression_error() {
    let s = Server::start().await;
    s.define(json!({"name": "badtag", "steps": [
        {"id": "t", "type": "task", "capability": "noop", "tags": {"k": "$.output.missing"}}
    ]}))
    .await;
    let id = s.start_execution("badtag", json!({})).await;
    let (_, shown) = s.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(shown["status"], json!("failed"), "{shown}");
    assert_eq!(shown["error"]["type"], json!("expression_error"));
    assert!(
        shown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tag k"),
        "{shown}"
    );
    // A tag key that breaks the rules is a definition problem.
    let (status, answer) = s
        .post(
            "/v1/workflows",
            json!({"name": "badkey", "steps": [
            {"id": "t", "type": "task", "capability": "noop", "tags": {"a b": "x"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["path"],
        json!("steps[0].tags[\"a b\"]"),
        "{answer}"
    );
}
