//! The operator's commands on one execution: `pause`, `resume`, `cancel`,
//! `terminate`, `retry`, `skip` and `redrive`, each one
//! `POST /v1/executions/{id}/{command}` with the JSON body the API
//! documents, printing `<id> <status after it>` (or the answer with
//! `--json`).
//!
//! Owns turning each command's flags into its body. It must never decide
//! whether a command fits the execution: the server refuses it (`409
//! wrong_state`), and that error is shown as it sent it.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::client::ServerArg;
use super::error::Result;
use super::remote::{execution_id, json_arg};
use super::write_line as write;

/// The execution a command is for, where to send it, and how to answer.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The execution id.
    #[arg(value_name = "EXECUTION")]
    pub execution: String,
    /// Why, recorded with the command (at most 1024 characters): the
    /// body's `reason` for pause, cancel and terminate, the
    /// `Retrace-Reason` header (visible ASCII) for the others.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer (`{"id", "status"}`) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `cancel`.
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// Undo its completed steps that declare `compensate` first (newest
    /// first).
    #[arg(long)]
    pub compensate: bool,
    #[command(flatten)]
    pub target: Target,
}

/// Options of `skip`.
#[derive(Debug, Clone, Args)]
pub struct SkipArgs {
    /// What stands for the skipped step's result, as JSON (`@file` reads it
    /// from a file); `null` without it.
    #[arg(long, value_name = "JSON")]
    pub output: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// The commands on one execution (`retrace <command> <EXECUTION>`).
#[derive(Debug, Clone, Subcommand)]
pub enum Control {
    /// Pauses an execution: no new dispatches; results of tasks already out
    /// are still recorded.
    Pause(Target),
    /// Resumes an execution an operator paused (one holding a failed step
    /// takes `retry` or `skip`).
    Resume(Target),
    /// Cancels an execution; with --compensate, its completed steps that
    /// declare `compensate` are undone first.
    Cancel(CancelArgs),
    /// Ends an execution at once, without compensation.
    Terminate(Target),
    /// Runs again the failed step (or compensation) a paused execution holds.
    Retry(Target),
    /// Skips the failed step (or compensation) a paused execution holds;
    /// --output stands for its result.
    Skip(SkipArgs),
    /// Reopens a failed execution at the step that failed; its history is
    /// kept and continues.
    Redrive(Target),
}

pub async fn run(command: Control, out: &mut impl Write) -> Result<()> {
    let mut body = Map::new();
    let reason = |body: &mut Map<String, Value>, reason: Option<String>| {
        if let Some(reason) = reason {
            body.insert("reason".into(), Value::String(reason));
        }
    };
    let (name, target) = match command {
        Control::Pause(target) => {
            reason(&mut body, target.reason.clone());
            ("pause", target)
        }
        Control::Resume(target) => ("resume", target),
        Control::Cancel(args) => {
            reason(&mut body, args.target.reason.clone());
            if args.compensate {
                body.insert("compensate".into(), Value::Bool(true));
            }
            ("cancel", args.target)
        }
        Control::Terminate(target) => {
            reason(&mut body, target.reason.clone());
            ("terminate", target)
        }
        Control::Retry(target) => ("retry", target),
        Control::Skip(args) => {
            if let Some(output) = args.output {
                body.insert("output".into(), json_arg("--output", &output)?);
            }
            ("skip", args.target)
        }
        Control::Redrive(target) => ("redrive", target),
    };
    let id = execution_id(&target.execution)?;
    let mut client = target.server.client()?;
    if !body.contains_key("reason")
        && let Some(reason) = &target.reason
    {
        client = client.with_reason(reason)?;
    }
    let answer: Value = client
        .post(&format!("/v1/executions/{id}/{name}"), &Value::Object(body))
        .await?;
    if target.json {
        return write(out, answer.to_string());
    }
    write(out, id_and_status(&answer))
}

/// `<id> <status>` from a command's answer.
pub fn id_and_status(answer: &Value) -> String {
    let field = |name: &str| answer.get(name).and_then(Value::as_str).unwrap_or("?");
    format!("{} {}", field("id"), field("status"))
}
