//! The map benchmark: a `map` step over 10,000 items, each an inline `noop`
//! step, on an in-process engine over a durable folder. One line per
//! scenario: `scenario=<name> ops_per_s=<n> p50_us=<n> p99_us=<n>
//! p999_us=<n>`, ops being items, latency per execution (start to
//! completed); then what one execution's history holds per item and the
//! process's peak resident memory.
//!
//! - `map10k_noop`: no concurrency cap (items start as fast as each
//!   trigger's event budget allows).
//! - `map10k_noop_c100`: `maxConcurrency: 100`.
//! - `map10k_task_c1000`: each item a task step run by an in-process
//!   handler that answers its input, `maxConcurrency: 1000`: 1,000 tasks
//!   in flight in one execution, each result finding its item's step.
//!
//! - `map10k_noop_paced`: no cap, with the engine's default pacing (each
//!   execution records at most 1,000 events a second by itself after a
//!   burst of 5,000): what a server with default settings does.
//!
//! The first two run with pacing off, to measure the engine rather than
//! the budget. Each runs 5 executions one after another (2 with
//! `--quick`; the paced one 1 either way).
//!
//! Run: `cargo run --release -p retrace-benches --bin map -- --quick`

use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;
use futures::FutureExt;
use retrace_benches::{Args, histogram, mb, peak_rss_bytes, record, report};
use retrace_engine::ExecutionId;
use retrace_engine::machine::Status;
use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, Pacing, StartRequest};
use serde_json::{Value, json};

const ITEMS: u64 = 10_000;

fn workflow(name: &str, capability: &str, max_concurrency: Option<u32>) -> Value {
    let mut map = json!({
        "items": "$.input.items",
        "steps": [{"id": "copy", "type": "task", "capability": capability}],
    });
    if let Some(n) = max_concurrency {
        map["maxConcurrency"] = json!(n);
    }
    // Every item's step counts towards the transition limit.
    json!({"name": name, "maxTransitions": 2 * ITEMS,
        "steps": [{"id": "each", "type": "map", "map": map}]})
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let runs = if args.quick { 2 } else { 5 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = args.scratch()?;
        let mut config = EngineConfig::folder(dir.path());
        config.pacing = Pacing::off();
        // A task item records six events: 60,000 for 10,000 items.
        config.limits.history_events_max = 100_000;
        let unpaced = Engine::open(config).await?;
        let paced_dir = args.scratch()?;
        let paced = Engine::open(EngineConfig::folder(paced_dir.path())).await?;
        let items: Vec<Value> = (0..ITEMS)
            .map(|i| json!({"file": format!("f{i}")}))
            .collect();
        unpaced.register_handler(
            "bench_item",
            Arc::new(|t: HandlerTask| async move { Ok(t.input) }.boxed()),
        );
        for (scenario, capability, cap, engine, runs) in [
            ("map10k_noop", "noop", None, &unpaced, runs),
            ("map10k_noop_c100", "noop", Some(100), &unpaced, runs),
            (
                "map10k_task_c1000",
                "bench_item",
                Some(1000),
                &unpaced,
                runs,
            ),
            ("map10k_noop_paced", "noop", None, &paced, 1),
        ] {
            if !args.wants(scenario) {
                continue;
            }
            engine
                .define_json(workflow(scenario, capability, cap).to_string().as_bytes())
                .await?;
            let mut h = histogram();
            let started = Instant::now();
            let mut last = None;
            for _ in 0..runs {
                let t = Instant::now();
                last = Some(run_one(engine, scenario, &items).await?);
                record(&mut h, t.elapsed());
            }
            report(scenario, ITEMS * runs, started.elapsed(), &h);
            if let Some(id) = last {
                let history = engine.read().events_until(id, u64::MAX).await?;
                let bytes: usize = history
                    .iter()
                    .map(|e| serde_json::to_vec(&e.event).map_or(0, |v| v.len()))
                    .sum();
                eprintln!(
                    "  history: {} events, {:.2} events and {:.0} bytes per item",
                    history.len(),
                    history.len() as f64 / ITEMS as f64,
                    bytes as f64 / ITEMS as f64
                );
            }
        }
        if let Some(peak) = peak_rss_bytes() {
            eprintln!("  peak rss: {} MB", mb(peak));
        }
        unpaced.shutdown().await?;
        paced.shutdown().await?;
        anyhow::Ok(())
    })
}

/// Starts one execution over `items` and waits for it to complete.
async fn run_one(engine: &Engine, workflow: &str, items: &[Value]) -> anyhow::Result<ExecutionId> {
    let started = engine
        .start(StartRequest {
            workflow: workflow.into(),
            input: json!({"items": items}),
            ..StartRequest::default()
        })
        .await?;
    let state = match started.status {
        Status::Running => engine.wait_until_ended(started.id).await?,
        _ => engine.state(started.id).await?,
    };
    ensure!(
        state.status == Status::Completed,
        "execution ended {:?}: {:?}",
        state.status,
        state.error
    );
    ensure!(
        state
            .output
            .as_ref()
            .and_then(Value::as_array)
            .map(Vec::len)
            == Some(items.len()),
        "the map's result is not one per item"
    );
    Ok(started.id)
}
