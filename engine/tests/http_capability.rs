//! The built-in `http` capability against real HTTP servers on loopback
//! (axum on `127.0.0.1:0`, or `127.0.0.2:0` for an address the policy
//! refuses), started and stopped by each test: results, retries and
//! `Retry-After`, errors that are not retried, timeouts, the address policy
//! (IP literals, names, redirects), secrets (substituted on the wire,
//! absent from every byte of the data folder), the `Idempotency-Key`
//! across attempts and restarts, the concurrency bound, and the example
//! workflow `examples/workflows/http_call.json`.
//!
//! Engine time is a simulated clock the tests move; the servers log the
//! simulated time of each request they see. Nothing sleeps to synchronise:
//! tests wait for recorded events or for the servers' own signals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, Response};
use futures::StreamExt;
use retrace_engine::ExecutionId;
use retrace_engine::clock::{Clock, SimClock};
use retrace_engine::http::{AddressPolicy, HttpOptions, Secrets};
use retrace_engine::machine::{Event, ExecutionState, Status};
use retrace_engine::runtime::{Engine, EngineConfig, StartRequest};
use retrace_engine::store::{JournalOptions, Storage};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Options};
use serde_json::{Value, json};
use support::T0;
use tokio::sync::{Semaphore, mpsc};

// ---------------------------------------------------------------------------
// The test server.
// ---------------------------------------------------------------------------

/// One request a test server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: String,
    /// The engine's (simulated) time when it arrived.
    at_ms: u64,
}

