//! The agent registry: registration rules, routing by capability, load and
//! health (effective slots, tasks left for healthier waiting agents, none
//! stranded), queue order, long polls, leases and heartbeats, deadlines,
//! settling, statistics and status, and a model-based property test of the
//! whole.
//!
//! Deadlines run on a simulated clock; only the long-poll waits use real time,
//! and those tests assert what the poll returns, never how long it took. The
//! health tests and the model poll long polls by hand, so which poll looks
//! when is exact and nothing waits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use proptest::prelude::*;
use retrace_engine::ExecutionId;
use retrace_engine::agents::{
    AGING_MS_PER_LEVEL, AgentError, AgentId, AgentInfo, AgentOptions, AgentRegistry, AgentStatus,
    AgentTraits, ClaimGate, ClaimedTask, FAIR_TURN_MS, HEALTH_WINDOW_TASKS, Outcome, Settled,
    TaskSpec, TimeoutKind,
};
use retrace_engine::clock::SimClock;
use retrace_engine::machine::PRIORITY_MAX;
use serde_json::json;

const START_MS: u64 = 1_000_000;

fn registry_with(options: AgentOptions) -> (SimClock, AgentRegistry) {
    let clock = SimClock::new(START_MS);
    let registry = AgentRegistry::new(Arc::new(clock.clone()), options);
    (clock, registry)
}

fn registry() -> (SimClock, AgentRegistry) {
    registry_with(AgentOptions::default())
}

fn caps(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn agent(registry: &AgentRegistry, names: &[&str], max_concurrency: u32) -> AgentId {
    registry
        .register("worker", &caps(names), Some(max_concurrency))
        .unwrap()
}

/// A task with a 10 s lease and no other deadline.
fn task(id: &str, capability: &str, scheduled_at_ms: u64) -> TaskSpec {
    TaskSpec {
        id: id.to_owned(),
        execution: ExecutionId::from_bytes([7; 16]),
        step: format!("step_{id}"),
        capability: capability.to_owned(),
        attempt: 1,
        input: json!({ "task": id }),
        lease_ms: 10_000,
        schedule_to_start_ms: None,
        heartbeat_ms: None,
        scheduled_at_ms,
        priority: 0,
        fairness_key: None,
        agent_version: None,
    }
}

fn ids<'a>(tasks: impl IntoIterator<Item = &'a TaskSpec>) -> Vec<String> {
    tasks.into_iter().map(|spec| spec.id.clone()).collect()
}

fn claim_ids(registry: &AgentRegistry, agent: &AgentId, max: usize) -> Vec<String> {
    let claimed = registry.claim(agent, max).unwrap();
    ids(claimed.iter().map(|claim| &claim.spec))
}

fn info(registry: &AgentRegistry, agent: &AgentId) -> AgentInfo {
    registry.get(agent).unwrap()
}

/// Everything observable about the registry, to show a refused call changed nothing.
fn snapshot(registry: &AgentRegistry) -> String {
    format!(
        "{:?} {:?} {} {:?}",
        registry.list(),
        registry.queue_sizes(),
        registry.outstanding(),
        registry.next_deadline_ms()
    )
}

// Registration.

#[test]
fn registration_applies_every_rule() {
    let (_, registry) = registry();
    let refused = |name: &str, capabilities: Vec<String>, max: Option<u32>| match registry.register(
        name,
        &capabilities,
        max,
    ) {
        Err(AgentError::InvalidRegistration(message)) => message,
        other => panic!("{name:?} {capabilities:?} {max:?} was not refused: {other:?}"),
    };
    let ok = caps(&["a"]);

    assert!(refused("", ok.clone(), None).contains("name must be 1 to 128 characters"));
    assert!(refused(&"n".repeat(129), ok.clone(), None).contains("not 129"));
    assert!(refused("bad\nname", ok.clone(), None).contains("control characters"));
    assert!(refused("w", vec![], None).contains("1 to 100 capabilities, not 0"));
    let many: Vec<String> = (0..101).map(|i| format!("cap{i}")).collect();
    assert!(refused("w", many, None).contains("not 101"));
    for capability in ["Git Ops", "-x", "a b", "UPPER", "é", ""] {
        let message = refused("w", caps(&[capability]), None);
        assert!(message.contains("capability"), "{capability:?}: {message}");
    }
    assert!(refused("w", vec!["a".repeat(129)], None).contains("128 bytes"));
    assert!(refused("w", ok.clone(), Some(0)).contains("maxConcurrency must be 1 to 10000, not 0"));
    assert!(refused("w", ok.clone(), Some(10_001)).contains("not 10001"));
    assert!(registry.list().is_empty(), "nothing refused was registered");

    // The limits themselves are allowed; names count characters, not bytes.
    let most: Vec<String> = (0..100).map(|i| format!("cap{i}")).collect();
    assert!(registry.register(&"é".repeat(128), &ok, None).is_ok());
    assert!(registry.register("w", &most, Some(10_000)).is_ok());
    assert!(
        registry
            .register(
                "w",
                &caps(&["3d-render", "http.call", "billing:charge", "a_b"]),
                Some(1)
            )
            .is_ok()
    );
}

#[test]
fn registration_deduplicates_and_defaults() {
    let (_, registry) = registry();
    let id = registry
        .register("builder", &caps(&["git", "build", "git", "build"]), None)
        .unwrap();
    let agent = info(&registry, &id);
    assert_eq!(agent.name, "builder");
    assert_eq!(agent.capabilities, caps(&["build", "git"]));
    assert_eq!(agent.max_concurrency, 10);
    assert_eq!(agent.registered_at_ms, START_MS);
    assert_eq!(agent.last_seen_ms, START_MS);
    assert_eq!(agent.status, AgentStatus::Online);
}

#[test]
fn an_unknown_agent_is_refused_everywhere() {
    let (_, registry) = registry();
    let stranger = AgentId::random();
    let unknown = Err(AgentError::UnknownAgent(stranger));
    assert_eq!(registry.heartbeat(&stranger), unknown);
    assert_eq!(registry.unregister(&stranger).map(|_| ()), unknown);
    assert_eq!(registry.claim(&stranger, 1).map(|_| ()), unknown);
    let polled = registry.poll(&stranger, 0, 1).now_or_never().unwrap();
    assert_eq!(polled.map(|_| ()), unknown);
    assert_eq!(registry.get(&stranger), None);
}

#[test]
fn agents_are_listed_in_registration_order() {
    let (_, registry) = registry();
    let names = ["zeta", "alpha", "mid"];
    let registered: Vec<AgentId> = names
        .iter()
        .map(|name| registry.register(name, &caps(&["a"]), None).unwrap())
        .collect();
    let listed: Vec<(AgentId, String)> = registry
        .list()
        .into_iter()
        .map(|agent| (agent.id, agent.name))
        .collect();
    let expected: Vec<(AgentId, String)> = registered
        .into_iter()
        .zip(names.iter().map(|name| (*name).to_owned()))
        .collect();
    assert_eq!(listed, expected);
}

// Routing and order.

#[test]
fn only_matching_capabilities_are_claimed() {
    let (_, registry) = registry();
    let git = agent(&registry, &["git"], 10);
    registry.enqueue(task("t1", "build", START_MS));
    registry.enqueue(task("t2", "git", START_MS));
    registry.enqueue(task("t3", "test", START_MS));
    assert_eq!(claim_ids(&registry, &git, 10), ["t2"]);
    assert_eq!(
        registry.queue_sizes(),
        BTreeMap::from([
            ("build".to_owned(), 1),
            ("git".to_owned(), 0),
            ("test".to_owned(), 1)
        ])
    );
    assert_eq!(registry.outstanding(), 3);
}

#[test]
fn oldest_scheduled_first_across_capabilities() {
    let (_, registry) = registry();
    registry.enqueue(task("a30", "a", 30));
    registry.enqueue(task("b10", "b", 10));
    registry.enqueue(task("a20", "a", 20));
    registry.enqueue(task("a10", "a", 10)); // same time as b10, enqueued later
    registry.enqueue(task("c5", "c", 5)); // not offered
    let worker = agent(&registry, &["a", "b"], 10);
    assert_eq!(claim_ids(&registry, &worker, 2), ["b10", "a10"]);
    assert_eq!(claim_ids(&registry, &worker, 10), ["a20", "a30"]);
}

