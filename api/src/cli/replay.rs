//! `retrace replay`: shows how an execution got where it is. Each event of
//! its history is applied with the engine's own fold (`apply`) from the
//! empty state, and printed with what it changed — or, with `--json`, with
//! the whole state after it. Without an execution id, lists the executions
//! in the source.
//!
//! Owns the subcommand's arguments and output. It must never start an
//! engine, change an event, or take a state from anywhere but the fold
//! (not a snapshot, not the server's view): that is what makes it a replay.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use retrace_engine::ExecutionId;
use retrace_engine::machine::{Event, ExecutionState, apply};
use serde::Serialize;

use super::client::TokenArg;
use super::diff;
use super::error::{Error, Result};
use super::history::{Listed, Source};
use super::write_line as write;
use crate::time::rfc3339;

/// Options of `retrace replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// A stopped server's data folder, or a JSON-lines file written by
    /// `retrace export` (left out with --server).
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// The execution to replay; without it, the executions in the source are
    /// listed.
    #[arg(value_name = "EXECUTION")]
    pub execution: Option<String>,
    /// Read the history from a running server instead (`http://host:port`).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    pub token: TokenArg,
    /// Stop after the event with this seq.
    #[arg(long, value_name = "SEQ")]
    pub until: Option<u64>,
    /// One JSON object per line: `{seq, type, at, hash, event, state}` with the
    /// whole state after each event (a listing: one execution per line).
    #[arg(long)]
    pub json: bool,
}

/// One line of `replay --json`: an event and the state after it.
#[derive(Debug, Serialize)]
struct StepLine<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    at: String,
    hash: &'a str,
    /// The event as the journal stores it (with its `type` tag).
    event: &'a Event,
    state: &'a ExecutionState,
}

/// One line of a `replay --json` listing.
#[derive(Debug, Serialize)]
struct ListLine<'a> {
    id: ExecutionId,
    workflow: &'a str,
    status: &'a str,
    events: u64,
}

fn to_json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::setup("cannot encode a line", e))
}

/// The source path and the execution id among the positional arguments:
/// with `--server` there is no source path, so one positional is the id.
pub fn positionals(
    source: Option<String>,
    execution: Option<String>,
    server: Option<&str>,
) -> Result<(Option<PathBuf>, Option<ExecutionId>)> {
    let (path, id) = match (server, source, execution) {
        (Some(_), Some(_), Some(_)) => {
            return Err(Error::Usage(
                "with --server, give only the execution id (no data folder or file)".into(),
            ));
        }
        (Some(_), id, None) => (None, id),
        (Some(_), None, Some(id)) => (None, Some(id)),
        (None, path, id) => (path.map(PathBuf::from), id),
    };
    let id = id
        .map(|text| {
            text.parse::<ExecutionId>()
                .map_err(|_| Error::Usage(format!("`{text}` is not an execution id (a UUID)")))
        })
        .transpose()?;
    Ok((path, id))
}

pub async fn run(args: ReplayArgs, out: &mut impl Write) -> Result<()> {
    let (path, id) = positionals(args.source, args.execution, args.server.as_deref())?;
    let source = Source::open(path.as_deref(), args.server.as_deref(), &args.token)?;
    let Some(id) = id else {
        let listed = source.executions().await?;
        return list(&listed, args.json, out);
    };
    let history = source.history(id, args.until).await?;
    if !args.json {
        write(out, format!("execution {id} in {}", source.name()))?;
    }
    let mut state = ExecutionState::empty(id);
    for r in &history {
        let previous = (!args.json).then(|| state.clone());
        apply(&mut state, r.seq, r.at_ms, &r.event)?;
        match previous {
            None => {
                let line = StepLine {
                    seq: r.seq,
                    kind: r.event.kind(),
                    at: rfc3339(r.at_ms),
                    hash: &r.hash,
                    event: &r.event,
                    state: &state,
                };
                write(out, to_json(&line)?)?;
            }
            Some(previous) => {
                write(
                    out,
                    format!("{:>5}  {}  {}", r.seq, rfc3339(r.at_ms), r.event.kind()),
                )?;
                for change in diff::changes(&previous, &state) {
                    write(out, format!("         {change}"))?;
                }
            }
        }
    }
    if !args.json {
        write(
            out,
            format!("after seq {}: {}", state.seq, state.status.as_str()),
        )?;
    }
    Ok(())
}

fn list(listed: &[Listed], json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        for l in listed {
            let line = ListLine {
                id: l.id,
                workflow: &l.workflow,
                status: &l.status,
                events: l.events,
            };
            write(out, to_json(&line)?)?;
        }
        return Ok(());
    }
    let workflow_width = listed
        .iter()
        .map(|l| l.workflow.chars().count())
        .chain([8])
        .max()
        .unwrap_or(8);
    let status_width = listed
        .iter()
        .map(|l| l.status.chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    write(
        out,
        format!(
            "{:<36}  {:<workflow_width$}  {:<status_width$}  EVENTS",
            "EXECUTION", "WORKFLOW", "STATUS"
        ),
    )?;
    for l in listed {
        write(
            out,
            format!(
                "{:<36}  {:<workflow_width$}  {:<status_width$}  {}",
                l.id.to_string(),
                l.workflow,
                l.status,
                l.events
            ),
        )?;
    }
    Ok(())
}
