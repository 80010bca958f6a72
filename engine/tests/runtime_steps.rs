//! Each step type end to end through the runtime, with in-process agents and
//! the simulated clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use futures::StreamExt;
use retrace_engine::machine::{Status, error_types};
use serde_json::json;
use support::*;

#[tokio::test]
async fn inline_steps_run_to_completion_in_one_append() {
    let w = World::new().await;
    w.define(json!({
        "name": "inline",
        "steps": [
            {"id": "a", "type": "task", "capability": "noop", "next": "b"},
            {"id": "b", "type": "task", "capability": "transform",
             "input": {"greeting": "${ 'hello ' + input.name }"},
             "output": {"said": "$.output.greeting"}}
        ]
    }))
    .await;
    let id = w.start("inline", json!({"name": "ada"})).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.output, Some(json!({"greeting": "hello ada"})));
    assert_eq!(s.variables["said"], json!("hello ada"));
    assert_eq!(
        w.kinds(id).await,
        [
            "execution_started",
            "step_completed",
            "step_completed",
            "execution_completed"
        ]
    );
    assert_eq!(s.metrics.completed_steps, 2);
}

#[tokio::test]
async fn a_task_goes_to_an_agent_and_its_result_comes_back() {
    let w = World::new().await;
    w.define(json!({
        "name": "one_task",
        "steps": [{"id": "work", "type": "task", "capability": "build",
                   "input": {"path": "$.input.path"},
                   "output": {"artifact": "$.output.file"}}]
    }))
    .await;
    let agent = w.agent(&["build"]);
    let id = w.start("one_task", json!({"path": "/src"})).await;
    let task = w.claim(&agent).await;
    assert_eq!(task.spec.capability, "build");
    assert_eq!(task.spec.input, json!({"path": "/src"}));
    assert_eq!(task.spec.attempt, 1);
    assert_eq!(task.spec.execution, id);
    w.complete(&task, json!({"file": "a.out"})).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.variables["artifact"], json!("a.out"));
    assert_eq!(s.metrics.task_count, 1);
}

#[tokio::test]
async fn a_late_or_duplicate_result_is_refused_and_changes_nothing() {
    let w = World::new().await;
    w.define(json!({"name": "t", "steps": [task_step("a", "x", None)]}))
        .await;
    let agent = w.agent(&["x"]);
    let id = w.start("t", json!(null)).await;
    let task = w.claim(&agent).await;
    w.complete(&task, json!(1)).await;
    w.ended(id).await;
    let before = w.kinds(id).await;
    assert!(
        w.engine
            .complete_task(&task.spec.id, json!(2))
            .await
            .is_err()
    );
    assert!(w.engine.complete_task("nonsense", json!(2)).await.is_err());
    let wrong_attempt = task.spec.id.replace(".1", ".2");
    assert!(
        w.engine
            .complete_task(&wrong_attempt, json!(2))
            .await
            .is_err()
    );
    assert_eq!(w.kinds(id).await, before);
    assert_eq!(w.state(id).await.output, Some(json!(1)));
}

#[tokio::test]
async fn a_decision_takes_either_branch() {
    let w = World::new().await;
    w.define(json!({
        "name": "decide",
        "steps": [
            {"id": "check", "type": "decision",
             "decision": {"expression": "size($.input.items) > 0",
                          "branches": {"true": "some", "false": "none"}}},
            {"id": "some", "type": "task", "capability": "transform", "input": "many"},
            {"id": "none", "type": "task", "capability": "transform", "input": "empty"}
        ]
    }))
    .await;
    let yes = w.start("decide", json!({"items": [1]})).await;
    let no = w.start("decide", json!({"items": []})).await;
    assert_eq!(w.ended(yes).await.output, Some(json!("many")));
    assert_eq!(w.ended(no).await.output, Some(json!("empty")));
}

#[tokio::test]
async fn a_decision_with_no_matching_branch_fails_with_its_error() {
    let w = World::new().await;
    w.define(json!({
        "name": "nomatch",
        "steps": [
            {"id": "check", "type": "decision",
             "decision": {"expression": "input.level", "branches": {"high": "h"}}},
            {"id": "h", "type": "task", "capability": "noop"}
        ]
    }))
    .await;
    let id = w.start("nomatch", json!({"level": "low"})).await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    let e = s.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.step.as_deref()),
        (error_types::NO_BRANCH, Some("check"))
    );
}

