//! Writes the golden journals under `replay-tests/golden/` (run it only to
//! add a new golden set after a deliberate format change; the existing ones
//! are checked forever by `tests/golden.rs`):
//!
//! `cargo run -p retrace-replay-tests --bin golden -- replay-tests/golden/v<N>`
//!
//! The journal holds, with the format of this build: a completed execution
//! that used every step type, one that failed and was compensated, one
//! waiting on an event, and one paused by an operator. `expected.json` next
//! to it records each one's state as the engine held it.

use std::sync::Arc;

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use retrace_engine::clock::SimClock;
use retrace_engine::machine::ErrorInfo;
use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, StartRequest, TaskHandler};
use retrace_engine::store::Storage;
use retrace_journal::{EventLog, Journal, Options};
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000_000;

fn workflows() -> Vec<Value> {
    vec![
        json!({"name": "golden_child", "steps": [
            {"id": "double", "type": "task", "capability": "transform", "input": "${ input.n * 2 }"}]}),
        json!({"name": "golden_tour", "version": "1", "steps": [
            {"id": "work", "type": "task", "capability": "golden.work", "input": {"n": "$.input.n"},
             "output": {"worked": "$.output"}, "retry": {"maxAttempts": 2, "interval": 100}, "next": "nap"},
            {"id": "nap", "type": "wait", "wait": {"seconds": 5}, "next": "choose"},
            {"id": "choose", "type": "decision", "decision": {"expression": "input.n > 1",
             "branches": {"true": "fan"}, "default": "gate"}},
            {"id": "fan", "type": "parallel", "next": "gate", "parallel": {"branches": [
                {"name": "left", "steps": [{"id": "l", "type": "task", "capability": "noop"}]},
                {"name": "right", "steps": [{"id": "r", "type": "task", "capability": "golden.work"}]}]}},
            {"id": "gate", "type": "event", "event": {"name": "go"}, "next": "call"},
            {"id": "call", "type": "subworkflow", "subworkflow": {"workflow": "golden_child"},
             "input": {"n": "$.input.n"}, "output": {"child": "$.output"}}]}),
        json!({"name": "golden_saga", "steps": [
            {"id": "reserve", "type": "task", "capability": "golden.work", "next": "charge",
             "compensate": {"capability": "golden.undo"}},
            {"id": "charge", "type": "task", "capability": "golden.fail"}]}),
    ]
}

fn handlers() -> Vec<(String, Arc<dyn TaskHandler>)> {
    let work: Arc<dyn TaskHandler> = Arc::new(|t: HandlerTask| {
        let result = if t.attempt == 1 && t.step == "work" {
            Err(ErrorInfo::new("flaky", "first attempt fails"))
        } else {
            Ok(json!({"step": t.step, "attempt": t.attempt}))
        };
        async move { result }.boxed()
    });
    let undo: Arc<dyn TaskHandler> =
        Arc::new(|t: HandlerTask| async move { Ok(json!({"undid": t.step})) }.boxed());
    let fail: Arc<dyn TaskHandler> = Arc::new(|_t: HandlerTask| {
        async move {
            let mut e = ErrorInfo::new("declined", "the card was declined");
            e.retryable = Some(false);
            Err(e)
        }
        .boxed()
    });
    vec![
        ("golden.work".into(), work),
        ("golden.undo".into(), undo),
        ("golden.fail".into(), fail),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: golden <output folder>")?;
    let dir = std::path::PathBuf::from(dir);
    anyhow::ensure!(
        !dir.join("journal").exists(),
        "{} already holds a journal",
        dir.display()
    );
    std::fs::create_dir_all(&dir)?;
    let clock = SimClock::new(T0);
    let journal: Arc<dyn Journal> =
        Arc::new(EventLog::open(dir.join("journal"), Options::default())?);
    let mut config = EngineConfig::journal(journal.clone(), Arc::new(clock.clone()));
    config.handlers = handlers();
    config.storage = Storage::Journal(journal.clone());
    let engine = Engine::open(config).await?;
    for w in workflows() {
        engine.define_json(w.to_string().as_bytes()).await?;
    }
    let start = |workflow: &str, input: Value| StartRequest {
        workflow: workflow.into(),
        input,
        ..StartRequest::default()
    };
    // Completed, through every step type.
    let tour = engine
        .start(start("golden_tour", json!({"n": 2})))
        .await?
        .id;
    wait_for(&engine, tour, "retry_scheduled").await?;
    clock.advance(100);
    wait_for(&engine, tour, "timer_started").await?;
    clock.advance(5_000);
    wait_for(&engine, tour, "event_awaited").await?;
    engine.signal(tour, "go", json!("went"), None).await?;
    engine.wait_until_ended(tour).await?;
    // Failed, then compensated.
    let saga = engine.start(start("golden_saga", json!({}))).await?.id;
    engine.wait_until_ended(saga).await?;
    // Waiting on an event (the golden test sends it).
    let waiting = engine
        .start(start("golden_tour", json!({"n": 1})))
        .await?
        .id;
    wait_for(&engine, waiting, "retry_scheduled").await?;
    clock.advance(100);
    wait_for(&engine, waiting, "timer_started").await?;
    clock.advance(5_000);
    wait_for(&engine, waiting, "event_awaited").await?;
    // Paused by an operator while waiting.
    let paused = engine
        .start(start("golden_tour", json!({"n": 3})))
        .await?
        .id;
    wait_for(&engine, paused, "task_scheduled").await?;
    engine.pause(paused, "golden").await?;
    journal.flush().await?;

    let mut expected = serde_json::Map::new();
    for (name, id) in [
        ("completed", tour),
        ("compensated", saga),
        ("waiting", waiting),
        ("paused", paused),
    ] {
        let state = engine.state(id).await?;
        expected.insert(name.into(), serde_json::to_value(&state)?);
    }
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_vec_pretty(&Value::Object(expected))?,
    )?;
    println!("golden journal written to {}", dir.display());
    Ok(())
}

async fn wait_for(
    engine: &Engine,
    id: retrace_engine::ExecutionId,
    kind: &str,
) -> anyhow::Result<()> {
    let mut tail = engine.read().subscribe(id, 1);
    while let Some(r) = tail.next().await {
        if r?.event.kind() == kind {
            return Ok(());
        }
    }
    anyhow::bail!("journal closed before {kind}")
}
