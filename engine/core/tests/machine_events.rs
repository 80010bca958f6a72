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
