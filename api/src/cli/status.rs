//! `retrace status`: one execution as `GET /v1/executions/{id}` shows it,
//! as a few labelled lines (status first), or the answer's JSON with
//! `--json`.
//!
//! Owns the wording of that view. It must never show anything the server
//! did not say: each line is one field of the answer, and a field the view
//! cannot read is shown as the server's JSON rather than left out.

use std::io::Write;

use clap::Args;
use retrace_engine::machine::{ErrorInfo, FailedStep, Waiting};
use serde_json::Value;

use super::client::ServerArg;
use super::diff::{compact, error_text, short, waiting};
use super::error::{Error, Result};
use super::remote::execution_id;
use super::write_line as write;

/// Options of `retrace status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The execution id.
    #[arg(value_name = "EXECUTION")]
    pub execution: String,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer as pretty-printed JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs, out: &mut impl Write) -> Result<()> {
    let client = args.server.client()?;
    let id = execution_id(&args.execution)?;
    let answer: Value = client.get(&format!("/v1/executions/{id}")).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&answer)
            .map_err(|e| Error::setup("cannot show the answer", e))?;
        return write(out, text);
    }
    for line in view(&answer) {
        write(out, line)?;
    }
    Ok(())
}

/// The labelled lines: status, workflow, version, times, current steps,
/// held steps, error, output.
fn view(execution: &Value) -> Vec<String> {
    let text = |field: &str| execution.get(field).and_then(Value::as_str);
    let mut lines = Vec::new();
    let mut line = |label: &str, value: String| lines.push(format!("{label:<10}{value}"));
    line("status", text("status").unwrap_or("?").to_owned());
    line("execution", text("id").unwrap_or("?").to_owned());
    line("workflow", text("workflow").unwrap_or("?").to_owned());
    line("version", short(text("version").unwrap_or("?")).to_owned());
    if let Some(parent) = text("parentId") {
        line("parent", parent.to_owned());
    }
    line("started", text("startTime").unwrap_or("?").to_owned());
    if let Some(ended) = text("endTime") {
        line("ended", ended.to_owned());
    }
    for step in list(execution, "currentSteps") {
        line("step", current_step(step));
    }
    for held in list(execution, "failedSteps") {
        line("held", failed_step(held));
    }
    match execution.get("error") {
        None | Some(Value::Null) => {}
        Some(error) => line("error", error_value(error)),
    }
    match execution.get("output") {
        None | Some(Value::Null) => {}
        Some(output) => line("output", compact(output)),
    }
    lines
}

fn list<'a>(execution: &'a Value, field: &str) -> &'a [Value] {
    execution
        .get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `compose [act 1]: waits for task … on `greet` (attempt 1), input {…}`.
fn current_step(step: &Value) -> String {
    let field = |name: &str| step.get(name).and_then(Value::as_str);
    let mut text = format!(
        "{} [act {}]",
        field("stepId").unwrap_or("?"),
        step.get("activation").and_then(Value::as_u64).unwrap_or(0)
    );
    match field("role") {
        None | Some("step") => {}
        Some(role) => text.push_str(&format!(" ({role})")),
    }
    if let Some(thread) = step.get("thread").filter(|t| !t.is_null()) {
        let number = |name: &str| thread.get(name).and_then(Value::as_u64).unwrap_or(0);
        text.push_str(&format!(
            " in branch {} of act {}",
            number("branch"),
            number("parallel")
        ));
    }
    let waits = step.get("waiting").cloned().unwrap_or(Value::Null);
    match serde_json::from_value::<Waiting>(waits.clone()) {
        Ok(w) => text.push_str(&format!(": {}", waiting(&w))),
        Err(_) => text.push_str(&format!(": {}", compact(&waits))),
    }
    text
}

/// `charge: card_declined: no funds (attempt 2)`.
fn failed_step(held: &Value) -> String {
    match serde_json::from_value::<FailedStep>(held.clone()) {
        Ok(f) => {
            let mut text = format!("{}: {}: {}", f.step, f.error.kind, f.error.message);
            if let Some(attempt) = f.error.attempt {
                text.push_str(&format!(" (attempt {attempt})"));
            }
            text
        }
        Err(_) => compact(held),
    }
}

fn error_value(error: &Value) -> String {
    match serde_json::from_value::<ErrorInfo>(error.clone()) {
        Ok(e) => error_text(&e),
        Err(_) => compact(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_running_execution_shows_its_steps_and_no_end() {
        let lines = view(&json!({
            "id": "01a1fb96-2826-7012-96b6-9bd448d552cf", "workflow": "greet",
            "version": "1f89d6fb79f618e4fc2a1e83", "status": "running",
            "input": {"userId": 7}, "output": null, "error": null,
            "currentSteps": [{"stepId": "lookup", "activation": 1, "role": "step", "thread": null,
                "startTime": "2026-11-21T00:51:24.326Z",
                "waiting": {"for": "event", "name": "greeting.approved", "timeoutAtMs": null}},
                {"stepId": "undo", "activation": 4, "role": "compensation",
                 "thread": {"parallel": 2, "branch": 1}, "waiting": {"for": "something new"}}],
            "failedSteps": [], "startTime": "2026-11-21T00:51:24.326Z", "endTime": null,
            "parentId": null
        }));
        assert_eq!(
            lines,
            vec![
                "status    running",
                "execution 01a1fb96-2826-7012-96b6-9bd448d552cf",
                "workflow  greet",
                "version   1f89d6fb79f6",
                "started   2026-11-21T00:51:24.326Z",
                "step      lookup [act 1]: waits for event `greeting.approved`",
                "step      undo [act 4] (compensation) in branch 1 of act 2: {\"for\":\"something new\"}",
            ]
        );
    }

    #[test]
    fn an_ended_execution_shows_its_end_error_and_output() {
        let lines = view(&json!({
            "id": "x", "workflow": "w", "version": "v", "status": "failed",
            "output": {"partial": true},
            "error": {"type": "command_failed", "message": "exit code 3: boom", "step": "only", "attempt": 1},
            "currentSteps": [],
            "failedSteps": [{"step": "only", "thread": null,
                "error": {"type": "command_failed", "message": "exit code 3: boom"}}],
            "startTime": "t0", "endTime": "t1", "parentId": "p"
        }));
        assert_eq!(
            lines,
            vec![
                "status    failed",
                "execution x",
                "workflow  w",
                "version   v",
                "parent    p",
                "started   t0",
                "ended     t1",
                "held      only: command_failed: exit code 3: boom",
                "error     command_failed: exit code 3: boom (step only, attempt 1)",
                "output    {\"partial\":true}",
            ]
        );
    }
}
