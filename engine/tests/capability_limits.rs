//! Capability limits on a simulated clock: tasks claimed at once across all
//! agents (`concurrency`), tasks claimed per period (`rateLimit`); a task
//! over a limit stays queued and says what holds it; the server
//! configuration's limits, the API's over them; and both holding across a
//! crash: recorded claims refill the window, and tasks claimed before the
//! crash hold their slots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::collections::BTreeMap;
use std::sync::Arc;

use retrace_engine::agents::AgentId;
use retrace_engine::clock::SimClock;
use retrace_engine::limits::{CapabilityLimits, CapabilityRate};
use retrace_engine::runtime::{Engine, EngineConfig, LimitsSource};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Options};
use serde_json::json;
use support::*;

fn concurrency(n: u32) -> CapabilityLimits {
    CapabilityLimits {
        concurrency: Some(n),
        rate_limit: None,
    }
}

fn rate(limit: u32, period_ms: u64) -> CapabilityLimits {
    CapabilityLimits {
        concurrency: None,
        rate_limit: Some(CapabilityRate { limit, period_ms }),
    }
}

async fn work(w: &World, n: usize) {
    w.define(json!({"name": "work", "steps": [
        {"id": "t", "type": "task", "capability": "crm.pull"}]}))
        .await;
    for i in 0..n {
        w.start("work", json!({"i": i})).await;
    }
}

/// Claims what the agent may take now, without waiting.
async fn take(w: &World, agent: &AgentId) -> usize {
    w.engine.poll_tasks(agent, 0, 10).await.unwrap().len()
}

#[tokio::test]
async fn a_concurrency_limit_holds_tasks_across_agents_and_says_what_holds_them() {
    let w = World::new().await;
    w.engine
        .set_capability_limits("crm.pull", concurrency(2), Some("ops"), None)
        .await
        .unwrap();
    work(&w, 3).await;
    let a = w.agent(&["crm.pull"]);
    let b = w.agent(&["crm.pull"]);
    let first = w.engine.poll_tasks(&a, 0, 10).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(take(&w, &b).await, 0, "a third task over the limit");
    let held = w.engine.capability_held("crm.pull").unwrap();
    assert_eq!(
        (
            held.name.as_str(),
            held.key.as_str(),
            held.limit,
            held.in_use
        ),
        ("concurrency", "crm.pull", 2, 2)
    );
    let info = w.engine.capability_limit("crm.pull").unwrap();
    assert_eq!((info.running, info.queued), (2, 1));
    assert!(matches!(info.source, LimitsSource::Api { set_by: Some(ref by), .. } if by == "ops"));
    w.complete(&first[0], json!({})).await;
    assert_eq!(take(&w, &b).await, 1);
    assert!(w.engine.capability_held("crm.pull").is_some());
}

#[tokio::test]
async fn a_rate_limit_counts_claims_in_a_sliding_window_and_survives_a_crash() {
    let mut w = World::new().await;
    w.engine
        .set_capability_limits("crm.pull", rate(2, 10_000), None, None)
        .await
        .unwrap();
    work(&w, 4).await;
    let a = w.agent(&["crm.pull"]);
    assert_eq!(take(&w, &a).await, 2);
    assert_eq!(take(&w, &a).await, 0);
    let held = w.engine.capability_held("crm.pull").unwrap();
    assert_eq!((held.name.as_str(), held.in_use), ("rateLimit", 2));
    // The claims were recorded: a crash does not empty the window.
    w.crash_and_recover().await;
    let a = w.agent(&["crm.pull"]);
    assert_eq!(take(&w, &a).await, 0, "the window still holds two claims");
    assert_eq!(w.engine.capability_limit("crm.pull").unwrap().in_window, 2);
    w.clock.advance(9_999);
    assert_eq!(take(&w, &a).await, 0);
    w.clock.advance(1);
    assert_eq!(take(&w, &a).await, 2);
}

#[tokio::test]
async fn a_long_poll_is_woken_when_a_rate_window_has_room() {
    let w = World::new().await;
    w.engine
        .set_capability_limits("crm.pull", rate(1, 5_000), None, None)
        .await
        .unwrap();
    work(&w, 2).await;
    let a = w.agent(&["crm.pull"]);
    assert_eq!(take(&w, &a).await, 1);
    let engine = w.engine.clone();
    let waiting = tokio::spawn(async move { engine.poll_tasks(&a, 30_000, 1).await.unwrap() });
    // The poll waits; moving the clock past the window wakes it.
    tokio::task::yield_now().await;
    w.clock.advance(5_000);
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the waiting poll was never woken")
        .unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn a_task_claimed_before_a_crash_holds_its_slot_until_claimed_again_or_reported() {
    let mut w = World::new().await;
    w.engine
        .set_capability_limits("crm.pull", concurrency(1), None, None)
        .await
        .unwrap();
    work(&w, 2).await;
    let a = w.agent(&["crm.pull"]);
    let held = w.engine.poll_tasks(&a, 0, 10).await.unwrap();
    assert_eq!(held.len(), 1);
    w.crash_and_recover().await;
    // The claim was recorded: its agent may still be working, so the task
    // holds the only slot, and the other one waits...
    let info = w.engine.capability_limit("crm.pull").unwrap();
    assert_eq!((info.running, info.queued), (1, 2));
    // ...while the held task itself may be claimed again (its own slot).
    let b = w.agent(&["crm.pull"]);
    let again = w.engine.poll_tasks(&b, 0, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].spec.id, held[0].spec.id);
    assert_eq!(take(&w, &b).await, 0);
    // The old claim reports: its result is taken, the slot is free.
    w.complete(&held[0], json!({})).await;
    assert_eq!(take(&w, &b).await, 1);
}

