//! Outbound webhooks with real processes: `retrace serve` (loopback allowed
//! to its outbound policy) has a subscription to every event kind and
//! executions running (inline steps and one-second waits), while a receiver
//! of the test's own records every delivery. The server is SIGKILLed during
//! deliveries, several times, and restarted on the same folder. At the end
//! every event of every execution (as `GET /v1/executions/{id}/events`
//! shows it) was delivered at least once, carrying that event; per
//! execution, the first deliveries come in increasing `seq`; every
//! signature verifies (checked here with an independent HMAC); a
//! redelivery has the same `webhook-id`, and there are at most as many as
//! kills (the cursor is recorded after each delivery).
//!
//! `RETRACE_KILL_ROUNDS` (default 3) sets the number of kills.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cli_support::{PATIENCE, Server, retrace};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Executions started before each kill, and after the last restart.
const PER_ROUND: usize = 8;

/// One delivery the receiver got.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// Records every delivery and answers `200`; stopped when dropped.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    count: tokio::sync::watch::Receiver<usize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (counted, count) = tokio::sync::watch::channel(0usize);
        let log = got.clone();
        let router = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (log, counted) = (log.clone(), counted.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let mut log = log.lock().unwrap();
                    log.push(Got {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: body.to_vec(),
                    });
                    counted.send_replace(log.len());
                    axum::http::StatusCode::OK
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            url: format!("http://{addr}/hooks"),
            got,
            count,
            stop: Some(stop),
        }
    }

    /// Waits until at least `n` deliveries arrived.
    async fn wait_for(&self, n: usize) {
        let mut count = self.count.clone();
        tokio::time::timeout(PATIENCE, count.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} deliveries"))
            .unwrap();
    }

    fn len(&self) -> usize {
        *self.count.borrow()
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(data: &std::path::Path) -> Server {
    let mut command = retrace();
    command.arg("serve").arg("--data").arg(data).args([
        "--listen",
        "127.0.0.1:0",
        "--http-allow",
        "127.0.0.1/32",
    ]);
    Server::spawn(command, data).await
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

async fn get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let r = http.get(format!("{base}{path}")).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn start_some(http: &reqwest::Client, base: &str, ids: &mut Vec<String>) {
    for _ in 0..PER_ROUND {
        let (status, started) = post(
            http,
            base,
            "/v1/executions",
            &json!({"workflow": "steps", "input": {}}),
        )
        .await;
        assert_eq!(status, 201, "{started}");
        ids.push(started["id"].as_str().unwrap().to_owned());
    }
}

/// Whether `got` is signed with `secret`, computed without the engine.
fn signed_with(key: &[u8], got: &Got) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{}.{}.", got.id, got.timestamp).as_bytes());
    mac.update(&got.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    got.signature.split(' ').any(|s| s == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_delivers_every_event_at_least_once_in_order() {
    let rounds: usize = std::env::var("RETRACE_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = reqwest::Client::new();
    let receiver = Receiver::start().await;
    let mut server = serve(&data).await;
    let noop = |id: &str, next: &str| json!({"id": id, "type": "task", "capability": "noop", "next": next});
    let wait = |id: &str, next: &str| json!({"id": id, "type": "wait", "wait": {"seconds": 1}, "next": next});
    let definition = json!({"name": "steps", "steps": [
        noop("a", "w1"), wait("w1", "b"), noop("b", "w2"), wait("w2", "c"),
        {"id": "c", "type": "task", "capability": "noop"}
    ]});
    let (status, defined) = post(&http, &server.base, "/v1/workflows", &definition).await;
    assert_eq!(status, 201, "{defined}");
    let kinds = retrace_engine::machine::Event::KINDS.to_vec();
    let (status, created) = post(
        &http,
        &server.base,
        "/v1/webhooks",
        &json!({"url": receiver.url, "events": kinds}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let subscription = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();

    let mut ids = Vec::new();
    for _ in 0..rounds {
        start_some(&http, &server.base, &mut ids).await;
        // Killed once deliveries are under way: while the executions'
        // waits end and their events keep coming.
        let seen = receiver.len();
        receiver.wait_for(seen + 10).await;
        let (_, _log) = server.stop_with("KILL").await;
        server = serve(&data).await;
    }
    start_some(&http, &server.base, &mut ids).await;

    // Every execution ends, and every event of each reaches the receiver.
    let mut histories: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for id in &ids {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let page = get(&http, &server.base, &format!("/v1/executions/{id}/events")).await;
            let events = page["events"].as_array().unwrap().clone();
            if events
                .last()
                .is_some_and(|e| e["type"] == "execution_completed")
            {
                histories.insert(id.clone(), events);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never completed: {page}"
            );
            // The interval between polls, not a wait standing in for one.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let total: usize = histories.values().map(Vec::len).sum();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let distinct: BTreeSet<String> = receiver.all().into_iter().map(|g| g.id).collect();
        if distinct.len() >= total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {total} events delivered",
            distinct.len()
        );
        let seen = receiver.len();
        let _ = tokio::time::timeout(Duration::from_secs(1), receiver.wait_for(seen + 1)).await;
    }
    // The last delivery's record follows its answer.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let webhook = loop {
        let webhook = get(&http, &server.base, &format!("/v1/webhooks/{subscription}")).await;
        if webhook["delivered"].as_u64() >= Some(total as u64) {
            break webhook;
        }
        assert!(tokio::time::Instant::now() < deadline, "{webhook}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    server.stop().await;

    let got = receiver.all();
    let mut first_seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut bodies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for g in &got {
        assert!(
            signed_with(&key, g),
            "a signature that does not verify: {g:?}"
        );
        let body: Value = serde_json::from_slice(&g.body).unwrap();
        let data = &body["data"];
        let position = data["position"].as_u64().unwrap();
        assert_eq!(g.id, format!("{subscription}_{position}"), "{body}");
        let execution = data["executionId"].as_str().unwrap().to_owned();
        let history = histories
            .get(&execution)
            .unwrap_or_else(|| panic!("an event of an execution not started here: {body}"));
        let seq = data["seq"].as_u64().unwrap();
        let shown = history.iter().find(|e| e["seq"] == seq).unwrap();
        assert_eq!(&data["event"], shown, "the event as the history shows it");
        match bodies.get(&g.id) {
            // A redelivery is the same message.
            Some(before) => assert_eq!(before, &g.body, "{}", g.id),
            None => {
                bodies.insert(g.id.clone(), g.body.clone());
                first_seqs.entry(execution).or_default().push(seq);
            }
        }
    }
    for (execution, history) in &histories {
        let seqs = first_seqs.get(execution).cloned().unwrap_or_default();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{execution}: first deliveries out of order: {seqs:?}"
        );
        let all: Vec<u64> = history.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, all, "{execution}: every event, once first, in order");
    }
    let duplicates = got.len() - bodies.len();
    println!(
        "{} executions, {total} events, {} deliveries, {duplicates} duplicates after {rounds} kills",
        histories.len(),
        got.len()
    );
    assert!(
        duplicates <= rounds,
        "at most one redelivery per kill: {duplicates} after {rounds}"
    );
    assert_eq!(webhook["failed"], 0, "{webhook}");
    assert_eq!(
        webhook["delivered"].as_u64(),
        Some(total as u64),
        "{webhook}"
    );
}
