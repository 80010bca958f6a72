//! What one event changed in an execution's state, as short lines for
//! `retrace replay`: the status, the current steps (started, now waiting for
//! something else, ended), variables set or removed, the output, the error,
//! the steps held for an operator and compensation.
//!
//! Owns the wording of those lines (`retrace status` shares it). It
//! compares two states and must never look at the event itself: the lines
//! say what the fold did, so a developer sees the state move, not the event
//! restated.

use std::collections::BTreeMap;

use retrace_engine::machine::{
    Activation, Compensation, ErrorInfo, ExecutionState, FailedStep, Role, Waiting,
};
use serde_json::Value;

use crate::time::rfc3339;

/// The longest JSON value shown in full; longer ones are cut with `…`.
const VALUE_CHARS_MAX: usize = 160;

/// What changed from `before` to `after`, one line per change.
pub fn changes(before: &ExecutionState, after: &ExecutionState) -> Vec<String> {
    let mut lines = Vec::new();
    if before.workflow != after.workflow || before.version != after.version {
        lines.push(format!(
            "workflow {} (version {})",
            after.workflow,
            short(&after.version)
        ));
    }
    if before.input != after.input {
        lines.push(format!("input {}", compact(&after.input)));
    }
    if before.seq == 0 {
        lines.push(format!("status {}", after.status.as_str()));
    } else if before.status != after.status {
        lines.push(format!(
            "status {} → {}",
            before.status.as_str(),
            after.status.as_str()
        ));
    }
    activations(&before.activations, &after.activations, &mut lines);
    variables(&before.variables, &after.variables, &mut lines);
    if before.output != after.output {
        match &after.output {
            Some(output) => lines.push(format!("output {}", compact(output))),
            None => lines.push("output cleared".into()),
        }
    }
    if before.error != after.error {
        match &after.error {
            Some(error) => lines.push(format!("error {}", error_text(error))),
            None => lines.push("error cleared".into()),
        }
    }
    failed_steps(&before.failed_steps, &after.failed_steps, &mut lines);
    if before.compensation != after.compensation {
        lines.push(compensation(after.compensation.as_ref()));
    }
    lines
}

fn activations(
    before: &BTreeMap<u64, Box<Activation>>,
    after: &BTreeMap<u64, Box<Activation>>,
    lines: &mut Vec<String>,
) {
    for (act, a) in after {
        match before.get(act) {
            None => lines.push(format!("+ {}: {}", activation(a), waiting(&a.waiting))),
            Some(b) if b.waiting != a.waiting => {
                lines.push(format!("~ {}: {}", activation(a), waiting(&a.waiting)));
            }
            Some(_) => {}
        }
    }
    for (act, b) in before {
        if !after.contains_key(act) {
            lines.push(format!("- {}", activation(b)));
        }
    }
}

/// `step lookup [act 1]`, with its role and branch when it has them.
fn activation(a: &Activation) -> String {
    let mut text = format!("step {} [act {}]", a.step, a.act);
    match &a.role {
        Role::Step => {}
        Role::Compensation { of } => text.push_str(&format!(" compensating act {of}")),
        Role::Handler { error } => text.push_str(&format!(" handling {}", error.kind)),
    }
    if let Some(thread) = a.thread {
        text.push_str(&format!(
            " in branch {} of act {}",
            thread.branch, thread.parallel
        ));
    }
    text
}

pub fn waiting(w: &Waiting) -> String {
    match w {
        // Between a step's events: started, or its task just reported.
        Waiting::Starting => "in progress".into(),
        Waiting::Task {
            attempt,
            task,
            capability,
            input,
            ..
        } => format!(
            "waits for task {task} on `{capability}` (attempt {attempt}), input {}",
            compact(input)
        ),
        Waiting::Retry { attempt, due_at_ms } => {
            format!("retries (attempt {attempt}) at {}", rfc3339(*due_at_ms))
        }
        Waiting::Timer { due_at_ms } => format!("waits until {}", rfc3339(*due_at_ms)),
        Waiting::Event {
            name,
            correlation,
            timeout_at_ms,
        } => {
            let mut text = format!("waits for event `{name}`");
            if let Some(c) = correlation {
                text.push_str(&format!(" with correlation {}", compact(c)));
            }
            if let Some(t) = timeout_at_ms {
                text.push_str(&format!(" until {}", rfc3339(*t)));
            }
            text
        }
        Waiting::Child {
            child, workflow, ..
        } => format!("waits for child execution {child} ({workflow})"),
        Waiting::Branches { outputs } => {
            format!("waits for its branches ({} ended)", outputs.len())
        }
        Waiting::Items(items) => format!(
            "waits for its items ({} of {} ended, {} failed, {} running)",
            items.ended,
            items.todo.len(),
            items.failed,
            items.launched - items.ended
        ),
    }
}