#[test]
fn enqueue_is_idempotent_while_outstanding() {
    let (_, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    assert!(registry.enqueue(task("t", "a", 1)));
    assert!(!registry.enqueue(task("t", "a", 1)));
    assert_eq!(claim_ids(&registry, &worker, 10), ["t"]);
    let mut again = task("t", "a", 1);
    again.attempt = 2;
    assert!(
        !registry.enqueue(again),
        "a claimed task is outstanding too"
    );
    assert_eq!(registry.outstanding(), 1);
    assert_eq!(registry.claim(&worker, 10).unwrap(), []);

    registry.settle("t", Outcome::Succeeded).unwrap();
    assert!(
        registry.enqueue(task("t", "a", 1)),
        "a settled id may be queued again"
    );
}

#[test]
fn max_concurrency_is_respected_and_settling_frees_a_slot() {
    let (_, registry) = registry();
    let worker = agent(&registry, &["a"], 2);
    for i in 0..5 {
        registry.enqueue(task(&format!("t{i}"), "a", i));
    }
    assert_eq!(claim_ids(&registry, &worker, 10), ["t0", "t1"]);
    assert_eq!(info(&registry, &worker).status, AgentStatus::Busy);
    assert!(
        registry.claim(&worker, 10).unwrap().is_empty(),
        "at capacity"
    );
    let polled = registry
        .poll(&worker, 0, 10)
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(polled.is_empty());

    registry.settle("t0", Outcome::Succeeded).unwrap();
    assert_eq!(claim_ids(&registry, &worker, 10), ["t2"]);
    registry.withdraw("t1");
    assert_eq!(claim_ids(&registry, &worker, 10), ["t3"]);
    assert_eq!(info(&registry, &worker).active_tasks, 2);
}

#[test]
fn one_poll_claims_at_most_the_poll_limit() {
    let (_, registry) = registry_with(AgentOptions {
        poll_max_tasks: 3,
        ..AgentOptions::default()
    });
    let worker = agent(&registry, &["a"], 100);
    for i in 0..5 {
        registry.enqueue(task(&format!("t{i}"), "a", i));
    }
    assert_eq!(claim_ids(&registry, &worker, 100), ["t0", "t1", "t2"]);
    assert_eq!(claim_ids(&registry, &worker, 1), ["t3"]);
    assert!(registry.claim(&worker, 0).unwrap().is_empty());
}

// Long polls (real time, short waits).

#[tokio::test(flavor = "current_thread")]
async fn a_waiting_poll_is_woken_by_an_enqueue() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    let poller = registry.clone();
    let poll = tokio::spawn(async move { poller.poll(&worker, 10_000, 5).await });
    // On this one thread, yielding lets the poll run until it waits.
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert!(!poll.is_finished());

    // While it waits, the agent counts as seen, however long that is.
    clock.advance(120_000);
    assert_eq!(info(&registry, &worker).status, AgentStatus::Online);
    assert_eq!(info(&registry, &worker).last_seen_ms, clock_now(&clock));

    registry.enqueue(task("other", "b", 1)); // wakes it, but is not its to claim
    registry.enqueue(task("t", "a", 1));
    let claimed = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the enqueue woke the poll")
        .unwrap()
        .unwrap();
    assert_eq!(ids(claimed.iter().map(|claim| &claim.spec)), ["t"]);
    assert_eq!(claimed[0].agent, worker);
    assert_eq!(claimed[0].claimed_at_ms, clock_now(&clock));
    assert_eq!(registry.claimed_by("t"), Some(worker));
}

fn clock_now(clock: &SimClock) -> u64 {
    use retrace_engine::clock::Clock;
    clock.now_ms()
}

#[tokio::test(flavor = "current_thread")]
async fn a_waiting_poll_at_capacity_is_woken_by_a_free_slot() {
    let (_, registry) = registry();
    let worker = agent(&registry, &["a"], 1);
    registry.enqueue(task("t1", "a", 1));
    registry.enqueue(task("t2", "a", 2));
    assert_eq!(claim_ids(&registry, &worker, 1), ["t1"]);
    let poller = registry.clone();
    let poll = tokio::spawn(async move { poller.poll(&worker, 10_000, 5).await });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    registry.settle("t1", Outcome::Succeeded).unwrap();
    let claimed = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the freed slot woke the poll")
        .unwrap()
        .unwrap();
    assert_eq!(ids(claimed.iter().map(|claim| &claim.spec)), ["t2"]);
}

#[tokio::test]
async fn a_poll_with_nothing_to_claim_returns_empty() {
    let (_, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(task("t", "b", 1));
    assert!(registry.poll(&worker, 20, 10).await.unwrap().is_empty());
    assert_eq!(registry.outstanding(), 1);
}

#[tokio::test]
async fn a_poll_waits_no_longer_than_the_options_allow() {
    let (_, registry) = registry_with(AgentOptions {
        poll_wait_max_ms: 20,
        ..AgentOptions::default()
    });
    let worker = agent(&registry, &["a"], 10);
    let polled = tokio::time::timeout(
        Duration::from_secs(30),
        registry.poll(&worker, 3_600_000, 1),
    )
    .await
    .expect("the wait was capped");
    assert!(polled.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_poll_loses_nothing() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);

    // Cancelled mid-wait by a timeout around it, and by aborting its task.
    let cancelled =
        tokio::time::timeout(Duration::from_millis(20), registry.poll(&worker, 60_000, 5)).await;
    assert!(cancelled.is_err());
    let poller = registry.clone();
    let aborted = tokio::spawn(async move { poller.poll(&worker, 60_000, 5).await });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    aborted.abort();
    assert!(aborted.await.unwrap_err().is_cancelled());

    registry.enqueue(task("t", "a", 1));
    assert_eq!(registry.queue_sizes()["a"], 1);
    assert_eq!(registry.claimed_by("t"), None);
    assert_eq!(claim_ids(&registry, &worker, 5), ["t"]);

    // And the dropped polls no longer keep the agent looking alive.
    clock.advance(30_001);
    assert_eq!(info(&registry, &worker).status, AgentStatus::Offline);
}

#[tokio::test(flavor = "current_thread")]
async fn unregistering_ends_the_agents_waiting_poll() {
    let (_, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    let poller = registry.clone();
    let poll = tokio::spawn(async move { poller.poll(&worker, 10_000, 5).await });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    registry.unregister(&worker).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the unregister woke the poll")
        .unwrap();
    assert_eq!(ended, Err(AgentError::UnknownAgent(worker)));
}

// Leases, heartbeats and deadlines.

#[test]
fn a_lease_runs_out_as_start_to_close() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(task("t", "a", START_MS));
    assert_eq!(registry.next_deadline_ms(), None);
    let claimed = registry.claim(&worker, 1).unwrap();
    assert_eq!(claimed[0].lease_deadline_ms, START_MS + 10_000);
    assert_eq!(registry.next_deadline_ms(), Some(START_MS + 10_000));

    clock.advance(9_999);
    assert!(registry.expired().is_empty());
    clock.advance(1);
    let expired = registry.expired();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].task, task("t", "a", START_MS));
    assert_eq!(expired[0].agent, Some(worker));
    assert_eq!(expired[0].kind, TimeoutKind::StartToClose);

    assert_eq!(registry.outstanding(), 0);
    assert_eq!(registry.claimed_by("t"), None);
    assert_eq!(registry.next_deadline_ms(), None);
    let stats = info(&registry, &worker);
    assert_eq!(
        (stats.active_tasks, stats.task_count, stats.success_rate),
        (0, 1, 0.0)
    );
    assert!(registry.expired().is_empty(), "expired once only");
}

#[test]
fn a_task_heartbeat_extends_the_lease() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(TaskSpec {
        lease_ms: 1_000,
        ..task("t", "a", START_MS)
    });
    registry.claim(&worker, 1).unwrap();
    clock.advance(600);
    let extended = registry.task_heartbeat("t", Some(&worker)).unwrap();
    assert_eq!(extended.lease_deadline_ms, START_MS + 1_600);
    assert_eq!(extended.claimed_at_ms, START_MS, "still the same claim");
    assert_eq!(registry.next_deadline_ms(), Some(START_MS + 1_600));
    clock.advance(600);
    assert!(registry.expired().is_empty());
    // The runtime may extend a claim without naming the agent.
    let extended = registry.task_heartbeat("t", None).unwrap();
    assert_eq!(extended.lease_deadline_ms, START_MS + 2_200);
    clock.advance(1_000);
    assert_eq!(registry.expired()[0].kind, TimeoutKind::StartToClose);
}

#[test]
fn a_missed_heartbeat_times_out_as_heartbeat() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(TaskSpec {
        heartbeat_ms: Some(1_000),
        ..task("t", "a", START_MS)
    });
    let claimed = registry.claim(&worker, 1).unwrap();
    assert_eq!(claimed[0].lease_deadline_ms, START_MS + 1_000);
    clock.advance(800);
    let extended = registry.task_heartbeat("t", Some(&worker)).unwrap();
    assert_eq!(extended.lease_deadline_ms, START_MS + 1_800);
    clock.advance(999);
    assert!(registry.expired().is_empty());
    clock.advance(1);
    let expired = registry.expired();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].kind, TimeoutKind::Heartbeat);
    assert_eq!(expired[0].agent, Some(worker));
}

#[test]
fn a_heartbeat_interval_no_shorter_than_the_lease_leaves_start_to_close() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(TaskSpec {
        heartbeat_ms: Some(10_000),
        ..task("t", "a", START_MS)
    });
    registry.claim(&worker, 1).unwrap();
    clock.advance(10_000);
    assert_eq!(registry.expired()[0].kind, TimeoutKind::StartToClose);
}

#[test]
fn an_unclaimed_task_times_out_as_schedule_to_start() {
    let (clock, registry) = registry();
    registry.enqueue(TaskSpec {
        schedule_to_start_ms: Some(500),
        ..task("late", "a", START_MS - 100)
    });
    registry.enqueue(TaskSpec {
        schedule_to_start_ms: Some(500),
        ..task("taken", "b", START_MS)
    });
    assert_eq!(registry.next_deadline_ms(), Some(START_MS + 400));
    let worker = agent(&registry, &["b"], 10);
    let claimed = registry.claim(&worker, 1).unwrap();
    assert_eq!(claimed[0].spec.id, "taken");
    assert_eq!(registry.next_deadline_ms(), Some(START_MS + 400));

    clock.advance(399);
    assert!(registry.expired().is_empty());
    clock.advance(1);
    let expired = registry.expired();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].task.id, "late");
    assert_eq!(expired[0].agent, None);
    assert_eq!(expired[0].kind, TimeoutKind::ScheduleToStart);
    assert_eq!(
        registry.next_deadline_ms(),
        Some(START_MS + 10_000),
        "the claim's lease"
    );
    assert_eq!(registry.queue_sizes()["b"], 0);
    assert_eq!(info(&registry, &worker).task_count, 0, "no agent is blamed");
}

