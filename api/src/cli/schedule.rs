//! `retrace schedule create|list|show|pause|resume|trigger|delete`:
//! schedules on a server, over `/v1/schedules`.
//!
//! Owns these commands' arguments (turned into the spec the API takes, or a
//! merge patch) and their short output: a schedule as a few labelled lines,
//! the list as a table, a trigger as the execution it started (the server's
//! answer with `--json`). It must never check a schedule itself: the server
//! does (`422 invalid_schedule`, every problem listed), and its error is
//! shown as it sent it.

use std::io::Write;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Map, Value, json};

use super::client::{Client, ServerArg, encode};
use super::error::Result;
use super::remote::StartOptions;
use super::write_line as write;

/// `retrace schedule …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ScheduleCommand {
    /// Creates a schedule: a workflow started on a cron timetable or every
    /// so many milliseconds.
    Create(CreateArgs),
    /// Lists every schedule, with its next fire time.
    List(Common),
    /// Shows a schedule: its spec, next fire times and what its last fire
    /// times did.
    Show(Target),
    /// Pauses a schedule: it fires nothing until resumed.
    Pause(Target),
    /// Resumes a paused schedule (what came due meanwhile is not fired).
    Resume(Target),
    /// Starts the schedule's workflow now, whatever its timetable, pause or
    /// overlap policy say.
    Trigger(Target),
    /// Deletes a schedule; what it started runs on.
    Delete(Target),
}

/// Where to send a command, and how to answer.
#[derive(Debug, Clone, Args)]
pub struct Common {
    #[command(flatten)]
    pub server: ServerArg,
    /// Print the server's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The schedule a command is for.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The schedule's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Why, recorded with the change (the `Retrace-Reason` header: visible
    /// ASCII, at most 1024 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Options of `retrace schedule create`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("timing").required(true).args(["cron", "every_ms"])))]
pub struct CreateArgs {
    /// The schedule's id (letters, digits, `_ . -`, starting with a letter
    /// or digit).
    #[arg(value_name = "ID")]
    pub id: String,
    /// The workflow each fire starts.
    #[arg(long, value_name = "NAME")]
    pub workflow: String,
    /// Input, version and priority of the executions it starts.
    #[command(flatten)]
    pub start: StartOptions,
    /// Five fields (minute hour day-of-month month day-of-week, `0 3 * *
    /// 1-5`) or an alias (`@hourly`, `@daily`, …).
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in (UTC when left
    /// out).
    #[arg(long, value_name = "ZONE", requires = "cron")]
    pub timezone: Option<String>,
    /// Fire every this many milliseconds (at least 1000).
    #[arg(long, value_name = "MS")]
    pub every_ms: Option<u64>,
    /// What a fire time does while the last execution still runs.
    #[arg(long, value_name = "POLICY",
          value_parser = ["skip", "bufferOne", "allow", "cancelPrevious"])]
    pub overlap: Option<String>,
    /// How old a fire time missed while the server was down may be and
    /// still be fired (60000 when left out).
    #[arg(long, value_name = "MS")]
    pub catchup_window_ms: Option<u64>,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// Why, recorded with the change (the `Retrace-Reason` header).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(command: ScheduleCommand, out: &mut impl Write) -> Result<()> {
    match command {
        ScheduleCommand::Create(args) => create(args, out).await,
        ScheduleCommand::List(args) => list(args, out).await,
        ScheduleCommand::Show(target) => {
            let client = target.common.server.client()?;
            let answer: Value = client.get(&path(&target.id)).await?;
            shown(&answer, target.common.json, out)
        }
        ScheduleCommand::Pause(target) => set_paused(target, true, out).await,
        ScheduleCommand::Resume(target) => set_paused(target, false, out).await,
        ScheduleCommand::Trigger(target) => trigger(target, out).await,
        ScheduleCommand::Delete(target) => {
            let client = client(&target.common, target.reason.as_deref())?;
            let answer: Value = client.delete(&path(&target.id)).await?;
            if target.common.json {
                return write(out, answer.to_string());
            }
            write(out, format!("{} deleted", text(&answer, "id")))
        }
    }
}

fn path(id: &str) -> String {
    format!("/v1/schedules/{}", encode(id))
}

/// A client of the server, saying why with every change when asked.
fn client(common: &Common, reason: Option<&str>) -> Result<Client> {
    let client = common.server.client()?;
    match reason {
        Some(reason) => client.with_reason(reason),
        None => Ok(client),
    }
}

