//! What the engine reads from a compiled workflow: steps in order, scopes,
//! defaults, targets, references.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use retrace_core::model::{
    HandlerTarget, OnFailure, Scope, StepKind, Timeouts, WaitSpec, Workflow,
};
use serde_json::json;

fn workflow() -> Workflow {
    Workflow::from_yaml(
        r#"
name: shop
version: v7
timeoutMs: 60000
maxTransitions: 500
start: receive
input: { type: object, required: [order] }
steps:
  - id: check
    type: task
    capability: stock.check
    retry: { maxAttempts: 4 }
    timeout: 2500
    next: fan_out
  - id: receive
    name: Receive the order
    type: event
    event: { name: order/placed, correlation: "${ input.order }", timeoutMs: 1000 }
    onFailure: pause
    next: check
  - id: fan_out
    type: parallel
    next: later
    parallel:
      branches:
        - name: pay
          steps:
            - { id: pay, type: subworkflow, subworkflow: { workflow: payments, version: v2 }, next: receipt }
            - { id: receipt, type: task, capability: mail }
        - name: pack
          steps:
            - id: inner
              type: parallel
              parallel:
                branches:
                  - { name: box, steps: [ { id: box, type: subworkflow, subworkflow: { workflow: boxes } } ] }
  - id: later
    type: wait
    wait: { until: "2001-09-09T01:46:40Z" }
    timeout: { scheduleToStartMs: 10, heartbeatMs: 20 }
    next: handle
  - id: handle
    type: subworkflow
    subworkflow: { workflow: payments }
errorHandlers:
  - { error: Declined, handler: handle }
  - { error: "*", handler: alerts, retry: { maxAttempts: 2, interval: 10, backoffRate: 1, jitter: 0.5, maxInterval: 20, nonRetryable: [Fatal] } }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn steps_come_in_declaration_order_with_branches_inside() {
    let workflow = workflow();
    let ids: Vec<&str> = workflow.steps().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "check", "receive", "fan_out", "pay", "receipt", "inner", "box", "later", "handle"
        ]
    );
    assert_eq!(workflow.start(), "receive");
    assert!(workflow.step("box").is_some());
    assert!(workflow.step("nope").is_none());
}

#[test]
fn each_step_knows_its_scope() {
    let workflow = workflow();
    let scope = |id: &str| workflow.step(id).unwrap().scope.clone();
    assert_eq!(scope("check"), Scope::Top);
    assert_eq!(
        scope("receipt"),
        Scope::Branch {
            parallel: "fan_out".into(),
            branch: 0
        }
    );
    assert_eq!(
        scope("inner"),
        Scope::Branch {
            parallel: "fan_out".into(),
            branch: 1
        }
    );
    assert_eq!(
        scope("box"),
        Scope::Branch {
            parallel: "inner".into(),
            branch: 0
        }
    );
    let StepKind::Parallel { branches } = &workflow.step("fan_out").unwrap().kind else {
        panic!("not parallel");
    };
    assert_eq!(branches[0].start, "pay");
    assert_eq!(branches[0].steps, ["pay", "receipt"]);
    assert_eq!(branches[1].steps, ["inner"]);
}

#[test]
fn defaults_are_applied_when_compiled() {
    let workflow = workflow();
    let check = workflow.step("check").unwrap();
    assert_eq!(check.name, "check");
    assert_eq!(check.on_failure, OnFailure::Fail);
    let retry = check.retry.as_ref().unwrap();
    assert_eq!(retry.max_attempts, 4);
    assert_eq!(retry.interval_ms, 1000);
    assert_eq!(retry.backoff_rate, 2.0);
    assert_eq!(retry.max_interval_ms, None);
    assert_eq!(retry.jitter, 0.0);
    assert!(retry.non_retryable.is_empty());
    assert_eq!(
        check.timeout,
        Timeouts {
            start_to_close_ms: Some(2500),
            ..Timeouts::default()
        }
    );
    let receive = workflow.step("receive").unwrap();
    assert_eq!(receive.name, "Receive the order");
    assert_eq!(receive.on_failure, OnFailure::Pause);
}

