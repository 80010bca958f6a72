//! The dispatch benchmark: what priorities, fairness keys and agent-version
//! requirements cost an agent's claim.
//!
//! An in-memory agent registry (no journal, no HTTP: the queue alone) gets
//! 10,000 tasks of one capability (1,000 with `--quick`), scheduled 1 ms
//! apart on a simulated clock; then one agent claims them one at a time,
//! settling each, and every claim is timed.
//!
//! - `dispatch_plain`: every task priority 0, no fairness key, no version
//!   requirement (served oldest first).
//! - `dispatch_mixed`: priorities 0 to 9 (`i % 10`), 100 fairness keys
//!   (`i % 100`), and one task in ten requiring agent version `>=1` (the
//!   agent is 1.4.0), so every claim's order is the aged priority with the
//!   keys taking turns, and the queue is looked past its head.
//!
//! Each prints `scenario=<name> tasks=<n> enqueue_per_s=<n> claims_per_s=<n>
//! p50_ns=<n> p99_ns=<n> p999_ns=<n>` (claim latencies in nanoseconds: a
//! claim takes well under a microsecond).
//!
//! Run: `cargo run --release -p retrace-benches --bin dispatch`

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use hdrhistogram::Histogram;
use retrace_benches::Args;
use retrace_engine::ExecutionId;
use retrace_engine::agents::{AgentOptions, AgentRegistry, AgentTraits, Outcome, TaskSpec};
use retrace_engine::clock::SimClock;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let tasks: u64 = if args.quick { 1_000 } else { 10_000 };
    for mixed in [false, true] {
        let name = if mixed {
            "dispatch_mixed"
        } else {
            "dispatch_plain"
        };
        if args
            .only
            .as_ref()
            .is_some_and(|o| !name.starts_with(o.as_str()))
        {
            continue;
        }
        run(name, tasks, mixed)?;
    }
    Ok(())
}

fn run(name: &str, tasks: u64, mixed: bool) -> anyhow::Result<()> {
    let clock = SimClock::new(1_700_000_000_000);
    let registry = AgentRegistry::new(Arc::new(clock.clone()), AgentOptions::default());
    let traits = AgentTraits {
        version: Some("1.4.0".into()),
        heartbeat_timeout_ms: None,
    };
    let capability = vec!["work".to_owned()];
    let agent = registry
        .register_as("bench", &capability, Some(1), None, &traits)
        .context("register")?;
    let enqueued = Instant::now();
    for i in 0..tasks {
        clock.advance(1);
        registry.enqueue(TaskSpec {
            id: format!("t{i}"),
            execution: ExecutionId::from_bytes([7; 16]),
            step: "step".into(),
            capability: "work".into(),
            attempt: 1,
            input: json!({"i": i}),
            lease_ms: 60_000,
            schedule_to_start_ms: None,
            heartbeat_ms: None,
            scheduled_at_ms: 1_700_000_000_000 + i,
            priority: if mixed { (i % 10) as u8 } else { 0 },
            fairness_key: mixed.then(|| format!("tenant-{}", i % 100)),
            agent_version: (mixed && i % 10 == 3).then(|| ">=1".to_owned()),
        });
    }
    let enqueue_s = enqueued.elapsed().as_secs_f64();
    #[allow(clippy::expect_used)]
    let mut h: Histogram<u64> =
        Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("valid histogram bounds");
    let started = Instant::now();
    let mut claimed = 0;
    loop {
        let at = Instant::now();
        let got = registry.claim(&agent, 1).context("claim")?;
        h.saturating_record((at.elapsed().as_nanos() as u64).max(1));
        let Some(task) = got.first() else { break };
        registry
            .settle(&task.spec.id, Outcome::Succeeded)
            .context("settle")?;
        claimed += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(claimed == tasks, "claimed {claimed} of {tasks}");
    println!(
        "scenario={name} tasks={tasks} enqueue_per_s={:.0} claims_per_s={:.0} p50_ns={} \
         p99_ns={} p999_ns={}",
        tasks as f64 / enqueue_s.max(1e-9),
        claimed as f64 / elapsed.max(1e-9),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    );
    Ok(())
}