#[test]
fn next_deadline_is_the_earliest_of_all() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(TaskSpec {
        lease_ms: 3_000,
        ..task("lease", "a", 0)
    });
    registry.claim(&worker, 1).unwrap();
    registry.enqueue(TaskSpec {
        schedule_to_start_ms: Some(2_000),
        ..task("start", "b", START_MS)
    });
    registry.enqueue(task("none", "b", START_MS));
    assert_eq!(registry.next_deadline_ms(), Some(START_MS + 2_000));
    clock.set(START_MS + 5_000);
    let expired = registry.expired();
    let kinds: Vec<(String, TimeoutKind)> = expired
        .iter()
        .map(|e| (e.task.id.clone(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("start".to_owned(), TimeoutKind::ScheduleToStart),
            ("lease".to_owned(), TimeoutKind::StartToClose)
        ],
        "earliest deadline first"
    );
    assert_eq!(registry.next_deadline_ms(), None);
    assert_eq!(registry.outstanding(), 1);
}

// Settling, withdrawing, refusals.

#[test]
fn settling_reports_the_holder_and_the_time_held() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(task("claimed", "a", 1));
    registry.enqueue(task("queued", "b", 1));
    registry.claim(&worker, 1).unwrap();
    clock.advance(250);
    assert_eq!(
        registry.settle("claimed", Outcome::Succeeded),
        Ok(Settled {
            agent: Some(worker),
            duration_ms: Some(250)
        })
    );
    assert_eq!(
        registry.settle("queued", Outcome::Failed),
        Ok(Settled {
            agent: None,
            duration_ms: None
        })
    );
    assert_eq!(registry.outstanding(), 0);
    assert_eq!(registry.next_deadline_ms(), None);
}

#[test]
fn settling_what_is_not_outstanding_is_refused_and_changes_nothing() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 10);
    registry.enqueue(TaskSpec {
        lease_ms: 100,
        ..task("expires", "a", 1)
    });
    registry.enqueue(task("withdrawn", "a", 2));
    registry.enqueue(task("kept", "a", 3));
    registry.claim(&worker, 2).unwrap();
    assert!(registry.withdraw("withdrawn"));
    clock.advance(100);
    assert_eq!(registry.expired().len(), 1);

    let before = snapshot(&registry);
    for id in ["never", "withdrawn", "expires"] {
        assert_eq!(
            registry.settle(id, Outcome::Succeeded),
            Err(AgentError::NotOutstanding(id.to_owned()))
        );
        assert_eq!(
            registry.task_heartbeat(id, Some(&worker)).map(|_| ()),
            Err(AgentError::NotOutstanding(id.to_owned()))
        );
        assert!(!registry.withdraw(id));
    }
    assert_eq!(snapshot(&registry), before);

    registry.settle("kept", Outcome::Succeeded).unwrap();
    assert_eq!(
        registry.settle("kept", Outcome::Succeeded),
        Err(AgentError::NotOutstanding("kept".to_owned())),
        "a duplicate result is refused"
    );
}

#[test]
fn a_heartbeat_for_someone_elses_task_is_not_yours() {
    let (_, registry) = registry();
    let holder = agent(&registry, &["a"], 10);
    let other = agent(&registry, &["a"], 10);
    registry.enqueue(task("t", "a", 1));
    registry.enqueue(task("queued", "b", 1));
    registry.claim(&holder, 1).unwrap();
    let before = snapshot(&registry);
    assert_eq!(
        registry.task_heartbeat("t", Some(&other)),
        Err(AgentError::NotYours {
            task: "t".to_owned(),
            agent: other
        })
    );
    assert_eq!(
        registry.task_heartbeat("queued", Some(&holder)).map(|_| ()),
        Err(AgentError::NotOutstanding("queued".to_owned())),
        "a queued task has no claim to extend"
    );
    assert_eq!(snapshot(&registry), before);
    assert_eq!(registry.claimed_by("t"), Some(holder));
}

#[test]
fn withdrawing_frees_the_slot_without_touching_statistics() {
    let (_, registry) = registry();
    let worker = agent(&registry, &["a"], 1);
    registry.enqueue(task("t1", "a", 1));
    registry.enqueue(task("t2", "a", 2));
    registry.claim(&worker, 1).unwrap();
    assert!(registry.withdraw("t1"));
    assert!(registry.withdraw("t2"));
    assert!(!registry.withdraw("t2"));
    let stats = info(&registry, &worker);
    assert_eq!((stats.active_tasks, stats.task_count), (0, 0));
    assert_eq!(registry.outstanding(), 0);
}

#[test]
fn unregistering_puts_its_tasks_back_at_the_front() {
    let (clock, registry) = registry();
    let leaving = agent(&registry, &["a", "b"], 10);
    registry.enqueue(TaskSpec {
        attempt: 3,
        schedule_to_start_ms: Some(1_000),
        ..task("a20", "a", 20)
    });
    registry.enqueue(task("b10", "b", 10));
    assert_eq!(claim_ids(&registry, &leaving, 10), ["b10", "a20"]);
    registry.enqueue(task("a5", "a", 5)); // older, but fresh
    registry.enqueue(task("b1", "b", 1));

    clock.advance(5_000);
    assert_eq!(registry.unregister(&leaving).unwrap(), ["b10", "a20"]);
    assert_eq!(registry.get(&leaving), None);
    assert_eq!(registry.outstanding(), 4);
    // Its schedule-to-start window starts again: it did start in time once.
    assert_eq!(registry.next_deadline_ms(), Some(START_MS + 5_000 + 1_000));

    let stays = agent(&registry, &["a", "b"], 10);
    let claimed = registry.claim(&stays, 10).unwrap();
    assert_eq!(
        ids(claimed.iter().map(|claim| &claim.spec)),
        ["b10", "a20", "b1", "a5"]
    );
    assert_eq!(claimed[1].spec.attempt, 3, "same spec, same attempt");
}

// Statistics and status.

#[test]
fn statistics_count_settled_and_timed_out_tasks() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 4);
    let fresh = info(&registry, &worker);
    assert_eq!(
        (
            fresh.task_count,
            fresh.success_rate,
            fresh.average_task_ms,
            fresh.load_factor
        ),
        (0, 1.0, 0.0, 0.0)
    );
    registry.enqueue(task("ok", "a", 1));
    registry.enqueue(task("bad", "a", 2));
    registry.enqueue(TaskSpec {
        lease_ms: 1_000,
        ..task("slow", "a", 3)
    });
    registry.claim(&worker, 3).unwrap();
    assert_eq!(info(&registry, &worker).load_factor, 0.75);
    assert_eq!(info(&registry, &worker).active_tasks, 3);

    clock.advance(100);
    registry.settle("ok", Outcome::Succeeded).unwrap();
    clock.advance(100);
    registry.settle("bad", Outcome::Failed).unwrap();
    clock.advance(800);
    assert_eq!(registry.expired().len(), 1);

    let stats = info(&registry, &worker);
    assert_eq!(stats.task_count, 3);
    assert_eq!(stats.active_tasks, 0);
    assert_eq!(stats.load_factor, 0.0);
    assert!((stats.success_rate - 1.0 / 3.0).abs() < 1e-9);
    assert!((stats.average_task_ms - (100.0 + 200.0 + 1_000.0) / 3.0).abs() < 1e-9);
}

#[test]
fn status_moves_between_online_busy_and_offline() {
    let (clock, registry) = registry();
    let worker = agent(&registry, &["a"], 1);
    let status = || info(&registry, &worker).status;
    assert_eq!(status(), AgentStatus::Online);

    registry.enqueue(task("t", "a", 1));
    registry.claim(&worker, 1).unwrap();
    assert_eq!(status(), AgentStatus::Busy);
    assert_eq!(info(&registry, &worker).load_factor, 1.0);

    clock.advance(30_000);
    assert_eq!(
        status(),
        AgentStatus::Busy,
        "offline only after more than 30 s"
    );
    clock.advance(1);
    assert_eq!(status(), AgentStatus::Offline);
    registry.heartbeat(&worker).unwrap();
    assert_eq!(status(), AgentStatus::Busy);
    assert_eq!(info(&registry, &worker).last_seen_ms, START_MS + 30_001);

    clock.advance(20_000);
    registry.task_heartbeat("t", Some(&worker)).unwrap();
    clock.advance(20_000);
    assert_eq!(
        status(),
        AgentStatus::Busy,
        "a task heartbeat counts as seen"
    );

    registry.settle("t", Outcome::Succeeded).unwrap();
    assert_eq!(status(), AgentStatus::Online);
    clock.advance(60_000);
    assert_eq!(status(), AgentStatus::Offline);
    registry
        .poll(&worker, 0, 1)
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(status(), AgentStatus::Online, "a poll counts as seen");
}

#[test]
fn idle_agents_can_be_forgotten() {
    let (clock, registry) = registry();
    let idle = agent(&registry, &["a"], 10);
    registry.enqueue(task("t", "a", 1));
    registry.claim(&idle, 1).unwrap();
    clock.advance(50_000);
    let busy = agent(&registry, &["a"], 10);
    clock.advance(10_000);
    assert_eq!(registry.forget_idle(60_000), [(idle, vec!["t".to_owned()])]);
    assert_eq!(registry.list().len(), 1);
    assert_eq!(claim_ids(&registry, &busy, 1), ["t"]);
}

// Routing by health (invariants 34 and 35). Long polls here are futures
// polled by hand, so which poll looks when is exact.

/// A long poll of `agent` for up to `max` tasks, not yet run.
fn long_poll(registry: &AgentRegistry, agent: AgentId, max: usize) -> PollFuture {
    let registry = registry.clone();
    Box::pin(async move { registry.poll(&agent, 60_000, max).await })
}

