//! Server-Sent Events: history then live, resumption with `Last-Event-ID`
//! (every event exactly once), the end after the terminal event, many
//! clients at once, and the engine-wide stream.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use retrace_api::ApiConfig;
use serde_json::{Value, json};

use crate::support::*;

/// The execution's whole history as the events page shows it.
async fn page(s: &Server, id: &str) -> Vec<Value> {
    let (status, body) = s
        .get(&format!("/v1/executions/{id}/events?limit=1000"))
        .await;
    assert_eq!(status, StatusCode::OK);
    body["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_stream_replays_history_with_the_pages_json_and_ends_after_the_terminal_event() {
    let s = Server::start().await;
    s.define(inline_chain("chain", 3)).await;
    let id = s.start_execution("chain", json!({})).await;
    let frames = s.stream_to_end(&id).await;
    let events = page(&s, &id).await;
    assert_eq!(frames.len(), events.len());
    for (frame, event) in frames.iter().zip(&events) {
        assert_eq!(frame.seq(), event["seq"].as_u64().unwrap());
        assert_eq!(frame.event.as_deref(), event["type"].as_str());
        assert_eq!(frame.json(), *event, "data is the page's JSON");
    }
    assert_eq!(
        frames.last().unwrap().event.as_deref(),
        Some("execution_completed")
    );
}

#[tokio::test]
async fn after_and_last_event_id_resume_and_the_header_wins() {
    let s = Server::start().await;
    s.define(inline_chain("chain", 3)).await;
    let id = s.start_execution("chain", json!({})).await;
    let path = format!("/v1/executions/{id}/events/stream");
    let seqs = |frames: Vec<Frame>| frames.iter().map(Frame::seq).collect::<Vec<_>>();
    let mut from_query = s.stream(&format!("{path}?after=3"), None).await;
    assert_eq!(seqs(from_query.rest().await), [4, 5]);
    let mut from_header = s.stream(&format!("{path}?after=1"), Some(4)).await;
    assert_eq!(seqs(from_header.rest().await), [5]);
    // A client that saw the end gets 204 (what stops a browser's
    // EventSource from reconnecting), not a stream that hangs or an empty
    // 200 it would reconnect to for ever.
    for resumed in [
        s.client.get(s.url(&path)).header("last-event-id", "5"),
        s.client.get(s.url(&format!("{path}?after=9"))),
    ] {
        let response = resumed.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(response.bytes().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_sees_every_event_exactly_once() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 20)).await;
    let id = s.start_execution("gated", json!({})).await;
    let path = format!("/v1/executions/{id}/events/stream");

    // The stored part so far, then the client goes away mid-history.
    let mut first = s.stream(&path, None).await;
    let mut seen = vec![first.next().await.unwrap()];
    seen.push(first.next().await.unwrap());
    drop(first);
    // While it is away, the execution moves on to its end.
    let (status, _) = s
        .post_empty(&format!("/v1/executions/{id}/signals/go"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // It comes back in the middle of what happened meanwhile.
    let last = seen.last().unwrap().seq();
    let mut second = s.stream(&path, Some(last)).await;
    for _ in 0..5 {
        seen.push(second.next().await.unwrap());
    }
    drop(second);
    let last = seen.last().unwrap().seq();
    let mut third = s.stream(&path, Some(last)).await;
    seen.extend(third.rest().await);

    let events = page(&s, &id).await;
    let seqs: Vec<u64> = seen.iter().map(Frame::seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "every event once, in order");
    for (frame, event) in seen.iter().zip(&events) {
        assert_eq!(frame.json(), *event);
    }
    assert_eq!(
        seen.last().unwrap().event.as_deref(),
        Some("execution_completed")
    );
}

#[tokio::test]
async fn a_hundred_clients_on_one_execution_see_the_same_sequence() {
    const CLIENTS: usize = 100;
    let s = Server::start().await;
    s.define(gated_chain("gated", 10)).await;
    let id = s.start_execution("gated", json!({})).await;
    let path = format!("/v1/executions/{id}/events/stream");
    // Every client has its first event (and so is subscribed) before the
    // execution moves on, so each sees the rest live.
    let ready = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut sse = s.stream(&path, None).await;
        let ready = ready.clone();
        clients.push(tokio::spawn(async move {
            let mut frames = vec![sse.next().await.unwrap()];
            ready.wait().await;
            frames.extend(sse.rest().await);
            frames
        }));
    }
    tokio::time::timeout(PATIENCE, ready.wait()).await.unwrap();
    s.post_empty(&format!("/v1/executions/{id}/signals/go"))
        .await;

    let events = page(&s, &id).await;
    let expected: Vec<(u64, Value)> = events
        .iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e.clone()))
        .collect();
    for client in clients {
        let frames = tokio::time::timeout(PATIENCE, client)
            .await
            .unwrap()
            .unwrap();
        let got: Vec<(u64, Value)> = frames.iter().map(|f| (f.seq(), f.json())).collect();
        assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn the_engine_wide_stream_filters_and_resumes_by_position() {
    let s = Server::start().await;
    s.define(inline_chain("alpha", 1)).await;
    s.define(inline_chain("beta", 1)).await;
    let a = s.start_execution("alpha", json!({})).await;
    let b = s.start_execution("beta", json!({})).await;

    let mut all = s.stream("/v1/events/stream", None).await;
    let mut frames = Vec::new();
    for _ in 0..6 {
        frames.push(all.next().await.unwrap());
    }
    drop(all);
    let executions: Vec<String> = frames
        .iter()
        .map(|f| f.json()["executionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(executions, [&a, &a, &a, &b, &b, &b].map(String::clone));
    let positions: Vec<u64> = frames.iter().map(Frame::seq).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let first = frames[0].json();
    assert_eq!(first["workflow"], "alpha");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["type"], "execution_started");
    assert_eq!(first["position"].as_u64(), Some(positions[0]));

    // Resume after the third: the rest, then live events as they come.
    let mut resumed = s.stream("/v1/events/stream", Some(positions[2])).await;
    for expected in &frames[3..] {
        assert_eq!(&resumed.next().await.unwrap(), expected);
    }
    let c = s.start_execution("alpha", json!({})).await;
    assert_eq!(
        resumed.next().await.unwrap().json()["executionId"],
        c.as_str()
    );

    // Filters: by workflow, by type (a comma-separated list).
    let mut betas = s.stream("/v1/events/stream?workflow=beta", None).await;
    for _ in 0..3 {
        assert_eq!(
            betas.next().await.unwrap().json()["executionId"],
            b.as_str()
        );
    }
    let mut ends = s
        .stream(
            "/v1/events/stream?type=execution_completed,execution_failed",
            None,
        )
        .await;
    for expected in [&a, &b, &c] {
        let frame = ends.next().await.unwrap();
        assert_eq!(frame.event.as_deref(), Some("execution_completed"));
        assert_eq!(frame.json()["executionId"], expected.as_str());
    }
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let s = Server::start().await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let mut all = s.stream("/v1/events/stream", None).await;
    let mut one = s
        .stream(&format!("/v1/executions/{id}/events/stream"), None)
        .await;
    assert!(all.next().await.is_some());
    assert!(one.next().await.is_some());
    s.state.shutdown.trigger();
    tokio::time::timeout(PATIENCE, all.rest()).await.unwrap();
    tokio::time::timeout(PATIENCE, one.rest()).await.unwrap();
}

#[tokio::test]
async fn an_idle_stream_sends_keep_alive_comments() {
    let s = Server::with_config(ApiConfig {
        sse_keep_alive: Duration::from_millis(20),
        ..ApiConfig::default()
    })
    .await;
    s.define(gated_chain("gated", 1)).await;
    let id = s.start_execution("gated", json!({})).await;
    let mut response = s
        .client
        .get(s.url(&format!("/v1/executions/{id}/events/stream?after=100")))
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(PATIENCE, response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(chunk.starts_with(b":"), "{chunk:?}");
}
