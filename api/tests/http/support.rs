//! The harness: a real server on an ephemeral loopback port over an engine
//! in a temporary data folder, a client, and a small SSE reader.

use std::time::Duration;

use reqwest::StatusCode;
use retrace_api::{ApiConfig, AppState, app};
use retrace_engine::runtime::{Engine, EngineConfig};
use retrace_engine::store::{JournalOptions, Storage};
use serde_json::{Value, json};

/// Every wait in these tests is bounded by this, so a bug fails the test
/// instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Server {
    pub base: String,
    pub engine: Engine,
    pub state: AppState,
    pub client: reqwest::Client,
    /// Declared last, so it is dropped after the handles above.
    _guard: Guard,
}

/// The server's own runtime and data folder, torn down in that order: the
/// engine must be gone (its journal flushed and closed) before its folder is
/// deleted, or the journal's last flush waits for files that are no more.
struct Guard {
    runtime: Option<tokio::runtime::Runtime>,
    data: Option<tempfile::TempDir>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let runtime = self.runtime.take();
        let data = self.data.take();
        // A runtime cannot be dropped on a thread that runs async code.
        let _ = std::thread::spawn(move || {
            drop(runtime);
            drop(data);
        })
        .join();
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> Server {
        Server::with_configs(config, |engine| engine).await
    }

    /// A server whose engine is opened with the test's configuration as
    /// `engine` changes it.
    pub async fn with_configs(
        config: ApiConfig,
        engine: impl FnOnce(EngineConfig) -> EngineConfig + Send + 'static,
    ) -> Server {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().to_path_buf();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (state, addr) = runtime
            .spawn(async move {
                let engine = Engine::open(engine(EngineConfig {
                    // Not flushing each commit keeps the tests fast;
                    // durability is the journal's own tests' business.
                    storage: Storage::Folder {
                        path: path.clone(),
                        options: JournalOptions {
                            durable: false,
                            min_free_bytes: 0,
                            ..JournalOptions::default()
                        },
                    },
                    ..EngineConfig::folder(path)
                }))
                .await
                .unwrap();
                let state = AppState::new(engine, config);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                // The server keeps accepting after `state.shutdown` is
                // triggered, so tests can watch what the switch does to
                // handlers (the binary wires it to axum's graceful
                // shutdown; the CLI tests cover that).
                let router = app(state.clone());
                let listener = retrace_api::listener::no_delay(listener);
                tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
                (state, addr)
            })
            .await
            .unwrap();
        Server {
            base: format!("http://{addr}"),
            engine: state.engine.clone(),
            state,
            client: reqwest::Client::new(),
            _guard: Guard {
                runtime: Some(runtime),
                data: Some(data),
            },
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The journal's last position: unchanged means nothing was recorded.
    pub async fn position(&self) -> u64 {
        self.engine.read().last_position().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        answer(
            self.client
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A POST without a body, saying it is JSON (as every POST must, so
    /// that no browser can send it cross-site unasked).
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        answer(
            self.client
                .post(self.url(path))
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        answer(
            self.client
                .post(self.url(path))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A PUT with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        answer(
            self.client
                .put(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A PATCH with a JSON merge patch (`application/merge-patch+json`).
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        answer(
            self.client
                .patch(self.url(path))
                .header("content-type", "application/merge-patch+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        answer(self.client.delete(self.url(path)).send().await.unwrap()).await
    }

    /// Defines a workflow (JSON); its version.
    pub async fn define(&self, doc: Value) -> String {
        let (status, body) = self.post("/v1/workflows", doc).await;
        assert!(status.is_success(), "{status} {body}");
        body["version"].as_str().unwrap().to_owned()
    }

    /// Starts an execution; its id.
    pub async fn start_execution(&self, workflow: &str, input: Value) -> String {
        let (status, body) = self
            .post(
                "/v1/executions",
                json!({"workflow": workflow, "input": input}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn register(&self, capabilities: &[&str]) -> String {
        let (status, body) = self
            .post(
                "/v1/agents",
                json!({"name": "test-agent", "capabilities": capabilities}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Polls until one task arrives.
    pub async fn claim(&self, agent: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/tasks/poll",
                json!({"agentId": agent, "waitMs": PATIENCE.as_millis() as u64}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["tasks"][0].clone()
    }

    /// The execution's event types, in order.
    pub async fn kinds(&self, id: &str) -> Vec<String> {
        let (status, body) = self
            .get(&format!("/v1/executions/{id}/events?limit=1000"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Opens an SSE stream.
    pub async fn stream(&self, path: &str, last_event_id: Option<u64>) -> Sse {
        let mut request = self
            .client
            .get(self.url(path))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// Reads an execution's stream to its end.
    pub async fn stream_to_end(&self, id: &str) -> Vec<Frame> {
        let mut sse = self
            .stream(&format!("/v1/executions/{id}/events/stream"), None)
            .await;
        sse.rest().await
    }
}

pub async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}

/// Asserts an error response: status, code, and the JSON shape.
#[track_caller]
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Frame {
    pub fn seq(&self) -> u64 {
        self.id.as_deref().unwrap().parse().unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads frames from an SSE response, skipping keep-alive comments.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// The next frame; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(frame) = parse(&block) {
                    return Some(frame);
                }
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream went silent")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Every frame until the server ends the stream.
    pub async fn rest(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }
}

fn parse(block: &str) -> Option<Frame> {
    let mut frame = Frame {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut any = false;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => {} // a comment: keep-alive
            "id" => {
                frame.id = Some(value.to_owned());
                any = true;
            }
            "event" => {
                frame.event = Some(value.to_owned());
                any = true;
            }
            "data" => {
                if !frame.data.is_empty() {
                    frame.data.push('\n');
                }
                frame.data.push_str(value);
                any = true;
            }
            _ => {}
        }
    }
    any.then_some(frame)
}

/// A workflow of `n` inline steps: it completes when it starts, with
/// `n + 2` events.
pub fn inline_chain(name: &str, n: usize) -> Value {
    let steps: Vec<Value> = (0..n)
        .map(|i| {
            let mut step = json!({"id": format!("s{i}"), "type": "task", "capability": "noop"});
            if i + 1 < n {
                step["next"] = json!(format!("s{}", i + 1));
            }
            step
        })
        .collect();
    json!({"name": name, "steps": steps})
}

/// A workflow that waits for the event `go`, then runs `n` inline steps.
pub fn gated_chain(name: &str, n: usize) -> Value {
    let mut doc = inline_chain(name, n);
    let steps = doc["steps"].as_array_mut().unwrap();
    steps.insert(
        0,
        json!({"id": "gate", "type": "event", "event": {"name": "go"}, "next": "s0"}),
    );
    doc
}