#[tokio::test]
async fn parallel_branches_join_with_outputs_under_their_names() {
    let w = World::new().await;
    w.define(json!({
        "name": "par",
        "steps": [
            {"id": "fan", "type": "parallel", "next": "after",
             "parallel": {"branches": [
                {"name": "left", "steps": [task_step("l1", "work", Some("l2")),
                                           {"id": "l2", "type": "task", "capability": "noop"}]},
                {"name": "right", "steps": [task_step("r1", "work", None)]}
             ]}},
            {"id": "after", "type": "task", "capability": "noop"}
        ]
    }))
    .await;
    let agent = w.agent(&["work"]);
    let id = w.start("par", json!({})).await;
    let tasks = w.claim_n(&agent, 2).await;
    // Complete in the opposite order of scheduling.
    for t in tasks.iter().rev() {
        w.complete(t, json!({"by": t.spec.step})).await;
    }
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(
        s.output,
        Some(json!({"left": {"by": "l1"}, "right": {"by": "r1"}}))
    );
}

#[tokio::test]
async fn a_wait_step_is_a_durable_timer() {
    let w = World::new().await;
    w.define(json!({
        "name": "sleepy",
        "steps": [{"id": "nap", "type": "wait", "wait": {"seconds": 3600}, "next": "done"},
                  {"id": "done", "type": "task", "capability": "noop"}]
    }))
    .await;
    let id = w.start("sleepy", json!("x")).await;
    w.wait_for(id, "timer_started").await;
    w.clock.advance(3_599_999);
    assert_eq!(w.state(id).await.status, Status::Running);
    w.clock.advance(1);
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.ended_at_ms, Some(T0 + 3_600_000));
}

#[tokio::test]
async fn an_event_step_takes_a_signal_sent_before_or_after_it() {
    let w = World::new().await;
    w.define(json!({
        "name": "approve",
        "steps": [{"id": "gate", "type": "event", "event": {"name": "approval"},
                   "output": {"approvedBy": "$.output.by"}}]
    }))
    .await;
    let late = w.start("approve", json!({})).await;
    w.wait_for(late, "event_awaited").await;
    w.engine
        .signal(late, "approval", json!({"by": "ada"}), None)
        .await
        .unwrap();
    assert_eq!(w.ended(late).await.variables["approvedBy"], json!("ada"));

    // A signal that arrives first is kept until the step takes it.
    w.define(json!({
        "name": "approve_later",
        "steps": [{"id": "first", "type": "wait", "wait": {"seconds": 10}, "next": "gate"},
                  {"id": "gate", "type": "event", "event": {"name": "approval"}}]
    }))
    .await;
    let early = w.start("approve_later", json!({})).await;
    w.engine
        .signal(early, "approval", json!("yes"), None)
        .await
        .unwrap();
    w.clock.advance(10_000);
    let s = w.ended(early).await;
    assert_eq!(s.output, Some(json!("yes")));
    assert!(w.kinds(early).await.contains(&"signal_taken".to_string()));
}

#[tokio::test]
async fn a_published_event_reaches_only_matching_correlations() {
    let w = World::new().await;
    w.define(json!({
        "name": "order",
        "steps": [{"id": "paid", "type": "event",
                   "event": {"name": "payment", "correlation": "input.order"}}]
    }))
    .await;
    let a = w.start("order", json!({"order": "A"})).await;
    let b = w.start("order", json!({"order": "B"})).await;
    w.wait_for(a, "event_awaited").await;
    w.wait_for(b, "event_awaited").await;
    let reached = w
        .engine
        .publish("payment", json!(100), Some(json!("B")))
        .await
        .unwrap();
    assert_eq!(reached, vec![b]);
    assert_eq!(w.ended(b).await.output, Some(json!(100)));
    assert_eq!(w.state(a).await.status, Status::Running);
}

#[tokio::test]
async fn an_event_wait_times_out_as_an_error() {
    let w = World::new().await;
    w.define(json!({
        "name": "impatient",
        "steps": [{"id": "gate", "type": "event", "event": {"name": "x", "timeoutMs": 5000}}]
    }))
    .await;
    let id = w.start("impatient", json!({})).await;
    w.wait_for(id, "event_awaited").await;
    w.clock.advance(5_000);
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.error.unwrap().kind, error_types::TIMEOUT);
}