#[tokio::test]
async fn a_phantom_slot_ends_when_the_old_claim_reports_or_its_lease_would_have_run_out() {
    let mut w = World::new().await;
    w.engine
        .set_capability_limits("crm.pull", concurrency(1), None, None)
        .await
        .unwrap();
    work(&w, 2).await;
    let a = w.agent(&["crm.pull"]);
    assert_eq!(take(&w, &a).await, 1);
    w.crash_and_recover().await;
    // Nobody claims the held task again: after its lease (the default
    // start-to-close, 300 s) it no longer holds the slot, and the other
    // task goes (the held one is queued too, first).
    let b = w.agent(&["crm.pull"]);
    w.clock.advance(300_000);
    assert_eq!(take(&w, &b).await, 1);
    assert_eq!(take(&w, &b).await, 0);
}

fn open_with(
    store: &MemoryStore,
    clock: &SimClock,
    limits: BTreeMap<String, CapabilityLimits>,
) -> EngineConfig {
    let journal = EventLog::in_memory(store.clone(), Options::default()).unwrap();
    EngineConfig {
        capability_limits: limits,
        ..EngineConfig::journal(Arc::new(journal), Arc::new(clock.clone()))
    }
}

#[tokio::test]
async fn the_configurations_limits_are_in_force_until_the_api_sets_others_and_after_it_removes_them()
 {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let config = BTreeMap::from([("crm.pull".to_owned(), concurrency(3))]);
    let engine = Engine::open(open_with(&store, &clock, config.clone()))
        .await
        .unwrap();
    let info = engine.capability_limit("crm.pull").unwrap();
    assert_eq!(
        (info.limits, info.source),
        (concurrency(3), LimitsSource::Config)
    );
    engine
        .set_capability_limits("crm.pull", concurrency(1), None, None)
        .await
        .unwrap();
    assert_eq!(
        engine.capability_limit("crm.pull").unwrap().limits,
        concurrency(1)
    );
    assert_eq!(engine.capability_limits().len(), 1);
    engine
        .remove_capability_limits("crm.pull", None, None)
        .await
        .unwrap();
    let info = engine.capability_limit("crm.pull").unwrap();
    assert_eq!(
        (info.limits, info.source),
        (concurrency(3), LimitsSource::Config)
    );
    // Removing again: nothing set through the API.
    assert!(
        engine
            .remove_capability_limits("crm.pull", None, None)
            .await
            .is_err()
    );
    // A bad configuration refuses to open.
    let bad = BTreeMap::from([("crm.pull".to_owned(), concurrency(0))]);
    let refused = Engine::open(open_with(&MemoryStore::new(), &clock, bad))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("concurrency: must be from 1"),
        "{refused}"
    );
}

