//! Circuit breakers on a simulated clock: failures within the window open
//! one, its tasks then fail fast with `circuit_open` (recorded, retried like
//! any error), a probe after the cool-down decides, and the state survives
//! a crash. Per-agent breakers keep one agent away while others serve the
//! capability, with the same probe and the same survival.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::time::Duration;

use retrace_engine::agents::AgentId;
use retrace_engine::breakers::{BreakerSettings, BreakerState};
use retrace_engine::machine::{ErrorInfo, Event, Status, error_types};
use retrace_engine::runtime::BreakerInfo;
use serde_json::json;
use support::*;

async fn until(w: &World, done: impl Fn(&BreakerInfo) -> bool) -> BreakerInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let b = w.engine.breaker("flaky").unwrap();
        if done(&b) {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got there: {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The error types of the execution's task failures, in order.
async fn failures(w: &World, id: retrace_engine::ExecutionId) -> Vec<String> {
    w.engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::TaskFailed { error, .. } => Some(error.kind),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_breaker_opens_fails_fast_probes_and_closes() {
    let mut w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky",
         "retry": {"maxAttempts": 10, "interval": 1000, "backoffRate": 1}}]}))
        .await;
    let settings = BreakerSettings {
        failures: 2,
        window_ms: 60_000,
        cool_down_ms: 10_000,
        per_agent: false,
    };
    let set = w
        .engine
        .set_breaker("flaky", settings, Some("ops"), None)
        .await
        .unwrap();
    assert_eq!(set.state, BreakerState::Closed);
    assert_eq!(set.set_by.as_deref(), Some("ops"));

    // Two failures within the window open it.
    let agent = w.agent(&["flaky"]);
    let first = w.start("call", json!({})).await;
    for _ in 0..2 {
        let task = w.claim(&agent).await;
        w.engine
            .fail_task(&task.spec.id, ErrorInfo::new("boom", "down"))
            .await
            .unwrap();
        w.clock.advance(1_000);
    }
    let open = until(&w, |b| b.opened == 1).await;
    assert!(matches!(open.state, BreakerState::Open { .. }));

    // The retry that came due fails fast: no agent is asked.
    w.wait_for_count(first, "task_failed", 3).await;
    assert_eq!(
        failures(&w, first).await,
        ["boom", "boom", error_types::CIRCUIT_OPEN]
    );
    assert!(w.engine.poll_tasks(&agent, 0, 1).await.unwrap().is_empty());

    // Open survives a crash (it is recorded).
    w.crash_and_recover().await;
    assert!(matches!(
        w.engine.breaker("flaky").unwrap().state,
        BreakerState::Open { .. }
    ));
    // After the cool-down the next attempt is the probe; it succeeds and
    // closes the breaker.
    w.clock.advance(10_000);
    let agent = w.agent(&["flaky"]);
    let probe = w.claim(&agent).await;
    let half = until(&w, |b| b.state == BreakerState::HalfOpen).await;
    assert_eq!(half.opened, 1);
    w.complete(&probe, json!({"ok": true})).await;
    // The probe's success closes it (at the same simulated instant as it
    // half-opened, so wait for the state, not a later change).
    let closed = until(&w, |b| b.state == BreakerState::Closed).await;
    assert_eq!(closed.recent_failures, 0);
    let ended = w.ended(first).await;
    assert_eq!(ended.status, Status::Completed);
    let kinds = failures(&w, first).await;
    assert!(
        kinds
            .iter()
            .filter(|k| *k == error_types::CIRCUIT_OPEN)
            .count()
            >= 1,
        "{kinds:?}"
    );

    // Removing it hands everything out again; bad settings change nothing.
    assert!(
        w.engine
            .set_breaker(
                "flaky",
                BreakerSettings {
                    failures: 0,
                    ..settings
                },
                None,
                None
            )
            .await
            .is_err()
    );
    w.engine.remove_breaker("flaky", None, None).await.unwrap();
    assert!(w.engine.breaker("flaky").is_err());
    assert!(w.engine.breakers().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_probe_opens_it_again() {
    let w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let settings = BreakerSettings {
        failures: 1,
        window_ms: 60_000,
        cool_down_ms: 5_000,
        per_agent: false,
    };
    w.engine
        .set_breaker("flaky", settings, None, None)
        .await
        .unwrap();
    let agent = w.agent(&["flaky"]);
    w.start("call", json!({})).await;
    let task = w.claim(&agent).await;
    w.engine
        .fail_task(&task.spec.id, ErrorInfo::new("boom", "down"))
        .await
        .unwrap();
    until(&w, |b| b.opened == 1).await;
    // Failing fast: an execution started now fails at once, routed by no
    // error handler, with a `circuit_open` error.
    let refused = w.start("call", json!({})).await;
    let state = w.ended(refused).await;
    assert_eq!(state.error.unwrap().kind, error_types::CIRCUIT_OPEN);
    w.clock.advance(5_000);
    let probing = w.start("call", json!({})).await;
    let probe = w.claim(&agent).await;
    assert_eq!(probe.spec.execution, probing);
    w.engine
        .fail_task(&probe.spec.id, ErrorInfo::new("boom", "still down"))
        .await
        .unwrap();
    let again = until(&w, |b| b.opened == 2).await;
    assert!(matches!(again.state, BreakerState::Open { .. }));
}

#[tokio::test]
async fn a_withdrawn_probe_lets_the_next_task_probe() {
    let w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let settings = BreakerSettings {
        failures: 1,
        window_ms: 60_000,
        cool_down_ms: 5_000,
        per_agent: false,
    };
    w.engine
        .set_breaker("flaky", settings, None, None)
        .await
        .unwrap();
    let agent = w.agent(&["flaky"]);
    w.start("call", json!({})).await;
    let task = w.claim(&agent).await;
    w.fail(&task, "boom", "down").await;
    until(&w, |b| b.opened == 1).await;
    w.clock.advance(5_000);
    // The probe's execution is cancelled before the probe answers.
    let probing = w.start("call", json!({})).await;
    let probe = w.claim(&agent).await;
    assert_eq!(probe.spec.execution, probing);
    w.engine.cancel(probing, "not needed", false).await.unwrap();
    // The next task is the probe: handed out, not failed fast.
    let next = w.start("call", json!({})).await;
    let second = tokio::time::timeout(Duration::from_secs(20), w.claim(&agent))
        .await
        .expect("the next task is never handed out: the breaker waits for the withdrawn probe");
    assert_eq!(second.spec.execution, next);
    w.complete(&second, json!({})).await;
    assert_eq!(w.ended(next).await.status, Status::Completed);
    until(&w, |b| b.state == BreakerState::Closed).await;
}

#[tokio::test]
async fn the_audit_lists_who_set_and_removed_a_breaker_and_not_its_own_changes() {
    let w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let settings = BreakerSettings {
        failures: 1,
        window_ms: 60_000,
        cool_down_ms: 5_000,
        per_agent: false,
    };
    w.engine
        .set_breaker("flaky", settings, Some("alice"), Some("flapping"))
        .await
        .unwrap();
    let agent = w.agent(&["flaky"]);
    w.start("call", json!({})).await;
    let task = w.claim(&agent).await;
    w.engine
        .fail_task(&task.spec.id, ErrorInfo::new("boom", "down"))
        .await
        .unwrap();
    until(&w, |b| b.opened == 1).await;
    w.engine
        .remove_breaker("flaky", Some("bob"), None)
        .await
        .unwrap();
    let (entries, _) = w.engine.read().audit(1, 1000, false).await.unwrap();
    let breaker: Vec<_> = entries
        .iter()
        .filter(|e| e.action.starts_with("breaker_"))
        .map(|e| (e.action, e.by.clone(), e.detail.clone()))
        .collect();
    assert_eq!(
        breaker,
        vec![
            (
                "breaker_set",
                Some("alice".to_string()),
                Some("1 failures in 60000 ms, cool-down 5000 ms: flapping".to_string())
            ),
            ("breaker_removed", Some("bob".to_string()), None),
        ]
    );
}

/// The breaker of the agent called `name` for `flaky`, once `done` holds.
async fn agent_until(
    w: &World,
    name: &str,
    done: impl Fn(&retrace_engine::runtime::AgentBreakerInfo) -> bool,
) -> retrace_engine::runtime::AgentBreakerInfo {
    let b = until(w, |b| b.agents.iter().any(|a| a.agent == name && done(a))).await;
    b.agents.into_iter().find(|a| a.agent == name).unwrap()
}

fn named(w: &World, name: &str) -> AgentId {
    w.engine
        .agents()
        .register(name, &["flaky".to_owned()], Some(10))
        .unwrap()
}

/// Invariant 36: a per-agent breaker opens after `failures` failures of
/// that agent within the window and then keeps that agent (by name) from
/// the capability's tasks while other agents serve them (nothing fails
/// fast); after the cool-down the agent takes exactly one probe, whose
/// success closes it; its recorded state survives a crash.
#[tokio::test]
async fn a_per_agent_breaker_keeps_one_agent_away_while_others_serve_probes_and_closes() {
    let mut w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky",
         "retry": {"maxAttempts": 10, "interval": 1000, "backoffRate": 1}}]}))
        .await;
    let settings = BreakerSettings {
        failures: 2,
        window_ms: 60_000,
        cool_down_ms: 10_000,
        per_agent: true,
    };
    let set = w
        .engine
        .set_breaker("flaky", settings, None, None)
        .await
        .unwrap();
    assert!(set.settings.per_agent);
    assert!(set.agents.is_empty(), "made at an agent's first failure");

    // Two failures of `bad` open its breaker, not the capability's.
    let bad = named(&w, "bad");
    let first = w.start("call", json!({})).await;
    let second = w.start("call", json!({})).await;
    let tasks = w.claim_n(&bad, 2).await;
    for task in &tasks {
        w.fail(task, "boom", "down").await;
    }
    let open = agent_until(&w, "bad", |a| a.opened == 1).await;
    assert!(matches!(open.state, BreakerState::Open { .. }), "{open:?}");
    assert_eq!(
        w.engine.breaker("flaky").unwrap().state,
        BreakerState::Closed
    );

    // The retries go to `good`; `bad` is given none, and nothing fails fast.
    w.clock.advance(1_000);
    w.wait_for_count(first, "task_scheduled", 2).await;
    w.wait_for_count(second, "task_scheduled", 2).await;
    assert!(w.engine.poll_tasks(&bad, 0, 10).await.unwrap().is_empty());
    let good = named(&w, "good");
    let retry = w.claim(&good).await;
    w.complete(&retry, json!({"ok": true})).await;
    assert!(w.engine.poll_tasks(&bad, 0, 10).await.unwrap().is_empty());
    for id in [first, second] {
        assert!(
            !failures(&w, id)
                .await
                .contains(&error_types::CIRCUIT_OPEN.to_owned()),
            "a per-agent breaker never fails fast"
        );
    }

    // Open survives a crash; registrations do not.
    w.crash_and_recover().await;
    let b = w.engine.breaker("flaky").unwrap();
    assert!(b.settings.per_agent);
    assert_eq!(b.agents.len(), 1);
    assert!(matches!(b.agents[0].state, BreakerState::Open { .. }));
    assert_eq!(b.agents[0].opened, 1);
    let bad = named(&w, "bad");
    assert!(w.engine.poll_tasks(&bad, 0, 10).await.unwrap().is_empty());

    // A long poll of `bad` is woken when the cool-down ends, and takes
    // exactly one probe.
    let third = w.start("call", json!({})).await;
    w.wait_for(third, "task_scheduled").await;
    let engine = w.engine.clone();
    let waiting = tokio::spawn(async move { engine.poll_tasks(&bad, 60_000, 10).await });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "still cooling down");
    w.clock.advance(10_000);
    let probe = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken at the end of the cool-down")
        .unwrap()
        .unwrap();
    assert_eq!(probe.len(), 1, "exactly one probe");
    let half = agent_until(&w, "bad", |a| a.state == BreakerState::HalfOpen).await;
    assert_eq!(half.opened, 1);
    assert!(
        w.engine.poll_tasks(&bad, 0, 10).await.unwrap().is_empty(),
        "one probe at a time"
    );

    // Its success closes it, and `bad` is served again.
    w.complete(&probe[0], json!({"ok": true})).await;
    let closed = agent_until(&w, "bad", |a| a.state == BreakerState::Closed).await;
    assert_eq!(closed.recent_failures, 0);
    assert_eq!(closed.opened, 1);
    let fourth = w.start("call", json!({})).await;
    w.wait_for(fourth, "task_scheduled").await;
    let mut served = w.engine.poll_tasks(&bad, 0, 10).await.unwrap();
    assert!(!served.is_empty(), "closed: served again");
    for task in served.drain(..) {
        w.complete(&task, json!({"ok": true})).await;
    }

    // Switching back to one breaker for the capability drops the agents'.
    let one = w
        .engine
        .set_breaker(
            "flaky",
            BreakerSettings {
                per_agent: false,
                ..settings
            },
            None,
            None,
        )
        .await
        .unwrap();
    assert!(one.agents.is_empty());
}

