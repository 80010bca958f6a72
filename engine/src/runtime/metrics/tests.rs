//! Unit tests of the recorder: figures from committed events and claims.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::ExecutionId;
use crate::agents::{AgentId, AgentOptions, TaskSpec};
use crate::clock::SimClock;
use crate::machine::ErrorInfo;

fn claimed(id: &str, capability: &str, scheduled_at_ms: u64, claimed_at_ms: u64) -> ClaimedTask {
    ClaimedTask {
        spec: TaskSpec {
            id: id.to_owned(),
            execution: ExecutionId::NIL,
            step: "work".to_owned(),
            capability: capability.to_owned(),
            attempt: 1,
            input: json!(null),
            lease_ms: 60_000,
            schedule_to_start_ms: None,
            heartbeat_ms: None,
            priority: 0,
            fairness_key: None,
            agent_version: None,
            scheduled_at_ms,
        },
        agent: AgentId::random(),
        claimed_at_ms,
        lease_deadline_ms: claimed_at_ms + 60_000,
    }
}

fn registry() -> AgentRegistry {
    AgentRegistry::new(Arc::new(SimClock::new(0)), AgentOptions::default())
}

fn completed(act: u64, task: &str) -> Event {
    Event::TaskCompleted {
        act,
        attempt: 1,
        task: task.to_owned(),
        output: json!(null),
        agent: None,
        by: None,
    }
}

fn waiting_task(act: u64, capability: &str, scheduled_at_ms: u64) -> HashMap<u64, Before> {
    HashMap::from([(
        act,
        Before {
            step: "work".to_owned(),
            started_at_ms: scheduled_at_ms,
            task: Some((capability.to_owned(), scheduled_at_ms)),
        },
    )])
}

#[test]
fn a_duration_goes_to_the_first_bucket_that_holds_it() {
    let mut b = Buckets::default();
    for ms in [0, 1, 2, 5, 6, 604_800_000, 604_800_001] {
        b.record(ms);
    }
    assert_eq!(&b.counts[..3], &[2, 2, 1]);
    assert_eq!(b.counts[BUCKET_BOUNDS_MS.len() - 1], 1);
    assert_eq!(b.counts[BUCKET_BOUNDS_MS.len()], 1, "above every bound");
    assert_eq!(b.count(), 7);
    assert_eq!(b.sum_ms, 1_209_600_015);
}

#[test]
fn a_claimed_task_counts_its_queue_wait_then_its_run_time() {
    let recorder = Recorder::default();
    let registry = registry();
    recorder.claimed(&[claimed("t1", "build", 100, 130)], &registry);
    let f = recorder.figures();
    assert_eq!(f.queue_wait["build"].count(), 1);
    assert_eq!(f.queue_wait["build"].sum_ms, 30);
    assert!(f.run_time.is_empty(), "no result yet");

    recorder.observe(
        "wf",
        0,
        1_130,
        &waiting_task(3, "build", 100),
        &[completed(3, "t1")],
    );
    let f = recorder.figures();
    assert_eq!(
        (f.run_time["build"].count(), f.run_time["build"].sum_ms),
        (1, 1_000)
    );
    let round_trip = &f.capabilities["build"];
    assert_eq!((round_trip.count, round_trip.buckets.sum_ms), (1, 1_030));

    // A second result for the same task is not timed again.
    recorder.observe("wf", 0, 2_000, &HashMap::new(), &[completed(3, "t1")]);
    assert_eq!(recorder.figures().run_time["build"].count(), 1);
}

#[test]
fn execution_durations_are_kept_by_final_status() {
    let recorder = Recorder::default();
    let none = HashMap::new();
    let ended = |event: Event, now_ms| recorder.observe("wf", 1_000, now_ms, &none, &[event]);
    ended(Event::ExecutionCompleted { output: json!(1) }, 1_004);
    ended(Event::ExecutionCompleted { output: json!(2) }, 3_000);
    let f = recorder.figures();
    let completed = &f.workflows["wf"].durations["completed"];
    assert_eq!((completed.count(), completed.sum_ms), (2, 2_004));
    assert_eq!(f.workflows["wf"].ended["completed"], 2);
}

#[test]
fn claims_without_a_result_are_forgotten() {
    let recorder = Recorder::default();
    let registry = registry();
    let tasks: Vec<ClaimedTask> = (0..=CLAIMS_PRUNE_AT)
        .map(|i| claimed(&format!("t{i}"), "build", 0, 1))
        .collect();
    recorder.claimed(&tasks, &registry);
    let remembered = recorder.inner.lock().map(|i| i.claims.len()).unwrap_or(0);
    assert_eq!(remembered, 0, "none is outstanding in the registry");
    assert_eq!(
        recorder.figures().queue_wait["build"].count(),
        CLAIMS_PRUNE_AT as u64 + 1
    );
}

#[test]
fn pacing_and_history_limit_failures_are_counted_per_workflow() {
    let recorder = Recorder::default();
    recorder.paced("spin");
    recorder.paced("spin");
    let full = ErrorInfo::new(error_types::HISTORY_LIMIT, "full");
    let other = ErrorInfo::new(error_types::TIMEOUT, "late");
    for error in [full, other] {
        recorder.observe(
            "spin",
            0,
            10,
            &HashMap::new(),
            &[Event::ExecutionFailed { error }],
        );
    }
    let figures = recorder.figures();
    let spin = &figures.workflows["spin"];
    assert_eq!(spin.paced, 2);
    assert_eq!(spin.history_limit_failures, 1);
    assert_eq!(spin.ended["failed"], 2, "also counted as failed");
}
