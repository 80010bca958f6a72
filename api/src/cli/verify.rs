//! `retrace verify`: checks a stopped server's data folder without starting
//! an engine. First every hash chain and index (the sled journal's own
//! check, on the store alone), then every execution folded from its first
//! event with `apply` and compared with the state its newest snapshot
//! recorded. Every problem is reported by execution and seq; the exit code
//! is 0 only when there is none.
//!
//! Owns the order of the checks, the report and the progress line. It must
//! never repair what it reports, stop at the first problem, or trust a
//! snapshot: a snapshot is what is being checked, and never write to the
//! folder. (Replaying opens a journal over the store, which, as at a
//! server's start, brings the derived heads up to date — in memory only: the
//! store is opened read-only, see `retrace_engine::store::verify_folder`.)

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use retrace_engine::ExecutionId;
use retrace_engine::machine::{ExecutionState, apply};
use retrace_engine::read::{History, StoredExecution};
use retrace_engine::store::{self, JournalError};
use serde_json::Value;

use super::error::{Error, Result};
use super::history::CHUNK;
use super::write_line as write;

/// Options of `retrace verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// A stopped server's data folder.
    #[arg(value_name = "DATA")]
    pub data: PathBuf,
}

/// How often (in events) the progress line is updated.
const PROGRESS_EVERY: u64 = 1000;

/// One problem found: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    execution: ExecutionId,
    seq: u64,
    what: String,
}

/// Runs the checks; `Ok(true)` when the folder is sound.
pub async fn run(args: VerifyArgs, out: &mut impl Write) -> Result<bool> {
    let (report, opened) = store::verify_folder(&args.data).map_err(|e| match Error::from(e) {
        // `verify` checks a stopped server's folder; it has no --server.
        Error::Locked { path, .. } => Error::Locked {
            path,
            readable_from_server: false,
        },
        e => e,
    })?;
    let mut findings: Vec<Finding> = report
        .defects
        .iter()
        .map(|d| Finding {
            execution: d.execution,
            seq: d.seq,
            what: d.what.clone(),
        })
        .collect();
    for f in &findings {
        write(out, f.what.clone())?;
    }
    // The same store under a journal, to read histories and snapshots. A
    // journal refuses to open over a damaged tail; what is wrong with it was
    // reported above.
    let history = match opened {
        Ok(store) => Some(History::new(store, None)),
        Err(e) => {
            let f = Finding {
                execution: ExecutionId::NIL,
                seq: 0,
                what: format!("the journal cannot be opened to replay executions: {e}"),
            };
            write(out, f.what.clone())?;
            findings.push(f);
            None
        }
    };
    let mut replayed = Replayed::default();
    if let Some(history) = &history {
        let executions = history.all_executions().await?;
        let mut progress = Progress::new(executions.iter().map(|e| e.last_seq).sum());
        let known: BTreeSet<(ExecutionId, u64)> =
            findings.iter().map(|f| (f.execution, f.seq)).collect();
        for stored in &executions {
            for f in replay(history, stored, &known, &mut progress, &mut replayed).await {
                write(out, f.what.clone())?;
                findings.push(f);
            }
        }
        progress.done();
    }
    let verdict = if findings.is_empty() {
        "sound".to_owned()
    } else {
        format!(
            "{} problem{}",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" }
        )
    };
    write(
        out,
        format!(
            "verify {}: {} events in {} hash chains checked; {} executions replayed, {} snapshots compared: {verdict}",
            args.data.display(),
            report.events,
            report.chains,
            replayed.executions,
            replayed.snapshots,
        ),
    )?;
    Ok(findings.is_empty())
}

#[derive(Debug, Default)]
struct Replayed {
    executions: u64,
    snapshots: u64,
}

