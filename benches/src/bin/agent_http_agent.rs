//! The agent process of the `agent_http` benchmark: an external agent that
//! speaks retrace's HTTP API, as a user's agent would. It measures nothing
//! itself; `agent_http` starts it and times the executions it serves.
//!
//! It registers with capability `step`, runs `--loops` concurrent long-poll
//! loops (`POST /v1/tasks/poll`, `max` 100, `waitMs` 30000), and completes
//! each task `{"acc", "i"}` with `{"acc": acc + i}`. A loop completes the
//! tasks one poll claimed concurrently, then polls again. With `--eager`,
//! each completion also claims more tasks (`"poll": {"agentId", "max",
//! "waitMs": 0}` in the body of `POST /v1/tasks/{id}/complete`), and the loop
//! goes on with those before it polls again.
//!
//! Once registered it prints `ready <agent id>` on stdout. When a poll
//! finds it unknown (`404 unknown_agent`: the server restarted, or the home
//! of servers sharing a journal moved, and registrations live in the
//! home's memory) it registers again and carries on. It stops on
//! SIGTERM, SIGINT or when its stdin closes (so it never outlives the
//! benchmark): it unregisters and exits 0. Errors from the server are
//! written to stderr and the loop carries on after a short pause.
//!
//! Run by `agent_http`; by hand: `agent_http_agent --server http://127.0.0.1:7700`.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

/// The command line of the agent process.
#[derive(Debug, clap::Parser)]
#[command(about = "The agent process of the agent_http benchmark (capability `step`)")]
struct AgentArgs {
    /// The server's base URL.
    #[arg(long, value_name = "URL")]
    server: String,
    /// How many long-poll loops run concurrently.
    #[arg(long, default_value_t = 8)]
    loops: usize,
    /// Claim the next tasks with each completion (`poll` in the complete
    /// body) instead of polling again.
    #[arg(long)]
    eager: bool,
    /// Report every task one poll claimed in one request (`POST
    /// /v1/tasks/report`), which also claims the next tasks.
    #[arg(long)]
    batch: bool,
    /// The name it registers with.
    #[arg(long, default_value = "agent-http-bench")]
    name: String,
    /// The access token it sends (`Authorization: Bearer`), if any.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// For an `https://` server: the only CA it trusts (PEM).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
}

/// The most tasks one poll (or one eager completion) claims.
const MAX: usize = 100;
/// How long one long poll waits for a task.
const WAIT_MS: u64 = 30_000;
/// A request may take this long (a long poll waits `WAIT_MS` of it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(WAIT_MS / 1000 + 30);
/// The pause after an error, so a failing server is not hammered.
const PAUSE: Duration = Duration::from_millis(200);

fn main() -> anyhow::Result<()> {
    let args = <AgentArgs as clap::Parser>::parse();
    anyhow::ensure!(args.loops >= 1, "--loops must be at least 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: AgentArgs) -> anyhow::Result<()> {
    // Caught before registering, so a stop is never met by the default action.
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    // Stdin is read to its end on a plain thread: EOF means the benchmark
    // is done (or gone).
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = closed_tx.send(());
    });

    let builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(usize::MAX);
    let http = retrace_benches::secured(builder, args.token.as_deref(), args.ca_cert.as_deref())?
        .build()?;
    let max_concurrency = (args.loops * MAX).min(10_000);
    let agent = Agent {
        http,
        base: args.server.trim_end_matches('/').to_owned(),
        id: Arc::new(tokio::sync::RwLock::new(String::new())),
        registration: json!({"name": args.name, "capabilities": ["step"], "maxConcurrency": max_concurrency}),
        eager: args.eager,
        batch: args.batch,
    };
    agent.register("").await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {}", agent.id().await)?;
        out.flush()?;
    }

    let mut loops = JoinSet::new();
    for _ in 0..args.loops {
        let agent = agent.clone();
        loops.spawn(async move { agent.poll_loop().await });
    }
    let outcome = tokio::select! {
        ended = loops.join_next() => match ended {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow::Error::new(e).context("a poll loop panicked")),
            Some(Ok(Ok(()))) | None => Ok(()),
        },
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
        _ = closed_rx => Ok(()),
    };
    // Polls in flight are dropped; unregistering hands back any task held.
    loops.shutdown().await;
    let unregistered = agent.unregister().await;
    outcome.and(unregistered)
}

/// One registered agent, shared by its loops.
#[derive(Debug, Clone)]
struct Agent {
    http: reqwest::Client,
    base: String,
    /// Its id now: registered again when the server no longer knows it
    /// (a restart, or the home of servers sharing a journal moved).
    id: Arc<tokio::sync::RwLock<String>>,
    /// What it registers with.
    registration: Value,
    eager: bool,
    batch: bool,
}

impl Agent {
    async fn id(&self) -> String {
        self.id.read().await.clone()
    }

