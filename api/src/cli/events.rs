//! External events: `retrace signal` sends one to one execution
//! (`POST /v1/executions/{id}/signals/{name}`), `retrace publish` to every
//! execution waiting for it (`POST /v1/events/{name}`), both with the body
//! `{"payload"?, "correlation"?}`; `retrace signal-with-start` sends one to
//! the execution a key names, started first if there is none (`POST
//! /v1/executions/signal-with-start`).
//!
//! Owns the bodies and the one-line answers: where a signal went (taken by
//! a waiting step, or kept until one waits), which executions a published
//! event reached. It must never check an event name: the server does
//! (`422 invalid_body`), and the name is sent percent-encoded as given.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::client::{ServerArg, encode};
use super::control::id_and_status;
use super::error::Result;
use super::remote::{StartOptions, TagArgs, execution_id, json_arg};
use super::write_line as write;

/// What an event carries.
#[derive(Debug, Clone, Args)]
pub struct EventBody {
    /// The payload, as JSON (`@file` reads it from a file): what the
    /// waiting step takes as its result. `null` without it.
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// The correlation, as JSON (`@file` reads it from a file): a step
    /// waiting with a correlation takes only an event with an equal one.
    #[arg(long, value_name = "JSON")]
    pub correlation: Option<String>,
}

impl EventBody {
    fn json(self) -> Result<Value> {
        let mut body = Map::new();
        if let Some(payload) = self.payload {
            body.insert("payload".into(), json_arg("--payload", &payload)?);
        }
        if let Some(correlation) = self.correlation {
            body.insert(
                "correlation".into(),
                json_arg("--correlation", &correlation)?,
            );
        }
        Ok(Value::Object(body))
    }
}

/// Options of `retrace signal`.
#[derive(Debug, Clone, Args)]
pub struct SignalArgs {
    /// The execution id.
    #[arg(value_name = "EXECUTION")]
    pub execution: String,
    /// The event's name (1 to 128 bytes: a letter or digit, then also
    /// `_ . : / -`).
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub body: EventBody,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `retrace signal-with-start`.
#[derive(Debug, Clone, Args)]
pub struct SignalWithStartArgs {
    /// The workflow to start when the key names no execution.
    #[arg(value_name = "WORKFLOW")]
    pub workflow: String,
    /// The event's name (1 to 128 bytes: a letter or digit, then also
    /// `_ . : / -`).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Names the execution: the one started with this key before, or the
    /// one this starts.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: String,
    /// What a new execution is started with.
    #[command(flatten)]
    pub start: StartOptions,
    #[command(flatten)]
    pub tags: TagArgs,
    #[command(flatten)]
    pub body: EventBody,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `retrace publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The event's name (1 to 128 bytes: a letter or digit, then also
    /// `_ . : / -`).
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub body: EventBody,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer (`{"delivered": [ids]}`) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `retrace signal` and `retrace publish`.
#[derive(Debug, Clone, Subcommand)]
pub enum EventCommand {
    /// Sends an external event to one execution: the step waiting for it
    /// takes it, or it is kept until one does.
    Signal(SignalArgs),
    /// Sends an external event to every execution with a step waiting for
    /// it (and a matching correlation); it is not kept for later.
    Publish(PublishArgs),
    /// Sends an external event to the execution an idempotency key names,
    /// starting it first (with the event recorded at its start) if the key
    /// names none.
    SignalWithStart(SignalWithStartArgs),
}

pub async fn run(command: EventCommand, out: &mut impl Write) -> Result<()> {
    match command {
        EventCommand::Signal(args) => signal(args, out).await,
        EventCommand::Publish(args) => publish(args, out).await,
        EventCommand::SignalWithStart(args) => signal_with_start(args, out).await,
    }
}

async fn signal_with_start(args: SignalWithStartArgs, out: &mut impl Write) -> Result<()> {
    let mut signal = match args.body.json()? {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    signal.insert("name".into(), Value::String(args.name));
    let mut body = Map::new();
    body.insert("workflow".into(), Value::String(args.workflow));
    body.insert("idempotencyKey".into(), Value::String(args.idempotency_key));
    body.insert("signal".into(), Value::Object(signal));
    args.start.write_into(&mut body)?;
    args.tags.write_into(&mut body)?;
    let client = args.server.client()?;
    let answer: Value = client
        .post("/v1/executions/signal-with-start", &Value::Object(body))
        .await?;
    if args.json {
        return write(out, answer.to_string());
    }
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("?");
    let started = answer.get("created").and_then(Value::as_bool) == Some(true);
    let how = if started { "started, then " } else { "" };
    write(out, format!("{id} {how}{}", signal_line(&answer)))
}

async fn signal(args: SignalArgs, out: &mut impl Write) -> Result<()> {
    let id = execution_id(&args.execution)?;
    let body = args.body.json()?;
    let client = args.server.client()?;
    let path = format!("/v1/executions/{id}/signals/{}", encode(&args.name));
    let answer: Value = client.post(&path, &body).await?;
    if args.json {
        return write(out, answer.to_string());
    }
    write(out, signal_line(&answer))
}

/// Where the signal went, when the server says (`outcome`, `step`);
/// `<id> <status>` when it does not.
fn signal_line(answer: &Value) -> String {
    let step = answer.get("step").and_then(Value::as_str);
    match answer.get("outcome").and_then(Value::as_str) {
        Some("delivered") => match step {
            Some(step) => format!("delivered to step {step}"),
            None => "delivered".to_owned(),
        },
        Some("kept") => "kept: no step waits for it yet".to_owned(),
        _ => id_and_status(answer),
    }
}

async fn publish(args: PublishArgs, out: &mut impl Write) -> Result<()> {
    let body = args.body.json()?;
    let client = args.server.client()?;
    let answer: Value = client
        .post(&format!("/v1/events/{}", encode(&args.name)), &body)
        .await?;
    if args.json {
        return write(out, answer.to_string());
    }
    for line in publish_lines(&answer) {
        write(out, line)?;
    }
    Ok(())
}

/// `delivered to 2 executions:` and one id per line.
fn publish_lines(answer: &Value) -> Vec<String> {
    let ids: Vec<&str> = answer
        .get("delivered")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let head = match ids.len() {
        0 => "delivered to no execution (none waits for it)".to_owned(),
        1 => "delivered to 1 execution:".to_owned(),
        n => format!("delivered to {n} executions:"),
    };
    std::iter::once(head)
        .chain(ids.into_iter().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_signal_says_where_it_went_when_the_server_does() {
        let delivered = json!({"id": "x", "status": "running", "outcome": "delivered",
            "step": "approval", "activation": 3});
        assert_eq!(signal_line(&delivered), "delivered to step approval");
        let kept = json!({"id": "x", "status": "running", "outcome": "kept",
            "step": null, "activation": null});
        assert_eq!(signal_line(&kept), "kept: no step waits for it yet");
        let older = json!({"id": "x", "status": "running"});
        assert_eq!(signal_line(&older), "x running");
    }

    #[test]
    fn a_publish_says_how_many_and_which() {
        assert_eq!(
            publish_lines(&json!({"delivered": []})),
            vec!["delivered to no execution (none waits for it)"]
        );
        assert_eq!(
            publish_lines(&json!({"delivered": ["a", "b"]})),
            vec!["delivered to 2 executions:", "a", "b"]
        );
    }
}
