//! Circuit breakers' changes on the engine-wide stream: sent only with
//! `include=breakers`, among the executions' events in the journal's order,
//! `id:` their position (so `Last-Event-ID` resumes past them exactly), and
//! `type=` selects among them; without `include` the stream is what it was.

use reqwest::StatusCode;
use retrace_journal::Journal;
use serde_json::{Value, json};

use crate::support::*;

const FLAKY: &str = "/v1/capabilities/flaky/breaker";

/// Frames until (and with) the first whose `event:` is `kind`.
async fn until_event(sse: &mut Sse, kind: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        let frame = sse.next().await.expect("the stream ended");
        let done = frame.event.as_deref() == Some(kind);
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

fn is_breaker(frame: &Frame) -> bool {
    frame
        .event
        .as_deref()
        .is_some_and(|e| e.starts_with("breaker_"))
}

#[tokio::test]
async fn a_breaker_that_opens_is_seen_on_the_engine_wide_stream_at_its_position_and_resumed() {
    let s = Server::start().await;
    s.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let mut with = s.stream("/v1/events/stream?include=breakers", None).await;
    let mut without = s.stream("/v1/events/stream", None).await;

    // Two failures within the window open it.
    let (status, set) = s
        .put(
            FLAKY,
            json!({"failures": 2, "windowMs": 60_000, "coolDownMs": 3_600_000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let agent = s.register(&["flaky"]).await;
    let mut failed = Vec::new();
    for _ in 0..2 {
        let id = s.start_execution("call", json!({})).await;
        let task = s.claim(&agent).await;
        let task_id = task["id"].as_str().unwrap();
        assert!(task_id.starts_with(&id), "{task}");
        let (status, answer) = s
            .post(
                &format!("/v1/tasks/{task_id}/fail"),
                json!({"error": {"type": "upstream_down", "message": "502"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        failed.push(id);
    }
    let frames = until_event(&mut with, "breaker_opened").await;
    let positions: Vec<u64> = frames.iter().map(Frame::seq).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    for frame in &frames {
        assert_eq!(frame.json()["position"].as_u64(), Some(frame.seq()));
    }

    // The settings, then the opening: named by their type, with no
    // execution.
    let breakers: Vec<&Frame> = frames.iter().filter(|f| is_breaker(f)).collect();
    assert_eq!(breakers.len(), 2, "{frames:#?}");
    let (set_frame, opened) = (breakers[0], breakers[1]);
    let set_json = set_frame.json();
    assert_eq!(set_frame.event.as_deref(), Some("breaker_set"));
    assert_eq!(set_json["type"], "breaker_set");
    assert_eq!(set_json["capability"], "flaky");
    assert!(set_json.get("state").is_none(), "{set_json}");
    assert!(set_json.get("executionId").is_none(), "{set_json}");
    assert_eq!(
        set_json["data"],
        json!({"capability": "flaky",
               "settings": {"failures": 2, "windowMs": 60_000, "coolDownMs": 3_600_000}})
    );
    assert_eq!(set_json["at"], set["setAt"], "recorded when it was set");
    let opened_json = opened.json();
    let position = opened.seq();
    assert_eq!(
        opened_json,
        json!({"position": position, "capability": "flaky", "type": "breaker_opened",
               "state": "open", "at": opened_json["at"],
               "data": {"capability": "flaky", "failures": 2}})
    );
    chrono::DateTime::parse_from_rfc3339(opened_json["at"].as_str().unwrap()).unwrap();
    // Its id is the journal position of the opening's record.
    let record = s
        .engine
        .read()
        .store()
        .sled()
        .unwrap()
        .read_global(position, 1)
        .await
        .unwrap();
    assert_eq!(record[0].position, position);
    assert_eq!(record[0].kind, "breaker_opened");
    // It comes after the failure that tripped it.
    let second_failure = frames
        .iter()
        .position(|f| {
            f.event.as_deref() == Some("task_failed") && f.json()["executionId"] == failed[1]
        })
        .expect("the second failure was sent");
    assert!(second_failure < frames.len() - 1);

    // Without `include`, the same executions' events and nothing else.
    let executions: Vec<&Frame> = frames.iter().filter(|f| !is_breaker(f)).collect();
    for expected in &executions {
        assert_eq!(&&without.next().await.unwrap(), expected);
    }
    let done = s.start_execution("call", json!({})).await;
    loop {
        let frame = without.next().await.unwrap();
        assert!(!is_breaker(&frame), "{frame:?}");
        if frame.json()["executionId"] == done.as_str() {
            break;
        }
    }

    // Resumed after the setting: everything after it, the opening included.
    let mut resumed = s
        .stream("/v1/events/stream?include=breakers", Some(set_frame.seq()))
        .await;
    let after_set = frames.iter().skip_while(|f| f.seq() <= set_frame.seq());
    for expected in after_set {
        assert_eq!(&resumed.next().await.unwrap(), expected);
    }
    // Resumed right before the opening: the opening first.
    let mut resumed = s
        .stream("/v1/events/stream?include=breakers", Some(position - 1))
        .await;
    assert_eq!(&resumed.next().await.unwrap(), opened);

    // Only the breakers: `type=` selects among them, `workflow=` only
    // among executions' events.
    let mut only = s
        .stream(
            "/v1/events/stream?include=breakers&type=breaker_set,breaker_opened&workflow=none",
            None,
        )
        .await;
    assert_eq!(&only.next().await.unwrap(), set_frame);
    assert_eq!(&only.next().await.unwrap(), opened);
    let mut resumed_only = s
        .stream(
            &format!(
                "/v1/events/stream?include=breakers&type=breaker_opened&after={}",
                set_frame.seq()
            ),
            None,
        )
        .await;
    assert_eq!(&resumed_only.next().await.unwrap(), opened);
}

#[tokio::test]
async fn an_unknown_include_is_refused_before_the_stream_starts() {
    let s = Server::start().await;
    for query in [
        "include=schedules",
        "include=",
        "include=breakers,executions",
    ] {
        let answer = s.get(&format!("/v1/events/stream?{query}")).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_query");
        let message: &Value = &answer.1["error"]["message"];
        assert!(
            message.as_str().unwrap().contains("include"),
            "{query}: {message}"
        );
    }
}
