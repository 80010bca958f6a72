//! `retrace audit`: who did what, from a stopped server's data folder
//! alone. First the journal's own check of every hash chain (as `retrace
//! verify` starts), then every change someone asked for, in the journal's
//! order: token changes, definitions, starts, signals and operator
//! commands, each with the access token that asked (`-` when none was
//! needed). Exit 0 only when every chain is sound.
//!
//! Owns the filters and the output. It must never write to the folder, nor
//! list a change from a chain that does not verify without saying so.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use retrace_engine::ExecutionId;
use retrace_engine::read::{AuditEntry, AuditTarget, History};
use retrace_engine::store;
use serde_json::json;

use super::error::{Error, Result};
use super::history::CHUNK;
use super::write_line as write;
use crate::time::rfc3339;

/// Options of `retrace audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// A stopped server's data folder.
    #[arg(value_name = "DATA")]
    pub data: PathBuf,
    /// Only changes at or after this: an RFC 3339 instant, or a duration
    /// back from now (`2h`, `7d`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only changes asked for by this token's name (`-`: by nobody, where
    /// no token was needed).
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// Only changes to this execution.
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// Also agents' task results and failures.
    #[arg(long)]
    pub tasks: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Lists the changes; `Ok(true)` when every chain verified.
pub async fn run(args: AuditArgs, out: &mut impl Write) -> Result<bool> {
    let execution = args
        .execution
        .as_deref()
        .map(|id| {
            id.parse::<ExecutionId>()
                .map_err(|_| Error::Usage(format!("--execution {id} is not an execution id")))
        })
        .transpose()?;
    let since_ms = args.since.as_deref().map(since).transpose()?;
    let (report, opened) = store::verify_folder(&args.data).map_err(|e| match Error::from(e) {
        Error::Locked { path, .. } => Error::Locked {
            path,
            readable_from_server: false,
        },
        e => e,
    })?;
    for defect in &report.defects {
        eprintln!("retrace: the journal does not verify: {}", defect.what);
    }
    let history = History::new(opened?, None);
    let mut from = 0;
    loop {
        let (entries, next) = history.audit(from, CHUNK, args.tasks).await?;
        for entry in entries {
            let wanted = since_ms.is_none_or(|s| entry.at_ms >= s)
                && args.actor.as_deref().is_none_or(|a| match &entry.by {
                    Some(by) => by == a,
                    None => a == "-",
                })
                && execution.is_none_or(|id| entry.target == AuditTarget::Execution(id));
            if wanted {
                write(out, line(&entry, args.json))?;
            }
        }
        match next {
            Some(n) => from = n,
            None => break,
        }
    }
    Ok(report.defects.is_empty())
}

fn line(entry: &AuditEntry, json: bool) -> String {
    let (kind, target) = match &entry.target {
        AuditTarget::Execution(id) => ("execution", id.to_string()),
        AuditTarget::Workflow(version) => ("workflow", version.clone()),
        AuditTarget::Token(name) => ("token", name.clone()),
        AuditTarget::Schedule(id) => ("schedule", id.clone()),
        AuditTarget::Breaker(capability) => ("breaker", capability.clone()),
        AuditTarget::Limits(capability) => ("limits", capability.clone()),
        AuditTarget::Webhook(id) => ("webhook", id.clone()),
    };
    if json {
        let mut v = json!({
            "position": entry.position,
            "at": rfc3339(entry.at_ms),
            "by": entry.by,
            "action": entry.action,
            kind: target,
        });
        if let Some(detail) = &entry.detail {
            v["detail"] = json!(detail);
        }
        return v.to_string();
    }
    format!(
        "{}  {:<16} {:<14} {kind} {target}{}",
        rfc3339(entry.at_ms),
        entry.by.as_deref().unwrap_or("-"),
        entry.action,
        entry
            .detail
            .as_deref()
            .map(|d| format!("  ({})", d.replace('\n', " ")))
            .unwrap_or_default()
    )
}

/// `--since`: an RFC 3339 instant, or a duration back from now.
fn since(when: &str) -> Result<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if let Ok(d) = humantime::parse_duration(when) {
        return Ok(now.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    }
    chrono::DateTime::parse_from_rfc3339(when)
        .ok()
        .and_then(|at| u64::try_from(at.timestamp_millis()).ok())
        .ok_or_else(|| {
            Error::Usage(format!(
                "--since {when}: give an RFC 3339 instant (2026-12-01T00:00:00Z) or a duration (2h, 7d)"
            ))
        })
}