/// Runs the poll once: the ids it answered with, or `None` while it waits.
fn look(poll: &mut PollFuture) -> Option<Vec<String>> {
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match poll.as_mut().poll(&mut cx) {
        Poll::Ready(claimed) => Some(ids(claimed.unwrap().iter().map(|c| &c.spec))),
        Poll::Pending => None,
    }
}

/// An agent that has just failed `n` tasks of `capability` (all it held).
fn failing(
    registry: &AgentRegistry,
    name: &str,
    capabilities: &[&str],
    max: u32,
    n: usize,
) -> AgentId {
    let agent = registry
        .register(name, &caps(capabilities), Some(max))
        .unwrap();
    for i in 0..n {
        let id = format!("{name}-failed-{i}");
        registry.enqueue(task(&id, capabilities[0], 0));
        assert_eq!(claim_ids(registry, &agent, 1), std::slice::from_ref(&id));
        registry.settle(&id, Outcome::Failed).unwrap();
    }
    agent
}

#[test]
fn a_failing_agent_holds_fewer_tasks_at_once_and_recovers() {
    // Invariant 34: at most max(1, ceil(maxConcurrency × (1 - recent
    // failures / 20))) at once.
    let (clock, registry) = registry();
    let worker = failing(&registry, "w", &["a"], 4, 20);
    let health = info(&registry, &worker).health;
    assert_eq!(
        (health.recent_tasks, health.recent_failures, health.slots),
        (20, 20, 1)
    );
    assert_eq!(health.score, 0.0);
    for i in 0..60 {
        registry.enqueue(task(&format!("t{i}"), "a", i));
    }
    // Served one at a time, then more as successes push the failures out
    // of the window of 20: a slot back for every five.
    let mut successes = 0usize;
    let mut served = Vec::new();
    while successes < 24 {
        let before = info(&registry, &worker);
        let claimed = claim_ids(&registry, &worker, 10);
        let failures = 20usize.saturating_sub(successes);
        let slots = (4 * (20 - failures)).div_ceil(20).max(1);
        assert_eq!(before.health.recent_failures as usize, failures);
        assert_eq!(
            before.health.slots as usize, slots,
            "after {successes} successes"
        );
        assert_eq!(claimed.len(), slots, "after {successes} successes");
        assert_eq!(info(&registry, &worker).status, AgentStatus::Busy);
        served.push(claimed.len());
        clock.advance(10);
        for id in claimed {
            registry.settle(&id, Outcome::Succeeded).unwrap();
            successes += 1;
        }
    }
    assert_eq!(served[..6], [1, 1, 1, 1, 1, 1], "{served:?}");
    assert_eq!(*served.last().unwrap(), 4, "recovered: {served:?}");
    let health = info(&registry, &worker).health;
    assert_eq!((health.recent_failures, health.slots), (0, 4));
    // The lifetime figures are untouched by the window.
    assert_eq!(info(&registry, &worker).task_count, 20 + successes as u64);

    // One failure of a fresh agent barely counts.
    let fresh = failing(&registry, "fresh", &["b"], 10, 1);
    assert_eq!(info(&registry, &fresh).health.slots, 10);
}