async fn create(args: CreateArgs, out: &mut impl Write) -> Result<()> {
    let mut spec = Map::new();
    spec.insert("id".into(), Value::String(args.id));
    spec.insert("workflow".into(), Value::String(args.workflow));
    args.start.write_into(&mut spec)?;
    let optional = [
        ("cron", args.cron.map(Value::String)),
        ("timezone", args.timezone.map(Value::String)),
        ("everyMs", args.every_ms.map(Value::from)),
        ("overlap", args.overlap.map(Value::String)),
        ("catchupWindowMs", args.catchup_window_ms.map(Value::from)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            spec.insert(name.into(), value);
        }
    }
    if args.paused {
        spec.insert("paused".into(), Value::Bool(true));
    }
    let client = client(&args.common, args.reason.as_deref())?;
    let answer: Value = client.post("/v1/schedules", &Value::Object(spec)).await?;
    shown(&answer, args.common.json, out)
}

async fn set_paused(target: Target, paused: bool, out: &mut impl Write) -> Result<()> {
    let client = client(&target.common, target.reason.as_deref())?;
    let answer: Value = client
        .patch(&path(&target.id), &json!({ "paused": paused }))
        .await?;
    shown(&answer, target.common.json, out)
}

async fn trigger(target: Target, out: &mut impl Write) -> Result<()> {
    let client = client(&target.common, target.reason.as_deref())?;
    let answer: Value = client
        .post(&format!("{}/trigger", path(&target.id)), &json!({}))
        .await?;
    if target.common.json {
        return write(out, answer.to_string());
    }
    let execution = &answer["execution"];
    write(
        out,
        format!(
            "{} triggered: execution {} {}",
            text(&answer["schedule"], "id"),
            text(execution, "id"),
            text(execution, "status")
        ),
    )
}

async fn list(args: Common, out: &mut impl Write) -> Result<()> {
    let client = args.server.client()?;
    let answer: Value = client.get("/v1/schedules").await?;
    if args.json {
        return write(out, answer.to_string());
    }
    let schedules = answer["schedules"].as_array().cloned().unwrap_or_default();
    for line in table(&schedules) {
        write(out, line)?;
    }
    Ok(())
}

/// A schedule as the server answered it: as JSON, or as [`lines`].
fn shown(schedule: &Value, json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        return write(out, schedule.to_string());
    }
    for line in lines(schedule) {
        write(out, line)?;
    }
    Ok(())
}

/// A text field of `v`, or `-`.
fn text(v: &Value, name: &str) -> String {
    match &v[name] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// When it fires: `cron 0 3 * * * (Europe/Berlin)` or `every 60000 ms`.
fn timing(s: &Value) -> String {
    match (s["cron"].as_str(), s["everyMs"].as_u64()) {
        (Some(cron), _) => match s["timezone"].as_str() {
            Some(zone) => format!("cron {cron} ({zone})"),
            None => format!("cron {cron} (UTC)"),
        },
        (None, Some(every)) => format!("every {every} ms"),
        (None, None) => "-".to_owned(),
    }
}

fn state(s: &Value) -> &'static str {
    if s["paused"].as_bool() == Some(true) {
        "paused"
    } else {
        "active"
    }
}

/// `text` followed by `by <token>` when the server names one.
fn by(s: &Value, at: &str, who: &str) -> String {
    match s[who].as_str() {
        Some(name) => format!("{} by {name}", text(s, at)),
        None => text(s, at),
    }
}