fn variables(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
    lines: &mut Vec<String>,
) {
    for (name, value) in after {
        if before.get(name) != Some(value) {
            lines.push(format!("set {name} = {}", compact(value)));
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) {
            lines.push(format!("unset {name}"));
        }
    }
}

fn failed_steps(before: &[FailedStep], after: &[FailedStep], lines: &mut Vec<String>) {
    for f in after.iter().filter(|f| !before.contains(f)) {
        lines.push(format!(
            "held: step {} failed with {}",
            f.step,
            error_text(&f.error)
        ));
    }
    for f in before.iter().filter(|f| !after.contains(f)) {
        lines.push(format!("no longer held: step {}", f.step));
    }
}

fn compensation(c: Option<&Compensation>) -> String {
    match c {
        None => "compensation over".into(),
        Some(c) => {
            let pending: Vec<String> = c.pending.iter().map(|a| format!("act {a}")).collect();
            let mut text = format!("compensation: to undo [{}]", pending.join(", "));
            if let Some(e) = &c.failed {
                text.push_str(&format!("; failed with {}", error_text(e)));
            }
            text
        }
    }
}

pub fn error_text(e: &ErrorInfo) -> String {
    let mut text = format!("{}: {}", e.kind, e.message);
    if let Some(step) = &e.step {
        text.push_str(&format!(" (step {step}"));
        if let Some(attempt) = e.attempt {
            text.push_str(&format!(", attempt {attempt}"));
        }
        text.push(')');
    }
    text
}

/// A value as one line of JSON, cut at [`VALUE_CHARS_MAX`] characters.
pub fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= VALUE_CHARS_MAX {
        return text;
    }
    let cut: String = text.chars().take(VALUE_CHARS_MAX).collect();
    format!("{cut}…")
}

/// A version hash shortened for reading (the full one is in `--json`).
pub fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use retrace_engine::ExecutionId;
    use retrace_engine::machine::Status;
    use serde_json::json;

    fn state() -> ExecutionState {
        let mut s = ExecutionState::empty(ExecutionId::NIL);
        s.workflow = "hello".into();
        s.version = "0123456789abcdef".into();
        s
    }

    #[test]
    fn a_start_shows_workflow_and_input() {
        let before = ExecutionState::empty(ExecutionId::NIL);
        let mut after = state();
        after.input = json!({"name": "Ann"});
        assert_eq!(
            changes(&before, &after),
            vec![
                "workflow hello (version 0123456789ab)",
                "input {\"name\":\"Ann\"}",
                "status running",
            ]
        );
    }

    #[test]
    fn steps_variables_status_and_output_are_shown() {
        let mut before = state();
        before.seq = 1;
        before.activations.insert(
            1,
            Box::new(Activation {
                act: 1,
                role: Role::Step,
                step: "greet".into(),
                thread: None,
                input: Value::Null,
                started_at_ms: 0,
                waiting: Waiting::Starting,
                priority: None,
                deadline_at_ms: None,
                fairness_key: None,
                agent_version: None,
            }),
        );
        before.variables.insert("old".into(), json!(1));
        let mut after = state();
        after.seq = 2;
        after.status = Status::Completed;
        after.variables.insert("greeting".into(), json!("hi"));
        after.output = Some(json!({"done": true}));
        assert_eq!(
            changes(&before, &after),
            vec![
                "status running → completed",
                "- step greet [act 1]",
                "set greeting = \"hi\"",
                "unset old",
                "output {\"done\":true}",
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }

    #[test]
    fn long_values_are_cut() {
        let long = json!("x".repeat(500));
        let text = compact(&long);
        assert_eq!(text.chars().count(), VALUE_CHARS_MAX + 1);
        assert!(text.ends_with('…'));
    }
}
