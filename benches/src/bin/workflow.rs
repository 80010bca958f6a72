//! The workflow benchmark: a 10-step sequential workflow on a durable
//! journal. One line per scenario:
//! `scenario=<name> ops_per_s=<n> p50_us=<n> p99_us=<n> p999_us=<n>`.
//!
//! - `workflow_seq10_one`: one execution at a time; latency start -> completed;
//!   ops are executions.
//! - `workflow_seq10_concurrent`: 1,000 executions at once; ops are steps;
//!   latency per execution.
//! - `workflow_seq10_handler_concurrent`: the same with every step a task run
//!   by an in-process handler (scheduled, handled, completed: two appends a
//!   step), to show what a real task round trip costs.
//!
//! The first two use the built-in `noop`, which the engine runs inline: they
//! measure the engine and the durable journal, nothing else.
//!
//! Run: `cargo run --release -p retrace-benches --bin workflow -- --quick`

use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use retrace_benches::{Args, histogram, record, report};
use retrace_engine::machine::Status;
use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, StartRequest};
use serde_json::{Value, json};

fn sequential(name: &str, capability: &str) -> Value {
    let steps: Vec<Value> = (0..10)
        .map(|i| {
            let mut step = json!({"id": format!("s{i}"), "type": "task", "capability": capability});
            if i < 9 {
                step["next"] = json!(format!("s{}", i + 1));
            }
            step
        })
        .collect();
    json!({"name": name, "steps": steps})
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let (one, concurrent) = if args.quick {
        (300, 1_000)
    } else {
        (2_000, 1_000)
    };
    let rounds = if args.quick { 1 } else { 5 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = args.scratch()?;
        let engine = Engine::open(EngineConfig::folder(dir.path())).await?;
        engine
            .define_json(sequential("seq10", "noop").to_string().as_bytes())
            .await?;
        engine
            .define_json(
                sequential("seq10_handler", "bench_step")
                    .to_string()
                    .as_bytes(),
            )
            .await?;
        engine.register_handler(
            "bench_step",
            Arc::new(|t: HandlerTask| async move { Ok(t.input) }.boxed()),
        );

        // (a) one at a time.
        if args.wants("workflow_seq10_one") {
            let mut h = histogram();
            let started = Instant::now();
            for i in 0..one {
                let t = Instant::now();
                run_one(&engine, "seq10", i).await?;
                record(&mut h, t.elapsed());
            }
            report("workflow_seq10_one", one, started.elapsed(), &h);
        }

        // (b) and (c): many at once.
        for (name, workflow) in [
            ("workflow_seq10_concurrent", "seq10"),
            ("workflow_seq10_handler_concurrent", "seq10_handler"),
        ] {
            if !args.wants(name) {
                continue;
            }
            let mut h = histogram();
            let mut steps = 0u64;
            let started = Instant::now();
            for _ in 0..rounds {
                let tasks: Vec<_> = (0..concurrent)
                    .map(|i| {
                        let engine = engine.clone();
                        tokio::spawn(async move {
                            let t = Instant::now();
                            run_one(&engine, workflow, i).await?;
                            anyhow::Ok(t.elapsed())
                        })
                    })
                    .collect();
                for t in tasks {
                    record(&mut h, t.await??);
                    steps += 10;
                }
            }
            report(name, steps, started.elapsed(), &h);
        }
        let stats = engine.journal_stats().unwrap_or_default();
        eprintln!(
            "  journal: {} events in {} groups ({:.1} per group), {} flushes",
            stats.events,
            stats.groups,
            stats.events as f64 / stats.groups.max(1) as f64,
            stats.flushes
        );
        anyhow::Ok(())
    })
}

/// Starts one execution and waits for it to complete.
async fn run_one(engine: &Engine, workflow: &str, i: u64) -> anyhow::Result<()> {
    let started = engine
        .start(StartRequest {
            workflow: workflow.into(),
            input: json!({"i": i}),
            ..StartRequest::default()
        })
        .await?;
    let status = match started.status {
        Status::Running => engine.wait_until_ended(started.id).await?.status,
        done => done,
    };
    anyhow::ensure!(status == Status::Completed, "execution ended {status:?}");
    Ok(())
}