/// Folds one execution from its first event and compares the fold with its
/// newest snapshot at that snapshot's seq.
async fn replay(
    history: &History,
    stored: &StoredExecution,
    known: &BTreeSet<(ExecutionId, u64)>,
    progress: &mut Progress,
    replayed: &mut Replayed,
) -> Vec<Finding> {
    let id = stored.id;
    let mut findings = Vec::new();
    let mut found = |seq: u64, what: String| {
        findings.push(Finding {
            execution: id,
            seq,
            what: format!("execution {id} seq {seq}: {what}"),
        });
    };
    let snapshot = match history.snapshot(id).await {
        Ok(Some(s)) if s.seq > stored.last_seq => {
            found(
                s.seq,
                format!(
                    "the snapshot is at seq {} but the history ends at seq {}",
                    s.seq, stored.last_seq
                ),
            );
            None
        }
        Ok(Some(s)) => match s.state {
            Ok(state) => Some((s.seq, state)),
            Err(e) => {
                found(s.seq, format!("the snapshot does not decode: {e}"));
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            found(0, format!("the snapshot cannot be read: {e}"));
            None
        }
    };
    let mut state = ExecutionState::empty(id);
    let mut from = 1;
    let mut complete = false;
    // Left early (`break 'read`) when the history cannot be folded further.
    'read: {
        while from <= stored.last_seq {
            let events = match history.events(id, from, CHUNK).await {
                Ok(events) => events,
                // A damaged record the store check named already: one problem,
                // reported once.
                Err(retrace_engine::Error::Journal(JournalError::Corrupt { seq, .. }))
                    if known.contains(&(id, seq)) =>
                {
                    break 'read;
                }
                Err(e @ retrace_engine::Error::Undecodable { seq, .. }) => {
                    found(seq, format!("replay stops: {e}"));
                    break 'read;
                }
                Err(e) => {
                    found(from, format!("the history cannot be read from here: {e}"));
                    break 'read;
                }
            };
            let Some(last) = events.last() else {
                found(from, "the history ends before its head says".into());
                break 'read;
            };
            from = last.seq + 1;
            for event in &events {
                progress.tick();
                if let Err(e) = apply(&mut state, event.seq, event.at_ms, &event.event) {
                    found(event.seq, format!("replay stops: {e}"));
                    break 'read;
                }
                if let Some((seq, recorded)) = &snapshot
                    && *seq == event.seq
                {
                    replayed.snapshots += 1;
                    if *recorded != state {
                        found(
                            *seq,
                            format!(
                                "the snapshot differs from the replay of events 1 to {seq} in {}",
                                differing_fields(recorded, &state).join(", ")
                            ),
                        );
                    }
                }
            }
        }
        complete = true;
    }
    if complete {
        replayed.executions += 1;
    }
    findings
}

/// The top-level fields in which two states differ.
fn differing_fields(a: &ExecutionState, b: &ExecutionState) -> Vec<String> {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return vec!["(the states cannot be shown)".into()];
    };
    let mut fields: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
        .collect();
    fields.sort();
    fields.dedup();
    if fields.is_empty() {
        fields.push("(no field shown in JSON)".into());
    }
    fields
}

/// "replayed n/total events" on stderr, every [`PROGRESS_EVERY`] events:
/// rewritten in place on a terminal, one line each time otherwise.
#[derive(Debug)]
struct Progress {
    done: u64,
    total: u64,
    terminal: bool,
    shown: bool,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            done: 0,
            total,
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        if self.done.is_multiple_of(PROGRESS_EVERY) {
            self.show();
        }
    }

    fn show(&mut self) {
        let line = format!("verify: replayed {}/{} events", self.done, self.total);
        let mut err = std::io::stderr().lock();
        // Progress is a courtesy: a closed stderr must not fail the check.
        let _ = if self.terminal {
            write!(err, "\r{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.shown = true;
    }

    fn done(&mut self) {
        if self.shown {
            self.show();
            if self.terminal {
                let _ = writeln!(std::io::stderr());
            }
        }
    }
}