#[derive(Clone)]
struct Shared {
    clock: SimClock,
    log: Arc<Mutex<Vec<Seen>>>,
    /// Requests to `/flaky` so far.
    flaky: Arc<AtomicUsize>,
    /// `/hold` waits for a permit the test gives.
    gate: Arc<Semaphore>,
    /// Every request, as it arrives.
    arrivals: mpsc::UnboundedSender<Seen>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

struct TestServer {
    addr: SocketAddr,
    shared: Shared,
    arrivals: mpsc::UnboundedReceiver<Seen>,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl TestServer {
    async fn start(clock: &SimClock) -> TestServer {
        TestServer::on("127.0.0.1:0", clock).await
    }

    async fn on(bind: &str, clock: &SimClock) -> TestServer {
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, arrivals) = mpsc::unbounded_channel();
        let shared = Shared {
            clock: clock.clone(),
            log: Arc::default(),
            flaky: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            arrivals: tx,
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
        };
        let state = shared.clone();
        let router = axum::Router::new().fallback(move |request: Request<Body>| {
            let state = state.clone();
            async move { answer(state, request).await }
        });
        let serving = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        TestServer {
            addr,
            shared,
            arrivals,
            serving,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The next request to arrive.
    async fn arrival(&mut self) -> Seen {
        self.arrivals.recv().await.unwrap()
    }
}

fn reply(status: u16, content_type: &str, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

async fn answer(state: Shared, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    // Counted before it is announced, so a test that hears of it sees it.
    if parts.uri.path() == "/hold" {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: query.clone(),
        headers: headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at_ms: state.clock.now_ms(),
    };
    state.log.lock().unwrap().push(seen.clone());
    let _ = state.arrivals.send(seen.clone());
    match parts.uri.path() {
        "/json" => reply(
            200,
            "application/json",
            json!({"hello": "world", "n": 1}).to_string(),
        ),
        "/text" => reply(200, "text/plain; charset=utf-8", "just text"),
        "/flaky" => {
            let n = state.flaky.fetch_add(1, Ordering::SeqCst) + 1;
            let fails: usize = query.get("fails").map_or(1, |f| f.parse().unwrap());
            if n <= fails {
                let mut response = Response::builder()
                    .status(503)
                    .header("content-type", "text/plain");
                if let Some(after) = query.get("after") {
                    response = response.header("retry-after", after);
                }
                response.body(Body::from("busy, come back later")).unwrap()
            } else {
                reply(200, "application/json", json!({"attempt": n}).to_string())
            }
        }
        "/missing" => reply(404, "text/plain", "no such order"),
        "/hang" => futures::future::pending().await,
        "/redirect" => Response::builder()
            .status(302)
            .header("location", query.get("to").cloned().unwrap_or_default())
            .body(Body::empty())
            .unwrap(),
        "/loop" => Response::builder()
            .status(307)
            .header("location", "/loop")
            .body(Body::empty())
            .unwrap(),
        "/to-ftp" => Response::builder()
            .status(301)
            .header("location", "ftp://files.example.com/x")
            .body(Body::empty())
            .unwrap(),
        "/echo" => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header(
                "x-echo-authorization",
                headers.get("authorization").cloned().unwrap_or_default(),
            )
            .body(Body::from(
                json!({"method": seen.method, "headers": headers, "query": query,
                       "body": seen.body})
                .to_string(),
            ))
            .unwrap(),
        "/big" => reply(200, "text/plain", "x".repeat(4096)),
        "/hold" => {
            state.gate.acquire().await.unwrap().forget();
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            reply(200, "application/json", "{}")
        }
        "/api/orders/missing" => reply(404, "application/json", r#"{"error":"no such order"}"#),
        path if path.starts_with("/api/orders/") => reply(
            200,
            "application/json",
            json!({"id": path.trim_start_matches("/api/orders/"), "status": "shipped"}).to_string(),
        ),
        "/api/notifications" => reply(202, "application/json", seen.body.clone()),
        _ => reply(418, "text/plain", "unscripted path"),
    }
}

// ---------------------------------------------------------------------------
// The engine.
// ---------------------------------------------------------------------------

/// The policy the tests run with: loopback's 127.0.0.1 allowed, nothing
/// else of it (127.0.0.2 stays refused).
fn loopback() -> HttpOptions {
    HttpOptions {
        policy: AddressPolicy::parse(&["127.0.0.1/32".to_owned()], &[]).unwrap(),
        ..HttpOptions::default()
    }
}

struct World {
    store: MemoryStore,
    clock: SimClock,
    http: HttpOptions,
    engine: Engine,
}

impl World {
    async fn new(http: HttpOptions) -> World {
        let store = MemoryStore::new();
        let clock = SimClock::new(T0);
        let engine = open(&store, &clock, http.clone()).await;
        World {
            store,
            clock,
            http,
            engine,
        }
    }

    /// A crash: the disk frozen as it is, a new engine recovering from it.
    async fn crash_and_recover(&mut self) {
        let disk = self.store.duplicate();
        self.store = disk.clone();
        let new = open(&disk, &self.clock, self.http.clone()).await;
        drop(std::mem::replace(&mut self.engine, new));
    }

    async fn define(&self, doc: Value) {
        self.engine
            .define_json(doc.to_string().as_bytes())
            .await
            .unwrap();
    }

    async fn start(&self, workflow: &str, input: Value) -> ExecutionId {
        start(&self.engine, workflow, input).await
    }

    async fn ended(&self, id: ExecutionId) -> ExecutionState {
        self.engine.wait_until_ended(id).await.unwrap()
    }

    async fn events(&self, id: ExecutionId) -> Vec<(u64, Event)> {
        events(&self.engine, id).await
    }
}

async fn open(store: &MemoryStore, clock: &SimClock, http: HttpOptions) -> Engine {
    let journal = EventLog::in_memory(store.clone(), Options::default()).unwrap();
    let config = EngineConfig {
        http,
        ..EngineConfig::journal(Arc::new(journal), Arc::new(clock.clone()))
    };
    Engine::open(config).await.unwrap()
}

async fn start(engine: &Engine, workflow: &str, input: Value) -> ExecutionId {
    engine
        .start(StartRequest {
            workflow: workflow.into(),
            input,
            ..StartRequest::default()
        })
        .await
        .unwrap()
        .id
}

/// The execution's events with the time each was recorded.
async fn events(engine: &Engine, id: ExecutionId) -> Vec<(u64, Event)> {
    engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.at_ms, e.event))
        .collect()
}

/// Waits until the execution's history has `n` events of `kind`.
async fn wait_for(engine: &Engine, id: ExecutionId, kind: &str, n: usize) {
    let mut tail = engine.read().subscribe(id, 1);
    let mut seen = 0;
    while let Some(e) = tail.next().await {
        if e.unwrap().event.kind() == kind {
            seen += 1;
            if seen == n {
                return;
            }
        }
    }
    panic!("the journal closed before {n} {kind}");
}

/// A workflow of one `http` step with `input`, and `extra` fields on it.
fn one_call(name: &str, input: Value, extra: Value) -> Value {
    let mut step = json!({"id": "call", "type": "task", "capability": "http", "input": input});
    for (k, v) in extra.as_object().unwrap() {
        step[k] = v.clone();
    }
    json!({"name": name, "steps": [step]})
}

fn failures(events: &[(u64, Event)]) -> Vec<(String, Option<bool>, Option<u64>, String)> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::TaskFailed {
                error,
                retry_after_ms,
                ..
            } => Some((
                error.kind.clone(),
                error.retryable,
                *retry_after_ms,
                error.message.clone(),
            )),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Results.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_json_body_is_parsed_a_text_body_kept_and_the_engine_is_the_performer() {
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    w.define(json!({
        "name": "fetch_both",
        "steps": [
            {"id": "json", "type": "task", "capability": "http", "next": "text",
             "input": {"method": "GET", "url": "$.input.json"}, "output": {"first": "$.output"}},
            {"id": "text", "type": "task", "capability": "http",
             "input": {"method": "get", "url": "$.input.text", "query": {"q": "a b", "n": 2}}}
        ]
    }))
    .await;
    let id = w
        .start(
            "fetch_both",
            json!({"json": server.url("/json"), "text": server.url("/text")}),
        )
        .await;
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.error);
    let first = &state.variables["first"];
    assert_eq!(first["status"], 200);
    assert_eq!(first["body"], json!({"hello": "world", "n": 1}));
    assert_eq!(first["headers"]["content-type"], "application/json");
    let output = state.output.unwrap();
    assert_eq!(output["status"], 200);
    assert_eq!(output["body"], "just text");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("GET", "/text")
    );
    assert_eq!(seen[1].query["q"], "a b");
    assert_eq!(seen[1].query["n"], "2");
    assert_eq!(seen[0].headers["idempotency-key"], format!("{id}.1"));
    assert!(seen[0].headers["user-agent"].starts_with("retrace/"));
    // Recorded like an agent's report, the engine as the agent.
    let agents: Vec<Option<String>> = w
        .events(id)
        .await
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::TaskCompleted { agent, .. } => Some(agent),
            _ => None,
        })
        .collect();
    let agent = Some("http (built-in)".to_owned());
    assert_eq!(agents, [agent.clone(), agent]);
}

