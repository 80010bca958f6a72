//! Where `replay` and `export` read histories from: a stopped server's data
//! folder, a JSON-lines export, or a running server. Each gives the same
//! thing — an execution's events with their seq, time and hash — so folding
//! and printing are written once.
//!
//! Owns choosing the source, reading an export back, and paging a server's
//! history; a data folder is read through the engine's read side, opened
//! read-only (refusing a folder a server holds or one that holds no
//! journal, never creating one, never writing to it). It must never fold
//! with anything but `apply` from the empty state, and never skip or
//! reorder an event: a replay shows exactly what the journal holds.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use retrace_engine::ExecutionId;
use retrace_engine::machine::{Event, ExecutionState, apply};
use retrace_engine::read::History;
use serde::Deserialize;
use serde_json::Value;

use super::client::{Client, TokenArg};
use super::error::{Error, Result};

/// How many events one read (or one page) takes.
pub const CHUNK: usize = 1000;

/// One event of a history, wherever it was read from.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub execution: ExecutionId,
    pub seq: u64,
    pub at_ms: u64,
    pub event: Event,
    pub hash: String,
}

/// One execution of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: ExecutionId,
    pub workflow: String,
    pub status: String,
    pub events: u64,
}

/// A source of histories.
#[derive(Debug)]
pub enum Source {
    Folder { path: PathBuf, history: History },
    Export { path: PathBuf },
    Server(Client),
}

impl Source {
    /// The source named on the command line: `--server <url>`, else a path
    /// (a data folder, or an export file).
    pub fn open(path: Option<&Path>, server: Option<&str>, how: &TokenArg) -> Result<Source> {
        match (path, server) {
            (Some(_), Some(_)) => Err(Error::Usage(
                "give either a data folder, an export file or --server, not two".into(),
            )),
            (None, Some(url)) => Ok(Source::Server(Client::connect(url, how)?)),
            (None, None) => Err(Error::Usage(
                "name a data folder, an export file, or --server <url>".into(),
            )),
            (Some(path), None) if path.is_dir() => Ok(Source::Folder {
                path: path.to_owned(),
                history: History::open_read_only(path)?,
            }),
            (Some(path), None) if path.is_file() => Ok(Source::Export {
                path: path.to_owned(),
            }),
            (Some(path), None) => Err(Error::NotADataFolder {
                path: path.to_owned(),
                why: "there is no such folder or file".into(),
            }),
        }
    }

    /// How the source is named in messages.
    pub fn name(&self) -> String {
        match self {
            Source::Folder { path, .. } | Source::Export { path } => path.display().to_string(),
            Source::Server(client) => client.base().to_owned(),
        }
    }

    /// Every execution in the source, in id (start) order.
    pub async fn executions(&self) -> Result<Vec<Listed>> {
        match self {
            Source::Folder { history, .. } => folder_executions(history).await,
            Source::Export { path } => export_executions(path),
            Source::Server(client) => server_executions(client).await,
        }
    }

    /// The events of one execution with `seq <= until`, oldest first.
    pub async fn history(&self, id: ExecutionId, until: Option<u64>) -> Result<Vec<Recorded>> {
        let until = until.unwrap_or(u64::MAX);
        let events = match self {
            Source::Folder { history, .. } => folder_history(history, id, until).await?,
            Source::Export { path } => {
                let mut events = Vec::new();
                read_export(path, |r| {
                    if r.execution == id && r.seq <= until {
                        events.push(r);
                    }
                    Ok(())
                })?;
                events
            }
            Source::Server(client) => server_history(client, id, until).await?,
        };
        if events.is_empty() {
            return Err(Error::UnknownExecution {
                id: id.to_string(),
                source_name: self.name(),
            });
        }
        Ok(events)
    }
}

async fn folder_executions(history: &History) -> Result<Vec<Listed>> {
    let mut listed = Vec::new();
    for stored in history.all_executions().await? {
        let id = stored.id;
        let listing = match history.fold(id, u64::MAX).await {
            Ok(state) => {
                let state = state.unwrap_or_else(|| ExecutionState::empty(id));
                Listed {
                    id,
                    workflow: state.workflow,
                    status: state.status.as_str().to_owned(),
                    events: stored.last_seq,
                }
            }
            Err(e) => Listed {
                id,
                workflow: String::new(),
                status: format!("unreadable ({e})"),
                events: stored.last_seq,
            },
        };
        listed.push(listing);
    }
    Ok(listed)
}