/// A schedule, one labelled line per field, then what its last fire times
/// did, newest first.
fn lines(s: &Value) -> Vec<String> {
    let counts = &s["counts"];
    let count = |name: &str| counts[name].as_u64().unwrap_or(0);
    let workflow = match s["version"].as_str() {
        Some(version) => format!("{} (version {version})", text(s, "workflow")),
        None => format!("{} (newest version)", text(s, "workflow")),
    };
    let next: Vec<&str> = s["nextFireTimes"]
        .as_array()
        .map(|times| times.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut lines = vec![
        format!("schedule   {}", text(s, "id")),
        format!("workflow   {workflow}"),
        format!("input      {}", s["input"]),
        format!("timing     {}", timing(s)),
        format!("overlap    {}", text(s, "overlap")),
        format!("catch-up   {} ms", text(s, "catchupWindowMs")),
        format!("priority   {}", text(s, "priority")),
        format!("state      {}", state(s)),
        format!("created    {}", by(s, "createdAt", "createdBy")),
        format!("updated    {}", by(s, "updatedAt", "updatedBy")),
        format!(
            "fired      {} (skipped {}, missed {}, failed {})",
            count("fired"),
            count("skipped"),
            count("missed"),
            count("failed")
        ),
        format!("last       {}", text(s, "lastExecution")),
    ];
    if let Some(buffered) = s["bufferedFireTime"].as_str() {
        lines.push(format!("buffered   {buffered}"));
    }
    lines.push(format!(
        "next       {}",
        if next.is_empty() {
            "-".to_owned()
        } else {
            next.join(", ")
        }
    ));
    let recent = s["recent"].as_array().cloned().unwrap_or_default();
    if !recent.is_empty() {
        lines.push("recent".to_owned());
    }
    for r in &recent {
        let what = match r["outcome"].as_str() {
            Some("started" | "triggered") => {
                let status = r["executionStatus"]
                    .as_str()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                format!("{}{status}", text(r, "execution"))
            }
            Some("missed") => format!("through {}", text(r, "lastMissed")),
            Some("failed") => text(r, "error"),
            _ => String::new(),
        };
        let line = format!("  {}  {:<9}  {what}", text(r, "at"), text(r, "outcome"));
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// `ID  WORKFLOW  TIMING  STATE  NEXT  FIRED`, one schedule a line.
fn table(schedules: &[Value]) -> Vec<String> {
    let rows: Vec<[String; 6]> = schedules
        .iter()
        .map(|s| {
            [
                text(s, "id"),
                text(s, "workflow"),
                timing(s),
                state(s).to_owned(),
                s["nextFireTimes"][0].as_str().unwrap_or("-").to_owned(),
                s["counts"]["fired"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    let header = ["ID", "WORKFLOW", "TIMING", "STATE", "NEXT", "FIRED"];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 6]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        line
    };
    std::iter::once(line(header))
        .chain(rows.iter().map(|r| {
            line([
                r[0].as_str(),
                r[1].as_str(),
                r[2].as_str(),
                r[3].as_str(),
                r[4].as_str(),
                r[5].as_str(),
            ])
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Value {
        json!({"id": "nightly", "workflow": "greet", "input": {"userId": 7},
               "cron": "0 3 * * *", "timezone": "Europe/Berlin", "overlap": "skip",
               "catchupWindowMs": 60000, "paused": false,
               "createdAt": "2026-12-03T09:30:00.000Z", "createdBy": "root",
               "updatedAt": "2026-12-03T09:31:00.000Z",
               "counts": {"fired": 2, "skipped": 1, "missed": 0, "failed": 0},
               "lastExecution": "01a1fb96-2826-7012-96b6-9bd448d552cf",
               "nextFireTimes": ["2026-12-04T02:00:00.000Z", "2026-12-05T02:00:00.000Z"],
               "recent": [
                   {"at": "2026-12-03T09:32:00.000Z", "recordedAt": "2026-12-03T09:32:00.000Z",
                    "outcome": "triggered", "execution": "01a1fb96-2826-7012-96b6-9bd448d552cf",
                    "executionStatus": "running"},
                   {"at": "2026-12-03T02:00:00.000Z", "recordedAt": "2026-12-03T02:00:00.001Z",
                    "outcome": "skipped"}]})
    }

    #[test]
    fn a_schedule_is_shown_as_labelled_lines() {
        assert_eq!(
            lines(&schedule()),
            vec![
                "schedule   nightly",
                "workflow   greet (newest version)",
                "input      {\"userId\":7}",
                "timing     cron 0 3 * * * (Europe/Berlin)",
                "overlap    skip",
                "catch-up   60000 ms",
                "priority   -",
                "state      active",
                "created    2026-12-03T09:30:00.000Z by root",
                "updated    2026-12-03T09:31:00.000Z",
                "fired      2 (skipped 1, missed 0, failed 0)",
                "last       01a1fb96-2826-7012-96b6-9bd448d552cf",
                "next       2026-12-04T02:00:00.000Z, 2026-12-05T02:00:00.000Z",
                "recent",
                "  2026-12-03T09:32:00.000Z  triggered  01a1fb96-2826-7012-96b6-9bd448d552cf (running)",
                "  2026-12-03T02:00:00.000Z  skipped",
            ]
        );
    }

    #[test]
    fn the_list_is_a_table_aligned_on_its_widest_values() {
        let every = json!({"id": "tick", "workflow": "a-long-workflow", "everyMs": 1000,
                           "paused": true, "nextFireTimes": [], "counts": {"fired": 12}});
        assert_eq!(
            table(&[schedule(), every]),
            vec![
                "ID       WORKFLOW         TIMING                          STATE   NEXT                      FIRED",
                "nightly  greet            cron 0 3 * * * (Europe/Berlin)  active  2026-12-04T02:00:00.000Z  2",
                "tick     a-long-workflow  every 1000 ms                   paused  -                         12",
            ]
        );
    }
}