#[tokio::test]
async fn a_body_is_sent_as_json_or_as_text() {
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    let url = server.url("/echo");
    w.define(one_call(
        "post_json",
        json!({"method": "POST", "url": url, "body": {"orderId": "$.input.id"}}),
        json!({}),
    ))
    .await;
    w.define(one_call(
        "put_text",
        json!({"method": "PUT", "url": url, "body": "$.input.text",
               "headers": {"Content-Type": "text/csv"}}),
        json!({}),
    ))
    .await;
    let json_call = w.start("post_json", json!({"id": "o-1"})).await;
    let echoed = w.ended(json_call).await.output.unwrap()["body"].clone();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["headers"]["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(echoed["body"].as_str().unwrap()).unwrap(),
        json!({"orderId": "o-1"})
    );
    let text_call = w.start("put_text", json!({"text": "a,b\n1,2"})).await;
    let echoed = w.ended(text_call).await.output.unwrap()["body"].clone();
    assert_eq!(echoed["headers"]["content-type"], "text/csv");
    assert_eq!(echoed["body"], "a,b\n1,2");
}

// ---------------------------------------------------------------------------
// Failures, retries and Retry-After.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_503_with_retry_after_is_retried_no_sooner_than_asked_with_the_same_idempotency_key() {
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    w.define(one_call(
        "flaky",
        json!({"method": "POST", "url": server.url("/flaky?fails=1&after=120")}),
        json!({"retry": {"maxAttempts": 3, "interval": 100}}),
    ))
    .await;
    let id = w.start("flaky", json!({})).await;
    wait_for(&w.engine, id, "retry_scheduled", 1).await;
    let events = w.events(id).await;
    let failed = failures(&events);
    assert_eq!(failed.len(), 1);
    let (kind, retryable, retry_after, message) = &failed[0];
    assert_eq!(
        (kind.as_str(), *retryable, *retry_after),
        ("http_503", Some(true), Some(120_000))
    );
    assert!(
        message.contains("answered 503 Service Unavailable: busy, come back later"),
        "{message}"
    );
    let (failed_at, due_at_ms) = events
        .iter()
        .find_map(|(at, e)| match e {
            Event::RetryScheduled {
                delay_ms,
                due_at_ms,
                ..
            } => {
                assert_eq!(*delay_ms, 120_000, "Retry-After, not the policy's 100 ms");
                Some((*at, *due_at_ms))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(due_at_ms, failed_at + 120_000);

    // Past the policy's own delay, the retry still waits.
    w.clock.advance(1_000);
    let state = w.engine.state(id).await.unwrap();
    assert_eq!(
        state.activations[&1].waiting,
        retrace_engine::machine::Waiting::Retry {
            attempt: 2,
            due_at_ms
        }
    );
    w.clock.set(due_at_ms);
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.error);
    assert_eq!(state.output.unwrap()["body"], json!({"attempt": 2}));

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "one failure, one retry");
    assert!(
        seen[1].at_ms >= seen[0].at_ms + 120_000,
        "the retry came {} ms after the failure",
        seen[1].at_ms - seen[0].at_ms
    );
    let second_scheduled = w
        .events(id)
        .await
        .into_iter()
        .find_map(|(at, e)| match e {
            Event::TaskScheduled { attempt: 2, .. } => Some(at),
            _ => None,
        })
        .unwrap();
    assert!(second_scheduled >= due_at_ms);
    let keys: Vec<&str> = seen
        .iter()
        .map(|s| s.headers["idempotency-key"].as_str())
        .collect();
    assert_eq!(keys, [format!("{id}.1"), format!("{id}.1")]);
}