#[tokio::test(flavor = "current_thread")]
async fn a_healthy_waiting_agent_is_preferred_over_a_failing_one() {
    let (_, registry) = registry();
    let flaky = registry
        .register_as(
            "flaky",
            &caps(&["a"]),
            Some(4),
            None,
            &AgentTraits {
                version: Some("2.0.0".into()),
                heartbeat_timeout_ms: None,
            },
        )
        .unwrap();
    for i in 0..8 {
        let id = format!("f{i}");
        registry.enqueue(task(&id, "a", 0));
        claim_ids(&registry, &flaky, 1);
        registry.settle(&id, Outcome::Failed).unwrap();
    }
    let healthy = agent(&registry, &["a"], 2);
    // 8 of its last 20 failed: 12/20 of its slots (rounded up) and score.
    let health = info(&registry, &flaky).health;
    assert_eq!((health.slots, health.score), (3, 0.6));
    assert_eq!(info(&registry, &healthy).health.score, 1.0);

    // The healthy agent waits; the failing one asks first and is passed
    // over: the task waits for the healthy one's poll.
    let mut waiting = long_poll(&registry, healthy, 1);
    assert_eq!(look(&mut waiting), None);
    registry.enqueue(task("t1", "a", 1));
    assert_eq!(claim_ids(&registry, &flaky, 5), Vec::<String>::new());
    assert_eq!(look(&mut waiting).unwrap(), ["t1"]);
    registry.settle("t1", Outcome::Succeeded).unwrap();

    // More than the better agents' waiting polls can take: the failing
    // one takes the excess, in order.
    let mut waiting = long_poll(&registry, healthy, 1);
    assert_eq!(look(&mut waiting), None);
    registry.enqueue(task("t2", "a", 2));
    registry.enqueue(task("t3", "a", 3));
    assert_eq!(claim_ids(&registry, &flaky, 5), ["t2"]);
    assert_eq!(look(&mut waiting).unwrap(), ["t3"]);
    registry.settle("t2", Outcome::Failed).unwrap();

    // A task the better agent may not take (a version range) is not left
    // for it.
    let mut waiting = long_poll(&registry, healthy, 1);
    assert_eq!(look(&mut waiting), None);
    registry.enqueue(TaskSpec {
        agent_version: Some(">=2".into()),
        ..task("v", "a", 4)
    });
    assert_eq!(claim_ids(&registry, &flaky, 5), ["v"]);
    assert_eq!(look(&mut waiting), None);
    registry.settle("v", Outcome::Succeeded).unwrap();

    // Nobody better waiting: the failing agent is served.
    drop(waiting);
    registry.enqueue(task("t4", "a", 5));
    assert_eq!(claim_ids(&registry, &flaky, 5), ["t4"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_passed_over_is_never_stranded() {
    // Invariant 35: the better agent stops waiting without taking the
    // task, and the passed-over poll is woken and takes it.
    let (_, registry) = registry();
    let flaky = failing(&registry, "flaky", &["a"], 2, 8);
    let healthy = agent(&registry, &["a"], 2);
    let mut theirs = long_poll(&registry, healthy, 1);
    let mut mine = long_poll(&registry, flaky, 1);
    assert_eq!(look(&mut theirs), None);
    assert_eq!(look(&mut mine), None);
    registry.enqueue(task("t", "a", 1));
    assert_eq!(look(&mut mine), None, "left for the healthy agent");
    drop(theirs);
    assert_eq!(look(&mut mine).unwrap(), ["t"]);

    // The better agent fills its slots with a claim of its own while it is
    // counted on: the passed-over poll looks again and takes the task.
    registry.settle("t", Outcome::Failed).unwrap();
    let healthy = agent(&registry, &["a", "b"], 2);
    let mut theirs = long_poll(&registry, healthy, 1);
    let mut mine = long_poll(&registry, flaky, 1);
    assert_eq!(look(&mut theirs), None);
    assert_eq!(look(&mut mine), None);
    registry.enqueue(task("w1", "b", 0));
    registry.enqueue(task("w2", "b", 0));
    registry.enqueue(task("u", "a", 5));
    assert_eq!(look(&mut mine), None, "left for the healthy agent");
    assert_eq!(claim_ids(&registry, &healthy, 2), ["w1", "w2"]);
    assert_eq!(look(&mut mine).unwrap(), ["u"]);
    assert_eq!(look(&mut theirs), None, "full");
}

// Wire shapes.

#[test]
fn agent_info_and_ids_serialize_as_documented() {
    let (_, registry) = registry();
    let worker = registry.register("w", &caps(&["a"]), Some(2)).unwrap();
    let value = serde_json::to_value(info(&registry, &worker)).unwrap();
    assert_eq!(
        value,
        json!({
            "id": worker.to_string(),
            "name": "w",
            "capabilities": ["a"],
            "maxConcurrency": 2,
            "status": "online",
            "activeTasks": 0,
            "taskCount": 0,
            "successRate": 1.0,
            "averageTaskMs": 0.0,
            "loadFactor": 0.0,
            "lastSeenMs": START_MS,
            "registeredAtMs": START_MS,
            "heartbeatTimeoutMs": 30_000,
            "health": {
                "recentTasks": 0,
                "recentFailures": 0,
                "recentAverageTaskMs": 0.0,
                "slots": 2,
                "score": 1.0,
            },
        })
    );
    assert_eq!(worker.to_string().parse::<AgentId>().unwrap(), worker);
    assert!("not-a-uuid".parse::<AgentId>().is_err());
    assert_eq!(
        serde_json::to_value(AgentStatus::Busy).unwrap(),
        json!("busy")
    );
    let names: Vec<String> = [
        TimeoutKind::ScheduleToStart,
        TimeoutKind::StartToClose,
        TimeoutKind::Heartbeat,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(names, ["schedule_to_start", "start_to_close", "heartbeat"]);
}

// The model-based property test.
//
// Invariant 13 (a task is never held by two agents, never lost, and no
// agent exceeds its concurrency), with routing by health (invariant 34: an
// agent never holds more than its effective slots when it claims, and a
// claim passes a task over exactly as the deferral rule says) and no task
// stranded by deferral (invariant 35: once every woken poll has looked,
// no queued task is left while an agent that could take it waits in a
// poll). The model keeps its own figures (recent results, effective
// slots, exact scores), a gate of blocked (agent, capability) pairs, and
// long polls as futures it polls by hand: a poll runs a claim only when the
// registry woke it, so a missing wake-up shows as a stranded task.

/// What the model knows of one task.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    Queued {
        start_by_ms: Option<u64>,
    },
    Claimed {
        slot: usize,
        deadline_ms: u64,
        kind: TimeoutKind,
        at_ms: u64,
    },
    Settled,
    Expired,
    Withdrawn,
}

impl Fate {
    fn outstanding(&self) -> bool {
        matches!(self, Fate::Queued { .. } | Fate::Claimed { .. })
    }

    fn deadline_ms(&self) -> Option<u64> {
        match self {
            Fate::Queued { start_by_ms } => *start_by_ms,
            Fate::Claimed { deadline_ms, .. } => Some(*deadline_ms),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        capability: usize,
        lease_ms: u64,
        start_ms: Option<u64>,
        heartbeat_ms: Option<u64>,
        priority: u8,
        versioned: bool,
    },
    EnqueueAgain {
        task: usize,
    },
    /// A claim that does not wait.
    Poll {
        slot: usize,
        max: usize,
    },
    /// A long poll, left waiting if it claims nothing.
    Wait {
        slot: usize,
        max: usize,
    },
    /// A waiting long poll given up (its future dropped).
    GiveUp {
        poll: usize,
    },
    /// One waiting long poll gets to run (if a wake-up reached it, it
    /// claims once), the others not yet.
    Look {
        poll: usize,
    },
    /// Every waiting long poll runs until none answers; then no task may
    /// be stranded.
    Quiesce {
        turn: usize,
    },
    TaskHeartbeat {
        slot: usize,
        task: usize,
    },
    /// A result for a task: with `held`, the `task`-th of those claimed
    /// (if any), else the `task`-th ever queued (if any). It is a success
    /// when `roll` is not 0, except that the agent of slot 2 is flaky: its
    /// tasks succeed only when `roll` is 0.
    Settle {
        task: usize,
        held: bool,
        roll: u8,
    },
    Withdraw {
        task: usize,
    },
    Advance {
        ms: u64,
    },
    Unregister {
        slot: usize,
    },
    /// The gate keeps the slot's agent from a capability, or lets it again
    /// (and then wakes the polls, as the runtime does).
    Block {
        slot: usize,
        capability: usize,
        blocked: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly capability `a`, which every agent offers.
    let capability = prop_oneof![3 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)];
    prop_oneof![
        4 => (capability, 1..6_000u64, proptest::option::of(0..5_000u64), proptest::option::of(1..4_000u64), 0..=9u8, proptest::bool::weighted(0.2))
            .prop_map(|(capability, lease_ms, start_ms, heartbeat_ms, priority, versioned)| Op::Enqueue { capability, lease_ms, start_ms, heartbeat_ms, priority, versioned }),
        1 => (0..64usize).prop_map(|task| Op::EnqueueAgain { task }),
        2 => (0..3usize, 0..4usize).prop_map(|(slot, max)| Op::Poll { slot, max }),
        4 => (0..3usize, 1..4usize).prop_map(|(slot, max)| Op::Wait { slot, max }),
        2 => (0..8usize).prop_map(|poll| Op::GiveUp { poll }),
        3 => (0..8usize).prop_map(|poll| Op::Look { poll }),
        3 => (0..8usize).prop_map(|turn| Op::Quiesce { turn }),
        1 => (0..3usize, 0..64usize).prop_map(|(slot, task)| Op::TaskHeartbeat { slot, task }),
        5 => (0..64usize, proptest::bool::weighted(0.8), 0..4u8).prop_map(|(task, held, roll)| Op::Settle { task, held, roll }),
        1 => (0..64usize).prop_map(|task| Op::Withdraw { task }),
        3 => (0..4_000u64).prop_map(|ms| Op::Advance { ms }),
        1 => (0..3usize).prop_map(|slot| Op::Unregister { slot }),
        1 => (0..3usize, 0..3usize, any::<bool>()).prop_map(|(slot, capability, blocked)| Op::Block { slot, capability, blocked }),
    ]
}

const CAPABILITIES: [&str; 3] = ["a", "b", "c"];
/// Each agent slot: its capabilities, its slots and its version.
const SLOTS: [(&[&str], u32, Option<&str>); 3] = [
    (&["a"], 1, Some("1.0.0")),
    (&["a", "b"], 3, None),
    (&["a", "b", "c"], 4, Some("2.0.0")),
];
/// What a versioned task requires.
const REQUIRES: &str = ">=1.0.0";
/// The poll limit of the options the model uses.
const POLL_MAX_TASKS: usize = 100;

fn slot_name(slot: usize) -> String {
    format!("w{slot}")
}

fn register_slot(registry: &AgentRegistry, slot: usize) -> AgentId {
    let (names, max, version) = SLOTS[slot];
    registry
        .register_as(
            &slot_name(slot),
            &caps(names),
            Some(max),
            None,
            &AgentTraits {
                version: version.map(str::to_owned),
                heartbeat_timeout_ms: None,
            },
        )
        .unwrap()
}

/// What the registry told the model's gate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum GateCall {
    Claiming {
        agent: String,
        capability: String,
        task: String,
    },
    Ended {
        agent: String,
        capability: String,
        task: String,
        outcome: Option<Outcome>,
    },
}

/// A gate of blocked (agent name, capability) pairs that records what it
/// is told.
#[derive(Debug, Default)]
struct TestGate {
    blocked: Mutex<BTreeSet<(String, String)>>,
    calls: Mutex<Vec<GateCall>>,
}

impl TestGate {
    fn is_blocked(&self, agent: &str, capability: &str) -> bool {
        self.blocked
            .lock()
            .unwrap()
            .contains(&(agent.to_owned(), capability.to_owned()))
    }

    fn take_calls(&self) -> Vec<GateCall> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl ClaimGate for TestGate {
    fn admits(&self, agent: &str, capability: &str, _now_ms: u64) -> bool {
        !self.is_blocked(agent, capability)
    }

    fn claiming(&self, agent: &str, capability: &str, task: &str, _now_ms: u64) -> bool {
        self.calls.lock().unwrap().push(GateCall::Claiming {
            agent: agent.to_owned(),
            capability: capability.to_owned(),
            task: task.to_owned(),
        });
        !self.is_blocked(agent, capability)
    }

    fn ended(
        &self,
        agent: &str,
        capability: &str,
        task: &str,
        outcome: Option<Outcome>,
        _now_ms: u64,
    ) {
        self.calls.lock().unwrap().push(GateCall::Ended {
            agent: agent.to_owned(),
            capability: capability.to_owned(),
            task: task.to_owned(),
            outcome,
        });
    }
}

type PollFuture = Pin<Box<dyn Future<Output = Result<Vec<ClaimedTask>, AgentError>> + Send>>;

/// A long poll the model started and that has not answered yet.
struct Waiting {
    slot: usize,
    max: usize,
    future: PollFuture,
}

/// An exact score `num / den`, computed the model's own way.
#[derive(Debug, Clone, Copy)]
struct ModelScore {
    num: u128,
    den: u128,
}

impl ModelScore {
    /// More than one and a half times `other`.
    fn clearly_beats(self, other: ModelScore) -> bool {
        2 * self.num * other.den > 3 * other.num * self.den
    }
}

struct Model {
    clock: SimClock,
    registry: AgentRegistry,
    gate: Arc<TestGate>,
    agents: Vec<AgentId>,
    /// Each slot's last `HEALTH_WINDOW_TASKS` ended tasks: (succeeded, held ms).
    recent: Vec<VecDeque<(bool, u64)>>,
    tasks: Vec<(TaskSpec, Fate)>,
    waiting: Vec<Waiting>,
    /// Gate calls the model expects, in any order.
    expected_calls: Vec<GateCall>,
}

impl Model {
    fn new() -> Self {
        let clock = SimClock::new(0);
        let registry = AgentRegistry::new(
            Arc::new(clock.clone()),
            AgentOptions {
                poll_max_tasks: POLL_MAX_TASKS,
                ..AgentOptions::default()
            },
        );
        let gate = Arc::new(TestGate::default());
        registry.set_gate(Some(gate.clone()));
        let agents = (0..SLOTS.len())
            .map(|slot| register_slot(&registry, slot))
            .collect();
        Model {
            clock,
            registry,
            gate,
            agents,
            recent: vec![VecDeque::new(); SLOTS.len()],
            tasks: Vec::new(),
            waiting: Vec::new(),
            expected_calls: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        clock_now(&self.clock)
    }

    fn claimed_by_slot(&self, slot: usize) -> usize {
        self.tasks
            .iter()
            .filter(|(_, fate)| matches!(fate, Fate::Claimed { slot: s, .. } if *s == slot))
            .count()
    }

    fn queued_of(&self, capability: &str) -> usize {
        self.tasks
            .iter()
            .filter(|(spec, fate)| {
                matches!(fate, Fate::Queued { .. }) && spec.capability == capability
            })
            .count()
    }

    /// Failures among the slot's recent tasks.
    fn failures(&self, slot: usize) -> usize {
        self.recent[slot].iter().filter(|(ok, _)| !*ok).count()
    }

    /// `max(1, ceil(max × (20 - failures) / 20))`.
    fn slots(&self, slot: usize) -> usize {
        let max = SLOTS[slot].1 as usize;
        let good = HEALTH_WINDOW_TASKS - self.failures(slot);
        (max * good).div_ceil(HEALTH_WINDOW_TASKS).max(1)
    }

    fn free(&self, slot: usize) -> usize {
        self.slots(slot).saturating_sub(self.claimed_by_slot(slot))
    }

    /// (20 - failures) / 20 × 1 / (1 + mean ms / 1000) × free / slots, as
    /// a fraction.
    fn score(&self, slot: usize) -> ModelScore {
        let slots = self.slots(slot) as u128;
        let free = self.free(slot) as u128;
        let recent = &self.recent[slot];
        if recent.is_empty() {
            return ModelScore {
                num: free,
                den: slots,
            };
        }
        let window = HEALTH_WINDOW_TASKS as u128;
        let good = window - self.failures(slot) as u128;
        let n = recent.len() as u128;
        let held: u128 = recent.iter().map(|(_, ms)| u128::from(*ms)).sum();
        ModelScore {
            num: good * 1000 * n * free,
            den: window * (1000 * n + held) * slots,
        }
    }

    fn record(&mut self, slot: usize, succeeded: bool, held_ms: u64) {
        let recent = &mut self.recent[slot];
        if recent.len() == HEALTH_WINDOW_TASKS {
            recent.pop_front();
        }
        recent.push_back((succeeded, held_ms));
    }

    fn polls_waiting(&self, slot: usize) -> usize {
        self.waiting.iter().filter(|w| w.slot == slot).count()
    }

    /// What the slot's waiting polls would take together.
    fn waiting_max(&self, slot: usize) -> usize {
        self.waiting
            .iter()
            .filter(|w| w.slot == slot)
            .map(|w| w.max.min(POLL_MAX_TASKS))
            .sum()
    }

    /// Whether the slot's agent could take `spec`, slots aside.
    fn may_take(&self, slot: usize, spec: &TaskSpec) -> bool {
        let (names, _, version) = SLOTS[slot];
        names.contains(&spec.capability.as_str())
            && (spec.agent_version.is_none() || version.is_some())
            && !self.gate.is_blocked(&slot_name(slot), &spec.capability)
    }

    /// The deferral rule: whether a claim by `slot` passes `spec` over now.
    fn defers(&self, slot: usize, spec: &TaskSpec) -> bool {
        let mine = self.score(slot);
        let mut room = 0;
        let mut better = false;
        for other in 0..SLOTS.len() {
            if other == slot
                || self.polls_waiting(other) == 0
                || !self.may_take(other, spec)
                || self.free(other) == 0
                || !self.score(other).clearly_beats(mine)
            {
                continue;
            }
            better = true;
            room += self.free(other).min(self.waiting_max(other));
        }
        better && self.queued_of(&spec.capability) <= room
    }

    /// Checks one claim of `slot` (up to `max`) exactly and applies it.
    fn claimed(
        &mut self,
        slot: usize,
        max: usize,
        claimed: &[ClaimedTask],
    ) -> Result<(), TestCaseError> {
        let now = self.now();
        let agent = self.agents[slot];
        let limit = max.min(POLL_MAX_TASKS).min(self.free(slot));
        prop_assert!(
            claimed.len() <= limit,
            "{} claimed, over its effective slots or the limit {}",
            claimed.len(),
            limit
        );
        for claim in claimed {
            let index = self.index(&claim.spec.id);
            let spec = self.tasks[index].0.clone();
            prop_assert!(
                matches!(self.tasks[index].1, Fate::Queued { .. }),
                "{} claimed while {:?}",
                spec.id,
                self.tasks[index].1
            );
            prop_assert!(
                self.may_take(slot, &spec),
                "{} is not w{slot}'s to take",
                spec.id
            );
            prop_assert!(
                !self.defers(slot, &spec),
                "{} should have been left for a healthier waiting agent",
                spec.id
            );
            prop_assert_eq!(&claim.spec, &spec);
            prop_assert_eq!(claim.agent, agent);
            let (deadline_ms, kind) = lease(&spec, now);
            prop_assert_eq!(claim.lease_deadline_ms, deadline_ms);
            self.tasks[index].1 = Fate::Claimed {
                slot,
                deadline_ms,
                kind,
                at_ms: now,
            };
            self.expected_calls.push(GateCall::Claiming {
                agent: slot_name(slot),
                capability: spec.capability.clone(),
                task: spec.id.clone(),
            });
        }
        if claimed.len() < limit {
            for (spec, fate) in &self.tasks {
                if matches!(fate, Fate::Queued { .. }) && self.may_take(slot, spec) {
                    prop_assert!(
                        self.defers(slot, spec),
                        "{} was left behind though w{slot} could take it",
                        spec.id
                    );
                }
            }
        }
        Ok(())
    }

    /// Polls every waiting poll until none answers: what the polls a
    /// wake-up reached do. Starts at `turn`, so the order varies.
    fn settle_polls(&mut self, turn: usize) -> Result<(), TestCaseError> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        loop {
            let n = self.waiting.len();
            let mut answered = None;
            for k in 0..n {
                let i = (turn + k) % n;
                if let Poll::Ready(result) = self.waiting[i].future.as_mut().poll(&mut cx) {
                    answered = Some((i, result));
                    break;
                }
            }
            let Some((i, result)) = answered else {
                return Ok(());
            };
            let Waiting { slot, max, future } = self.waiting.remove(i);
            // Its claim happened while the others still waited, and it
            // still counted as waiting itself: check it before dropping it.
            match result {
                Ok(claimed) => {
                    prop_assert!(!claimed.is_empty(), "a waiting poll answered with nothing");
                    self.claimed(slot, max, &claimed)?;
                }
                Err(AgentError::UnknownAgent(_)) => {}
                Err(e) => prop_assert!(false, "a poll failed: {e}"),
            }
            drop(future);
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = self.now();
        match op.clone() {
            Op::Enqueue {
                capability,
                lease_ms,
                start_ms,
                heartbeat_ms,
                priority,
                versioned,
            } => {
                let spec = TaskSpec {
                    lease_ms,
                    schedule_to_start_ms: start_ms,
                    heartbeat_ms,
                    priority,
                    agent_version: versioned.then(|| REQUIRES.to_owned()),
                    ..task(
                        &format!("t{}", self.tasks.len()),
                        CAPABILITIES[capability],
                        now,
                    )
                };
                prop_assert!(self.registry.enqueue(spec.clone()));
                let start_by_ms = start_ms.map(|ms| now + ms);
                self.tasks.push((spec, Fate::Queued { start_by_ms }));
            }
            Op::EnqueueAgain { task } => {
                if let Some((spec, fate)) = self.tasks.get(task) {
                    // Only while outstanding: then it must be ignored.
                    if fate.outstanding() {
                        prop_assert!(!self.registry.enqueue(spec.clone()));
                    }
                }
            }
            Op::Poll { slot, max } => {
                let claimed = self
                    .registry
                    .poll(&self.agents[slot], 0, max)
                    .now_or_never()
                    .expect("no wait")
                    .unwrap();
                self.claimed(slot, max, &claimed)?;
            }
            Op::Wait { slot, max } => {
                let registry = self.registry.clone();
                let agent = self.agents[slot];
                let mut future: PollFuture =
                    Box::pin(async move { registry.poll(&agent, 60_000, max).await });
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                match future.as_mut().poll(&mut cx) {
                    Poll::Ready(result) => {
                        let claimed = result.unwrap();
                        prop_assert!(
                            !claimed.is_empty(),
                            "a long poll answered at once with nothing"
                        );
                        self.claimed(slot, max, &claimed)?;
                    }
                    Poll::Pending => {
                        // It claimed nothing: exactly as a poll that does
                        // not wait would have.
                        self.claimed(slot, max, &[])?;
                        self.waiting.push(Waiting { slot, max, future });
                    }
                }
            }
            Op::GiveUp { poll } => {
                if poll < self.waiting.len() {
                    drop(self.waiting.remove(poll));
                }
            }
            Op::Look { poll } => {
                if poll < self.waiting.len() {
                    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                    if let Poll::Ready(result) = self.waiting[poll].future.as_mut().poll(&mut cx) {
                        let Waiting { slot, max, .. } = self.waiting.remove(poll);
                        let claimed = result.unwrap();
                        prop_assert!(!claimed.is_empty(), "a waiting poll answered with nothing");
                        self.claimed(slot, max, &claimed)?;
                    }
                }
            }
            Op::Quiesce { turn } => {
                self.settle_polls(turn)?;
                self.check_not_stranded()?;
            }
            Op::TaskHeartbeat { slot, task } => {
                let Some((spec, fate)) = self.tasks.get_mut(task) else {
                    return Ok(());
                };
                let agent = self.agents[slot];
                let result = self.registry.task_heartbeat(&spec.id, Some(&agent));
                match fate {
                    Fate::Claimed {
                        slot: holder,
                        deadline_ms,
                        kind,
                        ..
                    } if *holder == slot => {
                        let claim = result.unwrap();
                        (*deadline_ms, *kind) = lease(spec, now);
                        prop_assert_eq!(claim.lease_deadline_ms, *deadline_ms);
                    }
                    Fate::Claimed { .. } => {
                        prop_assert_eq!(
                            result,
                            Err(AgentError::NotYours {
                                task: spec.id.clone(),
                                agent
                            })
                        );
                    }
                    _ => prop_assert_eq!(result, Err(AgentError::NotOutstanding(spec.id.clone()))),
                }
            }
            Op::Settle { task, held, roll } => {
                let candidates: Vec<usize> = (0..self.tasks.len())
                    .filter(|i| !held || matches!(self.tasks[*i].1, Fate::Claimed { .. }))
                    .collect();
                let Some(task) = candidates.get(task % candidates.len().max(1)).copied() else {
                    return Ok(());
                };
                let (spec, fate) = self.tasks[task].clone();
                let flaky = matches!(fate, Fate::Claimed { slot: 2, .. });
                let succeeded = (roll == 0) == flaky;
                let outcome = if succeeded {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                };
                let result = self.registry.settle(&spec.id, outcome);
                match fate {
                    Fate::Claimed { slot, at_ms, .. } => {
                        let settled = result.unwrap();
                        prop_assert_eq!(settled.agent, Some(self.agents[slot]));
                        prop_assert_eq!(settled.duration_ms, Some(now - at_ms));
                        self.record(slot, succeeded, now - at_ms);
                        self.expected_calls.push(GateCall::Ended {
                            agent: slot_name(slot),
                            capability: spec.capability.clone(),
                            task: spec.id.clone(),
                            outcome: Some(outcome),
                        });
                    }
                    Fate::Queued { .. } => prop_assert_eq!(result.unwrap().agent, None),
                    _ => prop_assert_eq!(result, Err(AgentError::NotOutstanding(spec.id.clone()))),
                }
                if fate.outstanding() {
                    self.tasks[task].1 = Fate::Settled;
                }
            }
            Op::Withdraw { task } => {
                let Some((spec, fate)) = self.tasks.get(task).cloned() else {
                    return Ok(());
                };
                prop_assert_eq!(self.registry.withdraw(&spec.id), fate.outstanding());
                if let Fate::Claimed { slot, .. } = fate {
                    self.expected_calls.push(GateCall::Ended {
                        agent: slot_name(slot),
                        capability: spec.capability.clone(),
                        task: spec.id.clone(),
                        outcome: None,
                    });
                }
                if fate.outstanding() {
                    self.tasks[task].1 = Fate::Withdrawn;
                }
            }
            Op::Advance { ms } => {
                self.clock.advance(ms);
                let now = self.now();
                let mut expected = BTreeSet::new();
                // Claims that timed out: (deadline, id, slot, held ms, spec).
                let mut ended = Vec::new();
                for (spec, fate) in &mut self.tasks {
                    if fate.deadline_ms().is_some_and(|at| at <= now) {
                        let (agent, kind) = match fate {
                            Fate::Claimed {
                                slot,
                                kind,
                                at_ms,
                                deadline_ms,
                            } => {
                                ended.push((
                                    *deadline_ms,
                                    spec.id.clone(),
                                    *slot,
                                    now - *at_ms,
                                    spec.clone(),
                                ));
                                (Some(self.agents[*slot]), *kind)
                            }
                            _ => (None, TimeoutKind::ScheduleToStart),
                        };
                        expected.insert((spec.id.clone(), agent, kind));
                        *fate = Fate::Expired;
                    }
                }
                let expired: Vec<_> = self.registry.expired();
                let order: Vec<String> = expired
                    .iter()
                    .filter(|e| e.agent.is_some())
                    .map(|e| e.task.id.clone())
                    .collect();
                let expired: BTreeSet<_> = expired
                    .into_iter()
                    .map(|e| (e.task.id, e.agent, e.kind))
                    .collect();
                prop_assert_eq!(expired, expected);
                // Earliest deadline first: the order the agents' windows
                // take the timeouts in.
                ended.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                let ids: Vec<String> = ended.iter().map(|e| e.1.clone()).collect();
                prop_assert_eq!(order, ids);
                for (_, _, slot, held, spec) in ended {
                    self.record(slot, false, held);
                    self.expected_calls.push(GateCall::Ended {
                        agent: slot_name(slot),
                        capability: spec.capability.clone(),
                        task: spec.id.clone(),
                        outcome: Some(Outcome::Failed),
                    });
                }
            }
            Op::Unregister { slot } => {
                let mut requeued: Vec<String> =
                    self.registry.unregister(&self.agents[slot]).unwrap();
                requeued.sort();
                let mut expected = Vec::new();
                for (spec, fate) in &mut self.tasks {
                    if matches!(fate, Fate::Claimed { slot: s, .. } if *s == slot) {
                        expected.push(spec.id.clone());
                        self.expected_calls.push(GateCall::Ended {
                            agent: slot_name(slot),
                            capability: spec.capability.clone(),
                            task: spec.id.clone(),
                            outcome: None,
                        });
                        *fate = Fate::Queued {
                            start_by_ms: spec.schedule_to_start_ms.map(|ms| now + ms),
                        };
                    }
                }
                expected.sort();
                prop_assert_eq!(requeued, expected);
                // Its waiting polls were woken and end: unknown agent.
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                let mut i = 0;
                while i < self.waiting.len() {
                    if self.waiting[i].slot != slot {
                        i += 1;
                        continue;
                    }
                    let mut gone = self.waiting.remove(i);
                    let answer = gone.future.as_mut().poll(&mut cx);
                    prop_assert!(
                        matches!(answer, Poll::Ready(Err(AgentError::UnknownAgent(_)))),
                        "a poll outlived its agent: {:?}",
                        answer
                    );
                }
                self.agents[slot] = register_slot(&self.registry, slot);
                self.recent[slot].clear();
            }
            Op::Block {
                slot,
                capability,
                blocked,
            } => {
                let pair = (slot_name(slot), CAPABILITIES[capability].to_owned());
                // The engine changes what the gate answers only with a
                // wake-up after it (an agent's breaker opens at a claim's
                // end, which wakes the polls; setting or removing a breaker
                // and a cool-down's end wake them too), so the model wakes
                // on both: a task passed over for an agent the gate then
                // refuses is looked at again.
                if blocked {
                    self.gate.blocked.lock().unwrap().insert(pair);
                    self.registry.wake();
                } else if self.gate.blocked.lock().unwrap().remove(&pair) {
                    self.registry.wake();
                }
            }
        }
        Ok(())
    }

    fn index(&self, id: &str) -> usize {
        self.tasks
            .iter()
            .position(|(spec, _)| spec.id == id)
            .expect("a known task")
    }

    fn check_invariants(&mut self) -> Result<(), TestCaseError> {
        let outstanding = self
            .tasks
            .iter()
            .filter(|(_, fate)| fate.outstanding())
            .count();
        let queued = self
            .tasks
            .iter()
            .filter(|(_, fate)| matches!(fate, Fate::Queued { .. }))
            .count();
        prop_assert_eq!(
            self.registry.outstanding(),
            outstanding,
            "a task was lost or invented"
        );
        prop_assert_eq!(self.registry.queue_sizes().values().sum::<usize>(), queued);
        // The oldest queued task of each capability: what the dashboard
        // shows as a queue's age.
        let mut oldest: BTreeMap<String, u64> = BTreeMap::new();
        for (spec, fate) in &self.tasks {
            if matches!(fate, Fate::Queued { .. }) {
                let at = oldest
                    .entry(spec.capability.clone())
                    .or_insert(spec.scheduled_at_ms);
                *at = (*at).min(spec.scheduled_at_ms);
            }
        }
        prop_assert_eq!(self.registry.oldest_queued(), oldest);
        for (slot, agent) in self.agents.iter().enumerate() {
            let info = info(&self.registry, agent);
            prop_assert!(info.active_tasks <= info.max_concurrency);
            prop_assert_eq!(info.active_tasks as usize, self.claimed_by_slot(slot));
            prop_assert_eq!(info.health.recent_tasks as usize, self.recent[slot].len());
            prop_assert_eq!(info.health.recent_failures as usize, self.failures(slot));
            prop_assert_eq!(info.health.slots as usize, self.slots(slot));
            let s = self.score(slot);
            prop_assert!((info.health.score - s.num as f64 / s.den as f64).abs() < 1e-9);
            let busy = self.free(slot) == 0;
            prop_assert_eq!(info.status == AgentStatus::Busy, busy);
        }
        for (spec, fate) in &self.tasks {
            let holder = match fate {
                Fate::Claimed { slot, .. } => Some(self.agents[*slot]),
                _ => None,
            };
            prop_assert_eq!(self.registry.claimed_by(&spec.id), holder);
        }
        let next = self
            .tasks
            .iter()
            .filter_map(|(_, fate)| fate.deadline_ms())
            .min();
        prop_assert_eq!(self.registry.next_deadline_ms(), next);
        // The gate heard of every claim and every end, exactly.
        let mut heard = self.gate.take_calls();
        let mut expected = std::mem::take(&mut self.expected_calls);
        heard.sort();
        expected.sort();
        prop_assert_eq!(heard, expected);
        Ok(())
    }

    /// Invariant 35, once every woken poll has run: no queued task is left
    /// while an agent that could take it waits in a poll.
    fn check_not_stranded(&self) -> Result<(), TestCaseError> {
        for (spec, fate) in &self.tasks {
            if !matches!(fate, Fate::Queued { .. }) {
                continue;
            }
            for slot in 0..SLOTS.len() {
                prop_assert!(
                    self.polls_waiting(slot) == 0
                        || !self.may_take(slot, spec)
                        || self.free(slot) == 0,
                    "{} is stranded: w{} waits and could take it",
                    spec.id,
                    slot
                );
            }
        }
        Ok(())
    }
}

/// The model's own lease rule: heartbeat interval when strictly shorter.
fn lease(spec: &TaskSpec, now: u64) -> (u64, TimeoutKind) {
    match spec.heartbeat_ms {
        Some(heartbeat_ms) if heartbeat_ms < spec.lease_ms => {
            (now + heartbeat_ms, TimeoutKind::Heartbeat)
        }
        _ => (now + spec.lease_ms, TimeoutKind::StartToClose),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Invariants 13, 34 and 35 against the model (see above).
    #[test]
    fn the_registry_matches_a_simple_model(
        ops in proptest::collection::vec(op(), 1..160),
    ) {
        // Long polls time out on tokio's timers, which only a running
        // runtime fires: this one is never run, only entered.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let mut model = Model::new();
        for op in &ops {
            model.apply(op)?;
            model.check_invariants()?;
        }
        model.settle_polls(0)?;
        model.check_not_stranded()?;
        // Nothing was lost: every task still outstanding is really there, once.
        model.waiting.clear();
        let outstanding: Vec<String> = model
            .tasks
            .iter()
            .filter(|(_, fate)| fate.outstanding())
            .map(|(spec, _)| spec.id.clone())
            .collect();
        for id in &outstanding {
            prop_assert!(model.registry.withdraw(id));
        }
        prop_assert_eq!(model.registry.outstanding(), 0);
        prop_assert_eq!(model.registry.next_deadline_ms(), None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Priorities with aging: agents are served by effective priority
    /// (priority, plus one level per `AGING_MS_PER_LEVEL` waited), so every
    /// claim takes the lowest rank queued, and the stated bound holds: a
    /// task of priority `p` scheduled at `t` is served before any task
    /// scheduled after `t + (9 - p) × AGING_MS_PER_LEVEL`.
    #[test]
    fn tasks_are_served_by_aged_priority_within_the_stated_bound(
        ops in proptest::collection::vec((any::<bool>(), 0..=9u8, 0..30_000u64), 1..120),
    ) {
        let (clock, registry) = registry();
        let agent = agent(&registry, &["a"], 1);
        let mut queued: Vec<TaskSpec> = Vec::new();
        for (n, (claim, priority, advance_ms)) in ops.into_iter().enumerate() {
            clock.advance(advance_ms);
            if !claim {
                let spec = TaskSpec {
                    priority,
                    ..task(&format!("t{n}"), "a", clock_now(&clock))
                };
                registry.enqueue(spec.clone());
                queued.push(spec);
                continue;
            }
            let claimed = registry.claim(&agent, 1).unwrap();
            let Some(claim) = claimed.first() else {
                prop_assert!(queued.is_empty(), "nothing claimed with {} queued", queued.len());
                continue;
            };
            let rank = |s: &TaskSpec| {
                i128::from(s.scheduled_at_ms) - i128::from(s.priority) * i128::from(AGING_MS_PER_LEVEL)
            };
            let best = queued.iter().map(rank).min().unwrap();
            prop_assert_eq!(rank(&claim.spec), best, "not the lowest rank");
            queued.retain(|s| s.id != claim.spec.id);
            for waiting in &queued {
                let bound = waiting.scheduled_at_ms
                    + u64::from(PRIORITY_MAX - waiting.priority) * AGING_MS_PER_LEVEL;
                prop_assert!(
                    claim.spec.scheduled_at_ms <= bound,
                    "{} (priority {}, at {}) served before {} (priority {}, at {})",
                    claim.spec.id, claim.spec.priority, claim.spec.scheduled_at_ms,
                    waiting.id, waiting.priority, waiting.scheduled_at_ms
                );
            }
            registry.settle(&claim.spec.id, Outcome::Succeeded).unwrap();
        }
    }

    /// Invariant 31: tasks with a fairness key are ranked from their key's
    /// turn (the later of when they were scheduled and the key's clock,
    /// which each task moves `FAIR_TURN_MS` on), so every claim takes the
    /// lowest `turn - priority × aging`, each key keeps its own order, and
    /// the aging bound holds from the turn.
    #[test]
    fn keys_take_turns_and_each_key_keeps_its_order(
        ops in proptest::collection::vec(
            (any::<bool>(), 0..=2u8, prop_oneof![Just(None), Just(Some("a")), Just(Some("b")), Just(Some("c"))], 0..3_000u64),
            1..150,
        ),
    ) {
        let (clock, registry) = registry();
        let agent = agent(&registry, &["q"], 1);
        // The model: each key's next turn, and each queued task's turn.
        let mut next_turn: BTreeMap<&str, u64> = BTreeMap::new();
        let mut queued: Vec<(TaskSpec, u64, usize)> = Vec::new();
        for (n, (claim, priority, key, advance_ms)) in ops.into_iter().enumerate() {
            clock.advance(advance_ms);
            let now = clock_now(&clock);
            if !claim {
                let spec = TaskSpec {
                    priority,
                    fairness_key: key.map(str::to_owned),
                    ..task(&format!("t{n}"), "q", now)
                };
                let turn = match key {
                    None => now,
                    Some(k) => {
                        let next = next_turn.entry(k).or_insert(0);
                        let turn = (*next).max(now);
                        *next = turn + FAIR_TURN_MS;
                        turn
                    }
                };
                registry.enqueue(spec.clone());
                queued.push((spec, turn, n));
                continue;
            }
            let claimed = registry.claim(&agent, 1).unwrap();
            let Some(claim) = claimed.first() else {
                prop_assert!(queued.is_empty(), "nothing claimed with {} queued", queued.len());
                continue;
            };
            let rank = |(s, turn, n): &(TaskSpec, u64, usize)| {
                (i128::from(*turn) - i128::from(s.priority) * i128::from(AGING_MS_PER_LEVEL), *n)
            };
            let best = queued.iter().min_by_key(|q| rank(q)).unwrap();
            prop_assert_eq!(&claim.spec.id, &best.0.id, "not the lowest rank");
            let (_, turn, _) = queued.iter().find(|q| q.0.id == claim.spec.id).cloned().unwrap();
            queued.retain(|q| q.0.id != claim.spec.id);
            for (waiting, waiting_turn, _) in &queued {
                if waiting.fairness_key.is_some() && waiting.fairness_key == claim.spec.fairness_key
                    && waiting.priority == claim.spec.priority {
                    prop_assert!(waiting.scheduled_at_ms >= claim.spec.scheduled_at_ms,
                        "{} overtook {} of its own key", claim.spec.id, waiting.id);
                }
                let bound = waiting_turn + u64::from(PRIORITY_MAX - waiting.priority) * AGING_MS_PER_LEVEL;
                prop_assert!(turn <= bound, "{} served before {} past the bound", claim.spec.id, waiting.id);
            }
            registry.settle(&claim.spec.id, Outcome::Succeeded).unwrap();
        }
    }
}

#[test]
fn a_burst_of_one_key_does_not_starve_another() {
    let (clock, registry) = registry();
    let agent = agent(&registry, &["q"], 1);
    let keyed = |id: String, key: &str, at: u64| TaskSpec {
        fairness_key: Some(key.to_owned()),
        ..task(&id, "q", at)
    };
    for n in 0..100 {
        registry.enqueue(keyed(format!("a{n}"), "acme", 0));
    }
    clock.advance(2_500);
    registry.enqueue(keyed("b0".into(), "beta", 2_500));
    let mut order = Vec::new();
    for _ in 0..5 {
        let id = claim_ids(&registry, &agent, 1).pop().unwrap();
        registry.settle(&id, Outcome::Succeeded).unwrap();
        order.push(id);
    }
    // acme's turns are 0, 1 s, 2 s, 3 s…; beta's first is 2.5 s.
    assert_eq!(order, ["a0", "a1", "a2", "b0", "a3"]);
}

fn versioned(registry: &AgentRegistry, version: Option<&str>) -> AgentId {
    registry
        .register_as(
            "worker",
            &caps(&["img"]),
            Some(10),
            None,
            &AgentTraits {
                version: version.map(str::to_owned),
                heartbeat_timeout_ms: None,
            },
        )
        .unwrap()
}

#[test]
fn a_task_that_requires_a_version_goes_only_to_agents_inside_the_range() {
    let (_, registry) = registry();
    let old = versioned(&registry, Some("2.0.3"));
    let new = versioned(&registry, Some("2.2.0"));
    let unversioned = versioned(&registry, None);
    let requiring = |id: &str, at: u64| TaskSpec {
        agent_version: Some(">=2.1".into()),
        ..task(id, "img", at)
    };
    registry.enqueue(requiring("v1", 0));
    registry.enqueue(task("any1", "img", 1));
    registry.enqueue(requiring("v2", 2));
    registry.enqueue(task("any2", "img", 3));
    // The old and the unversioned agents skip what they may not take, and
    // take the rest in order.
    assert_eq!(claim_ids(&registry, &old, 1), ["any1"]);
    assert_eq!(claim_ids(&registry, &unversioned, 5), ["any2"]);
    assert_eq!(claim_ids(&registry, &old, 5), Vec::<String>::new());
    assert_eq!(claim_ids(&registry, &new, 5), ["v1", "v2"]);
    assert_eq!(registry.queue_sizes().get("img").copied().unwrap_or(0), 0);
}

#[test]
fn what_an_agent_declares_is_checked_and_its_own_timeout_decides_offline() {
    let (clock, registry) = registry();
    for (traits, expected) in [
        (
            AgentTraits {
                version: Some("2.1".into()),
                heartbeat_timeout_ms: None,
            },
            "is not a semantic version",
        ),
        (
            AgentTraits {
                version: None,
                heartbeat_timeout_ms: Some(999),
            },
            "heartbeatTimeoutMs must be 1000",
        ),
        (
            AgentTraits {
                version: None,
                heartbeat_timeout_ms: Some(3_600_001),
            },
            "heartbeatTimeoutMs must be 1000",
        ),
    ] {
        let before = snapshot(&registry);
        let err = registry
            .register_as("w", &caps(&["img"]), None, None, &traits)
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(snapshot(&registry), before, "a refusal changes nothing");
    }
    let quick = registry
        .register_as(
            "quick",
            &caps(&["img"]),
            None,
            None,
            &AgentTraits {
                version: Some("3.0.0-rc.1".into()),
                heartbeat_timeout_ms: Some(5_000),
            },
        )
        .unwrap();
    let slow = agent(&registry, &["img"], 1);
    let shown = info(&registry, &quick);
    assert_eq!(shown.version.as_deref(), Some("3.0.0-rc.1"));
    assert_eq!(shown.heartbeat_timeout_ms, 5_000);
    assert_eq!(info(&registry, &slow).heartbeat_timeout_ms, 30_000);
    clock.advance(5_001);
    assert_eq!(info(&registry, &quick).status, AgentStatus::Offline);
    assert_eq!(info(&registry, &slow).status, AgentStatus::Online);
}
