//! The fan-out benchmark: a `parallel` step of 100 branches, each one
//! inline `noop` step, on an in-process engine over a durable folder. One
//! line per scenario:
//! `scenario=<name> ops_per_s=<n> p50_us=<n> p99_us=<n> p999_us=<n>`.
//!
//! - `workflow_fanout100_one`: one execution at a time; latency start ->
//!   completed; ops are executions (300, 50 with `--quick`).
//! - `workflow_fanout100_concurrent`: 50 executions at once, in rounds
//!   (20 rounds, 4 with `--quick`); ops are branches (100 an execution);
//!   latency per execution.
//!
//! Run: `cargo run --release -p retrace-benches --bin fanout -- --quick`

use std::time::Instant;

use anyhow::ensure;
use retrace_benches::{Args, histogram, record, report};
use retrace_engine::machine::Status;
use retrace_engine::runtime::{Engine, EngineConfig, StartRequest};
use serde_json::{Value, json};

const WORKFLOW: &str = "fanout100";
const BRANCHES: u64 = 100;
const CONCURRENT: u64 = 50;

/// One parallel step of `BRANCHES` branches of one `noop` each.
fn workflow() -> Value {
    let branches: Vec<Value> = (0..BRANCHES)
        .map(|i| {
            json!({
                "name": format!("b{i}"),
                "steps": [{"id": format!("n{i}"), "type": "task", "capability": "noop"}],
            })
        })
        .collect();
    json!({
        "name": WORKFLOW,
        "steps": [{"id": "fan", "type": "parallel", "parallel": {"branches": branches}}],
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let (one, rounds) = if args.quick { (50, 4) } else { (300, 20) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = args.scratch()?;
        let engine = Engine::open(EngineConfig::folder(dir.path())).await?;
        engine
            .define_json(workflow().to_string().as_bytes())
            .await?;

        if args.wants("workflow_fanout100_one") {
            let mut h = histogram();
            let started = Instant::now();
            for i in 0..one {
                let t = Instant::now();
                run_one(&engine, i).await?;
                record(&mut h, t.elapsed());
            }
            report("workflow_fanout100_one", one, started.elapsed(), &h);
        }

        if args.wants("workflow_fanout100_concurrent") {
            let mut h = histogram();
            let mut branches = 0u64;
            let started = Instant::now();
            for _ in 0..rounds {
                let tasks: Vec<_> = (0..CONCURRENT)
                    .map(|i| {
                        let engine = engine.clone();
                        tokio::spawn(async move {
                            let t = Instant::now();
                            run_one(&engine, i).await?;
                            anyhow::Ok(t.elapsed())
                        })
                    })
                    .collect();
                for t in tasks {
                    record(&mut h, t.await??);
                    branches += BRANCHES;
                }
            }
            report(
                "workflow_fanout100_concurrent",
                branches,
                started.elapsed(),
                &h,
            );
        }
        let stats = engine.journal_stats().unwrap_or_default();
        eprintln!(
            "  journal: {} events in {} groups ({:.1} per group), {} flushes",
            stats.events,
            stats.groups,
            stats.events as f64 / stats.groups.max(1) as f64,
            stats.flushes
        );
        engine.shutdown().await?;
        anyhow::Ok(())
    })
}

/// Starts one execution and waits for it to complete.
async fn run_one(engine: &Engine, i: u64) -> anyhow::Result<()> {
    let started = engine
        .start(StartRequest {
            workflow: WORKFLOW.into(),
            input: json!({"i": i}),
            ..StartRequest::default()
        })
        .await?;
    let status = match started.status {
        Status::Running => engine.wait_until_ended(started.id).await?.status,
        done => done,
    };
    ensure!(status == Status::Completed, "execution ended {status:?}");
    Ok(())
}