#[tokio::test]
async fn a_404_is_not_retried() {
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    w.define(one_call(
        "lookup",
        json!({"method": "GET", "url": server.url("/missing")}),
        json!({"retry": {"maxAttempts": 5, "interval": 0}}),
    ))
    .await;
    let id = w.start("lookup", json!({})).await;
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Failed);
    let error = state.error.unwrap();
    assert_eq!(error.kind, "http_404");
    assert_eq!(error.retryable, Some(false));
    assert_eq!(error.agent.as_deref(), Some("http (built-in)"));
    assert!(
        error.message.contains("404 Not Found: no such order"),
        "{}",
        error.message
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_request_past_its_timeout_fails_with_http_timeout_bounded_by_start_to_close() {
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    let url = server.url("/hang");
    w.define(one_call(
        "own_timeout",
        json!({"method": "GET", "url": url, "timeoutMs": 200}),
        json!({}),
    ))
    .await;
    w.define(one_call(
        "step_timeout",
        json!({"method": "GET", "url": url, "timeoutMs": 60000}),
        json!({"timeout": {"startToCloseMs": 150}}),
    ))
    .await;
    for (workflow, ms) in [("own_timeout", 200), ("step_timeout", 150)] {
        let id = w.start(workflow, json!({})).await;
        let error = w.ended(id).await.error.unwrap();
        assert_eq!(error.kind, "http_timeout", "{workflow}");
        assert_eq!(error.retryable, Some(true));
        assert!(
            error
                .message
                .contains(&format!("no complete answer within {ms} ms")),
            "{workflow}: {}",
            error.message
        );
    }
}

#[tokio::test]
async fn an_input_of_the_wrong_shape_fails_without_a_retry_and_says_what_is_wrong() {
    let w = World::new(loopback()).await;
    w.define(json!({"name": "computed", "steps": [
        {"id": "call", "type": "task", "capability": "http", "input": "$.input.request",
         "retry": {"maxAttempts": 3, "interval": 0}}
    ]}))
    .await;
    let id = w
        .start(
            "computed",
            json!({"request": {"method": "FETCH", "url": "http://127.0.0.1:1/", "tiemoutMs": 5}}),
        )
        .await;
    let state = w.ended(id).await;
    let error = state.error.unwrap();
    assert_eq!(error.kind, "http_invalid_request");
    assert_eq!(error.retryable, Some(false));
    assert!(
        error
            .message
            .contains("input.method: `FETCH` is not a method"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains(
            "input.tiemoutMs: unknown field of the http capability; did you mean `timeoutMs`?"
        ),
        "{}",
        error.message
    );
    assert_eq!(failures(&w.events(id).await).len(), 1, "not retried");
}

#[tokio::test]
async fn a_response_over_the_limit_fails() {
    let w = World::new(HttpOptions {
        max_response_bytes: 1024,
        ..loopback()
    })
    .await;
    let server = TestServer::start(&w.clock).await;
    w.define(one_call(
        "big",
        json!({"method": "GET", "url": server.url("/big")}),
        json!({}),
    ))
    .await;
    let id = w.start("big", json!({})).await;
    let error = w.ended(id).await.error.unwrap();
    assert_eq!(error.kind, "http_response_too_large");
    assert_eq!(error.retryable, Some(false));
    assert!(
        error.message.contains("limit of 1024 bytes"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn what_goes_wrong_on_the_way_has_its_type_and_retryability() {
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    // Nobody listens on a port just given back.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    // A server that promises 100 bytes, sends 3 and hangs up.
    let cut = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cut_addr = cut.local_addr().unwrap();
    let cutting = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut socket, _) = cut.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
                .await;
        }
    });
    w.define(one_call(
        "anywhere",
        json!({"method": "GET", "url": "$.input.url"}),
        json!({}),
    ))
    .await;
    for (url, kind, retryable, says) in [
        (
            format!("http://{closed}/"),
            "http_connect",
            true,
            "cannot connect",
        ),
        (
            format!("http://{cut_addr}/"),
            "http_io",
            true,
            "the exchange failed",
        ),
        (
            server.url("/loop"),
            "http_redirect",
            false,
            "more than 10 redirects",
        ),
        (
            server.url("/to-ftp"),
            "http_redirect",
            false,
            "301 Moved Permanently to a `ftp:` URL; only http and https are followed",
        ),
    ] {
        let id = w.start("anywhere", json!({"url": url})).await;
        let error = w.ended(id).await.error.unwrap();
        assert_eq!(error.kind, kind, "{url}: {}", error.message);
        assert_eq!(error.retryable, Some(retryable), "{url}");
        assert!(error.message.contains(says), "{url}: {}", error.message);
    }
    assert_eq!(
        server.seen().iter().filter(|s| s.path == "/loop").count(),
        11,
        "the first request and 10 redirects"
    );
    cutting.abort();
}

#[tokio::test]
async fn a_request_waiting_for_a_turn_past_its_schedule_to_start_times_out() {
    let w = World::new(HttpOptions {
        max_concurrency: 1,
        ..loopback()
    })
    .await;
    let mut server = TestServer::start(&w.clock).await;
    w.define(one_call(
        "held",
        json!({"method": "GET", "url": server.url("/hold")}),
        json!({}),
    ))
    .await;
    w.define(one_call(
        "impatient",
        json!({"method": "GET", "url": server.url("/json")}),
        json!({"timeout": {"scheduleToStartMs": 1000}}),
    ))
    .await;
    let holding = w.start("held", json!({})).await;
    server.arrival().await;
    let waiting = w.start("impatient", json!({})).await;
    wait_for(&w.engine, waiting, "task_scheduled", 1).await;
    w.clock.advance(1_000);
    let error = w.ended(waiting).await.error.unwrap();
    assert_eq!(error.kind, "timeout", "{}", error.message);
    assert!(
        error.message.contains("schedule_to_start"),
        "{}",
        error.message
    );
    server.shared.gate.add_permits(1);
    assert_eq!(w.ended(holding).await.status, Status::Completed);
    assert!(
        server.seen().iter().all(|s| s.path != "/json"),
        "the impatient request was never made"
    );
}

// ---------------------------------------------------------------------------
// The address policy.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn loopback_is_refused_by_default_as_a_literal_and_as_a_name() {
    let w = World::new(HttpOptions::default()).await;
    let server = TestServer::start(&w.clock).await;
    let port = server.addr.port();
    w.define(one_call(
        "inside",
        json!({"method": "GET", "url": "$.input.url"}),
        json!({"retry": {"maxAttempts": 3, "interval": 0}}),
    ))
    .await;
    for (url, says) in [
        (
            format!("http://127.0.0.1:{port}/json"),
            "the address 127.0.0.1 of 127.0.0.1 is refused: it is loopback (127.0.0.0/8)",
        ),
        (
            format!("http://localhost:{port}/json"),
            "of localhost is refused: it is loopback",
        ),
        // 127.0.0.1 written as one number is still an IP literal.
        (
            format!("http://2130706433:{port}/json"),
            "the address 127.0.0.1 of 127.0.0.1 is refused",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/json"),
            "the address ::ffff:127.0.0.1 of [::ffff:7f00:1] is refused: it is loopback",
        ),
    ] {
        let id = w.start("inside", json!({"url": url})).await;
        let state = w.ended(id).await;
        let error = state.error.unwrap();
        assert_eq!(
            error.kind, "http_address_refused",
            "{url}: {}",
            error.message
        );
        assert_eq!(error.retryable, Some(false));
        assert!(error.message.contains(says), "{url}: {}", error.message);
        assert_eq!(failures(&w.events(id).await).len(), 1, "not retried");
    }
    assert!(server.seen().is_empty(), "no request reached the server");
}

