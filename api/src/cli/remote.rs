//! The client conveniences `start` and `agents`, and what the client
//! subcommands share: reading an execution id, a JSON argument (`@file`
//! reads it from a file), and telling a final status and its exit code.
//!
//! Owns turning command-line arguments into the API's requests and its
//! answers into short output (or the answer's JSON with `--json`). It must
//! never decide anything the server decides: every check is the server's,
//! and its error is shown as it sent it.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use retrace_engine::ExecutionId;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::client::{Client, ServerArg, server_error};
use super::error::{Error, Result};
use super::write_line as write;

/// Options of `retrace start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The workflow's name.
    #[arg(value_name = "WORKFLOW")]
    pub workflow: String,
    #[command(flatten)]
    pub options: StartOptions,
    #[command(flatten)]
    pub tags: TagArgs,
    /// Starting again with the same key starts nothing and answers with the
    /// first execution.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer as JSON instead of the execution id alone.
    #[arg(long)]
    pub json: bool,
    /// Wait until the execution has ended; print its id and final status
    /// (with --json, the execution as `GET /v1/executions/{id}` shows it).
    /// Exits 0 when it completed, 1 when it ended otherwise.
    #[arg(long)]
    pub wait: bool,
}

/// What a new execution is started with (`start`, `signal-with-start`).
#[derive(Debug, Clone, Args)]
pub struct StartOptions {
    /// The input, as JSON (`@file.json` reads it from a file).
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
    /// A version hash to start instead of the newest version.
    #[arg(long = "workflow-version", value_name = "HASH")]
    pub version: Option<String>,
    /// How urgent its tasks are, 0 (the default) to 9: agents are served by
    /// priority, aged by waiting.
    #[arg(long, value_name = "0-9", value_parser = clap::value_parser!(u8).range(0..=9))]
    pub priority: Option<u8>,
}

/// The tags a new execution is started with (`start`, `signal-with-start`).
#[derive(Debug, Clone, Args)]
pub struct TagArgs {
    /// A tag to find the execution by, `KEY=VALUE` (repeat for more).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
}

impl TagArgs {
    /// Writes the tags given into a start's body as `tags`.
    pub fn write_into(self, body: &mut Map<String, Value>) -> Result<()> {
        if self.tags.is_empty() {
            return Ok(());
        }
        let mut tags = Map::new();
        for tag in self.tags {
            let Some((key, value)) = tag.split_once('=') else {
                return Err(Error::Usage(format!("--tag `{tag}` is not KEY=VALUE")));
            };
            tags.insert(key.to_owned(), Value::String(value.to_owned()));
        }
        body.insert("tags".into(), Value::Object(tags));
        Ok(())
    }
}

impl StartOptions {
    /// Writes the options given into a start's body.
    pub fn write_into(self, body: &mut Map<String, Value>) -> Result<()> {
        if let Some(version) = self.version {
            body.insert("version".into(), Value::String(version));
        }
        if let Some(input) = self.input {
            body.insert("input".into(), json_arg("--input", &input)?);
        }
        if let Some(priority) = self.priority {
            body.insert("priority".into(), Value::from(priority));
        }
        Ok(())
    }
}

/// How long one start-and-wait request waits (the API's most).
const START_WAIT_MS: u64 = 60_000;

pub async fn start(args: StartArgs, out: &mut impl Write) -> Result<()> {
    let client = args.server.client()?;
    let mut body = Map::new();
    body.insert("workflow".into(), Value::String(args.workflow));
    args.options.write_into(&mut body)?;
    args.tags.write_into(&mut body)?;
    if let Some(key) = args.idempotency_key {
        body.insert("idempotencyKey".into(), Value::String(key));
    }
    if args.wait {
        body.insert("waitMs".into(), Value::from(START_WAIT_MS));
    }
    let wait = Duration::from_millis(START_WAIT_MS) + Duration::from_secs(30);
    let answer: Value = client
        .post_waiting("/v1/executions", &Value::Object(body), wait)
        .await?;
    let id = answer
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    if !args.wait {
        return match args.json {
            true => write(out, answer.to_string()),
            false => write(out, id),
        };
    }
    // Still running after the server's longest wait: follow it to its end.
    let ended = match status_of(&answer) {
        Some(status) if is_final(status) => answer,
        _ => {
            let execution = execution_id(&id)?;
            follow_to_end(&client, execution).await?;
            client.get(&format!("/v1/executions/{execution}")).await?
        }
    };
    let status = status_of(&ended).unwrap_or("?").to_owned();
    match args.json {
        true => write(out, ended.to_string())?,
        false => write(out, format!("{id} {status}"))?,
    }
    self::ended(id, status)
}