#[tokio::test]
async fn bad_limits_are_refused_whole_and_record_nothing() {
    let w = World::new().await;
    let before = w.engine.read().last_position().await.unwrap();
    let refused = w
        .engine
        .set_capability_limits(
            "Not A Capability",
            CapabilityLimits {
                concurrency: Some(0),
                rate_limit: Some(CapabilityRate {
                    limit: 1,
                    period_ms: 0,
                }),
            },
            None,
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    for part in ["capability", "concurrency", "periodMs"] {
        assert!(refused.contains(part), "{part}: {refused}");
    }
    assert_eq!(w.engine.read().last_position().await.unwrap(), before);
    assert!(w.engine.capability_limits().is_empty());
}

mod registry_model {
    //! Invariant 37 on the registry alone, across restarts: random tasks,
    //! claims by two agents, results, time passing, and restarts (a new
    //! registry given the outstanding tasks, the claimed ones as recovered,
    //! and the recorded claims). Agents of an earlier registry keep working on what they
    //! held until they report it or its lease ends. After every step, the
    //! tasks really running (held by an agent, this registry's or an
    //! earlier one's) never exceed the concurrency limit, and no period
    //! holds more claims than the rate limit.

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use proptest::prelude::*;
    use retrace_engine::ExecutionId;
    use retrace_engine::agents::{AgentId, AgentOptions, AgentRegistry, Outcome, TaskSpec};
    use retrace_engine::clock::{Clock, SimClock};
    use retrace_engine::limits::{CapabilityLimits, CapabilityRate};

    const CONCURRENCY: u32 = 2;
    const RATE: u32 = 3;
    const PERIOD_MS: u64 = 1_000;
    const LEASE_MS: u64 = 700;

    #[derive(Debug, Clone)]
    enum Op {
        Schedule,
        Claim(bool),
        Report(usize),
        Advance(u64),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Schedule),
            4 => any::<bool>().prop_map(Op::Claim),
            3 => any::<usize>().prop_map(Op::Report),
            2 => (1u64..400).prop_map(Op::Advance),
            1 => Just(Op::Restart),
        ]
    }

    fn spec(i: usize, now: u64) -> TaskSpec {
        TaskSpec {
            id: format!("t{i}"),
            execution: ExecutionId::from_bytes([1; 16]),
            step: "s".into(),
            capability: "c".into(),
            attempt: 1,
            input: serde_json::Value::Null,
            lease_ms: LEASE_MS,
            schedule_to_start_ms: None,
            heartbeat_ms: None,
            scheduled_at_ms: now,
            priority: 0,
            fairness_key: None,
            agent_version: None,
        }
    }

    fn registry(clock: &SimClock) -> (AgentRegistry, [AgentId; 2]) {
        let r = AgentRegistry::new(Arc::new(clock.clone()), AgentOptions::default());
        r.set_capability_limits(
            "c",
            Some(CapabilityLimits {
                concurrency: Some(CONCURRENCY),
                rate_limit: Some(CapabilityRate {
                    limit: RATE,
                    period_ms: PERIOD_MS,
                }),
            }),
        );
        let caps = vec!["c".to_owned()];
        let a = r.register("a", &caps, Some(10)).unwrap();
        let b = r.register("b", &caps, Some(10)).unwrap();
        (r, [a, b])
    }

    proptest! {
        #[test]
        fn claims_never_exceed_a_capabilitys_limits_across_restarts(
            ops in prop::collection::vec(op(), 1..150)
        ) {
            let clock = SimClock::new(1_000_000);
            let (mut reg, mut agents) = registry(&clock);
            // Tasks not yet reported: (spec, whether an agent may be running
            // it and until when its lease lasts).
            let mut outstanding: BTreeMap<String, (TaskSpec, Option<u64>)> = BTreeMap::new();
            let mut claims: Vec<u64> = Vec::new();
            let mut next = 0;
            for op in ops {
                let now = clock.now_ms();
                match op {
                    Op::Schedule => {
                        let s = spec(next, now);
                        next += 1;
                        reg.enqueue(s.clone());
                        outstanding.insert(s.id.clone(), (s, None));
                    }
                    Op::Claim(second) => {
                        let agent = agents[usize::from(second)];
                        for c in reg.claim(&agent, 10).unwrap() {
                            claims.push(now);
                            let entry = outstanding.get_mut(&c.spec.id).unwrap();
                            entry.1 = Some(c.lease_deadline_ms);
                        }
                    }
                    Op::Report(n) => {
                        let running: Vec<String> = outstanding.iter()
                            .filter(|(_, (_, until))| until.is_some_and(|u| u > now))
                            .map(|(id, _)| id.clone()).collect();
                        if !running.is_empty() {
                            let id = running[n % running.len()].clone();
                            let _ = reg.settle(&id, Outcome::Succeeded);
                            outstanding.remove(&id);
                        }
                    }
                    Op::Advance(ms) => clock.advance(ms),
                    Op::Restart => {
                        let (fresh, fresh_agents) = registry(&clock);
                        fresh.seed_capability_claims("c", claims.iter().copied());
                        // Claims are recorded: the claimed tasks are the
                        // ones an agent may still be running.
                        for (s, until) in outstanding.values() {
                            if until.is_some() {
                                fresh.enqueue_recovered(s.clone(), now + s.lease_ms);
                            } else {
                                fresh.enqueue(s.clone());
                            }
                        }
                        reg = fresh;
                        agents = fresh_agents;
                    }
                }
                let now = clock.now_ms();
                let running = outstanding.values()
                    .filter(|(_, until)| until.is_some_and(|u| u > now)).count();
                prop_assert!(running <= CONCURRENCY as usize,
                    "{} tasks running, over the limit {}", running, CONCURRENCY);
                let in_window = claims.iter().filter(|at| **at + PERIOD_MS > now).count();
                prop_assert!(in_window <= RATE as usize,
                    "{} claims in a period, over the limit {}", in_window, RATE);
            }
        }
    }
}