#[tokio::test]
async fn a_name_resolves_to_the_allowed_addresses_only() {
    // `localhost` is 127.0.0.1 (allowed) and perhaps ::1 (refused): the
    // request goes to the allowed one.
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    let url = format!("http://localhost:{}/json", server.addr.port());
    w.define(one_call(
        "by_name",
        json!({"method": "GET", "url": url}),
        json!({}),
    ))
    .await;
    let id = w.start("by_name", json!({})).await;
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.error);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() {
    let w = World::new(loopback()).await;
    let server = TestServer::start(&w.clock).await;
    // Loopback, but not the 127.0.0.1 the policy allows.
    let inner = TestServer::on("127.0.0.2:0", &w.clock).await;
    let to = inner.url("/json");
    w.define(one_call(
        "redirected",
        json!({"method": "GET", "url": "$.input.url"}),
        json!({}),
    ))
    .await;
    // Followed when allowed: a redirect to another allowed path.
    let fine = format!("/redirect?to={}", server.url("/json"));
    let id = w
        .start("redirected", json!({"url": server.url(&fine)}))
        .await;
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.error);
    assert_eq!(state.output.unwrap()["body"]["hello"], "world");

    let refused = format!("/redirect?to={to}");
    let id = w
        .start("redirected", json!({"url": server.url(&refused)}))
        .await;
    let error = w.ended(id).await.error.unwrap();
    assert_eq!(error.kind, "http_address_refused", "{}", error.message);
    assert_eq!(error.retryable, Some(false));
    assert!(
        error
            .message
            .contains("the address 127.0.0.2 of 127.0.0.2 is refused"),
        "{}",
        error.message
    );
    assert!(inner.seen().is_empty(), "the refused server saw nothing");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_denied_block_wins_over_a_wider_allowed_one() {
    let policy =
        AddressPolicy::parse(&["127.0.0.0/8".to_owned()], &["127.0.0.2/32".to_owned()]).unwrap();
    let w = World::new(HttpOptions {
        policy,
        ..HttpOptions::default()
    })
    .await;
    let server = TestServer::on("127.0.0.2:0", &w.clock).await;
    w.define(one_call(
        "denied",
        json!({"method": "GET", "url": server.url("/json")}),
        json!({}),
    ))
    .await;
    let id = w.start("denied", json!({})).await;
    let error = w.ended(id).await.error.unwrap();
    assert_eq!(error.kind, "http_address_refused");
    assert!(
        error
            .message
            .contains("the server's configuration denies 127.0.0.2/32"),
        "{}",
        error.message
    );
    assert!(server.seen().is_empty());
}

