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
//! - `dispatch_capability_limited`: the mixed tasks with the capability's
//!   limits set (`concurrency` and `rateLimit`, never binding): what
//!   checking a capability's limits and counting its window cost a claim.
//! - `dispatch_limited`: the mixed tasks, each of an execution of a
//!   workflow with `concurrency: {key, limit: 1}` over 100 keys
//!   (`i % 100`): 100 hold a slot at first and the rest wait in the
//!   limiter; each claim is followed by its execution's end, which lets
//!   the next of its key go (grant, observe the recorded grant) and queues
//!   that one's task. So a claim also pays the limiter's release and grant.
//!
//! Each prints `scenario=<name> tasks=<n> enqueue_per_s=<n> claims_per_s=<n>
//! p50_ns=<n> p99_ns=<n> p999_ns=<n>` (claim latencies in nanoseconds: a
//! claim takes well under a microsecond).
//!
//! Run: `cargo run --release -p retrace-benches --bin dispatch`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use hdrhistogram::Histogram;
use retrace_benches::Args;
use retrace_engine::ExecutionId;
use retrace_engine::agents::{
    AgentId, AgentOptions, AgentRegistry, AgentTraits, Outcome, TaskSpec,
};
use retrace_engine::clock::{Clock, SimClock};
use retrace_engine::limits::{CapabilityLimits, CapabilityRate, Limiter};
use retrace_engine::machine::{ExecutionState, LimitGate, LimitKey, Status};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let tasks: u64 = if args.quick { 1_000 } else { 10_000 };
    for name in [
        "dispatch_plain",
        "dispatch_mixed",
        "dispatch_capability_limited",
        "dispatch_limited",
    ] {
        if args
            .only
            .as_ref()
            .is_some_and(|o| !name.starts_with(o.as_str()))
        {
            continue;
        }
        match name {
            "dispatch_limited" => limited(name, tasks)?,
            "dispatch_capability_limited" => run(name, tasks, true, true)?,
            _ => run(name, tasks, name == "dispatch_mixed", false)?,
        }
    }
    Ok(())
}

/// The mixed task of number `i`, of execution `execution`.
fn task(i: u64, execution: ExecutionId, mixed: bool) -> TaskSpec {
    TaskSpec {
        id: format!("t{i}"),
        execution,
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
    }
}

type States = HashMap<ExecutionId, (TaskSpec, ExecutionState)>;

/// A registry on a simulated clock, with one agent of one slot.
fn setup() -> anyhow::Result<(SimClock, AgentRegistry, AgentId)> {
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
    Ok((clock, registry, agent))
}

fn report(name: &str, tasks: u64, enqueue_s: f64, claims_per_s: f64, h: &Histogram<u64>) {
    println!(
        "scenario={name} tasks={tasks} enqueue_per_s={:.0} claims_per_s={claims_per_s:.0} \
         p50_ns={} p99_ns={} p999_ns={}",
        tasks as f64 / enqueue_s.max(1e-9),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    );
}

fn limited(name: &str, tasks: u64) -> anyhow::Result<()> {
    let (clock, registry, agent) = setup()?;
    let mut limiter = Limiter::default();
    let mut states: HashMap<ExecutionId, (TaskSpec, ExecutionState)> = HashMap::new();
    let enqueued = Instant::now();
    for i in 0..tasks {
        let id = ExecutionId::from_bytes(u128::from(i).to_be_bytes());
        let mut state = ExecutionState::empty(id);
        state.workflow = "limited".into();
        state.started_at_ms = 1_700_000_000_000 + i;
        state.limits = Some(LimitGate {
            limits: vec![LimitKey {
                name: "concurrency".into(),
                key: format!("k{}", i % 100),
                limit: 1,
                period_ms: None,
            }],
            waiting: true,
            acquired_at_ms: Vec::new(),
        });
        limiter.observe(&state);
        // Built here, not while timed: only queuing it is the engine's work.
        states.insert(id, (task(i, id, true), state));
    }
    let let_go = |limiter: &mut Limiter, states: &mut States| {
        let now = clock.now_ms();
        for id in limiter.grant(now) {
            if let Some((spec, state)) = states.get_mut(&id)
                && let Some(gate) = &mut state.limits
            {
                gate.waiting = false;
                gate.acquired_at_ms.push(now);
                limiter.observe(state);
                registry.enqueue(spec.clone());
            }
        }
    };
    let_go(&mut limiter, &mut states);
    let enqueue_s = enqueued.elapsed().as_secs_f64();
    #[allow(clippy::expect_used)]
    let mut h: Histogram<u64> =
        Histogram::new_with_bounds(1, 1_000_000_000, 3).expect("valid histogram bounds");
    let started = Instant::now();
    let mut claimed = 0;
    loop {
        let at = Instant::now();
        let got = registry.claim(&agent, 1).context("claim")?;
        let Some(claim) = got.first() else { break };
        registry
            .settle(&claim.spec.id, Outcome::Succeeded)
            .context("settle")?;
        if let Some((_, state)) = states.get_mut(&claim.spec.execution) {
            state.status = Status::Completed;
            limiter.observe(state);
        }
        let_go(&mut limiter, &mut states);
        h.saturating_record((at.elapsed().as_nanos() as u64).max(1));
        claimed += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(claimed == tasks, "claimed {claimed} of {tasks}");
    ensure!(limiter.waiting() == 0, "executions left waiting");
    report(
        name,
        tasks,
        enqueue_s,
        claimed as f64 / elapsed.max(1e-9),
        &h,
    );
    Ok(())
}

fn run(name: &str, tasks: u64, mixed: bool, limited: bool) -> anyhow::Result<()> {
    let (clock, registry, agent) = setup()?;
    if limited {
        // Limits that never bind: what checking them costs a claim.
        registry.set_capability_limits(
            "work",
            Some(CapabilityLimits {
                concurrency: Some(100_000),
                rate_limit: Some(CapabilityRate {
                    limit: 100_000,
                    period_ms: 1_000,
                }),
            }),
        );
    }
    let enqueued = Instant::now();
    for i in 0..tasks {
        clock.advance(1);
        registry.enqueue(task(i, ExecutionId::from_bytes([7; 16]), mixed));
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
    report(
        name,
        tasks,
        enqueue_s,
        claimed as f64 / elapsed.max(1e-9),
        &h,
    );
    Ok(())
}
