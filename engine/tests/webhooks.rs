//! Outbound webhooks on the engine, with a simulated clock the tests move:
//! the retry schedule (delays doubling up to the cap, given up past the
//! bound, then the next event delivered), a recovery that resumes after
//! the recorded cursor without sending a recorded event again, and a
//! deleted subscription that is sent nothing more. The receiver is an axum
//! server on `127.0.0.1:0` (the policy allows loopback here), stopped by
//! each test; nothing sleeps to synchronise: tests wait for its requests or
//! for the engine's recorded state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::sync::Arc;
use std::time::Duration;

use retrace_engine::clock::{Clock, SimClock};
use retrace_engine::http::{AddressPolicy, HttpOptions};
use retrace_engine::runtime::{Engine, EngineConfig, WebhookInfo};
use retrace_engine::webhooks::{WebhookOptions, WebhookSpec};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Options};
use serde_json::{Value, json};
use support::T0;
use tokio::sync::mpsc;

/// A bound for every wait, so a bug fails a test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// One request: its `webhook-id`, body, and the engine's time.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    body: Value,
    at_ms: u64,
}

struct Receiver {
    url: String,
    arrivals: mpsc::UnboundedReceiver<Got>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// Answers `status` to every request.
    async fn start(clock: &SimClock, status: u16) -> Receiver {
        let (tx, arrivals) = mpsc::unbounded_channel();
        let clock = clock.clone();
        let router = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (tx, clock) = (tx.clone(), clock.clone());
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let _ = tx.send(Got {
                        id,
                        body,
                        at_ms: clock.now_ms(),
                    });
                    axum::http::StatusCode::from_u16(status).unwrap()
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
            arrivals,
            stop: Some(stop),
        }
    }

    async fn next(&mut self) -> Got {
        tokio::time::timeout(PATIENCE, self.arrivals.recv())
            .await
            .expect("a delivery arrives")
            .unwrap()
    }

    /// Nothing has arrived (and nothing is on its way: callers first wait
    /// until the engine has recorded every event settled).
    fn nothing_more(&mut self) {
        assert!(self.arrivals.try_recv().is_err());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn open(store: &MemoryStore, clock: &SimClock) -> Engine {
    let journal = EventLog::in_memory(store.clone(), Options::default()).unwrap();
    let config = EngineConfig {
        http: HttpOptions {
            policy: AddressPolicy::parse(&["127.0.0.1/32".to_owned()], &[]).unwrap(),
            ..HttpOptions::default()
        },
        webhooks: WebhookOptions {
            retry_for_ms: 10_000,
            first_delay_ms: 1_000,
            max_delay_ms: 4_000,
            timeout_ms: 5_000,
        },
        ..EngineConfig::journal(Arc::new(journal), Arc::new(clock.clone()))
    };
    Engine::open(config).await.unwrap()
}

async fn define_and_start(engine: &Engine) -> retrace_engine::ExecutionId {
    let doc = json!({"name": "tick", "steps": [{"id": "a", "type": "task", "capability": "noop"}]});
    engine.define_json(doc.to_string().as_bytes()).await.ok();
    let started = engine
        .start(retrace_engine::runtime::StartRequest {
            workflow: "tick".into(),
            input: json!({}),
            ..Default::default()
        })
        .await
        .unwrap();
    started.id
}

fn spec(url: &str) -> WebhookSpec {
    WebhookSpec {
        url: url.to_owned(),
        events: vec!["execution_completed".to_owned()],
        workflow: None,
    }
}

/// The subscription once `done` holds (polled between the engine's steps).
async fn when(engine: &Engine, id: &str, done: impl Fn(&WebhookInfo) -> bool) -> WebhookInfo {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let info = engine.webhook(id).unwrap();
            if done(&info) {
                return info;
            }
            // The interval between polls, not a wait standing in for one.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the subscription gets there")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_back_off_until_the_bound_then_the_event_is_given_up() {
    let (store, clock) = (MemoryStore::new(), SimClock::new(T0));
    let engine = open(&store, &clock).await;
    let mut receiver = Receiver::start(&clock, 503).await;
    let webhook = engine
        .create_webhook(spec(&receiver.url), Some("ops"), None)
        .await
        .unwrap();
    let first = define_and_start(&engine).await;
    // Attempts at 0, +1 s, +3 s (2 s later), +7 s (4 s later, the cap); the
    // next would be at +11 s, past the 10 s bound.
    let mut times = Vec::new();
    for attempt in 1..=4u32 {
        let got = receiver.next().await;
        assert_eq!(got.body["data"]["executionId"], first.to_string());
        times.push(got.at_ms - T0);
        if attempt < 4 {
            let info = when(&engine, &webhook.id, |i| {
                i.retrying.as_ref().is_some_and(|r| r.attempts == attempt)
            })
            .await;
            let retrying = info.retrying.unwrap();
            assert!(retrying.error.contains("503"), "{retrying:?}");
            clock.set(retrying.next_attempt_ms);
        }
    }
    assert_eq!(times, [0, 1_000, 3_000, 7_000]);
    let info = when(&engine, &webhook.id, |i| i.webhook.failed == 1).await;
    let failure = info.webhook.last_failure.unwrap();
    assert_eq!(failure.attempts, 4);
    assert!(failure.error.contains("503"), "{}", failure.error);
    assert!(info.retrying.is_none());
    assert_eq!(info.webhook.cursor, failure.position);
    receiver.nothing_more();
    engine.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_resumes_after_the_recorded_cursor_and_a_deleted_subscription_gets_nothing() {
    let (store, clock) = (MemoryStore::new(), SimClock::new(T0));
    let engine = open(&store, &clock).await;
    let mut receiver = Receiver::start(&clock, 200).await;
    let webhook = engine
        .create_webhook(spec(&receiver.url), None, None)
        .await
        .unwrap();
    let first = define_and_start(&engine).await;
    let got = receiver.next().await;
    assert_eq!(got.body["data"]["executionId"], first.to_string());
    let position = got.body["data"]["position"].as_u64().unwrap();
    assert_eq!(got.id, format!("{}_{position}", webhook.id));
    when(&engine, &webhook.id, |i| i.webhook.cursor == position).await;
    engine.shutdown().await.unwrap();
    drop(engine);

    // Reopened: the recorded event is not sent again; the next one is.
    let engine = open(&store, &clock).await;
    let second = define_and_start(&engine).await;
    let got = receiver.next().await;
    assert_eq!(got.body["data"]["executionId"], second.to_string());
    let info = when(&engine, &webhook.id, |i| i.webhook.delivered == 2).await;
    assert_eq!(info.webhook.failed, 0);
    receiver.nothing_more();

    engine
        .delete_webhook(&webhook.id, None, None)
        .await
        .unwrap();
    define_and_start(&engine).await;
    assert!(engine.webhook(&webhook.id).is_err());
    engine.shutdown().await.unwrap();
    // Shut down: every loop has stopped, so nothing can be under way.
    receiver.nothing_more();
}
