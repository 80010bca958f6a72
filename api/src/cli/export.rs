//! `retrace export`: histories as JSON lines on standard output, one event
//! per line in the shape of the engine-wide stream's events
//! (`{"position","executionId","workflow","seq","type","at","data","hash"}`,
//! see `docs/api.md`), every execution in the journal's global order, or
//! one execution's events in seq order. `retrace replay` reads the result
//! back.
//!
//! Owns reading a stopped server's data folder in position order, and
//! cutting a live server's engine-wide stream at a consistent point: every
//! execution listed when the export begins, each up to the last event it
//! had then. It must never change an event in the source.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use clap::Args;
use retrace_engine::ExecutionId;
use retrace_engine::machine::Event;
use retrace_engine::read::{GlobalEvent, History, HistoryEvent};
use serde::Deserialize;

use super::client::{Client, TokenArg, server_error};
use super::error::{Error, Result};
use super::history::{self, CHUNK, EventLine};
use super::replay::positionals;
use super::write_line as write;
use crate::views::GlobalEventView;

/// Options of `retrace export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A stopped server's data folder (left out with --server).
    #[arg(value_name = "DATA")]
    pub source: Option<String>,
    /// Only this execution's events; without it, every execution's.
    #[arg(value_name = "EXECUTION")]
    pub execution: Option<String>,
    /// Read from a running server instead (`http://host:port`).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    #[command(flatten)]
    pub token: TokenArg,
}

pub async fn run(args: ExportArgs, out: &mut impl Write) -> Result<()> {
    let (path, id) = positionals(args.source, args.execution, args.server.as_deref())?;
    match (path, args.server) {
        (Some(path), None) => {
            if path.is_file() {
                return Err(Error::Usage(format!(
                    "{} is a file: export reads a data folder or a server",
                    path.display()
                )));
            }
            let history = History::open_read_only(&path)?;
            match id {
                Some(id) => folder_one(&history, &path, id, out).await,
                None => folder_all(&history, out).await,
            }
        }
        (None, Some(url)) => {
            let client = Client::connect(&url, &args.token)?;
            server(&client, id, out).await
        }
        (Some(_), Some(_)) | (None, None) => Err(Error::Usage(
            "name a data folder, or --server <url>, to export from".into(),
        )),
    }
}

fn line(event: &GlobalEvent) -> Result<String> {
    serde_json::to_string(&GlobalEventView::from_global(event)).map_err(|e| {
        Error::setup(
            format!(
                "cannot encode event {} of {}",
                event.event.seq, event.execution
            ),
            e,
        )
    })
}

fn workflow_of(event: &Event) -> Option<String> {
    match event {
        Event::ExecutionStarted { workflow, .. } => Some(workflow.clone()),
        _ => None,
    }
}

async fn folder_one(
    history: &History,
    path: &Path,
    id: ExecutionId,
    out: &mut impl Write,
) -> Result<()> {
    let mut workflow = String::new();
    let mut from = 1;
    loop {
        let page: Vec<HistoryEvent> = match history.events(id, from, CHUNK).await {
            Ok(page) => page,
            Err(retrace_engine::Error::UnknownExecution(_)) => {
                return Err(Error::UnknownExecution {
                    id: id.to_string(),
                    source_name: path.display().to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = page.last() else {
            return Ok(());
        };
        from = last.seq + 1;
        for event in page {
            if let Some(w) = workflow_of(&event.event) {
                workflow = w;
            }
            let global = GlobalEvent {
                execution: id,
                workflow: workflow.clone(),
                event,
            };
            write(out, line(&global)?)?;
        }
    }
}

async fn folder_all(history: &History, out: &mut impl Write) -> Result<()> {
    let mut names = history.names();
    let mut from = 1;
    loop {
        let (events, next) = history.global_events(from, CHUNK, &mut names).await?;
        for event in &events {
            write(out, line(event)?)?;
        }
        match next {
            Some(next) => from = next,
            None => return Ok(()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct One {
    workflow: String,
    last_seq: u64,
}

/// Reads the engine-wide stream from the start and stops once every
/// execution that existed when the export began has reached the last event
/// it had then; later events are left out, so the export is one cut.
async fn server(client: &Client, id: Option<ExecutionId>, out: &mut impl Write) -> Result<()> {
    let (mut remaining, path): (BTreeMap<ExecutionId, u64>, String) = match id {
        Some(id) => {
            let one: One = client.get(&format!("/v1/executions/{id}")).await?;
            (
                BTreeMap::from([(id, one.last_seq)]),
                format!("/v1/events/stream?workflow={}", one.workflow),
            )
        }
        None => (
            history::server_executions(client)
                .await?
                .into_iter()
                .map(|l| (l.id, l.events))
                .collect(),
            "/v1/events/stream".to_owned(),
        ),
    };
    remaining.retain(|_, last| *last > 0);
    let until = remaining.clone();
    if remaining.is_empty() {
        return Ok(());
    }
    let url = format!("{}{path}", client.base());
    let mut stream = client.stream(&path).await?;
    while let Some(frame) = stream.next().await? {
        if frame.event.as_deref() == Some("error") {
            return Err(server_error(&url, 500, frame.data.as_bytes()));
        }
        let event: EventLine = serde_json::from_str(&frame.data).map_err(|e| Error::Http {
            url: url.clone(),
            why: format!("an event that is not what the API sends: {e}"),
        })?;
        let Some(execution) = event.execution_id else {
            continue;
        };
        match until.get(&execution) {
            Some(last) if event.seq <= *last => write(out, frame.data)?,
            Some(_) | None => continue,
        }
        if remaining.get(&execution) == Some(&event.seq) {
            remaining.remove(&execution);
            if remaining.is_empty() {
                return Ok(());
            }
        }
    }
    Err(Error::Http {
        url,
        why: "the stream ended before the export was complete (did the server stop?)".into(),
    })
}