#[tokio::test]
async fn a_subworkflow_runs_as_a_child_and_its_output_flows_back() {
    let w = World::new().await;
    w.define(json!({
        "name": "child",
        "steps": [{"id": "double", "type": "task", "capability": "transform",
                   "input": "${ input.n * 2 }"}]
    }))
    .await;
    w.define(json!({
        "name": "parent",
        "steps": [{"id": "call", "type": "subworkflow",
                   "subworkflow": {"workflow": "child"}, "input": {"n": "$.input.n"},
                   "output": {"doubled": "$.output"}}]
    }))
    .await;
    let id = w.start("parent", json!({"n": 21})).await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.variables["doubled"], json!(42));
    let child = retrace_engine::machine::child_id(id, 1);
    let c = w.state(child).await;
    assert_eq!(c.parent.map(|p| p.execution), Some(id));
    assert_eq!(c.status, Status::Completed);
}

#[tokio::test]
async fn a_failed_child_is_an_error_of_the_subworkflow_step() {
    let w = World::new().await;
    w.define(json!({
        "name": "bad_child",
        "steps": [{"id": "boom", "type": "task", "capability": "transform", "input": "${ input.missing.field }"}]
    }))
    .await;
    w.define(json!({
        "name": "parent2",
        "steps": [{"id": "call", "type": "subworkflow", "subworkflow": {"workflow": "bad_child"}}]
    }))
    .await;
    let id = w.start("parent2", json!({})).await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    let e = s.error.unwrap();
    assert_eq!(e.kind, error_types::EXPRESSION);
}

#[tokio::test]
async fn a_loop_hits_the_transition_cap_with_a_clear_error() {
    let w = World::new().await;
    w.define(json!({
        "name": "forever", "maxTransitions": 50,
        "steps": [{"id": "spin", "type": "task", "capability": "noop", "next": "spin"}]
    }))
    .await;
    let id = w.start("forever", json!({})).await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    assert_eq!(s.error.unwrap().kind, error_types::TRANSITION_LIMIT);
    assert_eq!(s.metrics.step_count, 50);
}

#[tokio::test]
async fn a_start_with_a_used_idempotency_key_returns_the_same_execution() {
    let w = World::new().await;
    w.define(json!({"name": "idem", "steps": [task_step("a", "x", None)]}))
        .await;
    let req = retrace_engine::runtime::StartRequest {
        workflow: "idem".into(),
        idempotency_key: Some("order-7".into()),
        ..Default::default()
    };
    let first = w.engine.start(req.clone()).await.unwrap();
    let second = w.engine.start(req).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.id, second.id);
    assert_eq!(w.engine.executions(Some("idem"), None, None, 10).len(), 1);
}

#[tokio::test]
async fn metrics_count_steps_tasks_and_executions() {
    let w = World::new().await;
    w.define(json!({
        "name": "measured",
        "steps": [{"id": "work", "type": "task", "capability": "build",
                   "retry": {"maxAttempts": 2, "interval": 10}, "next": "tidy"},
                  {"id": "tidy", "type": "task", "capability": "noop"}]
    }))
    .await;
    let agent = w.agent(&["build"]);
    let id = w.start("measured", json!({})).await;
    let first = w.claim(&agent).await;
    w.clock.advance(250);
    w.fail(&first, "flaky", "once").await;
    w.clock.advance(10);
    let second = w.claim(&agent).await;
    w.clock.advance(40);
    w.complete(&second, json!("ok")).await;
    w.ended(id).await;

    let m = w.engine.metrics();
    let wf = &m.workflows["measured"];
    assert_eq!((wf.started, wf.ended["completed"]), (1, 1));
    assert_eq!(
        wf.duration.p50_ms, 300,
        "start to end on the simulated clock"
    );
    let work = &wf.steps["work"];
    assert_eq!((work.count, work.retries), (1, 1));
    assert_eq!(wf.steps["tidy"].count, 1);
    let build = &m.capabilities["build"];
    assert_eq!((build.count, build.errors, build.retries), (2, 1, 1));
    assert_eq!(
        build.p99_ms, 250,
        "the slower attempt: scheduled at 0, failed at 250"
    );
}

#[tokio::test]
async fn an_event_published_as_soon_as_the_wait_is_seen_is_not_lost() {
    let w = World::new().await;
    w.define(json!({"name": "quick", "steps": [{"id": "gate", "type": "event", "event": {"name": "ping"}}]}))
        .await;
    // A client that publishes the moment the journal shows the wait, while
    // the engine may still be finishing the commit that recorded it.
    let engine = w.engine.clone();
    let from = engine.read().last_position().await.unwrap() + 1;
    let publisher = tokio::spawn(async move {
        let mut tail = engine.read().subscribe_all(from, Default::default());
        let mut reached = Vec::new();
        while reached.len() < 20 {
            let r = tail.next().await.unwrap().unwrap();
            if r.event.event.kind() == "event_awaited" {
                reached.extend(engine.publish("ping", json!("pong"), None).await.unwrap());
            }
        }
        reached
    });
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(w.start("quick", json!({})).await);
    }
    let mut reached = publisher.await.unwrap();
    reached.sort();
    ids.sort();
    assert_eq!(
        reached, ids,
        "every published event reached its waiting execution"
    );
    for id in ids {
        assert_eq!(w.ended(id).await.output, Some(json!("pong")));
    }
}

