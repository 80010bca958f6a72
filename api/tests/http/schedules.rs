//! `/v1/schedules` over real HTTP: create, read, list, patch (pause,
//! resume, retime), trigger, delete; every bad schedule refused whole with
//! nothing recorded; and a schedule that fires on its own.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// `ms` since the Unix epoch of an RFC 3339 instant the API wrote.
fn ms(text: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// A server with `tick` (one inline step: it completes when it starts) and
/// `typed` (the same, with an input schema) defined.
async fn server() -> Server {
    let s = Server::start().await;
    s.define(inline_chain("tick", 1)).await;
    let mut typed = inline_chain("typed", 1);
    typed["input"] = json!({"type": "object", "required": ["n"],
                            "properties": {"n": {"type": "integer"}}});
    s.define(typed).await;
    s
}

/// Polls `GET /v1/executions/{id}` until it has ended; the execution.
async fn ended(s: &Server, id: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, execution) = s.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{execution}");
        if !matches!(execution["status"].as_str(), Some("running" | "paused")) {
            return execution;
        }
        assert!(Instant::now() < deadline, "{id} never ended: {execution}");
        // The interval between polls, not a wait standing in for one.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_schedule_is_created_read_listed_changed_triggered_and_deleted() {
    let s = server().await;
    let (status, created) = s
        .post(
            "/v1/schedules",
            json!({"id": "hourly-tick", "workflow": "tick", "everyMs": 3_600_000}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["id"], "hourly-tick");
    assert_eq!(created["workflow"], "tick");
    assert_eq!(created["input"], json!({}));
    assert_eq!(created["everyMs"], 3_600_000);
    assert_eq!(created["overlap"], "skip");
    assert_eq!(created["catchupWindowMs"], 60_000);
    assert_eq!(created["paused"], false);
    assert_eq!(
        created["counts"],
        json!({"fired": 0, "skipped": 0, "missed": 0, "failed": 0})
    );
    assert_eq!(created["recent"], json!([]));
    for absent in [
        "version",
        "cron",
        "timezone",
        "priority",
        "createdBy",
        "lastExecution",
        "bufferedFireTime",
    ] {
        assert!(created.get(absent).is_none(), "{absent}: {created}");
    }
    // Every hour from its creation.
    let created_at = ms(&created["createdAt"]);
    assert_eq!(created["updatedAt"], created["createdAt"]);
    let next: Vec<i64> = created["nextFireTimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(ms)
        .collect();
    let expected: Vec<i64> = (1..=5).map(|k| created_at + k * 3_600_000).collect();
    assert_eq!(next, expected);

    let (status, shown) = s.get("/v1/schedules/hourly-tick").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, created);
    let (status, listed) = s.get("/v1/schedules").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!({"schedules": [created]}));

    // Pause and resume.
    let (status, paused) = s
        .patch("/v1/schedules/hourly-tick", json!({"paused": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["everyMs"], 3_600_000);
    let (_, resumed) = s
        .patch("/v1/schedules/hourly-tick", json!({"paused": false}))
        .await;
    assert_eq!(resumed["paused"], false);

    // A patch that changes nothing records nothing.
    let position = s.position().await;
    let (status, same) = s
        .patch(
            "/v1/schedules/hourly-tick",
            json!({"paused": false, "id": "hourly-tick"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same, resumed);
    assert_eq!(s.position().await, position);

    // Retimed to cron: `everyMs` goes; 03:00 in Berlin is 01:00 or 02:00 UTC.
    let (status, cron) = s
        .patch(
            "/v1/schedules/hourly-tick",
            json!({"cron": "0 3 * * *", "timezone": "Europe/Berlin", "priority": 7,
                   "input": {"note": "nightly"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cron}");
    assert_eq!(cron["cron"], "0 3 * * *");
    assert_eq!(cron["timezone"], "Europe/Berlin");
    assert_eq!(cron["priority"], 7);
    assert_eq!(cron["input"], json!({"note": "nightly"}));
    assert!(cron.get("everyMs").is_none(), "{cron}");
    let times = cron["nextFireTimes"].as_array().unwrap();
    assert_eq!(times.len(), 5);
    for (i, t) in times.iter().enumerate() {
        let text = t.as_str().unwrap();
        assert!(
            text.ends_with("T01:00:00.000Z") || text.ends_with("T02:00:00.000Z"),
            "{text}"
        );
        if i > 0 {
            let gap = ms(t) - ms(&times[i - 1]);
            assert!((23 * 3_600_000..=25 * 3_600_000).contains(&gap), "{cron}");
        }
    }
    // And back to an interval: `cron` and `timezone` go; `null` removes.
    let (status, every) = s
        .patch(
            "/v1/schedules/hourly-tick",
            json!({"everyMs": 7_200_000, "priority": null, "input": {"note": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{every}");
    assert_eq!(every["everyMs"], 7_200_000);
    assert_eq!(every["input"], json!({}));
    for gone in ["cron", "timezone", "priority"] {
        assert!(every.get(gone).is_none(), "{gone}: {every}");
    }
    assert!(ms(&every["updatedAt"]) >= created_at);

    // Triggered: it starts now, and the execution completes.
    let (status, triggered) = s.post_empty("/v1/schedules/hourly-tick/trigger").await;
    assert_eq!(status, StatusCode::CREATED, "{triggered}");
    let execution = triggered["execution"]["id"].as_str().unwrap().to_owned();
    assert_eq!(triggered["execution"]["created"], true);
    assert_eq!(triggered["schedule"]["lastExecution"], execution.as_str());
    assert_eq!(triggered["schedule"]["counts"]["fired"], 1);
    let recent = &triggered["schedule"]["recent"][0];
    assert_eq!(recent["outcome"], "triggered");
    assert_eq!(recent["execution"], execution.as_str());
    let ran = ended(&s, &execution).await;
    assert_eq!(ran["status"], "completed", "{ran}");
    assert_eq!(ran["workflow"], "tick");
    let key = ran["idempotencyKey"].as_str().unwrap();
    assert!(
        key.starts_with("schedule:hourly-tick:") && key.contains(":manual:"),
        "{key}"
    );
    let (_, shown) = s.get("/v1/schedules/hourly-tick").await;
    assert_eq!(
        shown["recent"][0]["executionStatus"], "completed",
        "{shown}"
    );
    // A trigger moves no fire time.
    assert_eq!(shown["nextFireTimes"], every["nextFireTimes"]);

    // Deleted: answered as it was, then gone; its id can be used again.
    let (status, deleted) = s.delete("/v1/schedules/hourly-tick").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["counts"]["fired"], 1);
    assert_eq!(deleted["lastExecution"], execution.as_str());
    let answer = s.get("/v1/schedules/hourly-tick").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "unknown_schedule");
    assert_eq!(s.get("/v1/schedules").await.1, json!({"schedules": []}));
    let (status, again) = s
        .post(
            "/v1/schedules",
            json!({"id": "hourly-tick", "workflow": "tick", "cron": "@hourly",
                   "overlap": "bufferOne", "catchupWindowMs": 5000, "paused": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["counts"]["fired"], 0);
    assert_eq!(again["overlap"], "bufferOne");
    assert_eq!(again["catchupWindowMs"], 5000);
    assert_eq!(again["paused"], true);
    // Paused: the times it would fire, on the hour.
    for t in again["nextFireTimes"].as_array().unwrap() {
        assert!(t.as_str().unwrap().ends_with(":00:00.000Z"), "{again}");
    }
}

#[tokio::test]
async fn every_bad_schedule_is_refused_whole_and_records_nothing() {
    let s = server().await;
    let base = json!({"id": "bad", "workflow": "tick", "everyMs": 60_000});
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
    for (body, says) in [
        (
            with(json!({"everyMs": null, "cron": "61 * * * *"})),
            "cron `61 * * * *` is not valid",
        ),
        (
            with(json!({"everyMs": null, "cron": "0 3 * * * *"})),
            "has 6 fields",
        ),
        (
            with(json!({"everyMs": null, "cron": "0 3 * * *", "timezone": "Mars/Olympus"})),
            "`Mars/Olympus` is not an IANA time zone",
        ),
        (
            with(json!({"cron": "0 3 * * *"})),
            "give either cron or everyMs, not both",
        ),
        (
            with(json!({"everyMs": null})),
            "give cron (with an optional timezone) or everyMs",
        ),
        (with(json!({"everyMs": 0})), "everyMs must be from 1000"),
        (with(json!({"everyMs": 999})), "everyMs must be from 1000"),
        (
            with(json!({"timezone": "UTC"})),
            "timezone applies to cron only",
        ),
        (
            with(json!({"catchupWindowMs": 0})),
            "catchupWindowMs must be from 1000",
        ),
        (with(json!({"priority": 10})), "priority must be 0 to 9"),
        (with(json!({"id": "-bad"})), "id `-bad` is not well-formed"),
        (
            with(json!({"workflow": "nothing"})),
            "no workflow `nothing` is defined",
        ),
        (with(json!({"version": "0".repeat(64)})), "has no version"),
        (
            with(json!({"workflow": "typed", "input": {"n": "x"}})),
            "input: /n",
        ),
        (with(json!({"workflow": "typed"})), "input:"),
        (with(json!({"evryMs": 60_000})), "unknown field `evryMs`"),
        (with(json!({"everyMs": "60000"})), "invalid type"),
        (
            with(json!({"overlap": "sometimes"})),
            "unknown variant `sometimes`",
        ),
        (with(json!({"paused": "yes"})), "invalid type"),
        (
            json!({"workflow": "tick", "everyMs": 60_000}),
            "missing field `id`",
        ),
    ] {
        let answer = s.post("/v1/schedules", body.clone()).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_schedule",
        );
        let error = &answer.1["error"];
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("invalid schedule ("),
            "{body}: {message}"
        );
        let details = error["details"].as_array().unwrap();
        assert!(
            details.iter().any(|d| {
                let text = format!("{}: {}", d["path"].as_str().unwrap(), d["message"]);
                text.contains(says) || d["message"].as_str().unwrap().contains(says)
            }),
            "{body}: {details:?}"
        );
    }
    // Several problems at once, each in `details`.
    let answer = s
        .post(
            "/v1/schedules",
            json!({"id": "bad", "workflow": "nothing", "cron": "61 * * * *",
                   "timezone": "Mars/Olympus", "priority": 10}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_schedule",
    );
    assert_eq!(answer.1["error"]["details"].as_array().unwrap().len(), 4);
    // Not an object at all: the body's shape, as everywhere.
    let answer = s.post("/v1/schedules", json!(["bad", "tick"])).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let answer = s
        .post_raw("/v1/schedules", "application/json", "{\"id\":")
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(s.position().await, position, "a refusal recorded something");
    assert_eq!(s.get("/v1/schedules").await.1, json!({"schedules": []}));

    // A patch whose result is bad is refused the same way.
    let (status, _) = s.post("/v1/schedules", base.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let position = s.position().await;
    for (patch, says) in [
        (json!({"id": "other"}), "id cannot change"),
        (json!({"id": null}), "id cannot change"),
        (json!({"cron": "not cron"}), "cron `not cron`"),
        (json!({"cron": "@daily", "everyMs": 1000}), "not both"),
        (json!({"everyMs": null}), "give cron"),
        (json!({"workflow": null}), "missing field `workflow`"),
        (json!({"timezone": "UTC"}), "timezone applies to cron only"),
        (json!({"priority": 12}), "priority must be 0 to 9"),
        (json!({"evryMs": 1}), "unknown field `evryMs`"),
        (json!({"workflow": "typed"}), "input:"),
    ] {
        let answer = s.patch("/v1/schedules/bad", patch.clone()).await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_schedule",
        );
        let details = answer.1["error"]["details"].to_string();
        assert!(details.contains(says), "{patch}: {details}");
    }
    let answer = s.patch("/v1/schedules/bad", json!([1])).await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    assert_eq!(
        s.position().await,
        position,
        "a refused patch recorded something"
    );
    let (_, shown) = s.get("/v1/schedules/bad").await;
    assert_eq!(shown["everyMs"], 60_000);

    // The same id twice.
    let answer = s.post("/v1/schedules", base).await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict");
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn an_unknown_schedule_is_404_everywhere_and_nothing_is_recorded() {
    let s = server().await;
    let position = s.position().await;
    for answer in [
        s.get("/v1/schedules/nobody").await,
        s.patch("/v1/schedules/nobody", json!({"paused": true}))
            .await,
        s.delete("/v1/schedules/nobody").await,
        s.post_empty("/v1/schedules/nobody/trigger").await,
    ] {
        assert_error(&answer, StatusCode::NOT_FOUND, "unknown_schedule");
        assert!(
            answer.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("nobody")
        );
    }
    assert_eq!(s.position().await, position);
}

#[tokio::test]
async fn a_schedule_fires_on_its_own_with_a_key_per_fire_time() {
    let s = server().await;
    let (status, created) = s
        .post(
            "/v1/schedules",
            json!({"id": "every-second", "workflow": "tick", "everyMs": 1000,
                   "input": {"from": "schedule"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let created_at = ms(&created["createdAt"]);
    let deadline = Instant::now() + PATIENCE;
    let shown = loop {
        let (status, shown) = s.get("/v1/schedules/every-second").await;
        assert_eq!(status, StatusCode::OK);
        if shown["counts"]["fired"].as_u64().unwrap() >= 2 {
            break shown;
        }
        assert!(Instant::now() < deadline, "it did not fire twice: {shown}");
        // The interval between polls, not a wait standing in for one.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Stopped, so what is checked below stays put.
    let (status, _) = s
        .patch("/v1/schedules/every-second", json!({"paused": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let started: Vec<&Value> = shown["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "started")
        .collect();
    assert!(started.len() >= 2, "{shown}");
    let mut generation = None;
    for r in &started {
        let at = ms(&r["at"]);
        // A fire time is the creation plus whole seconds.
        assert!(at > created_at && (at - created_at) % 1000 == 0, "{r}");
        let id = r["execution"].as_str().unwrap();
        let execution = ended(&s, id).await;
        assert_eq!(execution["status"], "completed", "{execution}");
        assert_eq!(execution["input"], json!({"from": "schedule"}));
        let key = execution["idempotencyKey"].as_str().unwrap();
        let parts: Vec<&str> = key.split(':').collect();
        assert_eq!(parts.len(), 4, "{key}");
        assert_eq!(parts[..2], ["schedule", "every-second"], "{key}");
        assert!(parts[2].parse::<u64>().is_ok(), "{key}");
        assert_eq!(parts[3], at.to_string(), "{key}");
        // One generation for every fire of one schedule.
        assert_eq!(*generation.get_or_insert(parts[2].to_owned()), parts[2]);
    }
    // Newest first, one execution per fire time.
    let times: Vec<i64> = started.iter().map(|r| ms(&r["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    assert_eq!(shown["lastExecution"], started[0]["execution"], "{shown}");
}
