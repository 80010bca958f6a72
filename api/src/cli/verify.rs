//! `retrace verify`: checks a stopped server's data folder without starting
//! an engine. First every hash chain and index (`verify_store` on the store
//! alone), then every execution folded from its first event with `apply` and
//! compared with the state its newest snapshot recorded. Every problem is
//! reported by execution and seq; the exit code is 0 only when there is none.
//!
//! Owns the order of the checks, the report and the progress line. It must
//! never repair what it reports, stop at the first problem, or trust a
//! snapshot: a snapshot is what is being checked, and never write to the
//! folder. (Replaying opens a journal over the store, which, as at a
//! server's start, brings the derived heads up to date — in memory only: the
//! store is opened read-only, see `history::open_store`.)

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use retrace_engine::machine::{ExecutionState, apply};
use retrace_engine::runtime::{CATALOG_STREAM, codec};
use retrace_journal::{EventLog, ExecutionHead, ExecutionId, Journal, Options, verify_store};
use serde_json::Value;

use super::error::{Error, Result};
use super::history::{self, CHUNK};
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
pub fn run(args: VerifyArgs, out: &mut impl Write) -> Result<bool> {
    let store = history::open_store(&args.data)?;
    let report = verify_store(&store)?;
    let mut findings: Vec<Finding> = report
        .problems
        .iter()
        .map(|p| Finding {
            execution: p.execution,
            seq: p.seq,
            what: p.to_string(),
        })
        .collect();
    for f in &findings {
        write(out, f.what.clone())?;
    }
    // The same store under a journal, to read histories and snapshots. A
    // journal refuses to open over a damaged tail; what is wrong with it was
    // reported above.
    let journal = match EventLog::with_store(Arc::new(store), Options::default()) {
        Ok(journal) => Some(journal),
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
    if let Some(journal) = &journal {
        let heads = executions(journal)?;
        let mut progress = Progress::new(heads.iter().map(|h| h.last_seq).sum());
        let known: BTreeSet<(ExecutionId, u64)> =
            findings.iter().map(|f| (f.execution, f.seq)).collect();
        for head in &heads {
            for f in replay(journal, head, &known, &mut progress, &mut replayed) {
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
            report.executions,
            replayed.executions,
            replayed.snapshots,
        ),
    )?;
    Ok(findings.is_empty())
}

/// Every execution's head (the workflow catalog's stream left out).
fn executions(journal: &EventLog) -> Result<Vec<ExecutionHead>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let heads = journal.executions(after, CHUNK)?;
        let Some(last) = heads.last() else {
            return Ok(all);
        };
        after = Some(last.execution);
        all.extend(heads.into_iter().filter(|h| h.execution != CATALOG_STREAM));
    }
}

#[derive(Debug, Default)]
struct Replayed {
    executions: u64,
    snapshots: u64,
}

/// Folds one execution from its first event and compares the fold with its
/// newest snapshot at that snapshot's seq.
fn replay(
    journal: &EventLog,
    head: &ExecutionHead,
    known: &BTreeSet<(ExecutionId, u64)>,
    progress: &mut Progress,
    replayed: &mut Replayed,
) -> Vec<Finding> {
    let id = head.execution;
    let mut findings = Vec::new();
    let mut found = |seq: u64, what: String| {
        findings.push(Finding {
            execution: id,
            seq,
            what: format!("execution {id} seq {seq}: {what}"),
        });
    };
    let snapshot = match journal.latest_snapshot(id) {
        Ok(Some(s)) if s.seq > head.last_seq => {
            found(
                s.seq,
                format!(
                    "the snapshot is at seq {} but the history ends at seq {}",
                    s.seq, head.last_seq
                ),
            );
            None
        }
        Ok(Some(s)) => match serde_json::from_slice::<ExecutionState>(&s.state) {
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
        while from <= head.last_seq {
            let records = match journal.read(id, from, CHUNK) {
                Ok(records) => records,
                // A damaged record the store check named already: one problem,
                // reported once.
                Err(retrace_journal::Error::Corrupt { seq, .. }) if known.contains(&(id, seq)) => {
                    break 'read;
                }
                Err(e) => {
                    found(from, format!("the history cannot be read from here: {e}"));
                    break 'read;
                }
            };
            let Some(last) = records.last() else {
                found(from, "the history ends before its head says".into());
                break 'read;
            };
            from = last.seq + 1;
            for record in &records {
                progress.tick();
                let applied = codec::decode(record)
                    .map_err(Error::from)
                    .and_then(|event| {
                        Ok(apply(
                            &mut state,
                            record.seq,
                            record.recorded_at_ms,
                            &event,
                        )?)
                    });
                if let Err(e) = applied {
                    found(record.seq, format!("replay stops: {e}"));
                    break 'read;
                }
                if let Some((seq, recorded)) = &snapshot
                    && *seq == record.seq
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