// ---------------------------------------------------------------------------
// Secrets.
// ---------------------------------------------------------------------------

const SECRET: &str = "s3cr3t-Zq8vW2pL9xK4";

#[tokio::test]
async fn secrets_reach_the_server_but_no_byte_of_the_data_folder() {
    let data = tempfile::tempdir().unwrap();
    let clock = SimClock::new(T0);
    let secrets = Secrets::from_sources([("api_token".to_owned(), SECRET.to_owned())], []).unwrap();
    let config = EngineConfig {
        storage: Storage::Folder {
            path: data.path().to_owned(),
            options: JournalOptions::default(),
        },
        clock: Arc::new(clock.clone()),
        http: HttpOptions {
            secrets,
            ..loopback()
        },
        ..EngineConfig::folder(data.path())
    };
    let engine = Engine::open(config).await.unwrap();
    let server = TestServer::start(&clock).await;
    let doc = json!({"name": "with_secret", "steps": [
        {"id": "call", "type": "task", "capability": "http", "next": "unknown",
         "input": {"method": "POST", "url": server.url("/echo"),
                   "headers": {"Authorization": "Bearer ${ secret('API_TOKEN') }",
                               "X-Key": "${secret(\"api_token\")}"},
                   "query": {"key": "${ secret('API_TOKEN') }"},
                   "body": "token=${ secret('API_TOKEN') }"}},
        {"id": "unknown", "type": "task", "capability": "http",
         "input": {"method": "GET", "url": server.url("/json"),
                   "headers": {"Authorization": "${ secret('NOT_CONFIGURED') }"}},
         "retry": {"maxAttempts": 3, "interval": 0}}
    ]});
    engine
        .define_json(doc.to_string().as_bytes())
        .await
        .unwrap();
    let id = start(&engine, "with_secret", json!({})).await;
    let state = engine.wait_until_ended(id).await.unwrap();

    // On the wire: the values.
    let seen = server.seen();
    assert_eq!(
        seen.len(),
        1,
        "the unknown secret stopped the second request"
    );
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(seen[0].headers["x-key"], SECRET);
    assert_eq!(seen[0].query["key"], SECRET);
    assert_eq!(seen[0].body, format!("token={SECRET}"));

    // In the execution: the references, and what the server echoed redacted.
    let events = events(&engine, id).await;
    let (input, output) = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::StepCompleted { step, output, .. } if step == "call" => Some(output.clone()),
            _ => None,
        })
        .map(|output| {
            let input = events
                .iter()
                .find_map(|(_, e)| match e {
                    Event::TaskScheduled { act: 1, input, .. } => Some(input.clone()),
                    _ => None,
                })
                .unwrap();
            (input, output)
        })
        .unwrap();
    assert_eq!(
        input["headers"]["Authorization"],
        "Bearer ${ secret('API_TOKEN') }"
    );
    assert_eq!(
        output["headers"]["x-echo-authorization"],
        "Bearer [redacted]"
    );
    assert_eq!(output["body"]["query"]["key"], "[redacted]");
    let error = state.error.unwrap();
    assert_eq!(error.kind, "http_unknown_secret");
    assert_eq!(error.retryable, Some(false));
    assert!(
        error
            .message
            .contains("the secret NOT_CONFIGURED is not configured"),
        "{}",
        error.message
    );
    assert_eq!(failures(&events).len(), 1, "not retried");
    engine.shutdown().await.unwrap();
    drop(engine);

    // No file of the data folder holds the value; they do hold the
    // reference (so the search can see what is journaled).
    let mut files = 0;
    let mut references = 0;
    let mut stack = vec![data.path().to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            files += 1;
            let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            assert!(
                !holds(SECRET.as_bytes()),
                "{} holds the secret",
                path.display()
            );
            if holds(b"secret('API_TOKEN')") {
                references += 1;
            }
        }
    }
    assert!(files > 0);
    assert!(
        references > 0,
        "the journal is searchable: it holds the reference"
    );
}

