//! `retrace ls`: the executions a server lists (`GET /v1/executions`), in
//! start order, optionally of one workflow and/or one status; as many as
//! `--limit` asks (100 by default), or every one with `--all`, following
//! the list's cursor from page to page.
//!
//! Owns the paging and the table. It must never filter or check anything
//! itself: the filters are the server's (a status it does not know is its
//! `400 invalid_query`).

use std::io::Write;

use clap::Args;
use serde_json::{Value, json};

use super::client::{ServerArg, encode};
use super::error::{Error, Result};
use super::write_line as write;

/// Options of `retrace ls`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only executions of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only executions with this status (running, paused, compensating,
    /// compensation_failed, completed, failed, compensated, cancelled,
    /// terminated), or any of several separated by commas.
    #[arg(long, value_name = "STATUS[,STATUS]")]
    pub status: Option<String>,
    /// Only executions with this tag, `KEY=VALUE`; given more than once,
    /// only executions with every one of them.
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// Only executions started at or after this instant (RFC 3339).
    #[arg(long, value_name = "INSTANT")]
    pub started_from: Option<String>,
    /// Only executions started at or before this instant (RFC 3339).
    #[arg(long, value_name = "INSTANT")]
    pub started_to: Option<String>,
    /// Only executions that ended at or after this instant (RFC 3339).
    #[arg(long, value_name = "INSTANT")]
    pub ended_from: Option<String>,
    /// Only executions that ended at or before this instant (RFC 3339).
    #[arg(long, value_name = "INSTANT")]
    pub ended_to: Option<String>,
    /// Only executions whose id starts with these hex digits.
    #[arg(long, value_name = "HEX")]
    pub id_prefix: Option<String>,
    /// Newest first (the default is oldest first).
    #[arg(long)]
    pub newest: bool,
    /// At most this many executions, the oldest first.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "all")]
    pub limit: u64,
    /// Every execution, page after page.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub server: ServerArg,
    /// Print `{"executions": [...], "nextCursor"}` as JSON: the pages in
    /// one, with the cursor that would continue after them.
    #[arg(long)]
    pub json: bool,
}

/// The most one request asks for (the API's own cap).
const PAGE_MAX: u64 = 1000;

pub async fn run(args: ListArgs, out: &mut impl Write) -> Result<()> {
    let client = args.server.client()?;
    let wanted = if args.all { u64::MAX } else { args.limit };
    let mut filters = String::new();
    if let Some(workflow) = &args.workflow {
        filters.push_str(&format!("&workflow={}", encode(workflow)));
    }
    if let Some(status) = &args.status {
        filters.push_str(&format!("&status={}", encode(status)));
    }
    for tag in &args.tag {
        let Some((key, value)) = tag.split_once('=') else {
            return Err(Error::Usage(format!("--tag `{tag}` is not KEY=VALUE")));
        };
        filters.push_str(&format!("&tag={}", encode(&format!("{key}:{value}"))));
    }
    for (name, given) in [
        ("startedFrom", &args.started_from),
        ("startedTo", &args.started_to),
        ("endedFrom", &args.ended_from),
        ("endedTo", &args.ended_to),
        ("idPrefix", &args.id_prefix),
    ] {
        if let Some(value) = given {
            filters.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    if args.newest {
        filters.push_str("&order=newest");
    }
    let mut executions: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let left = wanted - executions.len() as u64;
        let mut path = format!("/v1/executions?limit={}{filters}", left.min(PAGE_MAX));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let page: Value = client.get(&path).await?;
        let items = page
            .get("executions")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Http {
                url: format!("{}{path}", client.base()),
                why: "the answer has no `executions` list".into(),
            })?;
        executions.extend(items.iter().take(left as usize).cloned());
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() || executions.len() as u64 >= wanted {
            break;
        }
    }
    if args.json {
        let answer = json!({"executions": executions, "nextCursor": cursor});
        return write(out, answer.to_string());
    }
    for line in table(&executions) {
        write(out, line)?;
    }
    if cursor.is_some() && !args.all {
        // Said on stderr, so the table stays what stdout holds.
        let _ = writeln!(
            std::io::stderr().lock(),
            "retrace ls: more executions follow (--all lists every one, or a larger --limit)"
        );
    }
    Ok(())
}

/// `EXECUTION  WORKFLOW  STATUS  STARTED`, one execution a line.
fn table(executions: &[Value]) -> Vec<String> {
    let field = |e: &Value, name: &str| {
        e.get(name)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let width = |name: &str, header: &str| {
        executions
            .iter()
            .map(|e| field(e, name).chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(header.len())
    };
    let (w, s) = (width("workflow", "WORKFLOW"), width("status", "STATUS"));
    std::iter::once(format!(
        "{:<36}  {:<w$}  {:<s$}  STARTED",
        "EXECUTION", "WORKFLOW", "STATUS"
    ))
    .chain(executions.iter().map(|e| {
        format!(
            "{:<36}  {:<w$}  {:<s$}  {}",
            field(e, "id"),
            field(e, "workflow"),
            field(e, "status"),
            field(e, "startTime")
        )
    }))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned_on_its_widest_values() {
        let lines = table(&[
            json!({"id": "01a1fb96-2826-7012-96b6-9bd448d552cf", "workflow": "greet",
                   "status": "compensation_failed", "startTime": "2026-11-21T00:51:24.326Z"}),
            json!({"id": "01a1fb97-0c4e-7d21-8a5b-2f6e9c3d4b10", "workflow": "a-long-name",
                   "status": "running", "startTime": "2026-11-21T00:51:25.000Z"}),
        ]);
        assert_eq!(
            lines,
            vec![
                "EXECUTION                             WORKFLOW     STATUS               STARTED",
                "01a1fb96-2826-7012-96b6-9bd448d552cf  greet        compensation_failed  2026-11-21T00:51:24.326Z",
                "01a1fb97-0c4e-7d21-8a5b-2f6e9c3d4b10  a-long-name  running              2026-11-21T00:51:25.000Z",
            ]
        );
    }
}