/// The outcome an ended execution means for the exit code: `Ok` when it
/// completed, [`Error::Ended`] (exit code 1) for any other final status.
pub fn ended(id: impl std::fmt::Display, status: String) -> Result<()> {
    if status == "completed" {
        Ok(())
    } else {
        Err(Error::Ended {
            id: id.to_string(),
            status,
        })
    }
}

fn status_of(execution: &Value) -> Option<&str> {
    execution.get("status").and_then(Value::as_str)
}

/// Whether an execution's status is final (its terminal event is stored).
pub fn is_final(status: &str) -> bool {
    TERMINAL.contains(&format!("execution_{status}").as_str())
}

/// Reads the execution's stream until its terminal event.
async fn follow_to_end(client: &Client, id: ExecutionId) -> Result<()> {
    let path = format!("/v1/executions/{id}/events/stream");
    let url = format!("{}{path}", client.base());
    let mut stream = client.stream(&path).await?;
    while let Some(frame) = stream.next().await? {
        if frame.event.as_deref() == Some("error") {
            return Err(server_error(&url, 500, frame.data.as_bytes()));
        }
        if frame
            .event
            .as_deref()
            .is_some_and(|kind| TERMINAL.contains(&kind))
        {
            return Ok(());
        }
    }
    Ok(())
}

/// A JSON argument: the text itself, or with `@file` the file's content.
/// `flag` names it in the message when it is not JSON (exit code 2).
pub fn json_arg(flag: &str, text: &str) -> Result<Value> {
    let (what, json) = match text.strip_prefix('@') {
        Some(file) => (
            file.to_owned(),
            std::fs::read_to_string(file)
                .map_err(|e| Error::io(format!("cannot read {file}"), e))?,
        ),
        None => (flag.to_owned(), text.to_owned()),
    };
    serde_json::from_str(&json).map_err(|e| Error::Usage(format!("{what} is not JSON: {e}")))
}

/// An execution id given on the command line (exit code 2 if not a UUID).
pub fn execution_id(text: &str) -> Result<ExecutionId> {
    text.parse()
        .map_err(|_| Error::Usage(format!("`{text}` is not an execution id (a UUID)")))
}

/// Options of `retrace agents`.
#[derive(Debug, Clone, Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentRow {
    id: String,
    name: String,
    capabilities: Vec<String>,
    status: Value,
    active_tasks: u64,
    task_count: u64,
}

#[derive(Debug, Deserialize)]
struct AgentList {
    agents: Vec<AgentRow>,
}

pub async fn agents(args: AgentsArgs, out: &mut impl Write) -> Result<()> {
    let client = args.server.client()?;
    if args.json {
        let answer: Value = client.get("/v1/agents").await?;
        return write(out, answer.to_string());
    }
    let list: AgentList = client.get("/v1/agents").await?;
    let name_width = list
        .agents
        .iter()
        .map(|a| a.name.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    write(
        out,
        format!(
            "{:<36}  {:<name_width$}  {:<7}  {:>6}  {:>6}  CAPABILITIES",
            "AGENT", "NAME", "STATUS", "ACTIVE", "TASKS"
        ),
    )?;
    for a in &list.agents {
        let status = a.status.as_str().unwrap_or("?");
        write(
            out,
            format!(
                "{:<36}  {:<name_width$}  {:<7}  {:>6}  {:>6}  {}",
                a.id,
                a.name,
                status,
                a.active_tasks,
                a.task_count,
                a.capabilities.join(",")
            ),
        )?;
    }
    Ok(())
}

/// The kinds of event that end an execution.
pub const TERMINAL: [&str; 5] = [
    "execution_completed",
    "execution_failed",
    "execution_compensated",
    "execution_cancelled",
    "execution_terminated",
];