#[tokio::test]
async fn agent_figures_count_the_tasks_it_finished() {
    let w = World::new().await;
    w.define(json!({"name": "counted", "steps": [task_step("a", "x", Some("b")), task_step("b", "x", None)]}))
        .await;
    let agent = w.agent(&["x"]);
    let id = w.start("counted", json!({})).await;
    let a = w.claim(&agent).await;
    w.clock.advance(30);
    w.complete(&a, json!(1)).await;
    let b = w.claim(&agent).await;
    w.clock.advance(10);
    w.fail(&b, "nope", "failed").await;
    w.ended(id).await;
    let info = w.engine.agents().get(&agent).unwrap();
    assert_eq!(info.task_count, 2);
    assert_eq!(info.success_rate, 0.5);
    assert_eq!(info.average_task_ms, 20.0);
    assert_eq!(info.active_tasks, 0);
}

#[tokio::test]
async fn the_catalog_stream_is_not_an_execution() {
    let w = World::new().await;
    w.define(json!({"name": "x", "steps": [task_step("a", "noop", None)]}))
        .await;
    let nil = retrace_engine::ExecutionId::NIL;
    assert!(matches!(
        w.engine.state(nil).await,
        Err(retrace_engine::Error::UnknownExecution(_))
    ));
    assert!(w.engine.read().events(nil, 1, 10).await.is_err());
    assert!(
        w.engine
            .read()
            .events(retrace_engine::ExecutionId::from_bytes([7; 16]), 5, 10)
            .await
            .is_err()
    );
    assert!(w.engine.read().all_executions().await.unwrap().is_empty());
    assert!(w.engine.redrive(nil).await.is_err());
}

/// Agents that crash never unregister: the engine forgets one unseen for
/// an hour, and keeps one that was seen.
#[tokio::test]
async fn an_agent_unseen_for_an_hour_is_forgotten() {
    use retrace_engine::runtime::AGENT_FORGET_MS;
    let w = World::new().await;
    let gone = w.agent(&["a"]);
    let alive = w.agent(&["b"]);
    w.clock.advance(AGENT_FORGET_MS - 1_000);
    w.engine.agents().heartbeat(&alive).unwrap();
    w.clock.advance(2_000);
    let listed = |id| w.engine.agents().list().iter().any(|a| a.id == id);
    // Waits by looking: the engine's watch runs on the simulated clock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listed(gone) {
        assert!(std::time::Instant::now() < deadline, "never forgotten");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(listed(alive), "an agent seen within the hour stays");
}

#[tokio::test]
async fn a_missed_deadline_is_recorded_and_counted_and_the_execution_goes_on() {
    let mut w = World::new().await;
    w.define(json!({
        "name": "sla",
        "deadlineMs": 60_000,
        "steps": [{"id": "work", "type": "task", "capability": "slow", "deadlineMs": 5_000}]
    }))
    .await;
    let id = w.start("sla", json!({})).await;
    let agent = w.agent(&["slow"]);
    let task = w.claim(&agent).await;
    // A crash before the deadline: the recovered engine arms it again.
    w.crash_and_recover().await;
    w.clock.advance(5_000);
    w.wait_for(id, "deadline_missed").await;
    assert_eq!(w.engine.state(id).await.unwrap().status, Status::Running);
    let agent = w.agent(&["slow"]);
    let task = match w.engine.poll_tasks(&agent, 0, 1).await.unwrap().pop() {
        Some(requeued) => requeued,
        None => task,
    };
    w.clock.advance(55_000);
    w.wait_for_count(id, "deadline_missed", 2).await;
    w.complete(&task, json!({"done": true})).await;
    let ended = w.ended(id).await;
    assert_eq!(ended.status, Status::Completed);
    let missed: Vec<_> = w
        .engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            retrace_engine::machine::Event::DeadlineMissed { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(missed, vec![Some("work".to_string()), None]);
    let figures = w.engine.metrics().workflows["sla"].clone();
    assert_eq!(figures.deadlines_missed, 1);
    assert_eq!(figures.step_deadlines_missed["work"], 1);
}