async fn folder_history(history: &History, id: ExecutionId, until: u64) -> Result<Vec<Recorded>> {
    match history.events_until(id, until).await {
        Ok(events) => Ok(events
            .into_iter()
            .map(|e| Recorded {
                execution: id,
                seq: e.seq,
                at_ms: e.at_ms,
                hash: e.hash_hex(),
                event: e.event,
            })
            .collect()),
        // No events: the caller says which source it was not found in.
        Err(retrace_engine::Error::UnknownExecution(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// One line of an export, or one event of a server's pages or streams: the
/// event view of `docs/api.md`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    #[serde(default, alias = "execution")]
    pub execution_id: Option<ExecutionId>,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: String,
    pub data: Value,
    #[serde(default)]
    pub hash: String,
}

impl EventLine {
    /// The event it shows, as recorded for `execution`.
    pub fn recorded(self, execution: ExecutionId) -> std::result::Result<Recorded, String> {
        let mut fields = match self.data {
            Value::Object(fields) => fields,
            other => return Err(format!("`data` is not an object: {other}")),
        };
        fields.insert("type".into(), Value::String(self.kind.clone()));
        let event: Event = serde_json::from_value(Value::Object(fields))
            .map_err(|e| format!("event {} ({}) does not decode: {e}", self.seq, self.kind))?;
        let at_ms = parse_rfc3339_ms(&self.at)
            .ok_or_else(|| format!("`at` is not an RFC 3339 time: {}", self.at))?;
        Ok(Recorded {
            execution,
            seq: self.seq,
            at_ms,
            event,
            hash: self.hash,
        })
    }
}

/// Calls `each` with every event of the export at `path`, in file order.
fn read_export(path: &Path, mut each: impl FnMut(Recorded) -> Result<()>) -> Result<()> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let bad = |line: u64, why: String| Error::BadExport {
        path: path.to_owned(),
        line,
        why,
    };
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = n as u64 + 1;
        let line = line.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: EventLine = serde_json::from_str(&line)
            .map_err(|e| bad(n, format!("not an exported event: {e}")))?;
        let Some(execution) = parsed.execution_id else {
            return Err(bad(n, "the event names no `executionId`".into()));
        };
        each(parsed.recorded(execution).map_err(|why| bad(n, why))?)?;
    }
    Ok(())
}

fn export_executions(path: &Path) -> Result<Vec<Listed>> {
    let mut states: BTreeMap<ExecutionId, (ExecutionState, u64)> = BTreeMap::new();
    read_export(path, |r| {
        let (state, events) = states
            .entry(r.execution)
            .or_insert_with(|| (ExecutionState::empty(r.execution), 0));
        *events += 1;
        Ok(apply(state, r.seq, r.at_ms, &r.event)?)
    })?;
    Ok(states
        .into_iter()
        .map(|(id, (state, events))| Listed {
            id,
            workflow: state.workflow,
            status: state.status.as_str().to_owned(),
            events,
        })
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    executions: Vec<ListItem>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListItem {
    id: ExecutionId,
    workflow: String,
    status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastSeq {
    last_seq: u64,
}

/// Every execution a server lists, with its number of events.
pub async fn server_executions(client: &Client) -> Result<Vec<Listed>> {
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/executions?limit={CHUNK}&cursor={c}"),
            None => format!("/v1/executions?limit={CHUNK}"),
        };
        let page: ListPage = client.get(&path).await?;
        for item in page.executions {
            let one: LastSeq = client.get(&format!("/v1/executions/{}", item.id)).await?;
            listed.push(Listed {
                id: item.id,
                workflow: item.workflow,
                status: item.status,
                events: one.last_seq,
            });
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(listed),
        }
    }
}

#[derive(Debug, Deserialize)]
struct EventsPage {
    events: Vec<EventLine>,
}

async fn server_history(client: &Client, id: ExecutionId, until: u64) -> Result<Vec<Recorded>> {
    let mut events = Vec::new();
    let mut after = 0;
    while after < until {
        let path = format!("/v1/executions/{id}/events?after={after}&limit={CHUNK}");
        let page: EventsPage = client.get(&path).await?;
        if page.events.is_empty() {
            break;
        }
        for line in page.events {
            let seq = line.seq;
            after = seq;
            if seq > until {
                break;
            }
            let recorded = line.recorded(id).map_err(|why| Error::Http {
                url: format!("{}{path}", client.base()),
                why,
            })?;
            events.push(recorded);
        }
    }
    Ok(events)
}

/// An RFC 3339 time (as `crate::time::rfc3339` writes it) in milliseconds
/// since the Unix epoch.
fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let instant = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(instant.timestamp_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::rfc3339;

    #[test]
    fn times_read_back_to_the_millisecond() {
        for ms in [0, 1, 1_700_000_000_123, 4_102_444_800_999] {
            assert_eq!(parse_rfc3339_ms(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), None);
    }
}