#[test]
fn kinds_carry_their_settings() {
    let workflow = workflow();
    let StepKind::Event {
        name,
        correlation,
        timeout_ms,
    } = &workflow.step("receive").unwrap().kind
    else {
        panic!("not an event");
    };
    assert_eq!((name.as_str(), *timeout_ms), ("order/placed", Some(1000)));
    let correlation = correlation.as_ref().unwrap();
    assert_eq!(correlation.source(), "${ input.order }");
    assert_eq!(
        correlation.evaluate(&json!({"input": {"order": 42}})),
        Ok(json!(42))
    );
    let later = workflow.step("later").unwrap();
    assert_eq!(
        later.kind,
        StepKind::Wait(WaitSpec::UntilMs(1_000_000_000_000))
    );
    assert_eq!(later.timeout.schedule_to_start_ms, Some(10));
    assert_eq!(later.timeout.heartbeat_ms, Some(20));
    assert_eq!(
        workflow.step("pay").unwrap().kind,
        StepKind::Subworkflow {
            workflow: "payments".into(),
            version: Some("v2".into())
        }
    );
}

#[test]
fn workflow_level_settings() {
    let workflow = workflow();
    assert_eq!(workflow.name(), "shop");
    assert_eq!(workflow.label(), Some("v7"));
    assert_eq!(workflow.timeout_ms(), Some(60_000));
    assert_eq!(workflow.max_transitions(), Some(500));
    assert_eq!(workflow.subworkflow_refs(), ["boxes", "payments"]);
    assert_eq!(workflow.handler_workflow_refs(), ["alerts"]);
    assert_eq!(
        workflow.input_schema(),
        Some(&json!({"type": "object", "required": ["order"]}))
    );
    let problems = workflow.check_input(&json!({"item": 1})).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("/: "), "{problems:?}");
    assert!(problems[0].contains("order"), "{problems:?}");
}

#[test]
fn error_handlers_resolve_to_steps_or_workflows() {
    let workflow = workflow();
    let handlers = workflow.error_handlers();
    assert_eq!(handlers[0].handler, HandlerTarget::Step("handle".into()));
    assert_eq!(
        handlers[1].handler,
        HandlerTarget::Workflow("alerts".into())
    );
    assert_eq!(workflow.error_handler_for("Declined"), Some(&handlers[0]));
    assert_eq!(workflow.error_handler_for("Other"), Some(&handlers[1]));
    let retry = handlers[1].retry.as_ref().unwrap();
    assert_eq!(
        (
            retry.interval_ms,
            retry.backoff_rate,
            retry.jitter,
            retry.max_interval_ms
        ),
        (10, 1.0, 0.5, Some(20))
    );
    assert!(!retry.is_retryable("Fatal"));
}

#[test]
fn a_workflow_is_shared_across_threads() {
    let workflow = Arc::new(workflow());
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let workflow = Arc::clone(&workflow);
            std::thread::spawn(move || {
                let StepKind::Event { correlation, .. } = &workflow.step("receive").unwrap().kind
                else {
                    unreachable!()
                };
                correlation
                    .as_ref()
                    .unwrap()
                    .evaluate(&json!({"input": {"order": n}}))
            })
        })
        .collect();
    for (n, thread) in threads.into_iter().enumerate() {
        assert_eq!(thread.join().unwrap(), Ok(json!(n)));
    }
}

#[test]
fn a_definition_error_displays_every_problem() {
    let error = Workflow::from_json(br#"{"steps": [{"id": "a", "type": "task"}]}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid workflow definition (2 problems)\n\
         - name: is required\n\
         - steps[0].capability: is required for a `task` step"
    );
}