    /// Registers, unless another loop already registered again since `stale`
    /// was the id.
    async fn register(&self, stale: &str) -> anyhow::Result<()> {
        let mut id = self.id.write().await;
        if *id != stale {
            return Ok(());
        }
        let (status, body) = self.post("/v1/agents", &self.registration).await?;
        if status != StatusCode::CREATED {
            bail!("registering answered {status}: {body}");
        }
        *id = body["id"]
            .as_str()
            .context("the registration answer has no id")?
            .to_owned();
        Ok(())
    }

    /// `POST` a JSON body; the status and the JSON answer (`null` if none).
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("POST {url}: reading the answer"))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Polls, completes what it got (and, eagerly, what completing got),
    /// and polls again, until it is dropped.
    async fn poll_loop(&self) -> anyhow::Result<()> {
        loop {
            let id = self.id().await;
            let poll = json!({"agentId": id, "max": MAX, "waitMs": WAIT_MS});
            let tasks = match self.post("/v1/tasks/poll", &poll).await {
                Ok((StatusCode::OK, body)) => tasks_of(&body),
                Ok((StatusCode::NOT_FOUND, body)) if body["error"]["code"] == "unknown_agent" => {
                    if let Err(e) = self.register(&id).await {
                        eprintln!("{e:#}");
                        tokio::time::sleep(PAUSE).await;
                    }
                    continue;
                }
                Ok((status, body)) => {
                    eprintln!("poll answered {status}: {body}");
                    tokio::time::sleep(PAUSE).await;
                    continue;
                }
                Err(e) => {
                    eprintln!("poll failed: {e:#}");
                    tokio::time::sleep(PAUSE).await;
                    continue;
                }
            };
            if self.batch {
                let mut tasks = tasks;
                while !tasks.is_empty() {
                    tasks = match self.report(&tasks).await {
                        Ok(next) => next,
                        Err(e) => {
                            eprintln!("{e:#}");
                            tokio::time::sleep(PAUSE).await;
                            Vec::new()
                        }
                    };
                }
                continue;
            }
            let mut in_flight: FuturesUnordered<_> =
                tasks.into_iter().map(|t| self.complete(t)).collect();
            while let Some(next) = in_flight.next().await {
                match next {
                    Ok(more) => in_flight.extend(more.into_iter().map(|t| self.complete(t))),
                    Err(e) => {
                        eprintln!("{e:#}");
                        tokio::time::sleep(PAUSE).await;
                    }
                }
            }
        }
    }

    /// Runs one task and reports its result; the tasks an eager completion
    /// claimed.
    async fn complete(&self, task: Value) -> anyhow::Result<Vec<Value>> {
        let id = task["id"].as_str().context("a task without an id")?;
        let input = &task["input"];
        let (acc, i) = match (input["acc"].as_i64(), input["i"].as_i64()) {
            (Some(acc), Some(i)) => (acc, i),
            _ => bail!("task {id}: input {input} is not {{\"acc\": <int>, \"i\": <int>}}"),
        };
        let mut body = json!({"output": {"acc": acc + i}});
        if self.eager {
            body["poll"] = json!({"agentId": self.id().await, "max": MAX, "waitMs": 0});
        }
        let (status, answer) = self
            .post(&format!("/v1/tasks/{id}/complete"), &body)
            .await?;
        if status != StatusCode::OK {
            bail!("completing task {id} answered {status}: {answer}");
        }
        Ok(tasks_of(&answer))
    }

    /// Reports `tasks`' results in one request; the tasks it claimed next.
    async fn report(&self, tasks: &[Value]) -> anyhow::Result<Vec<Value>> {
        let mut reports = Vec::with_capacity(tasks.len());
        for task in tasks {
            let id = task["id"].as_str().context("a task without an id")?;
            let input = &task["input"];
            let (acc, i) = match (input["acc"].as_i64(), input["i"].as_i64()) {
                (Some(acc), Some(i)) => (acc, i),
                _ => bail!("task {id}: input {input} is not {{\"acc\": <int>, \"i\": <int>}}"),
            };
            reports.push(json!({"id": id, "output": {"acc": acc + i}}));
        }
        let body = json!({
            "reports": reports,
            "poll": {"agentId": self.id().await, "max": MAX, "waitMs": 0},
        });
        let (status, answer) = self.post("/v1/tasks/report", &body).await?;
        if status != StatusCode::OK {
            bail!(
                "reporting {} tasks answered {status}: {answer}",
                tasks.len()
            );
        }
        let refused: Vec<&Value> = answer["reports"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["accepted"] != true).collect())
            .unwrap_or_default();
        if !refused.is_empty() {
            bail!("reports refused: {refused:?}");
        }
        Ok(tasks_of(&answer))
    }

    async fn unregister(&self) -> anyhow::Result<()> {
        let url = format!("{}/v1/agents/{}", self.base, self.id().await);
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .with_context(|| format!("DELETE {url}"))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            bail!("unregistering answered {status}: {body}");
        }
        Ok(())
    }
}

/// The `tasks` of a poll (or eager completion) answer; none when absent.
fn tasks_of(body: &Value) -> Vec<Value> {
    body["tasks"].as_array().cloned().unwrap_or_default()
}