#[tokio::test]
async fn a_failed_probe_opens_an_agents_breaker_again_and_a_withdrawn_one_frees_the_way() {
    let w = World::new().await;
    w.define(json!({"name": "call", "steps": [
        {"id": "hit", "type": "task", "capability": "flaky"}]}))
        .await;
    let settings = BreakerSettings {
        failures: 1,
        window_ms: 60_000,
        cool_down_ms: 5_000,
        per_agent: true,
    };
    w.engine
        .set_breaker("flaky", settings, None, None)
        .await
        .unwrap();
    let bad = named(&w, "bad");
    w.start("call", json!({})).await;
    let task = w.claim(&bad).await;
    w.fail(&task, "boom", "down").await;
    agent_until(&w, "bad", |a| a.opened == 1).await;

    // The probe's execution is cancelled: the probe is withdrawn, and the
    // next task is the probe.
    w.clock.advance(5_000);
    let cancelled = w.start("call", json!({})).await;
    let probe = w.claim(&bad).await;
    assert_eq!(probe.spec.execution, cancelled);
    agent_until(&w, "bad", |a| a.state == BreakerState::HalfOpen).await;
    w.engine
        .cancel(cancelled, "not needed", false)
        .await
        .unwrap();
    w.ended(cancelled).await;
    let probing = w.start("call", json!({})).await;
    let probe = w.claim(&bad).await;
    assert_eq!(probe.spec.execution, probing);
    w.fail(&probe, "boom", "still down").await;
    let again = agent_until(&w, "bad", |a| a.opened == 2).await;
    assert!(matches!(again.state, BreakerState::Open { .. }));
    // The capability's own breaker never moved.
    let b = w.engine.breaker("flaky").unwrap();
    assert_eq!((b.state, b.opened), (BreakerState::Closed, 0));
}

