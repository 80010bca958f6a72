//! Stored events outlive the build that wrote them: a field added to an
//! event later must leave older records decoding to what they meant.

#![allow(clippy::unwrap_used)]

use retrace_core::machine::Event;
use serde_json::json;

#[test]
fn a_step_deferred_written_before_it_recorded_an_input_decodes_without_one() {
    let old = json!({"type": "step_deferred", "step": "left", "fromOutput": {"n": 1}});
    let event: Event = serde_json::from_value(old.clone()).unwrap();
    match &event {
        Event::StepDeferred { input, .. } => assert_eq!(input, &None),
        other => panic!("decoded as {other:?}"),
    }
    // And writes back exactly as it was stored.
    assert_eq!(serde_json::to_value(&event).unwrap(), old);
}

#[test]
fn events_written_before_deadlines_decode_without_one() {
    for old in [
        json!({"type": "execution_started", "workflow": "w", "version": "v", "input": {},
               "maxTransitions": 10}),
        json!({"type": "step_started", "act": 1, "step": "a", "input": {}}),
    ] {
        let event: Event = serde_json::from_value(old.clone()).unwrap();
        match &event {
            Event::ExecutionStarted { deadline_at_ms, .. }
            | Event::StepStarted { deadline_at_ms, .. } => assert_eq!(deadline_at_ms, &None),
            other => panic!("decoded as {other:?}"),
        }
        assert_eq!(serde_json::to_value(&event).unwrap(), old);
    }
}

/// A history written before `execution_started` named the compensable
/// steps keeps every step's output (any of them may be undone); one that
/// names them keeps only theirs.
#[test]
fn states_keep_the_outputs_their_history_says_may_be_undone() {
    use retrace_core::ExecutionId;
    use retrace_core::machine::{ExecutionState, apply};
    let fold = |started: serde_json::Value| {
        let history = [
            started,
            json!({"type": "step_completed", "act": 1, "step": "a", "output": {"n": 1}, "input": {}}),
            json!({"type": "step_completed", "act": 2, "step": "b", "output": {"n": 2}, "input": {}}),
        ];
        let mut state = ExecutionState::empty(ExecutionId::from_bytes([1; 16]));
        for (i, e) in history.into_iter().enumerate() {
            let event: Event = serde_json::from_value(e).unwrap();
            apply(&mut state, i as u64 + 1, 0, &event).unwrap();
        }
        state
            .completed
            .iter()
            .map(|c| (c.step.clone(), c.output.clone()))
            .collect::<Vec<_>>()
    };
    let old = json!({"type": "execution_started", "workflow": "w", "version": "v",
                     "input": {}, "maxTransitions": 10});
    assert_eq!(
        fold(old),
        [
            ("a".to_owned(), json!({"n": 1})),
            ("b".to_owned(), json!({"n": 2}))
        ]
    );
    let new = json!({"type": "execution_started", "workflow": "w", "version": "v",
                     "input": {}, "maxTransitions": 10, "compensable": ["b"]});
    assert_eq!(fold(new), [("b".to_owned(), json!({"n": 2}))]);
}