// ---------------------------------------------------------------------------
// Restarts and concurrency.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_outstanding_request_is_made_again_after_a_restart_with_the_same_key() {
    let mut w = World::new(loopback()).await;
    let mut server = TestServer::start(&w.clock).await;
    w.define(one_call(
        "held",
        json!({"method": "PUT", "url": server.url("/hold")}),
        json!({}),
    ))
    .await;
    let id = w.start("held", json!({})).await;
    let first = server.arrival().await;
    // The engine dies with the request under way: its result was never
    // recorded, so the recovered engine makes it again.
    w.crash_and_recover().await;
    let second = server.arrival().await;
    assert_eq!(second.path, "/hold");
    assert_eq!(
        first.headers["idempotency-key"],
        second.headers["idempotency-key"]
    );
    assert_eq!(second.headers["idempotency-key"], format!("{id}.1"));
    server.shared.gate.add_permits(2);
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.error);
    let scheduled = w
        .events(id)
        .await
        .iter()
        .filter(|(_, e)| matches!(e, Event::TaskScheduled { .. }))
        .count();
    assert_eq!(scheduled, 1, "one attempt, performed twice");
}

#[tokio::test]
async fn no_more_requests_are_under_way_than_the_bound() {
    let w = World::new(HttpOptions {
        max_concurrency: 1,
        ..loopback()
    })
    .await;
    let mut server = TestServer::start(&w.clock).await;
    w.define(one_call(
        "held",
        json!({"method": "GET", "url": server.url("/hold")}),
        json!({}),
    ))
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(w.start("held", json!({})).await);
    }
    for _ in 0..3 {
        server.arrival().await;
        assert_eq!(server.shared.in_flight.load(Ordering::SeqCst), 1);
        server.shared.gate.add_permits(1);
    }
    for id in ids {
        assert_eq!(w.ended(id).await.status, Status::Completed);
    }
    assert_eq!(server.shared.most_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cancelling_an_execution_drops_its_request_and_frees_its_turn() {
    // One request at a time: the second execution's request can only go
    // once the first one's is dropped, as the server never answers it.
    let w = World::new(HttpOptions {
        max_concurrency: 1,
        ..loopback()
    })
    .await;
    let mut server = TestServer::start(&w.clock).await;
    w.define(one_call(
        "held",
        json!({"method": "GET", "url": server.url("/hold")}),
        json!({}),
    ))
    .await;
    let first = w.start("held", json!({})).await;
    server.arrival().await;
    let second = w.start("held", json!({})).await;
    w.engine
        .cancel(first, "no longer needed", false)
        .await
        .unwrap();
    assert_eq!(w.ended(first).await.status, Status::Cancelled);
    let arrived = tokio::time::timeout(std::time::Duration::from_secs(30), server.arrival()).await;
    assert!(
        arrived.is_ok(),
        "the cancelled request still held the only turn"
    );
    server.shared.gate.add_permits(2);
    assert_eq!(w.ended(second).await.status, Status::Completed);
    assert!(
        !w.events(first)
            .await
            .iter()
            .any(|(_, e)| matches!(e, Event::TaskCompleted { .. }))
    );
}

// ---------------------------------------------------------------------------
// The example.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_example_workflow_fetches_and_notifies() {
    let secrets =
        Secrets::from_sources([("ORDERS_API_TOKEN".to_owned(), SECRET.to_owned())], []).unwrap();
    let w = World::new(HttpOptions {
        secrets,
        ..loopback()
    })
    .await;
    let server = TestServer::start(&w.clock).await;
    let path = format!(
        "{}/../examples/workflows/http_call.json",
        env!("CARGO_MANIFEST_DIR")
    );
    w.engine
        .define_json(&std::fs::read(path).unwrap())
        .await
        .unwrap();
    let base = server.url("/api");
    let id = w
        .start("http_call", json!({"baseUrl": base, "orderId": "o-7"}))
        .await;
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.error);
    assert_eq!(
        state.variables["order"],
        json!({"id": "o-7", "status": "shipped"})
    );
    assert_eq!(state.variables["notified"], 202);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/api/orders/o-7")
    );
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", "/api/notifications")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&seen[1].body).unwrap(),
        json!({"orderId": "o-7", "status": "shipped"})
    );

    // An order that is not there is routed, not retried.
    let id = w
        .start("http_call", json!({"baseUrl": base, "orderId": "missing"}))
        .await;
    let state = w.ended(id).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.error);
    let output = state.output.unwrap();
    assert_eq!(output["orderId"], "missing");
    assert_eq!(output["error"], "http_404");
    assert_eq!(server.seen().len(), 3);
}