mod breaker_model {
    //! Invariant 32 as a property on a simulated clock: one breaker against
    //! the rules as written, over random hand-outs, results, withdrawals
    //! and time. Closed, every task goes and `failures` failures reported
    //! within `windowMs` open it; open, every task is refused until
    //! `coolDownMs` has passed; then exactly one task goes, as the probe,
    //! and nothing else until it reports (or is withdrawn); its success
    //! closes the breaker, its failure opens it again from that instant.

    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use retrace_engine::breakers::{Breaker, BreakerSettings, BreakerState, Gate, Transition};

    const FAILURES: u32 = 3;
    const WINDOW_MS: u64 = 1_000;
    const COOL_DOWN_MS: u64 = 500;

    #[derive(Debug, Clone)]
    enum Op {
        HandOut,
        Succeed(usize),
        Fail(usize),
        Withdraw(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::HandOut),
            2 => any::<usize>().prop_map(Op::Succeed),
            3 => any::<usize>().prop_map(Op::Fail),
            1 => any::<usize>().prop_map(Op::Withdraw),
            2 => (1u64..700).prop_map(Op::Advance),
        ]
    }

    /// The rules, kept independently of the breaker.
    #[derive(Debug)]
    enum Rules {
        Closed { failed_at: Vec<u64> },
        Open { since: u64 },
        HalfOpen { probe: Option<String> },
    }

    proptest! {
        #[test]
        fn a_breaker_opens_probes_and_closes_as_specified(ops in prop::collection::vec(op(), 1..200)) {
            let settings = BreakerSettings {
                failures: FAILURES,
                window_ms: WINDOW_MS,
                cool_down_ms: COOL_DOWN_MS,
                per_agent: false,
            };
            let mut breaker = Breaker::new(settings, BreakerState::Closed);
            let mut rules = Rules::Closed { failed_at: Vec::new() };
            let mut now = 0u64;
            let mut out: BTreeSet<String> = BTreeSet::new();
            let mut next = 0;
            for op in ops {
                let pick = |n: usize, out: &BTreeSet<String>| out.iter().nth(n % out.len().max(1)).cloned();
                match op {
                    Op::HandOut => {
                        let task = format!("t{next}");
                        next += 1;
                        let gate = breaker.gate(&task, now);
                        let expected = match &mut rules {
                            Rules::Closed { .. } => Gate::Pass,
                            Rules::Open { since } if now >= *since + COOL_DOWN_MS => {
                                rules = Rules::HalfOpen { probe: Some(task.clone()) };
                                Gate::Probe(Transition::HalfOpened)
                            }
                            Rules::Open { .. } => Gate::Refuse,
                            Rules::HalfOpen { probe: probe @ None } => {
                                *probe = Some(task.clone());
                                Gate::Pass
                            }
                            Rules::HalfOpen { .. } => Gate::Refuse,
                        };
                        prop_assert_eq!(&gate, &expected, "handing out {} at {}", task, now);
                        if gate != Gate::Refuse {
                            out.insert(task);
                        }
                    }
                    Op::Succeed(n) => if let Some(task) = pick(n, &out) {
                        out.remove(&task);
                        let got = breaker.succeeded(&task);
                        let expected = match &rules {
                            Rules::HalfOpen { probe: Some(p) } if *p == task => {
                                rules = Rules::Closed { failed_at: Vec::new() };
                                Some(Transition::Closed)
                            }
                            _ => None,
                        };
                        prop_assert_eq!(got, expected);
                    },
                    Op::Fail(n) => if let Some(task) = pick(n, &out) {
                        out.remove(&task);
                        let got = breaker.failed(&task, now);
                        let expected = match &mut rules {
                            Rules::HalfOpen { probe: Some(p) } if *p == task => {
                                rules = Rules::Open { since: now };
                                Some(Transition::Opened { failures: 1 })
                            }
                            Rules::Closed { failed_at } => {
                                failed_at.push(now);
                                let within = failed_at.iter().filter(|at| **at + WINDOW_MS > now).count();
                                if within >= FAILURES as usize {
                                    rules = Rules::Open { since: now };
                                    Some(Transition::Opened { failures: within as u32 })
                                } else {
                                    None
                                }
                            }
                            _ => None,
                        };
                        prop_assert_eq!(got, expected, "{} failed at {}", task, now);
                    },
                    Op::Withdraw(n) => if let Some(task) = pick(n, &out) {
                        out.remove(&task);
                        breaker.released(&task);
                        if let Rules::HalfOpen { probe } = &mut rules
                            && probe.as_deref() == Some(task.as_str())
                        {
                            *probe = None;
                        }
                    },
                    Op::Advance(ms) => now += ms,
                }
                let state = match &rules {
                    Rules::Closed { .. } => BreakerState::Closed,
                    Rules::Open { since } => BreakerState::Open { since_ms: *since },
                    Rules::HalfOpen { .. } => BreakerState::HalfOpen,
                };
                prop_assert_eq!(breaker.state, state);
            }
        }
    }
}
