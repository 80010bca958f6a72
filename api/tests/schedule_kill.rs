//! Schedules with real processes: `retrace serve` with an `everyMs`
//! schedule is SIGKILLed at random moments, several times, and restarted on
//! the same folder. At the end every fire time from the schedule's creation
//! to the last look appears exactly once, as one execution whose
//! idempotency key names it: a crash neither fired a time twice nor lost
//! one (the catch-up window is far longer than any restart).
//!
//! `RETRACE_KILL_ROUNDS` (default 3) sets the number of kills.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::collections::BTreeMap;
use std::time::Duration;

use cli_support::{PATIENCE, Server};
use serde_json::{Value, json};

const EVERY_MS: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_neither_repeats_nor_loses_a_fire_time() {
    let rounds: usize = std::env::var("RETRACE_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = reqwest::Client::new();
    let mut server = Server::start(&data).await;
    let defined = post(
        &http,
        &server.base,
        "/v1/workflows",
        &json!({"name": "tick", "steps": [{"id": "a", "type": "task", "capability": "noop"}]}),
    )
    .await;
    assert_eq!(defined.0, 201, "{}", defined.1);
    let created = post(
        &http,
        &server.base,
        "/v1/schedules",
        &json!({"id": "beat", "workflow": "tick", "everyMs": EVERY_MS,
                "catchupWindowMs": 600_000, "overlap": "allow"}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);

    for round in 0..rounds {
        // A random moment, some fire times later (not a synchronisation:
        // the kill may land anywhere, mid-fire included).
        let pause = 700 + (round as u64 * 379 + std::process::id() as u64) % 900;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (_, _log) = server.stop_with("KILL").await;
        server = Server::start(&data).await;
    }

    // Let it catch up to a fire time after the last restart, then look.
    let look = get(&http, &server.base, "/v1/schedules/beat").await.1;
    let target = look["counts"]["fired"].as_u64().unwrap() + 3;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let schedule = loop {
        let s = get(&http, &server.base, "/v1/schedules/beat").await.1;
        if s["counts"]["fired"].as_u64().unwrap() >= target {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "it stopped firing: {s}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(schedule["counts"]["missed"], 0, "{schedule}");
    assert_eq!(schedule["counts"]["skipped"], 0, "{schedule}");
    server.stop().await;

    // Read back on a fresh start: every execution and the time it fired for.
    let server = Server::start(&data).await;
    let list = get(
        &http,
        &server.base,
        "/v1/executions?workflow=tick&limit=1000",
    )
    .await
    .1;
    let mut fire_times: BTreeMap<u64, usize> = BTreeMap::new();
    for e in list["executions"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let one = get(&http, &server.base, &format!("/v1/executions/{id}"))
            .await
            .1;
        assert_eq!(one["status"], "completed", "{one}");
        let key = one["idempotencyKey"].as_str().unwrap();
        assert!(key.starts_with("schedule:beat:"), "{key}");
        let at: u64 = key.rsplit(':').next().unwrap().parse().unwrap();
        *fire_times.entry(at).or_default() += 1;
    }
    let twice: Vec<_> = fire_times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "fire times started twice: {twice:?}");
    let times: Vec<u64> = fire_times.keys().copied().collect();
    assert!(times.len() >= target as usize, "{times:?}");
    // Consecutive from the first: no fire time in between was lost.
    for pair in times.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            EVERY_MS,
            "a fire time was lost: {times:?}"
        );
    }
    let show = get(&http, &server.base, "/v1/schedules/beat").await.1;
    assert!(
        show["counts"]["fired"].as_u64().unwrap() >= times.len() as u64,
        "{show}"
    );
    server.stop().await;
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = http
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, Value) {
    let r = http.get(format!("{base}{path}")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
